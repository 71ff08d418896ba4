/*
 * fuzz_bus.c - the bus op reader: frames through bus_handle, as
 * bus_server.c hands over each text message, with every fast path
 * (ack_fast, pub_fast, jflat) and jansson behind them, on a real bus: the
 * store and journal in a scratch state_dir, the lock table, sessions,
 * subscriptions, retained values.  Only libwebsockets is absent: frames
 * go to the connections' queues, where this checks each is one JSON
 * object with an op, as every client expects, and that every mistake
 * was answered with one.
 *
 * Input: frames separated by a 0xFF byte (never in UTF-8 text); the
 * first byte of a frame picks the connection: even an admin's, odd one
 * held to the patterns of [service:svc] below.
 */
#include "autoconfig.h"

#include <jansson.h>
#include <libwebsockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "fuzz.h"
#include "lock.h"
#include "wire.h"

static const char config_text[] =
	"[cohort]\n"
	"bus_fsync = never\n"
	"bus_max_message = 64K\n"
	"[service:svc]\n"
	"command = true\n"
	"publish = a.>, b.*\n"
	"subscribe = a.>, $dead.>\n"
	"locks = demo.*\n";

static struct ev_loop *loop;
static struct cohort_config *cfg;
static char *state;

/* libwebsockets is not there: tests/bus_nowsi.c answers its two calls. */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	cfg = fz_setup(config_text, sizeof(config_text) - 1, &loop, &state);
	return 0;
}

static struct bus_conn *conn_open(struct bus *b, struct bus_identity *held_to)
{
	struct bus_conn *c = bus_conn_new(b);

	c->unix_peer = true;
	c->admin = true;
	c->service = held_to ? bus_identity_ref(held_to) : NULL;
	bus_live_start(c);
	return c;
}

/* Takes what the connection was sent: each frame one JSON object. */
static void conn_drain(struct bus_conn *c)
{
	while (!STAILQ_EMPTY(&c->out)) {
		struct bus_out *o = STAILQ_FIRST(&c->out);
		const char *text = (const char *)o->f->data + LWS_PRE;
		json_error_t err;
		size_t n;
		/* Valid JSON, as the bus promises, is more than jansson holds by
		 * default: a published "\u0000" or a number of any size comes back
		 * as it was sent (jscan_check is the bus's own judge of it). */
		json_t *v = json_loadb(text, o->f->len, JSON_ALLOW_NUL, &err);
		const char *op = jscan_member(text, o->f->len, "op", &n);
		bool good = v ? json_is_object(v) && json_is_string(json_object_get(v, "op"))
			      : jscan_check(text, o->f->len, 0, &err) == 0 && op && *op == '"';
		if (!good) {
			fprintf(stderr, "the bus sent a frame that is not an op: %.*s (%s)\n", (int)o->f->len,
				text, v ? "no op" : err.text);
			abort();
		}
		json_decref(v);
		STAILQ_REMOVE_HEAD(&c->out, link);
		bus_frame_put(o->f);
		free(o);
	}
	c->out_len = 0;
	c->out_bytes = 0;
}

/* What it was sent is checked, then it goes as in bus_server.c. */
static void conn_close(struct bus_conn *c)
{
	conn_drain(c);
	bus_conn_free(c);
}

/* No token names a running service here. */
static struct bus_identity *resolve_none(const char *token, void *arg)
{
	(void)token;
	(void)arg;
	return NULL;
}

static size_t no_services(void *arg)
{
	(void)arg;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct lock_table locks;
	static struct bus bus;
	struct bus *b = &bus;
	struct bus_policy pol;
	char err[256];

	if (lock_table_init(&locks, loop, NULL, err, sizeof(err)) < 0) {
		fprintf(stderr, "lock_table_init: %s\n", err);
		abort();
	}
	/* bus_open's set-up, without the listeners */
	bus_policy_from_config(&pol, cfg);
	*b = (struct bus){.loop = loop, .locks = &locks,
			  .hooks = {.resolve = resolve_none, .services = no_services}};
	bus_set_policy(b, &pol);
	b->max_message = pol.max_message;
	b->idle_timeout = (ev_tstamp)pol.idle_timeout_ms / 1000;
	b->fsync = pol.fsync;
	fz_empty(state);
	if (bus_store_open(b, state, err, sizeof(err)) < 0) {
		fprintf(stderr, "bus_store_open: %s\n", err);
		abort();
	}
	const struct svc_config *svc = config_find(cfg, "svc");
	const struct svc_rare *r = svc->rare;
	struct bus_identity *held = bus_identity_new("svc", &r->locks, &r->publish, &r->subscribe, NULL);
	struct bus_conn *conns[2] = {conn_open(b, NULL), conn_open(b, held)};
	bus_identity_unref(held);

	const uint8_t *p = data, *end = data + size;
	while (p < end) {
		const uint8_t *sep = memchr(p, 0xFF, (size_t)(end - p));
		const uint8_t *fend = sep ? sep : end;
		if (fend > p) {
			struct bus_conn *c = conns[*p & 1];
			size_t len = (size_t)(fend - p - 1);
			if (!c->closing && len <= b->max_message) {
				unsigned errors = c->errors;
				/* as bus_cb gives it: the message in c->rx, NUL after */
				sbuf_add(&c->rx, p + 1, len);
				bus_handle(c, c->rx.buf, c->rx.len);
				c->rx.len = 0;
				if (c->errors > errors && !c->out_len) {
					fprintf(stderr, "a bad request and no error frame for it\n");
					abort();
				}
			}
			conn_drain(conns[0]);
			conn_drain(conns[1]);
		}
		p = sep ? sep + 1 : end;
	}
	conn_close(conns[1]);
	conn_close(conns[0]);
	bus_store_close(b);
	bus_free_all(b);
	intmap_free(&b->conns_by_id);
	lock_table_free(&locks);
	return 0;
}
