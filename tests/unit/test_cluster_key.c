/* Lock names as keys of the cluster's bucket (src/cluster): a KV key takes
 * [-/_=.a-zA-Z0-9] with '.' separating subject tokens, a lock name also
 * ':' and any '.' placement, so both are escaped, and back. */
#include "autoconfig.h"

#include <criterion/criterion.h>
#include <stdlib.h>

#ifdef HAVE_LIBNATS
#include "cluster_impl.h"

static void round_trip(const char *name, const char *key)
{
	char *k = cluster_key_encode(name);
	char *n = cluster_key_decode(k);

	cr_assert_str_eq(k, key);
	cr_assert_not_null(n);
	cr_assert_str_eq(n, name);
	free(k);
	free(n);
}

Test(cluster_key, escapes_what_a_kv_key_cannot_hold)
{
	round_trip("jobs.nightly", "jobs=2Enightly");
	round_trip("db:primary", "db=3Aprimary");
	round_trip(".a..b.", "=2Ea=2E=2Eb=2E");
	round_trip("a/b_c-D9", "a/b_c-D9");
	round_trip("x=y", "x=3Dy");
}

Test(cluster_key, foreign_keys_are_not_ours)
{
	cr_assert_null(cluster_key_decode("bad=4"));
	cr_assert_null(cluster_key_decode("bad=G1"));
	cr_assert_null(cluster_key_decode("bad="));
}

/* A shared value: one entry per cohortd, added, replaced and removed
 * without touching the others'. */
Test(cluster_value, shared_entries)
{
	char *v = cv_with(NULL, "h1:1:aa", 5000, 0);
	cr_assert_str_eq(v, "shared h1:1:aa/5000/0");
	char *w = cv_with(v, "h2:2:bb", 1000, 3);
	cr_assert_str_eq(w, "shared h1:1:aa/5000/0 h2:2:bb/1000/3");
	char *x = cv_with(w, "h1:1:aa", 5000, 1);	/* a renewal: its own entry moves */
	cr_assert_str_eq(x, "shared h2:2:bb/1000/3 h1:1:aa/5000/1");
	cr_assert(cv_holds(x, "h1:1:aa") && cv_holds(x, "h2:2:bb") && !cv_holds(x, "h1:1:a"));
	char *y = cv_without(x, "h2:2:bb");
	cr_assert_str_eq(y, "shared h1:1:aa/5000/1");
	cr_assert_null(cv_without(y, "h1:1:aa"));
	/* over an exclusive value (a take-over): only ours */
	char *e = cv_exclusive(700, "h3:3:cc");
	cr_assert_str_eq(e, "ttl_ms=700 owner=h3:3:cc");
	cr_assert(!cv_shared(e) && cv_holds(e, "h3:3:cc") && !cv_holds(e, "h1:1:aa"));
	free(v);
	free(w);
	free(x);
	free(y);
	free(e);
}

/* A waiter takes over only once every holder has stood still for its
 * TTL; a holder that moves starts its TTL again; this cohortd's own entry
 * (no lease here relies on it) is stale at once. */
Test(cluster_value, holders_seen_standing_still)
{
	struct cseen_list l = {0};

	cseen_update(&l, "shared a/1000/0 b/3000/0", 10, "me", 100);
	cr_assert_eq(l.n, 2);
	cr_assert_eq(cseen_free_at(&l, 100), 3100);
	cseen_update(&l, "shared a/1000/0 b/3000/1", 11, "me", 2000);	/* b renewed */
	cr_assert_eq(cseen_free_at(&l, 2000), 5000);
	cseen_update(&l, "shared a/1000/0", 12, "me", 2500);	/* b left */
	cr_assert_eq(cseen_free_at(&l, 2500), 2500);
	cseen_update(&l, "shared me/9000/4", 13, "me", 2600);
	cr_assert_eq(cseen_free_at(&l, 2600), 2600);
	/* exclusive: its revision is what moves */
	cseen_update(&l, "ttl_ms=500 owner=x", 20, "me", 3000);
	cr_assert_eq(cseen_free_at(&l, 3000), 3500);
	cseen_update(&l, "ttl_ms=500 owner=x", 20, "me", 3400);
	cr_assert_eq(cseen_free_at(&l, 3400), 3500);
	cseen_update(&l, "ttl_ms=500 owner=x", 21, "me", 3400);
	cr_assert_eq(cseen_free_at(&l, 3400), 3900);
	cseen_clear(&l);
}
#else
Test(cluster_key, not_built)
{
	cr_skip_test("built without libnats: no cluster mode");
}
#endif
