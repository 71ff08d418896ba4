/*
 * bus_spill_index.c - where each spilled delivery is in the journal.
 *
 * A spilled queue is read back from the journal (bus_spill.c).  Scanning
 * the journal for the records that name one session costs the whole
 * journal per session when the sessions' messages are interleaved: a
 * thousand sessions back after a restart with a gigabyte queued scanned a
 * terabyte, each chunk holding the loop for the ~50 MB it went through.
 * So one scan, shared by every session, notes the place of each record
 * owed to a spilled session (8 bytes a delivery), and a session reads
 * its records back from their places.
 *
 * The scan goes on from the loop, BUS_SPILL_SCAN bytes a loop iteration,
 * through the files the writer has written, after recovery and whenever a
 * delivery is spilled.  A session whose places are all read while the scan
 * has not reached the end of the files waits for it (it is pumped again
 * when the scan has found more, or is done); once the scan is at the end,
 * what is left (records not written yet) is read by scanning from there,
 * as before.  A compaction installed removes the files the places are in:
 * every place is forgotten and the scan starts again on the new files.
 * A file that does not read whole stops the index for good: reading back
 * then scans, as it did before the index (and says what is damaged).
 */
#include "autoconfig.h"

#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "log.h"

struct bus_spill_ix {
	struct bus_session *s;
	jrnl_at *at;
	size_t head, len, cap;
	uint64_t last_seq;	/* the last seq given a place */
	bool waiting;		/* for the scan: pumped when it found more */
	bool deferred;		/* ... or at the next loop iteration (bus_spill_ix_turn) */
	LIST_ENTRY(bus_spill_ix) wait_link;
};

static struct bus_spill_ix *ix_of(struct bus_session *s)
{
	if (!s->ix) {
		s->ix = xcalloc(1, sizeof(*s->ix));
		s->ix->s = s;
	}
	return s->ix;
}

void bus_spill_ix_free(struct bus_session *s)
{
	struct bus_spill_ix *ix = s->ix;

	if (!ix)
		return;
	if (ix->waiting)
		LIST_REMOVE(ix, wait_link);
	free(ix->at);
	free(ix);
	s->ix = NULL;
}

/* A record the scan went by: a place for each spilled session it is owed to. */
static void note(void *arg, jrnl_at at, const unsigned char *p, size_t len)
{
	struct bus *b = arg;
	struct jreader keys;
	uint64_t nkeys, seq = bus_store_pub_keys(p, len, &keys, &nkeys);

	for (uint64_t i = 0; seq && i < nkeys && !keys.bad; i++) {
		struct bus_session *s = bus_store_session_of(b, &keys);
		if (!s || !s->spilled || seq < s->spill_next)
			continue;
		struct bus_spill_ix *ix = ix_of(s);
		if (ix->len && seq <= ix->last_seq)
			continue;
		if (ix->len == ix->cap) {
			if (ix->head > ix->cap / 2) {	/* what was read back makes room */
				memmove(ix->at, ix->at + ix->head, (ix->len - ix->head) * sizeof(*ix->at));
				ix->len -= ix->head;
				ix->head = 0;
			} else {
				ix->cap = ix->cap ? ix->cap + ix->cap / 2 : 64;
				ix->at = xrealloc(ix->at, ix->cap * sizeof(*ix->at));
			}
		}
		ix->at[ix->len++] = at;
		ix->last_seq = seq;
	}
}

/* Every place forgotten (a new generation, or no index any more). */
static void forget_all(struct bus *b)
{
	const char *k;
	void *v;

	for (size_t it = 0; map_next(&b->sessions, &it, &k, &v);) {
		struct bus_spill_ix *ix = ((struct bus_session *)v)->ix;
		if (ix) {
			free(ix->at);
			ix->at = NULL;
			ix->head = ix->len = ix->cap = 0;
			ix->last_seq = 0;
		}
	}
}

static void scan_on(struct bus *b)
{
	if (!b->j || b->sx.off)
		return;
	b->sx.done = false;
	ev_prepare_start(b->loop, &b->sx.step_w);
}

/* A new generation of the journal: every place is found again. */
static void restart(struct bus *b)
{
	forget_all(b);
	b->sx.gen = jrnl_generation(b->j);
	b->sx.pos = (struct jrnl_pos){0};
	scan_on(b);
}

/* The sessions that waited for the scan: pumped (they wait again if it
 * still has not found theirs). */
static void wake(struct bus *b, bool all)
{
	struct bus_spill_ix *ix, *next;
	LIST_HEAD(, bus_spill_ix) ready = LIST_HEAD_INITIALIZER(ready);

	for (ix = LIST_FIRST(&b->sx.waiting); ix; ix = next) {
		next = LIST_NEXT(ix, wait_link);
		if (all || ix->deferred || ix->head < ix->len) {
			LIST_REMOVE(ix, wait_link);
			LIST_INSERT_HEAD(&ready, ix, wait_link);
		}
	}
	/* Still marked waiting: a session freed meanwhile leaves this list. */
	while ((ix = LIST_FIRST(&ready))) {
		LIST_REMOVE(ix, wait_link);
		ix->waiting = ix->deferred = false;
		bus_pump(ix->s);
	}
}

static void step_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	struct bus *b = container_of(w, struct bus, sx.step_w);
	(void)revents;

	if (!b->sx.done) {
		if (jrnl_generation(b->j) != b->sx.gen)
			restart(b);
		switch (jrnl_scan(b->j, &b->sx.pos, b->sx.gen, BUS_SPILL_SCAN, note, b)) {
		case JRNL_SCAN_MORE:
			ev_idle_start(loop, &b->sx.awake_w);	/* no sleep before the next step */
			break;
		case JRNL_SCAN_BUSY:
			/* The writer is writing: the next iteration, not at once. */
			ev_timer_start(loop, &b->sx.busy_w);
			break;
		case JRNL_SCAN_MOVED:
			restart(b);
			ev_idle_start(loop, &b->sx.awake_w);
			break;
		case JRNL_SCAN_DAMAGED:
			log_warn(NULL, "bus: the journal does not read whole past segment %016llx, byte %llu: "
				 "spilled queues are read back by scanning it", (unsigned long long)b->sx.pos.seg,
				 (unsigned long long)b->sx.pos.off);
			b->sx.off = true;
			forget_all(b);
			b->sx.done = true;
			break;
		default:
			/* At the end of the files: once the last spilled delivery is
			 * written too, its place is found (bus_spill_ix_written). */
			b->sx.after_write = b->durable_ticket < b->sx.want;
			b->sx.done = true;
			break;
		}
	}
	wake(b, b->sx.done);
	if (!b->sx.done)
		return;
	if (LIST_EMPTY(&b->sx.waiting))
		ev_prepare_stop(loop, w);
	else
		ev_idle_start(loop, &b->sx.awake_w);	/* deferred: the next iteration */
}

static void awake_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
	(void)revents;
	ev_idle_stop(loop, w);
}

static void busy_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
}

void bus_spill_ix_start(struct bus *b)
{
	ev_prepare_init(&b->sx.step_w, step_cb);
	ev_idle_init(&b->sx.awake_w, awake_cb);
	ev_timer_init(&b->sx.busy_w, busy_cb, 0.001, 0.);
	LIST_INIT(&b->sx.waiting);
	b->sx.done = true;
	if (b->j)
		b->sx.gen = jrnl_generation(b->j);
	if (b->spilled_bytes)
		bus_spill_ix_more(b);
}

void bus_spill_ix_stop(struct bus *b)
{
	ev_prepare_stop(b->loop, &b->sx.step_w);
	ev_idle_stop(b->loop, &b->sx.awake_w);
	ev_timer_stop(b->loop, &b->sx.busy_w);
}

void bus_spill_ix_more(struct bus *b)
{
	if (b->j)
		b->sx.want = jrnl_last_ticket(b->j);	/* what was spilled last is in it */
	scan_on(b);
}

void bus_spill_ix_written(struct bus *b)
{
	if (b->sx.after_write && b->durable_ticket >= b->sx.want) {
		b->sx.after_write = false;
		scan_on(b);
	}
}

/*
 * Reading back holds the loop: at most BUS_SPILL_TURN records a loop
 * iteration, whichever sessions read them (fifty sessions reading a chunk
 * each in one iteration held it 50-90 ms).  False when this iteration's
 * are read: s goes on at the next one.
 */
bool bus_spill_ix_turn(struct bus_session *s)
{
	struct bus *b = s->bus;
	unsigned it = ev_iteration(b->loop);

	if (!b->j)
		return true;
	if (b->sx.turn_iter != it) {
		b->sx.turn_iter = it;
		b->sx.turn_left = BUS_SPILL_TURN;
	}
	if (b->sx.turn_left)
		return true;
	struct bus_spill_ix *ix = ix_of(s);
	ix->deferred = true;
	if (!ix->waiting) {
		ix->waiting = true;
		LIST_INSERT_HEAD(&b->sx.waiting, ix, wait_link);
	}
	ev_prepare_start(b->loop, &b->sx.step_w);
	ev_idle_start(b->loop, &b->sx.awake_w);
	return false;
}

void bus_spill_ix_used(struct bus *b, size_t n)
{
	b->sx.turn_left = n < b->sx.turn_left ? b->sx.turn_left - n : 0;
}

bool bus_spill_ix_on(const struct bus *b)
{
	return b->j && !b->sx.off;
}

void bus_spill_ix_take(struct bus_session *s, jrnl_read_fn fn, void *arg)
{
	struct bus *b = s->bus;
	struct bus_spill_ix *ix = s->ix;

	if (!ix || ix->head == ix->len)
		return;
	bool ok = jrnl_generation(b->j) == b->sx.gen;
	if (ok) {
		size_t n = ix->len - ix->head;
		if (n > BUS_SPILL_CHUNK)
			n = BUS_SPILL_CHUNK;
		ix->head += jrnl_read_at(b->j, ix->at + ix->head, n, fn, arg, &s->spill_pos, &ok);
	}
	if (!ok) {	/* a new generation: the places are gone */
		restart(b);
	} else if (ix->head == ix->len) {
		free(ix->at);
		ix->at = NULL;
		ix->head = ix->len = ix->cap = 0;
	}
}

bool bus_spill_ix_wait(struct bus_session *s, struct jrnl_pos *from)
{
	struct bus *b = s->bus;

	if (!b->sx.done) {
		struct bus_spill_ix *ix = ix_of(s);
		if (!ix->waiting) {
			ix->waiting = true;
			LIST_INSERT_HEAD(&b->sx.waiting, ix, wait_link);
		}
		return true;
	}
	/* The scan gave a place to every record of s before where it is. */
	*from = s->spill_pos;
	if (!from->set || from->seg < b->sx.pos.seg || (from->seg == b->sx.pos.seg && from->off < b->sx.pos.off))
		*from = b->sx.pos;
	return false;
}

size_t bus_spill_ix_places(const struct bus_session *s)
{
	return s->ix ? s->ix->len - s->ix->head : 0;
}
