/*
 * cli_log.c - log, events: services' output and state changes, followed.
 */
#include "autoconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char log_shortopts[] = "+n:f";

/* One log line; with several services, the service's name after the time
 * stamp (before the line when it has none), as journalctl puts the unit. */
static void print_log_line(const char *line, const char *service)
{
	size_t n = strlen(line);

	if (!service)
		printf("%s\n", line);
	else if (n > 24 && line[10] == 'T' && line[23] == 'Z' && line[24] == ' ')
		printf("%.25s%s: %s\n", line, service, line + 25);
	else
		printf("%s: %s\n", service, line);
}

static int run_log(struct ctl *c, int argc, char **argv)
{
	static const char usage[] = "usage: cohortctl log [-n N] [-f] NAME...";
	long long lines = 50;
	bool follow = false;
	uint64_t v;
	const char *why;
	int o;

	optind = 1;
	while ((o = getopt(argc, argv, log_shortopts)) != -1) {
		if (o == 'n') {
			if (parse_uint(optarg, 100000, &v, &why) < 0)
				die_usage("-n: expected a number of lines from 0 to 100000");
			lines = (long long)v;
		} else if (o == 'f') {
			follow = true;
		} else {
			die_usage("%s", usage);
		}
	}
	if (optind >= argc)
		die_usage("%s", usage);
	bool several = argc - optind > 1;
	json_t *req = json_pack("{s:s,s:I,s:b}", "cmd", "log", "lines", (json_int_t)lines, "follow", follow);
	if (several) {
		json_t *names = json_array();
		for (int i = optind; i < argc; i++)
			json_array_append_new(names, json_string(argv[i]));
		json_object_set_new(req, "services", names);
	} else {
		json_object_set_new(req, "service", json_string(argv[optind]));
	}
	connect_daemon(c);
	send_request(c, req);
	char *raw;
	json_t *resp = read_answer(c, &raw, false);
	json_t *whose = json_object_get(resp, "services"), *l;
	size_t i;
	several = json_is_array(whose);	/* worker@* is several, too: cohortd says */
	if (c->json)
		printf("%s\n", raw);
	else
		json_array_foreach(json_object_get(resp, "lines"), i, l)
			print_log_line(json_string_value(l), several ? json_string_value(json_array_get(whose, i))
								     : NULL);
	free(raw);
	json_decref(resp);
	fflush(stdout);
	while (follow) {
		char *line = read_line(c);
		if (!line)
			break;
		json_t *o2 = json_loads(line, 0, NULL);
		if (c->json)
			printf("%s\n", line);
		else if (json_string_value(json_object_get(o2, "line")))
			print_log_line(json_string_value(json_object_get(o2, "line")),
				       several ? str_of(o2, "service") : NULL);
		else if (json_string_value(json_object_get(o2, "error")))
			fprintf(stderr, "cohortctl: %s%s%s\n", str_of(o2, "service"), *str_of(o2, "service") ? ": " : "",
				json_string_value(json_object_get(o2, "error")));
		fflush(stdout);
		json_decref(o2);
		free(line);
	}
	return EXIT_OK;
}

static int run_events(struct ctl *c, int argc, char **argv)
{
	no_args(argv[0], argc);
	connect_daemon(c);
	send_request(c, json_pack("{s:s}", "cmd", "events"));
	json_decref(read_answer(c, NULL, false));
	for (;;) {
		char *line = read_line(c);
		if (!line)
			break;
		json_t *e = json_loads(line, 0, NULL);
		if (c->json || !e) {
			printf("%s\n", line);
		} else if (json_object_get(e, "error")) {
			fprintf(stderr, "cohortctl: %s\n", str_of(e, "error"));
		} else {
			char ts[40];
			format_wall_ms(json_integer_value(json_object_get(e, "ts_ms")), ts, sizeof(ts));
			printf("%s %s: %s -> %s%s%s\n", ts, str_of(e, "service"), str_of(e, "from"),
			       str_of(e, "to"), *str_of(e, "reason") ? ": " : "", str_of(e, "reason"));
		}
		fflush(stdout);
		json_decref(e);
		free(line);
	}
	return EXIT_OK;
}

const struct command cmd_log_entry = {
	.name = "log",
	.usage = "[-n N] [-f] NAME...",
	.summary = "the last N lines (default 50) of services' logs, interleaved by time; -f follows",
	.run = run_log,
	.shortopts = log_shortopts,
};

const struct command cmd_events_entry = {
	.name = "events",
	.usage = "",
	.summary = "every state change as it happens",
	.run = run_events,
};
