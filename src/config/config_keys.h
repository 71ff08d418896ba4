/*
 * config_keys.h - the value types of config keys and their parsers, shared
 * by config.c (which drives them from the key table) and the tests.
 */
#ifndef COHORT_CONFIG_KEYS_H
#define COHORT_CONFIG_KEYS_H

#include "config.h"

enum key_type {
	K_STR, K_PATH, K_BOOL, K_DURATION, K_SIZE, K_MSGSIZE, K_COUNT, K_POSITIVE,
	K_PHASE, K_FACTOR, K_FRACTION, K_MODE, K_LISTEN, K_FSYNC, K_COMMAND,
	K_ENV, K_NAMES, K_INCLUDE, K_LOCKPATS, K_TOPICPATS, K_RESTART,
	K_EXITCODES, K_READY, K_HEALTH, K_SIGNAL, K_STDOUT, K_STDERR, K_UMASK, K_ORIGINS,
	K_NTYPES
};

struct parse_ctx {
	const char *dir;	/* directory of the file holding the key */
};

/* Parses value into the field at p.  On error returns -1 and writes what
 * was expected into why. */
int key_parse(const struct key_def *k, const struct parse_ctx *ctx,
	      const char *value, void *p, struct sbuf *why);
void key_free(const struct key_def *k, void *p);
bool key_equal(const struct key_def *k, const void *a, const void *b);
/* Index of a key of the section, or -1. */
int key_index(enum key_section sec, const char *name);
/* The nearest key name of the section, for "did you mean". */
const char *key_suggest(enum key_section sec, const char *name);
/* What cohort uses instead of a supervisord or systemd key of a service
 * ("ExecStart", "startsecs"), or NULL. */
const char *key_hint(const char *name);
/* The same for a section name without its ":NAME" ("program", "Unit"). */
const char *section_hint(const char *name);

bool lock_name_valid(const char *name);
bool lock_pattern_valid(const char *pat);

#endif
