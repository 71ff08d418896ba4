/*
 * ctl_service.c - the commands that change what services should be doing:
 * start, stop, restart (names, @PHASE or all; with wait, answered once
 * every target has settled) and signal.
 *
 * A command only changes the wanted state (stack_want); the stack makes
 * it so.  A waiting request keeps the target names (a reload may free the
 * services) and is re-checked on every state change.  A restart's wait
 * also covers the dependents it takes down with its targets: it is over
 * once they are back too.
 */
#include "autoconfig.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"
#include "supervise.h"
#include "evtimer.h"

enum wait_kind { WAIT_START, WAIT_STOP };

struct ctl_wait {
	struct ctl_client *c;
	enum wait_kind kind;
	struct strv names;	/* the targets, then the dependents they take down */
	size_t ntargets;
	ev_timer timeout;
};

/* The services NAME means (a name, a template's every instance, a glob)
 * added to names, once each. */
static int add_matches(struct ctl_env *env, const char *name, json_t *resp, struct strv *names, struct map *seen)
{
	struct strv found = {0};
	struct sbuf why = {0};
	int rc = stack_match(env->sup, name, &found, &why);

	if (rc < 0)
		ctl_error(resp, "%s", why.buf);
	for (size_t k = 0; rc >= 0 && k < found.n; k++) {
		struct service *s = stack_find(env->sup, found.v[k]);
		if (!s || s->removed) {
			ctl_error(resp, "no such service: %s", found.v[k]);
			rc = -1;
		} else if (!map_get(seen, s->name)) {
			strv_push(names, s->name);
			map_put(seen, names->v[names->n - 1], (void *)1);
		}
	}
	strv_free(&found);
	sbuf_free(&why);
	return rc;
}

/* Resolves "targets" into distinct services. */
static int resolve_targets(struct ctl_env *env, json_t *req, json_t *resp, struct strv *names)
{
	json_t *t = json_object_get(req, "targets");
	size_t i;
	json_t *v;
	struct map seen = {0};

	*names = (struct strv){0};
	if (json_array_size(t) == 0) {	/* a list: checked by change_fields */
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
			for (size_t k = 0; k < env->sup->plan->n; k++)
				if (!map_get(&seen, env->sup->svcs[env->sup->plan->order[k]]->name)) {
					strv_push(names, env->sup->svcs[env->sup->plan->order[k]]->name);
					map_put(&seen, names->v[names->n - 1], (void *)1);
				}
		} else if (name[0] == '@') {
			char *end;
			long ph = strtol(name + 1, &end, 10);
			if (!name[1] || *end || ph < 1 || ph > (long)env->sup->plan->nphases ||
			    env->sup->plan->phase_start[ph + 1] == env->sup->plan->phase_start[ph]) {
				ctl_error(resp, "no phase %s (phases 1 to %u)", name + 1, env->sup->plan->nphases);
				goto fail;
			}
			for (size_t k = env->sup->plan->phase_start[ph]; k < env->sup->plan->phase_start[ph + 1]; k++) {
				const char *n = env->sup->svcs[env->sup->plan->order[k]]->name;
				if (!map_get(&seen, n)) {
					strv_push(names, n);
					map_put(&seen, names->v[names->n - 1], (void *)1);
				}
			}
		} else if (add_matches(env, name, resp, names, &seen) < 0) {
			goto fail;
		}
	}
	map_free(&seen);
	return 0;
fail:
	map_free(&seen);
	strv_free(names);
	return -1;
}

/*
 * A restart takes down, first, what requires its targets, directly or not
 * (stack.c), and starts it again after them: those up now are added to
 * NAMES, after the targets, for the wait to cover.
 */
static void add_dependents(struct ctl_env *env, struct strv *names)
{
	struct map seen = {0};

	for (size_t i = 0; i < names->n; i++)
		map_put(&seen, names->v[i], (void *)1);
	for (size_t i = 0; i < names->n; i++) {	/* names grows: breadth first */
		struct service *s = stack_find(env->sup, names->v[i]);
		if (!s || s->index >= env->sup->plan->n || (s->state != SVC_STARTING && s->state != SVC_RUNNING))
			continue;
		PLAN_EACH_EDGE(&env->sup->plan->required_by, s->index, j) {
			struct service *t = env->sup->svcs[j];
			if (t->want == WANT_DOWN || (t->state != SVC_STARTING && t->state != SVC_RUNNING) ||
			    map_get(&seen, t->name))
				continue;
			strv_push(names, t->name);
			map_put(&seen, names->v[names->n - 1], (void *)1);
		}
	}
	map_free(&seen);
}

/* Done for a start: up (or ended, or failed), or held back by something
 * that will not come up by itself, or removed by a reload meanwhile; a
 * restart is done once it ran again. */
static bool settled_for(const struct ctl_env *env, enum wait_kind kind, const struct service *s)
{
	if (!s)
		return true;
	if (kind == WAIT_START && s->removed)
		return true;
	if (kind == WAIT_START)
		return !svc_restarting(s) && (s->state == SVC_RUNNING || s->state == SVC_EXITED ||
					  s->state == SVC_FAILED || stack_blocked(env->sup, s));
	return s->state == SVC_STOPPED || s->state == SVC_EXITED || s->state == SVC_FAILED;
}

/* The answer: each target's state (then each dependent's, marked so), and
 * the start targets and dependents that failed. */
static json_t *outcome(struct ctl_env *env, enum wait_kind kind, const struct strv *names, size_t ntargets)
{
	json_t *resp = json_object();
	json_t *list = json_array();
	json_t *failed = json_array();

	for (size_t i = 0; i < names->n; i++) {
		struct service *s = stack_find(env->sup, names->v[i]);
		bool gone = !s || s->removed;
		json_t *o = json_pack("{s:s,s:s,s:s}", "name", names->v[i], "state",
				      s ? svc_state_name(s->state) : "removed", "reason",
				      gone ? "removed by a reload" : svc_text(s->reason));
		if (i >= ntargets)
			json_object_set_new(o, "dependent", json_true());
		json_array_append_new(list, o);
		if (kind == WAIT_START && (gone || s->state == SVC_FAILED || stack_blocked(env->sup, s)))
			json_array_append_new(failed, json_string(names->v[i]));
	}
	json_object_set_new(resp, "ok", json_true());
	json_object_set_new(resp, "services", list);
	json_object_set_new(resp, "failed", failed);
	return resp;
}

static void wait_free(struct ctl_wait *w)
{
	ev_timer_stop(w->c->ctl->loop, &w->timeout);
	strv_free(&w->names);
	w->c->wait = NULL;
	free(w);
}

/* A dependent someone stopped meanwhile is not waited for. */
static bool wait_settled(const struct ctl_env *env, const struct ctl_wait *w, size_t i)
{
	struct service *s = stack_find(env->sup, w->names.v[i]);

	return settled_for(env, w->kind, s) || (i >= w->ntargets && s->want == WANT_DOWN);
}

static void wait_check(struct ctl_wait *w)
{
	struct ctl_env *env = &w->c->ctl->env;

	for (size_t i = 0; i < w->names.n; i++)
		if (!wait_settled(env, w, i))
			return;
	struct ctl_client *c = w->c;
	json_t *resp = outcome(env, w->kind, &w->names, w->ntargets);
	wait_free(w);
	ctl_reply_later(c, resp);
}

static void wait_timeout_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct ctl_wait *w = container_of(t, struct ctl_wait, timeout);
	struct ctl_env *env = &w->c->ctl->env;
	struct sbuf pending = {0};
	(void)loop;
	(void)revents;

	for (size_t i = 0; i < w->names.n; i++) {
		struct service *s = stack_find(env->sup, w->names.v[i]);
		if (!wait_settled(env, w, i))
			sbuf_addf(&pending, "%s%s (%s)", pending.len ? ", " : "", w->names.v[i],
				  s ? svc_state_name(s->state) : "removed");
	}
	json_t *resp = outcome(env, w->kind, &w->names, w->ntargets);
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

static const struct wire_field change_fields[] = {
	{"targets", WIRE_LIST, true, 0, 0, "a non-empty list of names, NAME@* globs, @PHASE or \"all\"", NULL},
	{"wait", WIRE_BOOL, false, 0, 0, NULL, NULL},
	{"timeout_ms", WIRE_INT, false, 0, 86400000LL * 7, NULL, NULL},
	{NULL, 0, false, 0, 0, NULL, NULL},
};

static const struct wire_field signal_fields[] = {
	{"service", WIRE_STRING, true, 0, 0, NULL, NULL},
	{"signal", WIRE_STRING, true, 0, 0, NULL, NULL},
	{NULL, 0, false, 0, 0, NULL, NULL},
};

static enum ctl_result change(struct ctl_client *c, json_t *req, json_t *resp, bool up, bool restart)
{
	struct ctl_env *env = &c->ctl->env;
	struct strv names;
	bool wait = ctl_bool(req, "wait", true);
	long long timeout_ms = ctl_int(req, "timeout_ms", 0);

	if (resolve_targets(env, req, resp, &names) < 0)
		return CTL_ERROR;
	if (env->sup->shutting_down && up) {
		strv_free(&names);
		return ctl_error(resp, "cohortd is shutting down");
	}
	size_t ntargets = names.n;
	if (restart && wait)
		add_dependents(env, &names);
	for (size_t i = 0; i < ntargets; i++)
		stack_want(env->sup, stack_find(env->sup, names.v[i]),
			   !up ? WANT_DOWN : restart ? WANT_RESTART : WANT_UP);
	enum wait_kind kind = up ? WAIT_START : WAIT_STOP;
	if (!wait) {
		json_t *o = outcome(env, kind, &names, ntargets);
		json_object_update(resp, o);
		json_decref(o);
		strv_free(&names);
		return CTL_REPLY;
	}
	struct ctl_wait *w = xcalloc(1, sizeof(*w));
	w->c = c;
	w->kind = kind;
	w->names = names;
	w->ntargets = ntargets;
	ev_init(&w->timeout, wait_timeout_cb);
	if (timeout_ms > 0) {
		evtimer_start_ms(c->ctl->loop, &w->timeout, timeout_ms);
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
	const char *name = ctl_str(req, "service"), *sig_name = ctl_str(req, "signal");
	struct service *s;

	int sig = signal_number(sig_name);
	if (sig < 0)
		return ctl_error(resp, "unknown signal \"%s\" (TERM, HUP, USR1, ... or a number)", sig_name);
	struct strv found = {0};
	struct sbuf why = {0};
	int n = stack_match(c->ctl->env.sup, name, &found, &why);
	if (n == 1)
		s = stack_find(c->ctl->env.sup, found.v[0]);
	else if (n > 1)
		ctl_error(resp, "%s is %d services (%s%s%s%s): signal one at a time", name, n, found.v[0],
			  n > 2 ? ", ... " : " and ", n > 2 ? "" : "", found.v[n - 1]);
	else
		ctl_error(resp, "%s", why.buf);
	strv_free(&found);
	sbuf_free(&why);
	if (n != 1)
		return CTL_ERROR;
	if (svc_signal(s, sig) < 0)
		return ctl_error(resp, "%s: %s", name, errno == ESRCH
				 ? "not running" : strerror(errno));
	json_object_set_new(resp, "pid", json_integer(s->pid));
	json_object_set_new(resp, "signal", json_string(signal_name(sig)));
	return CTL_REPLY;
}

const struct ctl_command ctl_service_commands[] = {
	{"start", cmd_start, "start targets (names, NAME@*, @PHASE, all); with wait, answer once running/failed",
	 change_fields},
	{"stop", cmd_stop, "stop targets (dependents first); with wait, answer once stopped", change_fields},
	{"restart", cmd_restart, "stop then start targets; with wait, answer once running/failed", change_fields},
	{"signal", cmd_signal, "send a signal to a service's process group", signal_fields},
	{NULL, NULL, NULL, NULL},
};
