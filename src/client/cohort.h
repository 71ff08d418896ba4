/*
 * cohort.h - libcohort, the C client of cohortd's message bus and lock
 * service, for the programs cohortd supervises.
 *
 *     cohort_t *c = cohort_new(NULL);          // $COHORT_BUS, $COHORT_TOKEN
 *     if (cohort_connect(c) < 0)
 *             errx(1, "%s", cohort_error(c));
 *     cohort_subscribe(c, "orders.>", 1, on_order, NULL);
 *     cohort_publish(c, "stack.state", "{\"up\":true}", 1, true, &seq);
 *     for (;;)
 *             cohort_step(c, -1);              // or poll cohort_fd() yourself
 *
 * Blocking calls (publish with qos 1, subscribe, get, locks) wait for
 * their answer and deliver messages to callbacks meanwhile.  To use your
 * own event loop, watch cohort_fd() for reading (and for writing when
 * cohort_wants_write()), call cohort_step(c, 0) when it is ready or when
 * cohort_next_timeout_ms() has passed, and use cohort_publish_nowait().
 * cohortd closes (4001) a connection that neither sends nor reads for
 * bus_idle_timeout (60 s by default), after a PING halfway that
 * cohort_step answers: a program that does not step for that long is
 * taken for dead, and the client reconnects at its next step.
 *
 * The client stays connected on its own: when the connection drops it
 * reconnects with exponential backoff and jitter (100 ms doubling to
 * 30 s), says hello with the same session, subscribes again and re-sends
 * every qos-1 publish that has no ok yet, with its mid.  Except when
 * cohortd closes it for a reason trying again cannot mend (see
 * cohort_on_closed): then the client stops for good.
 *
 * A cohort_t is not thread-safe: use one per thread.  Functions returning
 * int give 0 on success and -1 on failure (cohort_error() says why); a
 * lock not had within wait_ms is -1 with the error "timeout".
 */
#ifndef COHORT_H
#define COHORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cohort cohort_t;

struct cohort_options {
	const char *bus;	/* "unix:PATH" or "ws://HOST:PORT/" (NULL: $COHORT_BUS) */
	const char *token;	/* NULL: $COHORT_TOKEN; "" for none (an admin) */
	const char *session;	/* a durable session's name, or NULL */
	bool clean;		/* drop the session's state at the first hello */
	bool no_reconnect;	/* fail instead of reconnecting */
};

struct cohort_msg {
	const char *topic;
	const char *data;	/* the JSON text of the message's data */
	size_t data_len;
	uint64_t seq;
	int qos;
	int64_t ts_ms;
	bool retained;
	bool redelivered;
};

/* A message matching a subscription.  A qos-1 message is acked once the
 * callbacks of every matching subscription returned, unless one of them
 * called cohort_keep; one that no subscription of this client matches (a
 * durable session's subscription from an earlier client) is not acked
 * either.  cohortd sends what was not acked again: after bus_ack_timeout,
 * and when the session says hello again. */
typedef void (*cohort_msg_fn)(cohort_t *c, const struct cohort_msg *m, void *arg);
/* From a callback: do not ack the message being delivered (not handled:
 * let cohortd send it again later). */
void cohort_keep(cohort_t *c);

const char *cohort_version(void);

cohort_t *cohort_new(const struct cohort_options *opt);
void cohort_free(cohort_t *c);
const char *cohort_error(const cohort_t *c);

/*
 * cohortd closed the connection for a reason trying again cannot mend, and
 * the client stopped for good: code 1008 (a token cohortd does not know,
 * as after cohortd restarted, no token where one is needed, or too many
 * bad requests) or 4000 (another connection said hello with this
 * session).  reason is cohort_error()'s text.  Called once; without a
 * callback, that text goes to stderr, once.  Every call fails after it
 * (cohort_step returns -1), and cohort_close_code() says which code.
 */
typedef void (*cohort_closed_fn)(cohort_t *c, int code, const char *reason, void *arg);
void cohort_on_closed(cohort_t *c, cohort_closed_fn fn, void *arg);
/* The close code that stopped the client for good, or 0. */
int cohort_close_code(const cohort_t *c);

/* Connects and says hello (blocking, bounded by a few seconds). */
int cohort_connect(cohort_t *c);
bool cohort_connected(const cohort_t *c);
/* The durable session existed already (its state was kept). */
bool cohort_resumed(const cohort_t *c);
/* How many times the connection was made again. */
unsigned cohort_reconnects(const cohort_t *c);

/* qos 0: sent (queued) and done.  qos 1: waits until cohortd stored it;
 * *seq (if not NULL) its seq.  data is JSON text ("\"a string\"", "42",
 * "{...}"); mid may be NULL (one is made up for qos 1).  -1 (see
 * cohort_error) for a bad topic, data that is not JSON, or a qos other
 * than 0 or 1, before anything is sent. */
int cohort_publish(cohort_t *c, const char *topic, const char *data, int qos, bool retain,
		   uint64_t *seq);
int cohort_publish_mid(cohort_t *c, const char *topic, const char *data, int qos, bool retain,
		       const char *mid, uint64_t *seq);
/* Queues a publish and returns at once; qos-1 oks are tracked (and the
 * message re-sent after a reconnect) without waiting. */
int cohort_publish_nowait(cohort_t *c, const char *topic, const char *data, int qos, bool retain);
/* qos-1 publishes still waiting for their ok. */
size_t cohort_unacked(const cohort_t *c);
/* Steps until every qos-1 publish has its ok, or timeout_ms passes. */
int cohort_flush(cohort_t *c, int timeout_ms);

int cohort_subscribe(cohort_t *c, const char *pattern, int qos, cohort_msg_fn fn, void *arg);
int cohort_unsubscribe(cohort_t *c, const char *pattern);
/* The retained values matching pattern, as a JSON array of
 * {topic, data, seq, ts_ms} in *json (free() it), each data as published. */
int cohort_get(cohort_t *c, const char *pattern, char **json);
/* A round trip.  -1 also when cohortd refused something sent before it
 * that has no answer of its own (a qos-0 publish outside the service's
 * patterns): cohort_error says what, once. */
int cohort_ping(cohort_t *c);

int cohort_lock_acquire(cohort_t *c, const char *name, int64_t ttl_ms, int64_t wait_ms, bool shared,
			uint64_t *token, int64_t *expires_ms);
/* The same, naming the process group the work under the lease runs in (it
 * must be the caller's; on the unix socket only): if the lease is lost
 * other than by cohort_lock_release, cohortd stops that group (TERM, KILL
 * after stop_timeout_ms) before the next holder starts. */
int cohort_lock_acquire_group(cohort_t *c, const char *name, int64_t ttl_ms, int64_t wait_ms, bool shared,
			      int pgid, int64_t stop_timeout_ms, uint64_t *token, int64_t *expires_ms);
int cohort_lock_renew(cohort_t *c, const char *name, uint64_t token, int64_t ttl_ms, int64_t *expires_ms);
int cohort_lock_release(cohort_t *c, const char *name, uint64_t token);

/* For your own event loop. */
int cohort_fd(const cohort_t *c);	/* -1 while disconnected */
bool cohort_wants_write(const cohort_t *c);
/* Milliseconds until cohort_step must run even with no I/O, or -1. */
int cohort_next_timeout_ms(const cohort_t *c);
/* Does the I/O that is ready (waiting up to timeout_ms, -1: until
 * something happens), delivers messages, reconnects when due.  -1 only
 * when the connection is lost and reconnecting is off. */
int cohort_step(cohort_t *c, int timeout_ms);

#ifdef __cplusplus
}
#endif

#endif
