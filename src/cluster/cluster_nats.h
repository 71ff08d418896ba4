/*
 * cluster_nats.h - what both NATS connections of a cohortd (the locks',
 * cluster_conn.c, and the bus's, cluster_bus_nats.c) do alike: connect
 * with the same options, and follow a key-value bucket with a watch.
 */
#ifndef COHORT_CLUSTER_NATS_H
#define COHORT_CLUSTER_NATS_H

#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

struct cluster_nats_conf {
	const char *urls;	/* "nats://a:4222, nats://b:4222" */
	const char *creds, *tls_ca, *tls_cert, *tls_key;	/* NULL: not used */
	int64_t timeout_ms;
	bool no_reconnect_buffer;	/* refuse what is published while away */
	bool no_echo;		/* what it publishes is not sent back to its own subscriptions */
	bool in_order;		/* the servers in the order given, not shuffled */
	bool send_asap;		/* a publish is written at once, not by libnats's flusher thread */
	/* Read and written on an event loop through these (natsOptions_SetEventLoop):
	 * no read thread of libnats's.  ev_loop NULL: libnats's threads. */
	void *ev_loop;
	natsEvLoop_Attach ev_attach;
	natsEvLoop_ReadAddRemove ev_read;
	natsEvLoop_WriteAddRemove ev_write;
	natsEvLoop_Detach ev_detach;
	natsConnectionHandler on_reconnected, on_disconnected, on_closed;	/* closed may be NULL */
	void *arg;
};

/* Starts the connection: NATS_OK with *nc set, which keeps trying in the
 * background while no server answers.  Else *step says what failed
 * ("NATS options" or "connect"). */
natsStatus cluster_nats_connect(const struct cluster_nats_conf *k, natsConnection **nc,
				const char **step);

/* A watcher thread's loop: watches the bucket *kv while *ready, again after
 * *rewatch is set (a reconnection) or the watch failed, hands each entry
 * to fn (which owns it; none for the end of the initial values), until
 * *stop. */
void cluster_nats_watch(void *const *kv, atomic_bool *ready, atomic_bool *rewatch, atomic_bool *stop,
			void (*fn)(void *arg, kvEntry *e), void *arg);

/* A worker's pause while the bucket or stream is not there yet: until cv
 * is signalled (a job) or half a second has passed.  mu held. */
void cluster_nats_pause(pthread_cond_t *cv, pthread_mutex_t *mu);

#endif
