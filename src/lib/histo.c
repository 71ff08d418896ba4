/*
 * histo.c - the bucket bounds histograms share (histo.h).
 */
#include "histo.h"

const uint64_t histo_fast_us[] = {100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000,
				  100000, 250000, 1000000, 10000000};
const size_t histo_fast_n = sizeof(histo_fast_us) / sizeof(histo_fast_us[0]);
const uint64_t histo_ready_us[HISTO_READY_N] = {10000, 100000, 500000, 1000000, 2500000, 5000000, 10000000,
						30000000, 60000000, 300000000};
const uint64_t histo_slow_us[] = {1000, 10000, 50000, 100000, 250000, 500000, 1000000, 2500000,
				  5000000, 10000000, 30000000, 60000000, 300000000, 3600000000};
const size_t histo_slow_n = sizeof(histo_slow_us) / sizeof(histo_slow_us[0]);
_Static_assert(sizeof(histo_fast_us) / sizeof(histo_fast_us[0]) <= HISTO_MAX_BUCKETS, "too many buckets");
_Static_assert(sizeof(histo_slow_us) / sizeof(histo_slow_us[0]) <= HISTO_MAX_BUCKETS, "too many buckets");
