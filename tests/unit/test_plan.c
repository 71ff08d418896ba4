/* Unit tests of plan.c: phases, edges, and every graph error. */
#include "autoconfig.h"

#include <criterion/criterion.h>
#include <string.h>

#include "helpers.h"
#include "plan.h"

static struct diag d;
static struct cohort_config *cfg;

static void setup(void)
{
	d = (struct diag){0};
	cfg = NULL;
}

static void teardown(void)
{
	config_free(cfg);
	diag_free(&d);
	th_cleanup();
}

TestSuite(plan, .init = setup, .fini = teardown);

static struct plan *plan_of(const char *text)
{
	cfg = th_load(text, &d);
	cr_assert_not_null(cfg);
	cr_assert_eq(d.count, 0, "%s", th_diag_text(&d));
	return plan_build(cfg, &d);
}

static unsigned phase_of(const struct plan *p, const char *name)
{
	return p->phase[plan_index(p, name)];
}

Test(plan, the_example_stack)
{
	struct plan *p = plan_of(
		"[service:trinity]\ncommand = x\nrequires = prime, reactor\n"
		"[service:prime]\ncommand = x\nrequires = core\n"
		"[service:reactor]\ncommand = x\nrequires = core\n"
		"[service:core]\ncommand = x\n");

	cr_assert_not_null(p, "%s", th_diag_text(&d));
	cr_assert_eq(p->nphases, 3);
	cr_assert_eq(phase_of(p, "core"), 1);
	cr_assert_eq(phase_of(p, "prime"), 2);
	cr_assert_eq(phase_of(p, "reactor"), 2);
	cr_assert_eq(phase_of(p, "trinity"), 3);
	/* order: by phase, config order inside a phase */
	cr_assert_str_eq(cfg->services[p->order[0]]->name, "core");
	cr_assert_str_eq(cfg->services[p->order[1]]->name, "prime");
	cr_assert_str_eq(cfg->services[p->order[2]]->name, "reactor");
	cr_assert_str_eq(cfg->services[p->order[3]]->name, "trinity");
	/* required_by of core: prime and reactor */
	size_t core = plan_index(p, "core"), n = 0;
	PLAN_EACH_EDGE(&p->required_by, core, j) {
		cr_assert(j == plan_index(p, "prime") || j == plan_index(p, "reactor"));
		n++;
	}
	cr_assert_eq(n, 2);
	plan_free(p);
}

Test(plan, after_orders_too_and_explicit_phase)
{
	struct plan *p = plan_of(
		"[service:a]\ncommand = x\n"
		"[service:b]\ncommand = x\nafter = a\n"
		"[service:c]\ncommand = x\nphase = 5\n"
		"[service:d]\ncommand = x\nrequires = c\n");

	cr_assert_not_null(p);
	cr_assert_eq(phase_of(p, "a"), 1);
	cr_assert_eq(phase_of(p, "b"), 2);
	cr_assert_eq(phase_of(p, "c"), 5);
	cr_assert_eq(phase_of(p, "d"), 6);
	cr_assert_eq(p->nphases, 6);
	plan_free(p);
}

Test(plan, unknown_dependency_with_suggestion)
{
	struct plan *p = plan_of("[service:core]\ncommand = x\n[service:a]\ncommand = x\n\nrequires = cor\n");

	cr_assert_null(p);
	cr_assert(th_diag_has(&d, "cohort.ini:6: [service:a]: requires \"cor\": no such service (did you mean \"core\"?)"),
		  "%s", th_diag_text(&d));
}

Test(plan, self_dependency)
{
	struct plan *p = plan_of("[service:a]\ncommand = x\nafter = a\n");

	cr_assert_null(p);
	cr_assert(th_diag_has(&d, "cohort.ini:3: [service:a]: after itself"), "%s", th_diag_text(&d));
}

Test(plan, cycle_names_the_whole_cycle)
{
	struct plan *p = plan_of(
		"[service:a]\ncommand = x\nrequires = b\n"
		"[service:b]\ncommand = x\nrequires = c\n"
		"[service:c]\ncommand = x\nafter = a\n"
		"[service:d]\ncommand = x\nrequires = a\n");

	cr_assert_null(p);
	cr_assert_eq(d.count, 1, "%s", th_diag_text(&d));
	cr_assert(th_diag_has(&d, "dependency cycle: a -> b -> c -> a"), "%s", th_diag_text(&d));
}

Test(plan, two_cycles_both_reported)
{
	struct plan *p = plan_of(
		"[service:a]\ncommand = x\nrequires = b\n"
		"[service:b]\ncommand = x\nrequires = a\n"
		"[service:c]\ncommand = x\nrequires = d\n"
		"[service:d]\ncommand = x\nrequires = c\n");

	cr_assert_null(p);
	cr_assert_eq(d.count, 2, "%s", th_diag_text(&d));
	cr_assert(th_diag_has(&d, "a -> b -> a"));
	cr_assert(th_diag_has(&d, "c -> d -> c"));
}

Test(plan, phase_lower_than_implied)
{
	struct plan *p = plan_of(
		"[service:a]\ncommand = x\n"
		"[service:b]\ncommand = x\nrequires = a\nphase = 1\n");

	cr_assert_null(p);
	cr_assert(th_diag_has(&d, "cohort.ini:6: [service:b]: phase = 1 is lower than the 2 its dependencies imply"),
		  "%s", th_diag_text(&d));
}

Test(plan, deep_chain_does_not_recurse)
{
	/* 20,000 services in one chain: an iterative search, no stack overflow. */
	struct sbuf b = {0};

	sbuf_adds(&b, "[service:s0]\ncommand = x\n");
	for (int i = 1; i < 20000; i++)
		sbuf_addf(&b, "[service:s%d]\ncommand = x\nrequires = s%d\n", i, i - 1);
	struct plan *p = plan_of(b.buf);
	cr_assert_not_null(p);
	cr_assert_eq(phase_of(p, "s19999"), 20000);
	plan_free(p);
	sbuf_free(&b);
}
