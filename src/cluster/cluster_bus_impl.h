/*
 * cluster_bus_impl.h - what cluster_bus.c (the loop's side) and
 * cluster_bus_nats.c (the threads that talk to NATS) share: the messages
 * between them and struct cluster_bus.  Loop -> worker on `jobs`,
 * worker and libnats's threads -> loop on `done`, both under `mu`.
 */
#ifndef COHORT_CLUSTER_BUS_IMPL_H
#define COHORT_CLUSTER_BUS_IMPL_H

#include <ev.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "cluster_bus.h"
#include "map.h"

#define CBUS_OP_TIMEOUT_MS 2000

enum bmsg_kind {
	/* jobs (and the answers of those that have one) */
	BM_PUBLISH, BM_SESSION_OPEN, BM_SESSION_CLOSE, BM_SESSION_SUBS, BM_ACK,
	/* news */
	BM_DELIVER, BM_SESSION_MSG, BM_RETAINED, BM_UP, BM_DOWN,
};

struct bmsg {
	struct bmsg *next;
	enum bmsg_kind kind;
	char *topic;
	char *data;		/* also: the patterns (SESSION_*) */
	size_t len;
	int qos;
	int64_t ts_ms;
	char *from, *msgid;
	char *key;		/* session key */
	char *ack;		/* reply subject to ack */
	bool flag;		/* ACK: nak; SESSION_CLOSE: destroy; PUBLISH: retain */
	uint64_t cookie;
	/* results */
	uint64_t seq;
	bool duplicate;
	unsigned delivered;
	bool failed;
	bool packed;		/* topic, data, from and msgid are in its own block */
	char err[256];
};

struct cluster_bus {
	struct ev_loop *loop;
	struct cluster_bus_hooks h;
	char *urls, *name;
	char *creds, *tls_ca, *tls_cert, *tls_key;
	char *stream;		/* COHORT_BUS_<name> */
	char *prefix;		/* cohort.<name> */
	char *sessions_bucket;	/* COHORT_SESSIONS_<name> */
	char *retained_bucket;	/* COHORT_RETAINED_<name> */
	int64_t max_age_ms, ack_wait_ms;

	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct bmsg *jobs, *jobs_tail;
	struct bmsg *done, *done_tail;
	ev_async wake;
	pthread_t worker, watcher;
	bool thread, watching;
	atomic_bool stop;
	bool closed;		/* the connection's closed callback ran (under mu) */
	atomic_bool ready;	/* the stream and bucket are there (the worker's) */
	void *nc, *js, *kv, *fanout;	/* the worker's: natsConnection, jsCtx, kvStore, natsSubscription */
	void *rkv;		/* kvStore of the retained values: the worker's, read by the watcher once ready */
	atomic_bool rewatch;	/* the watcher starts a new watch (after a reconnection) */
	struct map subs;	/* the worker's: encoded session key -> natsSubscription */
	/* qos-1 publishes sent, waiting for the stream's ack (natsMsg -> bmsg) */
	pthread_mutex_t pmu;
	struct intmap inflight;

	/* the loop's */
	bool up, ever_up;
	char why[256];		/* while not up */
	char *server;		/* the last connected to */
	int64_t state_ms;	/* wall clock: when up last changed */
	uint64_t reconnects;	/* times it came back after being lost */
};

/* cluster_bus.c */
void cbus_post(struct cluster_bus *cb, struct bmsg *m);
void bmsg_free(struct bmsg *m);
/* A message (PUBLISH, DELIVER, SESSION_MSG) in one block with copies of its
 * strings: one allocation where there were four, each message. */
struct bmsg *bmsg_new_msg(enum bmsg_kind kind, const char *topic, size_t tn, const char *data, size_t len,
			  const char *from, const char *msgid);

/* cluster_bus_retained.c: a topic as a key of the retained values'
 * bucket; the thread that watches the bucket. */
char *cbus_retained_key(const char *topic);
void *cbus_retained_watcher(void *arg);

/* cluster_bus_nats.c */
int cbus_thread_start(struct cluster_bus *cb, char *err, size_t errlen);
void cbus_thread_stop(struct cluster_bus *cb);

#endif
