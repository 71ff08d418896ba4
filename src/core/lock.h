/*
 * lock.h - the lock table: named leases with a TTL, exclusive or shared,
 * FIFO waiters (consecutive shared waiters at the head are granted
 * together), fencing tokens that only grow, and sessions whose end ends
 * their leases and waits at once.
 *
 * It knows no transport: the control socket and the bus each open a
 * session per connection and turn requests into these calls.  The leases
 * are in one heap by the time they fall due (lock_heap.h) under one libev
 * timer, set to the earliest, so expiry is exact and nothing sweeps; when
 * many fall due at once they are ended LOCK_EXPIRE_BATCH per loop
 * iteration, so the loop goes on serving between batches.  The waiting
 * requests' deadlines (wait_ms) are in a second heap, the same way.  Every
 * operation is O(1) on the lock's lists (O(log n) on a heap), plus a hash
 * lookup of the name.
 *
 * A lease may name its holder's work (a process group; struct lock_work).
 * When such a lease ends other than by its release (it expired, its
 * session ended), it is not gone yet: it is "ending", still a holder of
 * its lock, until the transport has stopped that work and says so with
 * lock_lease_done().  So the next holder never starts while the last
 * one's work still runs.  The table only carries the work: stopping it is
 * the daemon's (lock_group.c).
 */
#ifndef COHORT_LOCK_H
#define COHORT_LOCK_H

#include <ev.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

#include "histo.h"
#include "lock_heap.h"
#include "map.h"
#include "util.h"

#define LOCK_TTL_MAX_MS (86400000LL)	/* a lease lasts at most a day per renewal */
#define LOCK_WAIT_MAX_MS (7 * 86400000LL)
#define LOCK_TOKEN_BLOCK 10000		/* tokens reserved per write of the counter */
#define LOCK_STOP_TIMEOUT_MS 5000LL	/* a lost lease's work: from TERM to KILL */
#define LOCK_STOP_TIMEOUT_MAX_MS 3600000LL
#define LOCK_EXPIRE_BATCH 256		/* leases ended per loop iteration when many fall due */

enum lock_mode { LOCK_EXCLUSIVE, LOCK_SHARED };

struct lock;
struct lock_table;
struct lock_session;
struct lock_wait;
struct lock_lease;

/* A waiting request ended: granted (token and expiry set) or not (why). */
typedef void (*lock_wait_fn)(struct lock_session *s, void *cookie, bool granted, uint64_t token,
			     int64_t expires_ms, const char *why);

/* What a holder runs under its lease, for whoever stops it when the lease
 * is lost; pgid 0: nothing (the holder's own business). */
struct lock_work {
	pid_t pgid;		/* its process group */
	uid_t uid;		/* who asked: the group was theirs */
	int64_t stop_timeout_ms;	/* from the stop signal to KILL */
};

/* A lease with work ended other than by its release (why: "expired", ...):
 * stop the work, then call lock_lease_done.  Never called back from
 * within itself: it must not call into the table before it returns. */
typedef void (*lock_end_fn)(struct lock_table *t, struct lock_lease *le, const char *why, void *arg);

/* A lease was granted (why NULL) or ended (why: "released", "expired", "its
 * holder went away", ...), for whoever shows the table ($sys.event.lock).
 * Called after the table changed; it must not call into the table. */
typedef void (*lock_event_fn)(struct lock_table *t, const struct lock_lease *le, const char *why, void *arg);

/* A request joined a lock's queue (queued) or left it (granted, gave up,
 * its connection gone), for the same watchers; the same rules. */
typedef void (*lock_queue_fn)(struct lock_table *t, const struct lock_wait *w, bool queued, void *arg);

struct lock_lease {
	struct lock *lock;
	struct lock_session *session;
	uint64_t token;
	int64_t expires_ms;	/* wall clock, for humans and clients */
	int64_t due_us;		/* monotonic (histo_now_us), when it expires: a step of the
				 * wall clock moves no expiry */
	LIST_ENTRY(lock_lease) link;		/* holders of the lock */
	LIST_ENTRY(lock_lease) s_link;		/* leases of the session */
	struct lock_work work;
	char *owner;		/* the session's, copied once ending */
	int64_t granted_us;	/* monotonic: its hold time, for /metrics */
	/* the small ones last, together: 128 bytes a lease with malloc's own */
	uint32_t heap_at;	/* its place in the table's deadlines, LOCK_HEAP_NONE once ending */
	enum lock_mode mode;
	bool ending;		/* lost, its work being stopped; session is NULL */
};

struct lock_wait {
	struct lock *lock;
	struct lock_session *session;
	int64_t ttl_ms;
	struct lock_work work;
	void *cookie;
	int64_t due_us;		/* monotonic: when it gives up (wait_ms) */
	int64_t queued_us;	/* monotonic: its wait time, for /metrics */
	uint64_t id;		/* this table's, for on_queue and `locks` */
	TAILQ_ENTRY(lock_wait) link;		/* FIFO of the lock */
	LIST_ENTRY(lock_wait) s_link;		/* waits of the session */
	uint32_t heap_at;	/* its place in the table's waits heap */
	enum lock_mode mode;
	bool try_only;		/* asked with wait_ms 0, waiting on the gate's answer */
};

struct lock {
	LIST_HEAD(lock_holders, lock_lease) holders;	/* all shared, or one exclusive */
	TAILQ_HEAD(lock_waiters, lock_wait) waiters;	/* FIFO */
	uint32_t nholders;
	uint32_t nwaiters;
	enum lock_mode held_mode;
	bool touched;		/* in the list of a session being cleared */
	char name[];		/* in the same allocation */
};

struct lock_session {
	struct lock_table *t;
	char *owner;		/* "service core (pid 12)", "uid 0 (pid 123)" */
	bool restricted;	/* only names matching patterns */
	struct strv patterns;	/* a copy: a reload may free the config */
	void *svc;		/* the service it belongs to, or NULL */
	void *user;		/* the transport's own (its connection) */
	lock_wait_fn on_wait;
	LIST_HEAD(lock_session_leases, lock_lease) leases;
	LIST_HEAD(lock_session_waits, lock_wait) waits;
	LIST_ENTRY(lock_session) link;	/* in the table's sessions */
};

struct lock_table {
	struct ev_loop *loop;
	struct map locks;		/* name -> struct lock (only while held or awaited) */
	struct lock_heap deadlines;	/* every lease not ending, earliest first */
	ev_timer expiry_w;		/* at the earliest of deadlines */
	struct lock_heap wait_deadlines;	/* every waiting request, by when it gives up */
	ev_timer wait_w;		/* at the earliest of wait_deadlines */
	LIST_HEAD(lock_sessions, lock_session) sessions;
	uint64_t next_token;		/* the next token handed out */
	uint64_t reserved;		/* tokens up to here are on disk as used */
	char *counter_path;		/* NULL: not persisted (tests) */
	uint64_t grants;		/* since start, for status */
	/* since start, for /metrics */
	uint64_t expiries;		/* leases that ran out */
	uint64_t holder_gone;		/* leases ended by their holder's end (connection, service) */
	uint64_t releases;		/* leases released by their holder */
	struct histo wait_h;		/* from request to grant (0 when at once) */
	struct histo hold_h;		/* from grant to end */
	lock_event_fn on_event;		/* NULL: nobody watches */
	lock_queue_fn on_queue;		/* NULL: nobody watches; event_arg too */
	void *event_arg;
	uint64_t next_wait_id;		/* names a waiter to those watchers */
	lock_end_fn on_end;		/* NULL: a lost lease ends at once, work or not */
	void *end_arg;
	/* The next block is written ahead by a thread once half of this one
	 * is handed out, so that a grant waits for the disk (a write and two
	 * fsyncs, which stopped the whole loop) only when half a block goes
	 * faster than one write. */
	pthread_t ahead_thread;
	bool ahead_running;		/* ahead_thread to be joined */
	atomic_bool ahead_finished;	/* set by the thread when it is done */
	uint64_t ahead_upto;		/* the mark it writes */
	int ahead_errno;		/* 0 when written */
	bool ahead_failed;		/* no more until a write in the loop works */
	ev_async ahead_done;		/* wakes the loop when it is done */
	char refusal[160];		/* why grants are refused while the counter cannot be written */
	const struct lock_gate *gate;	/* NULL: this table decides alone */
	void *gate_arg;
};

/*
 * A gate: another lock service this table must win a lock from before it
 * grants it here (the cluster's, src/cluster).  A grant waits for the
 * gate, which grants the head waiter (or every shared waiter at the head)
 * with its own token (lock_gate_grant).  The table tells the gate what it
 * needs whenever a lock's state here changes.  A shared request while
 * shared leases are held here and nobody waits asks the gate whether it
 * may join them at once (joined).
 */
struct lock_gate {
	/* NULL when a request that may wait wait_ms can be taken now, else
	 * why not. */
	const char *(*refusal)(void *arg, int64_t wait_ms);
	/* name: held here or not, wanted by a waiter here or not (ttl_ms: the
	 * head waiter's).  Called from within the table: must not call back
	 * into it before it returns. */
	void (*update)(void *arg, const char *name, bool held, bool wanted, enum lock_mode mode, int64_t ttl_ms);
	/* mode: the leases' held here, else the head waiter's.  joined: true
	 * with the token when the gate still has name shared (NULL: never). */
	bool (*joined)(void *arg, const char *name, uint64_t *token);
};
#define LOCK_GATE_TRY_MS 5000LL		/* a wait_ms 0 request waits this long at most for the gate */

void lock_table_set_gate(struct lock_table *t, const struct lock_gate *gate, void *arg);
/* The gate won name in mode: its head waiter gets it with token (a shared
 * one: with every shared waiter right behind it).  false: nobody waits in
 * that mode at the head (the gate should let go, and try again in the
 * head's mode); else *ttl_ms is the (first) new lease's. */
bool lock_gate_grant(struct lock_table *t, const char *name, uint64_t token, enum lock_mode mode,
		     int64_t *ttl_ms);
/* The gate cannot have name now: its waiters (all, or those that asked
 * not to wait) are refused with why. */
void lock_gate_fail(struct lock_table *t, const char *name, bool all, const char *why);
/* The gate lost name (taken over, unreachable past its TTL): the leases
 * held here are lost, as if expired. */
void lock_gate_lost(struct lock_table *t, const char *name, const char *why);

/* Results of an acquire. */
enum lock_result { LOCK_GRANTED, LOCK_QUEUED, LOCK_ERROR };

/* counter_path: where the token high-water mark lives (NULL: memory only).
 * -1 with err when the counter cannot be read (or says nothing sensible).
 * One that cannot be written (a full disk) is no reason not to start: it is
 * logged, and grants are refused with the reason until a write works. */
int lock_table_init(struct lock_table *t, struct ev_loop *loop, const char *counter_path,
		    char *err, size_t errlen);
void lock_table_free(struct lock_table *t);

/* patterns NULL: any name (an admin). */
struct lock_session *lock_session_open(struct lock_table *t, const char *owner,
				       const struct strv *patterns, void *svc, lock_wait_fn on_wait);
/* Ends the session: its leases end, its waits leave the queues (without
 * calling on_wait), and the next waiters are granted now. */
void lock_session_close(struct lock_session *s);
/* Ends the leases and waits of every session that belongs to svc (the
 * service exited); the sessions stay open.  forget: svc is going away. */
void lock_drop_service(struct lock_table *t, void *svc, bool forget);

/* Granted: token and expires_ms set.  Queued: on_wait(cookie) runs later.
 * Error: *why says what ("timeout" when busy and wait_ms is 0). */
enum lock_result lock_acquire(struct lock_session *s, const char *name, enum lock_mode mode,
			      int64_t ttl_ms, int64_t wait_ms, void *cookie, uint64_t *token,
			      int64_t *expires_ms, const char **why);
/* The same, for a holder whose work (work->pgid not 0) is to be stopped
 * before the next holder starts if the lease is lost. */
enum lock_result lock_acquire_work(struct lock_session *s, const char *name, enum lock_mode mode,
				   int64_t ttl_ms, int64_t wait_ms, const struct lock_work *work,
				   void *cookie, uint64_t *token, int64_t *expires_ms, const char **why);
/* An ending lease's work has stopped: the lease goes, the next waiters
 * are granted. */
void lock_lease_done(struct lock_table *t, struct lock_lease *le);
/* Who held it: the session's owner, or its copy once ending. */
const char *lock_lease_owner(const struct lock_lease *le);
int lock_renew(struct lock_session *s, const char *name, uint64_t token, int64_t ttl_ms,
	       int64_t *expires_ms, const char **why);
int lock_release(struct lock_session *s, const char *name, uint64_t token, const char **why);
/* Cancels a queued request by its cookie (the client gave up). */
void lock_cancel_wait(struct lock_session *s, void *cookie);

const char *lock_mode_name(enum lock_mode m);
/* Leases held (ending ones too) and requests waiting, over every lock. */
void lock_table_counts(const struct lock_table *t, size_t *held, size_t *waiting);
bool lock_allowed(const struct lock_session *s, const char *name);

#endif
