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
#else
Test(cluster_key, not_built)
{
	cr_skip_test("built without libnats: no cluster mode");
}
#endif
