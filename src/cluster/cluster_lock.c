/*
 * cluster_lock.c - the gate on the lock table for the cluster: one struct
 * ckey per lock name this cohortd holds or wants, on the loop only.
 *
 *   IDLE      nothing sent; neither ours nor known busy
 *   CREATING  a create (or a take-over update) is on its way
 *   BUSY      others hold it at `rev` (seen: each holder and when it last
 *             moved): the watch says when it is deleted; once every holder
 *             stood still for its TTL, it is taken over by an update on `rev`
 *   OWNED     ours at `rev`, granted here; renewed every TTL/3
 *   DELETING  our guarded delete is on its way
 *
 * A local release always deletes the key, even with waiters here, who
 * then create it again: a cohortd does not keep a lock from the others
 * by handing it on to its own (waiters are served in arrival order per
 * cohortd; across cohortds, whichever create lands first).
 *
 * Shared: the key's value lists one entry per cohortd holding it shared
 * (cluster_value.c), and every change of that list is a write expecting
 * the revision it was computed from: a create (none there), a join (add
 * our entry), a renewal (bump our entry's seq), a release (drop it, or
 * delete the key when it was the last).  A write that finds the key moved
 * comes back with what it holds, and is computed again from that.
 */
#include "autoconfig.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_impl.h"
#include "evtimer.h"
#include "log.h"
#include "util.h"

enum kstate { K_IDLE, K_CREATING, K_BUSY, K_OWNED, K_DELETING };

struct ckey {
	struct cluster *c;
	char *name;
	char *key;
	enum kstate st;
	bool held, wanted;	/* as the table last said */
	enum lock_mode want_mode;	/* ... the head waiter's, or the leases' held here */
	int64_t want_ttl_ms;	/* the head waiter's */
	enum lock_mode mode;	/* CREATING, OWNED, DELETING: what we went for, hold, let go */
	uint64_t rev;		/* the key's: ours (OWNED), or the holder's (BUSY) */
	char *value;		/* OWNED shared: the key's value at rev, as last known */
	uint64_t seq;		/* OWNED shared: our entry's renewals */
	struct cseen_list seen;	/* BUSY: its holders, and when each last moved */
	uint64_t wrev;		/* the last change the watch (or our delete) told of, in any state: */
	bool wdel;		/* ... a delete, */
	char *wval;		/* ... or this value */
	int64_t ttl_ms;		/* OWNED: our lease's */
	int64_t renewed_ms;	/* OWNED: when the last renewal that worked was sent */
	bool renewing;		/* OWNED: an update is on its way */
	bool delete_after;	/* ... and the key is to go once it is back */
	int inflight;		/* messages that name this key, not back yet */
	ev_timer timer;		/* OWNED: renew; BUSY: take over */
};

static const char HEX[] = "0123456789ABCDEF";

/* KV keys take [-/_=.a-zA-Z0-9], '.' separating subject tokens: a lock
 * name's ':' and '.' become =3A and =2E ('=' itself =3D). */
char *cluster_key_encode(const char *name)
{
	struct sbuf b = {0};

	for (const char *p = name; *p; p++) {
		if (*p == '.' || *p == ':' || *p == '=')
			sbuf_addf(&b, "=%c%c", HEX[(unsigned char)*p >> 4], HEX[*p & 15]);
		else
			sbuf_addf(&b, "%c", *p);
	}
	return b.buf ? b.buf : xstrdup("");
}

char *cluster_key_decode(const char *key)
{
	struct sbuf b = {0};

	for (const char *p = key; *p; p++) {
		if (*p != '=') {
			sbuf_addf(&b, "%c", *p);
			continue;
		}
		const char *h = p[1] ? strchr(HEX, p[1]) : NULL, *l = h && p[2] ? strchr(HEX, p[2]) : NULL;
		if (!h || !l) {
			sbuf_free(&b);
			return NULL;
		}
		sbuf_addf(&b, "%c", (char)(((h - HEX) << 4) | (l - HEX)));
		p += 2;
	}
	return b.buf ? b.buf : xstrdup("");
}

static void step(struct ckey *k);
static void on_timer(struct ev_loop *loop, ev_timer *w, int revents);

/* A write of value (taken) expecting the key at last (CM_CREATE: absent). */
static void send_op(struct ckey *k, enum cmsg_kind kind, uint64_t last, char *value)
{
	struct cmsg *m = xcalloc(1, sizeof(*m));

	m->renewal = kind == CM_UPDATE && k->st == K_OWNED;
	m->kind = kind;
	m->key = xstrdup(k->key);
	m->value = value ? value : xstrdup("");
	m->last = last;
	m->cookie = k;
	m->sent_ms = now_mono_ms();
	k->inflight++;
	cluster_send(k->c, m);
}

/* What we write to have it in our mode, the key holding v (NULL: nothing). */
static char *wanted_value(struct ckey *k, const char *v, int64_t ttl_ms)
{
	if (k->mode == LOCK_SHARED)
		return cv_with(v && cv_shared(v) ? v : NULL, k->c->owner, ttl_ms, k->seq);
	return cv_exclusive(ttl_ms, k->c->owner);
}

static void set_value(struct ckey *k, const char *v)
{
	free(k->value);
	k->value = v ? xstrdup(v) : NULL;
}

/* Lets go of the key held at k->rev: the exclusive key, or our entry. */
static void send_release(struct ckey *k)
{
	char *rest = k->mode == LOCK_SHARED ? cv_without(k->value, k->c->owner) : NULL;

	k->st = K_DELETING;
	if (rest)
		send_op(k, CM_UPDATE, k->rev, rest);
	else
		send_op(k, CM_DELETE, k->rev, NULL);
}

static void ckey_free(struct ckey *k)
{
	free(k->name);
	free(k->key);
	free(k->value);
	free(k->wval);
	cseen_clear(&k->seen);
	free(k);
}

/* The delete marker last known to be a key's last message, kept once its
 * ckey is gone: the next acquire of the name writes on it at once, one
 * round trip, where reading the key first made two.  A stale one costs a
 * conflict, then that read.  At most CLUSTER_MARKERS names are kept. */
#define CLUSTER_MARKERS 4096
struct marker {
	char *name;
	uint64_t rev;
};

static void markers_clear(struct cluster *c)
{
	const char *name;
	void *v;

	for (size_t i = 0; map_next(&c->markers, &i, &name, &v);) {
		free(((struct marker *)v)->name);
		free(v);
	}
	map_free(&c->markers);
	memset(&c->markers, 0, sizeof(c->markers));
}

static void marker_drop(struct cluster *c, const char *name)
{
	struct marker *mk = map_del(&c->markers, name);

	if (mk) {
		free(mk->name);
		free(mk);
	}
}

static void marker_set(struct cluster *c, const char *name, uint64_t rev)
{
	struct marker *mk = map_get(&c->markers, name);

	if (mk) {
		if (rev > mk->rev)
			mk->rev = rev;
		return;
	}
	if (c->markers.len >= CLUSTER_MARKERS)
		markers_clear(c);
	mk = xmalloc(sizeof(*mk));
	mk->name = xstrdup(name);
	mk->rev = rev;
	map_put(&c->markers, mk->name, mk);
}

static void maybe_free(struct ckey *k)
{
	if (k->st != K_IDLE || k->held || k->wanted || k->inflight)
		return;
	if (k->wdel)
		marker_set(k->c, k->name, k->wrev);
	ev_timer_stop(k->c->loop, &k->timer);
	map_del(&k->c->keys, k->name);
	ckey_free(k);
}

static void timer_ms(struct ckey *k, int64_t ms)
{
	ev_timer_stop(k->c->loop, &k->timer);
	evtimer_start_ms(k->c->loop, &k->timer, ms > 0 ? ms : 0);
}

/* Others hold it at rev (value: who, with what TTL): wait for the watch
 * to say it is free, or take it over once every holder seen has stood
 * still for its TTL. */
static void busy(struct ckey *k, uint64_t rev, const char *value)
{
	int64_t now = now_mono_ms();

	if (k->wrev > rev && !k->wdel) {	/* the watch knows a later holder */
		rev = k->wrev;
		value = k->wval;
	}

	k->st = K_BUSY;
	if (rev >= k->rev || !k->seen.n) {
		k->rev = rev;
		cseen_update(&k->seen, value, rev, k->c->owner, now);
	}
	timer_ms(k, cseen_free_at(&k->seen, now) - now);
}

static void lost(struct ckey *k, const char *why)
{
	ev_timer_stop(k->c->loop, &k->timer);
	k->st = K_IDLE;
	k->held = false;
	lock_gate_lost(k->c->t, k->name, why);	/* calls update: step runs there */
}

static void step(struct ckey *k)
{
	switch (k->st) {
	case K_IDLE:
		if (k->wanted && !k->held && k->c->up) {
			k->st = K_CREATING;
			k->mode = k->want_mode;
			k->seq = 0;
			send_op(k, CM_CREATE, k->wdel ? k->wrev : 0, wanted_value(k, NULL, k->want_ttl_ms));
		}
		break;
	case K_BUSY:
		if (!k->wanted || k->want_mode != k->mode) {
			/* gone, or another mode at the head: it starts over */
			ev_timer_stop(k->c->loop, &k->timer);
			cseen_clear(&k->seen);
			k->st = K_IDLE;
			step(k);
			return;
		}
		break;
	case K_OWNED:
		if (k->held)
			break;
		ev_timer_stop(k->c->loop, &k->timer);
		if (k->renewing) {
			k->st = K_DELETING;
			k->delete_after = true;
		} else {
			send_release(k);
		}
		break;
	case K_CREATING:
	case K_DELETING:
		break;
	}
	maybe_free(k);
}

static void gate_update(void *arg, const char *name, bool held, bool wanted, enum lock_mode mode,
			int64_t ttl_ms)
{
	struct cluster *c = arg;
	struct ckey *k = map_get(&c->keys, name);

	if (!k) {
		if (!held && !wanted)
			return;
		k = xcalloc(1, sizeof(*k));
		k->c = c;
		k->name = xstrdup(name);
		k->key = cluster_key_encode(name);
		ev_init(&k->timer, on_timer);
		map_put(&c->keys, k->name, k);
		struct marker *mk = map_get(&c->markers, name);
		if (mk) {
			k->wrev = mk->rev;
			k->wdel = true;
			marker_drop(c, name);
		}
	}
	k->held = held;
	k->wanted = wanted;
	if (wanted || held)
		k->want_mode = mode;
	if (wanted)
		k->want_ttl_ms = ttl_ms;
	step(k);
}

/* A shared request here while we hold name shared and nobody waits: it
 * joins our entry at once. */
static bool gate_joined(void *arg, const char *name, uint64_t *token)
{
	struct cluster *c = arg;
	struct ckey *k = map_get(&c->keys, name);

	if (!c->up || !k || k->st != K_OWNED || k->mode != LOCK_SHARED)
		return false;
	*token = k->rev;
	return true;
}

/* Away, a request is refused at once; but before the first connection
 * (cohortd just started, its services with it) one that may wait queues
 * for it: it is granted once the cluster is up, or times out. */
static const char *gate_refusal(void *arg, int64_t wait_ms)
{
	struct cluster *c = arg;

	if (c->up || (!c->ever_up && wait_ms > 0))
		return NULL;
	c->refused++;
	return c->refusal;
}

static const struct lock_gate cluster_gate = {
	.refusal = gate_refusal,
	.update = gate_update,
	.joined = gate_joined,
};

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct ckey *k = container_of(w, struct ckey, timer);
	(void)loop;
	(void)revents;

	if (k->st == K_BUSY && k->wanted) {
		/* Its revision has not moved for its TTL: its cohortd stopped
		 * renewing.  Take it over, unless it moved meanwhile. */
		log_info(NULL, "lock %s: its holders at revision %" PRIu64 " stood still for their TTL: taking it over",
			 k->name, k->rev);
		cseen_clear(&k->seen);
		k->st = K_CREATING;
		k->mode = k->want_mode;
		k->seq = 0;
		send_op(k, CM_UPDATE, k->rev, wanted_value(k, NULL, k->want_ttl_ms));
	} else if (k->st == K_OWNED) {
		if (now_mono_ms() - k->renewed_ms >= k->ttl_ms) {
			lost(k, "cluster unreachable for the lease's TTL");
			return;
		}
		if (!k->renewing) {
			k->renewing = true;
			k->seq++;
			send_op(k, CM_UPDATE, k->rev, wanted_value(k, k->value, k->ttl_ms));
		}
		/* Every TTL/3, and at the very moment the lease runs out if no
		 * renewal works until then: a waiter elsewhere may take the key
		 * over from then on. */
		int64_t next = k->ttl_ms / 3 > 0 ? k->ttl_ms / 3 : 1;
		int64_t left = k->renewed_ms + k->ttl_ms - now_mono_ms();
		timer_ms(k, next < left ? next : left);
	}
}

/* A create, join or take-over came back. */
static void acquired(struct ckey *k, struct cmsg *m)
{
	int64_t ttl = 0;

	if (m->res == CR_OK) {
		k->st = K_OWNED;
		k->rev = m->rev;
		set_value(k, m->value);
		k->held = true;
		k->ttl_ms = k->want_ttl_ms;
		k->renewed_ms = m->sent_ms;
		k->renewing = k->delete_after = false;
		timer_ms(k, k->ttl_ms / 3 > 0 ? k->ttl_ms / 3 : 1);
		if (!lock_gate_grant(k->c->t, k->name, m->rev, k->mode, &ttl)) {
			/* Nobody waits any more, or the head waiter now wants
			 * the other mode (a shared entry must not back an
			 * exclusive lease): let go, and try again if wanted. */
			k->held = false;
			step(k);
		}
		return;
	}
	if (m->res == CR_CONFLICT && k->mode == LOCK_SHARED && cv_shared(m->value) &&
	    k->wanted && k->want_mode == LOCK_SHARED) {
		/* Held shared elsewhere: join, on the revision just read. */
		send_op(k, CM_UPDATE, m->rev, wanted_value(k, m->value, k->want_ttl_ms));
		return;
	}
	if (m->res == CR_CONFLICT && k->wrev > m->rev && k->wdel) {
		/* Deleted after it was read, and the watch told so while the
		 * request was on its way (it will not again): try again now. */
		k->st = K_IDLE;
		step(k);
		return;
	}
	if (m->res == CR_CONFLICT) {
		busy(k, m->rev, m->value);
		lock_gate_fail(k->c->t, k->name, false, "timeout");	/* those that would not wait */
		step(k);
		return;
	}
	k->st = K_IDLE;
	if (m->res == CR_GONE) {
		step(k);	/* deleted meanwhile: try again */
		return;
	}
	char why[320];
	snprintf(why, sizeof(why), "cluster unreachable: %s", m->err);
	lock_gate_fail(k->c->t, k->name, true, why);
}

static void renewed(struct ckey *k, struct cmsg *m)
{
	k->renewing = false;
	if (m->res == CR_OK) {
		if (m->rev > k->rev) {	/* the watch may have told of a later write */
			k->rev = m->rev;
			set_value(k, m->value);
		}
		k->renewed_ms = m->sent_ms;
	} else if (m->res == CR_CONFLICT && k->mode == LOCK_SHARED && cv_holds(m->value, k->c->owner)) {
		/* Another cohortd's entry moved the key: ours is still there.
		 * Renew again on what it holds now (the lease counts from the
		 * last renewal that worked). */
		if (m->rev > k->rev) {
			k->rev = m->rev;
			set_value(k, m->value);
		}
		if (!k->delete_after && k->st == K_OWNED) {
			k->renewing = true;
			k->seq++;
			send_op(k, CM_UPDATE, k->rev, wanted_value(k, k->value, k->ttl_ms));
			return;
		}
	}
	if (k->delete_after) {
		k->delete_after = false;
		send_release(k);
		return;
	}
	if (k->st != K_OWNED)
		return;
	if (m->res == CR_GONE || (m->res == CR_CONFLICT && !cv_holds(m->value, k->c->owner)))
		lost(k, "taken over in the cluster");
	else if (m->res == CR_CONFLICT && k->mode == LOCK_EXCLUSIVE)
		lost(k, "taken over in the cluster");
	else if (m->res == CR_AWAY && now_mono_ms() - k->renewed_ms >= k->ttl_ms)
		lost(k, "cluster unreachable for the lease's TTL");
}

/* Our release came back: a shared one that found the key moved is
 * computed again from what it holds now. */
static void released(struct ckey *k, struct cmsg *m)
{
	if (m->kind == CM_DELETE && m->res == CR_OK && m->rev > k->wrev) {
		/* The key's last message now: the next create writes on it. */
		k->wrev = m->rev;
		k->wdel = true;
		free(k->wval);
		k->wval = NULL;
	}
	if (m->res == CR_AWAY)
		log_warn(NULL, "lock %s: cannot delete its key (%s): the others take it over after its TTL",
			 k->name, m->err);
	if (k->st != K_DELETING)
		return;
	if (m->res == CR_CONFLICT && k->mode == LOCK_SHARED && cv_holds(m->value, k->c->owner)) {
		k->rev = m->rev;
		set_value(k, m->value);
		send_release(k);
		return;
	}
	k->st = K_IDLE;
	step(k);
}

static void watched(struct cluster *c, struct cmsg *m)
{
	char *name = cluster_key_decode(m->key);
	struct ckey *k = name ? map_get(&c->keys, name) : NULL;

	if (!k && name) {
		struct marker *mk = map_get(&c->markers, name);
		if (m->deleted)
			marker_set(c, name, m->rev);
		else if (mk && m->rev > mk->rev)
			marker_drop(c, name);	/* held again: a create would only conflict */
	}
	free(name);
	if (!k)
		return;
	if (m->rev > k->wrev) {
		k->wrev = m->rev;
		k->wdel = m->deleted;
		free(k->wval);
		k->wval = m->deleted ? NULL : xstrdup(m->value);
	}
	if (k->st == K_BUSY) {
		if (m->deleted) {
			ev_timer_stop(c->loop, &k->timer);
			cseen_clear(&k->seen);
			k->st = K_IDLE;
			step(k);
		} else if (m->rev > k->rev) {
			busy(k, m->rev, m->value);
		}
	} else if (k->st == K_OWNED && m->rev > k->rev) {
		if (m->deleted || !cv_holds(m->value, c->owner) || cv_shared(m->value) != (k->mode == LOCK_SHARED)) {
			lost(k, "taken over in the cluster");
		} else if (k->mode == LOCK_SHARED) {
			k->rev = m->rev;	/* another cohortd's entry moved: our next write expects this */
			set_value(k, m->value);
		}
	}
}

static void went_down(struct cluster *c, const char *why)
{
	const char *name;
	void *v;
	struct strv names = {0};

	if (c->up)
		log_warn(NULL, "cluster: unreachable (%s): lock requests are refused until it is back", why);
	else
		log_warn(NULL, "cluster: %s", why);
	if (c->up)
		c->state_ms = now_wall_ms();
	c->up = false;
	snprintf(c->refusal, sizeof(c->refusal), "cluster unreachable: no NATS server of %.300s answers (%.200s)",
		 c->urls, why);
	/* Waiters of keys that are not on their way are told now; holders
	 * keep their leases until a renewal fails for their TTL. */
	for (size_t i = 0; map_next(&c->keys, &i, &name, &v);) {
		struct ckey *k = v;
		if (k->st == K_BUSY || (k->st == K_IDLE && k->wanted))
			strv_push(&names, name);
	}
	for (size_t i = 0; i < names.n; i++) {
		struct ckey *k = map_get(&c->keys, names.v[i]);
		if (!k)
			continue;
		ev_timer_stop(c->loop, &k->timer);
		cseen_clear(&k->seen);
		k->st = K_IDLE;
		lock_gate_fail(c->t, k->name, true, c->refusal);
	}
	strv_free(&names);
}

void cluster_lock_handle(struct cluster *c, struct cmsg *m)
{
	struct ckey *k = m->cookie;

	switch (m->kind) {
	case CM_UP: {
		const char *name;
		void *v;
		struct strv names = {0};
		if (!c->up) {
			log_info(NULL, "cluster: connected to %s (locks in bucket %s)", m->err, c->bucket);
			c->state_ms = now_wall_ms();
			if (c->ever_up)
				c->reconnects++;
		}
		c->up = true;
		c->ever_up = true;
		snprintf(c->server, sizeof(c->server), "%s", m->err);
		/* Waiters left without a request on its way try now. */
		for (size_t i = 0; map_next(&c->keys, &i, &name, &v);)
			if (((struct ckey *)v)->st == K_IDLE)
				strv_push(&names, name);
		for (size_t i = 0; i < names.n; i++) {
			struct ckey *idle = map_get(&c->keys, names.v[i]);
			if (idle)
				step(idle);
		}
		strv_free(&names);
		return;
	}
	case CM_DOWN:
		went_down(c, m->err);
		return;
	case CM_ENTRY:
		watched(c, m);
		return;
	case CM_RTT:		/* cluster.c's */
	case CM_WATCH:
		return;
	case CM_CREATE:
	case CM_UPDATE:
	case CM_DELETE:
		break;
	}
	/* k stays while this message counts in inflight, whatever the
	 * table's callbacks do meanwhile. */
	if (m->kind == CM_DELETE || (!m->renewal && k->st == K_DELETING)) {
		released(k, m);
	} else if (m->renewal) {
		renewed(k, m);
	} else if (k->st == K_CREATING) {
		acquired(k, m);
	}
	k->inflight--;
	maybe_free(k);
}

void cluster_lock_init(struct cluster *c)
{
	lock_table_set_gate(c->t, &cluster_gate, c);
	snprintf(c->refusal, sizeof(c->refusal), "cluster unreachable: not connected to %s yet", c->urls);
}

/* At exit: the keys we own go (the worker sends them before it stops). */
void cluster_lock_close(struct cluster *c)
{
	const char *name;
	void *v;

	lock_table_set_gate(c->t, NULL, NULL);
	for (size_t i = 0; map_next(&c->keys, &i, &name, &v);) {
		struct ckey *k = v;
		ev_timer_stop(c->loop, &k->timer);
		if (k->st == K_OWNED && c->up && !k->renewing)
			send_release(k);	/* one try: if the key moved meanwhile, others take it over after its TTL */
	}
}

void cluster_lock_free(struct cluster *c)
{
	const char *name;
	void *v;

	for (size_t i = 0; map_next(&c->keys, &i, &name, &v);)
		ckey_free(v);
	map_free(&c->keys);
	markers_clear(c);
}
