/*
 * words.h - split a command line into words the way a POSIX shell does,
 * without running one: single quotes keep everything, double quotes keep
 * everything but \" \\ \$ \` and backslash-newline, a backslash outside
 * quotes escapes the next character.  No expansion of any kind happens: a
 * `$HOME` or `*` is passed on as written.
 */
#ifndef COHORT_WORDS_H
#define COHORT_WORDS_H

#include "util.h"

/* 0 on success (out holds the words), -1 with *why on an unterminated
 * quote or trailing backslash. */
int words_split(const char *line, struct strv *out, const char **why);
/* Quotes one word so words_split() gives it back unchanged. */
char *words_quote(const char *word);

#endif
