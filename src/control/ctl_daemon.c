/*
 * ctl_daemon.c - the commands about cohortd itself: reload and shutdown.
 */
#include "autoconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"
#include "supervise.h"

static json_t *strv_json(const struct strv *sv)
{
	json_t *a = json_array();

	for (size_t i = 0; i < sv->n; i++)
		json_array_append_new(a, json_string(sv->v[i]));
	return a;
}

/* {"NAME": ["key", ...], ...} for each changed service. */
static json_t *keys_json(const struct reload_report *r)
{
	json_t *o = json_object();

	for (size_t i = 0; i < r->changed.n && i < r->keys.n; i++) {
		json_t *a = json_array();
		char *list = xstrdup(r->keys.v[i]), *save = NULL;
		for (char *k = strtok_r(list, " ", &save); k; k = strtok_r(NULL, " ", &save))
			json_array_append_new(a, json_string(k));
		free(list);
		json_object_set_new(o, r->changed.v[i], a);
	}
	return o;
}

static enum ctl_result cmd_reload(struct ctl_client *c, json_t *req, json_t *resp)
{
	struct reload_report r = {0};
	(void)req;

	if (c->ctl->env.sup->shutting_down)
		return ctl_error(resp, "cohortd is shutting down");
	int rc = c->ctl->env.reload(c->ctl->env.arg, &r);
	json_object_set_new(resp, "added", strv_json(&r.added));
	json_object_set_new(resp, "removed", strv_json(&r.removed));
	json_object_set_new(resp, "changed", strv_json(&r.changed));
	json_object_set_new(resp, "restarted", strv_json(&r.restarted));
	json_object_set_new(resp, "dependents", strv_json(&r.dependents));
	json_object_set_new(resp, "updated", strv_json(&r.updated));
	json_object_set_new(resp, "keys", keys_json(&r));
	json_object_set_new(resp, "applied", strv_json(&r.applied));
	json_object_set_new(resp, "needs_restart", strv_json(&r.restart));
	json_object_set_new(resp, "errors", strv_json(&r.errors));
	if (rc < 0) {
		char msg[128];
		snprintf(msg, sizeof(msg), "the new config is invalid (%zu error line%s); still running the old one",
			 r.errors.n, r.errors.n == 1 ? "" : "s");
		json_object_set_new(resp, "ok", json_false());
		json_object_set_new(resp, "error", json_string(msg));
	}
	reload_report_free(&r);
	return rc < 0 ? CTL_ERROR : CTL_REPLY;
}

static enum ctl_result cmd_shutdown(struct ctl_client *c, json_t *req, json_t *resp)
{
	(void)req;
	/* Answered first (written now if the socket takes it), then the stack
	 * goes down. */
	json_object_set_new(resp, "ok", json_true());
	ctl_send(c, json_incref(resp));
	c->ctl->env.shutdown(c->ctl->env.arg, "shutdown requested");
	c->closing = true;
	return CTL_LATER;
}

const struct ctl_command ctl_daemon_commands[] = {
	{"reload", cmd_reload, "re-read the config: start added, stop removed, apply or restart changed", NULL},
	{"shutdown", cmd_shutdown, "answer, then stop the whole stack and exit", NULL},
	{NULL, NULL, NULL, NULL},
};
