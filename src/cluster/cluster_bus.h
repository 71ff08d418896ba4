/*
 * cluster_bus.h - the bus's messages through a NATS JetStream cluster
 * (issue 18 item 2).  The NATS side only: it knows neither the bus nor
 * its sessions (a layer beside src/bus); the daemon wires its hooks to
 * the bus's entry points (src/daemon/daemon_cluster_bus.c).
 *
 * Subjects: a topic T is `cohort.<cluster_name>.s.T` when stored (qos 1,
 * in the stream COHORT_BUS_<cluster_name>) and `cohort.<cluster_name>.v.T`
 * when not (qos 0, core NATS).  Every cohortd reads both through one core
 * subscription, `cohort.<cluster_name>.*.>`, and hands each message to its
 * bus as its local subscribers get them.  A durable session is a durable
 * push consumer of the stream (all of its subjects: cohortd keeps the
 * session's patterns in the KV bucket COHORT_SESSIONS_<cluster_name> and
 * filters), read by the cohortd the session is connected to.  Retained
 * values are a KV bucket, COHORT_RETAINED_<cluster_name> (a key per topic,
 * '@' written =40), which every cohortd watches into its bus's table.
 *
 * Like cluster_conn.c, nothing here blocks the loop: one worker thread
 * runs the requests in order on its own connection (a qos-1 publish waits
 * there for the stream's ack), libnats's threads read the subscriptions,
 * and everything comes back to the loop through an ev_async, where the
 * hooks are called.
 */
#ifndef COHORT_CLUSTER_BUS_H
#define COHORT_CLUSTER_BUS_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster.h"

struct cluster_bus;

/* Called on the loop. */
struct cluster_bus_hooks {
	/* A message on a topic, for the local subscribers (qos 0 or 1). */
	void (*deliver)(void *arg, const char *topic, const char *data, size_t len, int qos, int64_t ts_ms);
	/* A topic's retained value, as the cluster keeps it (at start, each
	 * one; then each change).  data "null": cleared. */
	void (*retained)(void *arg, const char *topic, const char *data, size_t len, int64_t ts_ms);
	/* The answer to cluster_bus_publish of a qos-1 or retained message:
	 * seq is the stream's sequence (0 for qos 0), or err says why it was
	 * not stored. */
	void (*published)(void *arg, uint64_t cookie, uint64_t seq, bool duplicate, const char *err);
	/* A durable session's message from its consumer; ack is what
	 * cluster_bus_ack takes back; delivered counts the deliveries (1: first). */
	void (*session_msg)(void *arg, const char *key, const char *topic, const char *data, size_t len,
			    int64_t ts_ms, unsigned delivered, const char *ack);
	/* The answer to cluster_bus_session_open: the session's patterns as
	 * stored (JSON text, NULL: none stored, a new session), or err. */
	void (*session_ready)(void *arg, uint64_t cookie, const char *subs, const char *err);
	/* The answer to cluster_bus_session_subs: NULL or why not. */
	void (*subs_stored)(void *arg, uint64_t cookie, const char *err);
	void *arg;
};

struct cluster_bus_opts {
	const struct cluster_opts *conn;	/* the servers, name, credentials, TLS */
	int64_t max_age_ms;			/* of the stream's messages (bus_queue_age) */
	int64_t ack_wait_ms;			/* a durable consumer's (bus_ack_timeout) */
};

struct cluster_bus *cluster_bus_open(struct ev_loop *loop, const struct cluster_bus_opts *o,
				     const struct cluster_bus_hooks *h, char *err, size_t errlen);
void cluster_bus_close(struct cluster_bus *cb);

/* Connected, and the stream is there.  Else why fills why. */
bool cluster_bus_up(const struct cluster_bus *cb, char *why, size_t whylen);
/* For status and /metrics: the bus's own connection, as cluster_info
 * says the locks' (no round trip: that is the locks' connection's). */
void cluster_bus_info(const struct cluster_bus *cb, struct cluster_info *out);

/* A publish, in order with the others.  qos 0: sent, not stored, no
 * answer (false: dropped, the cluster is away).  qos 1: stored by the
 * stream, then `published` (msgid: JetStream's de-duplication, or NULL).
 * retain: the value is first put in the bucket COHORT_RETAINED_<name>,
 * then published as qos says; `published` follows, whatever the qos. */
bool cluster_bus_publish(struct cluster_bus *cb, const char *topic, const char *data, size_t len, int qos,
			 bool retain, int64_t ts_ms, const char *from, const char *msgid, uint64_t cookie);

/* A durable session (key: identity "/" name) is connected here: its
 * consumer is made if need be and read, then `session_ready`. */
void cluster_bus_session_open(struct cluster_bus *cb, const char *key, uint64_t cookie);
/* ... is no longer (destroy: cleaned, its consumer and patterns go). */
void cluster_bus_session_close(struct cluster_bus *cb, const char *key, bool destroy);
/* Stores the session's patterns (JSON text), then `subs_stored`. */
void cluster_bus_session_subs(struct cluster_bus *cb, const char *key, const char *subs, uint64_t cookie);
/* A session's message is done with (ack), or to be sent again (nak). */
void cluster_bus_ack(struct cluster_bus *cb, const char *ack, bool nak);

/* "a:b/c" -> a token NATS takes in names and subjects ("a_3Ab_2Fc"), and back. */
char *cluster_bus_name_encode(const char *key);
char *cluster_bus_name_decode(const char *name);

#endif
