/*
 * libcohort.c - the client library (see cohort.h): the cohort.v1 protocol
 * over the WebSocket transport in wsc.c, with requests matched to answers
 * by id, subscriptions matched client-side to route messages to their
 * callbacks, and a reconnect that puts everything back as it was.
 */
#include "autoconfig.h"

#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "bus_trie.h"
#include "cohort.h"
#include "map.h"
#include "wire.h"
#include "wsc.h"

#define OPEN_TIMEOUT_MS 3000
#define CALL_TIMEOUT_MS 30000
#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 30000
#define REFUSAL_CLOSE_MS 1000	/* after a refused hello, the Close frame that says why */
#define CLOSE_TAKEN_OVER 4000	/* bus.h: BUS_CLOSE_TAKEN_OVER */

struct sub {
	char *pattern;
	int qos;
	cohort_msg_fn fn;
	void *arg;
};

struct cohort {
	char *bus, *token, *session;
	bool clean, no_reconnect;
	struct wsc ws;
	bool connected, resumed;
	bool keep;		/* cohort_keep was called for the message in hand */
	char refused[256];	/* an error with no request waiting for it, for cohort_ping */
	unsigned reconnects;
	uint64_t next_id;
	struct sub *subs;
	size_t nsubs;
	struct intmap unacked;	/* id -> request text of a qos-1 publish */
	uint64_t wait_id;	/* the answer a blocking call waits for */
	json_t *answer;
	char *answer_text;	/* its frame as it came (a get's values are taken from it) */
	size_t answer_len;
	int64_t backoff_ms, next_attempt;
	unsigned mid_counter;
	char mid_prefix[24];
	char err[300];
	int final_code;		/* the close code that ended the client for good, or 0 */
	cohort_closed_fn closed_fn;
	void *closed_arg;
};

const char *cohort_version(void)
{
	return PACKAGE_VERSION;
}

static int set_err(cohort_t *c, const char *fmt, ...) PRINTF(2, 3);
static int set_err(cohort_t *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->err, sizeof(c->err), fmt, ap);
	va_end(ap);
	return -1;
}

const char *cohort_error(const cohort_t *c)
{
	return c->err;
}

cohort_t *cohort_new(const struct cohort_options *opt)
{
	cohort_t *c = xcalloc(1, sizeof(*c));
	const char *bus = opt && opt->bus ? opt->bus : getenv("COHORT_BUS");
	const char *token = opt && opt->token ? opt->token : getenv("COHORT_TOKEN");
	unsigned char r[8];

	c->bus = xstrdup(bus && *bus ? bus : "unix:/run/cohort/bus.sock");
	c->token = token && *token ? xstrdup(token) : NULL;
	c->session = opt && opt->session ? xstrdup(opt->session) : NULL;
	c->clean = opt && opt->clean;
	c->no_reconnect = opt && opt->no_reconnect;
	c->ws.fd = -1;
	c->backoff_ms = BACKOFF_FIRST_MS;
	if (getrandom(r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
		for (size_t i = 0; i < sizeof(r); i++)
			r[i] = (unsigned char)random();
	for (size_t i = 0; i < sizeof(r); i++)
		snprintf(c->mid_prefix + 2 * i, 3, "%02x", r[i]);
	return c;
}

void cohort_free(cohort_t *c)
{
	if (!c)
		return;
	wsc_bye(&c->ws);
	wsc_close(&c->ws);
	for (size_t i = 0; i < c->nsubs; i++)
		free(c->subs[i].pattern);
	free(c->subs);
	size_t it = 0;
	void *v;
	while (intmap_next(&c->unacked, &it, NULL, &v))
		free(v);
	intmap_free(&c->unacked);
	json_decref(c->answer);
	free(c->answer_text);
	free(c->bus);
	free(c->token);
	free(c->session);
	free(c);
}

void cohort_on_closed(cohort_t *c, cohort_closed_fn fn, void *arg)
{
	c->closed_fn = fn;
	c->closed_arg = arg;
}

int cohort_close_code(const cohort_t *c)
{
	return c->final_code;
}

bool cohort_connected(const cohort_t *c)
{
	return c->connected;
}

bool cohort_resumed(const cohort_t *c)
{
	return c->resumed;
}

unsigned cohort_reconnects(const cohort_t *c)
{
	return c->reconnects;
}

int cohort_fd(const cohort_t *c)
{
	return c->connected ? c->ws.fd : -1;
}

bool cohort_wants_write(const cohort_t *c)
{
	return c->connected && c->ws.out.len > 0;
}

size_t cohort_unacked(const cohort_t *c)
{
	return c->unacked.len;
}

/* --- frames in -------------------------------------------------------------------- */

/*
 * A msg frame as cohortd writes it (wire_write_msg), read without jansson
 * (wire_read_msg): every message passes here.  Any other shape: false,
 * and the caller parses the frame.  m's topic and data point into *buf,
 * which the caller frees.
 */
static bool msg_fast(const char *text, size_t len, struct cohort_msg *m, char **buf)
{
	struct wire_msg w;

	if (!wire_read_msg(text, len, &w))
		return false;
	*buf = xmalloc(w.topic_len + w.data_len + 2);
	memcpy(*buf, w.topic, w.topic_len);
	(*buf)[w.topic_len] = '\0';
	memcpy(*buf + w.topic_len + 1, w.data, w.data_len);
	(*buf)[w.topic_len + 1 + w.data_len] = '\0';
	m->topic = *buf;
	m->data = *buf + w.topic_len + 1;
	m->data_len = w.data_len;
	m->seq = w.seq;
	m->qos = w.qos;
	m->ts_ms = w.ts_ms;
	m->retained = w.retained;
	m->redelivered = w.redelivered;
	return true;
}

/* The same from the parsed frame, for any other shape; the data's text is
 * taken from the frame, as it was published (the parsed value may be a
 * null in its place: see jscan_load_around). */
static bool msg_parsed(json_t *f, const char *text, size_t len, struct cohort_msg *m, char **buf)
{
	size_t n;
	const char *raw = jscan_member(text, len, "data", &n);

	m->topic = json_string_value(json_object_get(f, "topic"));
	if (!m->topic)
		return false;
	if (raw)
		*buf = xstrndup(raw, n);
	else
		*buf = json_dumps(json_object_get(f, "data"), JSON_COMPACT | JSON_ENCODE_ANY);
	m->data = *buf ? *buf : "null";
	m->data_len = strlen(m->data);
	m->seq = (uint64_t)json_integer_value(json_object_get(f, "seq"));
	m->qos = (int)json_integer_value(json_object_get(f, "qos"));
	m->ts_ms = json_integer_value(json_object_get(f, "ts_ms"));
	m->retained = json_is_true(json_object_get(f, "retained"));
	m->redelivered = json_is_true(json_object_get(f, "redelivered"));
	return true;
}

void cohort_keep(cohort_t *c)
{
	c->keep = true;
}

static void deliver(cohort_t *c, const struct cohort_msg *msg)
{
	bool taken = false;

	c->keep = false;
	for (size_t i = 0; i < c->nsubs; i++)
		if (c->subs[i].fn && topic_matches(c->subs[i].pattern, msg->topic)) {
			c->subs[i].fn(c, msg, c->subs[i].arg);
			taken = true;
		}
	/* An ack says the message was handled: not when nothing here took it,
	 * nor when a callback kept it.  cohortd sends it again. */
	if (msg->qos == 1 && !msg->retained && c->connected && taken && !c->keep) {
		char ack[WIRE_ACK_MAX];
		wsc_send(&c->ws, ack, (size_t)(wire_write_ack(ack, msg->seq) - ack));
	}
}

/*
 * {"op":"ok","id":N,"seq":N} as cohortd writes it for a qos-1 publish that
 * nobody waits for (cohort_publish_nowait): the id leaves the unacked set,
 * no jansson.  An answer a call waits for is parsed, as is any other shape.
 */
static bool ok_fast(cohort_t *c, const char *text, size_t len)
{
	uint64_t id, seq;

	if (!wire_read_ok_seq(text, len, &id, &seq) || !id || id == c->wait_id)
		return false;
	free(intmap_del(&c->unacked, (int64_t)id));
	return true;
}

static void dispatch(cohort_t *c, const char *text, size_t len)
{
	struct cohort_msg msg = {0};
	char *buf = NULL;

	if (msg_fast(text, len, &msg, &buf)) {
		deliver(c, &msg);
		free(buf);
		return;
	}
	if (ok_fast(c, text, len))
		return;
	json_error_t err;
	json_t *m = json_loadb(text, len, 0, &err);

	/* JSON that jansson cannot hold (numbers of any size are JSON) in the
	 * data of a msg or the values of a get: their text is taken as is. */
	if (!m)
		m = jscan_load_around(text, len, "data", 0, &err);
	if (!m)
		m = jscan_load_around(text, len, "messages", 0, &err);
	const char *op = json_string_value(json_object_get(m, "op"));

	if (!op) {
		json_decref(m);
		return;
	}
	if (strcmp(op, "msg") == 0) {
		if (msg_parsed(m, text, len, &msg, &buf))
			deliver(c, &msg);
		free(buf);
		json_decref(m);
		return;
	}
	json_t *idv = json_object_get(m, "id");
	uint64_t id = json_is_integer(idv) ? (uint64_t)json_integer_value(idv) : 0;
	if (id)
		free(intmap_del(&c->unacked, (int64_t)id));
	if (id && id == c->wait_id) {
		json_decref(c->answer);
		c->answer = m;
		free(c->answer_text);
		c->answer_text = xstrndup(text, len);
		c->answer_len = len;
		return;
	}
	/* A refusal nobody waits for (a qos-0 publish has no answer of its
	 * own): cohort_ping reports it. */
	if (strcmp(op, "error") == 0 && !c->refused[0])
		str_copy(c->refused, sizeof(c->refused), json_string_value(json_object_get(m, "error")) ?
			 json_string_value(json_object_get(m, "error")) : "refused");
	json_decref(m);
}

/* --- connection -------------------------------------------------------------------- */

/* Closes that trying again cannot mend: 1008, a token cohortd does not
 * know (a process left from before cohortd restarted), or too many bad
 * requests; 4000, another client said hello with our session (going back
 * would take it from that one, which would take it back, forever). */
static bool close_is_final(int code)
{
	return code == 1008 || code == CLOSE_TAKEN_OVER;
}

/* The client stops for good: said once, to the callback or on stderr. */
static void end_for_good(cohort_t *c, int code)
{
	char why[sizeof(c->err)];

	str_copy(why, sizeof(why), c->err);
	set_err(c, "%s: not reconnecting", why);
	c->no_reconnect = true;
	c->final_code = code;
	if (c->closed_fn)
		c->closed_fn(c, code, c->err, c->closed_arg);
	else
		fprintf(stderr, "libcohort: %s\n", c->err);
}

static void lost(cohort_t *c)
{
	if (!c->connected)
		return;
	str_copy(c->err, sizeof(c->err), c->ws.err[0] ? c->ws.err : "lost the connection to the bus");
	if (close_is_final(c->ws.close_code))
		end_for_good(c, c->ws.close_code);
	wsc_close(&c->ws);
	c->connected = false;
	c->backoff_ms = BACKOFF_FIRST_MS;
	c->next_attempt = now_mono_ms() + c->backoff_ms;
}

/* Sends text now (or queues it while the socket is full). */
static int send_text(cohort_t *c, const char *text, size_t len)
{
	if (!c->connected)
		return set_err(c, "not connected to the bus");
	if (wsc_send(&c->ws, text, len) < 0) {
		lost(c);
		return -1;
	}
	return 0;
}

/* After a refused hello: the code of the Close frame that may follow it
 * (0 if none comes within REFUSAL_CLOSE_MS). */
static int refusal_close_code(cohort_t *c)
{
	int64_t deadline = now_mono_ms() + REFUSAL_CLOSE_MS;
	size_t len;

	for (;;) {
		while (wsc_next(&c->ws, &len))
			;
		int left = (int)(deadline - now_mono_ms());
		struct pollfd p = {c->ws.fd, POLLIN, 0};
		if (c->ws.closed || left <= 0 || poll(&p, 1, left) <= 0)
			return c->ws.close_code;
		(void)wsc_read(&c->ws);
	}
}

static int open_and_hello(cohort_t *c)
{
	if (wsc_open(&c->ws, c->bus, "cohort.v1", OPEN_TIMEOUT_MS) < 0)
		return set_err(c, "%s", c->ws.err);
	json_t *hello = json_pack("{s:s}", "op", "hello");
	if (c->token)
		json_object_set_new(hello, "token", json_string(c->token));
	if (c->session) {
		json_object_set_new(hello, "session", json_string(c->session));
		json_object_set_new(hello, "clean", json_boolean(c->clean));
	}
	char *text = json_dumps(hello, JSON_COMPACT);
	json_decref(hello);
	int rc = wsc_send(&c->ws, text, strlen(text));
	free(text);
	int64_t deadline = now_mono_ms() + OPEN_TIMEOUT_MS;
	while (rc == 0) {
		size_t len;
		const char *f = wsc_next(&c->ws, &len);
		if (f) {
			json_t *m = json_loadb(f, len, 0, NULL);
			const char *op = json_string_value(json_object_get(m, "op"));
			if (op && strcmp(op, "welcome") == 0) {
				c->resumed = json_is_true(json_object_get(m, "resumed"));
				json_decref(m);
				break;
			}
			set_err(c, "the bus refused hello: %s",
				json_string_value(json_object_get(m, "error")) ? json_string_value(json_object_get(m, "error")) : "?");
			json_decref(m);
			int code = refusal_close_code(c);
			wsc_close(&c->ws);
			if (close_is_final(code))
				end_for_good(c, code);
			return -1;
		}
		int left = (int)(deadline - now_mono_ms());
		struct pollfd p = {c->ws.fd, POLLIN, 0};
		if (c->ws.closed || left <= 0 || poll(&p, 1, left) <= 0 || wsc_read(&c->ws) < 0) {
			set_err(c, "no welcome from the bus: %s", c->ws.err[0] ? c->ws.err : "timed out");
			wsc_close(&c->ws);
			return -1;
		}
	}
	if (rc < 0) {
		set_err(c, "%s", c->ws.err);
		wsc_close(&c->ws);
		return -1;
	}
	c->clean = false;	/* only the first hello cleans */
	c->connected = true;
	/* Put back what was there: subscriptions, then unacked publishes. */
	for (size_t i = 0; i < c->nsubs; i++) {
		struct sbuf req = {0};
		wire_write_sub(&req, ++c->next_id, c->subs[i].pattern, c->subs[i].qos);
		send_text(c, req.buf, req.len);
		sbuf_free(&req);
	}
	size_t it = 0;
	int64_t key;
	void *v;
	while (c->connected && intmap_next(&c->unacked, &it, &key, &v))
		send_text(c, v, strlen(v));
	return c->connected ? 0 : -1;
}

int cohort_connect(cohort_t *c)
{
	if (c->connected)
		return 0;
	return open_and_hello(c);
}

static void try_reconnect(cohort_t *c)
{
	if (c->connected || c->no_reconnect || now_mono_ms() < c->next_attempt)
		return;
	if (open_and_hello(c) == 0) {
		c->reconnects++;
		c->backoff_ms = BACKOFF_FIRST_MS;
		return;
	}
	/* Exponential backoff with +-20% jitter. */
	c->backoff_ms = c->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff_ms * 2;
	double jitter = 0.8 + 0.4 * ((double)random() / RAND_MAX);
	c->next_attempt = now_mono_ms() + (int64_t)((double)c->backoff_ms * jitter);
}

int cohort_next_timeout_ms(const cohort_t *c)
{
	if (c->connected || c->no_reconnect)
		return -1;
	int64_t left = c->next_attempt - now_mono_ms();
	return left < 0 ? 0 : (int)left;
}

int cohort_step(cohort_t *c, int timeout_ms)
{
	if (!c->connected) {
		if (c->no_reconnect)
			return -1;
		try_reconnect(c);
		if (!c->connected) {
			int wait = cohort_next_timeout_ms(c);
			if (timeout_ms >= 0 && (wait < 0 || wait > timeout_ms))
				wait = timeout_ms;
			struct timespec ts = {wait / 1000, (long)(wait % 1000) * 1000000};
			nanosleep(&ts, NULL);
			return 0;
		}
	}
	struct pollfd p = {c->ws.fd, (short)(POLLIN | (c->ws.out.len ? POLLOUT : 0)), 0};
	int n = poll(&p, 1, timeout_ms);
	if (n < 0 && errno != EINTR)
		return set_err(c, "poll: %s", strerror(errno));
	if (n > 0 && (p.revents & POLLOUT) && wsc_flush(&c->ws) < 0) {
		lost(c);
		return c->no_reconnect ? -1 : 0;
	}
	if (n > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR)) && wsc_read(&c->ws) < 0) {
		/* deliver what came before the end, then go */
	}
	size_t len;
	const char *f;
	while (c->connected && (f = wsc_next(&c->ws, &len)))
		dispatch(c, f, len);
	if (c->ws.closed)
		lost(c);
	return !c->connected && c->no_reconnect ? -1 : 0;
}

/* Sends a request (text holding "id": id; freed here) and steps until its
 * answer (or the deadline). */
static json_t *call_text(cohort_t *c, char *text, uint64_t id, bool keep_across_reconnects)
{
	int64_t deadline = now_mono_ms() + CALL_TIMEOUT_MS;

	if (keep_across_reconnects)
		intmap_put(&c->unacked, (int64_t)id, xstrdup(text));
	c->wait_id = id;
	json_decref(c->answer);
	c->answer = NULL;
	if (c->connected)
		send_text(c, text, strlen(text));
	free(text);
	while (!c->answer) {
		if (!c->connected && (c->no_reconnect || !keep_across_reconnects)) {
			free(intmap_del(&c->unacked, (int64_t)id));
			set_err(c, "%s", c->err[0] ? c->err : "not connected to the bus");
			c->wait_id = 0;
			return NULL;
		}
		int left = (int)(deadline - now_mono_ms());
		if (left <= 0) {
			set_err(c, "no answer from the bus within %d s", CALL_TIMEOUT_MS / 1000);
			free(intmap_del(&c->unacked, (int64_t)id));	/* given up: not re-sent */
			c->wait_id = 0;
			return NULL;
		}
		if (cohort_step(c, left < 100 ? left : 100) < 0 && !c->connected) {
			c->wait_id = 0;
			return NULL;
		}
	}
	json_t *a = c->answer;
	c->answer = NULL;
	c->wait_id = 0;
	const char *op = json_string_value(json_object_get(a, "op"));
	if (op && strcmp(op, "error") == 0) {
		set_err(c, "%s", json_string_value(json_object_get(a, "error")) ? json_string_value(json_object_get(a, "error")) : "error");
		json_decref(a);
		return NULL;
	}
	return a;
}

static json_t *call(cohort_t *c, json_t *req, bool keep_across_reconnects)
{
	uint64_t id = ++c->next_id;

	json_object_set_new(req, "id", json_integer((json_int_t)id));
	char *text = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	return call_text(c, text, id, keep_across_reconnects);
}

/* --- the ops ---------------------------------------------------------------------------- */

/*
 * The pub frame as text.  The data is checked to be JSON and then sent as
 * the caller wrote it: building a jansson tree only to print it again cost
 * a third of a publisher's time.  Topics need no escaping (they are
 * checked); a caller's mid is escaped.
 */
static char *pub_text(cohort_t *c, const char *topic, const char *data, int qos, bool retain,
		      const char *mid, uint64_t id)
{
	if (!topic_pattern_valid(topic, false) || topic[0] == '$') {
		set_err(c, "bad topic \"%s\": dot-separated [A-Za-z0-9_@-] segments, no wildcards", topic);
		return NULL;
	}
	if (qos != 0 && qos != 1) {
		set_err(c, "publish: qos is 0 or 1, not %d", qos);
		return NULL;
	}
	if (!data)
		data = "null";
	size_t dlen = strlen(data);
	/* A plain string is checked by a loop; anything else as cohortd checks
	 * data (numbers of any size, JSON_REJECT_DUPLICATES), or it would
	 * refuse it. */
	json_error_t err;
	if (jstr_plain_end(data, data + dlen) != data + dlen &&
	    jscan_check(data, dlen, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &err) < 0) {
		set_err(c, "publish: data is not JSON text: %s (at column %d): %.60s", err.text, err.column, data);
		return NULL;
	}
	/* as cohortd's pub_fast reads it (wire_read_pub) */
	struct wire_pub p = {.topic = topic, .topic_len = strlen(topic), .data = data, .data_len = dlen,
			     .qos = qos, .retain = retain, .mid = mid, .has_id = id != 0, .id = id};
	char auto_mid[sizeof(c->mid_prefix) + 16];
	if (!mid && qos == 1) {
		snprintf(auto_mid, sizeof(auto_mid), "%s-%u", c->mid_prefix, ++c->mid_counter);
		p.mid = auto_mid;
	}
	p.mid_len = p.mid ? strlen(p.mid) : 0;
	struct sbuf b = {0};
	wire_write_pub(&b, &p);
	return sbuf_steal(&b);
}

int cohort_publish_mid(cohort_t *c, const char *topic, const char *data, int qos, bool retain,
		       const char *mid, uint64_t *seq)
{
	uint64_t id = qos == 1 ? ++c->next_id : 0;
	char *text = pub_text(c, topic, data, qos, retain, mid, id);

	if (!text)
		return -1;
	if (qos != 1) {
		int rc = send_text(c, text, strlen(text));
		free(text);
		return rc;
	}
	json_t *a = call_text(c, text, id, true);
	if (!a)
		return -1;
	if (seq)
		*seq = (uint64_t)json_integer_value(json_object_get(a, "seq"));
	json_decref(a);
	return 0;
}

int cohort_publish(cohort_t *c, const char *topic, const char *data, int qos, bool retain, uint64_t *seq)
{
	return cohort_publish_mid(c, topic, data, qos, retain, NULL, seq);
}

int cohort_publish_nowait(cohort_t *c, const char *topic, const char *data, int qos, bool retain)
{
	uint64_t id = qos == 1 ? ++c->next_id : 0;
	char *text = pub_text(c, topic, data, qos, retain, NULL, id);

	if (!text)
		return -1;
	if (qos == 1)
		intmap_put(&c->unacked, (int64_t)id, xstrdup(text));
	int rc = c->connected ? send_text(c, text, strlen(text)) : (qos == 1 ? 0 : -1);
	free(text);
	return rc;
}

int cohort_flush(cohort_t *c, int timeout_ms)
{
	int64_t deadline = now_mono_ms() + timeout_ms;

	while (c->unacked.len || (c->connected && c->ws.out.len)) {
		int left = (int)(deadline - now_mono_ms());
		if (left <= 0)
			return set_err(c, "%zu publishes still unacknowledged", c->unacked.len);
		if (cohort_step(c, left < 100 ? left : 100) < 0)
			return -1;
	}
	return 0;
}

int cohort_subscribe(cohort_t *c, const char *pattern, int qos, cohort_msg_fn fn, void *arg)
{
	if (!topic_pattern_valid(pattern, true))
		return set_err(c, "bad topic pattern: %s", pattern);
	c->subs = xrealloc(c->subs, (c->nsubs + 1) * sizeof(*c->subs));
	c->subs[c->nsubs++] = (struct sub){xstrdup(pattern), qos, fn, arg};
	json_t *a = call(c, json_pack("{s:s,s:s,s:i}", "op", "sub", "topic", pattern, "qos", qos), false);
	if (!a) {
		free(c->subs[--c->nsubs].pattern);
		return -1;
	}
	json_decref(a);
	return 0;
}

int cohort_unsubscribe(cohort_t *c, const char *pattern)
{
	for (size_t i = 0; i < c->nsubs; i++) {
		if (strcmp(c->subs[i].pattern, pattern) == 0) {
			free(c->subs[i].pattern);
			c->subs[i] = c->subs[--c->nsubs];
			break;
		}
	}
	json_t *a = call(c, json_pack("{s:s,s:s}", "op", "unsub", "topic", pattern), false);
	json_decref(a);
	return a ? 0 : -1;
}

int cohort_get(cohort_t *c, const char *pattern, char **json)
{
	json_t *a = call(c, json_pack("{s:s,s:s}", "op", "get", "topic", pattern), false);
	size_t n;

	if (!a)
		return -1;
	/* the values as published, not as jansson would print them again */
	const char *raw = jscan_member(c->answer_text, c->answer_len, "messages", &n);
	*json = raw ? xstrndup(raw, n) : json_dumps(json_object_get(a, "messages"), JSON_COMPACT);
	json_decref(a);
	return 0;
}

int cohort_ping(cohort_t *c)
{
	json_t *a = call(c, json_pack("{s:s}", "op", "ping"), false);
	json_decref(a);
	if (a && c->refused[0]) {
		set_err(c, "%s", c->refused);
		c->refused[0] = '\0';
		return -1;
	}
	return a ? 0 : -1;
}

int cohort_lock_acquire(cohort_t *c, const char *name, int64_t ttl_ms, int64_t wait_ms, bool shared,
			uint64_t *token, int64_t *expires_ms)
{
	return cohort_lock_acquire_group(c, name, ttl_ms, wait_ms, shared, 0, 0, token, expires_ms);
}

int cohort_lock_acquire_group(cohort_t *c, const char *name, int64_t ttl_ms, int64_t wait_ms, bool shared,
			      int pgid, int64_t stop_timeout_ms, uint64_t *token, int64_t *expires_ms)
{
	json_t *req = json_pack("{s:s,s:s,s:I,s:I,s:s}", "op", "lock.acquire", "name", name, "ttl_ms",
				(json_int_t)ttl_ms, "wait_ms", (json_int_t)wait_ms, "mode",
				shared ? "shared" : "exclusive");
	if (pgid) {
		json_object_set_new(req, "pgid", json_integer(pgid));
		json_object_set_new(req, "stop_timeout_ms", json_integer(stop_timeout_ms));
	}
	json_t *a = call(c, req, false);
	if (!a)
		return -1;
	if (token)
		*token = (uint64_t)json_integer_value(json_object_get(a, "token"));
	if (expires_ms)
		*expires_ms = json_integer_value(json_object_get(a, "expires_ms"));
	json_decref(a);
	return 0;
}

int cohort_lock_renew(cohort_t *c, const char *name, uint64_t token, int64_t ttl_ms, int64_t *expires_ms)
{
	json_t *a = call(c, json_pack("{s:s,s:s,s:I,s:I}", "op", "lock.renew", "name", name, "token",
				      (json_int_t)token, "ttl_ms", (json_int_t)ttl_ms), false);
	if (!a)
		return -1;
	if (expires_ms)
		*expires_ms = json_integer_value(json_object_get(a, "expires_ms"));
	json_decref(a);
	return 0;
}

int cohort_lock_release(cohort_t *c, const char *name, uint64_t token)
{
	json_t *a = call(c, json_pack("{s:s,s:s,s:I}", "op", "lock.release", "name", name, "token",
				      (json_int_t)token), false);
	json_decref(a);
	return a ? 0 : -1;
}
