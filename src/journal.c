/*
 * journal.c - see journal.h.
 */
#include "autoconfig.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"
#include "journal.h"
#include "log.h"

static const char magic[8] = {'C', 'O', 'H', 'J', 'R', 'N', 'L', '1'};

struct journal {
	char *dir;
	enum fsync_policy policy;
	struct ev_loop *loop;
	jrnl_done_fn done;
	void *arg;
	ev_async done_w;
	ev_prepare batch_w;		/* batch: hands the iteration's records over */
	struct sbuf local;		/* batch: records of this loop iteration */
	uint64_t local_ticket;
	uint64_t ticket;		/* last ticket given (loop thread) */

	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	/* shared, under lock */
	struct sbuf pending;		/* framed records to write */
	uint64_t pending_ticket;	/* highest ticket in pending */
	struct sbuf before;		/* records appended before the snapshot */
	uint64_t before_ticket;
	struct sbuf snapshot;		/* a compaction to do, after `before` */
	bool want_snapshot;
	uint64_t durable_ticket;	/* reported to the loop */
	bool compacting;		/* a snapshot is queued or being written */
	uint64_t failed_compact_size;	/* the size when the last compaction failed */
	uint64_t size;			/* bytes in all segments */
	bool stop;
	atomic_int failed_errno;	/* the last write failed (0: it did not); read unlocked */
	/* writer thread only */
	int fd;				/* current append segment (-1: open a new one) */
	uint64_t seg_id;		/* its id */
	uint64_t seg_size;		/* bytes in it, up to its last good record */
	uint64_t seg_max;
	uint64_t next_id;
	bool failed;			/* a write failed and was said; not mended yet */
	struct timespec retry_at;	/* after a failure: no new try before this */
};

/* --- codec ------------------------------------------------------------------ */

void jb_u8(struct jbuf *j, uint8_t v)
{
	sbuf_add(&j->b, &v, 1);
}

void jb_u64(struct jbuf *j, uint64_t v)
{
	unsigned char buf[10];
	size_t n = 0;

	do {
		buf[n] = (unsigned char)(v & 0x7F);
		v >>= 7;
		if (v)
			buf[n] |= 0x80;
		n++;
	} while (v);
	sbuf_add(&j->b, buf, n);
}

void jb_str(struct jbuf *j, const char *s, size_t n)
{
	jb_u64(j, n);
	sbuf_add(&j->b, s, n);
}

uint8_t jr_u8(struct jreader *r)
{
	if (r->p >= r->end) {
		r->bad = true;
		return 0;
	}
	return *r->p++;
}

uint64_t jr_u64(struct jreader *r)
{
	uint64_t v = 0;

	for (int shift = 0; shift < 64; shift += 7) {
		if (r->p >= r->end) {
			r->bad = true;
			return 0;
		}
		unsigned char c = *r->p++;
		v |= (uint64_t)(c & 0x7F) << shift;
		if (!(c & 0x80))
			return v;
	}
	r->bad = true;
	return 0;
}

const char *jr_str(struct jreader *r, size_t *n)
{
	uint64_t len = jr_u64(r);

	if (r->bad || len > (uint64_t)(r->end - r->p)) {
		r->bad = true;
		*n = 0;
		return "";
	}
	const char *s = (const char *)r->p;
	r->p += len;
	*n = (size_t)len;
	return s;
}

void jrnl_frame(struct sbuf *out, const void *payload, size_t len)
{
	unsigned char head[8];
	uint32_t l = (uint32_t)len, c = crc32c(0, payload, len);

	for (int i = 0; i < 4; i++) {
		head[i] = (unsigned char)(l >> (8 * i));
		head[4 + i] = (unsigned char)(c >> (8 * i));
	}
	sbuf_add(out, head, 8);
	sbuf_add(out, payload, len);
}

/* --- files -------------------------------------------------------------------- */

static char *seg_path(const struct journal *j, uint64_t id, const char *ext)
{
	return xasprintf("%s/%016" PRIx64 ".%s", j->dir, id, ext);
}

static void fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd >= 0) {
		(void)fsync(fd);
		close(fd);
	}
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Opens a new, empty append segment. */
static int seg_new(struct journal *j)
{
	/* After a failure the directory itself may be missing (a full disk
	 * when it was to be made at start). */
	if (j->failed && mkdir_p(j->dir, 0700) < 0)
		return -1;
	char *path = seg_path(j, j->next_id, "seg");
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);

	free(path);
	if (fd < 0 || write_all(fd, magic, sizeof(magic)) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (j->fd >= 0)
		close(j->fd);
	j->fd = fd;
	j->seg_id = j->next_id++;
	j->seg_size = sizeof(magic);
	fsync_dir(j->dir);
	return 0;
}

struct seg {
	uint64_t id;
	bool snap;
};

static int seg_cmp(const void *a, const void *b)
{
	const struct seg *x = a, *y = b;
	return (x->id > y->id) - (x->id < y->id);
}

/* Segments in id order, from the newest snapshot on; older ones deleted.
 * NULL with *n 0 and errno set if the directory cannot be read. */
static struct seg *list_segments(struct journal *j, size_t *n)
{
	DIR *dh = opendir(j->dir);
	struct dirent *e;
	struct seg *v = NULL;
	size_t cnt = 0, cap = 0;

	*n = 0;
	if (!dh)
		return NULL;
	errno = 0;
	while ((e = readdir(dh))) {
		char ext[8];
		unsigned long long id;
		if (sscanf(e->d_name, "%16llx.%7s", &id, ext) != 2 || strlen(e->d_name) < 20 ||
		    strlen(e->d_name) > 21 || e->d_name[16] != '.')
			continue;
		if (strcmp(ext, "tmp") == 0) {	/* a compaction that died midway */
			char *p = xasprintf("%s/%s", j->dir, e->d_name);
			unlink(p);
			free(p);
			continue;
		}
		if (strcmp(ext, "seg") && strcmp(ext, "snap"))
			continue;
		if (cnt == cap)
			v = xrealloc(v, (cap = cap ? cap * 2 : 16) * sizeof(*v));
		v[cnt++] = (struct seg){id, strcmp(ext, "snap") == 0};
	}
	closedir(dh);
	if (!cnt) {
		errno = 0;
		return NULL;
	}
	qsort(v, cnt, sizeof(*v), seg_cmp);
	size_t first = 0;
	for (size_t i = 0; i < cnt; i++)
		if (v[i].snap)
			first = i;
	for (size_t i = 0; i < first; i++) {	/* superseded by the snapshot */
		char *p = seg_path(j, v[i].id, v[i].snap ? "snap" : "seg");
		unlink(p);
		free(p);
	}
	memmove(v, v + first, (cnt - first) * sizeof(*v));
	*n = cnt - first;
	if (cnt)
		j->next_id = v[cnt - first - 1].id + 1;
	return v;
}

static char *slurp(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	char *buf;

	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return NULL;
	}
	buf = xmalloc((size_t)st.st_size + 1);
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	*len = got;
	return buf;
}

/* Replays one file; returns the offset after its last good record. */
static size_t replay_file(const char *path, bool last, jrnl_record_fn fn, void *arg,
			  struct jrnl_recovery *rec)
{
	size_t len = 0;
	char *buf = slurp(path, &len);
	size_t off = sizeof(magic);

	if (!buf)
		return 0;
	if (len < sizeof(magic) || memcmp(buf, magic, sizeof(magic)) != 0) {
		log_error(NULL, "bus journal %s: not a journal segment (skipped)", path);
		rec->corrupt++;
		free(buf);
		return 0;
	}
	while (off + 8 <= len) {
		const unsigned char *h = (const unsigned char *)buf + off;
		uint32_t l = (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
		uint32_t c = (uint32_t)h[4] | (uint32_t)h[5] << 8 | (uint32_t)h[6] << 16 | (uint32_t)h[7] << 24;
		/* No record is empty: zeros where records were (a file system
		 * that extended the file but lost the data) are a torn tail. */
		if (l == 0 || l > JRNL_RECORD_MAX || off + 8 + l > len || crc32c(0, h + 8, l) != c) {
			if (!last) {
				log_error(NULL, "bus journal %s: bad record at byte %zu; the rest of this "
					  "segment is skipped", path, off);
				rec->corrupt++;
			}
			break;
		}
		fn(arg, h + 8, l);
		rec->records++;
		off += 8 + l;
	}
	rec->bytes += off;
	free(buf);
	return off;
}

/* --- the writer thread -------------------------------------------------------- */

/*
 * Makes a failure visible.  Called only once the segment is back to its
 * last good record: whoever sees the failure (the bus refusing, a test
 * looking at the segment) must not see the part of a record that failed.
 */
static void write_failed(struct journal *j, const char *what, int err)
{
	if (!err)
		err = EIO;
	/* Refusals start now, before the log line that says why. */
	atomic_store_explicit(&j->failed_errno, err, memory_order_relaxed);
	if (!j->failed)
		log_error(NULL, "bus journal %s: %s: %s (nothing more is stored or acknowledged "
			  "until this is mended; tried again every second)", j->dir, what, strerror(err));
	j->failed = true;
}

/*
 * A write or sync of records failed: none of them may be read back ahead
 * of their retry, nor may a later record follow a partial one.  Cut the
 * segment back to its last good record; if that fails too, leave the
 * segment (its torn end is where its reading stops) and roll to a new one.
 */
static void drop_tail(struct journal *j)
{
	if (ftruncate(j->fd, (off_t)j->seg_size) == 0 && (j->policy == FSYNC_NEVER || fdatasync(j->fd) == 0))
		return;
	close(j->fd);
	j->fd = -1;
}

/* Writes the snapshot and drops what it supersedes; false if it could not. */
static bool do_compact(struct journal *j, struct sbuf *snap)
{
	uint64_t id = j->next_id++;
	char *tmp = seg_path(j, id, "tmp"), *final = seg_path(j, id, "snap");
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0 || write_all(fd, magic, sizeof(magic)) < 0 ||
	    write_all(fd, snap->buf ? snap->buf : "", snap->len) < 0 || fsync(fd) < 0) {
		int err = errno;
		if (fd >= 0)
			close(fd);
		unlink(tmp);
		write_failed(j, "writing a compacted snapshot", err);
		goto out;
	}
	close(fd);
	if (rename(tmp, final) < 0) {
		int err = errno;
		unlink(tmp);
		write_failed(j, "renaming a compacted snapshot", err);
		goto out;
	}
	fsync_dir(j->dir);
	/* Everything before the snapshot is now redundant, the append segment
	 * too: the next write opens a new one. */
	size_t n;
	struct seg *segs = list_segments(j, &n);
	free(segs);
	if (j->fd >= 0)
		close(j->fd);
	j->fd = -1;
	j->seg_size = 0;
	pthread_mutex_lock(&j->lock);
	j->size = sizeof(magic) + snap->len + j->seg_size;
	pthread_mutex_unlock(&j->lock);
	free(tmp);
	free(final);
	return true;
out:
	free(tmp);
	free(final);
	return false;
}

/* Appends framed records to the append segment and syncs them (per the
 * policy); false, with none of them in the segment, if it could not. */
static bool write_records(struct journal *j, const struct sbuf *data)
{
	/* Nothing to write, unless there is no segment since a failure: then
	 * opening one is the work that ends the failure (at start, on a full
	 * disk, nothing else would try). */
	if (!data->len && (j->fd >= 0 || !j->failed))
		return true;
	if ((j->fd < 0 || (j->seg_size + data->len > j->seg_max && j->seg_size > sizeof(magic))) &&
	    seg_new(j) < 0) {
		write_failed(j, "opening a segment", errno);
		return false;
	}
	/* The part written is cut before the failure is made visible. */
	if (write_all(j->fd, data->buf, data->len) < 0) {
		int err = errno;
		drop_tail(j);
		write_failed(j, "write", err);
		return false;
	}
	/* After a failed fdatasync the kernel may have dropped the pages it
	 * could not write: the records are written again, never trusted. */
	if (j->policy != FSYNC_NEVER && fdatasync(j->fd) < 0) {
		int err = errno;
		drop_tail(j);
		write_failed(j, "fsync", err);
		return false;
	}
	j->seg_size += data->len;
	return true;
}

/* Puts records that could not be written back ahead of what came since. */
static void put_back(struct sbuf *queue, struct sbuf *failed)
{
	if (!failed->len)
		return;
	sbuf_add(failed, queue->buf, queue->len);
	sbuf_free(queue);
	*queue = *failed;
	*failed = (struct sbuf){0};
}

static bool has_work(const struct journal *j)
{
	return j->pending.len || j->before.len || j->want_snapshot || (j->failed && j->fd < 0);
}

/* Sleeps until there is work, or until stop; after a failure, not before
 * retry_at unless stopping (then one last try). */
static void wait_for_work(struct journal *j)
{
	for (;;) {
		if (j->stop)
			return;
		if (has_work(j)) {
			struct timespec now;
			clock_gettime(CLOCK_REALTIME, &now);
			if (!j->failed || now.tv_sec > j->retry_at.tv_sec ||
			    (now.tv_sec == j->retry_at.tv_sec && now.tv_nsec >= j->retry_at.tv_nsec))
				return;
			pthread_cond_timedwait(&j->wake, &j->lock, &j->retry_at);
		} else {
			pthread_cond_wait(&j->wake, &j->lock);
		}
	}
}

static void *writer_main(void *arg)
{
	struct journal *j = arg;

	pthread_mutex_lock(&j->lock);
	for (bool last_try = false;;) {
		wait_for_work(j);
		if (!has_work(j) || last_try)
			break;	/* stopping, and nothing left, or it cannot be written */
		last_try = j->stop;
		struct sbuf data = j->pending, before = j->before, snap = j->snapshot;
		uint64_t data_ticket = j->pending_ticket, before_ticket = j->before_ticket;
		bool compact = j->want_snapshot;
		j->pending = j->before = j->snapshot = (struct sbuf){0};
		j->want_snapshot = false;
		pthread_mutex_unlock(&j->lock);

		/* Order: what came before a compaction, the snapshot, what came
		 * after.  A snapshot holds the effect of every record before it,
		 * so once it is written what failed before it is moot. */
		uint64_t grew = 0;
		bool before_ok = write_records(j, &before);
		if (before_ok)
			grew += before.len;
		bool compacted = compact && do_compact(j, &snap);
		if (compacted)
			grew = 0;	/* do_compact set the size afresh */
		bool data_ok = write_records(j, &data);
		if (data_ok)
			grew += data.len;
		sbuf_free(&snap);

		pthread_mutex_lock(&j->lock);
		j->size += grew;
		if (compact && !j->want_snapshot)
			j->compacting = false;
		if (compact && !compacted)	/* no new try before the journal doubles */
			j->failed_compact_size = j->size;
		/* What failed is written again, in order, before anything newer;
		 * a snapshot queued meanwhile supersedes it. */
		if (!j->want_snapshot) {
			if (!data_ok)
				put_back(&j->pending, &data);
			if (!before_ok && !compacted) {
				put_back(&j->pending, &before);
				if (data_ticket < before_ticket)
					data_ticket = before_ticket;
			}
			if ((!data_ok || (!before_ok && !compacted)) && j->pending_ticket < data_ticket)
				j->pending_ticket = data_ticket;
		}
		sbuf_free(&data);
		sbuf_free(&before);
		uint64_t upto = data_ticket > before_ticket ? data_ticket : before_ticket;
		if (data_ok && (before_ok || compacted)) {
			if (j->failed)
				log_info(NULL, "bus journal %s: written again", j->dir);
			j->failed = false;
			j->failed_errno = 0;
			if (upto > j->durable_ticket)
				j->durable_ticket = upto;
		} else {
			clock_gettime(CLOCK_REALTIME, &j->retry_at);
			j->retry_at.tv_sec += 1;
		}
		ev_async_send(j->loop, &j->done_w);
	}
	pthread_mutex_unlock(&j->lock);
	return NULL;
}

static void done_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	struct journal *j = container_of(w, struct journal, done_w);
	(void)loop;
	(void)revents;

	pthread_mutex_lock(&j->lock);
	uint64_t t = j->durable_ticket;
	pthread_mutex_unlock(&j->lock);
	j->done(j->arg, t);
}

/* Hands records to the writer (batch: once per loop iteration). */
static void handover(struct journal *j)
{
	if (!j->local.len)
		return;
	pthread_mutex_lock(&j->lock);
	sbuf_add(&j->pending, j->local.buf, j->local.len);
	j->pending_ticket = j->local_ticket;
	pthread_cond_signal(&j->wake);
	pthread_mutex_unlock(&j->lock);
	j->local.len = 0;
}

/*
 * Just before the loop sleeps, after every other callback of the
 * iteration (lowest priority): a check watcher would run first in the
 * next iteration, before that iteration's records exist, so a record would
 * wait for some later event; and the writer woken before the bus's own
 * prepare watcher would take the CPU from the deliveries it sends.
 */
static void batch_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	(void)loop;
	(void)revents;
	handover(container_of(w, struct journal, batch_w));
}

uint64_t jrnl_append(struct journal *j, const void *payload, size_t len)
{
	assert(len > 0);	/* an empty record reads back as a torn tail */
	jrnl_frame(&j->local, payload, len);
	j->local_ticket = ++j->ticket;
	if (j->policy != FSYNC_BATCH)
		handover(j);
	return j->ticket;
}

void jrnl_compact(struct journal *j, struct sbuf *framed)
{
	handover(j);
	pthread_mutex_lock(&j->lock);
	/* What came before belongs to the old segments, ahead of the snapshot
	 * (a snapshot not yet written is superseded by this one). */
	if (j->pending.len) {
		sbuf_add(&j->before, j->pending.buf, j->pending.len);
		j->before_ticket = j->pending_ticket;
		sbuf_free(&j->pending);
	}
	sbuf_free(&j->snapshot);
	j->snapshot = *framed;
	*framed = (struct sbuf){0};
	j->want_snapshot = true;
	j->compacting = true;
	pthread_cond_signal(&j->wake);
	pthread_mutex_unlock(&j->lock);
}

bool jrnl_may_compact(const struct journal *j)
{
	struct journal *m = (struct journal *)j;
	pthread_mutex_lock(&m->lock);
	bool may = !j->compacting && j->size >= 2 * j->failed_compact_size;
	pthread_mutex_unlock(&m->lock);
	return may;
}

uint64_t jrnl_size(const struct journal *j)
{
	struct journal *m = (struct journal *)j;
	pthread_mutex_lock(&m->lock);
	uint64_t s = j->size + j->pending.len + j->before.len + j->local.len;
	pthread_mutex_unlock(&m->lock);
	return s;
}

int jrnl_failing(const struct journal *j)
{
	return atomic_load_explicit(&j->failed_errno, memory_order_relaxed);
}

uint64_t jrnl_last_ticket(const struct journal *j)
{
	return j->ticket;
}

void jrnl_set_segment_max(struct journal *j, uint64_t bytes)
{
	pthread_mutex_lock(&j->lock);
	j->seg_max = bytes;
	pthread_mutex_unlock(&j->lock);
}

struct journal *jrnl_open(const char *dir, enum fsync_policy policy, struct ev_loop *loop,
			  void (*reset)(void *arg), jrnl_record_fn fn, jrnl_done_fn done, void *arg,
			  struct jrnl_recovery *rec, char *err, size_t errlen)
{
	struct journal *j = xcalloc(1, sizeof(*j));
	size_t n;

	*rec = (struct jrnl_recovery){0};
	j->dir = xstrdup(dir);
	j->seg_max = JRNL_SEGMENT_MAX;
	j->policy = policy;
	j->loop = loop;
	j->done = done;
	j->arg = arg;
	j->fd = -1;
	/* A directory that cannot be made holds nothing to recover: the
	 * journal starts failing (below), as on a full disk. */
	int mkdir_errno = mkdir_p(dir, 0700) < 0 ? errno : 0;
	struct seg *segs = list_segments(j, &n);
	if (!segs && errno && !mkdir_errno) {
		/* What is there is unknown: starting afresh could overwrite it. */
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		free(j->dir);
		free(j);
		return NULL;
	}
	reset(arg);
	for (size_t i = 0; i < n; i++) {
		char *p = seg_path(j, segs[i].id, segs[i].snap ? "snap" : "seg");
		bool last = i == n - 1;
		size_t good = replay_file(p, last, fn, arg, rec);
		rec->segments++;
		struct stat st;
		if (last && !segs[i].snap && stat(p, &st) == 0 && (uint64_t)st.st_size > good) {
			/* A torn tail: cut it, so new records follow good ones. */
			rec->truncated = (uint64_t)st.st_size - good;
			if (good < sizeof(magic) || truncate(p, (off_t)good) < 0) {
				unlink(p);
				rec->truncated = (uint64_t)st.st_size;
			}
		}
		if (last && !segs[i].snap && good >= sizeof(magic)) {
			j->fd = open(p, O_WRONLY | O_APPEND | O_CLOEXEC);
			j->seg_id = segs[i].id;
			j->seg_size = good;
		}
		free(p);
	}
	j->size = rec->bytes;
	free(segs);
	/* A full state_dir at start must not stop the stack: the journal
	 * starts failing (what is to be stored is refused, with the reason)
	 * and the writer tries to open a segment every second, as after a
	 * failed write at runtime. */
	if (mkdir_errno)
		write_failed(j, "making the journal directory", mkdir_errno);
	else if (j->fd < 0 && seg_new(j) < 0)
		write_failed(j, "opening a segment", errno);
	if (j->failed) {
		clock_gettime(CLOCK_REALTIME, &j->retry_at);
		j->retry_at.tv_sec += 1;
	}
	pthread_mutex_init(&j->lock, NULL);
	pthread_cond_init(&j->wake, NULL);
	ev_async_init(&j->done_w, done_cb);
	ev_async_start(loop, &j->done_w);
	ev_prepare_init(&j->batch_w, batch_cb);
	ev_set_priority(&j->batch_w, EV_MINPRI);
	ev_prepare_start(loop, &j->batch_w);
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rc = pthread_create(&j->thread, NULL, writer_main, j);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		log_error(NULL, "cannot start the journal thread: %s", strerror(rc));
		abort();
	}
	return j;
}

void jrnl_close(struct journal *j)
{
	if (!j)
		return;
	handover(j);
	pthread_mutex_lock(&j->lock);
	j->stop = true;
	pthread_cond_signal(&j->wake);
	pthread_mutex_unlock(&j->lock);
	pthread_join(j->thread, NULL);
	ev_async_stop(j->loop, &j->done_w);
	ev_prepare_stop(j->loop, &j->batch_w);
	if (j->fd >= 0)
		close(j->fd);
	pthread_mutex_destroy(&j->lock);
	pthread_cond_destroy(&j->wake);
	sbuf_free(&j->local);
	sbuf_free(&j->pending);
	sbuf_free(&j->before);
	sbuf_free(&j->snapshot);
	free(j->dir);
	free(j);
}
