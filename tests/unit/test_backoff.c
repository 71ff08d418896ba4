/* Unit tests of backoff.c: the delay law and the breaker window. */
#include "autoconfig.h"

#include <criterion/criterion.h>

#include "backoff.h"

static struct svc_config cfg(void)
{
	return (struct svc_config){
		.backoff_initial_ms = 1000, .backoff_factor = 2, .backoff_max_ms = 60000,
		.backoff_jitter = 0.1, .breaker_failures = 5, .breaker_window_ms = 60000,
	};
}

Test(backoff, follows_the_law_without_jitter)
{
	struct svc_config c = cfg();
	int64_t want[] = {1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000};

	for (unsigned n = 1; n <= 8; n++)
		cr_assert_eq(backoff_delay_ms(&c, n, 0), want[n - 1], "n=%u", n);
	cr_assert_eq(backoff_delay_ms(&c, 1000000, 0), 60000);	/* no overflow */
	cr_assert_eq(backoff_delay_ms(&c, 0, 0), 1000);
}

Test(backoff, jitter_stays_within_bounds)
{
	struct svc_config c = cfg();

	cr_assert_eq(backoff_delay_ms(&c, 3, 1), 4400);
	cr_assert_eq(backoff_delay_ms(&c, 3, -1), 3600);
	cr_assert_eq(backoff_delay_ms(&c, 3, 5), 4400);	/* clamped */
	c.backoff_initial_ms = 0;
	cr_assert_eq(backoff_delay_ms(&c, 7, 1), 0);
}

Test(backoff, factor_one_is_constant)
{
	struct svc_config c = cfg();

	c.backoff_factor = 1;
	for (unsigned n = 1; n < 20; n++)
		cr_assert_eq(backoff_delay_ms(&c, n, 0), 1000);
}

Test(breaker, opens_at_n_failures_within_window)
{
	struct svc_config c = cfg();
	struct breaker b = {0};

	for (int i = 0; i < 4; i++)
		cr_assert(!breaker_record(&b, &c, 1000 * i));
	cr_assert(breaker_record(&b, &c, 4000));
	breaker_free(&b);
}

Test(breaker, old_failures_leave_the_window)
{
	struct svc_config c = cfg();
	struct breaker b = {0};

	/* One failure every 20 s: never 5 within 60 s. */
	for (int i = 0; i < 50; i++)
		cr_assert(!breaker_record(&b, &c, 20000LL * i), "i=%d", i);
	/* Then five quick ones. */
	for (int i = 0; i < 4; i++)
		cr_assert(!breaker_record(&b, &c, 2000000 + i));
	cr_assert(breaker_record(&b, &c, 2000010));
	breaker_reset(&b);
	cr_assert(!breaker_record(&b, &c, 2000020));
	breaker_free(&b);
}

Test(breaker, zero_failures_means_off)
{
	struct svc_config c = cfg();
	struct breaker b = {0};

	c.breaker_failures = 0;
	for (int i = 0; i < 100; i++)
		cr_assert(!breaker_record(&b, &c, i));
	breaker_free(&b);
}

Test(breaker, one_failure_opens_when_set_to_one)
{
	struct svc_config c = cfg();
	struct breaker b = {0};

	c.breaker_failures = 1;
	cr_assert(breaker_record(&b, &c, 5));
	breaker_free(&b);
}
