/*
 * stack.c - the services together.  One reconcile step per service
 * compares what it should be doing (want_up) with what it is doing (state)
 * and, given its dependencies, the start-up phase and a shutdown in
 * progress, fires the one event that moves it on: START, BLOCK or STOP.
 *
 * A change of one service marks the services it may affect (what requires
 * it, what it requires) dirty; stack_settle() runs reconcile over the
 * dirty set until nothing moves.  The phase gate opens phase N+1 once every
 * autostart service of phase N is running, exited or failed.
 */
#include "autoconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "log.h"

struct service *stack_find(const struct cohortd *d, const char *name)
{
	return map_get(&d->by_name, name);
}

bool svc_ready_for_dependents(const struct service *s)
{
	return s->state == SVC_RUNNING || s->state == SVC_EXITED;
}

static unsigned phase_of(const struct cohortd *d, const struct service *s)
{
	/* A service reload removed stops before everything else. */
	return s->index < d->plan->n ? d->plan->phase[s->index] : d->plan->nphases + 1;
}

static bool in_progress(const struct service *s)
{
	return s->state == SVC_STARTING || s->state == SVC_RUNNING || s->state == SVC_STOPPING;
}

void stack_dirty(struct cohortd *d, struct service *s)
{
	if (s->dirty)
		return;
	s->dirty = true;
	if (d->ndirty == d->dirty_cap) {
		d->dirty_cap = d->dirty_cap ? d->dirty_cap * 2 : 64;
		d->dirty = xrealloc(d->dirty, d->dirty_cap * sizeof(*d->dirty));
	}
	d->dirty[d->ndirty++] = s;
}

/* The first required service that is not ready (or not wanted), or NULL. */
static struct service *missing_dependency(const struct cohortd *d, const struct service *s)
{
	if (s->index >= d->plan->n)
		return NULL;
	PLAN_EACH_EDGE(&d->plan->requires, s->index, j) {
		struct service *t = d->svcs[j];
		if (!svc_ready_for_dependents(t) || !t->want_up || t->restarting || t->dep_lost)
			return t;
	}
	return NULL;
}

static const char *dep_state(const struct service *t)
{
	if (t->restarting)
		return "restarting";
	if (t->dep_lost && svc_ready_for_dependents(t))
		return "going down";
	return t->want_up ? svc_state_name(t->state) : "not wanted up";
}

/* A service waiting on a failed dependency will not move on its own: for
 * the phase gate it counts as settled. */
static bool blocked_by_failure(const struct cohortd *d, const struct service *s, unsigned depth)
{
	if (s->state != SVC_WAITING || s->index >= d->plan->n || depth > 64)
		return false;
	PLAN_EACH_EDGE(&d->plan->requires, s->index, j) {
		struct service *t = d->svcs[j];
		if (t->state == SVC_FAILED || (!t->want_up && !in_progress(t)) ||
		    blocked_by_failure(d, t, depth + 1))
			return true;
	}
	return false;
}

/* An `after` service still on its way up (ordering only: one that is
 * down and not wanted, or failed, does not hold anything back). */
static struct service *pending_after(const struct cohortd *d, const struct service *s)
{
	if (s->index >= d->plan->n)
		return NULL;
	PLAN_EACH_EDGE(&d->plan->after, s->index, j) {
		struct service *t = d->svcs[j];
		if (t->want_up && (t->state == SVC_STARTING || t->state == SVC_BACKOFF ||
				   t->state == SVC_STOPPED ||
				   (t->state == SVC_WAITING && !blocked_by_failure(d, t, 0))))
			return t;
	}
	return NULL;
}

bool stack_blocked(const struct cohortd *d, const struct service *s)
{
	if (s->state != SVC_WAITING || !d->stack_up)
		return false;
	if (blocked_by_failure(d, s, 0))
		return true;
	const struct service *dep = missing_dependency(d, s);
	return dep && !dep->want_up;
}

static bool settled(const struct cohortd *d, const struct service *s)
{
	return s->state == SVC_RUNNING || s->state == SVC_EXITED || s->state == SVC_FAILED ||
	       blocked_by_failure(d, s, 0);
}

/* May s stop now, or must it wait for services above it? */
static bool stop_allowed(const struct cohortd *d, const struct service *s, const char **who)
{
	if (d->shutting_down) {
		/* Reverse phase order: nothing of a higher phase still live. */
		unsigned ph = phase_of(d, s);
		for (size_t i = 0; i < d->nleaving; i++)
			if (d->leaving[i] != s && svc_live(d->leaving[i]) && ph <= d->plan->nphases) {
				*who = d->leaving[i]->name;
				return false;
			}
		for (size_t i = 0; i < d->plan->n; i++) {
			const struct service *t = d->svcs[i];
			if (t != s && in_progress(t) && phase_of(d, t) > ph) {
				*who = t->name;
				return false;
			}
		}
		return true;
	}
	if (s->index >= d->plan->n)
		return true;
	PLAN_EACH_EDGE(&d->plan->required_by, s->index, j) {
		const struct service *t = d->svcs[j];
		if (in_progress(t)) {
			*who = t->name;
			return false;
		}
	}
	return true;
}

static void reconcile_down(struct cohortd *d, struct service *s)
{
	const char *who = NULL;
	char r[200];

	switch (s->state) {
	case SVC_STARTING:
	case SVC_RUNNING:
		if (!stop_allowed(d, s, &who)) {
			log_debug(s->name, "stop waits for %s", who);
			return;
		}
		if (s->stop_cause == STOP_NONE)
			s->stop_cause = STOP_WANTED;
		snprintf(r, sizeof(r), "%s", d->shutting_down ? "shutting down" : "stop requested");
		svc_fire(s, SE_STOP, r);
		break;
	case SVC_WAITING:
	case SVC_BACKOFF:
	case SVC_FAILED:
		svc_fire(s, SE_STOP, d->shutting_down ? "shutting down" : "stop requested");
		break;
	default:
		break;
	}
}

static void touch(struct cohortd *d, struct service *s);

static void reconcile(struct cohortd *d, struct service *s)
{
	char r[256];
	const char *who;

	if (!s->want_up) {
		reconcile_down(d, s);
		return;
	}
	struct service *dep = missing_dependency(d, s);
	if (!dep && s->dep_lost) {	/* what waited on it going down may go on */
		s->dep_lost = false;
		touch(d, s);
	}
	if (s->state == SVC_STARTING || s->state == SVC_RUNNING) {
		if (dep) {
			/* Its dependents stop first: they see it going down. */
			if (!stop_allowed(d, s, &who)) {
				if (!s->dep_lost) {
					s->dep_lost = true;
					touch(d, s);
				}
				log_debug(s->name, "stop waits for %s", who);
				return;
			}
			snprintf(r, sizeof(r), "requires %s, which is %s", dep->name, dep_state(dep));
			s->stop_cause = STOP_DEPENDENCY;
			svc_fire(s, SE_STOP, r);
		} else if (s->restarting && stop_allowed(d, s, &who)) {
			s->stop_cause = STOP_RESTART;
			svc_fire(s, SE_STOP, s->next_cfg ? "definition changed by reload" : "restart requested");
		}
		return;
	}
	bool startable = s->state == SVC_STOPPED || s->state == SVC_WAITING ||
			 (s->state == SVC_BACKOFF && (!ev_is_active(&s->timer) || s->kick)) ||
			 (s->state == SVC_FAILED && (s->trial_due || s->kick)) ||
			 (s->state == SVC_EXITED && s->kick);
	if (!startable)
		return;
	struct service *before = pending_after(d, s);
	if (!d->stack_up && phase_of(d, s) > d->phase_open) {
		snprintf(r, sizeof(r), "phase %u starts once phase %u is ready", phase_of(d, s),
			 d->phase_open);
		svc_fire(s, SE_BLOCK, r);
	} else if (dep) {
		snprintf(r, sizeof(r), "requires %s, which is %s", dep->name, dep_state(dep));
		svc_fire(s, SE_BLOCK, r);
	} else if (before) {
		snprintf(r, sizeof(r), "after %s, which is %s", before->name, svc_state_name(before->state));
		svc_fire(s, SE_BLOCK, r);
	} else {
		if (s->state == SVC_FAILED && s->trial_due && !s->kick)
			snprintf(r, sizeof(r), "trial start (breaker half-open)");
		else if (s->state == SVC_BACKOFF)
			snprintf(r, sizeof(r), "restart %u", s->restarts + 1);
		else
			snprintf(r, sizeof(r), "%s", s->started_once ? "starting again" : "starting");
		svc_fire(s, SE_START, r);
	}
}

/* Start-up: opens the next phase once the current one has settled. */
static void advance_phases(struct cohortd *d)
{
	const struct plan *p = d->plan;

	while (!d->stack_up && !d->shutting_down) {
		unsigned ph = d->phase_open;
		for (size_t k = p->phase_start[ph]; k < p->phase_start[ph + 1]; k++) {
			struct service *s = d->svcs[p->order[k]];
			if (s->cfg->autostart && s->want_up && !settled(d, s))
				return;
		}
		unsigned next = ph + 1;
		while (next <= p->nphases && p->phase_start[next + 1] == p->phase_start[next])
			next++;
		if (next > p->nphases) {
			size_t running = 0;
			for (size_t i = 0; i < p->n; i++)
				running += d->svcs[i]->state == SVC_RUNNING;
			d->stack_up = true;
			log_info(NULL, "stack is up: %zu of %zu services running", running, p->n);
			return;
		}
		log_info(NULL, "phase %u is ready: starting phase %u", ph, next);
		d->phase_open = next;
		for (size_t k = p->phase_start[next]; k < p->phase_start[next + 1]; k++)
			stack_dirty(d, d->svcs[p->order[k]]);
	}
}

bool stack_all_down(const struct cohortd *d)
{
	for (size_t i = 0; i < d->plan->n; i++)
		if (svc_live(d->svcs[i]))
			return false;
	for (size_t i = 0; i < d->nleaving; i++)
		if (svc_live(d->leaving[i]))
			return false;
	return true;
}

/* Frees services reload removed, once they have stopped. */
static void drop_leaving(struct cohortd *d)
{
	size_t kept = 0;

	for (size_t i = 0; i < d->nleaving; i++) {
		struct service *s = d->leaving[i];
		if (svc_live(s) || s->state == SVC_STOPPING) {
			d->leaving[kept++] = s;
			continue;
		}
		log_info(s->name, "removed");
		map_del(&d->by_name, s->name);
		daemon_release_service(d, s);
	}
	d->nleaving = kept;
}

void stack_settle(struct cohortd *d)
{
	if (d->settling)
		return;
	d->settling = true;
	for (unsigned rounds = 0; d->ndirty && rounds < 100000; rounds++) {
		struct service *s = d->dirty[--d->ndirty];
		s->dirty = false;
		reconcile(d, s);
		if (!d->ndirty)
			advance_phases(d);
	}
	d->settling = false;
	if (d->nleaving)
		drop_leaving(d);
	if (d->shutting_down && stack_all_down(d))
		ev_break(d->loop, EVBREAK_ALL);
}

/* s and the services whose next step may depend on s. */
static void touch(struct cohortd *d, struct service *s)
{
	stack_dirty(d, s);
	if (s->index < d->plan->n) {
		PLAN_EACH_EDGE(&d->plan->required_by, s->index, j)
			stack_dirty(d, d->svcs[j]);
		PLAN_EACH_EDGE(&d->plan->requires, s->index, j)
			stack_dirty(d, d->svcs[j]);
		PLAN_EACH_EDGE(&d->plan->after_by, s->index, j)
			stack_dirty(d, d->svcs[j]);
	}
}

void stack_changed(struct cohortd *d, struct service *s, enum svc_state from)
{
	(void)from;
	touch(d, s);
	if (d->shutting_down) {
		/* A lower phase may stop once this one is down. */
		for (size_t i = 0; i < d->plan->n; i++)
			if (in_progress(d->svcs[i]))
				stack_dirty(d, d->svcs[i]);
	}
	stack_settle(d);
}

void stack_start(struct cohortd *d)
{
	const struct plan *p = d->plan;

	d->phase_open = 1;
	while (d->phase_open < p->nphases && p->phase_start[d->phase_open + 1] == p->phase_start[d->phase_open])
		d->phase_open++;
	for (size_t i = 0; i < p->n; i++) {
		d->svcs[i]->want_up = d->svcs[i]->cfg->autostart;
		stack_dirty(d, d->svcs[i]);
	}
	stack_settle(d);
	advance_phases(d);
}

void stack_want(struct cohortd *d, struct service *s, bool up, bool restart)
{
	if (up) {
		s->want_up = true;
		if (s->state == SVC_BACKOFF)
			s->kick = true;	/* asked for now: no need to wait the delay out */
		if (s->state == SVC_EXITED || s->state == SVC_FAILED) {
			/* An explicit start: a fresh breaker and backoff. */
			s->kick = true;
			s->failures = 0;
			breaker_reset(&s->breaker);
			s->started_once = false;
		}
		if (restart && (s->state == SVC_STARTING || s->state == SVC_RUNNING))
			s->restarting = true;	/* what requires it stops first */
		else if (restart)
			s->kick = true;
	} else {
		s->want_up = false;
		s->kick = false;
		s->restarting = false;
	}
	touch(d, s);
	stack_settle(d);
}
