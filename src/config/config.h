/*
 * config.h - the parsed configuration: the [cohort] section and one
 * struct svc_config per [service:NAME].  config_load() reads a file and its
 * includes with inih and fills these from the key table in config_keys.c;
 * every problem found is collected in a struct diag as "FILE:LINE: message".
 * A config is immutable once loaded: reload builds a new one and swaps.
 */
#ifndef COHORT_CONFIG_H
#define COHORT_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "map.h"
#include "util.h"

#define SVC_NAME_MAX 64
#define TMPL_INSTANCES_MAX 10000	/* instances = N: at most this many, in all templates */
#define TMPL_OFFSET_MAX 1000000		/* %{i+N}: N at most this */
#define LOCK_NAME_MAX 255

enum restart_policy { RESTART_ALWAYS, RESTART_ON_FAILURE, RESTART_NEVER };
enum fsync_policy { FSYNC_ALWAYS, FSYNC_BATCH, FSYNC_NEVER };

/* Where a service's stdout or stderr goes. */
enum out_kind { OUT_LOG, OUT_INHERIT, OUT_NULL, OUT_PATH, OUT_STDOUT };
struct output {
	enum out_kind kind;
	char *path;		/* OUT_PATH: absolute or relative to cwd */
};

/* A readiness or health check. */
enum check_kind { CHECK_NONE, CHECK_NOTIFY, CHECK_DELAY, CHECK_TCP, CHECK_HTTP, CHECK_EXEC };
/* What a probe connects to or runs: only the checks that probe have one
 * (10,000 services with ready = delay: carried 48 empty bytes each). */
struct check_target {
	char *host;		/* CHECK_TCP, CHECK_HTTP */
	char *port;
	char *path;		/* CHECK_HTTP: "/..." */
	struct strv argv;	/* CHECK_EXEC */
};
struct check {
	enum check_kind kind;
	int64_t delay_ms;	/* CHECK_DELAY */
	struct check_target *to;	/* CHECK_TCP, CHECK_HTTP, CHECK_EXEC; else NULL */
	char *text;		/* as written, for messages */
};

/* A resource limit of a service (setrlimit before exec). */
struct svc_rlimit {
	bool set;		/* false: cohortd's own */
	uint64_t cur, max;	/* RLIM_INFINITY is UINT64_MAX */
};
#define SVC_INT_UNSET INT32_MIN	/* nice, oom_score_adjust: cohortd's own */

/* A key a section sets, and its line, for messages (svc_key_line). */
struct key_line {
	unsigned key;		/* index in config_keys */
	int line;
};

/*
 * The keys most services leave to their defaults.  They are ~300 bytes, and
 * the default lists (locks, publish, subscribe) three allocations more, that
 * 10,000 services would each carry: so a service reaches them through
 * svc_config.rare, which is the one shared default (svc_rare_default, never
 * freed) unless its section sets one of them; then it is the service's own.
 */
struct svc_rare {
	struct svc_rlimit limit_nofile, limit_core, limit_nproc, limit_as;
	int nice;		/* SVC_INT_UNSET, or -20..19 */
	int oom_score_adjust;	/* SVC_INT_UNSET, or -1000..1000 */
	struct strv environment_file;	/* paths; "-PATH": a missing file is fine */
	char *pidfile;		/* the daemon the command forks writes its pid here
				 * (systemd's Type=forking, PIDFile=), or NULL */
	struct check health;
	int64_t health_interval_ms;
	int64_t health_timeout_ms;
	uint64_t health_retries;
	uint8_t success_exit[32];	/* bitmap of exit codes 0..255 */
	uint64_t log_max_size;
	uint64_t log_backups;
	struct strv locks;
	struct strv publish;
	struct strv subscribe;
};

struct svc_config {
	size_t index;		/* position in cohort_config.services */
	const char *file;	/* where the section is, for messages (in cohort_config.files) */
	int line;
	/* The keys the section sets, in table order, of those whose line is
	 * kept (svc_key_line): a section sets a few of ~70 keys, and 10,000
	 * services would keep 280 bytes each of zeros in an array over them
	 * all. */
	unsigned nkey_lines;
	struct key_line *key_lines;
	uint64_t instances;	/* as written: 0, or this is one of a template's */
	char *template_name;	/* NAME of NAME@K, or NULL: not an instance */
	uint64_t instance;	/* K of NAME@K */

	char *command;		/* as written */
	struct strv argv;	/* command split into words (or sh -c); packed (strv_pack) */
	char *directory;
	struct strv environment;	/* "NAME=VALUE" */
	char *user;
	char *group;
	/* (The small fields side by side, out of the keys' order: no padding.) */
	int umask;		/* set before exec; -1: cohortd's own */
	bool shell;
	bool directory_of_file;	/* directory is the file's (in cohort_config.dirs), not a copy */
	bool autostart;
	struct strv requires;
	struct strv after;
	uint64_t phase;		/* 0: not set */
	struct check ready;
	int64_t ready_timeout_ms;
	enum restart_policy restart;
	int stop_signal;
	int64_t backoff_initial_ms;
	double backoff_factor;
	int64_t backoff_max_ms;
	double backoff_jitter;
	int64_t backoff_reset_ms;
	uint64_t breaker_failures;
	int64_t breaker_window_ms;
	int64_t breaker_cooldown_ms;
	int64_t stop_timeout_ms;
	struct output out;
	struct output err;
	const struct svc_rare *rare;	/* its rare keys, read-only: maybe the shared default */
	/* In the same block, with room for 2 more bytes: a template's section
	 * becomes its first instance, NAME@0, in place (make_instances). */
	char name[];
};

struct cohort_config {
	char *file;		/* main file as given */
	char *run_dir;
	char *state_dir;
	char *log_dir;
	char *log_file;		/* cohortd's own log too, or NULL */
	struct strv include;
	uint64_t control_mode;
	char *control_group;
	uint64_t bus_mode;
	char *bus_listen;	/* "HOST:PORT" or NULL */
	char *admin_token_file;	/* NULL: state_dir/admin.token */
	struct strv bus_allowed_origins;	/* origins of pages let in besides the bus's own */
	enum fsync_policy bus_fsync;
	uint64_t bus_max_message;
	int64_t bus_ack_timeout_ms;	/* qos-1 redelivery after this */
	int64_t bus_idle_timeout_ms;	/* no progress either way: closed (0: never) */
	uint64_t bus_max_connections;	/* open at once, at most */
	uint64_t bus_max_connections_per_uid;	/* on bus.sock, for a uid that is no admin */
	uint64_t bus_queue_max;		/* a durable session's queue, in bytes */
	uint64_t bus_memory_max;	/* all queues: over it qos-1 publishes are refused (0: no bound) */
	int64_t bus_queue_age_ms;	/* ... and in age */
	char *cluster;		/* nats:// URLs, comma-separated, or NULL: one host */
	char *cluster_name;	/* the lock bucket is COHORT_LOCKS_<name> */
	char *cluster_creds;	/* NATS credentials file, or NULL */
	char *cluster_tls_ca;	/* PEM files, or NULL */
	char *cluster_tls_cert;
	char *cluster_tls_key;
	int64_t shutdown_timeout_ms;
	char *state_mirror_dir;	/* retained values as files here, or NULL */
	struct strv state_mirror_topics;	/* ... those on these topics */
	int *key_line;

	int refs;		/* config_ref/config_unref; config_load gives 1 */

	/* The files read, and their absolute directories, in the order read:
	 * each service points into them for its file, and for its directory
	 * when its section sets none, rather than keep a copy of its own
	 * (10,000 services from one file made 20,000 copies). */
	struct strv files;
	struct strv dirs;

	struct svc_config **services;	/* in file order */
	size_t nservices;
	struct map by_name;	/* name -> struct svc_config */
	struct map templates;	/* NAME of a template -> its instance NAME@0 */
};

/* Errors, kept sorted by file (in the order files were read) and line, so
 * they read top to bottom whatever stage found them. */
struct diag {
	struct strv lines;	/* "FILE:LINE: message" */
	int64_t *keys;		/* file order << 32 | line, parallel to lines */
	struct strv files;	/* file names in the order first seen */
	size_t count;		/* all errors, including those not kept */
};
void diag_add(struct diag *d, const char *file, int line, const char *fmt, ...) PRINTF(4, 5);
void diag_print(const struct diag *d, FILE *f);
void diag_free(struct diag *d);

/* Loads path and its includes, with every problem found added to *d.
 * Returns NULL only when the main file cannot be read; a config returned
 * with problems in *d is not fit to run (plan_load checks, and frees it). */
struct cohort_config *config_load(const char *path, struct diag *d);
void config_free(struct cohort_config *c);
/* A running daemon shares a config between the services that use it;
 * the last unref frees it. */
struct cohort_config *config_ref(struct cohort_config *c);
void config_unref(struct cohort_config *c);
struct svc_config *config_find(const struct cohort_config *c, const char *name);
/* True when the two definitions are the same in every key. */
bool svc_config_equal(const struct svc_config *a, const struct svc_config *b);
/* The keys in which b differs from a, in table order, pushed to keys
 * (when not NULL); their number.  *restart (when not NULL) says whether
 * one of them is a KEY_RESTART key: a running process must be restarted
 * to see it. */
size_t svc_config_diff(const struct svc_config *a, const struct svc_config *b, struct strv *keys,
		       bool *restart);
/* A service name: 1-64 of [A-Za-z0-9_.-], or an instance's NAME@K. */
bool svc_name_valid(const char *name);
/* config_template.c: a template's first instance (NAME@0), or NULL; its
 * instances are services[index .. index + instances - 1]. */
const struct svc_config *config_template(const struct cohort_config *c, const char *name);
/* The services a name given by a user means, pushed to out in config
 * order: a service's own name; a template's NAME (every instance); a
 * glob (* ? [...], as fnmatch: worker@* is every instance of worker).
 * Their number, or -1 with why ("no such service: ..."). */
int config_match(const struct cohort_config *c, const char *pattern, struct strv *out, struct sbuf *why);
bool exit_is_success(const struct svc_config *s, int code);
/* Line of key in s, or the section's line when it was defaulted.  Kept
 * only for the keys the plan names in its messages: requires, after,
 * phase (config_section.c, line_kept). */
int svc_key_line(const struct svc_config *s, const char *key);

/* The key table (config_keys.c): config.c reads every key through it,
 * reload.c compares through it, and the unit tests hold the man page to
 * it.  What each key means is in doc/cohort.ini.5. */
enum key_section { KS_DAEMON, KS_SERVICE };
/* What a reload does with a changed value (see the table's comment). */
enum key_apply {
	KEY_RESTART,	/* [cohort]: at the next start of cohortd; service: restarts it */
	KEY_LIVE,	/* applies to what runs, at once */
};
struct key_def {
	enum key_section section;
	const char *name;
	int type;		/* enum key_type in config_keys.h */
	bool rare;		/* a service's key in struct svc_rare */
	size_t offset;		/* of the field in cohort_config, svc_config or svc_rare */
	enum key_apply apply;
	const char *def;	/* default as written in the config, "" for empty */
	int64_t min, max;	/* bounds of a number (see enum key_type) */
};
extern const struct key_def config_keys[];
extern const size_t config_nkeys;
/* The rare keys' defaults, shared by every service that sets none of them. */
const struct svc_rare *svc_rare_default(void);
/* Where service s keeps the value of key k: in s, or in s->rare. */
const void *svc_key_field(const struct svc_config *s, const struct key_def *k);
const char *signal_name(int sig);
int signal_number(const char *name);

#endif
