/*
 * bench_config.c - time to load and plan a generated config of N services
 * (every service but the first requires one to three earlier ones, so the
 * planner has real edges), best and median of several runs, in-process.
 * Prints one line per size and the growth factor between sizes.
 */
#include "autoconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "plan.h"
#include "util.h"

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

static char *generate(size_t n, const char *dir)
{
	char *path = xasprintf("%s/bench-%zu.ini", dir, n);
	FILE *f = fopen(path, "w");
	unsigned x = 42;

	if (!f) {
		perror(path);
		exit(1);
	}
	fprintf(f, "[cohort]\nrun_dir = /tmp/x\n\n");
	for (size_t i = 0; i < n; i++) {
		fprintf(f, "[service:svc-%zu]\ncommand = /usr/bin/python3 -m app --port %zu\n", i, 10000 + i);
		fprintf(f, "ready = tcp:127.0.0.1:%zu\nrestart = on-failure\n", 10000 + i);
		if (i > 0) {
			fprintf(f, "requires = ");
			for (int k = 0; k < 1 + (int)(i % 3); k++) {
				x = x * 1103515245 + 12345;
				size_t lo = i > 50 ? i - 50 : 0;
				fprintf(f, "%ssvc-%zu", k ? ", " : "", lo + (x >> 8) % (i - lo));
			}
			fprintf(f, "\n");
		}
		fprintf(f, "environment = APP_ID=%zu, MODE=bench\n\n", i);
	}
	fclose(f);
	return path;
}

static int64_t run_once(const char *path, size_t n)
{
	struct diag d = {0};
	struct timespec t0, t1;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct cohort_config *c = config_load(path, &d);
	struct plan *p = c ? plan_build(c, &d) : NULL;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (!p || d.count || c->nservices != n) {
		diag_print(&d, stderr);
		exit(1);
	}
	plan_free(p);
	config_free(c);
	diag_free(&d);
	return (t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec);
}

int main(void)
{
	char dir[] = "/tmp/cohort-bench.XXXXXX";
	size_t sizes[] = {1000, 10000};
	double medians[2];

	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	printf("config load + plan (in-process, %s):\n", "median of 15 runs after 2 warm-ups");
	for (size_t s = 0; s < 2; s++) {
		char *path = generate(sizes[s], dir);
		int64_t t[15];
		for (int i = 0; i < 2; i++)
			run_once(path, sizes[s]);
		for (int i = 0; i < 15; i++)
			t[i] = run_once(path, sizes[s]);
		qsort(t, 15, sizeof(t[0]), cmp_i64);
		medians[s] = (double)t[7] / 1e6;
		printf("  %6zu services: median %8.2f ms  best %8.2f ms  (target < %s)\n", sizes[s],
		       medians[s], (double)t[0] / 1e6, s == 0 ? "20 ms" : "200 ms");
		unlink(path);
		free(path);
	}
	printf("  growth 1,000 -> 10,000 services: x%.1f (linear would be x10)\n", medians[1] / medians[0]);
	rmdir(dir);
	return 0;
}
