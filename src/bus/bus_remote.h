/*
 * bus_remote.h - the bus when its messages go through a cluster (the
 * cluster mode, issue 18): what the bus asks of it, set by the daemon
 * (src/daemon/daemon_cluster_bus.c wires src/cluster/cluster_bus.c, which
 * the bus cannot see), and what comes back from it.  Without it (one
 * host) none of this runs.
 *
 * With it: a client's publish goes to the cluster, not to the journal
 * (qos 1: the publisher's ok waits for the cluster's stream); every
 * message comes back from the cluster, the publisher's cohortd's own
 * included, and reaches the local subscribers as on one host; a durable
 * session's qos-1 messages come from its consumer in the cluster, one per
 * session, acked (or sent again) as its client acks.
 */
#ifndef COHORT_BUS_REMOTE_H
#define COHORT_BUS_REMOTE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bus;
struct bus_conn;
struct bus_session;
struct bus_msg;

struct bus_remote_ops {
	/* Reachable?  Else why says so. */
	bool (*up)(void *arg, char *why, size_t whylen);
	/* qos 0: false when dropped.  qos 1 or retain: answered by bus_remote_published. */
	bool (*publish)(void *arg, const char *topic, const char *data, size_t len, int qos, bool retain,
			int64_t ts_ms, const char *from, const char *msgid, uint64_t cookie);
	/* A durable session connected here: answered by bus_remote_session_ready. */
	void (*session_open)(void *arg, const char *key, uint64_t cookie);
	/* ... left (destroy: cleaned). */
	void (*session_close)(void *arg, const char *key, bool destroy);
	/* Its patterns changed: answered by bus_remote_subs_stored. */
	void (*session_subs)(void *arg, const char *key, const char *subs, uint64_t cookie);
	void (*ack)(void *arg, const char *ack, bool nak);
};

void bus_set_remote(struct bus *b, const struct bus_remote_ops *ops, void *arg);

/* bus_ops.c's side: a publish checked for permission and fields. */
void bus_remote_publish(struct bus_conn *c, const char *topic, const char *data, size_t len, int qos, bool retain,
			const char *mid, json_t *id);
/* Before a durable session's hello: refused (said so to c) while the
 * cluster is away. */
bool bus_remote_hello_refused(struct bus_conn *c, json_t *id);
/* hello of a durable session: welcome once its consumer is read here. */
bool bus_remote_hello(struct bus_conn *c, struct bus_session *s, bool clean, bool resumed, json_t *id);
/* Before a sub or unsub of a durable session: false when refused. */
bool bus_remote_can_sub(struct bus_conn *c, json_t *id);
/* After it: the ok is sent once the cluster has the patterns (pattern:
 * the retained values to send after the ok, or NULL). */
void bus_remote_subs_changed(struct bus_conn *c, const char *pattern, json_t *id);

/* bus_core.c's side: a delivery of s's from its consumer is gone (acked,
 * dropped, dead, or left behind by its client: then sent again). */
void bus_remote_done(struct bus_session *s, struct bus_msg *m);

/* What comes back, on the loop. */
void bus_remote_deliver(struct bus *b, const char *topic, const char *data, size_t len, int qos, int64_t ts_ms);
void bus_remote_retained(struct bus *b, const char *topic, const char *data, size_t len, int64_t ts_ms);
void bus_remote_published(struct bus *b, uint64_t cookie, uint64_t seq, bool duplicate, const char *err);
void bus_remote_session_msg(struct bus *b, const char *key, const char *topic, const char *data, size_t len,
			    int64_t ts_ms, unsigned delivered, const char *ack);
void bus_remote_session_ready(struct bus *b, uint64_t cookie, const char *subs, const char *err);
void bus_remote_subs_stored(struct bus *b, uint64_t cookie, const char *err);
/* At bus_close: what waits for an answer. */
void bus_remote_free(struct bus *b);

#endif
