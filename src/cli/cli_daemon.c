/*
 * cli_daemon.c - reload, shutdown, plan: cohortd itself.
 */
#include "autoconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void print_names(const char *label, json_t *list)
{
	size_t i;
	json_t *v;

	if (!json_array_size(list))
		return;
	printf("%s:", label);
	json_array_foreach(list, i, v)
		printf(" %s", json_string_value(v));
	printf("\n");
}

enum changes { CHANGES_RESTARTED, CHANGES_UPDATED, CHANGES_OTHER };

static bool listed(json_t *list, const char *name)
{
	size_t i;
	json_t *v;

	json_array_foreach(list, i, v)
		if (strcmp(json_string_value(v), name) == 0)
			return true;
	return false;
}

/* "LABEL: NAME (key, key) NAME (key)": the changed services of one kind
 * (restarted, updated in place, or neither: not running now). */
static void print_changes(json_t *resp, const char *label, enum changes which)
{
	json_t *restarted = json_object_get(resp, "restarted");
	json_t *updated = json_object_get(resp, "updated");
	json_t *keys = json_object_get(resp, "keys");
	bool any = false;
	size_t i, k;
	json_t *v, *key;

	json_array_foreach(json_object_get(resp, "changed"), i, v) {
		const char *name = json_string_value(v);
		enum changes is = listed(restarted, name) ? CHANGES_RESTARTED
				  : listed(updated, name) ? CHANGES_UPDATED : CHANGES_OTHER;
		if (is != which)
			continue;
		if (!any)
			printf("%s:", label);
		printf(" %s (", name);
		json_array_foreach(json_object_get(keys, name), k, key)
			printf("%s%s", k ? ", " : "", json_string_value(key));
		printf(")");
		any = true;
	}
	if (any)
		printf("\n");
}

static int run_reload(struct ctl *c, int argc, char **argv)
{
	no_args(argv[0], argc);
	connect_daemon(c);
	send_request(c, json_pack("{s:s}", "cmd", "reload"));
	char *raw;
	json_t *resp = read_answer(c, &raw, true);
	bool ok = json_is_true(json_object_get(resp, "ok"));
	if (c->json) {
		printf("%s\n", raw);
	} else if (ok) {
		print_names("added", json_object_get(resp, "added"));
		print_names("removed", json_object_get(resp, "removed"));
		print_changes(resp, "restarted", CHANGES_RESTARTED);
		print_names("restarted with them (they require one of them)", json_object_get(resp, "dependents"));
		print_changes(resp, "updated", CHANGES_UPDATED);
		print_changes(resp, "changed", CHANGES_OTHER);
		print_names("applied", json_object_get(resp, "applied"));
		print_names("takes effect when cohortd restarts", json_object_get(resp, "needs_restart"));
		if (!json_array_size(json_object_get(resp, "added")) &&
		    !json_array_size(json_object_get(resp, "removed")) &&
		    !json_array_size(json_object_get(resp, "changed")) &&
		    !json_array_size(json_object_get(resp, "applied")) &&
		    !json_array_size(json_object_get(resp, "needs_restart")))
			printf("reloaded: nothing changed\n");
	} else {
		size_t i;
		json_t *v;
		fprintf(stderr, "cohortctl: %s\n", str_of(resp, "error"));
		json_array_foreach(json_object_get(resp, "errors"), i, v)
			fprintf(stderr, "%s\n", json_string_value(v));
	}
	free(raw);
	json_decref(resp);
	return ok ? EXIT_OK : EXIT_FAILED;
}

static int run_shutdown(struct ctl *c, int argc, char **argv)
{
	no_args(argv[0], argc);
	char *raw;
	json_t *resp = call(c, json_pack("{s:s}", "cmd", "shutdown"), &raw);
	if (c->json)
		printf("%s\n", raw);
	else
		printf("cohortd is shutting down\n");
	free(raw);
	json_decref(resp);
	return EXIT_OK;
}

/* The dashboard's URL, with the admin token in its fragment (never sent
 * to the server in a request line), as Jupyter prints its own. */
static int run_dashboard(struct ctl *c, int argc, char **argv)
{
	no_args(argv[0], argc);
	char *raw;
	json_t *resp = call(c, json_pack("{s:s}", "cmd", "dashboard"), &raw);	/* exits on an error */
	if (c->json)
		printf("%s\n", raw);
	else
		printf("%s\n", json_string_value(json_object_get(resp, "url")));
	free(raw);
	json_decref(resp);
	return EXIT_OK;
}

static int run_plan(struct ctl *c, int argc, char **argv)
{
	no_args(argv[0], argc);
	char *raw;
	json_t *resp = call(c, json_pack("{s:s}", "cmd", "plan"), &raw);
	if (c->json) {
		printf("%s\n", raw);
	} else {
		size_t i, j;
		json_t *phase, *name;
		json_array_foreach(json_object_get(resp, "phases"), i, phase) {
			if (!json_array_size(phase))
				continue;
			printf("phase %zu:", i + 1);
			json_array_foreach(phase, j, name)
				printf(" %s", json_string_value(name));
			printf("\n");
		}
	}
	free(raw);
	json_decref(resp);
	return EXIT_OK;
}

const struct command cmd_reload_entry = {
	.name = "reload",
	.usage = "",
	.summary = "re-read the config: start added, stop removed, apply or restart changed services",
	.run = run_reload,
};

const struct command cmd_shutdown_entry = {
	.name = "shutdown",
	.usage = "",
	.summary = "stop the whole stack and cohortd",
	.run = run_shutdown,
};

const struct command cmd_plan_entry = {
	.name = "plan",
	.usage = "",
	.summary = "the start-up phases",
	.run = run_plan,
};

const struct command cmd_dashboard_entry = {
	.name = "dashboard",
	.usage = "",
	.summary = "the web dashboard's URL, with the admin token (needs bus_listen)",
	.run = run_dashboard,
};
