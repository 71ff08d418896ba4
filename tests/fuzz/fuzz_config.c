/*
 * fuzz_config.c - the config loader and the dependency plan, as
 * `cohortd --check` runs them (load_checked in cohortd.c): the input is a
 * cohort.ini, loaded with config_load (inih, the key table, includes),
 * planned with plan_build, then its errors or its plan printed.  Every
 * problem must be an error line, never a crash, a hang or a leak.
 */
#include "autoconfig.h"

#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "fuzz.h"
#include "plan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct diag d = {0};
	struct plan *p = NULL;
	FILE *out = fopen("/dev/null", "w");

	/* load_checked in cohortd.c: the plan is built even when the file
	 * had errors, so that they are all reported at once */
	struct cohort_config *cfg = config_load(fz_write("cohort.ini", data, size), &d);
	if (cfg && cfg->nservices)
		p = plan_build(cfg, &d);
	if (d.count) {
		if (d.lines.n == 0) {
			fprintf(stderr, "%zu errors and no line to say them\n", d.count);
			abort();
		}
		diag_print(&d, out);
	} else if (!cfg || !p) {
		fprintf(stderr, "no config or no plan, and no error to say why\n");
		abort();
	} else {
		plan_print(p, out);	/* cohortd --check */
	}
	fclose(out);
	plan_free(p);
	config_free(cfg);
	diag_free(&d);
	return 0;
}
