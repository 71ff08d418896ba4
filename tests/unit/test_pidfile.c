/* Unit tests of pidfile = PATH: the text of a PID file (pidfile.c's
 * parser) and the key in the config (its path, its checks, the ready it
 * implies). */
#include "autoconfig.h"

#include <criterion/criterion.h>
#include <string.h>

#include "helpers.h"
#include "pidfile.h"

static int parse(const char *text, pid_t *pid, char *why)
{
	*pid = 0;
	return pidfile_parse(text, strlen(text), pid, why, 128);
}

Test(pidfile, a_pid_with_blanks_and_a_newline)
{
	const char *good[] = {"1234\n", "1234", "  1234 \t\r\n", "\t42\nsomething else\n", "4194304\n"};
	const pid_t want[] = {1234, 1234, 1234, 42, 4194304};
	char why[128];
	pid_t pid;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		cr_assert_eq(parse(good[i], &pid, why), 0, "\"%s\": %s", good[i], why);
		cr_assert_eq(pid, want[i], "\"%s\"", good[i]);
	}
}

Test(pidfile, empty_means_not_written_yet)
{
	char why[128];
	pid_t pid;

	cr_assert_eq(parse("", &pid, why), 1);
	cr_assert_str_eq(why, "is empty");
	cr_assert_eq(parse(" \n\n", &pid, why), 1);
	cr_assert_eq(pid, 0);
}

Test(pidfile, junk_says_what_it_found)
{
	char why[128];
	pid_t pid;

	cr_assert_eq(parse("not-a-pid\n", &pid, why), -1);
	cr_assert_str_eq(why, "expected a process id, found \"not-a-pid\"");
	cr_assert_eq(parse("12 34\n", &pid, why), -1);
	cr_assert_str_eq(why, "expected a process id, found \"12 34\"");
	cr_assert_eq(parse("-5\n", &pid, why), -1);
	cr_assert_eq(parse("0x10\n", &pid, why), -1);
	cr_assert_eq(parse("\n123\n", &pid, why), -1, "the pid must be on the first line");
	cr_assert_str_eq(why, "expected a process id, found \"\"");
	cr_assert_eq(parse("12\x01\n", &pid, why), -1);
	cr_assert_str_eq(why, "expected a process id, found \"12?\"");
	/* Long junk is cut short in the message. */
	char longer[300];
	memset(longer, 'x', sizeof(longer) - 1);
	longer[sizeof(longer) - 1] = '\0';
	cr_assert_eq(parse(longer, &pid, why), -1);
	cr_assert_lt(strlen(why), 80);
	cr_assert(strstr(why, "...\""), "%s", why);
	cr_assert_eq(pid, 0);
}

Test(pidfile, pids_no_daemon_can_have)
{
	char why[128];
	pid_t pid;

	cr_assert_eq(parse("0\n", &pid, why), -1);
	cr_assert_str_eq(why, "names pid 0, which no daemon can have");
	cr_assert_eq(parse("1\n", &pid, why), -1);
	cr_assert_eq(parse("4194305\n", &pid, why), -1);
	cr_assert_eq(parse("99999999999999999999999\n", &pid, why), -1);
	cr_assert_eq(pid, 0);
}

static struct diag d;

static void teardown(void)
{
	diag_free(&d);
	th_cleanup();
}

TestSuite(pidfile_key, .fini = teardown);

Test(pidfile_key, relative_to_the_config_and_ready_once_adopted)
{
	struct cohort_config *c = th_load("[service:a]\ncommand = x\npidfile = run/a.pid\n"
					  "[service:b]\ncommand = x\npidfile = /run/b.pid\n"
					  "ready = tcp:127.0.0.1:80\n"
					  "[service:c]\ncommand = x\n", &d);
	cr_assert_not_null(c, "%s", th_diag_text(&d));
	cr_assert_eq(d.count, 0, "%s", th_diag_text(&d));
	const struct svc_config *a = config_find(c, "a"), *b = config_find(c, "b"), *n = config_find(c, "c");
	char *want = xasprintf("%s/run/a.pid", th_tmpdir());
	cr_assert_str_eq(a->rare->pidfile, want);
	free(want);
	cr_assert_eq(a->ready.kind, CHECK_DELAY);
	cr_assert_eq(a->ready.delay_ms, 0, "no ready: ready once the pid is adopted");
	cr_assert_str_eq(b->rare->pidfile, "/run/b.pid");
	cr_assert_eq(b->ready.kind, CHECK_TCP, "a ready probe set is kept");
	cr_assert_null(n->rare->pidfile);
	cr_assert_eq(n->ready.delay_ms, 1000, "without pidfile the default stays delay:1s");
	config_free(c);
}

Test(pidfile_key, errors_name_the_file_line_and_key)
{
	struct cohort_config *c = th_load("[service:a]\ncommand = x\npidfile = /run/\n", &d);
	cr_assert_eq(d.count, 1, "%s", th_diag_text(&d));
	cr_assert(th_diag_has(&d, "cohort.ini:3: [service:a]: pidfile = /run/: expected a file, not a directory"),
		  "%s", th_diag_text(&d));
	config_free(c);
	diag_free(&d);

	c = th_load("[service:a]\ncommand = x\npidfile = a.pid\nready = notify\n", &d);
	cr_assert_eq(d.count, 1, "%s", th_diag_text(&d));
	cr_assert(th_diag_has(&d, "cohort.ini:4: [service:a]: ready = notify cannot be used with pidfile"),
		  "%s", th_diag_text(&d));
	config_free(c);
	diag_free(&d);

	/* The hint for systemd's keys. */
	c = th_load("[service:a]\ncommand = x\nPIDFile = /run/a.pid\n", &d);
	cr_assert(th_diag_has(&d, "use pidfile = PATH"), "%s", th_diag_text(&d));
	config_free(c);
}
