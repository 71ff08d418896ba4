/*
 * ctl_status.c - the commands that describe the stack: status and plan.
 */
#include "autoconfig.h"

#include <string.h>

#include "control.h"
#include "daemon.h"

json_t *ctl_service_json(const struct cohortd *d, const struct service *s)
{
	json_t *o = json_object();
	json_t *exit_info = json_null();

	if (s->last_exit.valid)
		exit_info = s->last_exit.signal
			? json_pack("{s:s}", "signal", signal_name(s->last_exit.signal))
			: json_pack("{s:i}", "code", s->last_exit.code);
	json_object_set_new(o, "name", json_string(s->name));
	json_object_set_new(o, "state", json_string(svc_state_name(s->state)));
	json_object_set_new(o, "pid", s->pid > 0 ? json_integer(s->pid) : json_null());
	json_object_set_new(o, "phase", s->index < d->plan->n ? json_integer(d->plan->phase[s->index])
							       : json_null());
	json_object_set_new(o, "since_ms", json_integer(s->since_ms));
	json_object_set_new(o, "restarts", json_integer(s->restarts));
	json_object_set_new(o, "last_exit", exit_info);
	json_object_set_new(o, "reason", json_string(s->reason));
	json_object_set_new(o, "health", s->health[0] ? json_string(s->health) : json_null());
	json_object_set_new(o, "autostart", json_boolean(s->cfg->autostart));
	json_object_set_new(o, "wanted", json_string(s->want_up ? "up" : "down"));
	if (s->status_text[0])
		json_object_set_new(o, "status", json_string(s->status_text));
	return o;
}

static enum ctl_result cmd_status(struct ctl_client *c, json_t *req, json_t *resp)
{
	const struct cohortd *d = c->ctl->d;
	json_t *names = json_object_get(req, "services");
	json_t *list = json_array();

	if (names && !json_is_array(names)) {
		json_decref(list);
		return ctl_error(resp, "field \"services\" must be a list of service names");
	}
	if (names && json_array_size(names)) {
		size_t i;
		json_t *v;
		json_array_foreach(names, i, v) {
			struct service *s = json_is_string(v) ? stack_find(d, json_string_value(v)) : NULL;
			if (!s) {
				json_decref(list);
				if (!json_is_string(v))
					return ctl_error(resp, "field \"services\" must be a list of service names");
				return ctl_error(resp, "no such service: %s", json_string_value(v));
			}
			json_array_append_new(list, ctl_service_json(d, s));
		}
	} else {
		for (size_t i = 0; i < d->plan->n; i++)
			json_array_append_new(list, ctl_service_json(d, d->svcs[d->plan->order[i]]));
		for (size_t i = 0; i < d->nleaving; i++)
			json_array_append_new(list, ctl_service_json(d, d->leaving[i]));
	}
	json_object_set_new(resp, "services", list);
	json_object_set_new(resp, "now_ms", json_integer(now_wall_ms()));
	json_object_set_new(resp, "stack_up", json_boolean(d->stack_up));
	json_object_set_new(resp, "shutting_down", json_boolean(d->shutting_down));
	json_object_set_new(resp, "bus", bus_status_json((struct bus *)&d->bus));
	return CTL_REPLY;
}

static enum ctl_result cmd_plan(struct ctl_client *c, json_t *req, json_t *resp)
{
	const struct plan *p = c->ctl->d->plan;
	json_t *phases = json_array();
	(void)req;

	for (unsigned ph = 1; ph <= p->nphases; ph++) {
		json_t *names = json_array();
		for (size_t k = p->phase_start[ph]; k < p->phase_start[ph + 1]; k++)
			json_array_append_new(names, json_string(p->cfg->services[p->order[k]]->name));
		json_array_append_new(phases, names);
	}
	json_object_set_new(resp, "phases", phases);
	return CTL_REPLY;
}

const struct ctl_command ctl_status_commands[] = {
	{"status", cmd_status, "every service (or those named): state, pid, phase, restarts, reason"},
	{"plan", cmd_plan, "the phases, each a list of service names"},
	{NULL, NULL, NULL},
};
