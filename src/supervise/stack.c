/*
 * stack.c - the services together: the shell around the stack's decision
 * (decide.c).
 *
 * A change of one service queues the services it may affect (what
 * requires it, what it requires, what starts after it); stack_settle()
 * asks decide.c about each queued service and fires the event it names,
 * until nothing moves.  The phase gate opens phase N+1 once phase N has
 * settled.  Commands reach a service as SE_WANT_* events (stack_want).
 */
#include "autoconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "supervise.h"

struct service *stack_find(const struct supervisor *sup, const char *name)
{
	return map_get(&sup->by_name, name);
}

int stack_match(const struct supervisor *sup, const char *name, struct strv *out, struct sbuf *why)
{
	const struct service *s = stack_find(sup, name);

	if (s && s->removed) {
		strv_push(out, s->name);
		return 1;
	}
	return config_match(sup->plan->cfg, name, out, why);
}

void stack_init(struct supervisor *sup, struct cohort_config *cfg, struct plan *plan)
{
	sup->plan = plan;
	sup->svcs = xcalloc(plan->n + 1, sizeof(*sup->svcs));
	for (size_t i = 0; i < plan->n; i++) {
		sup->svcs[i] = svc_new(sup, cfg->services[i], cfg, i);
		map_put(&sup->by_name, sup->svcs[i]->name, sup->svcs[i]);
	}
}

void stack_free(struct supervisor *sup)
{
	for (size_t i = 0; sup->svcs && i < sup->plan->n; i++) {
		children_forget(sup, sup->svcs[i]);
		svc_free(sup->svcs[i]);
	}
	for (size_t i = 0; i < sup->nleaving; i++) {
		children_forget(sup, sup->leaving[i]);
		svc_free(sup->leaving[i]);
	}
	children_free(sup);
	map_free(&sup->by_name);
	map_free(&sup->tokens);
	free(sup->svcs);
	free(sup->leaving);
	free(sup->queue);
	plan_free(sup->plan);
}

void stack_queue(struct supervisor *sup, struct service *s)
{
	if (s->queued)
		return;
	s->queued = true;
	if (sup->nqueued == sup->queue_cap) {
		sup->queue_cap = sup->queue_cap ? sup->queue_cap * 2 : 64;
		sup->queue = xrealloc(sup->queue, sup->queue_cap * sizeof(*sup->queue));
	}
	sup->queue[sup->nqueued++] = s;
}

void stack_touch(struct supervisor *sup, struct service *s)
{
	stack_queue(sup, s);
	if (s->index < sup->plan->n) {
		PLAN_EACH_EDGE(&sup->plan->required_by, s->index, j)
			stack_queue(sup, sup->svcs[j]);
		PLAN_EACH_EDGE(&sup->plan->requires, s->index, j)
			stack_queue(sup, sup->svcs[j]);
		PLAN_EACH_EDGE(&sup->plan->after_by, s->index, j)
			stack_queue(sup, sup->svcs[j]);
	}
}

/* Does what the decision for s says. */
static void reconcile(struct supervisor *sup, struct service *s)
{
	struct decision dc;

	stack_decide(sup, s, &dc);
	if (dc.going_down != s->going_down) {
		s->going_down = dc.going_down;
		stack_touch(sup, s);	/* its dependents see it going, or back */
	}
	if (dc.waits_for)
		log_debug(s->name, "stop waits for %s", dc.waits_for);
	if (!dc.fire)
		return;
	if (dc.event == SE_STOP)
		s->stop_cause = dc.cause;
	svc_fire(s, dc.event, dc.reason);
}

/* Start-up: opens the next phase once the current one has settled. */
static void advance_phases(struct supervisor *sup)
{
	const struct plan *p = sup->plan;

	while (!sup->stack_up && !sup->shutting_down) {
		unsigned ph = sup->phase_open;
		if (!stack_phase_settled(sup, ph))
			return;
		unsigned next = ph + 1;
		while (next <= p->nphases && p->phase_start[next + 1] == p->phase_start[next])
			next++;
		if (next > p->nphases) {
			size_t running = 0;
			for (size_t i = 0; i < p->n; i++)
				running += sup->svcs[i]->state == SVC_RUNNING;
			sup->stack_up = true;
			log_info(NULL, "stack is up: %zu of %zu services running", running, p->n);
			return;
		}
		log_info(NULL, "phase %u is ready: starting phase %u", ph, next);
		sup->phase_open = next;
		for (size_t k = p->phase_start[next]; k < p->phase_start[next + 1]; k++)
			stack_queue(sup, sup->svcs[p->order[k]]);
	}
}

bool stack_all_down(const struct supervisor *sup)
{
	for (size_t i = 0; i < sup->plan->n; i++)
		if (svc_live(sup->svcs[i]))
			return false;
	for (size_t i = 0; i < sup->nleaving; i++)
		if (svc_live(sup->leaving[i]))
			return false;
	return true;
}

/* Frees services reload removed, once they have stopped. */
static void drop_leaving(struct supervisor *sup)
{
	const struct supervise_hooks *h = &sup->hooks;
	size_t kept = 0;

	for (size_t i = 0; i < sup->nleaving; i++) {
		struct service *s = sup->leaving[i];
		if (svc_live(s) || s->state == SVC_STOPPING) {
			sup->leaving[kept++] = s;
			continue;
		}
		log_info(s->name, "removed");
		map_del(&sup->by_name, s->name);
		if (h->service_gone)
			h->service_gone(h->arg, s);
		children_forget(sup, s);
		svc_free(s);
	}
	sup->nleaving = kept;
}

void stack_settle(struct supervisor *sup)
{
	if (sup->settling)
		return;
	sup->settling = true;
	for (unsigned rounds = 0; sup->nqueued && rounds < 100000; rounds++) {
		struct service *s = sup->queue[--sup->nqueued];
		s->queued = false;
		reconcile(sup, s);
		if (!sup->nqueued)
			advance_phases(sup);
	}
	sup->settling = false;
	if (sup->nleaving)
		drop_leaving(sup);
	if (sup->shutting_down && stack_all_down(sup))
		ev_break(sup->loop, EVBREAK_ALL);
}

void stack_changed(struct supervisor *sup, struct service *s, enum svc_state from)
{
	(void)from;
	stack_touch(sup, s);
	if (sup->shutting_down) {
		/* A lower phase may stop once this one is down. */
		for (size_t i = 0; i < sup->plan->n; i++) {
			enum svc_state st = sup->svcs[i]->state;
			if (st == SVC_STARTING || st == SVC_ADOPTING || st == SVC_RUNNING || st == SVC_STOPPING)
				stack_queue(sup, sup->svcs[i]);
		}
	}
	stack_settle(sup);
}

void stack_start(struct supervisor *sup)
{
	const struct plan *p = sup->plan;

	sup->phase_open = 1;
	while (sup->phase_open < p->nphases &&
	       p->phase_start[sup->phase_open + 1] == p->phase_start[sup->phase_open])
		sup->phase_open++;
	for (size_t i = 0; i < p->n; i++) {
		struct service *s = sup->svcs[i];
		s->want = s->cfg->autostart ? WANT_UP : WANT_DOWN;
		stack_queue(sup, s);
	}
	stack_settle(sup);
	advance_phases(sup);
}

void stack_shutdown(struct supervisor *sup)
{
	sup->shutting_down = true;
	for (size_t i = 0; i < sup->plan->n; i++) {
		svc_fire(sup->svcs[i], SE_WANT_DOWN, "");
		stack_queue(sup, sup->svcs[i]);
	}
	for (size_t i = 0; i < sup->nleaving; i++)
		stack_queue(sup, sup->leaving[i]);
	stack_settle(sup);
	if (stack_all_down(sup))
		ev_break(sup->loop, EVBREAK_ALL);
}

void stack_want(struct supervisor *sup, struct service *s, enum svc_want want)
{
	static const enum svc_event events[] = {
		[WANT_DOWN] = SE_WANT_DOWN,
		[WANT_UP] = SE_WANT_UP,
		[WANT_RESTART] = SE_WANT_RESTART,
	};

	svc_fire(s, events[want], "");
	stack_touch(sup, s);
	stack_settle(sup);
}
