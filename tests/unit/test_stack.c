/*
 * Unit tests of stack.c and reload.c's apply step: the shell around the
 * stack's decision, with real services (svc_new) on a real loop, but no
 * process: every service here is either not wanted up or held back, so
 * nothing is spawned.  What the layer tells the layers above arrives
 * through the hooks, recorded here.
 */
#include "autoconfig.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "helpers.h"
#include "supervise.h"

static struct supervisor sup;
static struct cohort_config *cfg;
static struct diag diag;
static struct strv heard;	/* what the hooks were told, a line each */

static void on_state(void *arg, struct service *s, enum svc_state from, enum svc_state to,
		     const char *reason)
{
	(void)arg;
	strv_push_owned(&heard, xasprintf("%s %s->%s: %s", s->name, svc_state_name(from),
					  svc_state_name(to), reason));
}

static void on_gone(void *arg, struct service *s)
{
	(void)arg;
	strv_push_owned(&heard, xasprintf("%s gone", s->name));
}

static void on_reloaded(void *arg)
{
	(void)arg;
	strv_push(&heard, "reloaded");
}

/* A line heard that begins with line. */
static void heard_has(const char *line)
{
	for (size_t i = 0; i < heard.n; i++)
		if (strncmp(heard.v[i], line, strlen(line)) == 0)
			return;
	char *all = strv_join(&heard, "\n");
	cr_assert_fail("not heard: %s\nheard:\n%s", line, all);
}

/* A settle yields to the loop after 20 ms, and a loaded machine can take
 * that long for three services: the loop is run until nothing is queued. */
static void settle(void)
{
	int64_t until = now_mono_ms() + 10000;

	while ((sup.nqueued || sup.settle_yielding) && now_mono_ms() < until)
		ev_run(sup.loop, EVRUN_ONCE);
	cr_assert_not(sup.nqueued || sup.settle_yielding, "the stack settled within 10 s");
}

static void setup_stack(const char *ini)
{
	struct plan *plan;

	cfg = th_load(ini, &diag);
	cr_assert_not_null(cfg, "%s", th_diag_text(&diag));
	plan = plan_build(cfg, &diag);
	cr_assert_not_null(plan, "%s", th_diag_text(&diag));
	sup = (struct supervisor){
		.loop = ev_loop_new(EVFLAG_AUTO),
		.devnull = -1,
		.hooks = {.state_changed = on_state, .service_gone = on_gone, .reloaded = on_reloaded},
	};
	cr_assert_not_null(sup.loop);
	stack_init(&sup, cfg, plan);
}

static void teardown(void)
{
	struct ev_loop *loop = sup.loop;

	if (sup.plan)
		stack_free(&sup);
	if (loop)
		ev_loop_destroy(loop);
	sup = (struct supervisor){0};
	config_unref(cfg);
	cfg = NULL;
	strv_free(&heard);
	diag_free(&diag);
	th_cleanup();
}

TestSuite(stack, .fini = teardown);

/* Nothing is wanted up: every phase opens at once, nothing runs. */
static const char *const idle =
	"[service:a]\ncommand = x\nautostart = no\nstdout = null\n"
	"[service:b]\ncommand = x\nautostart = no\nstdout = null\nrequires = a\n";

Test(stack, a_stack_of_nothing_wanted_is_up_at_once)
{
	setup_stack(idle);
	stack_start(&sup);
	settle();
	cr_assert(sup.stack_up);
	cr_assert_eq(stack_find(&sup, "a")->state, SVC_STOPPED);
	cr_assert_eq(stack_find(&sup, "b")->want, WANT_DOWN);
	cr_assert(stack_all_down(&sup));
	cr_assert_eq(heard.n, 0, "no state changed");
}

/* A phase's services are looked at in the order of the file, so that they
 * start in that order (they were started last to first). */
Test(stack, a_phase_is_looked_at_in_the_order_of_its_file)
{
	setup_stack("[service:base]\ncommand = x\nautostart = no\nstdout = null\n"
		    "[service:zulu]\ncommand = x\nrequires = base\nstdout = null\n"
		    "[service:mike]\ncommand = x\nrequires = base\nstdout = null\n"
		    "[service:alpha]\ncommand = x\nrequires = base\nstdout = null\n");
	stack_start(&sup);
	settle();
	const char *want[] = {"zulu", "mike", "alpha"};
	size_t k = 0;
	for (size_t i = 0; i < heard.n; i++)
		if (strstr(heard.v[i], "stopped->waiting")) {
			cr_assert_lt(k, ARRAY_LEN(want), "%s", heard.v[i]);
			cr_assert(strncmp(heard.v[i], want[k], strlen(want[k])) == 0, "heard %s, wanted %s first",
				  heard.v[i], want[k]);
			k++;
		}
	cr_assert_eq(k, ARRAY_LEN(want), "%zu of 3 waiting", k);
}

Test(stack, a_command_to_a_held_service_is_a_want_event_then_a_decision)
{
	setup_stack(idle);
	stack_start(&sup);
	settle();
	struct service *a = stack_find(&sup, "a"), *b = stack_find(&sup, "b");

	/* b wanted up, a not: b waits, and will not come up by itself. */
	stack_want(&sup, b, WANT_UP);
	settle();
	cr_assert_eq(b->state, SVC_WAITING);
	heard_has("b stopped->waiting: requires a, which is not wanted up");
	cr_assert(stack_blocked(&sup, b));

	/* a failed long ago (restart = never: no trial); start of b again
	 * is still held, and stop is a plain stop. */
	a->state = SVC_FAILED;
	a->want = WANT_UP;
	stack_want(&sup, b, WANT_UP);
	settle();
	heard_has("b waiting->waiting: requires a, which is failed");
	stack_want(&sup, b, WANT_DOWN);
	settle();
	cr_assert_eq(b->state, SVC_STOPPED);
	heard_has("b waiting->stopped: stop requested");
	cr_assert_eq(b->want, WANT_DOWN);
}

Test(stack, shutdown_stops_what_is_not_live_at_once)
{
	setup_stack(idle);
	stack_start(&sup);
	settle();
	struct service *a = stack_find(&sup, "a");

	a->state = SVC_FAILED;
	a->want = WANT_UP;
	stack_shutdown(&sup);
	settle();
	cr_assert(sup.shutting_down);
	cr_assert_eq(a->want, WANT_DOWN);
	cr_assert_eq(a->state, SVC_STOPPED);
	heard_has("a failed->stopped: shutting down");
}

Test(stack, a_reload_adds_removes_and_reports)
{
	setup_stack(idle);
	stack_start(&sup);
	settle();
	struct cohort_config *nc = config_load(
		th_write("cohort.ini", "[service:a]\ncommand = x\nautostart = no\nstdout = null\nrestart = never\n"
				       "[service:c]\ncommand = x\nautostart = no\nstdout = null\n"),
		&diag);
	cr_assert_not_null(nc, "%s", th_diag_text(&diag));
	struct plan *np = plan_build(nc, &diag);
	cr_assert_not_null(np);
	struct reload_report r = {0};

	stack_reload(&sup, nc, np, &r);
	settle();
	cr_assert_eq(r.added.n, 1);
	cr_assert_str_eq(r.added.v[0], "c");
	cr_assert_eq(r.removed.n, 1);
	cr_assert_str_eq(r.removed.v[0], "b");
	cr_assert_eq(r.changed.n, 1);
	cr_assert_str_eq(r.changed.v[0], "a");
	cr_assert_str_eq(r.keys.v[0], "restart");
	cr_assert_eq(r.updated.n + r.restarted.n, 0, "a runs no process: in effect at its next start");
	/* b was not running: dropped at once, and the layers above told. */
	heard_has("b gone");
	heard_has("reloaded");
	cr_assert_null(stack_find(&sup, "b"));
	cr_assert_eq(sup.nleaving, 0);
	cr_assert_eq(stack_find(&sup, "a")->cfg, nc->services[0]);
	cr_assert_eq(stack_find(&sup, "c")->index, 1);
	reload_report_free(&r);
	config_unref(nc);	/* the services hold their own references */
}

/* A restart asked for that the process's own end, or a failed check,
 * overtakes: restarted after its backoff, as any failure. */
Test(stack, a_restart_overtaken_by_an_exit_waits_its_backoff)
{
	setup_stack("[service:a]\ncommand = x\nautostart = no\nstdout = null\nbackoff_initial = 10s\n");
	stack_start(&sup);
	settle();
	struct service *a = stack_find(&sup, "a");

	a->state = SVC_RUNNING;
	a->want = WANT_UP;
	svc_fire(a, SE_WANT_RESTART, "");
	cr_assert(svc_restarting(a));
	svc_main_exited(a, 1 << 8);	/* exit code 1, from waitpid */
	cr_assert_eq(a->state, SVC_BACKOFF, "%s", svc_text(a->reason));
	cr_assert_eq(a->want, WANT_UP);
	cr_assert_not(a->delay_over);
	heard_has("a running->backoff: exited with code 1; restart in ");	/* 10s, with jitter */

	a->state = SVC_RUNNING;
	svc_fire(a, SE_WANT_RESTART, "");
	a->stop_cause = STOP_FAILURE;
	svc_fire(a, SE_UNHEALTHY, "health check failed 3 times: refused");
	cr_assert_eq(a->state, SVC_STOPPING);
	cr_assert_eq(a->want, WANT_UP);
	cr_assert_not(svc_restarting(a));
}
