/*
 * ctl_service.c - the commands that change what services should be doing:
 * start, stop, restart (names, @PHASE or all; with wait, answered once
 * every target has settled) and signal.
 *
 * A command only changes the wanted state (stack_want); the stack makes
 * it so.  A waiting request keeps the target names (a reload may free the
 * services) and is re-checked on every state change.
 */
#include "autoconfig.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"
#include "daemon.h"
#include "evtimer.h"

enum wait_kind { WAIT_START, WAIT_STOP };

struct ctl_wait {
	struct ctl_client *c;
	enum wait_kind kind;
	struct strv names;
	ev_timer timeout;
};

/* Resolves "targets" into distinct services. */
static int resolve_targets(struct cohortd *d, json_t *req, json_t *resp, struct strv *names)
{
	json_t *t = json_object_get(req, "targets");
	size_t i;
	json_t *v;
	struct map seen = {0};

	*names = (struct strv){0};
	if (!t || !json_is_array(t) || json_array_size(t) == 0) {
		ctl_error(resp, "field \"targets\" must be a non-empty list of names, @PHASE or \"all\"");
		return -1;
	}
	json_array_foreach(t, i, v) {
		const char *name = json_is_string(v) ? json_string_value(v) : NULL;
		if (!name) {
			ctl_error(resp, "field \"targets\" must hold strings");
			goto fail;
		}
		if (strcmp(name, "all") == 0) {
			for (size_t k = 0; k < d->plan->n; k++)
				if (!map_get(&seen, d->svcs[d->plan->order[k]]->name)) {
					strv_push(names, d->svcs[d->plan->order[k]]->name);
					map_put(&seen, names->v[names->n - 1], (void *)1);
				}
		} else if (name[0] == '@') {
			char *end;
			long ph = strtol(name + 1, &end, 10);
			if (!name[1] || *end || ph < 1 || ph > (long)d->plan->nphases ||
			    d->plan->phase_start[ph + 1] == d->plan->phase_start[ph]) {
				ctl_error(resp, "no phase %s (phases 1 to %u)", name + 1, d->plan->nphases);
				goto fail;
			}
			for (size_t k = d->plan->phase_start[ph]; k < d->plan->phase_start[ph + 1]; k++) {
				const char *n = d->svcs[d->plan->order[k]]->name;
				if (!map_get(&seen, n)) {
					strv_push(names, n);
					map_put(&seen, names->v[names->n - 1], (void *)1);
				}
			}
		} else {
			struct service *s = stack_find(d, name);
			if (!s || s->removed) {
				ctl_error(resp, "no such service: %s", name);
				goto fail;
			}
			if (!map_get(&seen, s->name)) {
				strv_push(names, s->name);
				map_put(&seen, names->v[names->n - 1], (void *)1);
			}
		}
	}
	map_free(&seen);
	return 0;
fail:
	map_free(&seen);
	strv_free(names);
	return -1;
}

/* Done for a start: up (or ended, or failed), or held back by something
 * that will not come up by itself, or removed by a reload meanwhile; a
 * restart is done once it ran again. */
static bool settled_for(const struct cohortd *d, enum wait_kind kind, const struct service *s)
{
	if (!s)
		return true;
	if (kind == WAIT_START && s->removed)
		return true;
	if (kind == WAIT_START)
		return !s->restarting && (s->state == SVC_RUNNING || s->state == SVC_EXITED ||
					  s->state == SVC_FAILED || stack_blocked(d, s));
	return s->state == SVC_STOPPED || s->state == SVC_EXITED || s->state == SVC_FAILED;
}

/* The answer: each target's state, and the start targets that failed. */
static json_t *outcome(struct cohortd *d, enum wait_kind kind, const struct strv *names)
{
	json_t *resp = json_object();
	json_t *list = json_array();
	json_t *failed = json_array();

	for (size_t i = 0; i < names->n; i++) {
		struct service *s = stack_find(d, names->v[i]);
		bool gone = !s || s->removed;
		json_array_append_new(list, json_pack("{s:s,s:s,s:s}", "name", names->v[i], "state",
						      s ? svc_state_name(s->state) : "removed", "reason",
						      gone ? "removed by a reload" : s->reason));
		if (kind == WAIT_START && (gone || s->state == SVC_FAILED || stack_blocked(d, s)))
			json_array_append_new(failed, json_string(names->v[i]));
	}
	json_object_set_new(resp, "ok", json_true());
	json_object_set_new(resp, "services", list);
	json_object_set_new(resp, "failed", failed);
	return resp;
}

static void wait_free(struct ctl_wait *w)
{
	ev_timer_stop(w->c->ctl->d->loop, &w->timeout);
	strv_free(&w->names);
	w->c->wait = NULL;
	free(w);
}

static void wait_check(struct ctl_wait *w)
{
	struct cohortd *d = w->c->ctl->d;

	for (size_t i = 0; i < w->names.n; i++)
		if (!settled_for(d, w->kind, stack_find(d, w->names.v[i])))
			return;
	struct ctl_client *c = w->c;
	json_t *resp = outcome(d, w->kind, &w->names);
	wait_free(w);
	ctl_reply_later(c, resp);
}

static void wait_timeout_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct ctl_wait *w = container_of(t, struct ctl_wait, timeout);
	struct cohortd *d = w->c->ctl->d;
	struct sbuf pending = {0};
	(void)loop;
	(void)revents;

	for (size_t i = 0; i < w->names.n; i++) {
		struct service *s = stack_find(d, w->names.v[i]);
		if (!settled_for(d, w->kind, s))
			sbuf_addf(&pending, "%s%s (%s)", pending.len ? ", " : "", w->names.v[i],
				  s ? svc_state_name(s->state) : "removed");
	}
	json_t *resp = outcome(d, w->kind, &w->names);
	json_object_set_new(resp, "ok", json_false());
	char *msg = xasprintf("timed out waiting for %s", pending.buf ? pending.buf : "?");
	json_object_set_new(resp, "error", json_string(msg));
	free(msg);
	sbuf_free(&pending);
	struct ctl_client *c = w->c;
	wait_free(w);
	ctl_reply_later(c, resp);
}

void ctl_wait_cancel(struct ctl_client *c)
{
	if (c->wait)
		wait_free(c->wait);
}

/* Called for every state change (control.c). */
void ctl_wait_event(struct ctl_client *c)
{
	if (c->wait)
		wait_check(c->wait);
}

static enum ctl_result change(struct ctl_client *c, json_t *req, json_t *resp, bool up, bool restart)
{
	struct cohortd *d = c->ctl->d;
	struct strv names;
	bool wait = true;
	long long timeout_ms = 0;

	if (ctl_get_bool(req, resp, "wait", &wait) < 0 ||
	    ctl_get_int(req, resp, "timeout_ms", 0, 86400000LL * 7, &timeout_ms) < 0 ||
	    resolve_targets(d, req, resp, &names) < 0)
		return CTL_ERROR;
	if (d->shutting_down && up) {
		strv_free(&names);
		return ctl_error(resp, "cohortd is shutting down");
	}
	for (size_t i = 0; i < names.n; i++)
		stack_want(d, stack_find(d, names.v[i]), up, restart);
	enum wait_kind kind = up ? WAIT_START : WAIT_STOP;
	if (!wait) {
		json_t *o = outcome(d, kind, &names);
		json_object_update(resp, o);
		json_decref(o);
		strv_free(&names);
		return CTL_REPLY;
	}
	struct ctl_wait *w = xcalloc(1, sizeof(*w));
	w->c = c;
	w->kind = kind;
	w->names = names;
	ev_init(&w->timeout, wait_timeout_cb);
	if (timeout_ms > 0) {
		evtimer_start_ms(d->loop, &w->timeout, timeout_ms);
	}
	c->wait = w;
	/* control.c checks it at once too: a start of a running service is
	 * already settled. */
	return CTL_LATER;
}

static enum ctl_result cmd_start(struct ctl_client *c, json_t *req, json_t *resp)
{
	return change(c, req, resp, true, false);
}

static enum ctl_result cmd_stop(struct ctl_client *c, json_t *req, json_t *resp)
{
	return change(c, req, resp, false, false);
}

static enum ctl_result cmd_restart(struct ctl_client *c, json_t *req, json_t *resp)
{
	return change(c, req, resp, true, true);
}

static enum ctl_result cmd_signal(struct ctl_client *c, json_t *req, json_t *resp)
{
	const char *name, *sig_name;
	struct service *s;

	if (ctl_get_string(req, resp, "service", true, &name) < 0 ||
	    ctl_get_string(req, resp, "signal", true, &sig_name) < 0)
		return CTL_ERROR;
	int sig = signal_number(sig_name);
	if (sig < 0)
		return ctl_error(resp, "unknown signal \"%s\" (TERM, HUP, USR1, ... or a number)", sig_name);
	s = stack_find(c->ctl->d, name);
	if (!s)
		return ctl_error(resp, "no such service: %s", name);
	if (svc_signal(s, sig) < 0)
		return ctl_error(resp, "%s: %s", name, errno == ESRCH
				 ? "not running" : strerror(errno));
	json_object_set_new(resp, "pid", json_integer(s->pid));
	json_object_set_new(resp, "signal", json_string(signal_name(sig)));
	return CTL_REPLY;
}

const struct ctl_command ctl_service_commands[] = {
	{"start", cmd_start, "start targets (names, @PHASE, all); with wait, answer once running/failed"},
	{"stop", cmd_stop, "stop targets (dependents first); with wait, answer once stopped"},
	{"restart", cmd_restart, "stop then start targets; with wait, answer once running/failed"},
	{"signal", cmd_signal, "send a signal to a service's process group"},
	{NULL, NULL, NULL},
};
