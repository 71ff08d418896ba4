/*
 * fuzz.h - what the libFuzzer harnesses of tests/fuzz share: a scratch
 * directory of their own, removed at exit, for the inputs that the code
 * under test reads from files (a config, a journal segment) or reaches
 * through a socket (the bus's handshake).
 */
#ifndef COHORT_FUZZ_H
#define COHORT_FUZZ_H

#include <stddef.h>
#include <stdint.h>

struct cohort_config;
struct ev_loop;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A fresh directory under $TMPDIR (made on the first call). */
const char *fz_tmpdir(void);
/* Writes size bytes to <tmpdir>/name; returns the path (static storage
 * until the next call).  Aborts on failure: a harness that cannot write
 * its input tests nothing. */
const char *fz_write(const char *name, const void *data, size_t size);
/* Removes what is in dir (not dir itself), subdirectories included. */
void fz_empty(const char *dir);
/* Quiet cohortd's log (errors are expected: the inputs are bad). */
void fz_quiet(void);
/* What the harnesses that run the bus share at start: the log quiet, a
 * loop in *loop, TEXT (LEN bytes) loaded as <tmpdir>/cohort.ini (an error
 * in it aborts: a harness's own config must be valid), and in *bus_dir
 * the path <tmpdir>/bus (allocated, not made).  Returns the config. */
struct cohort_config *fz_setup(const char *text, size_t len, struct ev_loop **loop, char **bus_dir);

#endif
