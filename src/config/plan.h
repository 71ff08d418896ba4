/*
 * plan.h - the dependency plan: which phase each service starts in, and
 * the requires / after / required-by edges the supervisor walks.  Built
 * from a loaded config in time linear in services + edges; every unknown
 * name, self-dependency, cycle and too-low explicit phase is reported.
 */
#ifndef COHORT_PLAN_H
#define COHORT_PLAN_H

#include <stdio.h>

#include "config.h"

/* Edges are stored compactly: the targets of service i are
 * to[off[i]] .. to[off[i+1]-1], as indexes into cfg->services. */
struct edges {
	size_t *off;
	size_t *to;
};

struct plan {
	const struct cohort_config *cfg;
	size_t n;		/* services */
	unsigned *phase;	/* per service, 1-based */
	unsigned nphases;	/* highest phase */
	size_t *order;		/* services by phase, config order within one */
	size_t *phase_start;	/* order[phase_start[p]..phase_start[p+1]) is phase p */
	struct edges requires;
	struct edges after;
	struct edges required_by;
	struct edges after_by;	/* the reverse of after */
};

/* Returns NULL with errors in d when the graph is not valid. */
struct plan *plan_build(const struct cohort_config *cfg, struct diag *d);
void plan_free(struct plan *p);
/* Loads path and plans it: every error of both stages in d, the plan's
 * too when the file has errors of its own, so that a reload reports what
 * cohortd --check does.  The config and *plan, or NULL (and *plan NULL)
 * when d has any. */
struct cohort_config *plan_load(const char *path, struct plan **plan, struct diag *d);
/* Index of a service in cfg->services (by name), or (size_t)-1. */
size_t plan_index(const struct plan *p, const char *name);
/* "phase 1:\n  core ..." for cohortd --check. */
void plan_print(const struct plan *p, FILE *f);

#define PLAN_EACH_EDGE(e, i, j) \
	for (size_t _k = (e)->off[i], j; _k < (e)->off[(i) + 1] && ((j) = (e)->to[_k], 1); _k++)

#endif
