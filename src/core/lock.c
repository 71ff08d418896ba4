/*
 * lock.c - see lock.h.
 *
 * Fencing tokens come from one counter for all locks.  Its high-water mark
 * is on disk: tokens are reserved LOCK_TOKEN_BLOCK at a time, the new mark
 * written atomically (.new, fsync, rename) before any token of the block
 * is handed out, so after any crash the counter restarts above every
 * token ever given, with one disk write per block rather than per grant.
 * That write is made by a thread while the previous block still lasts
 * (see ahead_start), so the loop does not stop for it.
 */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config_keys.h"
#include "lock.h"
#include "log.h"
#include "thread.h"

const char *lock_mode_name(enum lock_mode m)
{
	return m == LOCK_SHARED ? "shared" : "exclusive";
}

/* --- the token counter ------------------------------------------------------ */

static int write_reserve(struct lock_table *t, uint64_t upto)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%" PRIu64 "\n", upto);

	if (t->counter_path && write_file_atomic(t->counter_path, buf, (size_t)n) < 0)
		return -1;
	t->reserved = upto;
	t->ahead_failed = false;
	return 0;
}

static void *ahead_main(void *arg)
{
	struct lock_table *t = arg;
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%" PRIu64 "\n", t->ahead_upto);

	t->ahead_errno = write_file_atomic(t->counter_path, buf, (size_t)n) < 0 ? errno : 0;
	atomic_store(&t->ahead_finished, true);
	ev_async_send(t->loop, &t->ahead_done);
	return NULL;
}

/* Joins the write ahead and takes its mark, in the loop's thread. */
static void ahead_join(struct lock_table *t)
{
	pthread_join(t->ahead_thread, NULL);
	t->ahead_running = false;
	if (!t->ahead_errno) {
		if (t->ahead_upto > t->reserved)
			t->reserved = t->ahead_upto;
		return;
	}
	/* Not fatal yet: the block in hand lasts, and the write is tried
	 * again, in the loop, when it runs out (grants are refused if it
	 * fails then). */
	t->ahead_failed = true;
	log_warn(NULL, "cannot write the fencing token counter %s ahead: %s", t->counter_path,
		 strerror(t->ahead_errno));
}

static void ahead_done_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	struct lock_table *t = container_of(w, struct lock_table, ahead_done);
	(void)loop;
	(void)revents;

	if (t->ahead_running && atomic_load(&t->ahead_finished))
		ahead_join(t);
}

static void ahead_start(struct lock_table *t)
{
	t->ahead_upto = t->reserved + LOCK_TOKEN_BLOCK;
	atomic_store(&t->ahead_finished, false);
	t->ahead_running = thread_start(&t->ahead_thread, ahead_main, t) == 0;
	t->ahead_failed = !t->ahead_running;	/* not again each grant: the loop writes it */
}

static int take_token(struct lock_table *t, uint64_t *token, const char **why)
{
	if (t->next_token > t->reserved && t->ahead_running)
		ahead_join(t);	/* the block ran out under the write: wait for it */
	if (t->next_token > t->reserved &&
	    write_reserve(t, t->next_token + LOCK_TOKEN_BLOCK - 1) < 0) {
		log_error(NULL, "cannot write the fencing token counter %s: %s (no lock is granted "
			  "until it can be written)", t->counter_path, strerror(errno));
		snprintf(t->refusal, sizeof(t->refusal), "cannot persist the fencing token counter "
			 "(%s); no lock is granted until it can be written", strerror(errno));
		*why = t->refusal;
		return -1;
	}
	*token = t->next_token++;
	if (t->counter_path && !t->ahead_running && !t->ahead_failed &&
	    t->next_token + LOCK_TOKEN_BLOCK / 2 > t->reserved)
		ahead_start(t);
	return 0;
}

static void expiry_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void wait_due_cb(struct ev_loop *loop, ev_timer *w, int revents);

int lock_table_init(struct lock_table *t, struct ev_loop *loop, const char *counter_path,
		    char *err, size_t errlen)
{
	*t = (struct lock_table){.loop = loop, .next_token = 1};
	t->deadlines = LOCK_HEAP_OF(struct lock_lease, due_us, heap_at);
	t->wait_deadlines = LOCK_HEAP_OF(struct lock_wait, due_us, heap_at);
	ev_init(&t->expiry_w, expiry_cb);
	ev_init(&t->wait_w, wait_due_cb);
	HISTO_INIT_SLOW(&t->wait_h);
	HISTO_INIT_SLOW(&t->hold_h);
	if (counter_path) {
		t->counter_path = xstrdup(counter_path);
		char buf[64] = "";
		int fd = open(counter_path, O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			ssize_t n = read(fd, buf, sizeof(buf) - 1);
			close(fd);
			char *end;
			errno = 0;
			unsigned long long v = strtoull(buf, &end, 10);
			if (n <= 0 || errno || end == buf || (*end && *end != '\n')) {
				snprintf(err, errlen, "%s: not a token count; refusing to start rather than "
					 "hand out tokens that might go backwards", counter_path);
				goto fail;
			}
			t->next_token = v + 1;
		} else if (errno != ENOENT) {
			snprintf(err, errlen, "%s: %s", counter_path, strerror(errno));
			goto fail;
		}
	}
	/* Reserve the first block now.  A full state_dir must not stop the
	 * stack: supervision goes on, and grants are refused with the reason
	 * until the counter can be written (each grant tries, as at runtime). */
	t->reserved = t->next_token - 1;
	if (write_reserve(t, t->next_token + LOCK_TOKEN_BLOCK - 1) < 0)
		log_error(NULL, "cannot write the fencing token counter %s: %s (supervising anyway; "
			  "no lock is granted until it can be written)", counter_path, strerror(errno));
	ev_async_init(&t->ahead_done, ahead_done_cb);
	ev_async_start(loop, &t->ahead_done);
	ev_unref(loop);	/* it alone must not keep the loop running */
	return 0;
fail:
	free(t->counter_path);
	t->counter_path = NULL;
	return -1;
}

/* --- locks ----------------------------------------------------------------- */

static struct lock *lock_get(struct lock_table *t, const char *name)
{
	struct lock *l = map_get(&t->locks, name);

	if (!l) {
		size_t len = strlen(name);
		l = xcalloc(1, sizeof(*l) + len + 1);
		memcpy(l->name, name, len + 1);
		TAILQ_INIT(&l->waiters);
		map_put(&t->locks, l->name, l);
	}
	return l;
}

/* Tells the gate where name stands here after a change. */
static void gate_update(struct lock_table *t, struct lock *l)
{
	if (t->gate) {
		struct lock_wait *head = TAILQ_FIRST(&l->waiters);
		enum lock_mode mode = l->nholders ? l->held_mode : head ? head->mode : LOCK_EXCLUSIVE;
		t->gate->update(t->gate_arg, l->name, l->nholders > 0, head != NULL, mode, head ? head->ttl_ms : 0);
	}
}

static void lock_maybe_free(struct lock_table *t, struct lock *l)
{
	gate_update(t, l);
	if (l->nholders || l->nwaiters)
		return;
	map_del(&t->locks, l->name);
	free(l);
}

static bool compatible(const struct lock *l, enum lock_mode mode)
{
	return l->nholders == 0 || (mode == LOCK_SHARED && l->held_mode == LOCK_SHARED);
}

bool lock_allowed(const struct lock_session *s, const char *name)
{
	if (!s->restricted)
		return true;
	for (size_t i = 0; i < s->patterns.n; i++)
		if (glob_match(s->patterns.v[i], name))
			return true;
	return false;
}

static void process_queue(struct lock_table *t, struct lock *l);

/* --- deadlines ------------------------------------------------------------- */

/* A heap's timer, at its earliest deadline (or stopped: none). */
static void heap_arm(struct lock_table *t, const struct lock_heap *h, ev_timer *timer)
{
	int64_t due_us;

	ev_timer_stop(t->loop, timer);
	if (!lock_heap_first_due(h, &due_us))
		return;
	int64_t in_us = due_us - histo_now_us();
	ev_now_update(t->loop);	/* libev counts from its clock: not stale (evtimer.h) */
	ev_timer_set(timer, in_us > 0 ? (double)in_us / 1e6 : 0, 0);
	ev_timer_start(t->loop, timer);
}

/* item (in h or not yet: its place LOCK_HEAP_NONE) now falls due at its
 * deadline, just set. */
static void heap_set(struct lock_table *t, struct lock_heap *h, ev_timer *timer, void *item)
{
	if (*(uint32_t *)((char *)item + h->place_off) == LOCK_HEAP_NONE)
		lock_heap_push(h, item);
	else
		lock_heap_update(h, item);
	if (lock_heap_top(h) == item || !ev_is_active(timer))
		heap_arm(t, h, timer);
}

static void heap_clear(struct lock_table *t, struct lock_heap *h, ev_timer *timer, void *item)
{
	bool was_first = lock_heap_top(h) == item;

	lock_heap_remove(h, item);
	if (was_first)
		heap_arm(t, h, timer);
}

/* The lease falls due ttl_ms from now. */
static void deadline_set(struct lock_table *t, struct lock_lease *le, int64_t ttl_ms)
{
	le->due_us = histo_now_us() + ttl_ms * 1000;
	heap_set(t, &t->deadlines, &t->expiry_w, le);
}

static void deadline_clear(struct lock_table *t, struct lock_lease *le)
{
	heap_clear(t, &t->deadlines, &t->expiry_w, le);
}

static void lease_expired(struct lock_table *t, struct lock_lease *le);
static void wait_expired(struct lock_table *t, struct lock_wait *w);

/* Ends what fell due in h, LOCK_EXPIRE_BATCH at most: when more are due
 * the timer fires again at once, after the loop has polled its
 * descriptors, so that 100,000 leases falling due together do not stop
 * it. */
static void heap_run_due(struct lock_table *t, struct lock_heap *h, ev_timer *timer,
			 void (*expire)(struct lock_table *, void *))
{
	int64_t now = histo_now_us(), due;

	for (int n = 0; n < LOCK_EXPIRE_BATCH && lock_heap_first_due(h, &due) && due <= now; n++)
		expire(t, lock_heap_top(h));
	heap_arm(t, h, timer);
}

static void expire_lease(struct lock_table *t, void *item)
{
	lease_expired(t, item);
}

static void expire_wait(struct lock_table *t, void *item)
{
	wait_expired(t, item);	/* a waiting request that gives up (wait_ms) */
}

static void expiry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct lock_table *t = container_of(w, struct lock_table, expiry_w);
	(void)loop;
	(void)revents;

	heap_run_due(t, &t->deadlines, &t->expiry_w, expire_lease);
}

static void wait_due_cb(struct ev_loop *loop, ev_timer *tw, int revents)
{
	struct lock_table *t = container_of(tw, struct lock_table, wait_w);
	(void)loop;
	(void)revents;

	heap_run_due(t, &t->wait_deadlines, &t->wait_w, expire_wait);
}


static struct lock_lease *grant(struct lock *l, struct lock_session *s, enum lock_mode mode,
				int64_t ttl_ms, const struct lock_work *work, uint64_t token)
{
	struct lock_lease *le = xcalloc(1, sizeof(*le));

	le->lock = l;
	le->session = s;
	le->mode = mode;
	le->token = token;
	le->work = *work;
	le->expires_ms = now_wall_ms() + ttl_ms;
	le->granted_us = histo_now_us();
	le->heap_at = LOCK_HEAP_NONE;
	deadline_set(s->t, le, ttl_ms);
	LIST_INSERT_HEAD(&l->holders, le, link);
	l->nholders++;
	l->held_mode = mode;
	LIST_INSERT_HEAD(&s->leases, le, s_link);
	s->t->grants++;
	if (s->t->on_event)
		s->t->on_event(s->t, le, NULL, s->t->event_arg);
	return le;
}

static void lease_unlink_session(struct lock_lease *le)
{
	LIST_REMOVE(le, s_link);
}

/* why: how it ended, for on_event; NULL when the table is freed. */
static void lease_remove(struct lock_table *t, struct lock_lease *le, const char *why)
{
	struct lock *l = le->lock;

	deadline_clear(t, le);
	histo_observe_us(&t->hold_h, (uint64_t)(histo_now_us() - le->granted_us));
	LIST_REMOVE(le, link);
	l->nholders--;
	if (why && t->on_event)
		t->on_event(t, le, why, t->event_arg);
	if (le->session)
		lease_unlink_session(le);
	free(le->owner);
	free(le);
}

/* The lease ends other than by its release.  With work to stop it stays a
 * holder, leaves its session (which may go now), and on_end is told. */
static void lease_lost(struct lock_table *t, struct lock_lease *le, const char *why)
{
	if (!le->work.pgid || !t->on_end) {
		lease_remove(t, le, why);
		return;
	}
	deadline_clear(t, le);
	lease_unlink_session(le);
	le->owner = xstrdup(le->session->owner);
	le->session = NULL;
	le->ending = true;
	t->on_end(t, le, why, t->end_arg);
}

const char *lock_lease_owner(const struct lock_lease *le)
{
	return le->session ? le->session->owner : le->owner;
}

void lock_lease_done(struct lock_table *t, struct lock_lease *le)
{
	struct lock *l = le->lock;

	lease_remove(t, le, "ended: its work stopped");
	process_queue(t, l);
	lock_maybe_free(t, l);
}

static void wait_unlink(struct lock_wait *w)
{
	struct lock *l = w->lock;
	struct lock_session *s = w->session;

	heap_clear(s->t, &s->t->wait_deadlines, &s->t->wait_w, w);
	TAILQ_REMOVE(&l->waiters, w, link);
	l->nwaiters--;
	LIST_REMOVE(w, s_link);
	if (s->t->on_queue)
		s->t->on_queue(s->t, w, false, s->t->event_arg);
}

/* Grants waiting request w (freed) with token and tells its session;
 * true when it was exclusive, so that nothing after it can be granted. */
static bool grant_waiter(struct lock *l, struct lock_wait *w, uint64_t token)
{
	wait_unlink(w);
	struct lock_lease *le = grant(l, w->session, w->mode, w->ttl_ms, &w->work, token);
	struct lock_session *s = w->session;
	void *cookie = w->cookie;
	bool exclusive = w->mode == LOCK_EXCLUSIVE;
	free(w);
	s->on_wait(s, cookie, true, le->token, le->expires_ms, NULL);
	return exclusive;
}

/* Grants the head of the queue while it fits: one exclusive, or every
 * consecutive shared request. */
static void process_queue(struct lock_table *t, struct lock *l)
{
	struct lock_wait *w;

	if (t->gate)
		return;		/* the gate grants (lock_gate_grant) */
	while ((w = TAILQ_FIRST(&l->waiters)) && compatible(l, w->mode)) {
		uint64_t token;
		const char *why;
		if (take_token(t, &token, &why) < 0) {
			/* Cannot grant safely: the waiter keeps its place and its
			 * deadline; the next release tries again. */
			return;
		}
		histo_observe_us(&t->wait_h, (uint64_t)(histo_now_us() - w->queued_us));
		if (grant_waiter(l, w, token))
			break;
	}
}

static void lease_expired(struct lock_table *t, struct lock_lease *le)
{
	struct lock *l = le->lock;

	log_info(NULL, "lock %s: lease %" PRIu64 " of %s expired", l->name, le->token,
		 le->session->owner);
	t->expiries++;
	lease_lost(t, le, "expired");
	process_queue(t, l);
	lock_maybe_free(t, l);
}

static void wait_expired(struct lock_table *t, struct lock_wait *w)
{
	struct lock *l = w->lock;
	struct lock_session *s = w->session;
	void *cookie = w->cookie;

	wait_unlink(w);
	free(w);
	/* An exclusive waiter leaving the head may let shared ones through. */
	process_queue(t, l);
	lock_maybe_free(t, l);
	s->on_wait(s, cookie, false, 0, 0, "timeout");
}

enum lock_result lock_acquire(struct lock_session *s, const char *name, enum lock_mode mode,
			      int64_t ttl_ms, int64_t wait_ms, void *cookie, uint64_t *token,
			      int64_t *expires_ms, const char **why)
{
	static const struct lock_work none;

	return lock_acquire_work(s, name, mode, ttl_ms, wait_ms, &none, cookie, token, expires_ms, why);
}

enum lock_result lock_acquire_work(struct lock_session *s, const char *name, enum lock_mode mode,
				   int64_t ttl_ms, int64_t wait_ms, const struct lock_work *work,
				   void *cookie, uint64_t *token, int64_t *expires_ms, const char **why)
{
	struct lock_table *t = s->t;

	if (!lock_name_valid(name)) {
		*why = "bad lock name (1-255 of A-Z a-z 0-9 _ . : / -)";
		return LOCK_ERROR;
	}
	if (ttl_ms < 1 || ttl_ms > LOCK_TTL_MAX_MS) {
		*why = "ttl_ms must be from 1 to 86400000 (one day)";
		return LOCK_ERROR;
	}
	if (wait_ms < 0 || wait_ms > LOCK_WAIT_MAX_MS) {
		*why = "wait_ms must be from 0 to 604800000 (a week)";
		return LOCK_ERROR;
	}
	if (!lock_allowed(s, name)) {
		*why = "not allowed: the name matches none of this service's locks patterns";
		return LOCK_ERROR;
	}
	if (t->gate) {
		const char *no = t->gate->refusal(t->gate_arg, wait_ms);
		if (no) {
			*why = no;
			return LOCK_ERROR;
		}
	}
	struct lock *l = lock_get(t, name);
	if (t->gate && mode == LOCK_SHARED && l->nholders && l->held_mode == LOCK_SHARED &&
	    TAILQ_EMPTY(&l->waiters) && t->gate->joined && t->gate->joined(t->gate_arg, name, token)) {
		histo_observe_us(&t->wait_h, 0);
		*expires_ms = grant(l, s, mode, ttl_ms, work, *token)->expires_ms;
		return LOCK_GRANTED;
	}
	bool try_only = false;
	if (t->gate && wait_ms == 0 && !l->nholders && TAILQ_EMPTY(&l->waiters)) {
		/* Free here, but only the gate knows about elsewhere. */
		try_only = true;
		wait_ms = LOCK_GATE_TRY_MS;
	}
	/* Waiters left at the head while no token could be had (the counter
	 * could not be written) go first, now that it may work again. */
	if (!TAILQ_EMPTY(&l->waiters) && compatible(l, TAILQ_FIRST(&l->waiters)->mode))
		process_queue(t, l);
	if (!t->gate && TAILQ_EMPTY(&l->waiters) && compatible(l, mode)) {
		if (take_token(t, token, why) < 0) {
			lock_maybe_free(t, l);
			return LOCK_ERROR;
		}
		histo_observe_us(&t->wait_h, 0);
		struct lock_lease *le = grant(l, s, mode, ttl_ms, work, *token);
		*expires_ms = le->expires_ms;
		return LOCK_GRANTED;
	}
	if (wait_ms == 0) {
		lock_maybe_free(t, l);
		*why = "timeout";
		return LOCK_ERROR;
	}
	struct lock_wait *w = xcalloc(1, sizeof(*w));
	w->lock = l;
	w->session = s;
	w->mode = mode;
	w->ttl_ms = ttl_ms;
	w->work = *work;
	w->cookie = cookie;
	w->queued_us = histo_now_us();
	w->try_only = try_only;
	w->due_us = w->queued_us + wait_ms * 1000;
	w->heap_at = LOCK_HEAP_NONE;
	heap_set(t, &t->wait_deadlines, &t->wait_w, w);
	w->id = ++t->next_wait_id;
	TAILQ_INSERT_TAIL(&l->waiters, w, link);
	l->nwaiters++;
	LIST_INSERT_HEAD(&s->waits, w, s_link);
	gate_update(t, l);
	if (t->on_queue)
		t->on_queue(t, w, true, t->event_arg);
	return LOCK_QUEUED;
}

void lock_table_set_gate(struct lock_table *t, const struct lock_gate *gate, void *arg)
{
	t->gate = gate;
	t->gate_arg = arg;
}

bool lock_gate_grant(struct lock_table *t, const char *name, uint64_t token, enum lock_mode mode,
		     int64_t *ttl_ms)
{
	struct lock *l = map_get(&t->locks, name);
	struct lock_wait *w = l ? TAILQ_FIRST(&l->waiters) : NULL;

	if (!w || w->mode != mode || !compatible(l, w->mode))
		return false;
	*ttl_ms = w->ttl_ms;
	do {
		if (grant_waiter(l, w, token))
			break;
	} while ((w = TAILQ_FIRST(&l->waiters)) && w->mode == LOCK_SHARED);
	return true;
}

void lock_gate_fail(struct lock_table *t, const char *name, bool all, const char *why)
{
	struct lock *l = map_get(&t->locks, name);

	if (!l)
		return;
	for (struct lock_wait *w = TAILQ_FIRST(&l->waiters), *next; w; w = next) {
		next = TAILQ_NEXT(w, link);
		if (!all && !w->try_only)
			continue;
		struct lock_session *s = w->session;
		void *cookie = w->cookie;
		wait_unlink(w);
		free(w);
		s->on_wait(s, cookie, false, 0, 0, why);
	}
	lock_maybe_free(t, l);
}

void lock_gate_lost(struct lock_table *t, const char *name, const char *why)
{
	struct lock *l = map_get(&t->locks, name);

	if (!l)
		return;
	for (struct lock_lease *le = LIST_FIRST(&l->holders), *next; le; le = next) {
		next = LIST_NEXT(le, link);
		if (le->ending)
			continue;
		log_warn(NULL, "lock %s: lease %" PRIu64 " of %s lost: %s", l->name, le->token,
			 le->session->owner, why);
		lease_lost(t, le, why);
	}
	lock_maybe_free(t, l);
}

static struct lock_lease *find_lease(struct lock_session *s, const char *name, uint64_t token)
{
	struct lock *l = map_get(&s->t->locks, name);

	for (struct lock_lease *le = l ? LIST_FIRST(&l->holders) : NULL; le; le = LIST_NEXT(le, link))
		if (le->token == token && le->session == s)
			return le;
	return NULL;
}

int lock_renew(struct lock_session *s, const char *name, uint64_t token, int64_t ttl_ms,
	       int64_t *expires_ms, const char **why)
{
	if (ttl_ms < 1 || ttl_ms > LOCK_TTL_MAX_MS) {
		*why = "ttl_ms must be from 1 to 86400000 (one day)";
		return -1;
	}
	struct lock_lease *le = find_lease(s, name, token);
	if (!le) {
		*why = "not held";
		return -1;
	}
	le->expires_ms = now_wall_ms() + ttl_ms;
	deadline_set(s->t, le, ttl_ms);
	*expires_ms = le->expires_ms;
	return 0;
}

int lock_release(struct lock_session *s, const char *name, uint64_t token, const char **why)
{
	struct lock_lease *le = find_lease(s, name, token);

	if (!le) {
		*why = "not held";
		return -1;
	}
	struct lock *l = le->lock;
	s->t->releases++;
	lease_remove(s->t, le, "released");
	process_queue(s->t, l);
	lock_maybe_free(s->t, l);
	return 0;
}

void lock_cancel_wait(struct lock_session *s, void *cookie)
{
	struct lock_wait *w;

	LIST_FOREACH(w, &s->waits, s_link) {
		if (w->cookie != cookie)
			continue;
		struct lock *l = w->lock;
		wait_unlink(w);
		free(w);
		process_queue(s->t, l);
		lock_maybe_free(s->t, l);
		return;
	}
}

/* Ends every lease and wait of s (lost: why, for work to stop); why: tell
 * the waiters, NULL: do not. */
static void session_clear(struct lock_session *s, const char *lost, const char *why)
{
	struct lock_table *t = s->t;
	struct lock **touched = NULL;
	size_t n = 0, cap = 0;

	while (!LIST_EMPTY(&s->leases) || !LIST_EMPTY(&s->waits)) {
		struct lock *l;
		if (!LIST_EMPTY(&s->leases)) {
			l = LIST_FIRST(&s->leases)->lock;
			t->holder_gone++;
			lease_lost(t, LIST_FIRST(&s->leases), lost);
		} else {
			struct lock_wait *w = LIST_FIRST(&s->waits);
			void *cookie = w->cookie;
			l = w->lock;
			wait_unlink(w);
			free(w);
			if (why)
				s->on_wait(s, cookie, false, 0, 0, why);
		}
		/* the flag, not a look through touched: a session may hold
		 * 100,000 leases */
		if (!l->touched) {
			l->touched = true;
			if (n == cap) {
				cap = cap ? cap * 2 : 8;
				touched = xrealloc(touched, cap * sizeof(*touched));
			}
			touched[n++] = l;
		}
	}
	/* Now that all of them are gone, the next holders, in one go. */
	for (size_t i = 0; i < n; i++) {
		touched[i]->touched = false;
		process_queue(t, touched[i]);
		lock_maybe_free(t, touched[i]);
	}
	free(touched);
}

struct lock_session *lock_session_open(struct lock_table *t, const char *owner,
				       const struct strv *patterns, void *svc, lock_wait_fn on_wait)
{
	struct lock_session *s = xcalloc(1, sizeof(*s));

	s->t = t;
	s->owner = xstrdup(owner);
	s->restricted = patterns != NULL;
	if (patterns)
		strv_copy(&s->patterns, patterns);
	s->svc = svc;
	s->on_wait = on_wait;
	LIST_INSERT_HEAD(&t->sessions, s, link);
	return s;
}

void lock_session_close(struct lock_session *s)
{
	if (!s)
		return;
	session_clear(s, "its holder went away", NULL);
	LIST_REMOVE(s, link);
	free(s->owner);
	strv_free(&s->patterns);
	free(s);
}

void lock_drop_service(struct lock_table *t, void *svc, bool forget)
{
	struct lock_session *s;

	LIST_FOREACH(s, &t->sessions, link) {
		if (s->svc != svc)
			continue;
		if (!LIST_EMPTY(&s->leases) || !LIST_EMPTY(&s->waits)) {
			log_info(NULL, "locks of %s released: its service ended", s->owner);
			session_clear(s, "its service ended", "the service that asked ended");
		}
		if (forget)
			s->svc = NULL;
	}
}

void lock_table_free(struct lock_table *t)
{
	t->on_end = NULL;	/* nobody is left to stop work for */
	t->on_event = NULL;	/* ... nor to tell */
	t->on_queue = NULL;
	while (!LIST_EMPTY(&t->sessions))
		lock_session_close(LIST_FIRST(&t->sessions));
	/* What is left are the leases still ending. */
	void *v;
	while (map_next(&t->locks, &(size_t){0}, NULL, &v)) {
		struct lock *l = v;
		while (!LIST_EMPTY(&l->holders))
			lease_remove(t, LIST_FIRST(&l->holders), NULL);
		lock_maybe_free(t, l);
	}
	map_free(&t->locks);
	ev_timer_stop(t->loop, &t->expiry_w);
	lock_heap_free(&t->deadlines);
	ev_timer_stop(t->loop, &t->wait_w);
	lock_heap_free(&t->wait_deadlines);
	if (t->ahead_running)
		ahead_join(t);
	if (ev_is_active(&t->ahead_done)) {
		ev_ref(t->loop);
		ev_async_stop(t->loop, &t->ahead_done);
	}
	free(t->counter_path);
}

void lock_table_counts(const struct lock_table *t, size_t *held, size_t *waiting)
{
	size_t it = 0;
	void *v;

	*held = *waiting = 0;
	while (map_next(&t->locks, &it, NULL, &v)) {
		const struct lock *l = v;
		*held += l->nholders;
		*waiting += l->nwaiters;
	}
}
