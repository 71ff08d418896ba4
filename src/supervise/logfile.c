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
#include <signal.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "logfile.h"
#include "thread.h"

struct logsink {
	struct logwriter *w;
	LIST_ENTRY(logsink) link;	/* in w->sinks */
	char *path;
	uint64_t max_size;
	unsigned backups;
	int refs;		/* loop thread only */

	/* Shared with the writer thread, under w->lock. */
	struct sbuf pending;
	uint64_t dropped_lines;	/* not yet reported in the file */
	uint64_t dropped_bytes;
	uint64_t dropped_total;
	uint64_t written;
	bool queued;		/* in the writer's work list */
	SLIST_ENTRY(logsink) work_link;	/* in w->work */
	bool closing;		/* refs hit 0: writer closes and frees it */

	/* Writer thread only (w_max_size and w_backups copied from the
	 * shared ones under the lock when work is taken). */
	int fd;
	uint64_t size;
	uint64_t w_max_size;
	unsigned w_backups;
	unsigned w_backups_made;	/* most rotated files kept so far: a reload lowered
					 * log_backups when it is above w_backups */
	uint64_t rotate_retry_at;	/* a rotation failed: not again before this size */
	bool open_failed;	/* said once, retried at each write */
};

/* A tail request, and then its answer. */
struct tail_req {
	char *path;
	unsigned backups;
	unsigned lines;
	logfile_tail_fn fn;
	void *arg;
	uint64_t tag;
	struct sbuf text;
	char err[200];
	STAILQ_ENTRY(tail_req) link;	/* in w->tails, then w->done */
};

STAILQ_HEAD(tail_list, tail_req);

struct logwriter {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct ev_loop *loop;
	ev_async done_w;		/* wakes the loop for finished tails */
	LIST_HEAD(, logsink) sinks;	/* loop thread only */
	SLIST_HEAD(, logsink) work;	/* sinks with pending data or closing */
	struct tail_list tails;		/* to read, oldest first */
	struct tail_list done;		/* read, for the loop, oldest first */
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
	s->rotate_retry_at = 0;
}

/* name.log -> name.log.1 -> ... -> name.log.<backups>; the oldest goes.
 * false when the file could not be moved aside (it is kept, and grows). */
static bool sink_rotate(struct logsink *s)
{
	char from[4200], to[4200];
	bool moved = true;

	if (s->w_backups == 0) {
		if (unlink(s->path) < 0 && errno != ENOENT)
			moved = false;
	} else {
		for (unsigned i = s->w_backups; i >= 1; i--) {
			if (i == 1)
				snprintf(from, sizeof(from), "%s", s->path);
			else
				snprintf(from, sizeof(from), "%s.%u", s->path, i - 1);
			snprintf(to, sizeof(to), "%s.%u", s->path, i);
			if (rename(from, to) < 0 && errno != ENOENT) {
				log_warn(NULL, "rotating %s: rename %s: %s", s->path, from, strerror(errno));
				if (i == 1)
					moved = false;
			}
		}
	}
	if (!moved) {
		/* Keep writing to the big file rather than spin; try again once it
		 * has grown by another log_max_size. */
		log_warn(NULL, "cannot rotate %s: %s; it grows past log_max_size", s->path, strerror(errno));
		s->rotate_retry_at = s->size + (s->w_max_size ? s->w_max_size : 1);
		return false;
	}
	/* Files past a log_backups a reload lowered go with this rotation. */
	for (unsigned i = s->w_backups + 1; i <= s->w_backups_made; i++) {
		snprintf(to, sizeof(to), "%s.%u", s->path, i);
		if (unlink(to) < 0 && errno != ENOENT)
			log_warn(NULL, "rotating %s: unlink %s: %s", s->path, to, strerror(errno));
	}
	s->w_backups_made = s->w_backups;
	close(s->fd);
	s->fd = -1;
	sink_open(s);
	return true;
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
		if (s->w_max_size && s->size + len > s->w_max_size && s->size >= s->rotate_retry_at) {
			size_t room = s->w_max_size > s->size ? (size_t)(s->w_max_size - s->size) : 0;
			chunk = whole_lines(data, room < len ? room : len);
			if (chunk == 0 && s->size > 0) {
				if (sink_rotate(s))
					continue;
				chunk = len;
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
		pthread_mutex_lock(&s->w->lock);
		s->written += (uint64_t)n;
		pthread_mutex_unlock(&s->w->lock);
		data += n;
		len -= (size_t)n;
	}
}

/* Reads the last want lines of one file into out (before what is there). */
static int tail_file(const char *path, unsigned *want, struct sbuf *out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;

	if (fd < 0)
		return -1;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return -1;
	}
	off_t end = st.st_size, start = end;
	if (end == 0) {
		close(fd);
		return 0;
	}
	size_t budget = 8u << 20;	/* never more than 8 MiB from the disk */
	char buf[65536];
	unsigned found = 0;
	/* A last line without its newline still counts as a line. */
	bool skip_final_nl = true;
	while (start > 0 && found <= *want && (size_t)(end - start) < budget) {
		size_t n = start > (off_t)sizeof(buf) ? sizeof(buf) : (size_t)start;
		start -= (off_t)n;
		if (pread(fd, buf, n, start) != (ssize_t)n)
			break;
		for (size_t i = n; i > 0; i--) {
			if (buf[i - 1] != '\n')
				continue;
			if (skip_final_nl && start + (off_t)i == end) {
				skip_final_nl = false;
				continue;
			}
			if (++found == *want) {
				start += (off_t)i;
				goto have;
			}
		}
		skip_final_nl = false;
	}
	if (found < *want)
		found++;	/* the first line of the file */
have:;
	struct sbuf text = {0};
	size_t len = (size_t)(end - start);
	text.buf = xmalloc(len + out->len + 1);
	text.cap = len + out->len + 1;
	if (pread(fd, text.buf, len, start) != (ssize_t)len)
		len = 0;
	text.len = len;
	if (out->len)
		sbuf_add(&text, out->buf, out->len);
	text.buf[text.len] = '\0';
	sbuf_free(out);
	*out = text;
	close(fd);
	*want = found >= *want ? 0 : *want - found;
	return 0;
}

static void tail_read(struct tail_req *r)
{
	unsigned want = r->lines;
	char path[4200];

	if (want == 0)
		return;
	for (unsigned i = 0; i <= r->backups && want > 0; i++) {
		if (i == 0)
			snprintf(path, sizeof(path), "%s", r->path);
		else
			snprintf(path, sizeof(path), "%s.%u", r->path, i);
		if (tail_file(path, &want, &r->text) < 0) {
			if (i == 0 && errno != ENOENT)
				snprintf(r->err, sizeof(r->err), "%s: %s", r->path, strerror(errno));
			break;
		}
	}
}

static void *writer_main(void *arg)
{
	struct logwriter *w = arg;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		while (SLIST_EMPTY(&w->work) && STAILQ_EMPTY(&w->tails) && !w->stop)
			pthread_cond_wait(&w->wake, &w->lock);
		if (SLIST_EMPTY(&w->work) && !STAILQ_EMPTY(&w->tails)) {
			/* Everything queued before it is on disk now. */
			struct tail_req *r = STAILQ_FIRST(&w->tails);
			STAILQ_REMOVE_HEAD(&w->tails, link);
			pthread_mutex_unlock(&w->lock);
			tail_read(r);
			pthread_mutex_lock(&w->lock);
			STAILQ_INSERT_TAIL(&w->done, r, link);
			ev_async_send(w->loop, &w->done_w);
			continue;
		}
		if (SLIST_EMPTY(&w->work) && w->stop)
			break;
		struct logsink *s = SLIST_FIRST(&w->work);
		SLIST_REMOVE_HEAD(&w->work, work_link);
		s->queued = false;
		struct sbuf data = s->pending;
		s->pending = (struct sbuf){0};
		bool closing = s->closing;
		s->w_max_size = s->max_size;
		s->w_backups = s->backups;
		if (s->w_backups > s->w_backups_made)
			s->w_backups_made = s->w_backups;
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

static void tail_free(struct tail_req *r)
{
	free(r->path);
	sbuf_free(&r->text);
	free(r);
}

/* On the loop: hands finished tails to their callers, oldest first. */
static void done_cb(struct ev_loop *loop, ev_async *a, int revents)
{
	struct logwriter *w = container_of(a, struct logwriter, done_w);
	struct tail_list list = STAILQ_HEAD_INITIALIZER(list);
	struct tail_req *r;
	(void)loop;
	(void)revents;

	pthread_mutex_lock(&w->lock);
	STAILQ_CONCAT(&list, &w->done);
	pthread_mutex_unlock(&w->lock);
	while ((r = STAILQ_FIRST(&list))) {
		STAILQ_REMOVE_HEAD(&list, link);
		r->fn(r->arg, r->tag, r->err[0] ? NULL : (r->text.buf ? r->text.buf : ""), r->text.len,
		      r->err[0] ? r->err : NULL);
		tail_free(r);
	}
}

void logfile_tail(struct logwriter *w, const char *path, unsigned backups, unsigned lines,
	       logfile_tail_fn fn, void *arg, uint64_t tag)
{
	struct tail_req *r = xcalloc(1, sizeof(*r));

	r->path = xstrdup(path);
	r->backups = backups;
	r->lines = lines;
	r->fn = fn;
	r->arg = arg;
	r->tag = tag;
	pthread_mutex_lock(&w->lock);
	STAILQ_INSERT_TAIL(&w->tails, r, link);
	pthread_cond_signal(&w->wake);
	pthread_mutex_unlock(&w->lock);
}

struct logwriter *logfile_start(struct ev_loop *loop)
{
	struct logwriter *w = xcalloc(1, sizeof(*w));

	w->loop = loop;
	LIST_INIT(&w->sinks);
	SLIST_INIT(&w->work);
	STAILQ_INIT(&w->tails);
	STAILQ_INIT(&w->done);
	ev_async_init(&w->done_w, done_cb);
	ev_async_start(loop, &w->done_w);

	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->wake, NULL);
	int rc = thread_start(&w->thread, writer_main, w);
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
		SLIST_INSERT_HEAD(&s->w->work, s, work_link);
		pthread_cond_signal(&s->w->wake);
	}
}

void logfile_stop(struct logwriter *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->lock);
	/* Close every sink still open; the writer flushes them first. */
	struct logsink *s;
	while ((s = LIST_FIRST(&w->sinks))) {
		LIST_REMOVE(s, link);
		s->closing = true;
		queue_locked(s);
	}
	w->stop = true;
	pthread_cond_signal(&w->wake);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->thread, NULL);
	ev_async_stop(w->loop, &w->done_w);
	struct tail_req *r;
	STAILQ_CONCAT(&w->tails, &w->done);
	while ((r = STAILQ_FIRST(&w->tails))) {
		STAILQ_REMOVE_HEAD(&w->tails, link);
		tail_free(r);
	}
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->wake);
	free(w);
}

void logfile_sink_limits(struct logsink *s, uint64_t max_size, unsigned backups)
{
	pthread_mutex_lock(&s->w->lock);
	s->max_size = max_size;
	s->backups = backups;
	pthread_mutex_unlock(&s->w->lock);
}

struct logsink *logfile_sink(struct logwriter *w, const char *path, uint64_t max_size, unsigned backups)
{
	struct logsink *s;

	LIST_FOREACH(s, &w->sinks, link) {
		if (strcmp(s->path, path) == 0) {
			s->refs++;
			/* The latest definition's limits win (reload may change them). */
			logfile_sink_limits(s, max_size, backups);
			return s;
		}
	}
	s = xcalloc(1, sizeof(*s));
	s->w = w;
	s->path = xstrdup(path);
	s->max_size = max_size;
	s->backups = backups;
	s->refs = 1;
	s->fd = -1;
	LIST_INSERT_HEAD(&w->sinks, s, link);
	return s;
}

void logfile_sink_put(struct logsink *s)
{
	if (!s || --s->refs > 0)
		return;
	struct logwriter *w = s->w;
	LIST_REMOVE(s, link);
	pthread_mutex_lock(&w->lock);
	s->closing = true;
	queue_locked(s);
	pthread_mutex_unlock(&w->lock);
}

void logfile_append(struct logsink *s, const char *data, size_t n)
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

void logfile_sink_stats(struct logsink *s, uint64_t *dropped_lines, uint64_t *written)
{
	pthread_mutex_lock(&s->w->lock);
	*dropped_lines = s->dropped_total + s->dropped_lines;
	*written = s->written;
	pthread_mutex_unlock(&s->w->lock);
}

const char *logfile_sink_path(const struct logsink *s)
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
	if (out.len) {
		logfile_append(p->sink, out.buf, out.len);
		if (p->on_lines)
			p->on_lines(p, out.buf, out.len);
	}
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
	logfile_sink_put(p->sink);
	p->sink = NULL;
}
