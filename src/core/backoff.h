/*
 * backoff.h - the restart policy's arithmetic, as pure functions: the
 * backoff delay after n consecutive failures and the circuit breaker's
 * failure window.  No clocks are read here; callers pass the time in.
 */
#ifndef COHORT_BACKOFF_H
#define COHORT_BACKOFF_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"

/* min(backoff_max, backoff_initial * factor^(n-1)), spread by jitter:
 * rnd in [-1, 1] scales the +-backoff_jitter fraction.  n >= 1. */
int64_t backoff_delay_ms(const struct svc_config *c, unsigned n, double rnd);

/* The times of the most recent failures, at most breaker_failures. */
/* (Counts of at most breaker_failures, 1,000,000: 32 bits, in every service.) */
struct breaker {
	int64_t *times;		/* ring buffer, monotonic ms */
	uint32_t cap;
	uint32_t len;
	uint32_t head;		/* index of the oldest */
};

/* Records a failure at now; true when the breaker opens (breaker_failures
 * failures within breaker_window, counting this one). */
bool breaker_record(struct breaker *b, const struct svc_config *c, int64_t now);
void breaker_reset(struct breaker *b);
void breaker_free(struct breaker *b);

#endif
