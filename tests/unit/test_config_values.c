/* Unit tests of the value types of config keys (config_values.c): each
 * type's bounds, the values just inside them and just outside, through
 * key_parse as the loader calls it, and the bounds column of the table. */
#include "autoconfig.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <signal.h>
#include <string.h>

#include "config_keys.h"
#include "helpers.h"

/* Room for any field a key parses into. */
union field {
	char buf[256];
	struct strv sv;
	struct check ck;
	struct output out;
};

static const struct key_def *key(const char *name)
{
	for (size_t i = 0; i < config_nkeys; i++)
		if (strcmp(config_keys[i].name, name) == 0)
			return &config_keys[i];
	cr_assert_fail("no key \"%s\"", name);
	return NULL;
}

/* key = value parses, or (want != NULL) fails with why holding want. */
static void check_value(const char *name, const char *value, const char *want)
{
	const struct key_def *k = key(name);
	struct parse_ctx ctx = {.dir = "/etc/cohort"};
	struct sbuf why = {0};
	union field f;

	memset(&f, 0, sizeof(f));
	int rc = key_parse(k, &ctx, value, &f, &why);
	if (want) {
		cr_assert_eq(rc, -1, "%s = \"%s\" was taken", name, value);
		cr_assert(why.buf && strstr(why.buf, want), "%s = \"%s\": want \"%s\", got \"%s\"", name, value,
			  want, why.buf ? why.buf : "");
	} else {
		cr_assert_eq(rc, 0, "%s = \"%s\": %s", name, value, why.buf ? why.buf : "");
	}
	key_free(k, &f);
	sbuf_free(&why);
}

static void ok(const char *name, const char *value)
{
	check_value(name, value, NULL);
}

/* A number type's bounds come from its row of the table, and a type that
 * takes none has none: a row with its columns shifted shows here. */
Test(config_values, bounds_column_of_the_table)
{
	for (size_t i = 0; i < config_nkeys; i++) {
		const struct key_def *k = &config_keys[i];
		switch (k->type) {
		case K_UINT:
		case K_PHASE:
		case K_FACTOR:
		case K_FRACTION:
			cr_assert(k->max > 0 && k->min <= k->max, "%s: bounds %" PRId64 " to %" PRId64, k->name,
				  k->min, k->max);
			break;
		case K_SIZE:
			cr_assert(k->min <= k->max, "%s: bounds %" PRId64 " to %" PRId64, k->name, k->min, k->max);
			break;
		default:
			cr_assert(k->min == 0 && k->max == 0, "%s: bounds on a type that reads none", k->name);
		}
	}
}

/* Each bounded key: its min and max are taken, one step outside is not,
 * with a message that gives the bounds. */
Test(config_values, whole_numbers_from_min_to_max)
{
	for (size_t i = 0; i < config_nkeys; i++) {
		const struct key_def *k = &config_keys[i];
		if (k->type != K_UINT && k->type != K_PHASE)
			continue;
		char lo[32], hi[32], want[128];
		snprintf(want, sizeof(want), "from %" PRId64 " to %" PRId64, k->min, k->max);
		snprintf(lo, sizeof(lo), "%" PRId64, k->min);
		snprintf(hi, sizeof(hi), "%" PRId64, k->max);
		ok(k->name, lo);
		ok(k->name, hi);
		snprintf(hi, sizeof(hi), "%" PRId64, k->max + 1);
		check_value(k->name, hi, want);
		if (k->min > 0) {
			snprintf(lo, sizeof(lo), "%" PRId64, k->min - 1);
			check_value(k->name, lo, want);
		}
		check_value(k->name, "-1", want);
		check_value(k->name, "1.5", want);
	}
	check_value("breaker_failures", "1000001", "expected a whole number from 0 to 1000000");
	check_value("bus_max_connections", "0", "expected a whole number from 1 to 1000000");
	check_value("phase", "10001", "expected a phase number from 1 to 10000, or nothing");
	ok("phase", "");
}

Test(config_values, real_numbers_from_min_to_max)
{
	ok("backoff_factor", "1");
	ok("backoff_factor", "100");
	ok("backoff_factor", "1.5");
	check_value("backoff_factor", "0.99", "expected a number from 1 to 100");
	check_value("backoff_factor", "100.01", "expected a number from 1 to 100");
	check_value("backoff_factor", "nan", "expected a number from 1 to 100");
	check_value("backoff_factor", "", "expected a number from 1 to 100");
	ok("backoff_jitter", "0");
	ok("backoff_jitter", "1");
	check_value("backoff_jitter", "-0.01", "expected a number from 0 to 1 (0.1 = 10%)");
	check_value("backoff_jitter", "1.01", "expected a number from 0 to 1 (0.1 = 10%)");
	check_value("backoff_jitter", "0.1x", "expected a number from 0 to 1");
}

Test(config_values, sizes_with_and_without_bounds)
{
	ok("bus_max_message", "1K");
	ok("bus_max_message", "1024");
	ok("bus_max_message", "16M");
	check_value("bus_max_message", "1023", "expected a size from 1K to 16M");
	check_value("bus_max_message", "16777217", "expected a size from 1K to 16M");
	check_value("bus_max_message", "big", "expected a size from 1K to 16M");
	/* without bounds in the table: what parse_size takes, 0 to 1024G */
	ok("log_max_size", "0");
	ok("log_max_size", "1024G");
	check_value("log_max_size", "1025G", "expected a size such as 512K");
	check_value("bus_memory_max", "-1", "expected a size such as 512K");
}

Test(config_values, durations_up_to_100_days)
{
	ok("stop_timeout", "0");
	ok("stop_timeout", "100d");
	check_value("stop_timeout", "101d", "expected a duration such as 250ms");
	check_value("stop_timeout", "-1s", "expected a duration");
}

Test(config_values, modes_umasks_exit_codes_and_signals)
{
	ok("control_mode", "0");
	ok("control_mode", "07777");
	check_value("control_mode", "010000", "expected an octal file mode such as 0600");
	check_value("control_mode", "8", "expected an octal file mode");
	ok("umask", "000");
	ok("umask", "777");
	ok("umask", "");
	check_value("umask", "1000", "expected an octal umask from 000 to 777");
	check_value("umask", "08", "expected an octal umask");
	ok("success_exit", "0, 255");
	check_value("success_exit", "256", "expected exit codes 0-255, got \"256\"");
	check_value("success_exit", "-1", "expected exit codes 0-255");
	ok("stop_signal", "1");
	char top[16];
	snprintf(top, sizeof(top), "%d", NSIG - 1);
	ok("stop_signal", top);
	snprintf(top, sizeof(top), "%d", NSIG);
	check_value("stop_signal", top, "expected a signal name");
	check_value("stop_signal", "0", "expected a signal name");
}

Test(config_values, ports_from_1_to_65535)
{
	ok("bus_listen", "127.0.0.1:1");
	ok("bus_listen", "[::1]:65535");
	ok("bus_listen", "");
	check_value("bus_listen", "127.0.0.1:0", "expected HOST:PORT");
	check_value("bus_listen", "127.0.0.1:65536", "expected HOST:PORT");
	ok("ready", "tcp:localhost:65535");
	check_value("ready", "tcp:localhost:65536", "expected notify, delay:DURATION");
	ok("health", "http://localhost:1/x");
	check_value("health", "http://localhost:0/x", "expected tcp:HOST:PORT");
}

Test(config_values, names_and_patterns_at_their_longest)
{
	char name[300];

	memset(name, 'a', sizeof(name));
	name[SVC_NAME_MAX] = '\0';
	ok("requires", name);
	name[SVC_NAME_MAX] = 'a';
	name[SVC_NAME_MAX + 1] = '\0';
	check_value("requires", name, "is not a service name");
	memset(name, 'a', sizeof(name));
	name[LOCK_NAME_MAX] = '\0';
	ok("locks", name);
	name[LOCK_NAME_MAX] = 'a';
	name[LOCK_NAME_MAX + 1] = '\0';
	check_value("locks", name, "is not a lock name pattern");
}

/* A value that fails leaves the field as it was: the default the loader
 * parsed first stays. */
Test(config_values, a_bad_value_leaves_the_field)
{
	struct parse_ctx ctx = {.dir = "/"};
	struct sbuf why = {0};
	uint64_t n = 7;
	double x = 0.5;

	cr_assert_eq(key_parse(key("bus_max_connections"), &ctx, "0", &n, &why), -1);
	cr_assert_eq(n, 7);
	cr_assert_eq(key_parse(key("bus_max_message"), &ctx, "17M", &n, &why), -1);
	cr_assert_eq(n, 7);
	cr_assert_eq(key_parse(key("backoff_jitter"), &ctx, "2", &x, &why), -1);
	cr_assert_eq(x, 0.5);
	sbuf_free(&why);
}
