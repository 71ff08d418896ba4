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

#endif
