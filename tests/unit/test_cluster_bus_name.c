/* Durable sessions' keys as NATS consumer names and subject tokens
 * (src/cluster/cluster_bus.c): [A-Za-z0-9-] as they are, the rest
 * ("service:core/worker.1") as _XX, '_' itself included, and back: the
 * consumer named in a message's ack subject gives the session back. */
#include "autoconfig.h"

#include <criterion/criterion.h>
#include <stdlib.h>

#ifdef HAVE_LIBNATS
#include "cluster_bus.h"

static void round_trip(const char *key, const char *name)
{
	char *n = cluster_bus_name_encode(key);
	char *k = cluster_bus_name_decode(n);

	cr_assert_str_eq(n, name);
	cr_assert_not_null(k);
	cr_assert_str_eq(k, key);
	free(k);
	free(n);
}

Test(cluster_bus_name, escapes_what_a_consumer_name_cannot_hold)
{
	round_trip("service:core/worker", "service_3Acore_2Fworker");
	round_trip("admin/a.b_c-D9", "admin_2Fa_2Eb_5Fc-D9");
	round_trip("", "");
}

Test(cluster_bus_name, foreign_names_are_not_ours)
{
	cr_assert_null(cluster_bus_name_decode("bad_4"));
	cr_assert_null(cluster_bus_name_decode("bad_G1"));
	cr_assert_null(cluster_bus_name_decode("bad_"));
}
#else
Test(cluster_bus_name, not_built)
{
	cr_skip_test("built without libnats: no cluster mode");
}
#endif
