/*
 * config_loader.h - what config.c (files, lines, sections) and
 * config_section.c (a finished section into a struct svc_config) share
 * while one config is loaded.  Private to src/config/.
 */
#ifndef COHORT_CONFIG_LOADER_H
#define COHORT_CONFIG_LOADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config_keys.h"

enum sec_kind { SEC_NONE, SEC_DAEMON, SEC_SERVICE, SEC_BAD };

/* One section's keys as written, before parsing. */
struct raw_section {
	enum sec_kind kind;
	int line;
	struct sbuf *value;	/* per key index */
	int *key_line;
	bool *set;
	int last_key;		/* key a continuation line extends, or -1 */
	struct svc_config *svc;	/* SEC_SERVICE */
};

struct loader {
	struct cohort_config *cfg;
	struct diag *d;
	const char *file;	/* as shown in messages (in cfg->files) */
	const char *dir;	/* absolute directory for relative paths (in cfg->dirs) */
	bool is_main;
	const char *data;	/* the file's bytes */
	size_t len, pos;
	int lineno;
	bool continuation;	/* current line continues the previous value */
	bool after_key;		/* a key line since the section header */
	size_t errors_here;	/* errors reported for this file */
	bool mute;		/* a template's later instances: their errors are the first's */
	uint64_t instances;	/* made by templates so far, all files */
	struct raw_section sec;
	struct raw_section daemon;	/* [cohort] may be split; kept to the end of the main file */
	bool daemon_seen;
};

/* Reports "FILE:LINE: message" for the file being read, unless muted. */
void lerr(struct loader *l, int line, const char *fmt, ...) PRINTF(3, 4);

void raw_init(struct raw_section *r, enum sec_kind kind, int line);
void raw_free(struct raw_section *r);

/* Parses every key of r into base (a cohort_config or a svc_config) and
 * a service's rare keys into rare (NULL: they keep the shared default). */
void parse_section(struct loader *l, struct raw_section *r, void *base, struct svc_rare *rare,
		   enum key_section ks, const char *label, int *key_line);
/* Frees a service's own rare keys; the shared default stays. */
void svc_rare_free(const struct svc_rare *rare);

/* A new service named name, in the config's list and name map. */
struct svc_config *add_service(struct loader *l, const char *name, int line);

/* l->sec, a [service:NAME] section that ended: one service, or a
 * template's instances. */
void finish_service(struct loader *l);

#endif
