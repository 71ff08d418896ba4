/*
 * histo.h - a fixed-bucket histogram of durations, for /metrics.
 *
 * Observing is a few compares and two adds, no allocation, and safe from
 * another thread (the journal's writer observes its fsyncs): counters are
 * relaxed atomics, so a scrape may see one observation half counted, which
 * Prometheus tolerates (the next scrape is whole).  Buckets are fixed, in
 * microseconds, chosen per use: every histogram of a kind shares its bounds
 * so that they can be summed across series.
 */
#ifndef COHORT_HISTO_H
#define COHORT_HISTO_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define HISTO_MAX_BUCKETS 16

struct histo {
	const uint64_t *le_us;	/* upper bounds, ascending; +Inf is implied */
	size_t nle;
	_Atomic uint64_t bucket[HISTO_MAX_BUCKETS + 1];	/* not cumulative; the last is +Inf */
	_Atomic uint64_t count;
	_Atomic uint64_t sum_us;
};

/* Bounds for fast things (an fsync): 100 us to 10 s (histo.c). */
extern const uint64_t histo_fast_us[];
extern const size_t histo_fast_n;
/* Bounds for a service's time to ready: 10 ms to 5 min, few (one series per
 * service), counted in a struct histo_ready. */
#define HISTO_READY_N 10
extern const uint64_t histo_ready_us[HISTO_READY_N];
/* Bounds for slow things (time to ready, lock waits and holds): 1 ms to 1 h. */
extern const uint64_t histo_slow_us[];
extern const size_t histo_slow_n;

static inline void histo_init(struct histo *h, const uint64_t *le_us, size_t nle)
{
	h->le_us = le_us;
	h->nle = nle < HISTO_MAX_BUCKETS ? nle : HISTO_MAX_BUCKETS;
	for (size_t i = 0; i <= HISTO_MAX_BUCKETS; i++)
		atomic_store_explicit(&h->bucket[i], 0, memory_order_relaxed);
	atomic_store_explicit(&h->count, 0, memory_order_relaxed);
	atomic_store_explicit(&h->sum_us, 0, memory_order_relaxed);
}

#define HISTO_INIT_FAST(h) histo_init((h), histo_fast_us, histo_fast_n)
#define HISTO_INIT_SLOW(h) histo_init((h), histo_slow_us, histo_slow_n)

/* CLOCK_MONOTONIC in microseconds: what durations are measured with. */
static inline int64_t histo_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The bucket us falls in, of the nle bounds le_us (nle: +Inf). */
static inline size_t histo_bucket(const uint64_t *le_us, size_t nle, uint64_t us)
{
	size_t i = 0;

	while (i < nle && us > le_us[i])
		i++;
	return i;
}

static inline void histo_observe_us(struct histo *h, uint64_t us)
{
	size_t i = histo_bucket(h->le_us, h->nle, us);

	atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sum_us, us, memory_order_relaxed);
}

/*
 * A service's time to ready: one per service, and 10,000 services each
 * kept a struct histo of HISTO_MAX_BUCKETS + 1 counters where these bounds
 * need 11, with the bounds' pointer and a count the page does not read
 * (it sums the buckets).  The same relaxed counters, zeroed by calloc.
 */
struct histo_ready {
	_Atomic uint64_t bucket[HISTO_READY_N + 1];	/* not cumulative; the last is +Inf */
	_Atomic uint64_t sum_us;
};

static inline void histo_ready_observe_us(struct histo_ready *h, uint64_t us)
{
	size_t i = histo_bucket(histo_ready_us, HISTO_READY_N, us);

	atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sum_us, us, memory_order_relaxed);
}

#endif
