/*
 * backoff.c - see backoff.h.
 */
#include "autoconfig.h"

#include <math.h>
#include <stdlib.h>

#include "backoff.h"

int64_t backoff_delay_ms(const struct svc_config *c, unsigned n, double rnd)
{
	double d = (double)c->backoff_initial_ms;

	if (n < 1)
		n = 1;
	/* Multiply step by step so a huge n cannot overflow to inf. */
	for (unsigned i = 1; i < n && d < (double)c->backoff_max_ms; i++)
		d *= c->backoff_factor;
	if (d > (double)c->backoff_max_ms)
		d = (double)c->backoff_max_ms;
	if (rnd < -1)
		rnd = -1;
	if (rnd > 1)
		rnd = 1;
	d *= 1.0 + c->backoff_jitter * rnd;
	return d < 0 ? 0 : (int64_t)llround(d);
}

bool breaker_record(struct breaker *b, const struct svc_config *c, int64_t now)
{
	size_t want = (size_t)c->breaker_failures;

	if (want == 0)
		return false;	/* breaker off */
	if (b->cap != want) {
		breaker_free(b);
		b->times = xcalloc(want, sizeof(int64_t));
		b->cap = (uint32_t)want;
	}
	if (b->len == b->cap) {
		b->head = (b->head + 1) % b->cap;
		b->len--;
	}
	b->times[(b->head + b->len) % b->cap] = now;
	b->len++;
	/* Drop failures that left the window. */
	while (b->len && now - b->times[b->head] >= c->breaker_window_ms) {
		b->head = (b->head + 1) % b->cap;
		b->len--;
	}
	return b->len >= want;
}

void breaker_reset(struct breaker *b)
{
	b->len = 0;
	b->head = 0;
}

void breaker_free(struct breaker *b)
{
	free(b->times);
	*b = (struct breaker){0};
}
