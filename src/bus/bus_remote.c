/*
 * bus_remote.c - the bus in cluster mode (bus_remote.h): publishes handed
 * to the cluster and their answers, messages coming back from it, and
 * durable sessions whose queue is a consumer in the cluster.
 */
#include "autoconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "bus_remote.h"
#include "log.h"

/* What waits for the cluster's answer. */
enum pend_kind { P_PUB, P_HELLO, P_SUBS };

struct pending {
	enum pend_kind kind;
	uint64_t conn_id;
	json_t *id;
	bool resumed;		/* P_HELLO */
	bool qos0;		/* P_PUB: a retained qos-0 one (no ok) */
	char *pattern;		/* P_SUBS: the retained values to send after the ok */
};

void bus_set_remote(struct bus *b, const struct bus_remote_ops *ops, void *arg)
{
	b->remote = ops;
	b->remote_arg = arg;
}

static uint64_t pend(struct bus *b, enum pend_kind kind, struct bus_conn *c, json_t *id)
{
	struct pending *p = xcalloc(1, sizeof(*p));

	p->kind = kind;
	p->conn_id = c->id;
	p->id = json_incref(id);
	intmap_put(&b->remote_pending, (int64_t)++b->remote_cookie, p);
	return b->remote_cookie;
}

static void pending_free(struct pending *p)
{
	json_decref(p->id);
	free(p->pattern);
	free(p);
}

/* The connection waiting for p's answer, if it is still there. */
static struct bus_conn *take(struct bus *b, uint64_t cookie, struct pending **out)
{
	struct pending *p = intmap_del(&b->remote_pending, (int64_t)cookie);
	struct bus_conn *c = p ? bus_conn_by_id(b, p->conn_id) : NULL;

	*out = p;
	return c && !c->closing ? c : NULL;
}

/* --- publish -------------------------------------------------------------------------- */

void bus_remote_publish(struct bus_conn *c, const char *topic, const char *data, size_t len, int qos, bool retain,
			const char *mid, json_t *id)
{
	struct bus *b = c->bus;
	char why[256];

	if (!b->remote->up(b->remote_arg, why, sizeof(why))) {
		if (qos || retain) {
			b->remote_refused++;
			bus_conn_refuse(c, id, "cluster unreachable: %s; not stored, try again", why);
		} else
			bus_remote_published(b, 0, 0, false, why);	/* dropped, counted */
		return;
	}
	c->published++;
	char *msgid = mid ? xasprintf("%s/%s", c->identity, mid) : NULL;
	uint64_t cookie = qos || retain ? pend(b, P_PUB, c, id) : 0;
	if (cookie && !qos)
		((struct pending *)intmap_get(&b->remote_pending, (int64_t)cookie))->qos0 = true;
	int64_t ts_ms = now_wall_ms();
	if (!b->remote->publish(b->remote_arg, topic, data, len, qos, retain, ts_ms, c->identity, msgid, cookie)) {
		if (cookie)
			bus_remote_published(b, cookie, 0, false, "the cluster went away");
		else
			bus_remote_published(b, 0, 0, false, "the cluster went away");
	}
	/* This host's subscribers get it from the cluster's worker once it
	 * has gone to NATS (cluster_bus_nats.c, local_copy): NATS does not
	 * send it back here (NoEcho), and a round trip through the servers
	 * for a subscriber next door cost a millisecond. */
	free(msgid);
}

void bus_remote_published(struct bus *b, uint64_t cookie, uint64_t seq, bool duplicate, const char *err)
{
	struct pending *p = NULL;
	struct bus_conn *c;

	if (!cookie) {	/* a qos-0 message the cluster could not take */
		b->dropped_qos0++;
		b->remote_dropped++;
		return;
	}
	c = take(b, cookie, &p);
	if (c && err)
		bus_conn_refuse(c, p->id, "cluster unreachable: %s; not stored, try again", err);
	else if (c && !p->qos0)
		bus_conn_send_ok(c, p->id, seq, duplicate);
	if (duplicate)
		b->duplicates++;
	if (p)
		pending_free(p);
}

/* A message as the cluster brought it, one reference held: in one block
 * (a quarter of the allocations, each message of the fan-out). */
static struct bus_msg *remote_msg(struct bus *b, const char *topic, const char *data, size_t len, int64_t ts_ms)
{
	static const char from[] = "cluster";
	struct bus_msg *m = bus_msg_new_packed(topic, strlen(topic), data, len, NULL, 0, from, sizeof(from) - 1);

	m->seq = ++b->seq;
	m->ts_ms = ts_ms;
	m->remote = true;
	return m;
}

/* A message from the cluster: to the local subscribers, as a publish here
 * would reach them, but for the durable sessions' qos-1 deliveries (their
 * consumers bring those) and the journal (the cluster stored it). */
void bus_remote_deliver(struct bus *b, const char *topic, const char *data, size_t len, int qos, int64_t ts_ms)
{
	struct bus_msg *m = remote_msg(b, topic, data, len, ts_ms);

	m->qos = (uint8_t)(qos ? 1 : 0);
	bus_publish(b, m);
	bus_msg_put(m);
}

/* A retained value as the cluster keeps it: the table that sub and get
 * read (the live copy of the publish comes through bus_remote_deliver). */
void bus_remote_retained(struct bus *b, const char *topic, const char *data, size_t len, int64_t ts_ms)
{
	struct bus_msg *m = remote_msg(b, topic, data, len, ts_ms);

	m->retain = true;
	bus_retain(b, m);
	bus_msg_put(m);
}

/* --- durable sessions ----------------------------------------------------------------- */

/* Refuses request id, saying why, when the cluster is away. */
static bool refused_while_away(struct bus_conn *c, json_t *id, const char *what)
{
	struct bus *b = c->bus;
	char why[256];

	if (b->remote->up(b->remote_arg, why, sizeof(why)))
		return false;
	b->remote_refused++;
	bus_conn_refuse(c, id, "cluster unreachable: %s; %s, try again", why, what);
	return true;
}

bool bus_remote_hello_refused(struct bus_conn *c, json_t *id)
{
	if (!refused_while_away(c, id, "a durable session is kept in the cluster"))
		return false;
	free(c->identity);	/* no hello was said */
	c->identity = NULL;
	return true;
}

bool bus_remote_hello(struct bus_conn *c, struct bus_session *s, bool clean, bool resumed, json_t *id)
{
	struct bus *b = c->bus;

	if (clean)	/* the consumer and the patterns go too, wherever they were made */
		b->remote->session_close(b->remote_arg, s->key, true);
	uint64_t cookie = pend(b, P_HELLO, c, id);
	((struct pending *)intmap_get(&b->remote_pending, (int64_t)cookie))->resumed = resumed;
	s->remote_ready = false;
	b->remote->session_open(b->remote_arg, s->key, cookie);
	return true;
}

/* [["pattern",qos],...] */
static char *subs_json(const struct bus_session *s)
{
	json_t *a = json_array();

	for (size_t i = 0; i < s->nsubs; i++)
		json_array_append_new(a, json_pack("[s,i]", s->subs[i]->pattern, (int)s->subs[i]->qos));
	char *text = json_dumps(a, JSON_COMPACT);
	json_decref(a);
	return text;
}

/* The session's patterns become those stored in the cluster (another
 * cohortd may have changed them since this one last had the session). */
static void subs_restore(struct bus_session *s, const char *text)
{
	json_t *a = json_loads(text, 0, NULL);
	size_t i;
	json_t *v;

	if (!json_is_array(a)) {
		json_decref(a);
		return;
	}
	while (s->nsubs) {
		char *pat = xstrdup(s->subs[0]->pattern);
		bus_unsubscribe(s, pat);
		free(pat);
	}
	json_array_foreach(a, i, v) {
		const char *pat = json_string_value(json_array_get(v, 0));
		json_int_t q = json_integer_value(json_array_get(v, 1));
		if (pat && topic_pattern_valid(pat, true))
			bus_subscribe(s, pat, q ? 1 : 0);
	}
	json_decref(a);
}

void bus_remote_session_ready(struct bus *b, uint64_t cookie, const char *subs, const char *err)
{
	struct pending *p = NULL;
	struct bus_conn *c = take(b, cookie, &p);
	struct bus_session *s = c ? c->session : NULL;

	if (s && err) {
		bus_conn_refuse(c, p->id, "cluster unreachable: %s; the durable session is not open, try again",
				err);
		bus_conn_close(c, 1013, "cluster unreachable");
	} else if (s) {
		if (subs)
			subs_restore(s, subs);
		s->remote_ready = true;
		bus_conn_send_json(c, json_pack("{s:s,s:s,s:b}", "op", "welcome", "session", s->name, "resumed",
						p->resumed || subs != NULL));
		bus_pump(s);
	}
	if (p)
		pending_free(p);
}

bool bus_remote_can_sub(struct bus_conn *c, json_t *id)
{
	return !refused_while_away(c, id, "a durable session's subscriptions are kept in the cluster");
}

void bus_remote_subs_changed(struct bus_conn *c, const char *pattern, json_t *id)
{
	struct bus *b = c->bus;
	uint64_t cookie = pend(b, P_SUBS, c, id);
	char *text = subs_json(c->session);

	if (pattern)
		((struct pending *)intmap_get(&b->remote_pending, (int64_t)cookie))->pattern = xstrdup(pattern);
	b->remote->session_subs(b->remote_arg, c->session->key, text, cookie);
	free(text);
}

void bus_remote_subs_stored(struct bus *b, uint64_t cookie, const char *err)
{
	struct pending *p = NULL;
	struct bus_conn *c = take(b, cookie, &p);

	if (c && err) {
		bus_conn_refuse(c, p->id, "cluster unreachable: %s; the subscription is not kept, try again", err);
	} else if (c) {
		bus_conn_send_json(c, json_pack("{s:s,s:O}", "op", "ok", "id", p->id));
		if (p->pattern && c->session)
			bus_send_retained(c->session, p->pattern);
	}
	if (p)
		pending_free(p);
}

/* The highest qos of s's patterns that match topic, or -1. */
static int qos_for(const struct bus_session *s, const char *topic)
{
	int q = -1;

	for (size_t i = 0; i < s->nsubs; i++)
		if (s->subs[i]->qos > q && topic_matches(s->subs[i]->pattern, topic))
			q = s->subs[i]->qos;
	return q;
}

void bus_remote_session_msg(struct bus *b, const char *key, const char *topic, const char *data, size_t len,
			    int64_t ts_ms, unsigned delivered, const char *ack)
{
	struct bus_session *s = map_get(&b->sessions, key);

	if (!s || !s->conn || s->conn->closing || !s->remote_ready) {
		b->remote->ack(b->remote_arg, ack, true);	/* not here (any longer): again, elsewhere */
		return;
	}
	if (qos_for(s, topic) < 1) {
		/* Not for it, or at qos 0: the fan-out brought that copy. */
		b->remote->ack(b->remote_arg, ack, false);
		return;
	}
	struct bus_msg *m = remote_msg(b, topic, data, len, ts_ms);
	m->qos = 1;
	m->ack = xstrdup(ack);
	/* Sent before (by this cohortd or another): marked redelivered. */
	bus_enqueue(s, m, delivered > 1 ? 1 : 0, false);
	bus_pump(s);
	bus_msg_put(m);
}

void bus_remote_done(struct bus_session *s, struct bus_msg *m)
{
	struct bus *b = s->bus;

	if (b->remote)
		b->remote->ack(b->remote_arg, m->ack, s->remote_nak);
	free(m->ack);
	m->ack = NULL;
}

void bus_remote_free(struct bus *b)
{
	size_t it = 0;
	void *v;

	while (intmap_next(&b->remote_pending, &it, NULL, &v))
		pending_free(v);
	intmap_free(&b->remote_pending);
}
