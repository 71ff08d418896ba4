/*
 * reload.c - applying a new config to a running stack, all or nothing.
 *
 * The new file is loaded and planned apart from the running one; any error
 * keeps the old config and is reported whole.  Otherwise services are
 * matched by name: an unchanged definition keeps its process (only the
 * config pointer moves to the new config); a definition changed only in
 * keys the key table marks KEY_LIVE is applied to the running process; one
 * changed in what the process itself sees (KEY_RESTART) is restarted with
 * it; a new one is added and a removed one stopped, then dropped.
 * Services hold a reference on the config they use, so the old config
 * lives until the last service using it has moved on.
 *
 * [cohort] keys are compared with what runs, not with the previous file:
 * a live key with the config in use, a start-up key with the config
 * cohortd started with (d->started_cfg), so a start-up key is reported at
 * every reload until cohortd restarts, and not once it is put back.
 */
#include "autoconfig.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_keys.h"
#include "daemon.h"
#include "log.h"

static const void *field(const void *cfg, const struct key_def *k)
{
	return (const char *)cfg + k->offset;
}

/* Says which [cohort] keys of the new config apply now, and which differ
 * from the value cohortd started with (and wait for its restart). */
static void compare_daemon(const struct cohortd *d, const struct cohort_config *n,
			   struct strv *applied, struct strv *restart)
{
	for (size_t i = 0; i < config_nkeys; i++) {
		const struct key_def *k = &config_keys[i];
		if (k->section != KS_DAEMON)
			continue;
		bool live = k->apply == KEY_LIVE;
		const struct cohort_config *running = live ? d->cfg : d->started_cfg;
		if (key_equal(k, field(running, k), field(n, k)))
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

/* The live [cohort] keys the bus copied at start-up. */
static void apply_daemon(struct cohortd *d)
{
	struct bus_policy pol;

	bus_policy_from_config(&pol, d->cfg);
	bus_set_policy(&d->bus, &pol);
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

/* The definition c replaces the one a pending change (or s) holds. */
static void set_pending(struct service *s, struct svc_config *c, struct cohort_config *nc)
{
	config_unref(s->next_owner);
	s->next_cfg = c;
	s->next_owner = config_ref(nc);
}

enum change { UNCHANGED, RESTARTED, UPDATED, CHANGED };

/* Says what a change is in the report and the log. */
static void report_change(struct service *s, enum change ch, const struct strv *keys,
			  struct reload_report *r)
{
	static const char *const what[] = {
		[RESTARTED] = "restarts it",
		[UPDATED] = "applied to the running service",
		[CHANGED] = "in effect at its next start",
	};
	char *list = strv_join(keys, ", ");

	log_info(s->name, "reload: %s changed: %s", list, what[ch]);
	free(list);
	if (!r)
		return;
	strv_push(&r->changed, s->name);
	strv_push_owned(&r->keys, strv_join(keys, " "));
	if (ch == RESTARTED)
		strv_push(&r->restarted, s->name);
	else if (ch == UPDATED)
		strv_push(&r->updated, s->name);
}

/*
 * s, already in the stack, gets the definition c.  It is compared with
 * what s will run next (a change still pending from an earlier reload, or
 * what runs): a change only in KEY_LIVE keys applies to a running process
 * at once; any other change to a running process waits for it to stop,
 * and restarts it when it is starting or running.  A service with no
 * process takes the new definition now.
 */
static enum change change_service(struct service *s, struct svc_config *c, struct cohort_config *nc,
				  struct reload_report *r)
{
	struct strv keys = {0};
	bool restart_keys;
	enum change ch;

	if (!svc_config_diff(s->next_cfg ? s->next_cfg : s->cfg, c, &keys, &restart_keys)) {
		if (s->next_cfg)	/* changed earlier, still stopping */
			set_pending(s, c, nc);
		else
			svc_set_config(s, c, nc);
		return UNCHANGED;
	}
	if (svc_live(s) && !s->next_cfg && !restart_keys) {
		svc_set_config(s, c, nc);
		ch = UPDATED;
	} else if (svc_live(s)) {
		set_pending(s, c, nc);
		ch = s->state == SVC_STARTING || s->state == SVC_RUNNING ? RESTARTED : CHANGED;
	} else {
		/* A definition from an earlier reload, waiting for the next
		 * spawn, is out of date now. */
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
		ch = CHANGED;
	}
	report_change(s, ch, &keys, r);
	strv_free(&keys);
	return ch;
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
}

int reload_config(struct cohortd *d, struct reload_report *r)
{
	struct strv *errors = r ? &r->errors : NULL, *added = r ? &r->added : NULL;
	struct strv *removed = r ? &r->removed : NULL;
	struct diag diag = {0};
	struct plan *np;
	struct cohort_config *nc = plan_load(d->config_path, &np, &diag);

	if (!nc) {
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
		return -1;
	}
	compare_daemon(d, nc, r ? &r->applied : NULL, r ? &r->restart : NULL);

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
		} else {
			enum change ch = change_service(s, c, nc, r);
			nchanged += ch != UNCHANGED;
			if (ch == RESTARTED)
				restart[nrestart++] = s;
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
	apply_daemon(d);
	instance_record(d);	/* a stop_signal or stop_timeout applied live */
	if (!d->stack_up && d->phase_open > np->nphases)
		d->phase_open = np->nphases;
	if (log_file_configure(nc->log_file) < 0)	/* a new log_file applies now */
		log_error(NULL, "reload: cannot open the log file %s: %s; still logging to %s", nc->log_file,
			  strerror(errno), log_file_path() ? log_file_path() : "stderr only");

	log_info(NULL, "reload: %zu added, %zu removed, %zu changed, %zu unchanged", nadded, nremoved,
		 nchanged, np->n - nadded - nchanged);
	/* Changed and running: restarted, what requires them stopping first. */
	for (size_t i = 0; i < nrestart; i++)
		restart[i]->restarting = true;
	free(restart);
	for (size_t i = 0; i < np->n; i++)
		stack_dirty(d, svcs[i]);
	for (size_t i = 0; i < d->nleaving; i++)
		stack_dirty(d, d->leaving[i]);
	stack_settle(d);
	/* A start waiting for a service this reload removed is over. */
	for (struct ctl_client *c = LIST_FIRST(&d->ctl.clients), *next; c; c = next) {
		next = LIST_NEXT(c, link);
		ctl_wait_event(c);
	}
	return 0;
}
