/* Unit tests of the lock table (lock.c), on a real libev loop. */
#include "autoconfig.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "evtimer.h"
#include "helpers.h"
#include "lock.h"

static struct ev_loop *loop;
static struct lock_table t;

/* What on_wait saw, in order. */
struct event {
	void *cookie;
	bool granted;
	uint64_t token;
	char why[64];
	ev_tstamp at;
};
static struct event seen[64];
static int nseen;

static void on_wait(struct lock_session *s, void *cookie, bool granted, uint64_t token,
		    int64_t expires_ms, const char *why)
{
	(void)s;
	(void)expires_ms;
	seen[nseen++] = (struct event){cookie, granted, token, "", ev_time()};
	if (why)
		snprintf(seen[nseen - 1].why, sizeof(seen[0].why), "%s", why);
}

static void setup(void)
{
	char err[200];

	loop = ev_loop_new(0);
	nseen = 0;
	cr_assert_eq(lock_table_init(&t, loop, NULL, err, sizeof(err)), 0, "%s", err);
}

static void teardown(void)
{
	lock_table_free(&t);
	ev_loop_destroy(loop);
	th_cleanup();
}

TestSuite(lock, .init = setup, .fini = teardown);

static struct lock_session *session(const char *name)
{
	return lock_session_open(&t, name, NULL, NULL, on_wait);
}

static uint64_t must_get(struct lock_session *s, const char *name, enum lock_mode m, int64_t ttl)
{
	uint64_t token;
	int64_t exp;
	const char *why = NULL;

	cr_assert_eq(lock_acquire(s, name, m, ttl, 0, NULL, &token, &exp, &why), LOCK_GRANTED, "%s", why);
	return token;
}

static void queue(struct lock_session *s, const char *name, enum lock_mode m, int64_t wait, void *cookie)
{
	uint64_t token;
	int64_t exp;
	const char *why = NULL;

	cr_assert_eq(lock_acquire(s, name, m, 30000, wait, cookie, &token, &exp, &why), LOCK_QUEUED,
		     "%s", why);
}

/* Runs the loop until n events were seen or the deadline passes. */
static void run_until(int n, double deadline_s)
{
	ev_tstamp end = ev_time() + deadline_s;

	while (nseen < n && ev_time() < end)
		ev_run(loop, EVRUN_ONCE);
	cr_assert_geq(nseen, n, "only %d of %d events", nseen, n);
}

Test(lock, exclusive_then_try_once_fails)
{
	struct lock_session *a = session("a"), *b = session("b");
	uint64_t token;
	int64_t exp;
	const char *why;

	must_get(a, "db", LOCK_EXCLUSIVE, 30000);
	cr_assert_eq(lock_acquire(b, "db", LOCK_EXCLUSIVE, 30000, 0, NULL, &token, &exp, &why), LOCK_ERROR);
	cr_assert_str_eq(why, "timeout");
	cr_assert_eq(lock_acquire(b, "db", LOCK_SHARED, 30000, 0, NULL, &token, &exp, &why), LOCK_ERROR);
}

Test(lock, release_grants_the_next_in_fifo_order)
{
	struct lock_session *a = session("a"), *b = session("b"), *c = session("c"), *d = session("d");
	uint64_t ta = must_get(a, "db", LOCK_EXCLUSIVE, 30000);
	const char *why;

	queue(b, "db", LOCK_EXCLUSIVE, 10000, "b");
	queue(c, "db", LOCK_EXCLUSIVE, 10000, "c");
	queue(d, "db", LOCK_EXCLUSIVE, 10000, "d");
	cr_assert_eq(lock_release(a, "db", ta, &why), 0);
	cr_assert_eq(nseen, 1);	/* granted in the same call, no loop turn */
	cr_assert_str_eq(seen[0].cookie, "b");
	cr_assert(seen[0].granted);
	cr_assert_gt(seen[0].token, ta);
	cr_assert_eq(lock_release(b, "db", seen[0].token, &why), 0);
	cr_assert_str_eq(seen[1].cookie, "c");
	cr_assert_eq(lock_release(c, "db", seen[1].token, &why), 0);
	cr_assert_str_eq(seen[2].cookie, "d");
	cr_assert_gt(seen[2].token, seen[1].token);
}

Test(lock, shared_holders_together_and_no_starvation)
{
	struct lock_session *r1 = session("r1"), *r2 = session("r2"), *w = session("w"),
			    *r3 = session("r3"), *r4 = session("r4");
	uint64_t t1 = must_get(r1, "cfg", LOCK_SHARED, 30000);
	uint64_t t2 = must_get(r2, "cfg", LOCK_SHARED, 30000);
	const char *why;

	cr_assert_neq(t1, t2);
	queue(w, "cfg", LOCK_EXCLUSIVE, 10000, "w");
	/* a reader arriving after a queued writer waits behind it */
	queue(r3, "cfg", LOCK_SHARED, 10000, "r3");
	queue(r4, "cfg", LOCK_SHARED, 10000, "r4");
	cr_assert_eq(lock_release(r1, "cfg", t1, &why), 0);
	cr_assert_eq(nseen, 0);
	cr_assert_eq(lock_release(r2, "cfg", t2, &why), 0);
	cr_assert_eq(nseen, 1);
	cr_assert_str_eq(seen[0].cookie, "w");
	cr_assert_eq(lock_release(w, "cfg", seen[0].token, &why), 0);
	/* consecutive shared waiters at the head: both at once */
	cr_assert_eq(nseen, 3);
	cr_assert_str_eq(seen[1].cookie, "r3");
	cr_assert_str_eq(seen[2].cookie, "r4");
}

Test(lock, wait_times_out_and_leaves_the_queue)
{
	struct lock_session *a = session("a"), *b = session("b"), *c = session("c");
	uint64_t ta = must_get(a, "db", LOCK_EXCLUSIVE, 30000);
	const char *why;

	queue(b, "db", LOCK_EXCLUSIVE, 50, "b");
	queue(c, "db", LOCK_EXCLUSIVE, 5000, "c");
	ev_tstamp start = ev_time();
	run_until(1, 2.0);
	cr_assert_str_eq(seen[0].cookie, "b");
	cr_assert(!seen[0].granted);
	cr_assert_str_eq(seen[0].why, "timeout");
	cr_assert_geq(seen[0].at - start, 0.045);
	cr_assert_eq(lock_release(a, "db", ta, &why), 0);
	cr_assert_str_eq(seen[1].cookie, "c");
	cr_assert(seen[1].granted);
}

Test(lock, exclusive_waiter_timing_out_lets_shared_ones_in)
{
	struct lock_session *r = session("r"), *w = session("w"), *r2 = session("r2");

	must_get(r, "cfg", LOCK_SHARED, 30000);
	queue(w, "cfg", LOCK_EXCLUSIVE, 50, "w");
	queue(r2, "cfg", LOCK_SHARED, 5000, "r2");
	run_until(2, 2.0);
	cr_assert_str_eq(seen[0].cookie, "r2");	/* granted as w leaves the head */
	cr_assert(seen[0].granted);
	cr_assert_str_eq(seen[1].cookie, "w");
	cr_assert(!seen[1].granted);
}

static ev_tstamp reference_at;

static void reference_cb(struct ev_loop *l, ev_timer *w, int revents)
{
	(void)l;
	(void)w;
	(void)revents;
	reference_at = ev_time();
}

Test(lock, ttl_expiry_is_exact_and_grants_the_waiter)
{
	struct lock_session *a = session("a"), *b = session("b");
	const char *why;
	ev_timer reference;

	ev_now_update(loop);
	ev_tstamp start = ev_time();
	uint64_t ta = must_get(a, "db", LOCK_EXCLUSIVE, 200);
	/* A plain timer of the same 200 ms beside it: on a loaded machine the
	 * loop itself wakes late, and the lease may be no more than that late. */
	reference_at = 0;
	ev_init(&reference, reference_cb);
	evtimer_start_ms(loop, &reference, 200);
	queue(b, "db", LOCK_EXCLUSIVE, 5000, "b");
	run_until(1, 2.0);
	while (!reference_at)
		ev_run(loop, EVRUN_ONCE);
	double took = seen[0].at - start, late = seen[0].at - reference_at;
	cr_assert(seen[0].granted);
	cr_assert_geq(took, 0.195, "granted after %.3f s", took);
	cr_assert_leq(late, 0.020 * th_time_factor(), "granted after %.3f s, %.3f s after a timer of "
		      "the same 200 ms", took, late);
	cr_assert_eq(lock_release(a, "db", ta, &why), -1);
	cr_assert_str_eq(why, "not held");
}

Test(lock, renew_extends_the_lease)
{
	struct lock_session *a = session("a"), *b = session("b");
	int64_t exp;
	const char *why;
	uint64_t ta = must_get(a, "db", LOCK_EXCLUSIVE, 250);

	queue(b, "db", LOCK_EXCLUSIVE, 5000, "b");
	ev_tstamp start = ev_time(), last = start;
	/* renew every 50 ms for 600 ms (a 250 ms lease: a loaded machine may
	 * stall us 200 ms): b must not get it meanwhile */
	while (ev_time() - start < 0.6) {
		ev_tstamp until = ev_time() + 0.05;
		while (ev_time() < until)
			ev_run(loop, EVRUN_NOWAIT);
		cr_assert_eq(lock_renew(a, "db", ta, 250, &exp, &why), 0, "%s", why);
		last = ev_time();
		cr_assert_eq(nseen, 0);
	}
	run_until(1, 2.0);
	cr_assert(seen[0].granted);
	cr_assert_geq(seen[0].at - last, 0.245);
}

Test(lock, tokens_of_other_sessions_and_unknown_tokens)
{
	struct lock_session *a = session("a"), *b = session("b");
	int64_t exp;
	const char *why;
	uint64_t ta = must_get(a, "db", LOCK_EXCLUSIVE, 30000);

	cr_assert_eq(lock_release(b, "db", ta, &why), -1);
	cr_assert_str_eq(why, "not held");
	cr_assert_eq(lock_renew(b, "db", ta, 1000, &exp, &why), -1);
	cr_assert_eq(lock_release(a, "db", ta + 1, &why), -1);
	cr_assert_eq(lock_release(a, "other", ta, &why), -1);
	cr_assert_eq(lock_release(a, "db", ta, &why), 0);
	cr_assert_eq(lock_release(a, "db", ta, &why), -1);
}

Test(lock, closing_a_session_lets_go_at_once)
{
	struct lock_session *a = session("a"), *b = session("b"), *c = session("c");

	must_get(a, "x", LOCK_EXCLUSIVE, 30000);
	must_get(a, "y", LOCK_EXCLUSIVE, 30000);
	must_get(c, "z", LOCK_EXCLUSIVE, 30000);
	queue(a, "z", LOCK_EXCLUSIVE, 5000, "a-waits");
	queue(b, "x", LOCK_EXCLUSIVE, 5000, "b");
	queue(c, "y", LOCK_EXCLUSIVE, 5000, "c");
	lock_session_close(a);
	/* both granted at once; a's own wait left without a word */
	cr_assert_eq(nseen, 2);
	cr_assert(seen[0].granted && seen[1].granted);
	cr_assert_eq(t.locks.len, 3);
	struct lock *z = map_get(&t.locks, "z");
	cr_assert_eq(z->nwaiters, 0);
}

Test(lock, dropping_a_service_ends_its_sessions_leases)
{
	int svc;
	struct lock_session *a = lock_session_open(&t, "service a", NULL, &svc, on_wait);
	struct lock_session *b = session("b");

	must_get(a, "x", LOCK_EXCLUSIVE, 30000);
	queue(b, "x", LOCK_EXCLUSIVE, 5000, "b");
	lock_drop_service(&t, &svc, false);
	cr_assert_eq(nseen, 1);
	cr_assert(seen[0].granted);
	must_get(a, "y", LOCK_EXCLUSIVE, 30000);	/* the session itself stays usable */
}

/* What on_end saw: leases whose work is to be stopped. */
static struct lock_lease *ended[8];
static char ended_why[8][64];
static int nended;

static void on_end(struct lock_table *tab, struct lock_lease *le, const char *why, void *arg)
{
	(void)tab;
	cr_assert_eq(arg, &nended);
	cr_assert(le->ending);
	cr_assert_null(le->session);
	snprintf(ended_why[nended], sizeof(ended_why[0]), "%s", why);
	ended[nended++] = le;
}

static uint64_t must_get_work(struct lock_session *s, const char *name, int64_t ttl, pid_t pgid)
{
	struct lock_work work = {.pgid = pgid, .uid = 0, .stop_timeout_ms = 5000};
	uint64_t token;
	int64_t exp;
	const char *why = NULL;

	cr_assert_eq(lock_acquire_work(s, name, LOCK_EXCLUSIVE, ttl, 0, &work, NULL, &token, &exp, &why),
		     LOCK_GRANTED, "%s", why);
	return token;
}

Test(lock, a_lost_lease_with_work_holds_the_lock_until_its_work_is_done)
{
	struct lock_session *a = session("a"), *b = session("b"), *c = session("c");
	const char *why;

	nended = 0;
	t.on_end = on_end;
	t.end_arg = &nended;
	uint64_t ta = must_get_work(a, "x", 30000, 4242);
	must_get_work(c, "y", 100, 4343);
	queue(b, "x", LOCK_EXCLUSIVE, 5000, "b");
	lock_session_close(a);
	/* a's work may still run: x stays held, b waits */
	cr_assert_eq(nended, 1);
	cr_assert_str_eq(ended_why[0], "its holder went away");
	cr_assert_eq(ended[0]->token, ta);
	cr_assert_eq(ended[0]->work.pgid, 4242);
	cr_assert_str_eq(lock_lease_owner(ended[0]), "a");
	cr_assert_eq(nseen, 0);
	struct lock *x = map_get(&t.locks, "x");
	cr_assert_eq(x->nholders, 1);
	/* nobody can renew or release it any more */
	cr_assert_eq(lock_release(b, "x", ta, &why), -1);
	lock_lease_done(&t, ended[0]);
	cr_assert_eq(nseen, 1);
	cr_assert(seen[0].granted);
	/* an expiry too; the ending lease outlives its session's close */
	ev_tstamp end = ev_time() + 2.0;
	while (nended < 2 && ev_time() < end)
		ev_run(loop, EVRUN_ONCE);
	cr_assert_eq(nended, 2);
	cr_assert_str_eq(ended_why[1], "expired");
	lock_session_close(c);
	cr_assert_eq(nended, 2);
	/* lock_table_free (teardown) frees y's ending lease */
}

Test(lock, a_released_lease_or_one_without_work_ends_at_once)
{
	struct lock_session *a = session("a"), *b = session("b");
	const char *why;

	nended = 0;
	t.on_end = on_end;
	t.end_arg = &nended;
	uint64_t ta = must_get_work(a, "x", 30000, 4242);
	cr_assert_eq(lock_release(a, "x", ta, &why), 0);
	must_get(a, "x", LOCK_EXCLUSIVE, 30000);
	queue(b, "x", LOCK_EXCLUSIVE, 5000, "b");
	lock_session_close(a);
	cr_assert_eq(nended, 0);
	cr_assert_eq(nseen, 1);
	cr_assert(seen[0].granted);
}

Test(lock, patterns_and_bad_input)
{
	struct strv pats = {0};
	uint64_t token;
	int64_t exp;
	const char *why;

	strv_push(&pats, "jobs.*");
	strv_push(&pats, "db:?");
	struct lock_session *s = lock_session_open(&t, "service x", &pats, NULL, on_wait);
	strv_free(&pats);	/* the session keeps its own copy */
	must_get(s, "jobs.nightly", LOCK_EXCLUSIVE, 1000);
	must_get(s, "db:1", LOCK_EXCLUSIVE, 1000);
	cr_assert_eq(lock_acquire(s, "db:12", LOCK_EXCLUSIVE, 1000, 0, NULL, &token, &exp, &why), LOCK_ERROR);
	cr_assert(strstr(why, "not allowed"));
	cr_assert_eq(lock_acquire(s, "bad name", LOCK_EXCLUSIVE, 1000, 0, NULL, &token, &exp, &why), LOCK_ERROR);
	cr_assert(strstr(why, "bad lock name"));
	cr_assert_eq(lock_acquire(s, "", LOCK_EXCLUSIVE, 1000, 0, NULL, &token, &exp, &why), LOCK_ERROR);
	cr_assert_eq(lock_acquire(s, "jobs.a", LOCK_EXCLUSIVE, 0, 0, NULL, &token, &exp, &why), LOCK_ERROR);
	cr_assert(strstr(why, "ttl_ms"));
	cr_assert_eq(lock_acquire(s, "jobs.a", LOCK_EXCLUSIVE, -5, 0, NULL, &token, &exp, &why), LOCK_ERROR);
	cr_assert_eq(lock_acquire(s, "jobs.a", LOCK_EXCLUSIVE, LOCK_TTL_MAX_MS + 1, 0, NULL, &token, &exp, &why),
		     LOCK_ERROR);
	cr_assert_eq(lock_acquire(s, "jobs.a", LOCK_EXCLUSIVE, 1000, -1, NULL, &token, &exp, &why), LOCK_ERROR);
	cr_assert(strstr(why, "wait_ms"));
}

Test(lock, tokens_increase_across_restarts_with_the_counter_on_disk)
{
	char err[200];
	char *path = xasprintf("%s/lock.tokens", th_tmpdir());
	struct lock_table t2;
	uint64_t last = 0;

	for (int round = 0; round < 3; round++) {
		cr_assert_eq(lock_table_init(&t2, loop, path, err, sizeof(err)), 0, "%s", err);
		struct lock_session *s = lock_session_open(&t2, "s", NULL, NULL, on_wait);
		for (int i = 0; i < 25000; i++) {	/* crosses block boundaries */
			uint64_t token;
			int64_t exp;
			const char *why;
			cr_assert_eq(lock_acquire(s, "x", LOCK_EXCLUSIVE, 1000, 0, NULL, &token, &exp, &why),
				     LOCK_GRANTED);
			cr_assert_gt(token, last);
			last = token;
			lock_release(s, "x", token, &why);
		}
		/* no lock_table_free: like a kill -9, nothing is written at
		 * exit (a write ahead still running is let finish: a kill in
		 * its middle leaves the old file or the new, both above every
		 * token given) */
		map_free(&t2.locks);
		lock_session_close(s);
		ev_timer_stop(loop, &t2.expiry_w);
		lock_heap_free(&t2.deadlines);
		ev_timer_stop(loop, &t2.wait_w);
		lock_heap_free(&t2.wait_deadlines);
		if (t2.ahead_running)
			pthread_join(t2.ahead_thread, NULL);
		ev_ref(loop);
		ev_async_stop(loop, &t2.ahead_done);
		free(t2.counter_path);
	}
	free(path);
}

static uint64_t counter_on_disk(const char *path)
{
	char buf[32] = "";
	FILE *f = fopen(path, "r");

	cr_assert(f, "%s", path);
	cr_assert(fgets(buf, sizeof(buf), f));
	fclose(f);
	return strtoull(buf, NULL, 10);
}

static void wake_cb(struct ev_loop *l, ev_timer *w, int revents)
{
	(void)w;
	(void)revents;
	ev_break(l, EVBREAK_ONE);
}

Test(lock, the_next_block_is_written_ahead_off_the_loop)
{
	char err[200];
	char *path = xasprintf("%s/lock.tokens", th_tmpdir());
	struct lock_table t2;
	uint64_t token = 0;
	int64_t exp;
	const char *why;

	cr_assert_eq(lock_table_init(&t2, loop, path, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(counter_on_disk(path), LOCK_TOKEN_BLOCK);
	struct lock_session *s = lock_session_open(&t2, "s", NULL, NULL, on_wait);
	/* Until half the block is handed out: nothing written yet. */
	for (int i = 0; i < LOCK_TOKEN_BLOCK / 2 - 1; i++) {
		cr_assert_eq(lock_acquire(s, "x", LOCK_EXCLUSIVE, 1000, 0, NULL, &token, &exp, &why),
			     LOCK_GRANTED);
		lock_release(s, "x", token, &why);
	}
	cr_assert_not(t2.ahead_running);
	/* One more starts the write of the next block, in a thread; the loop
	 * hears when it is done. */
	cr_assert_eq(lock_acquire(s, "x", LOCK_EXCLUSIVE, 1000, 0, NULL, &token, &exp, &why), LOCK_GRANTED);
	lock_release(s, "x", token, &why);
	cr_assert(t2.ahead_running);
	cr_assert_eq(t2.reserved, LOCK_TOKEN_BLOCK, "not taken before it is on disk");
	ev_timer tick;
	ev_timer_init(&tick, wake_cb, 0.01, 0.01);
	ev_timer_start(loop, &tick);
	for (int i = 0; i < 1000 && t2.ahead_running; i++)	/* 10 s at most */
		ev_run(loop, 0);
	ev_timer_stop(loop, &tick);
	cr_assert_not(t2.ahead_running, "the write ahead did not finish in 10 s");
	cr_assert_eq(t2.reserved, 2 * LOCK_TOKEN_BLOCK);
	cr_assert_eq(counter_on_disk(path), 2 * LOCK_TOKEN_BLOCK);
	/* The rest of the block, and past it, without a wait. */
	for (int i = 0; i < LOCK_TOKEN_BLOCK; i++) {
		uint64_t last = token;
		cr_assert_eq(lock_acquire(s, "x", LOCK_EXCLUSIVE, 1000, 0, NULL, &token, &exp, &why),
			     LOCK_GRANTED);
		cr_assert_gt(token, last);
		cr_assert_leq(token, t2.reserved, "a token above the mark on disk");
		lock_release(s, "x", token, &why);
	}
	lock_table_free(&t2);
	cr_assert_geq(counter_on_disk(path), token);
	free(path);
}

/* A lock table in t2 whose counter's directory (returned) is gone once the
 * first block is reserved: every write of the counter fails until the
 * directory is made again. */
static char *table_losing_its_counter(struct lock_table *t2, const char *name)
{
	char err[200];
	char *dir = xasprintf("%s/%s", th_tmpdir(), name);
	char *path = xasprintf("%s/lock.tokens", dir);

	cr_assert_eq(mkdir(dir, 0700), 0);
	cr_assert_eq(lock_table_init(t2, loop, path, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(unlink(path), 0);
	cr_assert_eq(rmdir(dir), 0);
	free(path);
	return dir;
}

/* Takes and releases "x" n times; the last token. */
static uint64_t take_and_release(struct lock_session *s, int n)
{
	uint64_t token = 0;
	int64_t exp;
	const char *why;

	for (int i = 0; i < n; i++) {
		cr_assert_eq(lock_acquire(s, "x", LOCK_EXCLUSIVE, 1000, 0, NULL, &token, &exp, &why),
			     LOCK_GRANTED, "token %d of the block in hand", i + 1);
		lock_release(s, "x", token, &why);
	}
	return token;
}

Test(lock, a_write_ahead_that_fails_is_retried_when_the_block_runs_out)
{
	struct lock_table t2;
	char *dir = table_losing_its_counter(&t2, "gone");
	struct lock_session *s = lock_session_open(&t2, "s", NULL, NULL, on_wait);
	uint64_t token = take_and_release(s, LOCK_TOKEN_BLOCK);
	int64_t exp;
	const char *why;

	cr_assert_eq(token, LOCK_TOKEN_BLOCK);
	cr_assert(t2.ahead_failed || t2.ahead_running);
	/* Past the block: refused, not handed out beyond the mark. */
	cr_assert_eq(lock_acquire(s, "x", LOCK_EXCLUSIVE, 1000, 0, NULL, &token, &exp, &why), LOCK_ERROR);
	cr_assert(strstr(why, "fencing token counter"), "%s", why);
	cr_assert(t2.ahead_failed);
	/* The directory back: the write in the loop works, and so do grants. */
	cr_assert_eq(mkdir(dir, 0700), 0);
	cr_assert_eq(lock_acquire(s, "x", LOCK_EXCLUSIVE, 1000, 0, NULL, &token, &exp, &why), LOCK_GRANTED);
	cr_assert_eq(token, LOCK_TOKEN_BLOCK + 1);
	cr_assert_not(t2.ahead_failed);
	lock_table_free(&t2);
	free(dir);
}

/* A waiter that could not be granted for want of a token (the counter's
 * directory gone) is granted by the next request for the lock once the
 * counter can be written again, ahead of that request. */
Test(lock, a_waiter_stuck_without_a_token_goes_first_when_tokens_return)
{
	struct lock_table t2;
	char *dir = table_losing_its_counter(&t2, "gone2");
	struct lock_session *a = lock_session_open(&t2, "a", NULL, NULL, on_wait);
	struct lock_session *b = lock_session_open(&t2, "b", NULL, NULL, on_wait);
	struct lock_session *c = lock_session_open(&t2, "c", NULL, NULL, on_wait);
	uint64_t token = take_and_release(a, LOCK_TOKEN_BLOCK - 1);
	int64_t exp;
	const char *why;

	cr_assert_eq(lock_acquire(a, "x", LOCK_EXCLUSIVE, 60000, 0, NULL, &token, &exp, &why), LOCK_GRANTED);
	cr_assert_eq(lock_acquire(b, "x", LOCK_EXCLUSIVE, 60000, 600000, (void *)1, &token, &exp, &why),
		     LOCK_QUEUED);
	cr_assert_eq(lock_release(a, "x", LOCK_TOKEN_BLOCK, &why), 0);
	cr_assert_eq(nseen, 0, "granted without a token on disk");
	cr_assert_eq(mkdir(dir, 0700), 0);
	/* c asks: b, first in line, is granted, and c waits behind it. */
	cr_assert_eq(lock_acquire(c, "x", LOCK_EXCLUSIVE, 60000, 0, NULL, &token, &exp, &why), LOCK_ERROR);
	cr_assert_str_eq(why, "timeout");
	cr_assert_eq(nseen, 1);
	cr_assert_eq(seen[0].cookie, (void *)1);
	cr_assert(seen[0].granted);
	cr_assert_eq(seen[0].token, LOCK_TOKEN_BLOCK + 1);
	lock_table_free(&t2);
	free(dir);
}

Test(lock, a_corrupt_counter_refuses_to_start)
{
	char err[200];
	struct lock_table t2;
	const char *path = th_write("lock.tokens", "garbage\n");

	cr_assert_eq(lock_table_init(&t2, loop, path, err, sizeof(err)), -1);
	cr_assert(strstr(err, "not a token count"), "%s", err);
	cr_assert_null(t2.counter_path, "a refused start keeps what it allocated (a leak)");
}

/* A counter that cannot be written at start (a full state_dir; here its
 * directory is missing) does not stop the start: grants are refused with
 * the reason until the write works, then they begin at 1. */
Test(lock, a_counter_that_cannot_be_written_at_start_refuses_grants_until_it_can)
{
	char err[200];
	struct lock_table t2;
	char *dir = xasprintf("%s/not-yet", th_tmpdir());
	char *path = xasprintf("%s/lock.tokens", dir);
	uint64_t token;
	int64_t exp;
	const char *why = NULL;

	cr_assert_eq(lock_table_init(&t2, loop, path, err, sizeof(err)), 0, "%s", err);
	struct lock_session *s = lock_session_open(&t2, "s", NULL, NULL, on_wait);
	cr_assert_eq(lock_acquire(s, "x", LOCK_EXCLUSIVE, 1000, 0, NULL, &token, &exp, &why), LOCK_ERROR);
	cr_assert(strstr(why, "cannot persist the fencing token counter (No such file or directory)"),
		  "%s", why);
	cr_assert_eq(mkdir(dir, 0700), 0);
	cr_assert_eq(lock_acquire(s, "x", LOCK_EXCLUSIVE, 1000, 0, NULL, &token, &exp, &why), LOCK_GRANTED,
		     "%s", why);
	cr_assert_eq(token, 1);
	cr_assert_eq(access(path, F_OK), 0);
	lock_table_free(&t2);
	free(path);
	free(dir);
}

/* The deadline heap keeps the earliest on top through pushes, removals from
 * anywhere and moves (renewals), and each lease knows its place. */
Test(lock, the_deadline_heap_gives_the_earliest_first)
{
	enum { N = 2000 };
	static struct lock_lease les[N];
	struct lock_heap h = LOCK_HEAP_OF(struct lock_lease, due_us, heap_at);

	srand(7);
	for (int i = 0; i < N; i++) {
		les[i].heap_at = LOCK_HEAP_NONE;
		les[i].due_us = rand() % 1000;
		lock_heap_push(&h, &les[i]);
	}
	for (int i = 0; i < N; i += 3)
		lock_heap_remove(&h, &les[i]);
	for (int i = 1; i < N; i += 5) {
		if (les[i].heap_at == LOCK_HEAP_NONE)
			continue;
		les[i].due_us = rand() % 1000;
		lock_heap_update(&h, &les[i]);
	}
	for (size_t i = 0; i < h.n; i++)
		cr_assert_eq(((struct lock_lease *)h.v[i])->heap_at, i);
	size_t left = h.n;
	int64_t last = -1;
	for (struct lock_lease *le; (le = lock_heap_top(&h)); left--) {
		cr_assert_geq(le->due_us, last, "%" PRId64 " after %" PRId64, le->due_us, last);
		last = le->due_us;
		lock_heap_remove(&h, le);
		cr_assert_eq(le->heap_at, LOCK_HEAP_NONE);
	}
	cr_assert_eq(left, 0);
	lock_heap_free(&h);
}

/* Leases falling due at once are ended a batch per loop iteration: with a
 * timer per lease, libev ran all of them in one iteration and the loop
 * served nothing else meanwhile. */
static uint64_t storm_last, storm_most;
static int storm_iterations;

static void storm_check_cb(struct ev_loop *l, ev_check *w, int revents)
{
	(void)l;
	(void)w;
	(void)revents;
	if (t.expiries - storm_last > storm_most)
		storm_most = t.expiries - storm_last;
	storm_last = t.expiries;
	storm_iterations++;
}

Test(lock, an_expiry_storm_is_ended_in_batches_between_which_the_loop_serves)
{
	enum { N = 5000 };
	struct lock_session *a = session("a");
	char name[32];
	ev_check check;
	size_t held, waiting;

	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "storm.%d", i);
		must_get(a, name, LOCK_EXCLUSIVE, 50);
	}
	usleep(100000);		/* all of them due before the loop looks */
	storm_last = storm_most = 0;
	storm_iterations = 0;
	ev_check_init(&check, storm_check_cb);
	ev_check_start(loop, &check);
	ev_tstamp end = ev_time() + 10 * th_time_factor();
	while (t.expiries < N && ev_time() < end)
		ev_run(loop, EVRUN_ONCE);
	ev_check_stop(loop, &check);
	storm_check_cb(loop, &check, 0);	/* libev ran the checks before the last iteration's timers */
	cr_assert_eq(t.expiries, N);
	cr_assert_leq(storm_most, N / 4, "%" PRIu64 " leases ended in one loop iteration", storm_most);
	cr_assert_leq(storm_most, LOCK_EXPIRE_BATCH);
	lock_table_counts(&t, &held, &waiting);
	cr_assert_eq(held, 0);
	cr_assert_eq(t.deadlines.n, 0);
}

/* Waiting requests giving up at once are ended in batches as well. */
static uint64_t gave_up;

static void count_gave_up(struct lock_session *s, void *cookie, bool granted, uint64_t token,
			  int64_t expires_ms, const char *why)
{
	(void)s;
	(void)cookie;
	(void)token;
	(void)expires_ms;
	cr_assert(!granted);
	cr_assert_str_eq(why, "timeout");
	gave_up++;
}

static void gave_up_check_cb(struct ev_loop *l, ev_check *w, int revents)
{
	(void)l;
	(void)w;
	(void)revents;
	if (gave_up - storm_last > storm_most)
		storm_most = gave_up - storm_last;
	storm_last = gave_up;
}

Test(lock, waiters_giving_up_at_once_are_ended_in_batches)
{
	enum { N = 3000 };
	struct lock_session *a = session("a");
	struct lock_session *b = lock_session_open(&t, "b", NULL, NULL, count_gave_up);
	uint64_t token;
	int64_t exp;
	const char *why = NULL;
	ev_check check;
	size_t held, waiting;

	must_get(a, "one", LOCK_EXCLUSIVE, 30000);
	for (int i = 0; i < N; i++)
		cr_assert_eq(lock_acquire(b, "one", LOCK_EXCLUSIVE, 30000, 50, (void *)(intptr_t)(i + 1),
					  &token, &exp, &why), LOCK_QUEUED, "%s", why);
	usleep(100000);
	gave_up = storm_last = storm_most = 0;
	ev_check_init(&check, gave_up_check_cb);
	ev_check_start(loop, &check);
	ev_tstamp end = ev_time() + 10 * th_time_factor();
	while (gave_up < N && ev_time() < end)
		ev_run(loop, EVRUN_ONCE);
	ev_check_stop(loop, &check);
	gave_up_check_cb(loop, &check, 0);
	cr_assert_eq(gave_up, N);
	cr_assert_leq(storm_most, N / 4, "%" PRIu64 " gave up in one loop iteration", storm_most);
	lock_table_counts(&t, &held, &waiting);
	cr_assert_eq(held, 1);
	cr_assert_eq(waiting, 0);
	cr_assert_eq(t.wait_deadlines.n, 0);
}

/* A session holding many leases ends them all at once, each lock looked
 * at once after (it was a look through every lock seen so far per lease:
 * 7 s for 100,000), and the waiters of those locks are granted. */
Test(lock, a_session_holding_many_leases_lets_go_of_all)
{
	enum { N = 3000 };
	struct lock_session *a = session("a"), *b = session("b");
	char name[32];
	size_t held, waiting;

	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "many.%d", i);
		must_get(a, name, LOCK_EXCLUSIVE, 30000);
	}
	queue(b, "many.7", LOCK_EXCLUSIVE, 5000, "b7");
	queue(b, "many.2999", LOCK_EXCLUSIVE, 5000, "b2999");
	lock_session_close(a);
	cr_assert_eq(nseen, 2);
	cr_assert(seen[0].granted && seen[1].granted);
	lock_table_counts(&t, &held, &waiting);
	cr_assert_eq(held, 2);
	cr_assert_eq(waiting, 0);
	void *v;
	for (size_t it = 0; map_next(&t.locks, &it, NULL, &v);)
		cr_assert(!((struct lock *)v)->touched, "%s left marked", ((struct lock *)v)->name);
}
