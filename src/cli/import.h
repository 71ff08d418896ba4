/*
 * import.h - what the files of `cohortctl import` share.  The command reads
 * supervisord configs and systemd units and prints one cohort config:
 *
 *   cli_import.c          the command: which kind each file is, the order
 *                         of the work, the summary on stderr
 *   import_read.c         the two line readers (configparser's syntax and
 *                         systemd's) into sections of key/value entries
 *   import_table.c        THE mapping: one table of foreign key -> cohort
 *                         key + converter, or the reason it has none; and
 *                         the small converters (durations, signals, ...)
 *   import_supervisord.c  [program:x], [group:x], [include], %(...)s
 *   import_systemd.c      a .service unit: Exec lines, quoting, specifiers
 *   import_out.c          the cohort services being built, and their text
 *
 * Errors are returned as text (FILE:LINE: message) in a struct sbuf; only
 * the command prints them.
 */
#ifndef COHORT_IMPORT_H
#define COHORT_IMPORT_H

#include <stdbool.h>
#include <stddef.h>

#include "util.h"

enum imp_kind { IMP_SUPERVISORD, IMP_SYSTEMD };

/* --- import_read.c: a foreign file as sections of entries ------------------ */

struct imp_entry {
	char *key;	/* lower-cased for supervisord, as written for systemd */
	char *value;	/* continuation lines joined (configparser: with \n) */
	int line;
};

struct imp_section {
	char *name;	/* between the brackets */
	int line;
	struct imp_entry *e;
	size_t n, cap;
};

struct imp_file {
	char *path;
	char *dir;	/* its directory: %(here)s, relative includes */
	enum imp_kind kind;
	struct imp_section *s;
	size_t n, cap;
};

/* Reads PATH and decides its kind (a .service suffix or a [Service]
 * section: systemd; [program: or [supervisord]: supervisord).  0, or -1
 * with the reason, naming the file (and the line), added to ERR. */
int imp_read_file(const char *path, struct imp_file *f, struct sbuf *err);
/* The same for a file whose kind is known (an [include]d file). */
int imp_read_kind(const char *path, enum imp_kind kind, struct imp_file *f, struct sbuf *err);
void imp_file_free(struct imp_file *f);
/* PATH made absolute, without . and .. (as Python's abspath: %(here)s and
 * the globs of [include] are built from it); newly allocated. */
char *imp_abspath(const char *path);
/* The last entry KEY of S, or NULL. */
const struct imp_entry *imp_section_get(const struct imp_section *s, const char *key);

/* --- import_out.c: the services being built --------------------------------- */

struct imp_kv {
	char *key;	/* a cohort key */
	char *value;
};

/* A dependency named in the foreign file, kept until every file is read:
 * only one on a service imported too becomes requires/after. */
struct imp_dep {
	char *name;	/* cohort service name */
	char *written;	/* as the file wrote it: KEY=UNIT */
	bool required;	/* requires (else after) */
};

struct imp_svc {
	char *name;
	char *file;	/* where it was defined */
	int line;
	char *title;	/* systemd Description=, a comment */
	struct imp_kv *kv;
	size_t nkv, capkv;
	struct strv notes;	/* comment lines, in order */
	size_t skipped;	/* of them, settings not imported */
	struct imp_dep *deps;
	size_t ndeps, capdeps;
	int priority;	/* supervisord priority (999 when not given) */
};

struct imp_run {
	struct imp_svc **svc;
	size_t n, cap;
	struct strv daemon_notes;	/* comments for [cohort] */
	size_t daemon_skipped;
	struct strv sources;
	int include_depth;	/* supervisord [include]s being read */
};

/* A new service NAME; NULL (and ERR says why) if the name is taken or not
 * a cohort name. */
struct imp_svc *imp_svc_add(struct imp_run *run, const char *name, const char *file, int line,
			    struct sbuf *err);
/* Sets KEY (replacing an earlier value). */
void imp_set(struct imp_svc *s, const char *key, const char *value);
const char *imp_get(const struct imp_svc *s, const char *key);
void imp_unset(struct imp_svc *s, const char *key);
/* "; not imported: KEY=VALUE: WHY" (counted). */
void imp_skip(struct imp_svc *s, const char *key, const char *value, const char *why);
/* "; note: ..." (not counted: a setting imported, with a difference). */
void imp_note(struct imp_svc *s, const char *fmt, ...) PRINTF(2, 3);
void imp_daemon_skip(struct imp_run *run, const char *section, const char *key, const char *value,
		     const char *why);
void imp_dep_add(struct imp_svc *s, const char *name, const char *written, bool required);
/* Dependencies on services not imported become notes; priorities become
 * phases. */
void imp_resolve(struct imp_run *run);
/* The cohort config, on F. */
void imp_print(const struct imp_run *run, FILE *f);
size_t imp_skipped_total(const struct imp_run *run);
void imp_run_free(struct imp_run *run);
/* Is NAME a cohort service name? */
bool imp_valid_name(const char *name);

/* --- import_table.c: the mapping ------------------------------------------- */

/* Where a foreign key is: supervisord [program:x] and its daemon-wide
 * sections, systemd [Unit], [Service], [Install]. */
enum imp_where {
	W_PROGRAM,	/* a key of supervisord's [program:x] */
	W_SUPERVISORD,	/* a key of supervisord's [supervisord] */
	W_SV_SECTION,	/* another supervisord section, by name */
	W_UNIT,		/* keys of systemd's [Unit], [Service], [Install] */
	W_SERVICE,
	W_INSTALL,
	W_SD_SECTION,	/* another systemd section, by name */
};

/* The state of one conversion, handed to converters. */
struct imp_ctx {
	struct imp_run *run;
	struct imp_svc *svc;
	const struct imp_file *file;
	const struct imp_section *sec;
	const struct imp_entry *entry;	/* its value expanded */
	const char *written;	/* the value as written, for comments */
	struct sbuf *err;	/* a fatal error (the import fails) */
	void *kind_state;	/* import_systemd.c's or import_supervisord.c's */
};

/*
 * A converter turns VALUE into the row's cohort key (imp_set) or settings
 * of its own.  Returns NULL when done, a reason when the value has no
 * equivalent (a not-imported comment), or IMP_FATAL after adding to
 * ctx->err.
 */
typedef const char *(*imp_conv)(struct imp_ctx *x, const char *cohort_key, const char *value);
extern const char IMP_FATAL[];

struct imp_map {
	enum imp_where where;
	const char *key;	/* the foreign key; a trailing * matches a prefix */
	const char *cohort;	/* the cohort key, or NULL */
	imp_conv conv;		/* NULL: the value is copied */
	/* No cohort key and no converter: why it is not imported (the
	 * comment's reason).  Else how the value is converted, for the
	 * documentation (--table); NULL: copied as it is. */
	const char *reason;
};

extern const struct imp_map imp_table[];
extern const size_t imp_table_len;

/* The row for KEY in WHERE (supervisord keys case-insensitively), or NULL. */
const struct imp_map *imp_lookup(enum imp_where where, const char *key);
/* Applies the row for the current entry (a not-imported comment when there
 * is none); -1 on a fatal error. */
int imp_apply(struct imp_ctx *x, enum imp_where where);

/* Converters the table uses, in the kind's file. */
const char *sv_command(struct imp_ctx *x, const char *k, const char *v);
const char *sv_numprocs(struct imp_ctx *x, const char *k, const char *v);
const char *sv_numprocs_start(struct imp_ctx *x, const char *k, const char *v);
const char *sv_process_name(struct imp_ctx *x, const char *k, const char *v);
const char *sv_priority(struct imp_ctx *x, const char *k, const char *v);
const char *sv_logfile(struct imp_ctx *x, const char *k, const char *v);
const char *sv_template_key(struct imp_ctx *x, const char *k, const char *v);
const char *sd_exec_start(struct imp_ctx *x, const char *k, const char *v);
const char *sd_exec_start_pre(struct imp_ctx *x, const char *k, const char *v);
const char *sd_type(struct imp_ctx *x, const char *k, const char *v);
const char *sd_pidfile(struct imp_ctx *x, const char *k, const char *v);
const char *sd_environment(struct imp_ctx *x, const char *k, const char *v);
const char *sd_environment_file(struct imp_ctx *x, const char *k, const char *v);
const char *sd_deps(struct imp_ctx *x, const char *k, const char *v);
const char *sd_description(struct imp_ctx *x, const char *k, const char *v);
const char *sd_directory(struct imp_ctx *x, const char *k, const char *v);

/* --- the two kinds ---------------------------------------------------------- */

int imp_supervisord(struct imp_run *run, struct imp_file *f, struct sbuf *err);
int imp_systemd(struct imp_run *run, struct imp_file *f, struct sbuf *err);

#endif
