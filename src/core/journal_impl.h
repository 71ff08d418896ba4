/*
 * journal_impl.h - what the journal's files share (see journal.h), not
 * for its users:
 *
 *   journal_format.c   the record codec and framing, segment files: their
 *                      names, the magic, opening, listing, pruning
 *   journal_recover.c  recovery at start (scan, resync, repair, *.corrupt)
 *                      and reading records back while the writer runs
 *   journal.c          the writer thread and its batches, compaction and
 *                      snapshots, opening and closing the journal
 *   journal_fork.c     a compaction written by a child process
 */
#ifndef COHORT_JOURNAL_IMPL_H
#define COHORT_JOURNAL_IMPL_H

#include <ev.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "histo.h"
#include "journal.h"
#include "util.h"

/* The first bytes of every segment and snapshot ("COHJRNL1"). */
extern const char jrnl_magic[8];

/* A compaction written by the loop, not yet handed over or renamed; not
 * a segment's name (list_segments would take it for one, or delete it). */
#define SNAP_NEW "snapshot.new"

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
	/* Held by the writer from taking work to putting back what failed,
	 * and by jrnl_read: a reader sees each record either in a file or in
	 * a buffer, never in the writer's hands.  Taken before lock. */
	pthread_mutex_t io;
	pthread_cond_t wake;
	/* shared, under lock */
	struct sbuf pending;		/* framed records to write */
	uint64_t pending_ticket;	/* highest ticket in pending */
	struct sbuf before;		/* records appended before the snapshot */
	uint64_t before_ticket;
	struct sbuf snapshot;		/* a compaction to do, after `before` */
	bool snapshot_file;		/* ... written in SNAP_NEW instead (jrnl_snap_*) */
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
	struct histo fsync_h;		/* the fdatasyncs' durations, for /metrics */
	/* A compaction written by a child process (journal_fork.c).  At the
	 * fork, what was appended so far goes to `before` and cut is set: the
	 * writer writes it, then closes the segment and makes an empty one,
	 * snap_id, whose id the snapshot takes once the child wrote SNAP_NEW
	 * (install): the records appended since the fork are in the segments
	 * after it, and recovery reads them after the snapshot. */
	bool cut;			/* under lock */
	bool install;			/* under lock */
	uint64_t snap_id;		/* writer thread */
	pid_t child;			/* loop thread: the child, or 0 */
	int child_fd;			/* the pipe it reports through */
	ev_io child_w;
	jrnl_forked_fn forked;
	void *forked_arg;
	/* In the child: the files as they were at the fork (jrnl_read reads
	 * no segment after limit_seg, nor past limit_off in it). */
	bool read_limited;
	uint64_t limit_seg, limit_off;
	uint64_t generation;		/* under lock: compactions installed */
	pthread_t pruner;		/* writer thread: deleting superseded files */
	bool pruning;
};

/* A segment file: <id>.seg, or <id>.snap for a snapshot. */
struct seg {
	uint64_t id;
	bool snap;
};

/* journal_format.c */
/* The 8 bytes before a record's payload: its length, its CRC-32C. */
void jrnl_frame_head(unsigned char head[8], const void *payload, size_t len);
/* A frame's little-endian u32 (its length, its CRC). */
uint32_t jrnl_get_u32(const unsigned char *p);
/* dir/<id as 16 hex digits>.ext (allocated). */
char *jrnl_seg_path(const struct journal *j, uint64_t id, const char *ext);
void jrnl_fsync_dir(const char *dir);
/* Writes all n bytes (through EINTR); -1 with errno. */
int jrnl_write_all(int fd, const char *p, size_t n);
/* Opens a new, empty append segment; -1 with errno. */
int jrnl_seg_new(struct journal *j);
/* Segments in id order, from the newest snapshot on; older ones deleted
 * (now, or by a thread of their own: later).  NULL with *n 0 and errno set
 * if the directory cannot be read. */
enum jrnl_prune { JRNL_PRUNE_NO, JRNL_PRUNE_NOW, JRNL_PRUNE_LATER };
struct seg *jrnl_list_segments(struct journal *j, size_t *n, enum jrnl_prune prune);
/* The files a compaction superseded are gone (the thread is done). */
void jrnl_prune_wait(struct journal *j);

/* journal_recover.c */
/* Replays segs (from the newest snapshot on) and opens the last one for
 * appending when it may be. */
void jrnl_recover_all(struct journal *j, const struct seg *segs, size_t n, jrnl_record_fn fn, void *arg,
		      struct jrnl_recovery *rec);

/* journal.c */
/* Hands the loop's records to the writer (batch: once per loop iteration). */
void jrnl_handover(struct journal *j);
/* Closes a snapshot written with jrnl_snap_begin (fsynced if sync): its
 * size, or 0 with errno when it could not be written. */
uint64_t jrnl_snap_close(struct jrnl_snap *s, bool sync);
/* Its pages go to the disk as it is written, a few megabytes at a time. */
void jrnl_snap_trickle(struct jrnl_snap *s);

/* journal_fork.c */
/* The writer: after `before` is written, the empty segment the forked
 * snapshot's id is reserved with; false (said) if it cannot be made. */
bool jrnl_fork_cut(struct journal *j);
/* The writer: SNAP_NEW becomes snapshot snap_id, what it supersedes goes;
 * false (said) if it could not. */
bool jrnl_fork_install(struct journal *j);
/* jrnl_close: a child still writing is killed. */
void jrnl_fork_stop(struct journal *j);
/* A write failed: made visible (journal.c). */
void jrnl_write_failed(struct journal *j, const char *what, int err);

#endif
