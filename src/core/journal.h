/*
 * journal.h - the bus's crash-safe store: an append-only log of records
 * in segment files under <state_dir>/bus, each record framed as
 *
 *     u32 length (of the payload, little-endian) | u32 CRC-32C of the payload | payload
 *
 * so recovery can tell a torn tail (cut there) from the records before it,
 * and a damaged record (skipped, the file kept aside as *.corrupt and
 * rewritten with its good records) from the good ones after it.
 * A compaction writes the live state as a new snapshot segment (written
 * .tmp, or snapshot.new by the loop itself, fsynced, renamed: it exists
 * whole or not at all) and drops the older segments; recovery starts at
 * the newest snapshot.  The loop may read the records back while the
 * writer runs (jrnl_read: the bus's spilled queues).
 *
 * Appends never block the loop: a writer thread writes them and, per
 * bus_fsync, fsyncs (always: as soon as anything is pending; batch: what
 * one loop iteration appended, as one group), then reports through an
 * ev_async the highest ticket that is on disk.  The payload format is the
 * caller's; jbuf below is the shared codec.
 */
#ifndef COHORT_JOURNAL_H
#define COHORT_JOURNAL_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "util.h"

#define JRNL_SEGMENT_MAX (64u << 20)	/* roll to a new segment past this */
#define JRNL_RECORD_MAX (64u << 20)	/* a longer length field is corruption */

struct journal;

/* Every ticket up to `ticket` is as durable as bus_fsync makes it. */
typedef void (*jrnl_done_fn)(void *arg, uint64_t ticket);
/* One record read back at recovery (payload valid during the call).
 * snapshot: the record opens a snapshot, state so far is to be dropped. */
typedef void (*jrnl_record_fn)(void *arg, const unsigned char *payload, size_t len);

struct jrnl_recovery {
	size_t segments;	/* read */
	size_t records;
	uint64_t bytes;
	uint64_t truncated;	/* torn-tail bytes cut off */
	size_t corrupt;		/* damaged stretches skipped (each logged with its offset) */
	uint64_t corrupt_bytes;	/* in them */
	uint64_t missing;	/* segments missing between the first and the last */
};

/* Opens (making) dir, replays it through fn (snapshot_fn first receives
 * nothing: fn sees the snapshot's records like any other, after reset()
 * was called), then starts the writer.  -1 with err. */
struct journal *jrnl_open(const char *dir, enum fsync_policy policy, struct ev_loop *loop,
			  void (*reset)(void *arg), jrnl_record_fn fn, jrnl_done_fn done, void *arg,
			  struct jrnl_recovery *rec, char *err, size_t errlen);
/* Queues one record (not empty); returns its ticket. */
uint64_t jrnl_append(struct journal *j, const void *payload, size_t len);
/* Replaces everything written so far with these records (a snapshot of
 * the live state, built by the caller from payloads framed with
 * jrnl_frame).  Appends made after this call go after the snapshot. */
void jrnl_compact(struct journal *j, struct sbuf *framed);
/* The same, written by the caller record by record into a file rather
 * than built in memory: begin, a record at a time, end (which hands it to
 * the writer like jrnl_compact, or, when it could not be written, logs
 * it and returns 0; else its size).  The loop must not append between
 * begin and end. */
struct jrnl_snap;
struct jrnl_snap *jrnl_snap_begin(struct journal *j);
void jrnl_snap_record(struct jrnl_snap *s, const void *payload, size_t len);
uint64_t jrnl_snap_end(struct journal *j, struct jrnl_snap *s);
/* The same, written by a child process (fork): the loop is held only for
 * the fork, not while the live state (as large as the spilled queues it
 * copies) is written.  fn runs in the child, on the state as it was at the
 * fork, and writes the snapshot with jrnl_snap_record; what is appended
 * from then on goes after it.  done(arg, bytes) is called in the loop once
 * the child is done: the snapshot's size, handed to the writer, or 0 when
 * it failed (logged).  1: started; 0: not now (the writer is writing:
 * try again at the next loop iteration); -1: fork failed (errno). */
typedef void (*jrnl_snap_fn)(void *arg, struct jrnl_snap *s);
typedef void (*jrnl_forked_fn)(void *arg, uint64_t bytes);
int jrnl_fork_compact(struct journal *j, jrnl_snap_fn fn, jrnl_forked_fn done, void *arg);
/* Frames one payload into out (for jrnl_compact). */
void jrnl_frame(struct sbuf *out, const void *payload, size_t len);
/* Bytes in all segments (as last written). */
uint64_t jrnl_size(const struct journal *j);
uint64_t jrnl_last_ticket(const struct journal *j);
/* How long the writer's fdatasyncs took (none with bus_fsync = never). */
struct histo;
const struct histo *jrnl_fsync_histo(const struct journal *j);
/* The errno of the writer's last try when it failed (what failed is tried
 * again, every second, and nothing after it is reported durable), else 0. */
int jrnl_failing(const struct journal *j);

/* False while a compaction is queued or being written (the size it will
 * leave is not known yet), and after one failed until the journal has
 * doubled. */
bool jrnl_may_compact(const struct journal *j);
/* Rolls segments at this size instead of JRNL_SEGMENT_MAX (tests). */
void jrnl_set_segment_max(struct journal *j, uint64_t bytes);
/* Where jrnl_read goes on from: a segment and an offset in it. */
struct jrnl_pos {
	uint64_t seg;
	uint64_t off;
	bool set;		/* false: from the start */
};
/* One record read back by jrnl_read: false to stop after it. */
typedef bool (*jrnl_read_fn)(void *arg, const unsigned char *payload, size_t len);
/* Reads the records back in order, while running (the bus's spilled
 * queues): those in the files from the newest snapshot on, from *pos if
 * that segment is still there (else from the start), then those not
 * written yet (a compaction not written yet stands for all before it,
 * and is read instead).  Waits for the write under way, if any, to end;
 * the writer waits for it.  *pos is left where the next call may go on from (a
 * record read from memory may be read again then).  A damaged record
 * ends the reading of its file (logged). */
void jrnl_read(struct journal *j, struct jrnl_pos *pos, jrnl_read_fn fn, void *arg);
/* --- records by their place (journal_scan.c) ---------------------------- */

/* Where a record is: its file and offset, packed; 0 is none.  Valid while
 * the journal's generation stays what it was when the place was told. */
typedef uint64_t jrnl_at;
/* A compaction installed (files removed) moves it on. */
uint64_t jrnl_generation(const struct journal *j);
typedef void (*jrnl_scan_fn)(void *arg, jrnl_at at, const unsigned char *payload, size_t len);
enum {
	JRNL_SCAN_MORE = 1,	/* stopped at the budget: call again */
	JRNL_SCAN_END = 0,	/* at the end of what is written */
	JRNL_SCAN_BUSY = -1,	/* the writer is writing: try again later */
	JRNL_SCAN_MOVED = -2,	/* not that generation any more: from the start of the new one */
	JRNL_SCAN_DAMAGED = -3,	/* a record that does not read whole: no further */
};
#define JRNL_SCAN_CHUNK (256u << 10)	/* read from a file at a time */
/* The records in the files (not those still in memory) from *pos on
 * (unset: the first), about budget bytes of them, each with its place,
 * for the journal's generation `generation`; *pos is left where the next
 * call goes on.  Never waits for the writer. */
int jrnl_scan(struct journal *j, struct jrnl_pos *pos, uint64_t generation, size_t budget, jrnl_scan_fn fn,
	      void *arg);
/* Reads the records at at[0..n) and gives each to fn until it returns
 * false; returns how many were given, *after the place after the last.
 * *ok false when one could not be read whole (its file gone, or damage). */
size_t jrnl_read_at(struct journal *j, const jrnl_at *at, size_t n, jrnl_read_fn fn, void *arg,
		    struct jrnl_pos *after, bool *ok);

/* Writes and syncs what is pending, stops the writer, closes. */
void jrnl_close(struct journal *j);

/* --- the record codec ----------------------------------------------------- */

struct jbuf {
	struct sbuf b;
};
void jb_u8(struct jbuf *j, uint8_t v);
void jb_u64(struct jbuf *j, uint64_t v);	/* varint */
void jb_str(struct jbuf *j, const char *s, size_t n);	/* varint length + bytes */

struct jreader {
	const unsigned char *p, *end;
	bool bad;		/* read past the end: the record is malformed */
};
uint8_t jr_u8(struct jreader *r);
uint64_t jr_u64(struct jreader *r);
/* Points into the record; *n its length. */
const char *jr_str(struct jreader *r, size_t *n);

#endif
