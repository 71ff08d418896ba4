/*
 * journal.c - see journal.h: the writer thread and its batches, the
 * compactions and snapshots, opening and closing the journal.  The bytes
 * are journal_format.c's, reading them journal_recover.c's.
 */
#include "autoconfig.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "histo.h"
#include "journal_impl.h"
#include "log.h"
#include "thread.h"

/* --- the writer thread -------------------------------------------------------- */

/*
 * Makes a failure visible.  Called only once the segment is back to its
 * last good record: whoever sees the failure (the bus refusing, a test
 * looking at the segment) must not see the part of a record that failed.
 */
void jrnl_write_failed(struct journal *j, const char *what, int err)
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

/* Writes the snapshot (from memory, or syncs the file SNAP_NEW) and drops
 * what it supersedes; false if it could not. */
static bool do_compact(struct journal *j, struct sbuf *snap, bool in_file)
{
	uint64_t id = j->next_id++;
	char *tmp = in_file ? xasprintf("%s/" SNAP_NEW, j->dir) : jrnl_seg_path(j, id, "tmp");
	char *final = jrnl_seg_path(j, id, "snap");
	int fd = open(tmp, in_file ? O_WRONLY | O_CLOEXEC : O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	struct stat st = {.st_size = (off_t)(sizeof(jrnl_magic) + snap->len)};

	if (fd < 0 || (!in_file && jrnl_write_all(fd, jrnl_magic, sizeof(jrnl_magic)) < 0) ||
	    (!in_file && jrnl_write_all(fd, snap->buf ? snap->buf : "", snap->len) < 0) || fsync(fd) < 0 ||
	    fstat(fd, &st) < 0) {
		int err = errno;
		if (fd >= 0)
			close(fd);
		unlink(tmp);
		jrnl_write_failed(j, "writing a compacted snapshot", err);
		j->next_id = id;	/* ids stay consecutive: a gap means a lost file */
		goto out;
	}
	close(fd);
	if (rename(tmp, final) < 0) {
		int err = errno;
		unlink(tmp);
		jrnl_write_failed(j, "renaming a compacted snapshot", err);
		j->next_id = id;
		goto out;
	}
	jrnl_fsync_dir(j->dir);
	/* Everything before the snapshot is now redundant, the append segment
	 * too: the next write opens a new one. */
	size_t n;
	struct seg *segs = jrnl_list_segments(j, &n, JRNL_PRUNE_LATER);
	free(segs);
	if (j->fd >= 0)
		close(j->fd);
	j->fd = -1;
	j->seg_size = 0;
	pthread_mutex_lock(&j->lock);
	j->size = (uint64_t)st.st_size + j->seg_size;
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
	if ((j->fd < 0 || (j->seg_size + data->len > j->seg_max && j->seg_size > sizeof(jrnl_magic))) &&
	    jrnl_seg_new(j) < 0) {
		jrnl_write_failed(j, "opening a segment", errno);
		return false;
	}
	/* The part written is cut before the failure is made visible. */
	if (jrnl_write_all(j->fd, data->buf, data->len) < 0) {
		int err = errno;
		drop_tail(j);
		jrnl_write_failed(j, "write", err);
		return false;
	}
	/* After a failed fdatasync the kernel may have dropped the pages it
	 * could not write: the records are written again, never trusted. */
	int64_t t0 = j->policy != FSYNC_NEVER ? histo_now_us() : 0;
	if (j->policy != FSYNC_NEVER && fdatasync(j->fd) < 0) {
		int err = errno;
		drop_tail(j);
		jrnl_write_failed(j, "fsync", err);
		return false;
	}
	if (j->policy != FSYNC_NEVER)
		histo_observe_us(&j->fsync_h, (uint64_t)(histo_now_us() - t0));
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
	return j->pending.len || j->before.len || j->want_snapshot || j->cut || j->install ||
	       (j->failed && j->fd < 0);
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

/* One turn of the writer: what it took from the queues (under j->lock),
 * and how writing it went (with only j->io held). */
struct batch {
	struct sbuf data, before, snap;
	uint64_t data_ticket, before_ticket;
	bool compact, in_file, cut, install;
	bool before_ok, cut_ok, installed, compacted, data_ok;
	uint64_t grew;
};

static void batch_take(struct journal *j, struct batch *t)
{
	*t = (struct batch){
		.data = j->pending, .before = j->before, .snap = j->snapshot,
		.data_ticket = j->pending_ticket, .before_ticket = j->before_ticket,
		.compact = j->want_snapshot, .in_file = j->snapshot_file, .cut = j->cut, .install = j->install,
	};
	j->pending = j->before = j->snapshot = (struct sbuf){0};
	j->want_snapshot = j->snapshot_file = j->cut = j->install = false;
}

/* Order: what came before a compaction, the snapshot, what came after.
 * A snapshot holds the effect of every record before it, so once it is
 * written what failed before it is moot.  A forked compaction's cut comes
 * after `before` and ahead of the rest, which waits for it. */
static void batch_write(struct journal *j, struct batch *t)
{
	t->before_ok = write_records(j, &t->before);
	if (t->before_ok)
		t->grew += t->before.len;
	t->cut_ok = !t->cut || (t->before_ok && jrnl_fork_cut(j));
	t->installed = t->install && t->cut_ok && jrnl_fork_install(j);
	t->compacted = t->compact && do_compact(j, &t->snap, t->in_file);
	if (t->compacted || t->installed)
		t->grew = 0;	/* the size was set afresh */
	t->data_ok = t->cut_ok && write_records(j, &t->data);
	if (t->data_ok)
		t->grew += t->data.len;
	sbuf_free(&t->snap);
}

/* What failed is written again, in order, before anything newer; a
 * snapshot queued meanwhile supersedes it.  Under j->lock. */
static void batch_put_back(struct journal *j, struct batch *t)
{
	if (t->cut && !t->before_ok) {	/* it stays ahead of the cut */
		put_back(&j->before, &t->before);
		if (j->before_ticket < t->before_ticket)
			j->before_ticket = t->before_ticket;
	}
	if (j->want_snapshot)
		return;
	if (!t->data_ok)
		put_back(&j->pending, &t->data);
	if (!t->before_ok && !t->compacted && !t->cut) {
		put_back(&j->pending, &t->before);
		if (t->data_ticket < t->before_ticket)
			t->data_ticket = t->before_ticket;
	}
	if ((!t->data_ok || (!t->before_ok && !t->compacted)) && j->pending_ticket < t->data_ticket)
		j->pending_ticket = t->data_ticket;
}

/* The journal's state after a turn.  Under j->lock. */
static void batch_settle(struct journal *j, struct batch *t)
{
	j->size += t->grew;
	if (t->compact && !j->want_snapshot)
		j->compacting = false;
	if (t->compacted || t->installed)
		j->generation++;	/* the files before it are gone */
	if (t->compact && !t->compacted)	/* no new try before the journal doubles */
		j->failed_compact_size = j->size;
	if (t->cut && !t->cut_ok)
		j->cut = true;		/* tried again, ahead of the rest */
	if (t->install && !t->cut_ok)
		j->install = true;	/* after the cut */
	else if (t->install) {
		j->compacting = false;
		if (!t->installed)
			j->failed_compact_size = j->size;
	}
	batch_put_back(j, t);
	sbuf_free(&t->data);
	sbuf_free(&t->before);
	uint64_t upto = t->data_ticket > t->before_ticket ? t->data_ticket : t->before_ticket;
	if (t->data_ok && (t->before_ok || t->compacted)) {
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
}

static void *writer_main(void *arg)
{
	struct journal *j = arg;
	struct batch t;

	pthread_mutex_lock(&j->lock);
	for (bool last_try = false;;) {
		wait_for_work(j);
		pthread_mutex_unlock(&j->lock);
		pthread_mutex_lock(&j->io);
		pthread_mutex_lock(&j->lock);
		if (!has_work(j) || last_try) {
			pthread_mutex_unlock(&j->io);
			break;	/* stopping, and nothing left, or it cannot be written */
		}
		last_try = j->stop;
		batch_take(j, &t);
		pthread_mutex_unlock(&j->lock);
		batch_write(j, &t);
		pthread_mutex_lock(&j->lock);
		batch_settle(j, &t);
		pthread_mutex_unlock(&j->io);
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
void jrnl_handover(struct journal *j)
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
	jrnl_handover(container_of(w, struct journal, batch_w));
}

uint64_t jrnl_append(struct journal *j, const void *payload, size_t len)
{
	assert(len > 0);	/* an empty record reads back as a torn tail */
	jrnl_frame(&j->local, payload, len);
	j->local_ticket = ++j->ticket;
	if (j->policy != FSYNC_BATCH)
		jrnl_handover(j);
	return j->ticket;
}

/* Hands the writer a compaction: FRAMED (taken), or with in_file the one
 * written in SNAP_NEW. */
static void queue_snapshot(struct journal *j, struct sbuf *framed, bool in_file)
{
	jrnl_handover(j);
	pthread_mutex_lock(&j->lock);
	/* What came before belongs to the old segments, ahead of the snapshot
	 * (a snapshot not yet written is superseded by this one). */
	if (j->pending.len) {
		sbuf_add(&j->before, j->pending.buf, j->pending.len);
		j->before_ticket = j->pending_ticket;
		sbuf_free(&j->pending);
	}
	sbuf_free(&j->snapshot);
	if (framed) {
		j->snapshot = *framed;
		*framed = (struct sbuf){0};
	}
	j->snapshot_file = in_file;
	j->want_snapshot = true;
	j->compacting = true;
	pthread_cond_signal(&j->wake);
	pthread_mutex_unlock(&j->lock);
}

void jrnl_compact(struct journal *j, struct sbuf *framed)
{
	queue_snapshot(j, framed, false);
}

/* A compaction written record by record into SNAP_NEW by the loop: a
 * snapshot as big as the spilled queues it holds is never in memory. */
struct jrnl_snap {
	FILE *f;
	uint64_t bytes;
	int err;
	uint64_t flushed;	/* bytes handed to the disk so far (jrnl_snap_trickle) */
	bool trickle;
};

/* Every SNAP_TRICKLE bytes the snapshot's pages start going to the disk:
 * a final fsync of hundreds of megabytes would stall the writer's writes
 * behind it (one file system journal), and the publishes waiting on them. */
#define SNAP_TRICKLE (4u << 20)

void jrnl_snap_trickle(struct jrnl_snap *s)
{
	s->trickle = true;
}

struct jrnl_snap *jrnl_snap_begin(struct journal *j)
{
	struct jrnl_snap *s = xcalloc(1, sizeof(*s));
	char *path = xasprintf("%s/" SNAP_NEW, j->dir);

	/* Private, as the segments are: it holds every message queued. */
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	free(path);
	s->f = fd >= 0 ? fdopen(fd, "wb") : NULL;
	if (!s->f) {
		s->err = errno;
		if (fd >= 0)
			close(fd);
	}
	else if (fwrite(jrnl_magic, 1, sizeof(jrnl_magic), s->f) != sizeof(jrnl_magic))
		s->err = errno ? errno : EIO;
	s->bytes = sizeof(jrnl_magic);
	return s;
}

void jrnl_snap_record(struct jrnl_snap *s, const void *payload, size_t len)
{
	unsigned char head[8];

	if (s->err)
		return;
	jrnl_frame_head(head, payload, len);
	if (fwrite(head, 1, 8, s->f) != 8 || fwrite(payload, 1, len, s->f) != len)
		s->err = errno ? errno : EIO;
	s->bytes += 8 + len;
	if (s->trickle && s->bytes - s->flushed >= SNAP_TRICKLE && fflush(s->f) == 0) {
		(void)sync_file_range(fileno(s->f), (off_t)s->flushed, (off_t)(s->bytes - s->flushed),
				      SYNC_FILE_RANGE_WRITE);
		s->flushed = s->bytes;
	}
}

uint64_t jrnl_snap_close(struct jrnl_snap *s, bool sync)
{
	uint64_t bytes = s->bytes;

	if (s->f && sync && !s->err && (fflush(s->f) != 0 || fsync(fileno(s->f)) != 0))
		s->err = errno ? errno : EIO;
	if (s->f && fclose(s->f) != 0 && !s->err)
		s->err = errno ? errno : EIO;
	int err = s->err;
	free(s);
	errno = err;
	return err ? 0 : bytes;
}

uint64_t jrnl_snap_end(struct journal *j, struct jrnl_snap *s)
{
	uint64_t bytes = jrnl_snap_close(s, false);

	if (!bytes) {
		int err = errno;
		char *path = xasprintf("%s/" SNAP_NEW, j->dir);
		log_error(NULL, "bus journal %s: cannot write a compacted snapshot: %s (not compacted)",
			  path, strerror(err));
		unlink(path);
		free(path);
		pthread_mutex_lock(&j->lock);
		j->failed_compact_size = j->size;	/* no new try before the journal doubles */
		pthread_mutex_unlock(&j->lock);
		return 0;
	}
	queue_snapshot(j, NULL, true);
	return bytes;
}

bool jrnl_may_compact(const struct journal *j)
{
	struct journal *m = (struct journal *)j;
	pthread_mutex_lock(&m->lock);
	bool may = !j->compacting && j->size >= 2 * j->failed_compact_size;
	pthread_mutex_unlock(&m->lock);
	return may;
}

const struct histo *jrnl_fsync_histo(const struct journal *j)
{
	return &j->fsync_h;
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
	j->child_fd = -1;
	HISTO_INIT_FAST(&j->fsync_h);
	/* A directory that cannot be made holds nothing to recover: the
	 * journal starts failing (below), as on a full disk. */
	int mkdir_errno = mkdir_p(dir, 0700) < 0 ? errno : 0;
	/* Older segments are dropped only once their snapshot has been read
	 * whole: at start nothing is destroyed that might be needed. */
	struct seg *segs = jrnl_list_segments(j, &n, JRNL_PRUNE_NO);
	if (!segs && errno && !mkdir_errno) {
		/* What is there is unknown: starting afresh could overwrite it. */
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		free(j->dir);
		free(j);
		return NULL;
	}
	char *snap_new = xasprintf("%s/" SNAP_NEW, dir);
	unlink(snap_new);	/* a compaction that died before it was handed over */
	free(snap_new);
	reset(arg);
	jrnl_recover_all(j, segs, n, fn, arg, rec);
	free(segs);
	j->size = rec->bytes;
	/* A full state_dir at start must not stop the stack: the journal
	 * starts failing (what is to be stored is refused, with the reason)
	 * and the writer tries to open a segment every second, as after a
	 * failed write at runtime. */
	if (mkdir_errno)
		jrnl_write_failed(j, "making the journal directory", mkdir_errno);
	else if (j->fd < 0 && jrnl_seg_new(j) < 0)
		jrnl_write_failed(j, "opening a segment", errno);
	if (j->failed) {
		clock_gettime(CLOCK_REALTIME, &j->retry_at);
		j->retry_at.tv_sec += 1;
	}
	pthread_mutex_init(&j->lock, NULL);
	pthread_mutex_init(&j->io, NULL);
	pthread_cond_init(&j->wake, NULL);
	ev_async_init(&j->done_w, done_cb);
	ev_async_start(loop, &j->done_w);
	ev_prepare_init(&j->batch_w, batch_cb);
	ev_set_priority(&j->batch_w, EV_MINPRI);
	ev_prepare_start(loop, &j->batch_w);
	int rc = thread_start(&j->thread, writer_main, j);
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
	jrnl_fork_stop(j);
	jrnl_handover(j);
	pthread_mutex_lock(&j->lock);
	j->stop = true;
	pthread_cond_signal(&j->wake);
	pthread_mutex_unlock(&j->lock);
	pthread_join(j->thread, NULL);
	jrnl_prune_wait(j);
	ev_async_stop(j->loop, &j->done_w);
	ev_prepare_stop(j->loop, &j->batch_w);
	if (j->fd >= 0)
		close(j->fd);
	pthread_mutex_destroy(&j->lock);
	pthread_mutex_destroy(&j->io);
	pthread_cond_destroy(&j->wake);
	sbuf_free(&j->local);
	sbuf_free(&j->pending);
	sbuf_free(&j->before);
	sbuf_free(&j->snapshot);
	free(j->dir);
	free(j);
}
