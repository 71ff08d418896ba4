/*
 * bus_ops.c - one handler per op of the cohort.v1 protocol, dispatched
 * through one table; every request is checked here (fields, the peer's
 * hello, the service's publish / subscribe / locks patterns) before the
 * core sees it, and every client mistake is an error frame to it, never a
 * log line of ours.
 */
#include "autoconfig.h"

#include <libwebsockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "config_keys.h"
#include "lock.h"
#include "lock_request.h"
#include "pgroup.h"
#include "wire.h"

struct bus_op {
	const char *name;
	void (*fn)(struct bus_conn *c, json_t *req, json_t *id);
};

struct bus_identity *bus_identity_new(const char *name, const struct strv *locks, const struct strv *publish,
				      const struct strv *subscribe, void *owner)
{
	struct bus_identity *id = xcalloc(1, sizeof(*id));

	id->refs = 1;
	id->name = xstrdup(name);
	strv_copy(&id->locks, locks);
	strv_copy(&id->publish, publish);
	strv_copy(&id->subscribe, subscribe);
	id->owner = owner;
	return id;
}

struct bus_identity *bus_identity_ref(struct bus_identity *id)
{
	id->refs++;
	return id;
}

void bus_identity_unref(struct bus_identity *id)
{
	if (!id || --id->refs)
		return;
	free(id->name);
	strv_free(&id->locks);
	strv_free(&id->publish);
	strv_free(&id->subscribe);
	free(id);
}

void bus_forget_owner(struct bus *b, const void *owner)
{
	for (struct bus_conn *c = LIST_FIRST(&b->conns); c; c = LIST_NEXT(c, link))
		if (c->service && c->service->owner == owner)
			c->service->owner = NULL;
}

static bool allowed(const struct strv *pats, const char *topic, bool pattern)
{
	for (size_t i = 0; i < pats->n; i++)
		if (pattern ? pattern_within(topic, pats->v[i]) : topic_matches(pats->v[i], topic))
			return true;
	return false;
}

static const char *get_str(json_t *req, const char *field)
{
	return json_string_value(json_object_get(req, field));
}

/* --- hello ------------------------------------------------------------------------ */

static void op_hello(struct bus_conn *c, json_t *req, json_t *id)
{
	struct bus *b = c->bus;
	json_t *tok = json_object_get(req, "token"), *sess = json_object_get(req, "session");
	json_t *clean_v = json_object_get(req, "clean");

	if (c->session) {
		bus_conn_error(c, id, "hello was already said on this connection");
		return;
	}
	if ((tok && !json_is_string(tok)) || (sess && !json_is_string(sess) && !json_is_null(sess)) ||
	    (clean_v && !json_is_boolean(clean_v))) {
		bus_conn_error(c, id, "hello: token and session are strings, clean is true or false");
		return;
	}
	if (tok && bus_is_admin_token(b, json_string_value(tok))) {
		c->admin = true;	/* admin_token_file's: the dashboard, over TCP too */
		c->identity = xstrdup("admin");
	} else if (tok) {
		struct bus_identity *who = b->hooks.resolve(json_string_value(tok), b->hooks.arg);
		if (!who) {
			bus_conn_error(c, id, "bad token: not the COHORT_TOKEN of a running service");
			bus_conn_close(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "bad token");
			return;
		}
		bus_identity_unref(c->service);	/* a hello that failed after its token */
		c->service = who;
		c->admin = false;
		c->identity = xasprintf("service:%s", who->name);
	} else if (!c->unix_peer) {
		bus_conn_error(c, id, "a token is required over TCP (the service's COHORT_TOKEN)");
		bus_conn_close(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "no token");
		return;
	} else if (!c->admin) {
		bus_conn_error(c, id, "uid %u may not use the bus without a token (present COHORT_TOKEN)",
			       (unsigned)c->uid);
		bus_conn_close(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "no token");
		return;
	} else {
		c->identity = xstrdup("admin");
	}
	const char *name = sess && json_is_string(sess) ? json_string_value(sess) : NULL;
	if (name && !svc_name_valid(name)) {
		bus_conn_error(c, id, "bad session name (1-64 of A-Z a-z 0-9 _ . -)");
		free(c->identity);
		c->identity = NULL;
		return;
	}
	bool resumed = false;
	struct bus_session *s = NULL;
	if (name && b->remote && bus_remote_hello_refused(c, id))
		return;
	if (name) {
		char *key = xasprintf("%s/%s", c->identity, name);
		s = map_get(&b->sessions, key);
		free(key);
		if (s && json_is_true(clean_v)) {
			bus_store_session(b, s, true);
			if (s->conn)
				bus_conn_close(s->conn, BUS_CLOSE_TAKEN_OVER, "session cleaned by a new connection");
			bus_session_detach(s);
			bus_session_free(s);
			s = NULL;
		}
		resumed = s != NULL;
		if (!s) {
			s = bus_session_new(b, c->identity, name);
			bus_store_session(b, s, false);
		}
		if (s->conn) {	/* one connection per session: the newest wins */
			struct bus_conn *old = s->conn;
			bus_session_detach(s);
			bus_conn_close(old, BUS_CLOSE_TAKEN_OVER, "session taken over by a new connection");
		}
	} else {
		s = bus_session_new(b, c->identity, NULL);
	}
	bus_session_attach(s, c);
	if (name && b->remote) {	/* welcome once its consumer is read here */
		bus_remote_hello(c, s, json_is_true(clean_v), resumed, id);
		return;
	}
	bus_conn_send_json(c, json_pack("{s:s,s:s?,s:b}", "op", "welcome", "session", name, "resumed", resumed));
	bus_pump(s);	/* what it missed while away, in order */
}

/* --- subscriptions ------------------------------------------------------------------ */

static void op_sub(struct bus_conn *c, json_t *req, json_t *id)
{
	const char *pat = get_str(req, "topic");
	json_t *qv = json_object_get(req, "qos");
	long long qos = qv ? json_integer_value(qv) : 0;

	if (!pat || !topic_pattern_valid(pat, true)) {
		bus_conn_error(c, id, "sub: \"topic\" must be a pattern: dot-separated [A-Za-z0-9_@-] "
			       "segments, * for one, a last > for the rest");
		return;
	}
	if (qv && (!json_is_integer(qv) || qos < 0 || qos > 1)) {
		bus_conn_error(c, id, "sub: qos is 0 or 1");
		return;
	}
	if (c->service && !allowed(&c->service->subscribe, pat, true)) {
		bus_conn_refuse(c, id, "not allowed: %s may not subscribe to %s", c->identity, pat);
		return;
	}
	struct bus_session *s = c->session;
	bool remote = s->key && c->bus->remote;
	if (remote && !bus_remote_can_sub(c, id))
		return;
	if (bus_subscribe(s, pat, (uint8_t)qos) < 0) {
		bus_conn_refuse(c, id, "sub: a session has at most %d subscriptions", BUS_SUBS_MAX);
		return;
	}
	if (s->key)
		bus_store_sub(c->bus, s, pat, (uint8_t)qos);
	if (remote) {	/* ok once the cluster keeps it */
		bus_remote_subs_changed(c, pat, id);
		return;
	}
	bus_conn_send_json(c, json_pack("{s:s,s:O}", "op", "ok", "id", id));
	bus_send_retained(s, pat);	/* the state first, then what changes */
}

static void op_unsub(struct bus_conn *c, json_t *req, json_t *id)
{
	const char *pat = get_str(req, "topic");

	if (!pat) {
		bus_conn_error(c, id, "unsub: \"topic\" is the pattern to drop");
		return;
	}
	bool remote = c->session->key && c->bus->remote;
	if (remote && !bus_remote_can_sub(c, id))
		return;
	if (!bus_unsubscribe(c->session, pat)) {
		bus_conn_refuse(c, id, "not subscribed to %s", pat);
		return;
	}
	if (c->session->key)
		bus_store_unsub(c->bus, c->session, pat);
	if (remote) {
		bus_remote_subs_changed(c, NULL, id);
		return;
	}
	bus_conn_send_json(c, json_pack("{s:s,s:O}", "op", "ok", "id", id));
}

/* --- publish ------------------------------------------------------------------------- */

/* Stored before the ok: it goes once the journal has the ticket. */
static void ok_when_stored(struct bus_conn *c, json_t *id, uint64_t seq, uint64_t ticket, bool duplicate)
{
	struct bus *b = c->bus;

	if (!ticket || ticket <= b->durable_ticket) {
		bus_conn_send_ok(c, id, seq, duplicate);
		return;
	}
	struct bus_ok *o = xcalloc(1, sizeof(*o));
	o->ticket = ticket;
	o->conn_id = c->id;
	o->id = json_incref(id);
	o->seq = seq;
	o->duplicate = duplicate;
	STAILQ_INSERT_TAIL(&b->oks, o, link);
}

/* A publish whose fields are checked: DATA (DATA_LEN bytes) is JSON text
 * on one line, MID NULL or 1-200 bytes. */
static void publish(struct bus_conn *c, const char *topic, const char *data, size_t data_len, int qos,
		    bool retain, const char *mid, json_t *id)
{
	struct bus *b = c->bus;

	if (c->service && !allowed(&c->service->publish, topic, false)) {
		bus_conn_refuse(c, id, "not allowed: %s may not publish to %s", c->identity, topic);
		return;
	}
	if (b->remote) {	/* cluster mode: the cluster stores and routes it */
		bus_remote_publish(c, topic, data, data_len, qos, retain, mid, id);
		return;
	}
	if (mid) {
		const struct bus_mid *earlier = bus_mid_seen(b, c->identity, mid);
		if (earlier) {	/* a retry of what we have: a no-op */
			b->duplicates++;
			if (qos)
				ok_when_stored(c, id, earlier->seq, earlier->ticket, true);
			return;
		}
	}
	int jerr = (qos || retain) && b->j ? jrnl_failing(b->j) : 0;
	if (jerr) {
		bus_conn_refuse(c, id, "not stored: the bus journal cannot be written (%s); try again",
				strerror(jerr));
		return;
	}
	/* A bound on memory, like the disk's: refused, not queued, so the
	 * publisher knows and can try again once subscribers catch up.  What
	 * only absent sessions take goes to the journal (spilled), not to
	 * memory: it is bounded by the disk alone. */
	uint64_t mem_max = b->memory_max;
	if (qos && mem_max && b->queued_mem >= mem_max && bus_publish_takes_memory(b, topic)) {
		bus_conn_refuse(c, id, "not stored: the bus queues hold %llu bytes, bus_memory_max is %llu; "
				"try again", (unsigned long long)b->queued_mem, (unsigned long long)mem_max);
		return;
	}
	struct bus_msg *m = xcalloc(1, sizeof(*m));
	m->refs = 1;
	m->seq = ++b->seq;
	m->topic = xstrdup(topic);
	m->data = xstrndup(data, data_len);
	m->data_len = data_len;
	m->ts_ms = now_wall_ms();
	m->qos = (uint8_t)qos;
	m->retain = retain;
	m->mid = mid ? xstrdup(mid) : NULL;
	m->publisher = xstrdup(c->identity);
	uint64_t ticket = bus_publish(b, m);
	c->published++;
	uint64_t seq = m->seq;
	if (mid)
		bus_mid_add(b, c->identity, mid, seq, ticket, m->ts_ms);
	bus_msg_put(m);
	if (qos)
		ok_when_stored(c, id, seq, ticket, false);
}

static void op_pub(struct bus_conn *c, json_t *req, json_t *id)
{
	const char *topic = get_str(req, "topic");
	json_t *data = json_object_get(req, "data");
	json_t *qv = json_object_get(req, "qos"), *rv = json_object_get(req, "retain");
	json_t *mv = json_object_get(req, "mid");
	long long qos = qv ? json_integer_value(qv) : 0;

	if (!topic || !topic_pattern_valid(topic, false) || topic[0] == '$') {
		bus_conn_error(c, id, "pub: \"topic\" must be dot-separated [A-Za-z0-9_@-] segments "
			       "(no wildcards; $ topics are cohortd's)");
		return;
	}
	if ((qv && (!json_is_integer(qv) || qos < 0 || qos > 1)) || (rv && !json_is_boolean(rv)) ||
	    (mv && (!json_is_string(mv) || !json_string_length(mv) || json_string_length(mv) > 200))) {
		bus_conn_error(c, id, "pub: qos is 0 or 1, retain true or false, mid a string of 1-200 characters");
		return;
	}
	if (!data) {
		bus_conn_error(c, id, "pub: \"data\" is required (null for nothing)");
		return;
	}
	/* UTF-8 as it came (WebSocket text is UTF-8): a subscriber gets the
	 * same text, taken from the frame (its numbers may be beyond what
	 * jansson holds: see bus_handle), and on one line (a raw CR or LF in
	 * JSON is white space between tokens: that is taken out, nothing
	 * else).  Only a "data" key spelt with escapes needs the parsed value. */
	size_t raw_len = 0;
	const char *raw = jscan_member(c->frame, c->frame_len, "data", &raw_len);
	char *text = NULL;
	if (raw && (memchr(raw, '\n', raw_len) || memchr(raw, '\r', raw_len))) {
		text = xmalloc(raw_len);
		raw_len = jscan_compact(text, raw, raw_len);
		raw = text;
	} else if (!raw) {
		text = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY);
		raw = text;
		raw_len = strlen(text);
	}
	publish(c, topic, raw, raw_len, (int)qos, json_is_true(rv), mv ? json_string_value(mv) : NULL, id);
	free(text);
}

/*
 * A pub frame byte for byte as libcohort writes it (wire_read_pub) is
 * taken without a JSON value for the envelope: jansson took 5.2 us for
 * one of 168 bytes, a quarter of cohortd's time per message.  Any other
 * spelling (and every mistake) goes through jansson and op_pub.
 */
static bool pub_fast(struct bus_conn *c, const char *text, size_t len)
{
	char topic[1025], mid[201];	/* topics are at most 1024 bytes */
	struct wire_pub p;

	if (!c->session || !wire_read_pub(text, len, &p) || p.topic_len >= sizeof(topic) ||
	    (p.mid && (p.mid_len < 1 || p.mid_len >= sizeof(mid))))
		return false;
	memcpy(topic, p.topic, p.topic_len);
	topic[p.topic_len] = '\0';
	if (!topic_pattern_valid(topic, false) || topic[0] == '$')
		return false;
	if (p.mid) {
		memcpy(mid, p.mid, p.mid_len);
		mid[p.mid_len] = '\0';
	}
	json_t *idv = p.has_id ? json_integer((json_int_t)p.id) : json_null();
	publish(c, topic, p.data, p.data_len, p.qos, p.retain, p.mid ? mid : NULL, idv);
	json_decref(idv);
	return true;
}

static void op_ack(struct bus_conn *c, json_t *req, json_t *id)
{
	json_t *sv = json_object_get(req, "seq");

	if (!json_is_integer(sv) || json_integer_value(sv) < 1) {
		bus_conn_error(c, id, "ack: \"seq\" is the seq of a qos-1 message");
		return;
	}
	/* An ack for what is not owed (a duplicate after a redelivery) is
	 * harmless: nothing to say. */
	bus_ack(c->session, (uint64_t)json_integer_value(sv));
}

/* The answer to get is written as text: each value as it was published,
 * as deliveries carry it (a value need not fit jansson's numbers). */
static void op_get(struct bus_conn *c, json_t *req, json_t *id)
{
	const char *pat = get_str(req, "topic");
	struct sbuf out = {0};
	size_t it = 0;
	void *v;

	if (!pat || !topic_pattern_valid(pat, true)) {
		bus_conn_error(c, id, "get: \"topic\" must be a topic pattern");
		return;
	}
	if (c->service && !allowed(&c->service->subscribe, pat, true)) {
		bus_conn_refuse(c, id, "not allowed: %s may not read %s", c->identity, pat);
		return;
	}
	char *idtext = json_dumps(id, JSON_COMPACT | JSON_ENCODE_ANY | JSON_ENSURE_ASCII);
	wire_write_get_begin(&out, idtext ? idtext : "null");
	free(idtext);
	bool first = true;
	while (map_next(&c->bus->retained, &it, NULL, &v)) {
		struct bus_msg *m = v;
		if (!topic_matches(pat, m->topic))
			continue;
		struct wire_msg w = {.topic = m->topic, .topic_len = strlen(m->topic), .data = m->data,
				     .data_len = m->data_len, .seq = m->seq, .ts_ms = m->ts_ms};
		wire_write_get_item(&out, first, &w);
		first = false;
	}
	wire_write_get_end(&out);
	struct bus_frame *f = bus_frame_new(out.buf, out.len);
	sbuf_free(&out);
	bus_conn_send(c, f);
	bus_frame_put(f);
}

static void op_ping(struct bus_conn *c, json_t *req, json_t *id)
{
	(void)req;
	bus_conn_send_json(c, json_pack("{s:s,s:O}", "op", "pong", "id", id));
}

/* --- locks over the bus ---------------------------------------------------------------- */

static void lock_waited(struct lock_session *ls, void *cookie, bool granted, uint64_t token,
			int64_t expires_ms, const char *why)
{
	struct bus_conn *c = ls->user;
	json_t *id = intmap_del(&c->lock_waits, (int64_t)(uintptr_t)cookie);

	if (!id)
		return;
	if (granted)
		bus_conn_send_json(c, json_pack("{s:s,s:O,s:I,s:I}", "op", "ok", "id", id, "token",
						(json_int_t)token, "expires_ms", (json_int_t)expires_ms));
	else
		bus_conn_send_json(c, json_pack("{s:s,s:O,s:s}", "op", "error", "id", id, "error", why));
	json_decref(id);
}

static struct lock_session *locks_of(struct bus_conn *c)
{
	if (!c->locks) {
		char owner[160];
		snprintf(owner, sizeof(owner), "%s (bus, pid %d)", c->identity, (int)c->pid);
		c->locks = lock_session_open(c->bus->locks, owner, c->service ? &c->service->locks : NULL,
					     c->service ? c->service->owner : NULL, lock_waited);
		c->locks->user = c;
	}
	return c->locks;
}

/* The request's fields, as the control socket reads them (lock_request.c);
 * the error names the op, as every error of the bus does. */
static bool read_request(struct bus_conn *c, json_t *req, json_t *id, enum lock_op op, struct lock_request *r)
{
	static const char *const names[] = {"lock.acquire", "lock.renew", "lock.release"};
	char err[300];

	if (lock_request_parse(req, op, r, err, sizeof(err)) == 0)
		return true;
	bus_conn_error(c, id, "%s: %s", names[op], err);
	return false;
}

/* "pgid" and "stop_timeout_ms", as on the control socket (lock_group.c);
 * only from the unix socket, whose peer has a uid to check the group with. */
static bool get_work(struct bus_conn *c, const struct lock_request *r, json_t *id, struct lock_work *work)
{
	char err[200];

	*work = (struct lock_work){0};
	if (!r->pgid)
		return true;
	if (!c->unix_peer) {
		bus_conn_refuse(c, id, "lock.acquire: pgid is taken on the unix socket only (its uid is "
				"checked)");
		return false;
	}
	if (pgroup_check(r->pgid, c->uid, err, sizeof(err)) < 0) {
		bus_conn_refuse(c, id, "lock.acquire: pgid: %s", err);
		return false;
	}
	*work = (struct lock_work){.pgid = r->pgid, .uid = c->uid, .stop_timeout_ms = r->stop_timeout_ms};
	return true;
}

static void op_lock_acquire(struct bus_conn *c, json_t *req, json_t *id)
{
	struct lock_request r;
	struct lock_work work;
	int64_t expires;
	uint64_t token;
	const char *why;

	if (!read_request(c, req, id, LOCK_OP_ACQUIRE, &r) || !get_work(c, &r, id, &work))
		return;
	uint64_t cookie = ++c->next_cookie;
	switch (lock_acquire_work(locks_of(c), r.name, r.mode, r.ttl_ms, r.wait_ms, &work,
				  (void *)(uintptr_t)cookie, &token, &expires, &why)) {
	case LOCK_GRANTED:
		bus_conn_send_json(c, json_pack("{s:s,s:O,s:I,s:I}", "op", "ok", "id", id, "token",
						(json_int_t)token, "expires_ms", (json_int_t)expires));
		break;
	case LOCK_QUEUED:
		intmap_put(&c->lock_waits, (int64_t)cookie, json_incref(id));
		break;
	default:
		bus_conn_refuse(c, id, "%s", why);
		break;
	}
}

static void op_lock_renew(struct bus_conn *c, json_t *req, json_t *id)
{
	struct lock_request r;
	const char *why;
	int64_t expires;

	if (!read_request(c, req, id, LOCK_OP_RENEW, &r))
		return;
	if (lock_renew(locks_of(c), r.name, r.token, r.ttl_ms, &expires, &why) < 0)
		bus_conn_refuse(c, id, "%s", why);
	else
		bus_conn_send_json(c, json_pack("{s:s,s:O,s:I}", "op", "ok", "id", id, "expires_ms",
						(json_int_t)expires));
}

static void op_lock_release(struct bus_conn *c, json_t *req, json_t *id)
{
	struct lock_request r;
	const char *why;

	if (!read_request(c, req, id, LOCK_OP_RELEASE, &r))
		return;
	if (lock_release(locks_of(c), r.name, r.token, &why) < 0)
		bus_conn_refuse(c, id, "%s", why);
	else
		bus_conn_send_json(c, json_pack("{s:s,s:O}", "op", "ok", "id", id));
}

static const struct bus_op ops[] = {
	{"hello", op_hello},
	{"sub", op_sub},
	{"unsub", op_unsub},
	{"pub", op_pub},
	{"ack", op_ack},
	{"get", op_get},
	{"ping", op_ping},
	{"lock.acquire", op_lock_acquire},
	{"lock.renew", op_lock_renew},
	{"lock.release", op_lock_release},
	{"service", bus_op_service},	/* bus_sys.c */
};

/* {"op":"ack","seq":N} byte for byte as libcohort writes it, one per qos-1
 * delivery (wire_read_ack): taken without building a JSON value.  Any
 * other spelling (and every mistake) goes through jansson and op_ack. */
static bool ack_fast(struct bus_conn *c, const char *text, size_t len)
{
	uint64_t seq;

	if (!c->session || !wire_read_ack(text, len, &seq))
		return false;
	bus_ack(c->session, seq);
	return true;
}

void bus_handle(struct bus_conn *c, const char *text, size_t len)
{
	if (ack_fast(c, text, len) || pub_fast(c, text, len))
		return;

	json_error_t err;
	json_t *req = jflat_load(text, len);

	if (!req)
		req = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
	/* Refused only for the data (a number beyond 64 bits or a double, a
	 * \u0000): valid JSON all the same, and op_pub takes its text. */
	if (!req)
		req = jscan_load_around(text, len, "data", JSON_REJECT_DUPLICATES, &err);
	if (!req) {
		bus_conn_error(c, NULL, "bad JSON: %s (at column %d)", err.text, err.column);
		return;
	}
	json_t *id = json_object_get(req, "id");

	if (!id)	/* answered all the same, with "id": null */
		id = json_null();
	const char *name = json_is_object(req) ? get_str(req, "op") : NULL;
	if (!json_is_object(req)) {
		bus_conn_error(c, NULL, "a frame is one JSON object with an \"op\"");
	} else if (!name) {
		bus_conn_error(c, id, "missing \"op\"");
	} else {
		size_t i;
		for (i = 0; i < ARRAY_LEN(ops); i++)
			if (strcmp(ops[i].name, name) == 0)
				break;
		if (i == ARRAY_LEN(ops))
			bus_conn_error(c, id, "unknown op \"%s\"", name);
		else if (!c->session && ops[i].fn != op_hello)
			bus_conn_error(c, id, "say hello first: {\"op\":\"hello\",\"token\":...}");
		else {
			c->frame = text;
			c->frame_len = len;
			ops[i].fn(c, req, id);
			c->frame = NULL;
		}
	}
	json_decref(req);
}

void bus_ops_conn_gone(struct bus_conn *c)
{
	size_t it = 0;
	void *v;

	lock_session_close(c->locks);	/* a client that leaves lets go */
	c->locks = NULL;
	while (intmap_next(&c->lock_waits, &it, NULL, &v))
		json_decref(v);
	intmap_free(&c->lock_waits);
	struct bus_session *s = c->session;
	if (!s)
		return;
	if (s->key) {
		bus_session_detach(s);	/* durable: its queue waits for it */
	} else {
		bus_session_detach(s);
		bus_session_free(s);
	}
}
