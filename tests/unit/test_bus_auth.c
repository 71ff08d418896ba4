/* Unit tests of how the bus holds a connection to the patterns of the
 * service whose token it presented, without cohortd: the bus is set up on
 * a loop with a lock table and a token resolver of the test's own, the
 * way the daemon wires it (src/daemon/hooks.c).  No socket: what the bus
 * sends stays in the connection's queue, read here. */
#include "autoconfig.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <libwebsockets.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "helpers.h"
#include "lock.h"

/* libwebsockets is not there: tests/bus_nowsi.c answers its two calls. */

static struct ev_loop *loop;
static struct lock_table locks;
static struct bus bus;
static struct bus_identity *known;	/* what "tok-1" names */
static int service_owner;		/* stands for the struct service */

static struct bus_identity *resolve(const char *token, void *arg)
{
	(void)arg;
	return strcmp(token, "tok-1") == 0 ? bus_identity_ref(known) : NULL;
}

static size_t services(void *arg)
{
	(void)arg;
	return 1;
}

static void setup(void)
{
	struct strv lock_pats = {0}, topics = {0};
	struct bus_policy pol = {
		.ack_timeout_ms = 30000, .queue_max = 1 << 20, .queue_age_ms = 60000,
		.max_connections = 10, .max_connections_per_uid = 10,
	};
	char err[256];

	loop = ev_loop_new(0);
	cr_assert_eq(lock_table_init(&locks, loop, NULL, err, sizeof(err)), 0, "%s", err);
	strv_push(&lock_pats, "job.*");
	strv_push(&topics, "a.>");
	known = bus_identity_new("svc", &lock_pats, &topics, &topics, &service_owner);
	strv_free(&lock_pats);
	strv_free(&topics);
	bus = (struct bus){.loop = loop, .locks = &locks, .hooks = {resolve, services, NULL}};
	bus_set_policy(&bus, &pol);
	bus.max_message = 1 << 20;
	bus.fsync = FSYNC_NEVER;
	cr_assert_eq(bus_store_open(&bus, th_tmpdir(), err, sizeof(err)), 0, "%s", err);
}

static void conn_close(struct bus_conn *c);

static void teardown(void)
{
	while (!LIST_EMPTY(&bus.conns))
		conn_close(LIST_FIRST(&bus.conns));
	bus_store_close(&bus);
	bus_free_all(&bus);
	intmap_free(&bus.conns_by_id);
	lock_table_free(&locks);
	bus_identity_unref(known);
	ev_loop_destroy(loop);
	th_cleanup();
}

TestSuite(bus_auth, .init = setup, .fini = teardown);

/* A connection on bus.sock, as bus_server.c makes one for an upgrade. */
static struct bus_conn *conn_open(bool admin)
{
	struct bus_conn *c = bus_conn_new(&bus);

	c->unix_peer = true;
	c->admin = admin;
	bus_live_start(c);
	return c;
}

/* The oldest frame c was sent, parsed (NULL: none). */
static json_t *next_frame(struct bus_conn *c)
{
	struct bus_out *o = STAILQ_FIRST(&c->out);

	if (!o)
		return NULL;
	STAILQ_REMOVE_HEAD(&c->out, link);
	c->out_bytes -= o->f->len;
	c->out_len--;
	json_t *v = json_loadb((const char *)o->f->data + LWS_PRE, o->f->len, 0, NULL);
	bus_frame_put(o->f);
	free(o);
	cr_assert_not_null(v);
	return v;
}

static void conn_close(struct bus_conn *c)
{
	json_t *v;

	while ((v = next_frame(c)))
		json_decref(v);
	bus_conn_free(c);
}

/* Sends text as one message; the answer's "error", or "" for an ok, or
 * NULL when nothing came. */
static const char *ask(struct bus_conn *c, const char *text)
{
	static char answer[256];

	sbuf_add(&c->rx, text, strlen(text));	/* as bus_cb hands it over: NUL after */
	bus_handle(c, c->rx.buf, c->rx.len);
	c->rx.len = 0;
	json_t *v = next_frame(c);
	if (!v)
		return NULL;
	const char *e = json_string_value(json_object_get(v, "error"));
	snprintf(answer, sizeof(answer), "%s", e ? e : "");
	json_decref(v);
	return answer;
}

Test(bus_auth, a_token_holds_the_connection_to_its_services_patterns)
{
	struct bus_conn *c = conn_open(false);

	cr_assert_str_eq(ask(c, "{\"op\":\"hello\",\"token\":\"tok-1\"}"), "");
	cr_assert_str_eq(c->identity, "service:svc");
	cr_assert_str_eq(ask(c, "{\"op\":\"sub\",\"id\":1,\"topic\":\"a.>\"}"), "");
	cr_assert_str_eq(ask(c, "{\"op\":\"sub\",\"id\":2,\"topic\":\"b.>\"}"),
			 "not allowed: service:svc may not subscribe to b.>");
	cr_assert_str_eq(ask(c, "{\"op\":\"pub\",\"id\":3,\"qos\":1,\"topic\":\"b.x\",\"data\":1}"),
			 "not allowed: service:svc may not publish to b.x");
	cr_assert_str_eq(ask(c, "{\"op\":\"lock.acquire\",\"id\":4,\"name\":\"db\"}"),
			 "not allowed: the name matches none of this service's locks patterns");
	cr_assert_str_eq(ask(c, "{\"op\":\"lock.acquire\",\"id\":5,\"name\":\"job.1\"}"), "");
	cr_assert_eq(known->refs, 2, "the connection holds the identity");
}

Test(bus_auth, a_token_that_names_no_running_service_is_refused)
{
	struct bus_conn *c = conn_open(true);

	cr_assert_str_eq(ask(c, "{\"op\":\"hello\",\"token\":\"tok-2\"}"),
			 "bad token: not the COHORT_TOKEN of a running service");
	cr_assert(c->closing);
	cr_assert_null(c->service);
}

Test(bus_auth, the_service_gone_its_connection_keeps_the_patterns_not_the_service)
{
	struct bus_conn *c = conn_open(false), *admin = conn_open(true);

	cr_assert_str_eq(ask(c, "{\"op\":\"hello\",\"token\":\"tok-1\"}"), "");
	cr_assert_str_eq(ask(admin, "{\"op\":\"hello\"}"), "");
	cr_assert_str_eq(ask(c, "{\"op\":\"lock.acquire\",\"id\":1,\"name\":\"job.1\"}"), "");
	/* The service's process ended: the leases its token took end with it. */
	lock_drop_service(&locks, &service_owner, true);
	cr_assert_str_eq(ask(admin, "{\"op\":\"lock.acquire\",\"id\":2,\"name\":\"job.1\"}"), "");
	/* The service is freed (a reload removed it). */
	bus_forget_owner(&bus, &service_owner);
	cr_assert_null(c->service->owner);
	cr_assert_str_eq(ask(c, "{\"op\":\"sub\",\"id\":3,\"topic\":\"b.>\"}"),
			 "not allowed: service:svc may not subscribe to b.>");
	cr_assert_str_eq(ask(c, "{\"op\":\"lock.acquire\",\"id\":4,\"name\":\"job.2\"}"), "");
	/* An admin is held to no pattern. */
	cr_assert_str_eq(ask(admin, "{\"op\":\"sub\",\"id\":5,\"topic\":\"b.>\"}"), "");
}
