/*
 * ctl_daemon.c - the commands about cohortd itself: reload and shutdown.
 */
#include "autoconfig.h"

#include <stdio.h>

#include "control.h"
#include "daemon.h"

static json_t *strv_json(const struct strv *sv)
{
	json_t *a = json_array();

	for (size_t i = 0; i < sv->n; i++)
		json_array_append_new(a, json_string(sv->v[i]));
	return a;
}

static enum ctl_result cmd_reload(struct ctl_client *c, json_t *req, json_t *resp)
{
	struct strv errors = {0};
	struct strv added = {0}, removed = {0}, changed = {0};
	(void)req;

	if (c->ctl->d->shutting_down)
		return ctl_error(resp, "cohortd is shutting down");
	int rc = reload_config(c->ctl->d, &errors, &added, &removed, &changed);
	json_object_set_new(resp, "added", strv_json(&added));
	json_object_set_new(resp, "removed", strv_json(&removed));
	json_object_set_new(resp, "changed", strv_json(&changed));
	json_object_set_new(resp, "errors", strv_json(&errors));
	if (rc < 0) {
		char msg[128];
		snprintf(msg, sizeof(msg), "the new config is invalid (%zu error line%s); still running the old one",
			 errors.n, errors.n == 1 ? "" : "s");
		json_object_set_new(resp, "ok", json_false());
		json_object_set_new(resp, "error", json_string(msg));
	}
	strv_free(&errors);
	strv_free(&added);
	strv_free(&removed);
	strv_free(&changed);
	return rc < 0 ? CTL_ERROR : CTL_REPLY;
}

static enum ctl_result cmd_shutdown(struct ctl_client *c, json_t *req, json_t *resp)
{
	(void)req;
	/* Answered first (written now if the socket takes it), then the stack
	 * goes down. */
	json_object_set_new(resp, "ok", json_true());
	ctl_send(c, json_incref(resp));
	daemon_begin_shutdown(c->ctl->d, "shutdown requested");
	c->closing = true;
	return CTL_LATER;
}

const struct ctl_command ctl_daemon_commands[] = {
	{"reload", cmd_reload, "re-read the config: start added, stop removed, restart changed"},
	{"shutdown", cmd_shutdown, "answer, then stop the whole stack and exit"},
	{NULL, NULL, NULL},
};
