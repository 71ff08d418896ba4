/* Unit tests of log.c's repeat counting: identical lines within a second
 * collapse into one count line, anything that differs is written. */
#include "autoconfig.h"

#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "log.h"

#define T0 1796000000000LL	/* a wall-clock second boundary, in ms */

static const char *path;

static void setup(void)
{
	cr_redirect_stderr();	/* the lines go to stderr as well */
	path = xasprintf("%s/cohortd.log", th_tmpdir());
	cr_assert_eq(log_file_open(path, false), 0);
	log_set_level(LOG_DEBUG);
}

static void teardown(void)
{
	log_flush_repeats(INT64_MAX / 2);	/* nothing left for the next test */
	log_file_open(NULL, false);
	log_set_level(LOG_INFO);
	free((char *)path);
	th_cleanup();
}

/* The log file's lines with their "TIME " cut off, joined by '|'. */
static char *lines(void)
{
	FILE *f = fopen(path, "r");
	char buf[4096];
	struct sbuf b = {0};

	cr_assert(f);
	while (fgets(buf, sizeof(buf), f)) {
		char *p = strchr(buf, ' ');
		buf[strcspn(buf, "\n")] = '\0';
		sbuf_addf(&b, "%s%s", b.len ? "|" : "", p ? p + 1 : buf);
	}
	fclose(f);
	return b.buf ? b.buf : xstrdup("");
}

TestSuite(log, .init = setup, .fini = teardown);

Test(log, identical_lines_in_one_second_are_counted_once)
{
	for (int i = 0; i < 1000; i++)
		log_write(T0 + i % 900, LOG_WARN, NULL, "bus: accept: Too many open files");
	log_write(T0 + 950, LOG_INFO, "web", "running -> backoff: killed by SIGKILL");
	char *got = lines();
	cr_assert_str_eq(got, "WARN  cohortd: bus: accept: Too many open files|"
			 "WARN  cohortd: ... repeated 999 times|"
			 "INFO  web: running -> backoff: killed by SIGKILL");
	free(got);
}

Test(log, a_line_that_differs_in_level_service_or_text_is_written)
{
	log_write(T0, LOG_INFO, "a", "x");
	log_write(T0 + 1, LOG_WARN, "a", "x");
	log_write(T0 + 2, LOG_WARN, "b", "x");
	log_write(T0 + 3, LOG_WARN, "b", "y");
	log_write(T0 + 4, LOG_WARN, "b", "x");
	char *got = lines();
	cr_assert_str_eq(got, "INFO  a: x|WARN  a: x|WARN  b: x|WARN  b: y|WARN  b: x");
	free(got);
}

Test(log, the_count_is_written_when_the_second_is_over)
{
	log_write(T0 + 10, LOG_ERROR, NULL, "same");
	log_write(T0 + 20, LOG_ERROR, NULL, "same");
	log_write(T0 + 30, LOG_ERROR, NULL, "same");
	cr_assert(log_flush_repeats(T0 + 999), "still the same second: the count waits");
	char *got = lines();
	cr_assert_str_eq(got, "ERROR cohortd: same");
	free(got);
	cr_assert_not(log_flush_repeats(T0 + 1000));
	got = lines();
	cr_assert_str_eq(got, "ERROR cohortd: same|ERROR cohortd: ... repeated 2 times");
	free(got);
	/* The same line in the next second is news again. */
	log_write(T0 + 1500, LOG_ERROR, NULL, "same");
	got = lines();
	cr_assert_str_eq(got, "ERROR cohortd: same|ERROR cohortd: ... repeated 2 times|ERROR cohortd: same");
	free(got);
}

Test(log, a_flood_across_seconds_costs_two_lines_a_second)
{
	for (int64_t t = 0; t < 5000; t++)
		log_write(T0 + t, LOG_WARN, NULL, "flood");
	log_flush_repeats(T0 + 5000);
	char *got = lines();
	cr_assert_str_eq(got, "WARN  cohortd: flood|WARN  cohortd: ... repeated 999 times|"
			 "WARN  cohortd: flood|WARN  cohortd: ... repeated 999 times|"
			 "WARN  cohortd: flood|WARN  cohortd: ... repeated 999 times|"
			 "WARN  cohortd: flood|WARN  cohortd: ... repeated 999 times|"
			 "WARN  cohortd: flood|WARN  cohortd: ... repeated 999 times");
	free(got);
}

Test(log, one_repeat_says_time)
{
	log_write(T0, LOG_WARN, NULL, "twice");
	log_write(T0 + 1, LOG_WARN, NULL, "twice");
	log_write(T0 + 2, LOG_WARN, NULL, "other");
	char *got = lines();
	cr_assert_str_eq(got, "WARN  cohortd: twice|WARN  cohortd: ... repeated 1 time|WARN  cohortd: other");
	free(got);
}

Test(log, lines_below_the_level_are_neither_written_nor_counted)
{
	log_set_level(LOG_INFO);
	log_write(T0, LOG_INFO, NULL, "kept");
	log_write(T0 + 1, LOG_DEBUG, NULL, "kept");
	log_write(T0 + 2, LOG_INFO, NULL, "kept");
	log_flush_repeats(T0 + 1000);
	char *got = lines();
	cr_assert_str_eq(got, "INFO  cohortd: kept|INFO  cohortd: ... repeated 1 time");
	free(got);
}
