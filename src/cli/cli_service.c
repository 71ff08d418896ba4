/*
 * cli_service.c - status, start, stop, restart, signal: the services.
 */
#include "autoconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "wire.h"

/* The table cohortd rendered ({"ok":true,"table":"..."}), read without
 * building the answer's JSON (wire_read_table): false (LINE untouched) for
 * any other answer, which the parser judges (an error, or a cut line). */
static bool print_rendered(char *line)
{
	char *end;

	switch (wire_read_table(line, strlen(line), &end)) {
	case 0:
		return false;
	case -1:
		fprintf(stderr, "cohortctl: cohortd sent a table that is not a JSON string\n");
		exit(EXIT_FAILED);
	default:
		fwrite(line, 1, (size_t)(end - line), stdout);
		return true;
	}
}

static int run_status(struct ctl *c, int argc, char **argv)
{
	json_t *req = json_pack("{s:s}", "cmd", "status");
	char *raw;

	if (argc > 1) {
		json_t *names = json_array();
		for (int i = 1; i < argc; i++)
			json_array_append_new(names, json_string(argv[i]));
		json_object_set_new(req, "services", names);
	}
	if (c->json) {
		json_decref(call(c, req, &raw));
		printf("%s\n", raw);
		free(raw);
		return EXIT_OK;
	}
	/* cohortd renders the human table (ctl_status.c, its one renderer: the
	 * two ship together); the JSON of 500 services took longer to parse
	 * here than all the rest of the command. */
	json_object_update_new(req, json_pack("{s:s,s:b}", "format", "table", "color", c->color));
	connect_daemon(c);
	send_request(c, req);
	char *line = read_line(c);
	if (line && print_rendered(line)) {
		free(line);
		return EXIT_OK;
	}
	json_decref(parse_answer(c, line, NULL, false));	/* exits on an error */
	fprintf(stderr, "cohortctl: cohortd answered status without its table\n");
	return EXIT_FAILED;
}

/* --wait is the default, accepted so that a script can say so. */
static const struct option change_opts[] = {
	{"wait", no_argument, NULL, 'w'},
	{"no-wait", no_argument, NULL, 'n'},
	{"timeout", required_argument, NULL, 't'},
	{0},
};

static int run_change(struct ctl *c, int argc, char **argv)
{
	bool wait = true;
	int64_t timeout = 0;
	const char *why;
	int o;

	optind = 1;
	while ((o = getopt_long(argc, argv, "+", change_opts, NULL)) != -1) {
		if (o == 'n' || o == 'w')
			wait = o == 'w';
		else if (o == 't' && parse_duration_ms(optarg, &timeout, &why) < 0)
			die_usage("--timeout: expected %s", why);
		else if (o != 't')
			die_usage("%s: unknown option", argv[0]);
	}
	if (optind >= argc)
		die_usage("%s needs at least one target (a name, NAME@* for a template's instances, "
			  "@PHASE or all)", argv[0]);
	json_t *targets = json_array();
	for (int i = optind; i < argc; i++)
		json_array_append_new(targets, json_string(argv[i]));
	json_t *req = json_pack("{s:s,s:o,s:b}", "cmd", argv[0], "targets", targets, "wait", wait);
	if (timeout > 0)
		json_object_set_new(req, "timeout_ms", json_integer(timeout));
	connect_daemon(c);
	send_request(c, req);
	char *raw;
	json_t *resp = read_answer(c, &raw, true);
	bool ok = json_is_true(json_object_get(resp, "ok"));
	size_t nfailed = json_array_size(json_object_get(resp, "failed"));
	if (c->json) {
		printf("%s\n", raw);
	} else {
		size_t i;
		json_t *s;
		json_array_foreach(json_object_get(resp, "services"), i, s) {
			const char *state = str_of(s, "state");
			printf("%s: %s%s%s%s%s\n", str_of(s, "name"), c->color ? state_color(state) : "", state,
			       c->color && *state_color(state) ? "\033[0m" : "",
			       *str_of(s, "reason") ? " - " : "", str_of(s, "reason"));
		}
		if (!ok)
			fprintf(stderr, "cohortctl: %s\n", str_of(resp, "error"));
	}
	free(raw);
	json_decref(resp);
	return ok && nfailed == 0 ? EXIT_OK : EXIT_FAILED;
}

static int run_signal(struct ctl *c, int argc, char **argv)
{
	if (argc != 3)
		die_usage("usage: cohortctl signal SIGNAL NAME");
	char *raw;
	json_t *resp = call(c, json_pack("{s:s,s:s,s:s}", "cmd", "signal", "signal", argv[1], "service",
					 argv[2]), &raw);
	if (c->json)
		printf("%s\n", raw);
	else
		printf("sent SIG%s to %s (process group %lld)\n", str_of(resp, "signal"), argv[2],
		       json_integer_value(json_object_get(resp, "pid")));
	free(raw);
	json_decref(resp);
	return EXIT_OK;
}

const struct command cmd_status_entry = {
	.name = "status",
	.usage = "[NAME...]",
	.summary = "the services: state, pid, phase, uptime, restarts, reason",
	.run = run_status,
};

const struct command cmd_start_entry = {
	.name = "start",
	.usage = "[--wait|--no-wait] [--timeout DUR] TARGET...",
	.summary = "start services (NAME, NAME@*, @PHASE or all); waits until running or failed",
	.run = run_change,
	.shortopts = "+",
	.longopts = change_opts,
};

const struct command cmd_stop_entry = {
	.name = "stop",
	.usage = "[--wait|--no-wait] [--timeout DUR] TARGET...",
	.summary = "stop services, dependents first; waits until stopped",
	.run = run_change,
	.shortopts = "+",
	.longopts = change_opts,
};

const struct command cmd_restart_entry = {
	.name = "restart",
	.usage = "[--wait|--no-wait] [--timeout DUR] TARGET...",
	.summary = "stop, then start again; waits until running or failed",
	.run = run_change,
	.shortopts = "+",
	.longopts = change_opts,
};

const struct command cmd_signal_entry = {
	.name = "signal",
	.usage = "SIGNAL NAME",
	.summary = "send a signal (TERM, HUP, USR1, ...) to a service's process group",
	.run = run_signal,
};
