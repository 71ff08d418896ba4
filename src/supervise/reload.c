/*
 * reload.c - a new config against the running services, in two steps.
 *
 * reload_diff() compares, with no process touched, each service's
 * definition (what it runs, or what waits for its next start) with the
 * new config's: added, removed, unchanged, changed only in keys the key
 * table marks KEY_LIVE, or changed in what the process itself sees
 * (KEY_RESTART).  stack_reload() then applies it: an unchanged definition
 * keeps its process (only the config pointer moves to the new config); a
 * live change is applied to the running process; any other change to a
 * live process waits for it to stop, and restarts it when it is starting
 * or running; a new service is added and a removed one stopped, then
 * dropped.  Services hold a reference on the config they use, so the old
 * config lives until the last service using it has moved on.
 *
 * [cohort] keys are compared with what runs, not with the previous file
 * (reload_compare_daemon): a live key with the config in use, a start-up
 * key with the config cohortd started with, so a start-up key is reported
 * at every reload until cohortd restarts, and not once it is put back.
 * Loading the file and applying [cohort] keys is the daemon's part.
 */
#include "autoconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_keys.h"
#include "log.h"
#include "supervise.h"

/* --- the diff: data in, data out ------------------------------------------ */

static const void *field(const void *cfg, const struct key_def *k)
{
	return (const char *)cfg + k->offset;
}

void reload_compare_daemon(const struct cohort_config *running, const struct cohort_config *started,
			   const struct cohort_config *nc, struct strv *applied, struct strv *restart)
{
	for (size_t i = 0; i < config_nkeys; i++) {
		const struct key_def *k = &config_keys[i];
		if (k->section != KS_DAEMON)
			continue;
		bool live = k->apply == KEY_LIVE;
		if (key_equal(k, field(live ? running : started, k), field(nc, k)))
			continue;
		if (live) {
			log_info(NULL, "reload: [cohort] %s changed: applied", k->name);
			if (applied)
				strv_push(applied, k->name);
		} else {
			log_warn(NULL, "reload: [cohort] %s differs from the value cohortd runs with: "
				 "it takes effect when cohortd restarts", k->name);
			if (restart)
				strv_push(restart, k->name);
		}
	}
}

void reload_diff(const struct supervisor *sup, const struct cohort_config *nc, struct reload_diff *out)
{
	out->v = xcalloc(nc->nservices + sup->plan->n + 1, sizeof(*out->v));
	out->n = 0;
	for (size_t i = 0; i < nc->nservices; i++) {
		const struct svc_config *c = nc->services[i];
		const struct service *s = stack_find(sup, c->name);
		struct svc_diff *e = &out->v[out->n++];
		bool restart_keys;

		e->name = c->name;
		if (!s) {
			e->change = CHANGE_ADDED;
			continue;
		}
		if (!svc_config_diff(s->next_cfg ? s->next_cfg : s->cfg, c, &e->keys, &restart_keys))
			e->change = CHANGE_NONE;
		else
			e->change = restart_keys ? CHANGE_RESTART : CHANGE_LIVE;
	}
	for (size_t i = 0; i < sup->plan->n; i++) {
		const struct service *s = sup->svcs[i];
		if (!config_find(nc, s->name))
			out->v[out->n++] = (struct svc_diff){.name = s->name, .change = CHANGE_REMOVED};
	}
}

void reload_diff_free(struct reload_diff *d)
{
	for (size_t i = 0; i < d->n; i++)
		strv_free(&d->v[i].keys);
	free(d->v);
	*d = (struct reload_diff){0};
}

void reload_report_free(struct reload_report *r)
{
	strv_free(&r->errors);
	strv_free(&r->added);
	strv_free(&r->removed);
	strv_free(&r->changed);
	strv_free(&r->keys);
	strv_free(&r->restarted);
	strv_free(&r->updated);
	strv_free(&r->applied);
	strv_free(&r->restart);
	strv_free(&r->dependents);
}

/* --- applying it ------------------------------------------------------------ */

/* What a change did to a service, for the report and the log. */
enum outcome { KEPT, RESTARTED, UPDATED, CHANGED };

static void leave(struct supervisor *sup, struct service *s)
{
	s->removed = true;
	s->index = SIZE_MAX;
	s->want = WANT_DOWN;
	sup->leaving = xrealloc(sup->leaving, (sup->nleaving + 1) * sizeof(*sup->leaving));
	sup->leaving[sup->nleaving++] = s;
}

static void unleave(struct supervisor *sup, struct service *s)
{
	for (size_t i = 0; i < sup->nleaving; i++) {
		if (sup->leaving[i] == s) {
			sup->leaving[i] = sup->leaving[--sup->nleaving];
			break;
		}
	}
	s->removed = false;
}

/* The definition c replaces the one a pending change (or s) holds. */
static void set_pending(struct service *s, struct svc_config *c, struct cohort_config *nc)
{
	config_unref(s->next_owner);
	s->next_cfg = c;
	s->next_owner = config_ref(nc);
}

static void report_change(struct service *s, enum outcome how, const struct strv *keys,
			  struct reload_report *r)
{
	static const char *const what[] = {
		[RESTARTED] = "restarts it",
		[UPDATED] = "applied to the running service",
		[CHANGED] = "in effect at its next start",
	};
	char *list = strv_join(keys, ", ");

	log_info(s->name, "reload: %s changed: %s", list, what[how]);
	free(list);
	if (!r)
		return;
	strv_push(&r->changed, s->name);
	strv_push_owned(&r->keys, strv_join(keys, " "));
	if (how == RESTARTED)
		strv_push(&r->restarted, s->name);
	else if (how == UPDATED)
		strv_push(&r->updated, s->name);
}

/* A service with no process takes the new definition now. */
static void change_stopped(struct service *s, struct svc_config *c, struct cohort_config *nc)
{
	/* A definition from an earlier reload, waiting for the next spawn,
	 * is out of date now. */
	if (s->next_cfg) {
		config_unref(s->next_owner);
		s->next_cfg = NULL;
		s->next_owner = NULL;
	}
	/* Turning autostart on or off is a wish to have it up or down. */
	if (s->cfg->autostart != c->autostart)
		s->want = c->autostart ? WANT_UP : WANT_DOWN;
	svc_set_config(s, c, nc);
	s->failures = 0;
	breaker_reset(&s->breaker);
	/* Failed, and wanted up: the new definition gets its chance now. */
	if (s->state == SVC_FAILED && s->want != WANT_DOWN)
		s->want = WANT_RESTART;
}

/*
 * s, already in the stack, gets the definition c, which changed as e says.
 * A change only in KEY_LIVE keys applies to a running process at once;
 * any other change to a running process waits for it to stop, and
 * restarts it when it is starting or running.
 */
static enum outcome change_service(struct service *s, const struct svc_diff *e, struct svc_config *c,
				   struct cohort_config *nc, struct reload_report *r)
{
	enum outcome how;

	if (e->change == CHANGE_NONE) {
		if (s->next_cfg)	/* changed earlier, still stopping */
			set_pending(s, c, nc);
		else
			svc_set_config(s, c, nc);
		return KEPT;
	}
	/* A daemon whose pid is still awaited (pidfile) runs too. */
	bool live = svc_live(s) || s->state == SVC_ADOPTING;
	if (live && !s->next_cfg && e->change == CHANGE_LIVE) {
		svc_set_config(s, c, nc);
		how = UPDATED;
	} else if (live) {
		set_pending(s, c, nc);
		how = s->state == SVC_STARTING || s->state == SVC_ADOPTING || s->state == SVC_RUNNING
			      ? RESTARTED : CHANGED;
	} else {
		change_stopped(s, c, nc);
		how = CHANGED;
	}
	report_change(s, how, &e->keys, r);
	return how;
}

static void push(struct strv *list, const char *name)
{
	if (list)
		strv_push(list, name);
}

/* The live services that require one of restart[], directly or not, and
 * are not restarted for a change of their own: they stop first and start
 * again after it, which the reload's answer says too (the log did alone,
 * and a user trial took them for untouched).  sup->plan is the new one. */
static void note_dependents(struct supervisor *sup, struct service **restart, size_t n, struct strv *out)
{
	const struct plan *p = sup->plan;
	bool *seen = xcalloc(p->n + 1, sizeof(*seen)), *own = xcalloc(p->n + 1, sizeof(*own));
	size_t *pending = xcalloc(p->n + 1, sizeof(*pending)), npending = 0;

	for (size_t i = 0; i < n; i++) {
		seen[restart[i]->index] = own[restart[i]->index] = true;
		pending[npending++] = restart[i]->index;
	}
	while (npending) {
		size_t i = pending[--npending];
		PLAN_EACH_EDGE(&p->required_by, i, j) {
			if (seen[j] || !svc_live(sup->svcs[j]))
				continue;
			seen[j] = true;
			pending[npending++] = j;
		}
	}
	for (size_t i = 0; i < p->n; i++)
		if (seen[i] && !own[i])
			strv_push(out, sup->svcs[i]->name);
	free(seen);
	free(own);
	free(pending);
}

void stack_reload(struct supervisor *sup, struct cohort_config *nc, struct plan *np,
		  struct reload_report *r)
{
	struct reload_diff diff;
	struct service **svcs = xcalloc(np->n + 1, sizeof(*svcs));
	struct service **restart = xcalloc(np->n + 1, sizeof(*restart));
	size_t nrestart = 0, nadded = 0, nchanged = 0, nremoved = 0;

	reload_diff(sup, nc, &diff);
	for (size_t i = 0; i < diff.n; i++) {
		const struct svc_diff *e = &diff.v[i];
		struct service *s = stack_find(sup, e->name);
		if (e->change == CHANGE_REMOVED) {
			leave(sup, s);
			push(r ? &r->removed : NULL, s->name);
			nremoved++;
			continue;
		}
		struct svc_config *c = nc->services[i];	/* diff.v[i] is of services[i] */
		if (s && s->removed) {	/* removed by an earlier reload, back now */
			unleave(sup, s);
			s->want = c->autostart ? WANT_UP : WANT_DOWN;
		}
		bool touched = !s || s->removed || s->index >= sup->plan->n ||
			       sup->plan->phase[s->index] != np->phase[i];
		if (!s) {
			s = svc_new(sup, c, nc, i);
			s->want = c->autostart ? WANT_UP : WANT_DOWN;
			map_put(&sup->by_name, s->name, s);
			push(r ? &r->added : NULL, s->name);
			nadded++;
		} else {
			enum outcome how = change_service(s, e, c, nc, r);
			nchanged += how != KEPT;
			touched |= how != KEPT;
			if (how == RESTARTED)
				restart[nrestart++] = s;
		}
		s->reload_touched = touched;
		s->index = i;
		svcs[i] = s;
	}
	reload_diff_free(&diff);

	free(sup->svcs);
	sup->svcs = svcs;
	plan_free(sup->plan);
	sup->plan = np;
	stack_recount(sup);	/* services moved between phases, some left */
	if (!sup->stack_up && sup->phase_open > np->nphases)
		sup->phase_open = np->nphases;
	log_info(NULL, "reload: %zu added, %zu removed, %zu changed, %zu unchanged", nadded, nremoved,
		 nchanged, np->n - nadded - nchanged);
	if (r)
		note_dependents(sup, restart, nrestart, &r->dependents);
	/* Changed and running: restarted, what requires them stopping first. */
	for (size_t i = 0; i < nrestart; i++)
		svc_fire(restart[i], SE_WANT_RESTART, "");
	free(restart);
	for (size_t i = 0; i < np->n; i++)
		stack_queue(sup, svcs[i]);
	for (size_t i = 0; i < sup->nleaving; i++)
		stack_queue(sup, sup->leaving[i]);
	stack_settle(sup);
	/* A start waiting for a service this reload removed is over. */
	if (sup->hooks.reloaded)
		sup->hooks.reloaded(sup->hooks.arg);
}
