/*
 * config_keys.h - the value types of config keys and their parsers
 * (config_values.c), the lookups in the key table (config_keys.c), shared
 * by config.c, which drives them from the table, and the tests.
 */
#ifndef COHORT_CONFIG_KEYS_H
#define COHORT_CONFIG_KEYS_H

#include "config.h"

/* What a key's value is.  The numbers marked "min to max" take their
 * bounds from the key's row of the table. */
enum key_type {
	K_STR,		/* text; nothing is NULL */
	K_PATH,		/* relative to the directory of the file defining it */
	K_LISTEN,	/* HOST:PORT, or nothing */
	K_BOOL,
	K_DURATION,	/* milliseconds */
	K_SIZE,		/* bytes; min to max when the key has a max */
	K_UINT,		/* a whole number, min to max */
	K_PHASE,	/* the same, or nothing for 0 */
	K_MODE,		/* octal file permissions */
	K_FACTOR,	/* a real number, min to max */
	K_FRACTION,	/* the same, said as a share (0.1 = 10%) */
	K_FSYNC,
	K_RESTART,
	K_SIGNAL,
	K_UMASK,	/* octal; nothing is -1, cohortd's own */
	K_EXITCODES,	/* a bitmap of 0..255 */
	K_ENV,		/* NAME=VALUE items */
	K_NAMES,	/* lists of service names, paths, patterns and origins */
	K_INCLUDE,
	K_LOCKPATS,
	K_TOPICPATS,
	K_ORIGINS,
	K_READY,	/* a readiness check, and a health check */
	K_HEALTH,
	K_STDOUT,	/* where output goes */
	K_STDERR,
	K_RLIMIT,	/* config_proc.c: a resource limit, SOFT:HARD */
	K_NICE,		/* -20 to 19, or nothing */
	K_OOM,		/* -1000 to 1000, or nothing */
	K_ENVFILES,	/* environment files, -PATH when it may be missing */
	K_NATSURLS,	/* config_cluster.c: nats:// or tls:// URLs */
	K_NATSNAME,	/* the KV bucket's name */
	K_INSTANCES,	/* config_template.c: 1 to TMPL_INSTANCES_MAX, or nothing for 0 */
	K_NTYPES
};

struct parse_ctx {
	const char *dir;	/* directory of the file holding the key */
};

/* Parses value into the field at p.  On error returns -1, leaves the field
 * as it was and writes what was expected into why. */
int key_parse(const struct key_def *k, const struct parse_ctx *ctx,
	      const char *value, void *p, struct sbuf *why);
/* The same with the key's default: k is config_keys[i]. */
int key_parse_default(const struct key_def *k, size_t i, const struct parse_ctx *ctx, void *p,
		      struct sbuf *why);
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

/* config_proc.c: the keys of what a service's process gets from the
 * kernel (limits, nice, oom_score_adj) and environment_file. */
int key_parse_proc(enum key_type t, const struct parse_ctx *ctx, const char *v, void *p, struct sbuf *why);
bool key_equal_proc(enum key_type t, const void *a, const void *b);
/* config_cluster.c: `cluster` (nats:// or tls:// URLs, comma-separated)
 * and `cluster_name` (the KV bucket's name: letters, digits, - and _).
 * Without libnats, any `cluster` is refused: the mode is not built in. */
int cluster_urls_parse(const char *v, char **out, struct sbuf *why);
int cluster_name_parse(const char *v, char **out, struct sbuf *why);

/* config_template.c: instances = N, and the expansion of %i, %{i+N} and
 * %% in the keys tmpl_key_expands names (see the file's comment). */
int tmpl_parse_instances(const char *v, uint64_t *out, struct sbuf *why);
/* The same for [service:NAME], whose instance names must fit too: -1
 * with why and *n = 1 (check the section as one instance) when not. */
int tmpl_instances(const char *name, const char *v, uint64_t *n, struct sbuf *why);
bool tmpl_key_expands(const char *key);
int tmpl_expand(const char *in, uint64_t instance, struct sbuf *out, struct sbuf *why);

bool lock_name_valid(const char *name);
bool lock_pattern_valid(const char *pat);

#endif
