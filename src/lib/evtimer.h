/*
 * evtimer.h - starting a libev timer that runs from now.
 *
 * libev counts a relative timer from ev_now(), the time the loop woke up.
 * After a long iteration (a burst of work, a slow machine, valgrind) that
 * is milliseconds in the past, and the timer would fire that much before
 * the delay we promised (a backoff, a lease, a stop_timeout) has passed
 * since the moment we logged or answered.  ev_now_update() brings the
 * loop's clock to now first (libev's own monotonic one: a wall-clock step
 * moves nothing).
 */
#ifndef COHORT_EVTIMER_H
#define COHORT_EVTIMER_H

#include <ev.h>
#include <stdint.h>

static inline void evtimer_start_ms(struct ev_loop *loop, ev_timer *w, int64_t ms)
{
	ev_now_update(loop);
	ev_timer_set(w, (double)ms / 1000.0, 0);
	ev_timer_start(loop, w);
}

#endif
