/*
 * cluster_impl.h - what cluster_conn.c (the threads that talk to NATS) and
 * cluster_lock.c (the keys' state, on the loop) share: the messages
 * between them and the struct cluster.  Messages go loop -> worker on
 * `jobs` and worker/watcher/libnats callbacks -> loop on `done`, both
 * under `mu`; the loop is woken by `wake`.
 */
#ifndef COHORT_CLUSTER_IMPL_H
#define COHORT_CLUSTER_IMPL_H

#include <ev.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "cluster.h"
#include "map.h"

#define CLUSTER_OP_TIMEOUT_MS 2000	/* one request to the cluster, at most */
#define CLUSTER_HELPERS 7		/* threads beside the worker running requests */

enum cmsg_kind {
	CM_CREATE, CM_UPDATE, CM_DELETE,	/* jobs, and their results */
	CM_ENTRY,			/* the watch saw a key change */
	CM_UP, CM_DOWN,			/* the connection (and bucket) came, went */
	CM_RTT,				/* cluster_stats.c: a round trip measured (rev: us, 0 none) */
	CM_WATCH,			/* cluster_fast.c: a new watch of the bucket (sub) */
};

enum cres {
	CR_OK,		/* done: rev is the new revision */
	CR_CONFLICT,	/* the key was not as expected: rev and value say what it is */
	CR_GONE,	/* ... it is deleted (a create may try again) */
	CR_AWAY,	/* no answer: the cluster is unreachable */
};

struct cmsg {
	struct cmsg *next;
	struct cmsg *prev;	/* cluster_fast.c's list only */
	enum cmsg_kind kind;
	char *key;		/* encoded lock name */
	char *value;		/* to write; or what the key holds */
	uint64_t last;		/* the revision expected (update, delete; create: a delete marker's, or 0) */
	void *cookie;		/* the loop's, never touched by the worker */
	int64_t sent_ms;	/* monotonic, when the loop sent it */
	bool renewal;		/* CM_UPDATE of a key we own (not a take-over) */
	/* results */
	enum cres res;
	uint64_t rev;
	bool deleted;		/* CM_ENTRY: a delete or purge */
	char err[256];		/* CR_AWAY: why */
	bool again;		/* CR_AWAY, and the cluster did nothing of it: worth a second try */
	/* cluster_fast.c: sent on the loop's own connection */
	uint64_t fseq;		/* its reply subject's number */
	void *sub;		/* CM_WATCH: the natsSubscription */
	int64_t fast_ms;	/* monotonic, when it was sent there */
};

/* cluster_fast.c: the loop's own NATS connection, for the hot path's
 * requests.  libnats calls the adapter from any of its threads: what it
 * asks for is kept under mu and applied on the loop (kick). */
struct cluster_fast {
	pthread_t loop_thread;
	pthread_mutex_t mu;
	void *conn;		/* natsConnection, as given to the adapter (under mu) */
	int fd;			/* -1: detached (under mu) */
	bool rd, wr;		/* the events libnats wants (under mu) */
	unsigned gen;		/* a new attach or a detach (under mu) */
	ev_async kick;
	ev_io rio, wio;
	int applied_fd;
	unsigned applied_gen;

	_Atomic(void *) nc;	/* natsConnection, once its reply subscription is made */
	atomic_bool up;		/* attached to the loop: between libnats's attach and detach */
	atomic_bool lost;	/* detached: what waits for an answer is ended on the loop */
	void *stray;		/* a connection made whose subscription failed: closed at close */
	_Atomic(void *) sub;	/* natsSubscription: <inbox>.* (sync, read on the loop) */
	void *js;		/* the worker's jsCtx on it, for the watch */
	void *wsub;		/* the loop's: the bucket's watch (sync, ordered consumer) */
	atomic_bool rewatch;	/* reconnected: the worker makes a new watch */
	char inbox[96];		/* "_INBOX.<nuid>." */
	uint64_t seq;
	struct cmsg *head, *tail;	/* sent, not answered: oldest first */
	struct intmap sent_by_seq;	/* the same, by reply number */
	ev_timer timer;		/* the oldest one's deadline */
	bool closing;		/* everything goes to the worker now */
	void **trash;		/* natsMsg to destroy, a few ms from now */
	size_t ntrash, trash_cap;
	ev_timer sweep;
	uint64_t sent, handed;	/* requests sent here; handed on to the worker */
};

struct cluster {
	struct ev_loop *loop;
	struct lock_table *t;
	char *urls;		/* as configured, for messages */
	char *bucket;		/* COHORT_LOCKS_<name> */
	char *owner;		/* this cohortd in the keys' values: host:pid:random */
	struct cluster_opts_copy {
		char *creds, *tls_ca, *tls_cert, *tls_key;
	} o;
	int replicas;

	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct cmsg *jobs, *jobs_tail;
	struct cmsg *done, *done_tail;
	ev_async wake;
	pthread_t worker, watcher;
	pthread_t helpers[CLUSTER_HELPERS];	/* more workers on the jobs (cluster_conn.c) */
	int nhelpers;
	bool threads;
	atomic_bool stop;
	atomic_bool rewatch;	/* the watcher starts a new watch (after a reconnection) */
	atomic_bool kv_ready;
	atomic_bool slow_watch;	/* the watcher thread watches: the loop's connection cannot */
	bool fast_tried;	/* the worker's: cluster_fast_connect was called */
	void *nc, *js, *kv;	/* natsConnection, jsCtx, kvStore: the worker's (kv read by the watcher once ready) */

	/* the loop's */
	bool up;
	bool ever_up;		/* up once: before that, waiters wait for the first connection */
	char server[256];	/* the one connected to, for messages */
	struct map keys;	/* lock name -> struct ckey */
	struct map markers;	/* lock name -> struct marker (cluster_lock.c), no ckey */
	char refusal[640];
	int64_t state_ms;	/* wall clock: when up last changed */
	int64_t rtt_us;		/* the last round trip measured, -1: none */
	uint64_t reconnects;	/* up again after being down */
	uint64_t refused;	/* requests refused as unreachable */
	uint64_t worker_done;	/* requests the worker ran, their results handled */

	struct cluster_fast fast;

	/* cluster_stats.c: a thread that measures the round trip every
	 * CLUSTER_RTT_EVERY_MS, so no request waits behind it */
	pthread_t rtt_thread;
	bool rtt_running;
	pthread_mutex_t rtt_mu;
	pthread_cond_t rtt_cv;
};

#define CLUSTER_RTT_EVERY_MS 2000

/* cluster_conn.c */
int cluster_threads_start(struct cluster *c, char *err, size_t errlen);
void cluster_threads_stop(struct cluster *c);
/* Loop -> the cluster: on the loop's own connection (cluster_fast.c) when
 * it can, else on the worker's. */
void cluster_send(struct cluster *c, struct cmsg *m);
/* Loop -> worker. */
void cluster_enqueue(struct cluster *c, struct cmsg *m);
/* Any thread -> loop. */
void cluster_post(struct cluster *c, struct cmsg *m);
void cmsg_free(struct cmsg *m);

/* cluster_fast.c */
void cluster_fast_init(struct cluster *c);
/* The worker's, once its own connection is up: connects the loop's, to
 * the server `first` (the worker's) if it can. */
void cluster_fast_connect(struct cluster *c, const char *first);
/* Loop: sends m on the loop's connection; false: not sent (the worker's then). */
bool cluster_fast_send(struct cluster *c, struct cmsg *m);
/* Worker, once the bucket is there (and after the loop's connection came
 * back): a watch of the bucket on that connection, read on the loop.
 * false: none made (the watcher thread's watch is needed). */
bool cluster_fast_watch(struct cluster *c);
/* Loop: a CM_WATCH came. */
void cluster_fast_watching(struct cluster *c, struct cmsg *m);
/* Loop, at close: what waits for an answer goes to the worker. */
void cluster_fast_hand_over(struct cluster *c);
/* Loop, once the worker is joined: the connection goes (before nats_CloseAndWait). */
void cluster_fast_close(struct cluster *c);
/* Loop, after nats_CloseAndWait: the watchers. */
void cluster_fast_free(struct cluster *c);

/* cluster_stats.c */
void cluster_stats_start(struct cluster *c);
void cluster_stats_stop(struct cluster *c);

/* cluster_value.c: a key's value (exclusive, or shared: one entry per
 * cohortd), and the holders a waiter has seen in it. */
bool cv_shared(const char *v);
char *cv_exclusive(int64_t ttl_ms, const char *owner);
/* v (NULL, exclusive or shared) as a shared value with owner's entry;
 * without it (NULL when no entry is left). */
char *cv_with(const char *v, const char *owner, int64_t ttl_ms, uint64_t seq);
char *cv_without(const char *v, const char *owner);
bool cv_holds(const char *v, const char *owner);
struct cseen {
	char *id, *text;	/* a holder, and its entry as last seen */
	int64_t seen_ms;	/* monotonic: when that entry last changed */
	int64_t ttl_ms;
};
struct cseen_list {
	struct cseen *v;
	size_t n;
};
void cseen_update(struct cseen_list *l, const char *v, uint64_t rev, const char *self, int64_t now);
int64_t cseen_free_at(const struct cseen_list *l, int64_t now);
void cseen_clear(struct cseen_list *l);

/* cluster_lock.c */
void cluster_lock_init(struct cluster *c);
void cluster_lock_handle(struct cluster *c, struct cmsg *m);
void cluster_lock_close(struct cluster *c);
/* Once the threads are gone: the keys' memory. */
void cluster_lock_free(struct cluster *c);
/* "a:b.c" -> a KV key ("a=3Ab=2Ec"), and back (NULL if it is not one of ours). */
char *cluster_key_encode(const char *name);
char *cluster_key_decode(const char *key);

#endif
