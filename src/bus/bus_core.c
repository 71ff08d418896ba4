/*
 * bus_core.c - routing and delivery (see bus.h): sessions and their
 * subscriptions, the fan-out of one publish to every matching session,
 * qos-1 deliveries with acks, redelivery and dead letters, retained values.
 * No socket code: frames go out through bus_conn_send().
 */
#include "autoconfig.h"

#include <libwebsockets.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "evtimer.h"
#include "log.h"
#include "wire.h"

/* --- frames and messages ----------------------------------------------------- */

struct bus_frame *bus_frame_new(const char *text, size_t len)
{
	struct bus_frame *f = xmalloc(sizeof(*f) + LWS_PRE + len + 1);

	f->refs = 1;
	f->len = len;
	memcpy(f->data + LWS_PRE, text, len);
	f->data[LWS_PRE + len] = '\0';
	return f;
}

void bus_frame_put(struct bus_frame *f)
{
	if (f && --f->refs == 0)
		free(f);
}

const char bus_sys_publisher[] = "cohortd";

/* Copies n bytes of s and a NUL to *at, and moves *at past them. */
static char *pack_str(char **at, const char *s, size_t n)
{
	char *p = *at;

	memcpy(p, s, n);
	p[n] = 0;
	*at += n + 1;
	return p;
}

struct bus_msg *bus_msg_new_packed(const char *topic, size_t tn, const char *data, size_t dn, const char *mid,
				   size_t mn, const char *publisher, size_t pn)
{
	bool own_publisher = publisher != bus_sys_publisher;	/* the shared one is not copied */
	struct bus_msg *m = xcalloc(1, sizeof(*m) + tn + 1 + dn + 1 + (mn ? mn + 1 : 0) +
				       (own_publisher ? pn + 1 : 0));
	char *at = (char *)(m + 1);

	m->refs = 1;
	m->packed = true;
	m->topic = pack_str(&at, topic, tn);
	m->data = pack_str(&at, data, dn);
	m->data_len = dn;
	m->mid = mn ? pack_str(&at, mid, mn) : NULL;
	m->publisher = own_publisher ? pack_str(&at, publisher, pn) : bus_sys_publisher;
	return m;
}

void bus_msg_put(struct bus_msg *m)
{
	if (!m || --m->refs > 0)
		return;
	if (m->cache)
		intmap_del(m->cache, (int64_t)m->seq);
	bus_frame_put(m->frame[0]);
	bus_frame_put(m->frame[1]);
	free(m->ack);
	if (!m->packed) {
		free(m->topic);
		free(m->data);
		free(m->mid);
		if (m->publisher != bus_sys_publisher)
			free((char *)m->publisher);
	}
	free(m);
}

size_t bus_msg_size(const struct bus_msg *m)
{
	return strlen(m->topic) + m->data_len + 64;
}

/* The "msg" frame of m as delivered with qos, retained, redelivered; the
 * plain variants are built once and shared.  Every delivery passes here:
 * the frame is written in place, no printf. */
static struct bus_frame *msg_frame(struct bus_msg *m, uint8_t qos, bool retained, bool redelivered)
{
	bool plain = !retained && !redelivered;

	if (plain && m->frame[qos]) {
		m->frame[qos]->refs++;
		return m->frame[qos];
	}
	struct wire_msg w = {.topic = m->topic, .topic_len = strlen(m->topic), .data = m->data,
			     .data_len = m->data_len, .seq = m->seq, .qos = qos, .ts_ms = m->ts_ms,
			     .retained = retained, .redelivered = redelivered};
	struct bus_frame *f = xmalloc(sizeof(*f) + LWS_PRE + w.topic_len + w.data_len + WIRE_MSG_FIXED);
	char *start = (char *)f->data + LWS_PRE, *p = wire_write_msg(start, &w);

	*p = '\0';
	f->refs = 1;
	f->len = (size_t)(p - start);
	if (plain) {
		m->frame[qos] = f;
		f->refs++;
	}
	return f;
}

static void ack_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents);

/* --- sessions -------------------------------------------------------------------- */

struct bus_session *bus_session_new(struct bus *b, const char *identity, const char *name)
{
	struct bus_session *s = xcalloc(1, sizeof(*s));

	s->bus = b;
	ev_init(&s->ack_w, ack_timeout_cb);
	s->identity = xstrdup(identity);
	if (name) {
		s->name = xstrdup(name);
		s->key = xasprintf("%s/%s", identity, name);
		map_put(&b->sessions, s->key, s);
	}
	return s;
}

/* Live messages (retained, or owed to a durable session) are what a
 * compaction keeps; live_bytes tells when one is worth it. */
static bool is_live(const struct bus_msg *m)
{
	return m->durable_refs > 0 || m->retained;
}

static void live_change(struct bus *b, struct bus_msg *m, int durable_delta, int retained)
{
	bool before = is_live(m);

	m->durable_refs = (unsigned)((int)m->durable_refs + durable_delta);
	if (retained >= 0)
		m->retained = retained;
	bool after = is_live(m);
	if (!before && after)
		b->live_bytes += bus_msg_size(m);
	else if (before && !after)
		b->live_bytes -= bus_msg_size(m);
}

/* --- the queue: a ring of 16-byte slots ------------------------------------------- */

/* What a message costs while queues hold it: itself, its strings and the
 * frame it is sent as; counted once however many queues hold it. */
static uint64_t msg_mem(const struct bus_msg *m)
{
	size_t tlen = strlen(m->topic);

	return sizeof(*m) + tlen + m->data_len + strlen(m->publisher) + (m->mid ? strlen(m->mid) : 0) + 4 +
	       sizeof(struct bus_frame) + LWS_PRE + tlen + m->data_len + WIRE_MSG_FIXED;
}

static void trim_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct bus *b = container_of(w, struct bus, trim_w);
	(void)loop;
	(void)revents;

	/* free() keeps what it got back for the next malloc; after a backlog
	 * that is most of the process.  malloc_trim hands back every free
	 * page, not only the top of the heap. */
	malloc_trim(0);
	b->queued_mem_peak = b->queued_mem;
}

static void mem_add(struct bus *b, uint64_t n)
{
	b->queued_mem += n;
	if (b->queued_mem > b->queued_mem_peak)
		b->queued_mem_peak = b->queued_mem;
}

static void mem_sub(struct bus *b, uint64_t n)
{
	b->queued_mem -= n;
	uint64_t fallen = b->queued_mem_peak - b->queued_mem;
	if (fallen < BUS_TRIM_MIN || fallen < b->queued_mem_peak / 2 || ev_is_active(&b->trim_w))
		return;
	if (!b->trim_w.cb)
		ev_init(&b->trim_w, trim_cb);
	ev_timer_set(&b->trim_w, BUS_TRIM_DELAY, 0);
	ev_timer_start(b->loop, &b->trim_w);
}

/* Resizes the ring to cap slots (a power of 2 >= qcount, or 0), the head
 * at slot 0. */
static void ring_resize(struct bus_session *s, size_t cap)
{
	struct bus_delivery *q = cap ? xmalloc(cap * sizeof(*q)) : NULL;

	for (size_t i = 0; i < s->qcount; i++)
		q[i] = *bus_queue_at(s, i);
	free(s->q);
	if (cap > s->qcap)
		mem_add(s->bus, (cap - s->qcap) * sizeof(*q));
	else
		mem_sub(s->bus, (s->qcap - cap) * sizeof(*q));
	s->q = q;
	s->qcap = cap;
	s->qhead = 0;
}

static uint64_t slot_seq(const struct bus_delivery *d)
{
	return d->flags & BUS_D_HOLE ? d->hole_seq : d->msg->seq;
}

/* Index of seq in the queue, or qcount: seqs rise from head to tail (a
 * message is queued when it is published, and recovery replays in order). */
static size_t queue_index(struct bus_session *s, uint64_t seq)
{
	size_t lo = 0, hi = s->qcount;

	if (hi && slot_seq(bus_queue_at(s, 0)) == seq)
		return 0;	/* the common ack: the oldest in flight */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		uint64_t at = slot_seq(bus_queue_at(s, mid));
		if (at == seq)
			return mid;
		if (at < seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	return s->qcount;
}

struct bus_delivery *bus_queue_find(struct bus_session *s, uint64_t seq)
{
	size_t i = queue_index(s, seq);
	struct bus_delivery *d = i < s->qcount ? bus_queue_at(s, i) : NULL;

	return d && !(d->flags & BUS_D_HOLE) ? d : NULL;
}

/* The delivery becomes a hole; queue_trim takes the holes off the ends.
 * Removing never moves a slot, so an index stays valid across it. */
static void delivery_remove(struct bus_session *s, struct bus_delivery *d)
{
	struct bus *b = s->bus;
	struct bus_msg *m = d->msg;

	s->qlen--;
	s->qbytes -= bus_msg_size(m);
	if (d->flags & BUS_D_INFLIGHT) {
		s->inflight--;
		s->inflight_bytes -= bus_msg_size(m);
	}
	if (s->key && !(d->flags & BUS_D_QOS0))
		live_change(b, m, -1, -1);
	if (m->ack)	/* its consumer hears of it */
		bus_remote_done(s, m);
	d->hole_seq = m->seq;
	d->flags = BUS_D_HOLE;
	if (--m->queued_refs == 0)
		mem_sub(b, msg_mem(m));
	bus_msg_put(m);
}

/* Drops the holes at both ends; shrinks a ring that is mostly empty, so a
 * drained backlog gives its memory back. */
static void queue_trim(struct bus_session *s)
{
	while (s->qcount && bus_queue_at(s, 0)->flags & BUS_D_HOLE) {
		s->qhead = (s->qhead + 1) & (s->qcap - 1);
		s->qcount--;
		if (s->cursor)
			s->cursor--;
	}
	while (s->qcount > s->cursor && bus_queue_at(s, s->qcount - 1)->flags & BUS_D_HOLE)
		s->qcount--;
	if (!s->qcount)
		s->qhead = 0;
	if (s->qcap > 16 && s->qcount < s->qcap / 4)
		ring_resize(s, s->qcount ? s->qcap / 2 : 0);
}

static void queue_push(struct bus_session *s, struct bus_msg *m, uint8_t deliveries, uint8_t flags)
{
	if (s->qcount == s->qcap)
		ring_resize(s, s->qcap ? s->qcap * 2 : 16);
	struct bus_delivery *d = bus_queue_at(s, s->qcount++);
	d->msg = m;
	d->sent_ms = 0;
	d->deliveries = deliveries;
	d->flags = flags;
	m->refs++;
	if (m->queued_refs++ == 0)
		mem_add(s->bus, msg_mem(m));
	s->qlen++;
	s->qbytes += bus_msg_size(m);
	if (s->key && !(flags & BUS_D_QOS0))
		live_change(s->bus, m, +1, -1);
}

void bus_session_free(struct bus_session *s)
{
	struct bus *b = s->bus;

	for (size_t i = 0; i < s->nsubs; i++) {
		trie_remove(&b->subs, s->subs[i]->pattern, s->subs[i]);
		free(s->subs[i]->pattern);
		free(s->subs[i]);
	}
	free(s->subs);
	ev_timer_stop(b->loop, &s->ack_w);
	s->remote_nak = true;	/* what its consumer gave it goes again */
	for (size_t i = 0; i < s->qcount; i++)
		if (!(bus_queue_at(s, i)->flags & BUS_D_HOLE))
			delivery_remove(s, bus_queue_at(s, i));
	s->qcount = 0;
	ring_resize(s, 0);
	b->spilled_bytes -= s->spill_bytes;
	intmap_free(&s->spill_acked);
	bus_spill_ix_free(s);
	if (s->key)
		map_del(&b->sessions, s->key);
	free(s->key);
	free(s->name);
	free(s->identity);
	free(s);
}

static void enforce_bounds(struct bus_session *s);

void bus_session_attach(struct bus_session *s, struct bus_conn *c)
{
	s->conn = c;
	c->session = s;
	enforce_bounds(s);	/* what grew too old while it was away goes now */
}

/* Away: what was sent and not acked is owed again, marked redelivered. */
void bus_session_detach(struct bus_session *s)
{
	struct bus *b = s->bus;

	if (s->conn)
		s->conn->session = NULL;
	s->conn = NULL;
	ev_timer_stop(b->loop, &s->ack_w);
	/* Cluster mode: the consumer is read here no more, and what it gave
	 * goes back to it (after the unsubscribe: the jobs run in order), for
	 * whichever cohortd the client comes back to.  Even before the
	 * hello's answer came: the open is on its way, and the close follows
	 * it (else the consumer would go on pushing here, for nobody). */
	if (s->key && b->remote)
		b->remote->session_close(b->remote_arg, s->key, false);
	s->remote_ready = false;
	s->remote_nak = true;
	for (size_t i = 0; i < s->qcount; i++) {
		struct bus_delivery *d = bus_queue_at(s, i);
		if (d->flags & BUS_D_QOS0 || (!(d->flags & BUS_D_HOLE) && d->msg->ack))
			delivery_remove(s, d);	/* qos 0 is for connected subscribers only */
		else
			d->flags &= (uint8_t)~BUS_D_INFLIGHT;
	}
	s->remote_nak = false;
	s->inflight = 0;
	s->inflight_bytes = 0;
	s->cursor = 0;
	queue_trim(s);
}

/* --- subscriptions ------------------------------------------------------------------ */

int bus_subscribe(struct bus_session *s, const char *pattern, uint8_t qos)
{
	for (size_t i = 0; i < s->nsubs; i++) {
		if (strcmp(s->subs[i]->pattern, pattern) == 0) {
			s->subs[i]->qos = qos;	/* the same pattern again: new qos */
			return 0;
		}
	}
	if (s->nsubs >= BUS_SUBS_MAX)
		return -1;
	struct bus_sub *sub = xcalloc(1, sizeof(*sub));
	sub->s = s;
	sub->pattern = xstrdup(pattern);
	sub->qos = qos;
	s->subs = xrealloc(s->subs, (s->nsubs + 1) * sizeof(*s->subs));
	s->subs[s->nsubs++] = sub;
	trie_add(&s->bus->subs, sub->pattern, sub);
	return 1;
}

bool bus_unsubscribe(struct bus_session *s, const char *pattern)
{
	for (size_t i = 0; i < s->nsubs; i++) {
		struct bus_sub *sub = s->subs[i];
		if (strcmp(sub->pattern, pattern) != 0)
			continue;
		trie_remove(&s->bus->subs, sub->pattern, sub);
		free(sub->pattern);
		free(sub);
		s->subs[i] = s->subs[--s->nsubs];
		return true;
	}
	return false;
}

/* Retained values arrive as qos 0: they are state, not a stream to
 * acknowledge. */
static void send_retained(struct bus_session *s, struct bus_msg *m)
{
	struct bus_frame *f = msg_frame(m, 0, true, false);

	bus_conn_send(s->conn, f);
	bus_frame_put(f);
}

void bus_send_retained(struct bus_session *s, const char *pattern)
{
	size_t it = 0;
	void *v;

	if (!s->conn)
		return;
	/* A pattern without wildcards names one topic: looked up, not matched
	 * against every retained value (with 100,000 of them, each such
	 * subscription held the loop 3 ms). */
	if (topic_pattern_valid(pattern, false)) {
		struct bus_msg *m = map_get(&s->bus->retained, pattern);
		if (m)
			send_retained(s, m);
		return;
	}
	while (map_next(&s->bus->retained, &it, NULL, &v)) {
		struct bus_msg *m = v;
		if (topic_matches(pattern, m->topic))
			send_retained(s, m);
	}
}

/* --- qos 1 ---------------------------------------------------------------------------- */

/* Low 32 bits of the monotonic clock in ms: the age of a delivery in
 * flight is the difference, right as long as it is under the 49 days it
 * takes to wrap (an ack deadline is bus_ack_timeout away). */
static uint32_t now32(void)
{
	return (uint32_t)now_mono_ms();
}

static void ack_timer_arm(struct bus_session *s, int64_t ms)
{
	ev_timer_stop(s->bus->loop, &s->ack_w);
	evtimer_start_ms(s->bus->loop, &s->ack_w, ms > 0 ? ms : 0);
}

/* Sends slot i (i < cursor).  A qos-0 one is done once sent. */
static void send_delivery(struct bus_session *s, size_t i)
{
	struct bus_delivery *d = bus_queue_at(s, i);

	if (d->flags & BUS_D_QOS0) {
		struct bus_frame *f = msg_frame(d->msg, 0, false, false);
		bus_conn_send(s->conn, f);
		bus_frame_put(f);
		s->delivered++;
		s->bus->delivered_qos[0]++;
		delivery_remove(s, d);
		return;
	}
	struct bus_frame *f = msg_frame(d->msg, 1, false, d->deliveries > 0);

	if (d->deliveries)
		s->bus->redelivered++;
	else
		s->bus->delivered_qos[1]++;

	if (d->deliveries < UINT8_MAX)
		d->deliveries++;
	if (!(d->flags & BUS_D_INFLIGHT)) {
		d->flags |= BUS_D_INFLIGHT;
		s->inflight++;
		s->inflight_bytes += bus_msg_size(d->msg);
	}
	d->sent_ms = now32();
	if (!ev_is_active(&s->ack_w))
		ack_timer_arm(s, s->bus->ack_timeout_ms);
	bus_conn_send(s->conn, f);
	bus_frame_put(f);
}

void bus_pump(struct bus_session *s)
{
	for (;;) {
		while (s->conn && !s->conn->closing && s->cursor < s->qcount && s->inflight < BUS_INFLIGHT_MAX) {
			size_t i = s->cursor++;
			if (!(bus_queue_at(s, i)->flags & BUS_D_HOLE))
				send_delivery(s, i);
		}
		/* All the ring holds is sent: the spilled ones come next. */
		if (!s->spilled || !s->conn || s->conn->closing || s->cursor < s->qcount ||
		    s->inflight >= BUS_INFLIGHT_MAX || !bus_spill_load(s))
			break;
	}
	queue_trim(s);
}

static void dead_letter(struct bus *b, struct bus_session *s, struct bus_delivery *d)
{
	struct bus_msg *m = d->msg;
	struct bus_msg *dead = xcalloc(1, sizeof(*dead));

	log_warn(NULL, "bus: message %llu on %s not acknowledged by %s after %u deliveries: "
		 "moved to $dead.%s", (unsigned long long)m->seq, m->topic, s->key ? s->key : s->identity,
		 d->deliveries, m->topic);
	dead->refs = 1;
	dead->seq = ++b->seq;
	dead->topic = xasprintf("$dead.%s", m->topic);
	dead->data = xstrndup(m->data, m->data_len);
	dead->data_len = m->data_len;
	dead->ts_ms = now_wall_ms();
	dead->qos = 1;
	dead->publisher = bus_sys_publisher;
	s->dead++;
	b->dead_lettered++;
	if (s->key)
		bus_store_ack(b, s, m->seq);
	delivery_remove(s, d);
	bus_publish(b, dead);	/* may queue to s: its ring may move, not its indices */
	bus_msg_put(dead);
}

/* The first ack deadline passed: each delivery in flight that is due goes
 * again, or to $dead after BUS_MAX_DELIVERIES; the timer is set for the
 * next one due.  What is in flight lies before the cursor.  Dead letters
 * go after the scan: publishing one may pump this session, whose trim
 * would shift the indices under it. */
static void ack_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct bus_session *s = container_of(w, struct bus_session, ack_w);
	int64_t timeout = s->bus->ack_timeout_ms, next = -1;
	uint64_t *dead = NULL;
	size_t ndead = 0;
	(void)loop;
	(void)revents;

	for (size_t i = 0; i < s->cursor && i < s->qcount; i++) {
		struct bus_delivery *d = bus_queue_at(s, i);
		if (!(d->flags & BUS_D_INFLIGHT))
			continue;
		int64_t age = (uint32_t)(now32() - d->sent_ms);
		if (age < timeout) {
			if (next < 0 || timeout - age < next)
				next = timeout - age;
		} else if (d->deliveries >= BUS_MAX_DELIVERIES) {
			dead = xrealloc(dead, (ndead + 1) * sizeof(*dead));
			dead[ndead++] = d->msg->seq;
		} else if (s->conn && !s->conn->closing) {
			send_delivery(s, i);
			if (next < 0 || timeout < next)
				next = timeout;
		}
	}
	for (size_t k = 0; k < ndead; k++) {
		struct bus_delivery *d = bus_queue_find(s, dead[k]);
		if (d)
			dead_letter(s->bus, s, d);
	}
	free(dead);
	if (next >= 0 && s->conn)
		ack_timer_arm(s, next);
	bus_pump(s);
}

int bus_ack(struct bus_session *s, uint64_t seq)
{
	size_t i = queue_index(s, seq);
	struct bus_delivery *d = i < s->cursor && i < s->qcount ? bus_queue_at(s, i) : NULL;

	if (!d || !(d->flags & BUS_D_INFLIGHT))
		return -1;
	if (s->key && !d->msg->ack)
		bus_store_ack(s->bus, s, seq);
	s->delivered++;
	delivery_remove(s, d);
	if (!s->inflight)
		ev_timer_stop(s->bus->loop, &s->ack_w);
	bus_pump(s);
	return 0;
}

/* Drops the oldest of what waits to be sent while it is over the bounds
 * (counted); never a message in flight: its subscriber has it and may be
 * acking it (BUS_INFLIGHT_MAX bounds those). */
static void enforce_bounds(struct bus_session *s)
{
	struct bus *b = s->bus;
	int64_t now = now_wall_ms();

	/* What is before the cursor is in flight, what is after it waits. */
	for (size_t i = s->cursor; i < s->qcount; i++) {
		struct bus_delivery *d = bus_queue_at(s, i);
		if (d->flags & BUS_D_HOLE)
			continue;
		if (s->qbytes - s->inflight_bytes <= b->queue_max && now - d->msg->ts_ms <= b->queue_age_ms)
			break;
		s->dropped++;
		b->dropped_queue++;
		if (s->key && !(d->flags & BUS_D_QOS0))
			bus_store_ack(b, s, d->msg->seq);
		delivery_remove(s, d);
	}
	queue_trim(s);
}

void bus_enqueue(struct bus_session *s, struct bus_msg *m, uint8_t deliveries, bool qos0)
{
	queue_push(s, m, deliveries, qos0 ? BUS_D_QOS0 : 0);
	enforce_bounds(s);
}

/* Recovery: a message a durable session still owes an ack for. */
void bus_session_restore(struct bus_session *s, struct bus_msg *m)
{
	/* It may have been sent before the crash: count it as delivered once,
	 * so it goes out marked redelivered (spilled: once read back).  A
	 * spilled backlog stays spilled across a restart. */
	if (bus_spills(s)) {
		bus_spill_add(s, m);
		s->spill_resent = m->seq;
		return;
	}
	bus_enqueue(s, m, 1, false);
}

/* Recovery: the session acked (or dropped) seq. */
void bus_session_forget(struct bus_session *s, uint64_t seq)
{
	if (bus_spill_forget(s, seq))
		return;
	struct bus_delivery *d = bus_queue_find(s, seq);

	if (d) {
		delivery_remove(s, d);
		queue_trim(s);
	}
}

/* --- publish -------------------------------------------------------------------------- */

struct fanout {
	struct bus_msg *m;
	struct bus_session **hit;
	size_t n, cap;
};

static void collect(void *sub, void *arg)
{
	struct bus_sub *bs = sub;
	struct fanout *f = arg;
	struct bus_session *s = bs->s;

	if (s->epoch == f->m->seq) {
		if (bs->qos > s->epoch_qos)
			s->epoch_qos = bs->qos;
		return;
	}
	s->epoch = f->m->seq;
	s->epoch_qos = bs->qos;
	if (f->n == f->cap)
		f->hit = xrealloc(f->hit, (f->cap = f->cap ? f->cap * 2 : 16) * sizeof(*f->hit));
	f->hit[f->n++] = s;
}

void bus_retain(struct bus *b, struct bus_msg *m)
{
	struct bus_msg *old = map_get(&b->retained, m->topic);

	bus_mirror_changed(b, m->topic);
	if (old) {
		map_del(&b->retained, old->topic);
		live_change(b, old, 0, 0);
		bus_msg_put(old);
	}
	if (m->data_len == 4 && memcmp(m->data, "null", 4) == 0)
		return;	/* retain with data null clears the value */
	m->refs++;
	live_change(b, m, 0, 1);
	map_put(&b->retained, m->topic, m);
}

uint64_t bus_publish(struct bus *b, struct bus_msg *m)
{
	struct fanout f = {.m = m};
	size_t ndurable = 0;
	uint64_t ticket = 0;

	b->published++;
	b->published_qos[m->qos ? 1 : 0]++;
	trie_match(&b->subs, m->topic, collect, &f);
	struct bus_session **durable = xmalloc((f.n + 1) * sizeof(*durable));
	enum { QUEUE, SPILL, DROP } *how = xcalloc(f.n + 1, sizeof(*how));
	for (size_t i = 0; i < f.n; i++) {
		struct bus_session *s = f.hit[i];
		if (!m->qos || !s->epoch_qos || !s->key || m->remote)
			continue;
		if (bus_spills(s)) {
			/* A spilled queue at bus_queue_max takes no more: its
			 * oldest are on disk, not at hand to drop. */
			if (s->qbytes - s->inflight_bytes + s->spill_bytes + bus_msg_size(m) > b->queue_max) {
				how[i] = DROP;
				s->dropped++;
				b->dropped_queue++;
				continue;
			}
			how[i] = SPILL;
		}
		durable[ndurable++] = s;
	}
	if ((m->qos || m->retain) && !m->remote)
		ticket = bus_store_pub(b, m, durable, ndurable);
	if (m->retain)
		bus_retain(b, m);
	/* A fan-out to thousands is written as it goes, the first receivers
	 * first, not all after the last is queued (10,000: 5-7 ms); a few
	 * flushes, each a quarter of the way further, so a burst of small
	 * fan-outs keeps its frames batched per connection. */
	size_t flush_at = f.n >= BUS_FANOUT_EARLY ? BUS_FANOUT_FIRST : SIZE_MAX;
	for (size_t i = 0; i < f.n; i++) {
		struct bus_session *s = f.hit[i];
		if (i == flush_at) {
			bus_flush_now(b);
			flush_at *= 4;
		}
		uint8_t q = m->qos < s->epoch_qos ? m->qos : s->epoch_qos;
		if (how[i] == SPILL)
			bus_spill_add(s, m);
		if (how[i] != QUEUE)
			continue;
		if (q == 1 && m->remote && s->key)
			continue;	/* its consumer in the cluster brings it (bus_remote.c) */
		if (q == 1) {
			bus_enqueue(s, m, 0, false);
			bus_pump(s);
			continue;
		}
		if (!s->conn || s->conn->closing)
			continue;
		if (s->conn->out_bytes > BUS_OUT_MAX) {
			/* A slow qos-0 subscriber loses messages, nobody waits for it. */
			s->conn->dropped_qos0++;
			b->dropped_qos0++;
			continue;
		}
		if (s->cursor < s->qcount) {	/* behind qos-1 messages not sent yet: in order */
			bus_enqueue(s, m, 0, true);
			continue;
		}
		struct bus_frame *fr = msg_frame(m, 0, false, false);
		bus_conn_send(s->conn, fr);
		bus_frame_put(fr);
		s->delivered++;
		b->delivered_qos[0]++;
	}
	free(durable);
	free(how);
	free(f.hit);
	return ticket;
}

void bus_free_all(struct bus *b)
{
	size_t it = 0;
	void *v;

	while (b->sessions.len) {
		it = 0;
		map_next(&b->sessions, &it, NULL, &v);
		bus_session_free(v);
	}
	map_free(&b->sessions);
	it = 0;
	while (map_next(&b->retained, &it, NULL, &v))
		bus_msg_put(v);
	map_free(&b->retained);
	trie_free(&b->subs);
	ev_timer_stop(b->loop, &b->trim_w);
	struct bus_mid *x;
	while ((x = STAILQ_FIRST(&b->mid_order))) {
		STAILQ_REMOVE_HEAD(&b->mid_order, link);
		free(x->key);
		free(x);
	}
	map_free(&b->mids);
	intmap_free(&b->spill_cache);	/* empty: what was in it went with the queues */
	struct bus_ok *o;
	while ((o = STAILQ_FIRST(&b->oks))) {
		STAILQ_REMOVE_HEAD(&b->oks, link);
		json_decref(o->id);
		free(o);
	}
}
