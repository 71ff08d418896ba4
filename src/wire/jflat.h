/*
 * jflat.h - the common request, a flat object of plain strings, integers
 * and literals, read without jansson's lexer.  A lock request through
 * json_loadb cost about 12,000 instructions, two thirds of cohortd's work
 * for it, most of them in the lexer's per-byte stream; this reads the same
 * line in a few hundred.
 */
#ifndef COHORT_JFLAT_H
#define COHORT_JFLAT_H

#include <jansson.h>
#include <stddef.h>

/*
 * The object that json_loadb(TEXT, LEN, JSON_REJECT_DUPLICATES) would
 * return, when TEXT is an object whose members are all plain strings (no
 * escapes, valid UTF-8), integers of at most 18 digits, true, false or
 * null, with unique keys.  NULL for anything else, which means "ask
 * jansson" (it also gives the error message), never "invalid".
 */
json_t *jflat_load(const char *text, size_t len);

#endif
