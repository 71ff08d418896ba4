/* The cluster keys of [cohort] (issue 18): URLs and name checked at load,
 * with the file and line; refused outright when cohortd has no libnats. */
#include "autoconfig.h"

#include <criterion/criterion.h>
#include <string.h>

#include "config_keys.h"
#include "helpers.h"

static struct diag d;

static void setup(void)
{
	d = (struct diag){0};
}

static void teardown(void)
{
	diag_free(&d);
	th_cleanup();
}

TestSuite(config_cluster, .init = setup, .fini = teardown);

static void bad(const char *text, const char *needle)
{
	th_bad(text, needle, &d);
}

#define SVC "[service:a]\ncommand = /bin/true\n"

Test(config_cluster, one_host_by_default)
{
	struct cohort_config *c = th_load(SVC, &d);

	cr_assert_not_null(c);
	cr_assert_null(c->cluster);
	cr_assert_str_eq(c->cluster_name, "cohort");
	cr_assert_null(c->cluster_creds);
	config_free(c);
}

#ifdef HAVE_LIBNATS
Test(config_cluster, urls_and_name)
{
	struct cohort_config *c = th_load("[cohort]\ncluster = nats://h1:4222, nats://u:p@h2:4222,tls://h3:4222\n"
					  "cluster_name = prod_1\n" SVC, &d);

	cr_assert_not_null(c, "%s", th_diag_text(&d));
	cr_assert_str_eq(c->cluster, "nats://h1:4222, nats://u:p@h2:4222,tls://h3:4222");
	cr_assert_str_eq(c->cluster_name, "prod_1");
	config_free(c);
}

Test(config_cluster, bad_values_name_the_line)
{
	bad("[cohort]\ncluster = nats://h1:4222 nats://h2:4222\n" SVC, ":2: [cohort]: cluster");
	bad("[cohort]\ncluster = http://h1:4222\n" SVC, "\"http://h1:4222\" is no NATS URL");
	bad("[cohort]\ncluster = nats://h1:4222,,nats://h2:4222\n" SVC, "\"\" is no NATS URL");
	bad("[cohort]\n\ncluster_name = a.b\n" SVC, ":3: [cohort]: cluster_name = \"a.b\": expected 1 to 64");
	bad("[cohort]\ncluster_name =\n" SVC, "cluster_name");
}
#else
Test(config_cluster, refused_without_libnats)
{
	bad("[cohort]\ncluster = nats://h1:4222\n" SVC, ":2: [cohort]: cluster = \"nats://h1:4222\": "
	    "this cohortd was built without the cluster mode");
}
#endif
