/*
 * logfile.c - see logfile.h.
 */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "logfile.h"

struct logsink {
	struct logwriter *w;
	struct logsink *next;	/* in w->sinks */
	char *path;
	uint64_t max_size;
	unsigned backups;
	int refs;		/* loop thread only */

	/* Shared with the writer thread, under w->lock. */
	struct sbuf pending;
	uint64_t dropped_lines;	/* not yet reported in the file */
	uint64_t dropped_bytes;
	uint64_t dropped_total;
	bool queued;		/* in the writer's work list */
	struct logsink *next_work;
	bool closing;		/* refs hit 0: writer closes and frees it */

	/* Writer thread only. */
	int fd;
	uint64_t size;
	uint64_t written;
	bool open_failed;	/* said once, retried at each write */
};

struct logwriter {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct logsink *sinks;		/* loop thread only */
	struct logsink *work;		/* sinks with pending data or closing */
	bool stop;
};

static void sink_open(struct logsink *s)
{
	struct stat st;

	s->fd = open(s->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (s->fd < 0) {
		if (!s->open_failed)
			log_error(NULL, "cannot open log %s: %s (output dropped until it can)", s->path,
				  strerror(errno));
		s->open_failed = true;
		return;
	}
	if (s->open_failed)
		log_info(NULL, "log %s is writable again", s->path);
	s->open_failed = false;
	s->size = fstat(s->fd, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/* name.log -> name.log.1 -> ... -> name.log.<backups>; the oldest goes. */
static void sink_rotate(struct logsink *s)
{
	char from[4200], to[4200];

	close(s->fd);
	s->fd = -1;
	if (s->backups == 0) {
		unlink(s->path);
	} else {
		for (unsigned i = s->backups; i >= 1; i--) {
			if (i == 1)
				snprintf(from, sizeof(from), "%s", s->path);
			else
				snprintf(from, sizeof(from), "%s.%u", s->path, i - 1);
			snprintf(to, sizeof(to), "%s.%u", s->path, i);
			if (rename(from, to) < 0 && errno != ENOENT)
				log_warn(NULL, "rotating %s: rename %s: %s", s->path, from, strerror(errno));
		}
	}
	sink_open(s);
}

/* Length of the longest prefix of data[0..room) that ends a line, 0 if none. */
static size_t whole_lines(const char *data, size_t room)
{
	for (size_t i = room; i > 0; i--)
		if (data[i - 1] == '\n')
			return i;
	return 0;
}

/* Writes data, rotating first whenever the next lines would push the file
 * past max_size, so no file grows beyond it and no line is split across
 * two files (a single line longer than max_size gets a file of its own). */
static void sink_write(struct logsink *s, const char *data, size_t len)
{
	while (len) {
		if (s->fd < 0)
			sink_open(s);
		if (s->fd < 0)
			return;	/* said in sink_open; retried at the next write */
		size_t chunk = len;
		if (s->max_size && s->size + len > s->max_size) {
			size_t room = s->max_size > s->size ? (size_t)(s->max_size - s->size) : 0;
			chunk = whole_lines(data, room < len ? room : len);
			if (chunk == 0 && s->size > 0) {
				sink_rotate(s);
				continue;
			}
			if (chunk == 0) {
				const char *nl = memchr(data, '\n', len);
				chunk = nl ? (size_t)(nl - data) + 1 : len;
			}
		}
		ssize_t n = write(s->fd, data, chunk);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_error(NULL, "writing log %s: %s (%zu bytes lost)", s->path, strerror(errno), len);
			return;
		}
		s->size += (uint64_t)n;
		s->written += (uint64_t)n;
		data += n;
		len -= (size_t)n;
	}
}

static void *writer_main(void *arg)
{
	struct logwriter *w = arg;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		while (!w->work && !w->stop)
			pthread_cond_wait(&w->wake, &w->lock);
		if (!w->work && w->stop)
			break;
		struct logsink *s = w->work;
		w->work = s->next_work;
		s->queued = false;
		struct sbuf data = s->pending;
		s->pending = (struct sbuf){0};
		bool closing = s->closing;
		pthread_mutex_unlock(&w->lock);

		if (data.len)
			sink_write(s, data.buf, data.len);
		sbuf_free(&data);
		if (closing) {
			if (s->fd >= 0)
				close(s->fd);
			free(s->path);
			free(s);
		}
		pthread_mutex_lock(&w->lock);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

struct logwriter *logw_start(void)
{
	struct logwriter *w = xcalloc(1, sizeof(*w));
	sigset_t all, old;

	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->wake, NULL);
	/* The thread must never take a signal meant for the loop. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rc = pthread_create(&w->thread, NULL, writer_main, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		log_error(NULL, "cannot start the log writer thread: %s", strerror(rc));
		abort();
	}
	return w;
}

static void queue_locked(struct logsink *s)
{
	if (!s->queued) {
		s->queued = true;
		s->next_work = s->w->work;
		s->w->work = s;
		pthread_cond_signal(&s->w->wake);
	}
}

void logw_stop(struct logwriter *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->lock);
	/* Close every sink still open; the writer flushes them first. */
	for (struct logsink *s = w->sinks, *next; s; s = next) {
		next = s->next;
		s->closing = true;
		queue_locked(s);
	}
	w->sinks = NULL;
	w->stop = true;
	pthread_cond_signal(&w->wake);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->thread, NULL);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->wake);
	free(w);
}

struct logsink *logw_sink(struct logwriter *w, const char *path, uint64_t max_size, unsigned backups)
{
	for (struct logsink *s = w->sinks; s; s = s->next) {
		if (strcmp(s->path, path) == 0) {
			s->refs++;
			/* The latest definition's limits win (reload may change them). */
			pthread_mutex_lock(&w->lock);
			s->max_size = max_size;
			s->backups = backups;
			pthread_mutex_unlock(&w->lock);
			return s;
		}
	}
	struct logsink *s = xcalloc(1, sizeof(*s));
	s->w = w;
	s->path = xstrdup(path);
	s->max_size = max_size;
	s->backups = backups;
	s->refs = 1;
	s->fd = -1;
	s->next = w->sinks;
	w->sinks = s;
	return s;
}

void logw_sink_put(struct logsink *s)
{
	if (!s || --s->refs > 0)
		return;
	struct logwriter *w = s->w;
	for (struct logsink **pp = &w->sinks; *pp; pp = &(*pp)->next) {
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	}
	pthread_mutex_lock(&w->lock);
	s->closing = true;
	queue_locked(s);
	pthread_mutex_unlock(&w->lock);
}

void logw_append(struct logsink *s, const char *data, size_t n)
{
	pthread_mutex_lock(&s->w->lock);
	if (s->pending.len + n > LOG_PENDING_MAX) {
		for (size_t i = 0; i < n; i++)
			s->dropped_lines += data[i] == '\n';
		s->dropped_bytes += n;
		pthread_mutex_unlock(&s->w->lock);
		return;
	}
	if (s->dropped_lines) {
		char ts[40];
		format_wall_ms(now_wall_ms(), ts, sizeof(ts));
		sbuf_addf(&s->pending, "%s [cohort] dropped %llu lines (%llu bytes) of output: "
			  "written faster than the disk took them\n", ts,
			  (unsigned long long)s->dropped_lines, (unsigned long long)s->dropped_bytes);
		s->dropped_total += s->dropped_lines;
		s->dropped_lines = s->dropped_bytes = 0;
	}
	sbuf_add(&s->pending, data, n);
	queue_locked(s);
	pthread_mutex_unlock(&s->w->lock);
}

void logw_sink_stats(struct logsink *s, uint64_t *dropped_lines, uint64_t *written)
{
	pthread_mutex_lock(&s->w->lock);
	*dropped_lines = s->dropped_total + s->dropped_lines;
	*written = s->written;
	pthread_mutex_unlock(&s->w->lock);
}

const char *logw_sink_path(const struct logsink *s)
{
	return s->path;
}

/* Stamps each complete line of data and hands the lot to the sink. */
static void outpipe_feed(struct outpipe *p, const char *data, size_t n)
{
	char ts[40];
	struct sbuf out = {0};
	size_t tl;

	format_wall_ms(now_wall_ms(), ts, sizeof(ts));
	tl = strlen(ts);
	ts[tl++] = ' ';
	while (n) {
		const char *nl = memchr(data, '\n', n);
		size_t take = nl ? (size_t)(nl - data) + 1 : n;
		if (!nl && p->partial.len + take < LOG_LINE_MAX) {
			sbuf_add(&p->partial, data, take);	/* wait for the line's end */
			break;
		}
		if (!nl)	/* a line too long to wait for: cut it */
			take = LOG_LINE_MAX > p->partial.len ? LOG_LINE_MAX - p->partial.len : 1;
		if (take > n)
			take = n;
		sbuf_add(&out, ts, tl);
		if (p->partial.len) {
			sbuf_add(&out, p->partial.buf, p->partial.len);
			sbuf_consume(&p->partial, p->partial.len);
		}
		sbuf_add(&out, data, take);
		if (data[take - 1] != '\n')
			sbuf_addc(&out, '\n');
		data += take;
		n -= take;
	}
	if (out.len)
		logw_append(p->sink, out.buf, out.len);
	sbuf_free(&out);
}

static void outpipe_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct outpipe *p = container_of(w, struct outpipe, io);
	char buf[LOG_READ_CHUNK];
	(void)revents;

	/* One chunk per wake-up: a flood from one service takes its turn with
	 * every other watcher instead of holding the loop. */
	ssize_t n = read(w->fd, buf, sizeof(buf));
	if (n > 0)
		outpipe_feed(p, buf, (size_t)n);
	else if (n == 0 || (errno != EAGAIN && errno != EINTR))
		ev_io_stop(loop, w);
}

int outpipe_open(struct outpipe *p, struct ev_loop *loop, struct logsink *sink)
{
	int fds[2];

	if (pipe2(fds, O_CLOEXEC) < 0)
		return -1;
	set_nonblock(fds[0]);
	p->wfd = fds[1];
	p->sink = sink;
	p->partial = (struct sbuf){0};
	ev_io_init(&p->io, outpipe_cb, fds[0], EV_READ);
	ev_io_start(loop, &p->io);
	return 0;
}

void outpipe_close(struct outpipe *p, struct ev_loop *loop)
{
	char buf[LOG_READ_CHUNK];
	ssize_t n;

	if (p->wfd >= 0)
		close(p->wfd);
	p->wfd = -1;
	/* What the service wrote before it ended still belongs in its log. */
	for (int i = 0; i < 64 && (n = read(p->io.fd, buf, sizeof(buf))) > 0; i++)
		outpipe_feed(p, buf, (size_t)n);
	if (p->partial.len)
		outpipe_feed(p, "\n", 1);
	ev_io_stop(loop, &p->io);
	close(p->io.fd);
	sbuf_free(&p->partial);
	logw_sink_put(p->sink);
	p->sink = NULL;
}
