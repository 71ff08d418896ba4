/* Unit tests of the config loader: every key, every default, every error. */
#include "autoconfig.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_keys.h"
#include "helpers.h"
#include "topic.h"

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

TestSuite(config, .init = setup, .fini = teardown);

/* Loads text that must be valid. */
static struct cohort_config *good(const char *text)
{
	return th_good(text, &d);
}

/* Loads text that must fail with a line containing needle. */
static void bad(const char *text, const char *needle)
{
	th_bad(text, needle, &d);
}

Test(config, defaults_of_every_key)
{
	struct cohort_config *c = good("[service:a]\ncommand = /bin/true\n");
	struct svc_config *s = config_find(c, "a");

	cr_assert_str_eq(c->run_dir, "/run/cohort");
	cr_assert_str_eq(c->state_dir, "/var/lib/cohort");
	cr_assert_str_eq(c->log_dir, "/var/log/cohort");
	cr_assert_eq(c->include.n, 1);
	cr_assert_str_eq(c->include.v[0], "conf.d/*.ini");
	cr_assert_eq(c->control_mode, 0600);
	cr_assert_null(c->control_group);
	cr_assert_eq(c->bus_mode, 0666);
	cr_assert_null(c->bus_listen);
	cr_assert_eq(c->bus_fsync, FSYNC_BATCH);
	cr_assert_eq(c->bus_max_message, 1 << 20);
	cr_assert_eq(c->shutdown_timeout_ms, 30000);

	cr_assert_not_null(s);
	cr_assert_str_eq(s->command, "/bin/true");
	cr_assert_eq(s->argv.n, 1);
	cr_assert_eq(s->shell, false);
	cr_assert_str_eq(s->directory, th_tmpdir());	/* the file's directory */
	cr_assert_eq(s->environment.n, 0);
	cr_assert_null(s->user);
	cr_assert_null(s->group);
	cr_assert_eq(s->umask, -1);	/* cohortd's own */
	cr_assert(s->autostart);
	cr_assert_eq(s->requires.n + s->after.n, 0);
	cr_assert_eq(s->phase, 0);
	cr_assert_eq(s->ready.kind, CHECK_DELAY);
	cr_assert_eq(s->ready.delay_ms, 1000);
	cr_assert_eq(s->ready_timeout_ms, 60000);
	cr_assert_eq(s->rare->health.kind, CHECK_NONE);
	cr_assert_eq(s->rare->health_interval_ms, 10000);
	cr_assert_eq(s->rare->health_timeout_ms, 2000);
	cr_assert_eq(s->rare->health_retries, 3);
	cr_assert_eq(s->restart, RESTART_ALWAYS);
	cr_assert(exit_is_success(s, 0));
	cr_assert(!exit_is_success(s, 1));
	cr_assert_eq(s->backoff_initial_ms, 1000);
	cr_assert_float_eq(s->backoff_factor, 2.0, 1e-9);
	cr_assert_eq(s->backoff_max_ms, 60000);
	cr_assert_float_eq(s->backoff_jitter, 0.1, 1e-9);
	cr_assert_eq(s->backoff_reset_ms, 30000);
	cr_assert_eq(s->breaker_failures, 5);
	cr_assert_eq(s->breaker_window_ms, 60000);
	cr_assert_eq(s->breaker_cooldown_ms, 120000);
	cr_assert_eq(s->stop_signal, SIGTERM);
	cr_assert_eq(s->stop_timeout_ms, 10000);
	cr_assert_eq(s->out.kind, OUT_LOG);
	cr_assert_eq(s->err.kind, OUT_STDOUT);
	cr_assert_eq(s->rare->log_max_size, 10 << 20);
	cr_assert_eq(s->rare->log_backups, 5);
	cr_assert_str_eq(s->rare->locks.v[0], "*");
	cr_assert_str_eq(s->rare->publish.v[0], ">");
	cr_assert_str_eq(s->rare->subscribe.v[0], ">");
	config_free(c);
}

/* A number's default is parsed once and copied (key_parse_default): a
 * value one service sets must not become the next one's default, in the
 * same load or the next. */
Test(config, a_set_value_is_not_the_next_default)
{
	for (int load = 0; load < 2; load++) {
		struct cohort_config *c = good("[service:a]\ncommand = /bin/true\nbackoff_factor = 3\n"
					       "stop_timeout = 2s\nlimit_nofile = 64:128\nnice = 5\n"
					       "[service:b]\ncommand = /bin/true\n");
		struct svc_config *a = config_find(c, "a"), *b = config_find(c, "b");

		cr_assert_float_eq(a->backoff_factor, 3.0, 1e-9);
		cr_assert_eq(a->stop_timeout_ms, 2000);
		cr_assert(a->rare->limit_nofile.set);
		cr_assert_eq(a->rare->nice, 5);
		cr_assert_float_eq(b->backoff_factor, 2.0, 1e-9);
		cr_assert_eq(b->stop_timeout_ms, 10000);
		cr_assert_not(b->rare->limit_nofile.set);
		cr_assert_eq(b->rare->nice, SVC_INT_UNSET);
		config_free(c);
	}
}

Test(config, every_key_set)
{
	struct cohort_config *c = good(
		"[cohort]\n"
		"run_dir = run\n"
		"state_dir = /var/tmp/st\n"
		"log_dir = logs\n"
		"include = a/*.ini, b/*.ini\n"
		"control_mode = 0660\n"
		"control_group = adm\n"
		"bus_mode = 0600\n"
		"bus_listen = 127.0.0.1:7420\n"
		"bus_fsync = always\n"
		"bus_max_message = 64K\n"
		"shutdown_timeout = 5s\n"
		"\n"
		"[service:db]\n"
		"command = /bin/true\n"
		"[service:jarvis]\n"
		"command = python3 -m jarvis --port 8010   ; split like a shell\n"
		"shell = no\n"
		"directory = /opt/jarvis\n"
		"environment = JARVIS_MODE=prod, LOG_LEVEL = info, LIST=a\\,b\n"
		"user = nobody\n"
		"group = nogroup\n"
		"umask = 027\n"
		"autostart = off\n"
		"requires = db\n"
		"after = db\n"
		"phase = 4\n"
		"ready = http://127.0.0.1:8010/health\n"
		"ready_timeout = 90s\n"
		"health = tcp:127.0.0.1:8010\n"
		"health_interval = 5s\n"
		"health_timeout = 500ms\n"
		"health_retries = 2\n"
		"restart = on-failure\n"
		"success_exit = 0, 3, 255\n"
		"backoff_initial = 250ms\n"
		"backoff_factor = 1.5\n"
		"backoff_max = 10s\n"
		"backoff_jitter = 0\n"
		"backoff_reset = 1m\n"
		"breaker_failures = 0\n"
		"breaker_window = 2m\n"
		"breaker_cooldown = 30s\n"
		"stop_signal = SIGINT\n"
		"stop_timeout = 3s\n"
		"stdout = out/jarvis.out\n"
		"stderr = null\n"
		"log_max_size = 512K\n"
		"log_backups = 0\n"
		"locks = jarvis.*, db:?\n"
		"publish = jarvis.>, stack.state\n"
		"subscribe = *.events, $dead.>\n");
	struct svc_config *s = config_find(c, "jarvis");
	char *expect;

	expect = xasprintf("%s/run", th_tmpdir());
	cr_assert_str_eq(c->run_dir, expect);	/* relative to the file */
	free(expect);
	cr_assert_str_eq(c->state_dir, "/var/tmp/st");
	cr_assert_eq(c->include.n, 2);
	cr_assert_eq(c->control_mode, 0660);
	cr_assert_str_eq(c->control_group, "adm");
	cr_assert_eq(c->bus_mode, 0600);
	cr_assert_str_eq(c->bus_listen, "127.0.0.1:7420");
	cr_assert_eq(c->bus_fsync, FSYNC_ALWAYS);
	cr_assert_eq(c->bus_max_message, 65536);
	cr_assert_eq(c->shutdown_timeout_ms, 5000);

	cr_assert_eq(s->argv.n, 5);
	cr_assert_str_eq(s->argv.v[4], "8010");
	cr_assert_str_eq(s->directory, "/opt/jarvis");
	cr_assert_eq(s->environment.n, 3);
	cr_assert_str_eq(s->environment.v[0], "JARVIS_MODE=prod");
	cr_assert_str_eq(s->environment.v[1], "LOG_LEVEL=info");
	cr_assert_str_eq(s->environment.v[2], "LIST=a,b");
	cr_assert_str_eq(s->user, "nobody");
	cr_assert_str_eq(s->group, "nogroup");
	cr_assert_eq(s->umask, 027);
	cr_assert(!s->autostart);
	cr_assert_str_eq(s->requires.v[0], "db");
	cr_assert_str_eq(s->after.v[0], "db");
	cr_assert_eq(s->phase, 4);
	cr_assert_eq(s->ready.kind, CHECK_HTTP);
	cr_assert_str_eq(s->ready.to->host, "127.0.0.1");
	cr_assert_str_eq(s->ready.to->port, "8010");
	cr_assert_str_eq(s->ready.to->path, "/health");
	cr_assert_eq(s->ready_timeout_ms, 90000);
	cr_assert_eq(s->rare->health.kind, CHECK_TCP);
	cr_assert_eq(s->rare->health_interval_ms, 5000);
	cr_assert_eq(s->rare->health_timeout_ms, 500);
	cr_assert_eq(s->rare->health_retries, 2);
	cr_assert_eq(s->restart, RESTART_ON_FAILURE);
	cr_assert(exit_is_success(s, 0) && exit_is_success(s, 3) && exit_is_success(s, 255));
	cr_assert(!exit_is_success(s, 1));
	cr_assert_eq(s->backoff_initial_ms, 250);
	cr_assert_float_eq(s->backoff_factor, 1.5, 1e-9);
	cr_assert_eq(s->backoff_max_ms, 10000);
	cr_assert_float_eq(s->backoff_jitter, 0.0, 1e-9);
	cr_assert_eq(s->backoff_reset_ms, 60000);
	cr_assert_eq(s->breaker_failures, 0);
	cr_assert_eq(s->breaker_window_ms, 120000);
	cr_assert_eq(s->breaker_cooldown_ms, 30000);
	cr_assert_eq(s->stop_signal, SIGINT);
	cr_assert_eq(s->stop_timeout_ms, 3000);
	cr_assert_eq(s->out.kind, OUT_PATH);
	expect = xasprintf("%s/out/jarvis.out", th_tmpdir());
	cr_assert_str_eq(s->out.path, expect);
	free(expect);
	cr_assert_eq(s->err.kind, OUT_NULL);
	cr_assert_eq(s->rare->log_max_size, 512 * 1024);
	cr_assert_eq(s->rare->log_backups, 0);
	cr_assert_eq(s->rare->locks.n, 2);
	cr_assert_str_eq(s->rare->publish.v[1], "stack.state");
	cr_assert_str_eq(s->rare->subscribe.v[1], "$dead.>");
	config_free(c);
}

Test(config, ready_and_health_kinds)
{
	struct cohort_config *c = good(
		"[service:a]\ncommand = x\nready = notify\n"
		"[service:b]\ncommand = x\nready = delay:250ms\n"
		"[service:c]\ncommand = x\nready = tcp:[::1]:80\nhealth = http://localhost:8080\n"
		"[service:d]\ncommand = x\nready = exec:test -f '/tmp/a b'\nhealth = exec:true\n");

	cr_assert_eq(config_find(c, "a")->ready.kind, CHECK_NOTIFY);
	cr_assert_eq(config_find(c, "b")->ready.delay_ms, 250);
	cr_assert_str_eq(config_find(c, "c")->ready.to->host, "::1");
	cr_assert_str_eq(config_find(c, "c")->rare->health.to->path, "/");
	cr_assert_eq(config_find(c, "d")->ready.to->argv.n, 3);
	cr_assert_str_eq(config_find(c, "d")->ready.to->argv.v[2], "/tmp/a b");
	cr_assert_eq(config_find(c, "d")->rare->health.kind, CHECK_EXEC);
	config_free(c);
}

Test(config, shell_yes_runs_sh)
{
	struct cohort_config *c = good("[service:a]\ncommand = echo $HOME | tr a b\nshell = yes\n");
	struct svc_config *s = config_find(c, "a");

	cr_assert_eq(s->argv.n, 3);
	cr_assert_str_eq(s->argv.v[0], "/bin/sh");
	cr_assert_str_eq(s->argv.v[1], "-c");
	cr_assert_str_eq(s->argv.v[2], "echo $HOME | tr a b");
	config_free(c);
}

Test(config, no_shell_means_no_expansion)
{
	struct cohort_config *c = good("[service:a]\ncommand = echo $HOME '*' \"a b\"\n");
	struct svc_config *s = config_find(c, "a");

	cr_assert_eq(s->argv.n, 4);
	cr_assert_str_eq(s->argv.v[1], "$HOME");
	cr_assert_str_eq(s->argv.v[2], "*");
	cr_assert_str_eq(s->argv.v[3], "a b");
	config_free(c);
}

Test(config, multiline_values_are_joined)
{
	struct cohort_config *c = good(
		"[service:a]\n"
		"command = python3 -m something\n"
		"    --flag one\n"
		"\t--other 'two three'\n"
		"environment = A=1,\n"
		"   B=2,\n"
		"   C=3\n"
		"restart = never\n");
	struct svc_config *s = config_find(c, "a");

	cr_assert_str_eq(s->command, "python3 -m something --flag one --other 'two three'");
	cr_assert_eq(s->argv.n, 7);
	cr_assert_str_eq(s->argv.v[6], "two three");
	cr_assert_eq(s->environment.n, 3);
	cr_assert_str_eq(s->environment.v[2], "C=3");
	cr_assert_eq(s->restart, RESTART_NEVER);
	config_free(c);
}

Test(config, long_value_through_continuation)
{
	struct sbuf b = {0};

	sbuf_adds(&b, "[service:a]\ncommand = /bin/echo\n");
	for (int i = 0; i < 40; i++)
		sbuf_adds(&b, "    0123456789012345678901234567890123456789012345678901234567890123456789\n");
	struct cohort_config *c = good(b.buf);
	cr_assert_eq(config_find(c, "a")->argv.n, 41);
	config_free(c);
	sbuf_free(&b);
}

Test(config, comments_blank_lines_bom_crlf)
{
	struct cohort_config *c = good(
		"\xEF\xBB\xBF; a comment\r\n"
		"# another\r\n"
		"\r\n"
		"[service:a]   ; trailing comment\r\n"
		"command = /bin/true ; inline\r\n"
		"  ; indented comment\r\n");

	cr_assert_str_eq(config_find(c, "a")->command, "/bin/true");
	config_free(c);
}

Test(config, colon_separator_works_like_inih)
{
	struct cohort_config *c = good("[service:a]\ncommand: /bin/true\n");

	cr_assert_str_eq(config_find(c, "a")->command, "/bin/true");
	config_free(c);
}

Test(config, unknown_key_with_suggestion)
{
	bad("[service:jarvis]\ncommand = x\ncomand = y\n",
	    "cohort.ini:3: [service:jarvis]: unknown key \"comand\" (did you mean \"command\"?)");
	bad("[cohort]\nrun_dri = /x\n[service:a]\ncommand = x\n",
	    "cohort.ini:2: [cohort]: unknown key \"run_dri\" (did you mean \"run_dir\"?)");
	bad("[service:a]\ncommand = x\nwhatever = 1\n",
	    "cohort.ini:3: [service:a]: unknown key \"whatever\"");
	bad("[cohort]\ncommand = x\n[service:a]\ncommand = x\n",
	    "cohort.ini:2: [cohort]: unknown key \"command\" (it belongs in a [service:NAME] section)");
}

Test(config, supervisord_and_systemd_keys_say_what_to_use)
{
	struct {
		const char *line;
		const char *want;
	} cases[] = {
		{"numprocs = 4", "unknown key \"numprocs\" (use instances = N: the services NAME@0 to "
				 "NAME@N-1, with %i for the number"},
		{"priority = 10", "unknown key \"priority\" (the start order comes from requires and after"},
		{"startsecs = 2", "unknown key \"startsecs\" (use ready = delay:DURATION; startsecs = 2 is "
				  "ready = delay:2s)"},
		{"startretries = 3", "unknown key \"startretries\" (restarts back off (backoff_initial"},
		{"autorestart = unexpected", "unknown key \"autorestart\" (use restart; true is always, "
					     "unexpected is on-failure, false is never)"},
		{"exitcodes = 0,2", "unknown key \"exitcodes\" (use success_exit)"},
		{"stopsignal = INT", "unknown key \"stopsignal\" (use stop_signal)"},
		{"stopwaitsecs = 10", "unknown key \"stopwaitsecs\" (use stop_timeout; stopwaitsecs = 10 is "
				      "stop_timeout = 10s)"},
		{"stopasgroup = true", "unknown key \"stopasgroup\" (not needed: cohort always signals the whole process group)"},
		{"redirect_stderr = true", "unknown key \"redirect_stderr\" (use stderr = stdout (the default))"},
		{"stdout_logfile = /var/log/a.log", "unknown key \"stdout_logfile\" (use stdout = PATH"},
		{"ExecStart = /usr/bin/app -x", "unknown key \"ExecStart\" (use command; ExecStart=/usr/bin/app -x "
						"is command = /usr/bin/app -x)"},
		{"Restart = on-failure", "unknown key \"Restart\" (use restart = always, on-failure or never)"},
		{"RestartSec = 5", "unknown key \"RestartSec\" (use backoff_initial; RestartSec=5 is "
				   "backoff_initial = 5s"},
		{"After = db.service", "unknown key \"After\" (use after with service names; After=db.service "
				       "is after = db)"},
		{"Requires = db.service", "unknown key \"Requires\" (use requires with service names"},
		{"User = www-data", "unknown key \"User\" (use user)"},
		{"WorkingDirectory = /srv", "unknown key \"WorkingDirectory\" (use directory)"},
		{"Environment = A=1", "unknown key \"Environment\" (use environment = NAME=VALUE"},
		{"Type = notify", "unknown key \"Type\" (Type=notify is ready = notify;"},
		{"execstart = /bin/x", "unknown key \"execstart\" (use command;"},	/* any case */
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		char *text = xasprintf("[service:a]\ncommand = x\n%s\n", cases[i].line);
		char *want = xasprintf("cohort.ini:3: [service:a]: %s", cases[i].want);
		bad(text, want);
		free(want);
		free(text);
	}
	/* Only in a service: [cohort] has no such keys to point to. */
	config_free(th_load("[cohort]\nstartsecs = 2\n[service:a]\ncommand = x\n", &d));
	cr_assert(th_diag_has(&d, "cohort.ini:2: [cohort]: unknown key \"startsecs\""), "%s", th_diag_text(&d));
	cr_assert(!th_diag_has(&d, "delay"), "%s", th_diag_text(&d));
}

Test(config, supervisord_and_systemd_sections_say_what_to_use)
{
	bad("[program:web]\ncommand = x\n[service:b]\ncommand = y\n",
	    "cohort.ini:1: unknown section [program:web] (supervisord's [program:NAME] is [service:NAME] here)");
	bad("[supervisord]\n[service:b]\ncommand = y\n",
	    "cohort.ini:1: unknown section [supervisord] (cohortd's own settings go in [cohort])");
	bad("[Service]\nExecStart = /bin/x\n[service:b]\ncommand = y\n",
	    "cohort.ini:1: unknown section [Service] (a unit's keys go in one [service:NAME] section)");
	bad("[Unit]\n[service:b]\ncommand = y\n", "cohort.ini:1: unknown section [Unit] (a unit's keys go in");
}

Test(config, environment_quoted_as_supervisord_writes_it)
{
	struct cohort_config *c = good(
		"[service:a]\ncommand = x\n"
		"environment = A=\"bar\", B=\"value, with comma\",C='x, \"y\"', D=\"say \\\"hi\\\" \\\\o/\",\n"
		"    E=plain,F = \" padded \" ,G=\"\",H=it's,I=a\\,b,J=\"a\\,b\",K=x=y\n");
	const struct strv *e = &config_find(c, "a")->environment;
	const char *want[] = {"A=bar", "B=value, with comma", "C=x, \"y\"", "D=say \"hi\" \\o/",
			      "E=plain", "F= padded ", "G=", "H=it's", "I=a,b", "J=a\\,b", "K=x=y"};

	cr_assert_eq(e->n, ARRAY_LEN(want), "%zu items", e->n);
	for (size_t i = 0; i < ARRAY_LEN(want); i++)
		cr_assert_str_eq(e->v[i], want[i]);
	config_free(c);

	bad("[service:a]\ncommand = x\nenvironment = A=\"open, B=1\n",
	    "cohort.ini:3: [service:a]: environment = \"A=\"open, B=1\": A: the value's opening \" has no "
	    "closing one");
	bad("[service:a]\ncommand = x\nenvironment = A='x' y\n",
	    "cohort.ini:3: [service:a]: environment = \"A='x' y\": A: text after the closing ' "
	    "(quote the whole value)");
	bad("[service:a]\ncommand = x\nenvironment = A=1, \"B\"=2\n",
	    "expected NAME=VALUE items, got \"\"B\"=2\"");
}

Test(config, umask_is_octal)
{
	struct cohort_config *c = good("[service:a]\ncommand = x\numask = 022\n"
				       "[service:b]\ncommand = x\numask = 0\n"
				       "[service:c]\ncommand = x\numask = 77\n"
				       "[service:d]\ncommand = x\numask = 0777\n");
	cr_assert_eq(config_find(c, "a")->umask, 022);
	cr_assert_eq(config_find(c, "b")->umask, 0);
	cr_assert_eq(config_find(c, "c")->umask, 077);
	cr_assert_eq(config_find(c, "d")->umask, 0777);
	config_free(c);
	const char *bads[] = {"8", "0o27", "1777", "u=rwx", "-1", "00777"};
	for (size_t i = 0; i < ARRAY_LEN(bads); i++) {
		char *text = xasprintf("[service:a]\ncommand = x\n\numask = %s\n", bads[i]);
		char *want = xasprintf("cohort.ini:4: [service:a]: umask = \"%s\": expected an octal umask "
				       "from 000 to 777, such as 022 or 027, or nothing", bads[i]);
		bad(text, want);
		free(want);
		free(text);
	}
}

Test(config, unknown_section_with_suggestion)
{
	bad("[servce:a]\ncommand = x\n[service:b]\ncommand = y\n",
	    "cohort.ini:1: unknown section [servce:a] (did you mean [service:a]?)");
	bad("[cohrt]\n[service:b]\ncommand = y\n",
	    "cohort.ini:1: unknown section [cohrt] (did you mean [cohort]?)");
	bad("[zzzzzzzzzzzz]\n[service:b]\ncommand = y\n",
	    "cohort.ini:1: unknown section [zzzzzzzzzzzz] (expected [cohort] or [service:NAME])");
	bad("[service:b\ncommand = y\n", "cohort.ini:1: section header is missing \"]\"");
}

Test(config, bad_values_say_what_was_expected)
{
	struct {
		const char *line;
		const char *want;
	} cases[] = {
		{"restart = sometimes", "restart = \"sometimes\": expected always, on-failure or never"},
		{"shell = maybe", "shell = \"maybe\": expected yes/no"},
		{"stop_timeout = soon", "stop_timeout = \"soon\": expected a duration"},
		{"log_max_size = big", "log_max_size = \"big\": expected a size"},
		{"health_retries = 0", "expected a whole number from 1"},
		{"phase = 0", "expected a phase number"},
		{"backoff_factor = 0.5", "expected a number from 1 to 100"},
		{"backoff_jitter = 2", "expected a number from 0 to 1"},
		{"success_exit = 0, 300", "expected exit codes 0-255, got \"300\""},
		{"stop_signal = SIGFOO", "expected a signal name"},
		{"ready = maybe", "expected notify, delay:DURATION"},
		{"ready = delay:x", "delay: expects a duration"},
		{"ready = tcp:localhost", "expected notify"},
		{"ready = tcp:localhost:99999", "expected notify"},
		{"ready = exec:", "exec: expects a command"},
		{"ready = exec:'x", "exec: unterminated single quote"},
		{"health = notify", "expected tcp:HOST:PORT"},
		{"stdout = lgo", "(did you mean \"log\"?)"},
		{"stderr = sdtout", "(did you mean \"stdout\"?)"},
		{"environment = 1A=x", "expected NAME=VALUE items, got \"1A=x\""},
		{"environment = novalue", "expected NAME=VALUE items"},
		{"requires = bad name!", "is not a service name"},
		{"locks = a b", "is not a lock name pattern"},
		{"publish = a..b", "is not a topic pattern"},
		{"subscribe = >.a", "is not a topic pattern"},
		{"command = echo 'open", "[service:a]: command: unterminated single quote"},
		{"command = ''", "command: no program to run"},
		{"command =", "command is empty"},
		{"ready = delay:70s", "cohort.ini:3: [service:a]: ready = delay:1m10s is not shorter than "
				      "ready_timeout (1m): it could never be ready"},
		{"ready = delay:2s\nready_timeout = 2s", "ready = delay:2s is not shorter than ready_timeout (2s)"},
		{"health = exec:true\nhealth_interval = 0", "cohort.ini:4: [service:a]: health_interval = 0ms: "
							 "probes would run without a pause; give at least 10ms"},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		char *text = xasprintf("[service:a]\n%s%s\n", strstr(cases[i].line, "command") == cases[i].line
					? "" : "command = x\n", cases[i].line);
		bad(text, cases[i].want);
		free(text);
	}
	bad("[cohort]\nbus_fsync = sometimes\n[service:a]\ncommand = x\n",
	    "cohort.ini:2: [cohort]: bus_fsync = \"sometimes\": expected always, batch or never");
	bad("[cohort]\ncontrol_mode = 999\n[service:a]\ncommand = x\n", "expected an octal file mode");
	bad("[cohort]\nbus_listen = 7420\n[service:a]\ncommand = x\n", "expected HOST:PORT");
	bad("[cohort]\nbus_max_message = 17M\n[service:a]\ncommand = x\n",
	    "cohort.ini:2: [cohort]: bus_max_message = \"17M\": expected a size from 1K to 16M");
	bad("[cohort]\nbus_max_message = 100\n[service:a]\ncommand = x\n", "expected a size from 1K to 16M");
	struct cohort_config *c = good("[cohort]\nbus_max_message = 16M\n[service:a]\ncommand = x\n");
	cr_assert_eq(c->bus_max_message, 16u << 20);
	config_free(c);
}

Test(config, bad_value_names_file_and_line)
{
	bad("[service:a]\ncommand = x\n\n\nrestart = sometimes\n", "cohort.ini:5: [service:a]: restart");
}

Test(config, duplicate_key)
{
	bad("[service:a]\ncommand = x\nrestart = never\nrestart = always\n",
	    "cohort.ini:4: [service:a]: duplicate key \"restart\" (first set on line 3)");
	bad("[cohort]\nrun_dir = /a\n[service:a]\ncommand = x\n[cohort]\nrun_dir = /b\n",
	    "cohort.ini:6: [cohort]: duplicate key \"run_dir\" (first set on line 2)");
}

Test(config, duplicate_service_same_file)
{
	bad("[service:a]\ncommand = x\n[service:a]\ncommand = y\n",
	    "cohort.ini:3: duplicate service \"a\" (first defined at ");
	bad("[service:a]\ncommand = x\n[service:a]\ncommand = y\n", "cohort.ini:1)");
}

Test(config, missing_command)
{
	bad("[service:a]\nrestart = never\n", "cohort.ini:1: [service:a]: missing \"command\"");
}

Test(config, key_outside_any_section)
{
	bad("command = x\n[service:a]\ncommand = y\n",
	    "cohort.ini:1: key \"command\" outside any section");
}

Test(config, line_without_equals)
{
	bad("[service:a]\ncommand = x\njust some words\n",
	    "cohort.ini:3: expected KEY = VALUE, a [section] or a comment, got \"just some words\"");
	bad("[service:a]\ncommand = x\nfoo ; = bar\n", "cohort.ini:3: expected KEY = VALUE");
	bad("[service:a]\ncommand = x\n= bar\n", "cohort.ini:3: [service:a]: missing key name");
}

Test(config, service_names)
{
	cr_assert(svc_name_valid("a"));
	cr_assert(svc_name_valid("web-1.prod_x"));
	cr_assert(!svc_name_valid(""));
	cr_assert(!svc_name_valid("has space"));
	cr_assert(!svc_name_valid("a/b"));
	char long_name[66];
	memset(long_name, 'x', 65);
	long_name[65] = '\0';
	cr_assert(!svc_name_valid(long_name));
	long_name[64] = '\0';
	cr_assert(svc_name_valid(long_name));
	bad("[service:bad name]\ncommand = x\n", "cohort.ini:1: [service:bad name]: bad service name");
	bad("[service:]\ncommand = x\n", "bad service name \"\"");
}

Test(config, overlong_line_is_reported)
{
	struct sbuf b = {0};

	sbuf_adds(&b, "[service:a]\ncommand = x\n\n\n\n\nenvironment = A=");
	for (int i = 0; i < 200; i++)
		sbuf_addc(&b, 'x');
	sbuf_adds(&b, "\n");
	bad(b.buf, "cohort.ini:7: line longer than 199 characters; continue the value on an indented next line");
	sbuf_free(&b);
}

Test(config, line_of_exactly_199_is_fine)
{
	struct sbuf b = {0};

	sbuf_adds(&b, "[service:a]\ncommand = /bin/");
	while (b.len - 12 < 199)
		sbuf_addc(&b, 'y');
	sbuf_adds(&b, "\n");
	struct cohort_config *c = good(b.buf);
	cr_assert_eq(strlen(config_find(c, "a")->command), 199 - 10);
	config_free(c);
	sbuf_free(&b);
}

Test(config, every_error_not_only_the_first)
{
	struct cohort_config *c = th_load(
		"[service:a]\ncomand = x\nrestart = often\n[servce:b]\n[service:c]\ncommand = y\nphase = -1\n", &d);

	cr_assert_eq(d.count, 5, "%s", th_diag_text(&d));	/* unknown key, missing command, bad restart, unknown section, bad phase */
	cr_assert(th_diag_has(&d, "cohort.ini:2:"));
	cr_assert(th_diag_has(&d, "cohort.ini:3:"));
	cr_assert(th_diag_has(&d, "cohort.ini:4:"));
	cr_assert(th_diag_has(&d, "cohort.ini:7:"));
	config_free(c);
}

Test(config, includes_sorted_and_relative)
{
	th_cleanup();
	th_write("conf.d/20-b.ini", "[service:b]\ncommand = y\n");
	th_write("conf.d/10-a.ini", "[service:a]\ncommand = x\ndirectory = data\n");
	th_write("conf.d/notes.txt", "not ini\n");
	const char *main_path = th_write("cohort.ini", "[service:main]\ncommand = z\n");
	struct cohort_config *c = config_load(main_path, &d);

	cr_assert_eq(d.count, 0, "%s", th_diag_text(&d));
	cr_assert_eq(c->nservices, 3);
	cr_assert_str_eq(c->services[0]->name, "main");
	cr_assert_str_eq(c->services[1]->name, "a");
	cr_assert_str_eq(c->services[2]->name, "b");
	char *dir = xasprintf("%s/conf.d/data", th_tmpdir());
	cr_assert_str_eq(config_find(c, "a")->directory, dir);
	free(dir);
	config_free(c);
}

Test(config, duplicate_service_across_files_names_both)
{
	th_cleanup();
	th_write("conf.d/x.ini", "\n[service:a]\ncommand = y\n");
	const char *main_path = th_write("cohort.ini", "[service:a]\ncommand = x\n");
	struct cohort_config *c = config_load(main_path, &d);

	cr_assert_eq(d.count, 1);
	cr_assert(th_diag_has(&d, "conf.d/x.ini:2: duplicate service \"a\" (first defined at "),
		  "%s", th_diag_text(&d));
	cr_assert(th_diag_has(&d, "cohort.ini:1)"), "%s", th_diag_text(&d));
	config_free(c);
}

Test(config, include_matching_nothing_is_fine)
{
	struct cohort_config *c = good("[cohort]\ninclude = nowhere/*.ini\n[service:a]\ncommand = x\n");

	cr_assert_eq(c->nservices, 1);
	config_free(c);
}

Test(config, include_of_itself_is_an_error)
{
	bad("[cohort]\ninclude = *.ini\n[service:a]\ncommand = x\n",
	    "cohort.ini:2: [cohort]: include \"*.ini\" matches the main config file itself");
}

Test(config, cohort_section_only_in_main_file)
{
	th_cleanup();
	th_write("conf.d/x.ini", "[cohort]\nrun_dir = /x\n[service:b]\ncommand = y\n");
	const char *main_path = th_write("cohort.ini", "[service:a]\ncommand = x\n");
	struct cohort_config *c = config_load(main_path, &d);

	cr_assert(th_diag_has(&d, "x.ini:1: [cohort] belongs in the main config file only"),
		  "%s", th_diag_text(&d));
	cr_assert_not_null(config_find(c, "b"));
	config_free(c);
}

Test(config, missing_file)
{
	struct cohort_config *c = config_load("/nonexistent/cohort.ini", &d);

	cr_assert_null(c);
	cr_assert(th_diag_has(&d, "/nonexistent/cohort.ini: cannot open: No such file or directory"));
}

Test(config, directory_instead_of_file)
{
	struct cohort_config *c = config_load(th_tmpdir(), &d);

	cr_assert_null(c);
	cr_assert(th_diag_has(&d, "is a directory, not a config file"));
}

Test(config, empty_file)
{
	bad("", "no [service:NAME] sections: nothing to supervise");
}

Test(config, binary_garbage)
{
	struct sbuf b = {0};
	unsigned x = 12345;

	for (int i = 0; i < 20000; i++) {
		x = x * 1103515245 + 12345;
		sbuf_addc(&b, (char)(x >> 16));
	}
	th_cleanup();
	const char *path = th_write("cohort.ini", "");
	FILE *f = fopen(path, "wb");
	fwrite(b.buf, 1, b.len, f);
	fclose(f);
	struct cohort_config *c = config_load(path, &d);
	cr_assert_gt(d.count, 0);
	cr_assert_leq(d.lines.n, 100);	/* capped, the rest counted */
	config_free(c);
	sbuf_free(&b);
}

Test(config, nul_byte)
{
	th_cleanup();
	const char *path = th_write("cohort.ini", "");
	FILE *f = fopen(path, "wb");
	fwrite("[service:a]\ncommand = x\0y\n", 1, 26, f);
	fclose(f);
	struct cohort_config *c = config_load(path, &d);
	cr_assert(th_diag_has(&d, "cohort.ini:2: line contains a NUL byte"), "%s", th_diag_text(&d));
	config_free(c);
}

Test(config, ten_thousand_lines)
{
	struct sbuf b = {0};

	for (int i = 0; i < 2500; i++)
		sbuf_addf(&b, "[service:s%d]\ncommand = /bin/true %d\n; comment\n\n", i, i);
	struct cohort_config *c = good(b.buf);
	cr_assert_eq(c->nservices, 2500);
	cr_assert_str_eq(c->services[2499]->name, "s2499");
	config_free(c);
	sbuf_free(&b);
}

Test(config, ten_thousand_services)
{
	struct sbuf b = {0};

	for (int i = 0; i < 10000; i++)
		sbuf_addf(&b, "[service:s%d]\ncommand = /bin/true\n", i);
	struct cohort_config *c = good(b.buf);
	cr_assert_eq(c->nservices, 10000);
	cr_assert_not_null(config_find(c, "s9999"));
	config_free(c);
	sbuf_free(&b);
}

Test(config, line_of_5000_characters)
{
	struct sbuf b = {0};

	sbuf_adds(&b, "[service:a]\ncommand = x\nenvironment = A=");
	for (int i = 0; i < 5000; i++)
		sbuf_addc(&b, 'q');
	sbuf_adds(&b, "\nrestart = never\n");
	struct cohort_config *c = th_load(b.buf, &d);
	cr_assert_eq(d.count, 1, "%s", th_diag_text(&d));
	cr_assert(th_diag_has(&d, "cohort.ini:3: line longer than 199 characters"));
	/* the lines after it are still read */
	cr_assert_eq(config_find(c, "a")->restart, RESTART_NEVER);
	config_free(c);
	sbuf_free(&b);
}

Test(config, equal_detects_changes)
{
	struct diag d2 = {0};
	const char *path;

	th_cleanup();
	path = th_write("a.ini", "[service:x]\ncommand = a\n[service:y]\ncommand = b\n");
	struct cohort_config *a = config_load(path, &d);
	path = th_write("b.ini", "[service:x]\ncommand = a\n\n[service:y]\ncommand = b\nrestart = never\n");
	struct cohort_config *b = config_load(path, &d2);

	cr_assert_eq(d.count + d2.count, 0);
	cr_assert(svc_config_equal(config_find(a, "x"), config_find(b, "x")));
	cr_assert(!svc_config_equal(config_find(a, "y"), config_find(b, "y")));
	config_free(a);
	config_free(b);
	diag_free(&d2);
}

Test(config, key_table_defaults_all_parse)
{
	/* Every default in the table parses (the man page prints them). */
	struct parse_ctx ctx = {.dir = "/"};
	struct sbuf why = {0};
	union {
		char buf[256];
		struct strv sv;
		struct check ck;
	} field;

	for (size_t i = 0; i < config_nkeys; i++) {
		memset(&field, 0, sizeof(field));
		cr_assert_eq(key_parse(&config_keys[i], &ctx, config_keys[i].def, &field, &why), 0,
			     "%s: %s", config_keys[i].name, why.buf);
		key_free(&config_keys[i], &field);
	}
	sbuf_free(&why);
}

Test(config, topic_and_lock_names)
{
	cr_assert(topic_pattern_valid("a.b.c", false));
	cr_assert(topic_pattern_valid("a.*.c", true));
	cr_assert(topic_pattern_valid("a.>", true));
	cr_assert(topic_pattern_valid("$dead.a", false));
	cr_assert(!topic_pattern_valid("a.*", false));
	cr_assert(!topic_pattern_valid("a.>.b", true));
	cr_assert(!topic_pattern_valid("a..b", true));
	cr_assert(!topic_pattern_valid("", true));
	cr_assert(!topic_pattern_valid("a b", true));
	cr_assert(!topic_pattern_valid("a.", true));
	cr_assert(!topic_pattern_valid("$", true));
	cr_assert(lock_name_valid("db:users/1-2_x.y"));
	cr_assert(!lock_name_valid(""));
	cr_assert(!lock_name_valid("a b"));
	cr_assert(!lock_name_valid("a*"));
	cr_assert(lock_pattern_valid("db.*"));
}

Test(config, man_page_lists_every_key_with_its_default)
{
	char *path = xasprintf("%s/doc/cohort.ini.5", th_srcdir());
	FILE *f = fopen(path, "r");
	struct sbuf man = {0};
	char line[1024];

	cr_assert_not_null(f, "%s", path);
	while (fgets(line, sizeof(line), f))
		sbuf_adds(&man, line);
	fclose(f);
	for (size_t i = 0; i < config_nkeys; i++) {
		const struct key_def *k = &config_keys[i];
		char *entry = xasprintf(".TP\n.B %s\n", k->name);
		const char *at = strstr(man.buf, entry);
		cr_assert_not_null(at, "doc/cohort.ini.5 does not describe \"%s\"", k->name);
		const char *def = strstr(at, "Default: ");
		cr_assert_not_null(def);
		def += 9;
		if (*k->def)
			cr_assert(strncmp(def, k->def, strlen(k->def)) == 0 && def[strlen(k->def)] == '\n',
				  "%s: man page default differs from \"%s\"", k->name, k->def);
		else
			cr_assert(str_starts(def, "empty") || str_starts(def, "none") || str_starts(def, "the "),
				  "%s: man page should say the default is empty", k->name);
		free(entry);
	}
	sbuf_free(&man);
	free(path);
}

/* What a reload does with each key is documented from the key table's
 * own column: "Reload: live" or "Reload: restart" after its default. */
Test(config, man_page_says_what_a_reload_does_with_every_key)
{
	char *path = xasprintf("%s/doc/cohort.ini.5", th_srcdir());
	FILE *f = fopen(path, "r");
	struct sbuf man = {0};
	char line[1024];

	cr_assert_not_null(f, "%s", path);
	while (fgets(line, sizeof(line), f))
		sbuf_adds(&man, line);
	fclose(f);
	/* The [service:NAME] keys come after the [cohort] ones. */
	const char *services = strstr(man.buf, ".SH THE [service:NAME] SECTIONS\n");
	cr_assert_not_null(services);
	for (size_t i = 0; i < config_nkeys; i++) {
		const struct key_def *k = &config_keys[i];
		char *entry = xasprintf(".TP\n.B %s\n", k->name);
		const char *at = strstr(k->section == KS_SERVICE ? services : man.buf, entry);
		cr_assert_not_null(at, "doc/cohort.ini.5 does not describe \"%s\"", k->name);
		const char *def = strstr(at, "\nDefault: ");
		cr_assert_not_null(def);
		const char *mark = strchr(def + 1, '\n');
		const char *want = k->apply == KEY_LIVE ? "\n.br\nReload: live\n" : "\n.br\nReload: restart\n";
		cr_assert(mark && str_starts(mark, want), "%s: the man page should say \"%s\" after its default",
			  k->name, want + 5);
		free(entry);
	}
	sbuf_free(&man);
	free(path);
}

/* The keys two definitions differ in, in table order, and whether one of
 * them is something the running process sees. */
Test(config, svc_config_diff_names_the_keys_and_what_they_need)
{
	/* directory set: its default is the file's, another for each of these */
	struct cohort_config *x = good("[service:a]\ndirectory = /\ncommand = /bin/sleep 1\nlog_backups = 5\n"
				       "health_interval = 10s\n");
	struct cohort_config *y = good("[service:a]\ndirectory = /\ncommand = /bin/sleep 1\nlog_backups = 1\n"
				       "health_interval = 1s\nrequires = \n");
	struct cohort_config *z = good("[service:a]\ndirectory = /\ncommand = /bin/sleep 2\nlog_backups = 5\n"
				       "health_interval = 10s\nenvironment = A=1\n");
	struct strv keys = {0};
	bool restart = true;

	cr_assert_eq(svc_config_diff(x->services[0], x->services[0], &keys, &restart), 0);
	cr_assert(!restart);
	cr_assert_eq(svc_config_diff(x->services[0], y->services[0], &keys, &restart), 2);
	cr_assert(!restart, "log_backups and health_interval apply live");
	cr_assert_str_eq(keys.v[0], "health_interval");
	cr_assert_str_eq(keys.v[1], "log_backups");
	strv_free(&keys);
	cr_assert_eq(svc_config_diff(x->services[0], z->services[0], &keys, &restart), 2);
	cr_assert(restart, "command and environment restart the process");
	cr_assert_str_eq(keys.v[0], "command");
	cr_assert_str_eq(keys.v[1], "environment");
	strv_free(&keys);
	cr_assert(svc_config_equal(x->services[0], x->services[0]));
	cr_assert(!svc_config_equal(x->services[0], y->services[0]));
	config_free(x);
	config_free(y);
	config_free(z);
}

/* A service that sets none of the rare keys (struct svc_rare) shares their
 * defaults; one that sets one has its own.  The diff sees through both,
 * and freeing either config leaves the shared defaults to the others. */
Test(config, rare_keys_are_shared_until_set)
{
	struct cohort_config *x = good("[service:a]\ndirectory = /\ncommand = /bin/sleep 1\n"
				       "[service:b]\ndirectory = /\ncommand = /bin/sleep 1\n");
	struct cohort_config *y = good("[service:a]\ndirectory = /\ncommand = /bin/sleep 1\nlog_backups = 5\n"
				       "[service:b]\ndirectory = /\ncommand = /bin/sleep 1\nnice = 5\n");
	struct strv keys = {0};
	bool restart = false;

	cr_assert_eq(x->services[0]->rare, svc_rare_default());
	cr_assert_eq(x->services[1]->rare, svc_rare_default());
	cr_assert_neq(y->services[0]->rare, svc_rare_default());
	cr_assert(svc_config_equal(x->services[0], y->services[0]), "log_backups = 5 is the default");
	cr_assert_eq(svc_config_diff(x->services[1], y->services[1], &keys, &restart), 1);
	cr_assert_str_eq(keys.v[0], "nice");
	cr_assert(restart);
	strv_free(&keys);
	config_free(y);
	config_free(x);
	cr_assert_str_eq(svc_rare_default()->locks.v[0], "*");
	cr_assert_eq(svc_rare_default()->log_backups, 5);
}
