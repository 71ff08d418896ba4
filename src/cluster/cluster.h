/*
 * cluster.h - locks shared by several cohortds through a NATS JetStream
 * cluster's key-value store (issue 18).  A layer beside src/bus: it knows
 * the lock table (a gate on it, lock.h) and the loop, not the daemon,
 * which wires it (cluster_open when `cluster` is set).
 *
 * libnats runs on its own threads, and its calls block for a round trip,
 * so none is made on the loop: a worker thread and its helpers run the
 * requests (cluster_conn.c), one more reads the bucket's watch, another
 * measures the round trip (cluster_stats.c), and all hand their results
 * to the loop through an ev_async.  Only the loop
 * touches the lock table and the keys' state (cluster_lock.c).
 *
 * One key per lock in the bucket COHORT_LOCKS_<cluster_name>: acquire is
 * a create (fails if the key exists); the fencing token is the entry's
 * revision; the holder's cohortd renews with an update on the last
 * revision every TTL/3; release is a delete guarded by the revision (a
 * JetStream publish with ExpectLastSubjectSeq); waiters learn of a
 * release through the watch, and take a lease whose revision has not
 * moved for its TTL (by their own monotonic clock) over with an update
 * on that revision.  Shared, the value lists the cohortds holding it
 * (cluster_value.c), each change a write on the revision it was read at.
 */
#ifndef COHORT_CLUSTER_H
#define COHORT_CLUSTER_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

#include "lock.h"

struct cluster;

struct cluster_opts {
	const char *urls;	/* "nats://h1:4222, nats://h2:4222" */
	const char *name;	/* cluster_name */
	const char *creds;	/* NULL or a credentials file */
	const char *tls_ca, *tls_cert, *tls_key;	/* NULL or PEM files */
};

/* Starts connecting (in the background: a cluster that is away is no
 * reason not to start) and puts the gate on t.  NULL with err when the
 * options cannot work (a file that cannot be read). */
struct cluster *cluster_open(struct ev_loop *loop, struct lock_table *t, const struct cluster_opts *o,
			     char *err, size_t errlen);
/* Releases what it holds (best effort, bounded), stops its threads. */
void cluster_close(struct cluster *c);

/* For status: connected or not, to which server. */
bool cluster_connected(const struct cluster *c);

/* For `cohortctl status` and /metrics (issue 18 item 3), read on the loop. */
enum cluster_state {
	CLUSTER_CONNECTING,	/* never connected yet (cohortd just started) */
	CLUSTER_CONNECTED,	/* a server answers and the lock bucket is open */
	CLUSTER_UNREACHABLE,	/* connected once, lost since: refusing, reconnecting */
};
struct cluster_info {
	enum cluster_state state;
	const char *urls;	/* as configured */
	const char *server;	/* the one connected to ("" never) */
	const char *why;	/* the refusal's text, while not connected */
	int64_t since_ms;	/* wall clock: when state last changed */
	int64_t rtt_us;		/* the last round trip measured, -1 none (not connected) */
	uint64_t reconnects;	/* times the cluster came back after being lost */
	uint64_t refused;	/* lock requests refused as unreachable */
	uint64_t on_loop;	/* requests sent and answered on the loop's own connection */
	uint64_t by_worker;	/* requests the worker ran and answered (a first create, a conflict, no leader, ...) */
};
void cluster_info(const struct cluster *c, struct cluster_info *out);

/* Inline: the daemon and the metrics name the states in a build without
 * libnats too (where no cluster ever is, but the code is compiled). */
static inline const char *cluster_state_name(enum cluster_state st)
{
	return st == CLUSTER_CONNECTED ? "connected" : st == CLUSTER_UNREACHABLE ? "unreachable" : "connecting";
}

#endif
