/*
 * stack.c - the services together: the shell around the stack's decision
 * (decide.c).
 *
 * A change of one service queues the services it may affect (what
 * requires it, what it requires, what starts after it); stack_settle()
 * asks decide.c about each queued service and fires the event it names,
 * until nothing moves.  The phase gate opens phase N+1 once phase N has
 * settled.  Commands reach a service as SE_WANT_* events (stack_want).
 *
 * Nothing here looks at every service for one event: 10,000 services
 * would make start-up and shutdown quadratic.  What a decision needs of
 * the whole stack is kept as tallies (live processes, services per state,
 * busy services per phase), updated where a state or a pid changes.
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

void stack_set_state(struct supervisor *sup, struct service *s, enum svc_state st)
{
	if (s->index < sup->plan->n) {
		unsigned ph = sup->plan->phase[s->index];
		sup->nstate[s->state]--;
		sup->nstate[st]++;
		sup->busy[ph] = sup->busy[ph] - svc_busy(s->state) + svc_busy(st);
	}
	s->state = st;
}

void stack_recount(struct supervisor *sup)
{
	const struct plan *p = sup->plan;

	free(sup->busy);
	sup->busy = xcalloc(p->nphases + 2, sizeof(*sup->busy));
	memset(sup->nstate, 0, sizeof(sup->nstate));
	for (size_t i = 0; i < p->n; i++) {
		const struct service *s = sup->svcs[i];
		sup->nstate[s->state]++;
		sup->busy[p->phase[i]] += svc_busy(s->state);
	}
	sup->settle_hint = 0;
}

static void settle_more_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct supervisor *sup = container_of(w, struct supervisor, settle_more);
	(void)loop;
	(void)revents;

	sup->settle_yielding = false;
	stack_settle(sup);
}

void stack_init(struct supervisor *sup, struct cohort_config *cfg, struct plan *plan)
{
	ev_timer_init(&sup->settle_more, settle_more_cb, 0, 0);
	sup->plan = plan;
	sup->svcs = xcalloc(plan->n + 1, sizeof(*sup->svcs));
	for (size_t i = 0; i < plan->n; i++) {
		sup->svcs[i] = svc_new(sup, cfg->services[i], cfg, i);
		map_put(&sup->by_name, sup->svcs[i]->name, sup->svcs[i]);
	}
	stack_recount(sup);
}

void stack_free(struct supervisor *sup)
{
	if (sup->loop)
		ev_timer_stop(sup->loop, &sup->settle_more);
	/* children_free() drops every child at once: a children_forget() per
	 * service looks at every child each, n^2 at exit. */
	for (size_t i = 0; sup->svcs && i < sup->plan->n; i++)
		svc_free(sup->svcs[i]);
	for (size_t i = 0; i < sup->nleaving; i++)
		svc_free(sup->leaving[i]);
	children_free(sup);
	map_free(&sup->by_name);
	map_free(&sup->tokens);
	free(sup->svcs);
	free(sup->leaving);
	free(sup->queue);
	free(sup->busy);
	plan_free(sup->plan);
}

/* Looks at queued services in one settle: a bound on one loop pass, not
 * on the work (the rest goes on at the next pass). */
#define SETTLE_ROUNDS 100000
/* ... and its time: each start is a vfork and an exec (about 0.5-1 ms),
 * and a phase of 3,000 started in one pass held the control socket,
 * exits and probes for 3 s (a new user's trial).  Past this, the rest
 * goes on at the next pass, after what waits has been served. */
#define SETTLE_BUDGET_MS 20

void stack_queue(struct supervisor *sup, struct service *s)
{
	if (s->queued)
		return;
	s->queued = true;
	if (sup->qhead && sup->nqueued == sup->queue_cap && sup->qhead >= sup->queue_cap / 2) {
		/* Half of it looked at already: moved down, not grown. */
		sup->nqueued -= sup->qhead;
		memmove(sup->queue, sup->queue + sup->qhead, sup->nqueued * sizeof(*sup->queue));
		sup->qhead = 0;
	}
	if (sup->nqueued == sup->queue_cap) {
		sup->queue_cap = sup->queue_cap ? sup->queue_cap * 2 : 64;
		sup->queue = xrealloc(sup->queue, sup->queue_cap * sizeof(*sup->queue));
	}
	sup->queue[sup->nqueued++] = s;
}

/* The next service to look at, first queued first: a phase starts in
 * the order of its file (a stack popped from the end started it last
 * to first, which a new user's trial found in the log). */
static struct service *unqueue(struct supervisor *sup)
{
	struct service *s = sup->queue[sup->qhead++];

	if (sup->qhead == sup->nqueued)
		sup->qhead = sup->nqueued = 0;
	s->queued = false;
	return s;
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
	else if (dc.waits_phase)
		log_debug(s->name, "stop waits for phase %u to stop", dc.waits_phase);
	if (!dc.fire)
		return;
	if (dc.event == SE_STOP)
		s->stop_cause = dc.cause;
	svc_fire(s, dc.event, dc.reason);
}

/*
 * Has phase ph settled (stack_phase_settled)?  This is asked each time the
 * queue runs dry, at every readiness of a start-up: a look at the whole
 * phase each time would cost n^2.  A look that finds a service not
 * settled begins there the next time, which most often finds it still on
 * its way, and else walks on to the next one; "settled" is said only
 * after a whole round, now, found every one settled.
 */
static bool phase_settled(struct supervisor *sup, unsigned ph)
{
	const struct plan *p = sup->plan;
	size_t from = p->phase_start[ph], n = p->phase_start[ph + 1] - from;
	size_t start = sup->settle_hint >= from && sup->settle_hint - from < n ? sup->settle_hint - from : 0;

	for (size_t k = 0; k < n; k++) {
		size_t at = from + (start + k) % n;
		if (!stack_svc_settled(sup, sup->svcs[p->order[at]])) {
			sup->settle_hint = at;
			return false;
		}
	}
	return true;
}

/* Start-up: opens the next phase once the current one has settled. */
static void advance_phases(struct supervisor *sup)
{
	const struct plan *p = sup->plan;

	while (!sup->stack_up && !sup->shutting_down) {
		unsigned ph = sup->phase_open;
		if (!phase_settled(sup, ph))
			return;
		unsigned next = ph + 1;
		while (next <= p->nphases && p->phase_start[next + 1] == p->phase_start[next])
			next++;
		if (next > p->nphases) {
			sup->stack_up = true;
			log_info(NULL, "stack is up: %zu of %zu services running", sup->nstate[SVC_RUNNING],
				 p->n);
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
	return sup->nlive == 0;
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
	/* Cut short, it goes on from settle_more only: the starts' own
	 * callbacks (their exec status, fed at once) settle too, and would
	 * carry on within the same loop pass, the control socket waiting
	 * until the whole phase had started. */
	if (sup->settling || sup->settle_yielding)
		return;
	sup->settling = true;
	/* Without a loop (unit tests) nothing would take the rest up. */
	int64_t until = sup->loop ? now_mono_ms() + SETTLE_BUDGET_MS : INT64_MAX;
	for (unsigned rounds = 0; sup->nqueued && rounds < SETTLE_ROUNDS; rounds++) {
		if (rounds && now_mono_ms() >= until)
			break;
		reconcile(sup, unqueue(sup));
		if (!sup->nqueued)
			advance_phases(sup);
	}
	sup->settling = false;
	/* Cut short, the rest goes on at the next pass, after the loop has
	 * served what waits (the control socket, exits).  It was dropped: 350
	 * services `after` 350 others make 122,500 looks in one start-up, and
	 * the stack stood still with the rest queued until some other event. */
	if (sup->nqueued && sup->loop) {
		sup->settle_yielding = true;
		ev_timer_start(sup->loop, &sup->settle_more);
	}
	if (sup->nleaving)
		drop_leaving(sup);
	if (sup->shutting_down && stack_all_down(sup))
		ev_break(sup->loop, EVBREAK_ALL);
}

/* Shutdown: s went down; the services it held back may stop now.  A
 * phase's services wait until every higher phase is down (and every
 * service a reload removed): they are looked at again when a phase's last
 * one went, not at each stop, which for n services would be n^2 looks. */
static void wake_lower_phases(struct supervisor *sup, struct service *s, enum svc_state from)
{
	const struct plan *p = sup->plan;
	size_t upto;	/* services of order[0..upto) may have waited for s */

	if (s->index < p->n) {
		unsigned ph = p->phase[s->index];
		if (!svc_busy(from) || svc_busy(s->state) || sup->busy[ph])
			return;
		upto = p->phase_start[ph];
	} else {
		if (svc_live(s))
			return;
		for (size_t i = 0; i < sup->nleaving; i++)
			if (svc_live(sup->leaving[i]))
				return;
		upto = p->n;
	}
	for (size_t k = 0; k < upto; k++)
		if (svc_busy(sup->svcs[p->order[k]]->state))
			stack_queue(sup, sup->svcs[p->order[k]]);
}

void stack_changed(struct supervisor *sup, struct service *s, enum svc_state from)
{
	stack_touch(sup, s);
	if (sup->shutting_down)
		wake_lower_phases(sup, s, from);
	else if (s->index >= sup->plan->n && !svc_live(s) && !stack_leaving_live(sup))
		/* The last service a reload removed is down: the starts that
		 * waited for it go on (once a reload, so one look at each). */
		for (size_t i = 0; i < sup->plan->n; i++)
			if (sup->svcs[i]->state == SVC_WAITING)
				stack_queue(sup, sup->svcs[i]);
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
