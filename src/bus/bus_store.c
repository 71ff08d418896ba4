/*
 * bus_store.c - what the bus keeps in its journal, and getting it back.
 *
 * Records (the first byte is the type; fields in the jbuf codec):
 *   PUB      seq, ts_ms, flags (1 retain, 2 qos 1), topic, data, mid,
 *            publisher, and the durable sessions it was queued for
 *   ACK      session, seq          (acked, dropped or dead-lettered)
 *   SESSION  session, identity, name, clean
 *   SUB      session, qos, pattern
 *   UNSUB    session, pattern
 *   MID      publisher "\n" mid, seq, ts_ms   (compaction keeps de-dup alive)
 *   SEQ      seq                   (a compaction's counter: seqs never go back)
 *
 * Recovery replays them in order into an empty bus: durable sessions with
 * their subscriptions and owed messages, retained values, the seq counter
 * and the recent mids.  Every qos-1 publish and every retained value is
 * written before its ok is sent (per bus_fsync), so whatever got an ok is
 * back after a crash.  A compaction writes exactly that live state.
 */
#include "autoconfig.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "histo.h"
#include "log.h"

enum { R_PUB = 1, R_ACK, R_SESSION, R_SUB, R_UNSUB, R_MID, R_SEQ };

#define COMPACT_MIN (16u << 20)	/* never compact a journal smaller than this */

static uint64_t append(struct bus *b, struct jbuf *j)
{
	uint64_t t = 0;

	if (b->j)	/* not while recovering */
		t = jrnl_append(b->j, j->b.buf, j->b.len);
	sbuf_free(&j->b);
	return t;
}

static void put_pub(struct jbuf *j, const struct bus_msg *m, const char *const *keys, size_t n)
{
	jb_u8(j, R_PUB);
	jb_u64(j, m->seq);
	jb_u64(j, (uint64_t)m->ts_ms);
	jb_u8(j, (uint8_t)((m->retain ? 1 : 0) | (m->qos ? 2 : 0)));
	jb_str(j, m->topic, strlen(m->topic));
	jb_str(j, m->data, m->data_len);
	jb_str(j, m->mid ? m->mid : "", m->mid ? strlen(m->mid) : 0);
	jb_str(j, m->publisher, strlen(m->publisher));
	jb_u64(j, n);
	for (size_t i = 0; i < n; i++)
		jb_str(j, keys[i], strlen(keys[i]));
}

uint64_t bus_store_pub(struct bus *b, const struct bus_msg *m, struct bus_session **durable,
		       size_t ndurable)
{
	struct jbuf j = {0};
	const char **keys = xmalloc((ndurable + 1) * sizeof(char *));

	for (size_t i = 0; i < ndurable; i++)
		keys[i] = durable[i]->key;
	put_pub(&j, m, keys, ndurable);
	free(keys);
	return append(b, &j);
}

void bus_store_ack(struct bus *b, const struct bus_session *s, uint64_t seq)
{
	struct jbuf j = {0};

	jb_u8(&j, R_ACK);
	jb_str(&j, s->key, strlen(s->key));
	jb_u64(&j, seq);
	append(b, &j);
}

static void put_session(struct jbuf *j, const struct bus_session *s, bool clean)
{
	jb_u8(j, R_SESSION);
	jb_str(j, s->key, strlen(s->key));
	jb_str(j, s->identity, strlen(s->identity));
	jb_str(j, s->name, strlen(s->name));
	jb_u8(j, clean);
}

void bus_store_session(struct bus *b, const struct bus_session *s, bool clean)
{
	struct jbuf j = {0};

	put_session(&j, s, clean);
	append(b, &j);
}

static void put_sub(struct jbuf *j, const struct bus_session *s, const char *pattern, uint8_t qos)
{
	jb_u8(j, R_SUB);
	jb_str(j, s->key, strlen(s->key));
	jb_u8(j, qos);
	jb_str(j, pattern, strlen(pattern));
}

void bus_store_sub(struct bus *b, const struct bus_session *s, const char *pattern, uint8_t qos)
{
	struct jbuf j = {0};

	put_sub(&j, s, pattern, qos);
	append(b, &j);
}

void bus_store_unsub(struct bus *b, const struct bus_session *s, const char *pattern)
{
	struct jbuf j = {0};

	jb_u8(&j, R_UNSUB);
	jb_str(&j, s->key, strlen(s->key));
	jb_str(&j, pattern, strlen(pattern));
	append(b, &j);
}

/* --- mid de-duplication ---------------------------------------------------------- */

/* What one remembered mid costs in a snapshot: its key, seq, ts, framing. */
static uint64_t mid_size(const struct bus_mid *x)
{
	return strlen(x->key) + 32;
}

static void mid_prune(struct bus *b, int64_t now)
{
	struct bus_mid *x;

	while ((x = STAILQ_FIRST(&b->mid_order)) &&
	       (now - x->ts_ms > BUS_MID_WINDOW_MS || b->nmids > BUS_MID_MAX)) {
		STAILQ_REMOVE_HEAD(&b->mid_order, link);
		if (map_get(&b->mids, x->key) == x)
			map_del(&b->mids, x->key);
		b->mid_bytes -= mid_size(x);
		b->nmids--;
		free(x->key);
		free(x);
	}
}

/* "publisher\nmid": the key of the mid window; every qos-1 pub makes one. */
static char *mid_key(const char *publisher, const char *mid)
{
	size_t p = strlen(publisher), m = strlen(mid);
	char *key = xmalloc(p + m + 2);

	memcpy(key, publisher, p);
	key[p] = '\n';
	memcpy(key + p + 1, mid, m + 1);
	return key;
}

const struct bus_mid *bus_mid_seen(struct bus *b, const char *publisher, const char *mid)
{
	char *key = mid_key(publisher, mid);
	mid_prune(b, now_wall_ms());
	struct bus_mid *x = map_get(&b->mids, key);
	free(key);
	return x;
}

static void mid_add_key(struct bus *b, char *key, uint64_t seq, uint64_t ticket, int64_t ts)
{
	if (map_get(&b->mids, key)) {	/* recovery: a snapshot's PUB and its MID */
		free(key);
		return;
	}
	struct bus_mid *x = xcalloc(1, sizeof(*x));

	x->key = key;
	x->seq = seq;
	x->ticket = ticket;
	x->ts_ms = ts;
	STAILQ_INSERT_TAIL(&b->mid_order, x, link);
	map_put(&b->mids, x->key, x);
	b->mid_bytes += mid_size(x);
	if (++b->nmids > BUS_MID_MAX)
		mid_prune(b, ts);
}

void bus_mid_add(struct bus *b, const char *publisher, const char *mid, uint64_t seq, uint64_t ticket,
		 int64_t ts_ms)
{
	mid_add_key(b, mid_key(publisher, mid), seq, ticket, ts_ms);
}

/* --- recovery -------------------------------------------------------------------------- */

static void reset(void *arg)
{
	struct bus *b = arg;

	bus_free_all(b);
	b->seq = 0;
	b->live_bytes = 0;
	b->spilled_bytes = 0;
	b->mid_bytes = 0;
	b->nmids = 0;
}

static char *dup_str(struct jreader *r)
{
	size_t n;
	const char *s = jr_str(r, &n);
	return xstrndup(s, n);
}

struct bus_session *bus_store_session_of(struct bus *b, struct jreader *r)
{
	size_t n;
	const char *k = jr_str(r, &n);
	char buf[256];
	/* Once per PUB record and session it names: no allocation. */
	char *key = n < sizeof(buf) ? buf : xmalloc(n + 1);
	memcpy(key, k, n);
	key[n] = 0;
	struct bus_session *s = map_get(&b->sessions, key);
	if (key != buf)
		free(key);
	return s;
}

/* The message of a PUB record, past its type; r is left at its session
 * keys, *nkeys of them.  NULL if the record is malformed.  One block
 * holds the message and its strings: a recovery of ten million queued
 * messages made fifty million allocations, each with its malloc header
 * and rounding. */
static struct bus_msg *read_pub(struct jreader *r, uint64_t *nkeys)
{
	uint64_t seq = jr_u64(r);
	int64_t ts = (int64_t)jr_u64(r);
	uint8_t flags = jr_u8(r);
	size_t tn, dn, mn, pn;
	const char *topic = jr_str(r, &tn), *data = jr_str(r, &dn), *mid = jr_str(r, &mn);
	const char *publisher = jr_str(r, &pn);
	*nkeys = jr_u64(r);
	if (r->bad)
		return NULL;
	struct bus_msg *m = bus_msg_new_packed(topic, tn, data, dn, mid, mn, publisher, pn);

	m->seq = seq;
	m->ts_ms = ts;
	m->retain = flags & 1;
	m->qos = flags & 2 ? 1 : 0;
	return m;
}

static void replay_pub(struct bus *b, struct jreader *r)
{
	uint64_t nkeys;
	struct bus_msg *m = read_pub(r, &nkeys);

	if (!m)
		return;
	if (m->seq > b->seq)
		b->seq = m->seq;
	if (m->mid && now_wall_ms() - m->ts_ms <= BUS_MID_WINDOW_MS)
		bus_mid_add(b, m->publisher, m->mid, m->seq, 0, m->ts_ms);
	if (m->retain)
		bus_retain(b, m);
	for (uint64_t i = 0; i < nkeys && !r->bad; i++) {
		struct bus_session *s = bus_store_session_of(b, r);
		if (s)
			bus_session_restore(s, m);
	}
	bus_msg_put(m);
}

static void on_record(void *arg, const unsigned char *p, size_t len)
{
	struct bus *b = arg;
	struct jreader r = {p, p + len, false};
	struct bus_session *s;
	size_t n;
	uint8_t type = jr_u8(&r);

	switch (type) {
	case R_PUB:
		replay_pub(b, &r);
		break;
	case R_ACK: {
		s = bus_store_session_of(b, &r);
		uint64_t acked = jr_u64(&r);
		if (s && !r.bad)
			bus_session_forget(s, acked);
		break;
	}
	case R_SESSION: {
		s = bus_store_session_of(b, &r);
		char *identity = dup_str(&r), *name = dup_str(&r);
		bool clean = jr_u8(&r);
		if (!r.bad) {
			if (s && clean) {
				bus_session_free(s);
				s = NULL;
			}
			if (!s)
				bus_session_new(b, identity, name);
		}
		free(identity);
		free(name);
		break;
	}
	case R_SUB: {
		s = bus_store_session_of(b, &r);
		uint8_t qos = jr_u8(&r);
		const char *pat = jr_str(&r, &n);
		if (s && !r.bad) {
			char *p2 = xstrndup(pat, n);
			bus_subscribe(s, p2, qos);
			free(p2);
		}
		break;
	}
	case R_UNSUB: {
		s = bus_store_session_of(b, &r);
		const char *pat = jr_str(&r, &n);
		if (s && !r.bad) {
			char *p2 = xstrndup(pat, n);
			bus_unsubscribe(s, p2);
			free(p2);
		}
		break;
	}
	case R_MID: {
		char *key = dup_str(&r);
		uint64_t seq = jr_u64(&r);
		int64_t ts = (int64_t)jr_u64(&r);
		if (!r.bad && now_wall_ms() - ts <= BUS_MID_WINDOW_MS)
			mid_add_key(b, key, seq, 0, ts);
		else
			free(key);
		break;
	}
	case R_SEQ: {
		uint64_t seq = jr_u64(&r);
		if (!r.bad && seq > b->seq)
			b->seq = seq;
		break;
	}
	default:
		log_warn(NULL, "bus journal: a record of unknown type %u, %zu bytes (skipped)", type, len);
		break;
	}
}

/* Publisher oks whose records are now on disk. */
static void on_durable(void *arg, uint64_t ticket)
{
	struct bus *b = arg;
	struct bus_ok *o;

	b->durable_ticket = ticket;
	bus_spill_ix_written(b);
	while ((o = STAILQ_FIRST(&b->oks)) && o->ticket <= ticket) {
		STAILQ_REMOVE_HEAD(&b->oks, link);
		struct bus_conn *c = bus_conn_by_id(b, o->conn_id);
		if (c)
			bus_conn_send_ok(c, o->id, o->seq, o->duplicate);
		json_decref(o->id);
		free(o);
	}
}

static void compact_cb(struct ev_loop *loop, ev_check *w, int revents);

int bus_store_open(struct bus *b, const char *dir, char *err, size_t errlen)
{
	b->j = NULL;
	STAILQ_INIT(&b->mid_order);	/* recovery fills it */
	STAILQ_INIT(&b->oks);
	struct journal *j = jrnl_open(dir, b->fsync, b->loop, reset, on_record, on_durable,
				      b, &b->recovery, err, errlen);
	if (!j)
		return -1;
	b->j = j;
	ev_check_init(&b->compact_w, compact_cb);
	ev_check_start(b->loop, &b->compact_w);
	bus_spill_ix_start(b);
	size_t queued = 0, it = 0;
	void *v;
	while (map_next(&b->sessions, &it, NULL, &v))
		queued += ((struct bus_session *)v)->qlen + ((struct bus_session *)v)->spilled;
	log_info(NULL, "bus: recovered %zu records (%zu durable session%s, %zu queued message%s, "
		 "%zu retained value%s)%s", b->recovery.records, b->sessions.len,
		 b->sessions.len == 1 ? "" : "s", queued, queued == 1 ? "" : "s", b->retained.len,
		 b->retained.len == 1 ? "" : "s", b->recovery.truncated ? "; cut a torn tail" : "");
	/* Each damaged place was logged with its file and offset; the sum,
	 * once, where an operator looks first. */
	const struct jrnl_recovery *r = &b->recovery;
	if (r->corrupt)
		log_error(NULL, "bus journal: corruption: %zu damaged place%s (%llu bytes) left out; "
			  "the records around them were kept (see above)", r->corrupt,
			  r->corrupt == 1 ? "" : "s", (unsigned long long)r->corrupt_bytes);
	if (r->missing)
		log_error(NULL, "bus journal: corruption: %llu segment%s missing (see above)",
			  (unsigned long long)r->missing, r->missing == 1 ? "" : "s");
	return 0;
}

void bus_store_close(struct bus *b)
{
	ev_check_stop(b->loop, &b->compact_w);
	bus_spill_ix_stop(b);
	jrnl_close(b->j);
	b->j = NULL;
}

uint64_t bus_store_pub_keys(const unsigned char *p, size_t len, struct jreader *keys, uint64_t *nkeys)
{
	struct jreader r = {p, p + len, false};
	size_t n;

	if (jr_u8(&r) != R_PUB)
		return 0;
	uint64_t seq = jr_u64(&r);
	jr_u64(&r);	/* ts_ms */
	jr_u8(&r);	/* flags */
	for (int i = 0; i < 4; i++)	/* topic, data, mid, publisher */
		jr_str(&r, &n);
	*nkeys = jr_u64(&r);
	*keys = r;
	return r.bad ? 0 : seq;
}

/* A PUB record's message (see bus.h). */
struct bus_msg *bus_store_read_pub(const unsigned char *p, size_t len, uint64_t min_seq, struct jreader *keys,
				   uint64_t *nkeys)
{
	struct jreader r = {p, p + len, false};

	if (jr_u8(&r) != R_PUB)
		return NULL;
	*keys = r;
	uint64_t seq = jr_u64(&r);	/* first, so most records cost no more */
	if (r.bad || seq < min_seq)
		return NULL;
	return read_pub(keys, nkeys);
}

/* --- compaction -------------------------------------------------------------------------- */

static int by_seq(const void *x, const void *y)
{
	const struct bus_msg *a = *(struct bus_msg *const *)x, *c = *(struct bus_msg *const *)y;
	return (a->seq > c->seq) - (a->seq < c->seq);
}

/* The snapshot's PUB records, in seq order: those of the messages in
 * memory (msgs, sorted) merged with the spilled ones read from the
 * journal. */
struct snap_pubs {
	struct bus *b;
	struct jrnl_snap *out;
	struct intmap *owners;	/* seq -> struct strv* of session keys */
	struct bus_msg **msgs;
	size_t n, next;
};

/* One PUB record of m for these sessions; frees keys. */
static void snap_pub(struct snap_pubs *sp, const struct bus_msg *m, struct strv *keys)
{
	struct jbuf j = {0};
	struct bus_msg tmp = *m;

	tmp.retain = m->retained;	/* no longer the topic's value: not retained */
	put_pub(&j, &tmp, (const char *const *)keys->v, keys->n);
	jrnl_snap_record(sp->out, j.b.buf, j.b.len);
	sbuf_free(&j.b);
	strv_free(keys);
	free(keys);
}

/* The messages in memory before seq (all of them: UINT64_MAX). */
static void snap_upto(struct snap_pubs *sp, uint64_t seq)
{
	while (sp->next < sp->n && sp->msgs[sp->next]->seq < seq) {
		struct bus_msg *m = sp->msgs[sp->next++];
		snap_pub(sp, m, intmap_get(sp->owners, (int64_t)m->seq));
	}
}

/* A record of the journal: a PUB still owed to spilled sessions goes in,
 * naming them (and the sessions that hold it in memory, if any). */
static bool snap_spilled(void *arg, const unsigned char *p, size_t len)
{
	struct snap_pubs *sp = arg;
	struct jreader at;
	uint64_t nkeys;
	struct strv *keys = NULL;
	struct bus_msg *m = bus_store_read_pub(p, len, 1, &at, &nkeys);

	if (!m)
		return true;
	uint64_t seq = m->seq;
	for (uint64_t i = 0; i < nkeys && !at.bad; i++) {
		struct bus_session *s = bus_store_session_of(sp->b, &at);
		if (!s || !s->spilled || seq < s->spill_next || intmap_get(&s->spill_acked, (int64_t)seq))
			continue;
		if (!keys)
			keys = xcalloc(1, sizeof(*keys));
		strv_push(keys, s->key);
	}
	if (keys) {
		snap_upto(sp, seq);
		if (sp->next < sp->n && sp->msgs[sp->next]->seq == seq) {	/* in memory too */
			struct bus_msg *mm = sp->msgs[sp->next++];
			struct strv *more = intmap_get(sp->owners, (int64_t)seq);
			for (size_t i = 0; i < more->n; i++)
				strv_push(keys, more->v[i]);
			strv_free(more);
			free(more);
			snap_pub(sp, mm, keys);
		} else {
			snap_pub(sp, m, keys);
		}
	}
	bus_msg_put(m);
	return true;
}

/* The live state, as records. */
static void snapshot(struct bus *b, struct jrnl_snap *out)
{
	struct intmap owners = {0};	/* seq -> struct strv* of session keys */
	struct bus_msg **msgs = NULL;
	size_t n = 0, cap = 0, it = 0;
	void *v;
	struct jbuf j = {0};

	mid_prune(b, now_wall_ms());
	jb_u8(&j, R_SEQ);
	jb_u64(&j, b->seq);
	jrnl_snap_record(out, j.b.buf, j.b.len);
	sbuf_free(&j.b);
	while (map_next(&b->sessions, &it, NULL, &v)) {
		struct bus_session *s = v;
		/* A record each: replay reads one op per record. */
		put_session(&j, s, false);
		jrnl_snap_record(out, j.b.buf, j.b.len);
		sbuf_free(&j.b);
		for (size_t i = 0; i < s->nsubs; i++) {
			put_sub(&j, s, s->subs[i]->pattern, s->subs[i]->qos);
			jrnl_snap_record(out, j.b.buf, j.b.len);
			sbuf_free(&j.b);
		}
		for (size_t q = 0; q < s->qcount; q++) {
			const struct bus_delivery *d = bus_queue_at(s, q);
			if (d->flags & (BUS_D_HOLE | BUS_D_QOS0) || d->msg->ack)
				continue;	/* (a consumer's in the cluster: it keeps it) */
			struct strv *keys = intmap_get(&owners, (int64_t)d->msg->seq);
			if (!keys) {
				keys = xcalloc(1, sizeof(*keys));
				intmap_put(&owners, (int64_t)d->msg->seq, keys);
				if (n == cap)
					msgs = xrealloc(msgs, (cap = cap ? cap * 2 : 64) * sizeof(*msgs));
				msgs[n++] = d->msg;
			}
			strv_push(keys, s->key);
		}
	}
	it = 0;
	while (map_next(&b->retained, &it, NULL, &v)) {
		struct bus_msg *m = v;
		if (intmap_get(&owners, (int64_t)m->seq) || m->topic[0] == '$' || m->remote)
			continue;	/* $sys values are cohortd's, in memory only (bus_sys.c); the cluster's, its */
		intmap_put(&owners, (int64_t)m->seq, xcalloc(1, sizeof(struct strv)));
		if (n == cap)
			msgs = xrealloc(msgs, (cap = cap ? cap * 2 : 64) * sizeof(*msgs));
		msgs[n++] = m;
	}
	if (n)
		qsort(msgs, n, sizeof(*msgs), by_seq);
	struct snap_pubs sp = {b, out, &owners, msgs, n, 0};
	if (b->spilled_bytes) {
		struct jrnl_pos from = {0};
		jrnl_read(b->j, &from, snap_spilled, &sp);
	}
	snap_upto(&sp, UINT64_MAX);
	free(msgs);
	intmap_free(&owners);
	for (struct bus_mid *x = STAILQ_FIRST(&b->mid_order); x; x = STAILQ_NEXT(x, link)) {
		jb_u8(&j, R_MID);
		jb_str(&j, x->key, strlen(x->key));
		jb_u64(&j, x->seq);
		jb_u64(&j, (uint64_t)x->ts_ms);
		jrnl_snap_record(out, j.b.buf, j.b.len);
		sbuf_free(&j.b);
	}
}

static void snapshot_fn(void *arg, struct jrnl_snap *out)
{
	snapshot(arg, out);
}

/* A forked compaction is done (bytes 0: it failed, logged). */
static void compacted(void *arg, uint64_t bytes)
{
	struct bus *b = arg;

	if (!bytes)
		return;
	b->last_snapshot = bytes;
	log_info(NULL, "bus journal: compacting %llu bytes to %llu bytes of live state (written by a "
		 "child in %lld ms; the loop paused %.1f ms to fork it)", (unsigned long long)b->compact_from,
		 (unsigned long long)bytes, (long long)(now_mono_ms() - b->compact_t0), b->compact_fork_ms);
}

/*
 * Runs once per loop iteration, after every handler of it: a snapshot taken
 * in the middle of a publish would miss the message whose record it drops.
 */
static void compact_cb(struct ev_loop *loop, ev_check *w, int revents)
{
	struct bus *b = container_of(w, struct bus, compact_w);
	(void)loop;
	(void)revents;

	if (!b->j)
		return;
	uint64_t size = jrnl_size(b->j);
	/* Worth it once the journal is 4x what a snapshot would keep; and never
	 * again before it has doubled since the last one, whatever the
	 * estimate says (a compaction takes a while). */
	if (size < COMPACT_MIN || size < 4 * (b->live_bytes + b->mid_bytes + b->spilled_bytes) ||
	    size < 2 * b->last_snapshot ||
	    !jrnl_may_compact(b->j))
		return;
	/* Written by a child from its copy of the state: the loop goes on. */
	int64_t t0 = histo_now_us();
	int rc = jrnl_fork_compact(b->j, snapshot_fn, compacted, b);
	if (rc == 0)
		return;		/* the writer is busy: the next iteration */
	if (rc > 0) {
		b->compact_from = size;
		b->compact_t0 = now_mono_ms();
		b->compact_fork_ms = (double)(histo_now_us() - t0) / 1e3;
		return;
	}
	log_warn(NULL, "bus journal: cannot fork to compact: %s (compacting in the loop)", strerror(errno));
	/* Written to a file as it is made: the spilled queues it copies
	 * are not to be in memory, even for a while. */
	struct jrnl_snap *snap = jrnl_snap_begin(b->j);
	int64_t t1 = now_mono_ms();
	snapshot(b, snap);
	uint64_t written = jrnl_snap_end(b->j, snap);
	if (!written)
		return;
	b->last_snapshot = written;
	log_info(NULL, "bus journal: compacting %llu bytes to %llu bytes of live state (%lld ms)",
		 (unsigned long long)size, (unsigned long long)written, (long long)(now_mono_ms() - t1));
}
