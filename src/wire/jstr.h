/*
 * jstr.h - JSON string text written and read without building a value.
 * `cohortctl status` moves one long string (the rendered table) each way;
 * through jansson that string cost more than the rest of the command.
 */
#ifndef COHORT_JSTR_H
#define COHORT_JSTR_H

#include <stddef.h>


/* Writes S (N bytes) at W as the inside of a JSON string: quotes,
 * backslashes and control characters escaped, bytes that are not UTF-8
 * as U+FFFD. W has room for JSTR_ESCAPED_MAX(N) bytes; returns the end. */
#define JSTR_ESCAPED_MAX(n) (6 * (n))
char *jstr_escape(char *w, const char *s, size_t n);

/* Writes at W the value of the JSON string TEXT (N bytes, quotes
 * included), at most N - 2 bytes; W may be TEXT (decoding in place).
 * Returns the end, or NULL when TEXT is not a well-formed JSON string. */
char *jstr_unescape(char *w, const char *text, size_t n);

/* P (before END) starts a JSON string without escapes, valid UTF-8 and
 * free of control characters: the end past its closing quote, else NULL.
 * The common bus data, checked without jansson, which takes about 24 ns a
 * byte for strings; a NULL means "ask the parser", not "invalid". */
const char *jstr_plain_end(const char *p, const char *end);

/* Past LIT when the text at P (before END) starts with it, else NULL; a
 * NULL P gives NULL, so calls chain. For frames of a fixed layout. */
const char *jstr_lit(const char *p, const char *end, const char *lit);

#endif
