/*
 * decide.c - the stack's decision: what one service should do now, given
 * every service's state and wanted state, the dependencies (the plan),
 * the start-up phase gate and a shutdown in progress.
 *
 * Pure: it reads the supervisor and its services and returns a decision
 * (an event and its reason); it starts, signals and frees nothing, and no
 * loop is needed.  stack.c applies the decisions; the unit tests
 * (tests/unit/test_decide.c) drive it with services made of data alone.
 *
 * The rules, in the order they are looked at:
 *   - wanted down: stop, once nothing still running requires it (in a
 *     shutdown: once nothing of a higher phase still runs);
 *   - wanted up and live: stop when a service it requires went (once its
 *     own dependents have, which meanwhile see it "going down"), or when a
 *     restart was asked for;
 *   - wanted up and not live: start when it may (stopped or waiting; a
 *     backoff whose delay is over; failed with the breaker's cooldown
 *     over; a fresh start asked for) and nothing holds it (the phase gate,
 *     a required service not ready, an `after` service on its way up);
 *     else wait, saying for what.
 */
#include "autoconfig.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "supervise.h"

bool svc_ready_for_dependents(const struct service *s)
{
	return s->state == SVC_RUNNING || s->state == SVC_EXITED;
}

static unsigned phase_of(const struct supervisor *sup, const struct service *s)
{
	/* A service reload removed stops before everything else. */
	return s->index < sup->plan->n ? sup->plan->phase[s->index] : sup->plan->nphases + 1;
}

bool svc_busy(enum svc_state st)
{
	return st == SVC_STARTING || st == SVC_ADOPTING || st == SVC_RUNNING || st == SVC_STOPPING;
}

static bool in_progress(const struct service *s)
{
	return svc_busy(s->state);
}

/* The first required service that is not ready (or not wanted), or NULL.
 * For a live service, an instance of a template that was never ready (a
 * reload made instances 3 into 5) is not missing: s did without it. */
static const struct service *missing_dependency(const struct supervisor *sup, const struct service *s,
						bool live)
{
	if (s->index >= sup->plan->n)
		return NULL;
	PLAN_EACH_EDGE(&sup->plan->requires, s->index, j) {
		const struct service *t = sup->svcs[j];
		if (live && t->cfg->template_name && !t->ever_ready)
			continue;
		if (!svc_ready_for_dependents(t) || t->want == WANT_DOWN || svc_restarting(t) ||
		    t->going_down)
			return t;
	}
	return NULL;
}

static const char *dep_state(const struct service *t)
{
	if (svc_restarting(t))
		return "restarting";
	if (t->going_down && svc_ready_for_dependents(t))
		return "going down";
	if (t->want == WANT_DOWN)
		return "not wanted up";
	/* "which is backoff" read badly (a new user's trial) */
	return t->state == SVC_BACKOFF ? "in backoff" : svc_state_name(t->state);
}

/* A service waiting on a failed dependency will not move on its own: for
 * the phase gate it counts as settled. */
static bool blocked_by_failure(const struct supervisor *sup, const struct service *s, unsigned depth)
{
	if (s->state != SVC_WAITING || s->index >= sup->plan->n || depth > 64)
		return false;
	PLAN_EACH_EDGE(&sup->plan->requires, s->index, j) {
		const struct service *t = sup->svcs[j];
		if (t->state == SVC_FAILED || (t->want == WANT_DOWN && !in_progress(t)) ||
		    blocked_by_failure(sup, t, depth + 1))
			return true;
	}
	return false;
}

/* An `after` service still on its way up (ordering only: one that is
 * down and not wanted, or failed, does not hold anything back). */
static const struct service *pending_after(const struct supervisor *sup, const struct service *s)
{
	if (s->index >= sup->plan->n)
		return NULL;
	PLAN_EACH_EDGE(&sup->plan->after, s->index, j) {
		const struct service *t = sup->svcs[j];
		if (t->want != WANT_DOWN && (t->state == SVC_STARTING || t->state == SVC_ADOPTING ||
					     t->state == SVC_BACKOFF ||
					     t->state == SVC_STOPPED ||
					     (t->state == SVC_WAITING && !blocked_by_failure(sup, t, 0))))
			return t;
	}
	return NULL;
}

bool stack_blocked(const struct supervisor *sup, const struct service *s)
{
	if (s->state != SVC_WAITING || !sup->stack_up)
		return false;
	if (blocked_by_failure(sup, s, 0))
		return true;
	const struct service *dep = missing_dependency(sup, s, false);
	return dep && dep->want == WANT_DOWN;
}

bool stack_svc_settled(const struct supervisor *sup, const struct service *s)
{
	return !s->cfg->autostart || s->want == WANT_DOWN || s->state == SVC_RUNNING ||
	       s->state == SVC_EXITED || s->state == SVC_FAILED || blocked_by_failure(sup, s, 0);
}

bool stack_phase_settled(const struct supervisor *sup, unsigned ph)
{
	const struct plan *p = sup->plan;

	for (size_t k = p->phase_start[ph]; k < p->phase_start[ph + 1]; k++)
		if (!stack_svc_settled(sup, sup->svcs[p->order[k]]))
			return false;
	return true;
}

/* May s stop now, or must it wait for services above it (named in *who,
 * or in a shutdown a whole phase, in *who_phase)? */
static bool stop_allowed(const struct supervisor *sup, const struct service *s, const char **who,
			 unsigned *who_phase)
{
	if (sup->shutting_down) {
		/* Reverse phase order: nothing of a higher phase still live.
		 * The phases' tallies say it without a look at every service,
		 * which each of n stops would take (n^2 for a shutdown). */
		unsigned ph = phase_of(sup, s);
		for (size_t i = 0; i < sup->nleaving; i++)
			if (sup->leaving[i] != s && svc_live(sup->leaving[i]) && ph <= sup->plan->nphases) {
				*who = sup->leaving[i]->name;
				return false;
			}
		for (unsigned p = ph + 1; p <= sup->plan->nphases; p++)
			if (sup->busy[p]) {
				*who_phase = p;
				return false;
			}
		return true;
	}
	if (s->index >= sup->plan->n)
		return true;
	PLAN_EACH_EDGE(&sup->plan->required_by, s->index, j) {
		const struct service *t = sup->svcs[j];
		if (in_progress(t)) {
			*who = t->name;
			return false;
		}
	}
	return true;
}

static void fire(struct decision *out, enum svc_event ev, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void fire(struct decision *out, enum svc_event ev, const char *fmt, ...)
{
	va_list ap;

	out->fire = true;
	out->event = ev;
	va_start(ap, fmt);
	vsnprintf(out->reason, sizeof(out->reason), fmt, ap);
	va_end(ap);
}

static void decide_down(const struct supervisor *sup, const struct service *s, struct decision *out)
{
	const char *why = sup->shutting_down ? "shutting down" : "stop requested";

	switch (s->state) {
	case SVC_STARTING:
	case SVC_ADOPTING:
	case SVC_RUNNING:
		if (!stop_allowed(sup, s, &out->waits_for, &out->waits_phase))
			return;
		out->cause = s->stop_cause == STOP_NONE ? STOP_WANTED : s->stop_cause;
		fire(out, SE_STOP, "%s", why);
		break;
	case SVC_WAITING:
	case SVC_BACKOFF:
	case SVC_FAILED:
		out->cause = s->stop_cause;
		fire(out, SE_STOP, "%s", why);
		break;
	default:
		break;
	}
}

/* Wanted up and live: a required service went, or a restart is asked. */
static void decide_live(const struct supervisor *sup, const struct service *s,
			const struct service *dep, struct decision *out)
{
	const char *who = NULL;
	unsigned who_phase = 0;

	if (dep) {
		/* Its dependents stop first: they see it going down. */
		if (!stop_allowed(sup, s, &out->waits_for, &out->waits_phase)) {
			out->going_down = true;
			return;
		}
		out->cause = STOP_DEPENDENCY;
		fire(out, SE_STOP, "requires %s, which is %s", dep->name, dep_state(dep));
	} else if (svc_restarting(s) && stop_allowed(sup, s, &who, &who_phase)) {
		out->cause = STOP_RESTART;
		fire(out, SE_STOP, "%s", s->next_cfg ? "definition changed by reload" : "restart requested");
	}
}

const struct service *stack_leaving_live(const struct supervisor *sup)
{
	for (size_t i = 0; i < sup->nleaving; i++)
		if (svc_live(sup->leaving[i]))
			return sup->leaving[i];
	return NULL;
}

/* May a service that is not live start again by itself now? */
static bool may_start(const struct service *s)
{
	bool asked = s->want == WANT_RESTART;

	switch (s->state) {
	case SVC_STOPPED:
	case SVC_WAITING:
		return true;
	case SVC_BACKOFF:
		return s->delay_over || asked;
	case SVC_FAILED:
		return s->breaker_trial || asked;
	case SVC_EXITED:
		return asked;
	default:
		return false;
	}
}

void stack_decide(const struct supervisor *sup, const struct service *s, struct decision *out)
{
	*out = (struct decision){.cause = s->stop_cause, .going_down = s->going_down};
	if (s->want == WANT_DOWN) {
		decide_down(sup, s, out);
		return;
	}
	bool live = s->state == SVC_STARTING || s->state == SVC_RUNNING;
	const struct service *dep = missing_dependency(sup, s, live);
	if (!dep)	/* what waited on it going down may go on */
		out->going_down = false;
	if (s->state == SVC_STARTING || s->state == SVC_ADOPTING || s->state == SVC_RUNNING) {
		decide_live(sup, s, dep, out);
		return;
	}
	if (!may_start(s))
		return;
	const struct service *before = pending_after(sup, s);
	const struct service *gone = s->state == SVC_STOPPED || s->state == SVC_WAITING ? stack_leaving_live(sup) : NULL;
	if (!sup->stack_up && phase_of(sup, s) > sup->phase_open)
		fire(out, SE_BLOCK, "phase %u starts once phase %u is ready", phase_of(sup, s),
		     sup->phase_open);
	else if (dep)
		fire(out, SE_BLOCK, "requires %s, which is %s", dep->name, dep_state(dep));
	else if (before)
		fire(out, SE_BLOCK, "after %s, which is %s", before->name,
		     before->state == SVC_BACKOFF ? "in backoff" : svc_state_name(before->state));
	else if (gone)	/* as supervisorctl update: what a reload removed stops first (its port, its files) */
		fire(out, SE_BLOCK, "%s, removed by the reload, is still stopping", gone->name);
	else if (s->state == SVC_FAILED && s->breaker_trial && s->want != WANT_RESTART)
		fire(out, SE_START, "trial start (breaker half-open)");
	else if (s->state == SVC_BACKOFF)
		fire(out, SE_START, "restart %u", s->restarts + 1);
	else
		fire(out, SE_START, "%s", s->started_once ? "starting again" : "starting");
}
