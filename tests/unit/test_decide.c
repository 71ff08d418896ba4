/*
 * Unit tests of the supervision layer's logic with no process, socket or
 * loop: the stack's decision (decide.c) over services made of data, the
 * transition table (service.c), what an exit means (service_exit.c) and
 * a reload's diff (reload.c).
 *
 * run() plays the stack's shell: it asks stack_decide() about every
 * service and moves each to the state the transition table names for the
 * event, until nothing moves; the tests then set what the processes would
 * have done (ready, exited) by hand.
 */
#include "autoconfig.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "supervise.h"

static struct supervisor sup;
static struct cohort_config *cfg;
static struct diag diag;
static char last_reason[256];

static struct service *make_service(struct svc_config *c, size_t index)
{
	struct service *s = calloc(1, sizeof(*s) + strlen(c->name) + 1);

	s->sup = &sup;
	strcpy(s->name, c->name);
	s->cfg = c;
	s->index = index;
	s->want = c->autostart ? WANT_UP : WANT_DOWN;
	return s;
}

/* A stack of the services in ini, every one stopped, phase 1 open. */
static void stack_of(const char *ini)
{
	sup = (struct supervisor){0};
	cfg = th_load(ini, &diag);
	cr_assert_not_null(cfg, "%s", th_diag_text(&diag));
	sup.plan = plan_build(cfg, &diag);
	cr_assert_not_null(sup.plan, "%s", th_diag_text(&diag));
	sup.svcs = calloc(sup.plan->n + 1, sizeof(*sup.svcs));
	for (size_t i = 0; i < sup.plan->n; i++) {
		sup.svcs[i] = make_service(cfg->services[i], i);
		map_put(&sup.by_name, sup.svcs[i]->name, sup.svcs[i]);
	}
	stack_recount(&sup);
	sup.phase_open = 1;
}

static void free_stack(struct service **v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		breaker_free(&v[i]->breaker);
		free(v[i]->reason);
		free(v[i]);
	}
	free(v);
}

static void teardown(void)
{
	if (sup.plan) {
		free_stack(sup.svcs, sup.plan->n);
		free_stack(sup.leaving, sup.nleaving);
		plan_free(sup.plan);
	}
	free(sup.busy);
	map_free(&sup.by_name);
	sup = (struct supervisor){0};
	config_free(cfg);
	cfg = NULL;
	diag_free(&diag);
	th_cleanup();
}

TestSuite(decide, .fini = teardown);

static struct service *svc(const char *name)
{
	struct service *s = stack_find(&sup, name);

	cr_assert_not_null(s, "no service %s", name);
	return s;
}

/* One decision for s, applied as the table says; -1 when none. */
static int step(struct service *s)
{
	struct decision dc;

	stack_decide(&sup, s, &dc);
	s->going_down = dc.going_down;
	if (!dc.fire)
		return -1;
	int next = svc_next_state(s->state, dc.event);
	cr_assert_geq(next, 0, "%s: %s not allowed in %s", s->name, svc_event_name(dc.event),
		      svc_state_name(s->state));
	if (dc.event == SE_STOP)
		s->stop_cause = dc.cause;
	if (dc.event == SE_START) {
		s->pid = 1000 + (pid_t)s->index;	/* what the spawn would do */
		if (s->want == WANT_RESTART)
			s->want = WANT_UP;
	}
	stack_set_state(&sup, s, (enum svc_state)next);
	snprintf(last_reason, sizeof(last_reason), "%s", dc.reason);
	str_set(&s->reason, dc.reason);
	return dc.event;
}

/* Decisions for every service until nothing moves (an event that leaves
 * the state and its reason as they were is no move, as in svc_fire());
 * how many moves there were. */
static int run(void)
{
	int moves = 0;

	for (bool moved = true; moved;) {
		moved = false;
		for (size_t i = 0; i < sup.plan->n; i++) {
			struct service *s = sup.svcs[i];
			enum svc_state was = s->state;
			char reason[SVC_REASON_MAX];
			snprintf(reason, sizeof(reason), "%s", svc_text(s->reason));
			if (step(s) >= 0 && (s->state != was || strcmp(svc_text(s->reason), reason) != 0)) {
				moved = true;
				moves++;
				cr_assert_lt(moves, 1000, "the decisions do not settle");
			}
		}
	}
	return moves;
}

/* The config file rewritten in place, as for a reload (th_load would
 * move it to a new directory, which the defaults would see). */
static struct cohort_config *rewrite(const char *ini)
{
	struct cohort_config *nc = config_load(th_write("cohort.ini", ini), &diag);

	cr_assert_not_null(nc, "%s", th_diag_text(&diag));
	return nc;
}

/* What a process would report. */
static void becomes(const char *name, enum svc_state st)
{
	struct service *s = svc(name);

	stack_set_state(&sup, s, st);
	if (st != SVC_STARTING && st != SVC_RUNNING && st != SVC_STOPPING)
		s->pid = 0;
	if (st == SVC_STOPPED || st == SVC_EXITED || st == SVC_FAILED || st == SVC_BACKOFF)
		s->stop_cause = STOP_NONE;
}

#define assert_state(name, st) \
	cr_assert_eq(svc(name)->state, st, "%s is %s, not %s (%s)", name, svc_state_name(svc(name)->state), \
		     svc_state_name(st), svc_text(svc(name)->reason))

static const char *const three_phases =
	"[service:db]\ncommand = x\n"
	"[service:app]\ncommand = x\nrequires = db\n"
	"[service:web]\ncommand = x\nrequires = app\n";

Test(decide, phase_n_plus_1_starts_only_once_phase_n_is_ready)
{
	stack_of(three_phases);
	run();
	assert_state("db", SVC_STARTING);
	assert_state("app", SVC_WAITING);
	cr_assert_str_eq(svc("app")->reason, "phase 2 starts once phase 1 is ready");
	assert_state("web", SVC_WAITING);
	cr_assert_not(stack_phase_settled(&sup, 1), "db is still starting");

	becomes("db", SVC_RUNNING);
	cr_assert(stack_phase_settled(&sup, 1));
	run();
	assert_state("app", SVC_WAITING);	/* the gate is the shell's to open */
	sup.phase_open = 2;
	run();
	assert_state("app", SVC_STARTING);
	assert_state("web", SVC_WAITING);
	cr_assert_str_eq(svc("web")->reason, "phase 3 starts once phase 2 is ready");
}

Test(decide, a_service_not_wanted_up_does_not_hold_its_phase)
{
	stack_of("[service:a]\ncommand = x\n[service:b]\ncommand = x\nautostart = no\n");
	run();
	assert_state("a", SVC_STARTING);
	assert_state("b", SVC_STOPPED);
	becomes("a", SVC_RUNNING);
	cr_assert(stack_phase_settled(&sup, 1));
}

Test(decide, a_required_service_failing_holds_and_stops_its_dependents)
{
	stack_of(three_phases);
	sup.stack_up = true;
	run();
	becomes("db", SVC_RUNNING);
	run();
	becomes("app", SVC_RUNNING);
	run();
	becomes("web", SVC_RUNNING);
	cr_assert_eq(run(), 0);

	/* db crashes: app, which requires it, must stop, but only once web
	 * (which requires app) has: app is going down meanwhile. */
	becomes("db", SVC_BACKOFF);
	svc("db")->delay_over = false;
	cr_assert_eq(step(svc("app")), -1);
	cr_assert(svc("app")->going_down);
	cr_assert_eq(step(svc("web")), SE_STOP);
	cr_assert_str_eq(last_reason, "requires app, which is going down");
	cr_assert_eq(svc("web")->stop_cause, STOP_DEPENDENCY);
	becomes("web", SVC_STOPPED);
	cr_assert_eq(step(svc("app")), SE_STOP);
	cr_assert_str_eq(last_reason, "requires db, which is in backoff");
	becomes("app", SVC_STOPPED);
	run();
	assert_state("app", SVC_WAITING);
	assert_state("web", SVC_WAITING);

	/* Then the breaker opens on db: the dependents wait on a failure,
	 * which will not pass by itself. */
	becomes("db", SVC_FAILED);
	run();
	cr_assert(stack_blocked(&sup, svc("app")));
	cr_assert(stack_blocked(&sup, svc("web")));
	cr_assert(stack_phase_settled(&sup, 2), "a service held by a failure counts as settled");
}

Test(decide, backoff_waits_for_its_delay_unless_a_start_is_asked)
{
	stack_of("[service:a]\ncommand = x\n");
	sup.stack_up = true;
	becomes("a", SVC_BACKOFF);
	cr_assert_eq(run(), 0, "the delay is not over");
	svc("a")->delay_over = true;
	cr_assert_eq(step(svc("a")), SE_START);
	cr_assert_str_eq(last_reason, "restart 1");

	becomes("a", SVC_BACKOFF);
	svc("a")->delay_over = false;
	svc_fire(svc("a"), SE_WANT_UP, "");	/* a start command: now */
	cr_assert_eq(svc("a")->want, WANT_RESTART);
	cr_assert_eq(step(svc("a")), SE_START);
	cr_assert_eq(svc("a")->want, WANT_UP);
}

Test(decide, the_breaker_gives_one_trial_after_its_cooldown)
{
	stack_of("[service:a]\ncommand = x\n[service:b]\ncommand = x\nrequires = a\n");
	sup.stack_up = true;
	becomes("a", SVC_FAILED);
	run();
	assert_state("a", SVC_FAILED);	/* the cooldown has not passed */
	assert_state("b", SVC_WAITING);
	cr_assert(stack_blocked(&sup, svc("b")));

	svc_fire(svc("a"), SE_DELAY_OVER, "");	/* the cooldown timer */
	assert_state("a", SVC_FAILED);
	cr_assert(svc("a")->breaker_trial);
	cr_assert_eq(step(svc("a")), SE_START);
	cr_assert_str_eq(last_reason, "trial start (breaker half-open)");
	cr_assert(svc("a")->breaker_trial, "the start is the trial until it is ready");
	run();
	assert_state("b", SVC_WAITING);
	cr_assert_not(stack_blocked(&sup, svc("b")), "a is on its way up");

	/* The trial fails: open again, no start until the next cooldown. */
	svc("a")->last_exit = (struct exit_info){.valid = true, .code = 1};
	char reason[256];
	enum svc_event ev = svc_classify_exit(svc("a"), false, 1000, 0, reason, sizeof(reason));
	cr_assert_eq(ev, SE_EXIT_FAILED);
	cr_assert(strstr(reason, "trial start failed (exited with code 1); breaker open again"), "%s", reason);
	becomes("a", SVC_FAILED);
	svc("a")->breaker_trial = false;	/* act_failed */
	cr_assert_eq(step(svc("a")), -1);

	/* An explicit start does not wait for the cooldown. */
	svc_fire(svc("a"), SE_WANT_UP, "");
	cr_assert_eq(svc("a")->want, WANT_RESTART);
	cr_assert_eq(svc("a")->failures, 0, "a fresh breaker and backoff");
	cr_assert_eq(step(svc("a")), SE_START);
	cr_assert_str_eq(last_reason, "starting");
}

Test(decide, a_restart_stops_what_requires_it_first)
{
	stack_of("[service:a]\ncommand = x\n[service:b]\ncommand = x\nrequires = a\n");
	sup.stack_up = true;
	run();
	becomes("a", SVC_RUNNING);
	run();
	becomes("b", SVC_RUNNING);

	svc_fire(svc("a"), SE_WANT_RESTART, "");
	cr_assert(svc_restarting(svc("a")));
	cr_assert_eq(step(svc("a")), -1, "b still runs");
	cr_assert_eq(step(svc("b")), SE_STOP);
	cr_assert_str_eq(last_reason, "requires a, which is restarting");
	becomes("b", SVC_STOPPED);
	cr_assert_eq(step(svc("a")), SE_STOP);
	cr_assert_str_eq(last_reason, "restart requested");
	cr_assert_eq(svc("a")->stop_cause, STOP_RESTART);
	becomes("a", SVC_STOPPED);
	cr_assert_eq(step(svc("a")), SE_START);
	cr_assert_eq(svc("a")->want, WANT_UP);
}

Test(decide, a_stop_command_waits_for_dependents_and_shutdown_for_higher_phases)
{
	stack_of(three_phases);
	sup.stack_up = true;
	for (size_t i = 0; i < 3; i++) {
		run();
		becomes(i == 0 ? "db" : i == 1 ? "app" : "web", SVC_RUNNING);
	}
	svc_fire(svc("db"), SE_WANT_DOWN, "");
	struct decision dc;
	stack_decide(&sup, svc("db"), &dc);
	cr_assert_not(dc.fire);
	cr_assert_str_eq(dc.waits_for, "app");

	svc_fire(svc("db"), SE_WANT_UP, "");
	sup.shutting_down = true;
	for (size_t i = 0; i < 3; i++)
		svc_fire(sup.svcs[i], SE_WANT_DOWN, "");
	cr_assert_eq(step(svc("db")), -1);
	cr_assert_eq(step(svc("app")), -1);
	cr_assert_eq(step(svc("web")), SE_STOP);
	cr_assert_str_eq(last_reason, "shutting down");
	becomes("web", SVC_STOPPED);
	cr_assert_eq(step(svc("db")), -1, "app, of a higher phase, still runs");
	cr_assert_eq(step(svc("app")), SE_STOP);
}

Test(decide, a_reload_that_changes_a_dependency)
{
	stack_of("[service:a]\ncommand = x\n[service:b]\ncommand = x\n"
		 "[service:c]\ncommand = x\nrequires = a\n");
	sup.stack_up = true;
	run();
	becomes("a", SVC_RUNNING);
	becomes("b", SVC_FAILED);
	run();
	assert_state("c", SVC_STARTING);

	/* c now requires b, which failed, and no longer a. */
	struct cohort_config *nc = rewrite("[service:a]\ncommand = x\n[service:b]\ncommand = x\n"
					   "[service:c]\ncommand = x\nrequires = b\n");
	struct reload_diff rd;
	reload_diff(&sup, nc, &rd);
	cr_assert_eq(rd.n, 3);
	cr_assert_eq(rd.v[0].change, CHANGE_NONE);
	cr_assert_eq(rd.v[1].change, CHANGE_NONE);
	cr_assert_str_eq(rd.v[2].name, "c");
	cr_assert_eq(rd.v[2].change, CHANGE_LIVE, "requires applies to a running service");
	cr_assert_eq(rd.v[2].keys.n, 1);
	cr_assert_str_eq(rd.v[2].keys.v[0], "requires");
	reload_diff_free(&rd);

	/* What stack_reload does with it: the new plan, the new definitions. */
	plan_free(sup.plan);
	sup.plan = plan_build(nc, &diag);
	cr_assert_not_null(sup.plan);
	stack_recount(&sup);
	for (size_t i = 0; i < 3; i++)
		sup.svcs[i]->cfg = nc->services[i];
	cr_assert_eq(step(svc("c")), SE_STOP);
	cr_assert_str_eq(last_reason, "requires b, which is failed");
	cr_assert_eq(svc("c")->stop_cause, STOP_DEPENDENCY);
	becomes("c", SVC_STOPPED);
	run();
	assert_state("c", SVC_WAITING);
	cr_assert(stack_blocked(&sup, svc("c")));
	/* a may stop now without waiting for c. */
	svc_fire(svc("a"), SE_WANT_DOWN, "");
	cr_assert_eq(step(svc("a")), SE_STOP);
	config_free(cfg);
	cfg = nc;
}

Test(decide, reload_diff_says_added_removed_and_restart_keys)
{
	stack_of("[service:a]\ncommand = x\n[service:b]\ncommand = x\n");
	struct cohort_config *nc = rewrite("[service:a]\ncommand = y\n[service:n]\ncommand = x\n");
	struct reload_diff rd;

	reload_diff(&sup, nc, &rd);
	cr_assert_eq(rd.n, 3);
	cr_assert_str_eq(rd.v[0].name, "a");
	cr_assert_eq(rd.v[0].change, CHANGE_RESTART, "command is what the process sees");
	cr_assert_str_eq(rd.v[0].keys.v[0], "command");
	cr_assert_str_eq(rd.v[1].name, "n");
	cr_assert_eq(rd.v[1].change, CHANGE_ADDED);
	cr_assert_str_eq(rd.v[2].name, "b");
	cr_assert_eq(rd.v[2].change, CHANGE_REMOVED);
	reload_diff_free(&rd);

	/* A definition waiting for the next start is what is compared. */
	svc("a")->next_cfg = nc->services[0];
	reload_diff(&sup, nc, &rd);
	cr_assert_eq(rd.v[0].change, CHANGE_NONE);
	reload_diff_free(&rd);
	svc("a")->next_cfg = NULL;
	config_free(nc);
}

Test(decide, the_transition_table)
{
	cr_assert_eq(svc_next_state(SVC_STOPPED, SE_START), SVC_STARTING);
	cr_assert_eq(svc_next_state(SVC_STARTING, SE_READY), SVC_RUNNING);
	cr_assert_eq(svc_next_state(SVC_RUNNING, SE_UNHEALTHY), SVC_STOPPING);
	cr_assert_eq(svc_next_state(SVC_STOPPING, SE_TIMEOUT), SVC_STOPPING);
	cr_assert_eq(svc_next_state(SVC_EXITED, SE_STOP), SVC_EXITED, "a job done stays done");
	cr_assert_eq(svc_next_state(SVC_RUNNING, SE_START), -1);
	cr_assert_eq(svc_next_state(SVC_STOPPED, SE_READY), -1);
	cr_assert_eq(svc_next_state(SVC_RUNNING, SE_DELAY_OVER), -1);
	/* A command is accepted in every state and changes only the want. */
	for (int st = 0; st < SVC_NSTATES; st++)
		for (int ev = SE_WANT_DOWN; ev <= SE_WANT_RESTART; ev++)
			cr_assert_eq(svc_next_state((enum svc_state)st, (enum svc_event)ev), st, "%s in %s",
				     svc_event_name((enum svc_event)ev), svc_state_name((enum svc_state)st));
	cr_assert_eq(svc_next_state(SVC_NSTATES, SE_START), -1);
	cr_assert_str_eq(svc_want_name(WANT_RESTART), "restart");
}

/* Spread by its jitter, a delay is said to the millisecond: "1s" was said
 * of a delay of 1963 ms. */
Test(decide, a_backoff_delay_is_said_to_the_millisecond)
{
	stack_of("[service:a]\ncommand = x\nbackoff_initial = 2s\nbackoff_jitter = 0.1\nbreaker_failures = 0\n");
	char r[256];
	struct service *a = svc("a");

	a->state = SVC_RUNNING;
	a->last_exit = (struct exit_info){.valid = true, .code = 0};
	cr_assert_eq(svc_classify_exit(a, true, 1000, -0.37, r, sizeof(r)), SE_EXIT_RESTART);
	cr_assert_eq(a->next_delay_ms, 1926);
	cr_assert_str_eq(r, "exited with code 0; restart in 1s926ms");
	a->last_exit = (struct exit_info){.valid = true, .signal = 9};
	cr_assert_eq(svc_classify_exit(a, true, 1000, 0.5, r, sizeof(r)), SE_EXIT_RESTART);
	cr_assert_eq(a->next_delay_ms, 2100);
	cr_assert_str_eq(r, "killed by SIGKILL; restart in 2s100ms (failure 1)");
	cr_assert_eq(svc_classify_exit(a, true, 1000, 0, r, sizeof(r)), SE_EXIT_RESTART);
	cr_assert_str_eq(r, "killed by SIGKILL; restart in 4s (failure 2)", "a round delay stays round");
}

Test(decide, what_an_exit_means)
{
	stack_of("[service:always]\ncommand = x\nbackoff_initial = 1s\nbreaker_failures = 2\n"
		 "[service:job]\ncommand = x\nrestart = on-failure\n"
		 "[service:once]\ncommand = x\nrestart = never\n");
	char r[256];
	struct service *a = svc("always");

	a->state = SVC_RUNNING;
	a->last_exit = (struct exit_info){.valid = true, .code = 0};
	cr_assert_eq(svc_classify_exit(a, true, 1000, 0, r, sizeof(r)), SE_EXIT_RESTART);
	cr_assert_str_eq(r, "exited with code 0; restart in 1s");
	a->state = SVC_STARTING;
	cr_assert_eq(svc_classify_exit(a, false, 1000, 0, r, sizeof(r)), SE_EXIT_RESTART);
	cr_assert_str_eq(r, "exited with code 0 before it was ready; restart in 1s (failure 1)");
	a->last_exit = (struct exit_info){.valid = true, .signal = 9};
	cr_assert_eq(svc_classify_exit(a, false, 1001, 0, r, sizeof(r)), SE_EXIT_FAILED);
	cr_assert(strstr(r, "breaker open: 2 failures within 60s (last: killed by SIGKILL)"), "%s", r);

	struct service *j = svc("job");
	j->state = SVC_RUNNING;
	j->last_exit = (struct exit_info){.valid = true, .code = 0};
	cr_assert_eq(svc_classify_exit(j, true, 0, 0, r, sizeof(r)), SE_EXIT_DONE);
	struct service *o = svc("once");
	o->state = SVC_RUNNING;
	o->last_exit = (struct exit_info){.valid = true, .code = 3};
	cr_assert_eq(svc_classify_exit(o, true, 0, 0, r, sizeof(r)), SE_EXIT_FAILED);
	cr_assert_str_eq(r, "exited with code 3 (restart = never)");

	/* A stop asked for, and a shutdown. */
	o->state = SVC_STOPPING;
	o->stop_cause = STOP_WANTED;
	cr_assert_eq(svc_classify_exit(o, true, 0, 0, r, sizeof(r)), SE_EXIT_STOPPED);
	cr_assert_str_eq(r, "stopped (exited with code 3)");
	o->state = SVC_RUNNING;
	o->want = WANT_DOWN;
	sup.shutting_down = true;
	cr_assert_eq(svc_classify_exit(o, true, 0, 0, r, sizeof(r)), SE_EXIT_STOPPED);
}

/* pidfile: after the started process exits 0 the service has no process
 * while its daemon's pid is awaited (ADOPTING, shown as starting): it is
 * still on its way up for what requires it or comes after it, and a stop
 * goes through STOPPING (the file is read once more there). */
Test(decide, a_daemon_awaited_by_its_pid_file)
{
	stack_of("[service:d]\ncommand = x\npidfile = d.pid\n"
		 "[service:web]\ncommand = x\nrequires = d\n"
		 "[service:late]\ncommand = x\nafter = d\n");
	struct service *d = svc("d");

	run();
	cr_assert_eq(d->state, SVC_STARTING);
	cr_assert_eq(svc_next_state(SVC_STARTING, SE_FORKED), SVC_ADOPTING);
	stack_set_state(&sup, d, SVC_ADOPTING);
	d->pid = 0;
	sup.phase_open = 2;	/* past the phase gate: only d holds them */
	run();
	cr_assert_eq(svc("web")->state, SVC_WAITING);
	cr_assert_str_eq(svc("web")->reason, "requires d, which is starting");
	cr_assert_eq(svc("late")->state, SVC_WAITING);
	cr_assert_str_eq(svc("late")->reason, "after d, which is starting");
	cr_assert_eq(d->state, SVC_ADOPTING, "nothing to decide while the pid is awaited");

	cr_assert_str_eq(svc_state_name(SVC_ADOPTING), "starting");
	cr_assert_eq(svc_next_state(SVC_ADOPTING, SE_READY), SVC_RUNNING, "no probe: ready once adopted");
	cr_assert_eq(svc_next_state(SVC_ADOPTING, SE_ADOPTED), SVC_STARTING, "the probe judges it");
	cr_assert_eq(svc_next_state(SVC_ADOPTING, SE_EXIT_RESTART), SVC_BACKOFF);
	cr_assert_eq(svc_next_state(SVC_ADOPTING, SE_EXIT_FAILED), SVC_FAILED);
	cr_assert_eq(svc_next_state(SVC_ADOPTING, SE_STOP), SVC_STOPPING);
	cr_assert_eq(svc_next_state(SVC_ADOPTING, SE_UNHEALTHY), -1);
	cr_assert_eq(svc_next_state(SVC_ADOPTING, SE_EXIT_DONE), -1);
	cr_assert_eq(svc_next_state(SVC_ADOPTING, SE_START), -1);
	cr_assert_eq(svc_next_state(SVC_RUNNING, SE_FORKED), -1);
	cr_assert_eq(svc_next_state(SVC_STOPPING, SE_ADOPTED), -1);

	/* Wanted down while the pid is awaited: the stop goes now. */
	d->want = WANT_DOWN;
	cr_assert_eq(step(d), SE_STOP);
	cr_assert_eq(d->state, SVC_STOPPING);
	cr_assert_eq(d->stop_cause, STOP_WANTED);

	/* In a shutdown, a lower phase waits for one still on its way up. */
	stack_set_state(&sup, d, SVC_RUNNING);
	d->pid = 1000;
	stack_set_state(&sup, svc("web"), SVC_ADOPTING);
	svc("web")->want = WANT_DOWN;
	sup.shutting_down = true;
	cr_assert_eq(step(d), -1, "d waits for web, of a higher phase, still starting");
	cr_assert_eq(step(svc("web")), SE_STOP);
}

/* An adopted daemon that is not cohortd's child ends with no status: a
 * failure, so restart = on-failure starts it again. */
Test(decide, an_end_with_no_exit_status_is_a_failure)
{
	stack_of("[service:job]\ncommand = x\nrestart = on-failure\nbackoff_initial = 1s\n");
	struct service *j = svc("job");
	char r[256];

	j->state = SVC_RUNNING;
	j->last_exit = (struct exit_info){.valid = true, .code = -1, .unknown = true};
	cr_assert_eq(svc_classify_exit(j, true, 0, 0, r, sizeof(r)), SE_EXIT_RESTART);
	cr_assert_str_eq(r, "ended (not cohortd's child: no exit status); restart in 1s (failure 1)");
}

/* A reload that raises a template's instances starts the new ones and
 * leaves the services that require the template running; an instance
 * that was ready and stops still takes them down. */
Test(decide, new_instances_do_not_stop_what_requires_the_template)
{
	stack_of("[service:w]\ninstances = 2\ncommand = x\n[service:api]\ncommand = x\nrequires = w\n");
	run();
	assert_state("w@0", SVC_STARTING);
	assert_state("w@1", SVC_STARTING);
	becomes("w@0", SVC_RUNNING);
	svc("w@0")->ever_ready = true;
	sup.phase_open = 2;
	run();
	assert_state("api", SVC_WAITING);
	cr_assert_str_eq(svc("api")->reason, "requires w@1, which is starting");
	becomes("w@1", SVC_RUNNING);
	svc("w@1")->ever_ready = true;
	run();
	assert_state("api", SVC_STARTING);
	becomes("api", SVC_RUNNING);

	/* instances = 3: w@2 is new, as stack_reload makes it */
	struct cohort_config *nc = rewrite("[service:w]\ninstances = 3\ncommand = x\n"
					   "[service:api]\ncommand = x\nrequires = w\n");
	plan_free(sup.plan);
	sup.plan = plan_build(nc, &diag);
	cr_assert_not_null(sup.plan);
	struct service **v = calloc(nc->nservices + 1, sizeof(*v));
	for (size_t i = 0; i < nc->nservices; i++) {
		struct service *s = stack_find(&sup, nc->services[i]->name);
		if (!s) {
			s = make_service(nc->services[i], i);
			map_put(&sup.by_name, s->name, s);
		}
		s->cfg = nc->services[i];
		s->index = i;
		v[i] = s;
	}
	free(sup.svcs);
	sup.svcs = v;
	config_free(cfg);
	cfg = nc;
	run();
	assert_state("w@2", SVC_STARTING);
	assert_state("api", SVC_RUNNING);
	becomes("w@2", SVC_RUNNING);
	svc("w@2")->ever_ready = true;
	/* w@1 ends: api, which requires every instance, goes */
	becomes("w@1", SVC_BACKOFF);
	cr_assert_eq(step(svc("api")), SE_STOP);
	cr_assert_str_eq(last_reason, "requires w@1, which is in backoff");
}
