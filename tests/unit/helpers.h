/* helpers.h - temp dirs, files and child processes for the tests. */
#ifndef COHORT_TEST_HELPERS_H
#define COHORT_TEST_HELPERS_H

#include <stddef.h>

#include "config.h"

/* A fresh directory under $TMPDIR, removed by th_cleanup(). */
const char *th_tmpdir(void);
void th_cleanup(void);
/* Writes text to <tmpdir>/name (making subdirectories); returns the path
 * (static storage until the next call). */
const char *th_write(const char *name, const char *text);
/* Loads text as a config file named cohort.ini in a fresh tmpdir. */
struct cohort_config *th_load(const char *text, struct diag *d);
/* True when some diag line contains needle. */
int th_diag_has(const struct diag *d, const char *needle);
/* All diag lines joined with newlines (static buffer), for messages. */
const char *th_diag_text(const struct diag *d);
/* th_load of text that must load without an error (asserted). */
struct cohort_config *th_good(const char *text, struct diag *d);
/* th_load of text that must fail with a line containing needle (asserted);
 * what it loaded and d's lines are freed. */
void th_bad(const char *text, const char *needle, struct diag *d);
/* Runs argv, capturing stdout+stderr into *out (malloc'd); returns the
 * exit status or -1.  Kills the child after timeout_ms. */
int th_run(char *const argv[], char **out, int timeout_ms);
/* How much slower than normal this run may be: $COHORT_TIME_FACTOR, else 6
 * under valgrind, else 1.  Widens upper bounds on timing, never lower ones. */
double th_time_factor(void);

/* The build tree and the source tree: $COHORT_BUILDDIR and $COHORT_SRCDIR,
 * else those the tests were built in and from. */
const char *th_builddir(void);
const char *th_srcdir(void);

#endif
