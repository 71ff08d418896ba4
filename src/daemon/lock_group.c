/*
 * lock_group.c - the work behind a lease: the process group that
 * `cohortctl lock` runs CMD in, named with lock.acquire's "pgid".
 *
 * A lease held by a process can end without it: the holder was killed, its
 * connection lost, its TTL ran out while it was stopped.  Its work must not
 * go on beside the next holder's.  So the lock table keeps such a lease as
 * a holder ("ending") and calls lock_group_end, which stops the group the
 * way a service is stopped: TERM and CONT, then KILL after the lease's
 * stop_timeout.  A timer on the loop polls until no process of the group is
 * left (nothing blocks), and only then is the lease done and the next
 * waiter granted.  A group that outlives its KILL (a process stuck in the
 * kernel) holds the lock at most LOCK_GROUP_KILL_WAIT_MS more, logged.
 *
 * cohortd signals for the asker, so it only takes a group the asker could
 * signal itself: each of its processes runs as the asker's uid (real or
 * saved, as kill(2) checks), unless the asker is root (pgroup.c looks).
 */
#include "autoconfig.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"
#include "evtimer.h"
#include "lock.h"
#include "log.h"
#include "pgroup.h"

#define LOCK_GROUP_POLL_MS 10		/* between two looks in the first second */
#define LOCK_GROUP_POLL_SLOW_MS 50	/* and after it */
#define LOCK_GROUP_KILL_WAIT_MS 1000	/* after KILL, before giving up on the group */

/* A lost lease whose group is being stopped. */
struct lock_stop {
	struct cohortd *d;
	struct lock_lease *le;	/* ending: still a holder of its lock */
	ev_timer timer;		/* the next look at the group */
	int64_t term_at;	/* monotonic ms of the stop signal; 0: none sent */
	int64_t kill_at;	/* of the KILL, 0 before */
	unsigned looks;
	LIST_ENTRY(lock_stop) link;	/* in d->lock_stops */
};

static void stop_finish(struct lock_stop *st)
{
	struct cohortd *d = st->d;

	ev_timer_stop(d->loop, &st->timer);
	LIST_REMOVE(st, link);
	lock_lease_done(&d->locks, st->le);
	free(st);
}

static void stop_look(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct lock_stop *st = container_of(w, struct lock_stop, timer);
	struct lock_lease *le = st->le;
	pid_t pg = le->work.pgid;
	int64_t now = now_mono_ms(), next;
	(void)revents;

	if (!st->term_at) {	/* nothing was signalled */
		stop_finish(st);
		return;
	}
	if (!pgroup_alive(pg)) {
		log_info(NULL, "lock %s: process group %d of lease %" PRIu64 " ended %" PRId64
			 " ms after the stop signal", le->lock->name, (int)pg, le->token, now - st->term_at);
		stop_finish(st);
		return;
	}
	if (!st->kill_at && now - st->term_at >= le->work.stop_timeout_ms) {
		char dur[32];
		format_duration_ms(le->work.stop_timeout_ms, dur, sizeof(dur));
		log_warn(NULL, "lock %s: process group %d of lease %" PRIu64 " still runs %s after the "
			 "stop signal: killed", le->lock->name, (int)pg, le->token, dur);
		killpg(pg, SIGKILL);
		st->kill_at = now;
	} else if (st->kill_at && now - st->kill_at >= LOCK_GROUP_KILL_WAIT_MS) {
		log_warn(NULL, "lock %s: process group %d of lease %" PRIu64 " is still there %d ms after "
			 "KILL (stuck in the kernel?): the lock goes on to its next holder", le->lock->name,
			 (int)pg, le->token, LOCK_GROUP_KILL_WAIT_MS);
		stop_finish(st);
		return;
	}
	/* Soon at first (most work ends at the stop signal, and a waiter
	 * waits for it), less often after a second, never past the KILL. */
	next = st->looks < 3 ? 1 << st->looks : now - st->term_at < 1000 ? LOCK_GROUP_POLL_MS
									: LOCK_GROUP_POLL_SLOW_MS;
	st->looks++;
	if (!st->kill_at && st->term_at + le->work.stop_timeout_ms - now < next)
		next = st->term_at + le->work.stop_timeout_ms - now;
	evtimer_start_ms(loop, &st->timer, next > 0 ? next : 0);
}

/* on_end of the lock table: a lease with a group was lost. */
static void lock_group_end(struct lock_table *t, struct lock_lease *le, const char *why, void *arg)
{
	struct cohortd *d = arg;
	struct lock_stop *st = xcalloc(1, sizeof(*st));
	pid_t pg = le->work.pgid;
	int foreign = 0;
	(void)t;

	st->d = d;
	st->le = le;
	ev_init(&st->timer, stop_look);
	LIST_INSERT_HEAD(&d->lock_stops, st, link);
	/* Still the asker's?  Once a group is empty its number can be reused,
	 * and then it is nobody's business of this lease. */
	int live = le->work.uid == 0 && geteuid() == 0 ? kill(-pg, 0) == 0
						       : pgroup_scan(pg, le->work.uid, &foreign);
	if (live > 0 && foreign) {
		log_warn(NULL, "lock %s: lease %" PRIu64 " of %s lost (%s): process group %d is no longer "
			 "uid %u's: not signalled", le->lock->name, le->token, le->owner, why, (int)pg,
			 (unsigned)le->work.uid);
	} else if (live > 0) {
		log_info(NULL, "lock %s: lease %" PRIu64 " of %s lost (%s): stopping its process group %d",
			 le->lock->name, le->token, le->owner, why, (int)pg);
		/* CONT: a stopped process would not act on TERM until it ran. */
		killpg(pg, le->work.stop_timeout_ms ? SIGTERM : SIGKILL);
		killpg(pg, SIGCONT);
		st->term_at = now_mono_ms();
		st->kill_at = le->work.stop_timeout_ms ? 0 : st->term_at;
	}
	/* Done on the loop, never from within the lock table's call. */
	evtimer_start_ms(d->loop, &st->timer, st->term_at ? 1 : 0);
}

void lock_group_init(struct cohortd *d)
{
	d->locks.on_end = lock_group_end;
	d->locks.end_arg = d;
}

void lock_group_close(struct cohortd *d)
{
	d->locks.on_end = NULL;
	while (!LIST_EMPTY(&d->lock_stops)) {
		struct lock_stop *st = LIST_FIRST(&d->lock_stops);
		/* Its stop timeout will not be kept any more: the KILL is now.
		 * A lost lease's work must not go on just because we stop. */
		if (st->term_at && !st->kill_at && pgroup_alive(st->le->work.pgid)) {
			log_warn(NULL, "lock %s: process group %d of lease %" PRIu64 " still runs at exit: "
				 "killed", st->le->lock->name, (int)st->le->work.pgid, st->le->token);
			killpg(st->le->work.pgid, SIGKILL);
		}
		ev_timer_stop(d->loop, &st->timer);
		LIST_REMOVE(st, link);
		free(st);
	}
}
