/*
 * reload.c - applying a new config to a running stack, all or nothing.
 *
 * The new file is loaded and planned apart from the running one; any error
 * keeps the old config and is reported whole.  Otherwise services are
 * matched by name: an unchanged definition keeps its process (only the
 * config pointer moves to the new config), a changed one is restarted with
 * the new definition, a new one is added and a removed one stopped, then
 * dropped.  Services hold a reference on the config they use, so the old
 * config lives until the last service using it has moved on.
 */
#include "autoconfig.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "log.h"

static bool str_differs(const char *a, const char *b)
{
	return (a && b) ? strcmp(a, b) != 0 : a != b;
}

/* [cohort] keys are read at start-up; say which changes wait for a restart. */
static void warn_daemon_changes(const struct cohort_config *o, const struct cohort_config *n,
				struct strv *restart)
{
	const struct {
		const char *key;
		bool changed;
	} keys[] = {
		{"run_dir", str_differs(o->run_dir, n->run_dir)},
		{"state_dir", str_differs(o->state_dir, n->state_dir)},
		{"log_dir", str_differs(o->log_dir, n->log_dir)},
		{"control_mode", o->control_mode != n->control_mode},
		{"control_group", str_differs(o->control_group, n->control_group)},
		{"bus_mode", o->bus_mode != n->bus_mode},
		{"bus_listen", str_differs(o->bus_listen, n->bus_listen)},
		{"bus_fsync", o->bus_fsync != n->bus_fsync},
		{"bus_max_message", o->bus_max_message != n->bus_max_message},
		{"bus_idle_timeout", o->bus_idle_timeout_ms != n->bus_idle_timeout_ms},
	};
	for (size_t i = 0; i < ARRAY_LEN(keys); i++)
		if (keys[i].changed) {
			log_warn(NULL, "reload: [cohort] %s changed: it takes effect when cohortd restarts",
				 keys[i].key);
			if (restart)
				strv_push(restart, keys[i].key);
		}
}

static void leave(struct cohortd *d, struct service *s)
{
	s->removed = true;
	s->index = SIZE_MAX;
	s->want_up = false;
	d->leaving = xrealloc(d->leaving, (d->nleaving + 1) * sizeof(*d->leaving));
	d->leaving[d->nleaving++] = s;
}

static void unleave(struct cohortd *d, struct service *s)
{
	for (size_t i = 0; i < d->nleaving; i++) {
		if (d->leaving[i] == s) {
			d->leaving[i] = d->leaving[--d->nleaving];
			break;
		}
	}
	s->removed = false;
}

static void push(struct strv *list, const char *name)
{
	if (list)
		strv_push(list, name);
}

void reload_report_free(struct reload_report *r)
{
	strv_free(&r->errors);
	strv_free(&r->added);
	strv_free(&r->removed);
	strv_free(&r->changed);
	strv_free(&r->restart);
}

int reload_config(struct cohortd *d, struct reload_report *r)
{
	struct strv *errors = r ? &r->errors : NULL, *added = r ? &r->added : NULL;
	struct strv *removed = r ? &r->removed : NULL, *changed = r ? &r->changed : NULL;
	struct diag diag = {0};
	struct cohort_config *nc = config_load(d->config_path, &diag);
	struct plan *np = (nc && !diag.count) ? plan_build(nc, &diag) : NULL;

	if (diag.count) {
		log_error(NULL, "reload: %s has %zu error%s; still running the old config:", d->config_path,
			  diag.count, diag.count == 1 ? "" : "s");
		if (errors && diag.count > diag.lines.n)
			strv_push_owned(errors, xasprintf("... and %zu more errors", diag.count - diag.lines.n));
		for (size_t i = 0; i < diag.lines.n; i++) {
			log_error(NULL, "  %s", diag.lines.v[i]);
			if (errors)
				strv_push(errors, diag.lines.v[i]);
		}
		diag_free(&diag);
		plan_free(np);
		config_unref(nc);
		return -1;
	}
	warn_daemon_changes(d->cfg, nc, r ? &r->restart : NULL);

	struct service **svcs = xcalloc(np->n + 1, sizeof(*svcs));
	struct service **restart = xcalloc(np->n + 1, sizeof(*restart));
	size_t nrestart = 0, nadded = 0, nchanged = 0, nremoved = 0;

	for (size_t i = 0; i < np->n; i++) {
		struct svc_config *c = nc->services[i];
		struct service *s = stack_find(d, c->name);

		if (s && s->removed) {
			unleave(d, s);
			s->want_up = c->autostart;
		}
		if (!s) {
			s = svc_new(d, c, nc, i);
			s->want_up = c->autostart;
			map_put(&d->by_name, s->name, s);
			push(added, s->name);
			nadded++;
		} else if (svc_config_equal(s->next_cfg ? s->next_cfg : s->cfg, c)) {
			if (s->next_cfg) {	/* changed earlier, still stopping */
				config_unref(s->next_owner);
				s->next_cfg = c;
				s->next_owner = config_ref(nc);
			} else {
				svc_set_config(s, c, nc);
			}
		} else {
			push(changed, s->name);
			nchanged++;
			if (svc_live(s)) {
				config_unref(s->next_owner);
				s->next_cfg = c;
				s->next_owner = config_ref(nc);
				restart[nrestart++] = s;
			} else {
				/* A definition from an earlier reload, waiting for
				 * the next spawn, is out of date now. */
				if (s->next_cfg) {
					config_unref(s->next_owner);
					s->next_cfg = NULL;
					s->next_owner = NULL;
				}
				/* Turning autostart on or off is a wish to have it up or down. */
				if (s->cfg->autostart != c->autostart)
					s->want_up = c->autostart;
				svc_set_config(s, c, nc);
				s->failures = 0;
				breaker_reset(&s->breaker);
				if (s->state == SVC_FAILED && s->want_up)
					s->kick = true;
			}
		}
		s->index = i;
		svcs[i] = s;
	}
	for (size_t i = 0; i < d->plan->n; i++) {
		struct service *s = d->svcs[i];
		if (!config_find(nc, s->name)) {
			leave(d, s);
			push(removed, s->name);
			nremoved++;
		}
	}

	free(d->svcs);
	d->svcs = svcs;
	plan_free(d->plan);
	d->plan = np;
	config_unref(d->cfg);
	d->cfg = nc;
	if (!d->stack_up && d->phase_open > np->nphases)
		d->phase_open = np->nphases;
	if (log_file_configure(nc->log_file) < 0)	/* a new log_file applies now */
		log_error(NULL, "reload: cannot open the log file %s: %s; still logging to %s", nc->log_file,
			  strerror(errno), log_file_path() ? log_file_path() : "stderr only");

	log_info(NULL, "reload: %zu added, %zu removed, %zu changed, %zu unchanged", nadded, nremoved,
		 nchanged, np->n - nadded - nchanged);
	/* Changed and running: restarted, what requires them stopping first. */
	for (size_t i = 0; i < nrestart; i++) {
		struct service *s = restart[i];
		if (s->state == SVC_STARTING || s->state == SVC_RUNNING)
			s->restarting = true;
	}
	free(restart);
	for (size_t i = 0; i < np->n; i++)
		stack_dirty(d, svcs[i]);
	for (size_t i = 0; i < d->nleaving; i++)
		stack_dirty(d, d->leaving[i]);
	stack_settle(d);
	/* A start waiting for a service this reload removed is over. */
	for (struct ctl_client *c = d->ctl.clients, *next; c; c = next) {
		next = c->next;
		ctl_wait_event(c);
	}
	return 0;
}
