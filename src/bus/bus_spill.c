/*
 * bus_spill.c - queues of durable sessions that are away, kept in the
 * journal rather than in memory.
 *
 * A session spills (bus_spills) when it is away and the queues hold half
 * of bus_memory_max; what comes for it from then on is only the PUB
 * record that names it, which is written anyway, and a count.  Once it
 * is back and its ring has sent what it held, the spilled deliveries are
 * read back from the journal in seq order, BUS_SPILL_CHUNK at a time
 * (bus_spill_load, from bus_pump); what comes for it meanwhile spills
 * too, so the order holds.  Recovery spills as well (bus_session_restore),
 * so a restart does not bring a spilled backlog back into memory; an ack
 * replayed for a spilled delivery is noted in spill_acked, and its record
 * skipped when read.  A compaction copies the spilled records into its
 * snapshot (bus_store.c).  Where each spilled record is, is kept by
 * bus_spill_index.c: they are read from there, not found by a scan.
 */
#include "autoconfig.h"

#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "log.h"

bool bus_spills(const struct bus_session *s)
{
	const struct bus *b = s->bus;

	return s->key && (s->spilled || (!s->conn && b->memory_max && b->queued_mem >= b->memory_max / 2));
}

void bus_spill_add(struct bus_session *s, const struct bus_msg *m)
{
	if (!s->spilled) {
		s->spill_next = m->seq;
		s->spill_pos = (struct jrnl_pos){0};
	}
	s->spilled++;
	s->spill_bytes += bus_msg_size(m);
	s->bus->spilled_bytes += bus_msg_size(m);
	bus_spill_ix_more(s->bus);	/* its place, once it is written */
}

/* Nothing spilled any more: what was counted for it goes. */
static void spill_done(struct bus_session *s)
{
	s->bus->spilled_bytes -= s->spill_bytes;
	s->spill_bytes = 0;
	s->spilled = 0;
	intmap_free(&s->spill_acked);
	bus_spill_ix_free(s);
}

bool bus_spill_forget(struct bus_session *s, uint64_t seq)
{
	if (!s->spilled || seq < s->spill_next)
		return false;
	if (!intmap_put(&s->spill_acked, (int64_t)seq, s) && --s->spilled == 0)
		spill_done(s);
	return true;
}

static void takes_memory(void *sub, void *arg)
{
	struct bus_sub *bs = sub;

	if (bs->qos && !bus_spills(bs->s))
		*(bool *)arg = true;
}

bool bus_publish_takes_memory(struct bus *b, const char *topic)
{
	bool yes = false;

	trie_match(&b->subs, topic, takes_memory, &yes);
	return yes;
}

/* A spilled delivery read back: queued, or, when recovery replayed its
 * ack (then it was counted off already), only its bytes counted off. */
static void unspill(struct bus_session *s, struct bus_msg *m, bool acked)
{
	s->spill_bytes -= bus_msg_size(m);
	s->bus->spilled_bytes -= bus_msg_size(m);
	s->spill_next = m->seq + 1;
	if (acked)
		return;
	bus_enqueue(s, m, m->seq <= s->spill_resent ? 1 : 0, false);
	if (--s->spilled == 0)
		spill_done(s);
}

/* --- reading back ------------------------------------------------------------------ */

/* Does the rest of a PUB record, its nkeys session keys, name s? */
static bool names(struct jreader *r, uint64_t nkeys, const struct bus_session *s)
{
	size_t len = strlen(s->key);

	for (uint64_t i = 0; i < nkeys && !r->bad; i++) {
		size_t n;
		const char *k = jr_str(r, &n);
		if (!r->bad && n == len && memcmp(k, s->key, n) == 0)
			return true;
	}
	return false;
}

struct spill_read {
	struct bus_session *s;
	struct bus_msg *m[BUS_SPILL_CHUNK];
	size_t n;
	size_t owed;		/* of them, not acked during recovery */
	uint64_t bytes;
	uint64_t budget;	/* bytes it may read (bus_msg_size) */
	bool full;
};

/* Collects what is read: queuing it here could append a record (a drop
 * for age), which the journal, locked while it is read, would not take. */
static bool read_back(void *arg, const unsigned char *p, size_t len)
{
	struct spill_read *sr = arg;
	struct bus_session *s = sr->s;
	struct intmap *cache = &s->bus->spill_cache;
	struct jreader keys;
	uint64_t nkeys, seq = bus_store_pub_keys(p, len, &keys, &nkeys);

	if (!seq || seq < s->spill_next || (sr->n && seq <= sr->m[sr->n - 1]->seq) || !names(&keys, nkeys, s))
		return true;
	/* Sessions back at once read the same messages: one copy of each. */
	struct bus_msg *m = intmap_get(cache, (int64_t)seq);
	if (m) {
		m->refs++;
	} else {
		m = bus_store_read_pub(p, len, 0, &keys, &nkeys);
		if (!m)
			return true;
		m->cache = cache;
		intmap_put(cache, (int64_t)seq, m);
	}
	sr->m[sr->n++] = m;
	sr->owed += !intmap_get(&s->spill_acked, (int64_t)m->seq);
	sr->bytes += bus_msg_size(m);
	sr->full = sr->n == BUS_SPILL_CHUNK || sr->bytes >= sr->budget;
	return sr->owed < s->spilled && !sr->full;
}

/*
 * What is read back goes into memory, where bus_memory_max holds: all
 * sessions together read back while the queues hold less than half of it
 * (the half where away sessions start spilling), the other half staying
 * for what is published meanwhile.  Beyond it a session reads one message
 * when its ring is empty, so each goes on, an ack at a time, and is
 * pumped again by its acks.  (Unbounded, twenty sessions back at once
 * held 60 MB under bus_memory_max = 2M, and every qos-1 publish for a
 * connected subscriber was refused.)
 */
static uint64_t read_budget(const struct bus_session *s)
{
	const struct bus *b = s->bus;
	uint64_t half = b->memory_max / 2;

	if (!b->memory_max)
		return BUS_SPILL_CHUNK_BYTES;
	if (b->queued_mem < half)
		return half - b->queued_mem < BUS_SPILL_CHUNK_BYTES ? half - b->queued_mem : BUS_SPILL_CHUNK_BYTES;
	return s->qlen ? 0 : 1;
}

size_t bus_spill_load(struct bus_session *s)
{
	struct bus *b = s->bus;
	uint64_t budget = read_budget(s);

	if (!budget || !bus_spill_ix_turn(s))
		return 0;
	struct spill_read *sr = xcalloc(1, sizeof(*sr));

	sr->s = s;
	sr->budget = budget;
	bool later = false;	/* the rest waits for the index's scan */
	if (b->j) {
		struct jrnl_pos from = s->spill_pos;
		bool scan = true;
		if (bus_spill_ix_on(b)) {
			bus_spill_ix_take(s, read_back, sr);
			if (sr->owed >= s->spilled || sr->full)
				scan = false;
			else
				scan = !(later = bus_spill_ix_wait(s, &from));
		}
		if (scan) {
			jrnl_read(b->j, &from, read_back, sr);
			s->spill_pos = from;
		}
	}
	size_t n = sr->n;
	bool whole = sr->owed >= s->spilled || sr->full || later;
	bus_spill_ix_used(b, n);
	for (size_t i = 0; i < n; i++) {
		struct bus_msg *m = sr->m[i];
		unspill(s, m, intmap_del(&s->spill_acked, (int64_t)m->seq) != NULL);
		bus_msg_put(m);
	}
	free(sr);
	if (!whole && s->spilled) {
		/* Damage the journal's recovery could not mend (logged there). */
		log_error(NULL, "bus: %zu messages queued for %s are not in the journal any more: lost",
			  s->spilled, s->key);
		s->dropped += s->spilled;
		b->dropped_queue += s->spilled;
		spill_done(s);
	}
	return n;
}
