/*
 * config_keys.c - the table of every configuration key (section, name,
 * type, where it lives, default, meaning) and one parser per value type.
 * config.c drives the inih handler from this table; the man page's key list
 * and the did-you-mean candidates come from it too, so a key exists in
 * exactly one place.
 */
#include "autoconfig.h"

#include <ctype.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config_keys.h"
#include "hostport.h"
#include "topic.h"
#include "words.h"

/*
 * The fourth column says what a reload does with a changed value.
 * [cohort]: LIVE keys are read afresh (or handed over by reload.c) and
 * apply at once; RESTART keys (listeners, directories, the journal) keep
 * the value cohortd started with until it restarts.  [service:NAME]: LIVE
 * keys are cohortd's own business (probes, backoff, log rotation, order)
 * and apply to the running process; RESTART keys are what the process
 * itself sees (its command, environment, ids, directory, output
 * descriptors, bus and lock rights), so a change restarts it.  A new key
 * must choose: the macros take the column.
 */
#define D(k, f, t, a) KS_DAEMON, k, t, offsetof(struct cohort_config, f), KEY_##a
#define S(k, f, t, a) KS_SERVICE, k, t, offsetof(struct svc_config, f), KEY_##a

const struct key_def config_keys[] = {
	{D("run_dir", run_dir, K_PATH, RESTART), "/run/cohort", "directory of control.sock, bus.sock and notify.sock"},
	{D("state_dir", state_dir, K_PATH, RESTART), "/var/lib/cohort", "bus journal, retained values, lock token counter"},
	{D("log_dir", log_dir, K_PATH, RESTART), "/var/log/cohort", "per-service logs (stdout = log)"},
	{D("log_file", log_file, K_PATH, LIVE), "", "cohortd's own log, here as well as on stderr (reopened on SIGUSR1)"},
	{D("include", include, K_INCLUDE, LIVE), "conf.d/*.ini", "more files with [service:*] sections (globs, sorted; no match is fine)"},
	{D("control_mode", control_mode, K_MODE, RESTART), "0600", "permissions of control.sock"},
	{D("control_group", control_group, K_STR, RESTART), "", "group given access to control.sock (and admin on the bus)"},
	{D("bus_mode", bus_mode, K_MODE, RESTART), "0666", "permissions of bus.sock"},
	{D("bus_listen", bus_listen, K_LISTEN, RESTART), "", "HOST:PORT: the bus also on TCP (off when empty)"},
	{D("bus_allowed_origins", bus_allowed_origins, K_ORIGINS, RESTART), "", "origins (http[s]://HOST[:PORT], or *) of web pages that may open the bus, besides its own"},
	{D("bus_fsync", bus_fsync, K_FSYNC, RESTART), "batch", "always | batch | never: when bus writes reach the disk"},
	{D("bus_max_message", bus_max_message, K_MSGSIZE, RESTART), "1M", "largest bus frame accepted (1K to 16M)"},
	{D("bus_ack_timeout", bus_ack_timeout_ms, K_DURATION, LIVE), "30s", "an unacked qos-1 delivery is sent again after this"},
	{D("bus_idle_timeout", bus_idle_timeout_ms, K_DURATION, RESTART), "60s", "a bus connection that neither reads nor sends for this long is closed (0: never)"},
	{D("bus_max_connections", bus_max_connections, K_POSITIVE, LIVE), "1024", "bus connections at most (fewer if the descriptor limit leaves fewer)"},
	{D("bus_max_connections_per_uid", bus_max_connections_per_uid, K_POSITIVE, LIVE), "128", "bus.sock connections of one uid at most (admins aside)"},
	{D("bus_queue_max", bus_queue_max, K_SIZE, LIVE), "64M", "a durable session's queue while it is away, at most"},
	{D("bus_memory_max", bus_memory_max, K_SIZE, LIVE), "1G", "memory all bus queues may hold; over it qos-1 publishes are refused (0: no bound)"},
	{D("bus_queue_age", bus_queue_age_ms, K_DURATION, LIVE), "7d", "queued messages older than this are dropped"},
	{D("shutdown_timeout", shutdown_timeout_ms, K_DURATION, LIVE), "30s", "whole-stack stop budget; then KILL"},

	{S("command", command, K_COMMAND, RESTART), "", "what to run, split like a shell splits words (required)"},
	{S("shell", shell, K_BOOL, RESTART), "no", "yes: run command with /bin/sh -c"},
	{S("directory", directory, K_PATH, RESTART), "", "working directory (default: the directory of the file defining the service)"},
	{S("environment", environment, K_ENV, RESTART), "", "NAME=VALUE, ... added to cohortd's environment (NAME=\"a, b\" or \\, for a comma)"},
	{S("user", user, K_STR, RESTART), "", "when cohortd runs as root: run as this user, with its groups"},
	{S("group", group, K_STR, RESTART), "", "when cohortd runs as root: run with this group"},
	{S("umask", umask, K_UMASK, RESTART), "", "octal file mode creation mask, such as 027 (default: cohortd's)"},
	{S("autostart", autostart, K_BOOL, LIVE), "yes", "start with the stack"},
	{S("requires", requires, K_NAMES, LIVE), "", "services that must be ready first; stopping them stops this one"},
	{S("after", after, K_NAMES, LIVE), "", "services to start after (ready or failed); ordering only"},
	{S("phase", phase, K_PHASE, LIVE), "", "explicit phase, at least the one the dependencies imply"},
	{S("ready", ready, K_READY, LIVE), "delay:1s", "notify | delay:DUR | tcp:HOST:PORT | http://HOST:PORT/PATH | exec:CMD"},
	{S("ready_timeout", ready_timeout_ms, K_DURATION, LIVE), "60s", "not ready by then: a failed start"},
	{S("health", health, K_HEALTH, LIVE), "", "tcp:HOST:PORT | http://HOST:PORT/PATH | exec:CMD (off when empty)"},
	{S("health_interval", health_interval_ms, K_DURATION, LIVE), "10s", "time between health probes"},
	{S("health_timeout", health_timeout_ms, K_DURATION, LIVE), "2s", "a probe taking longer fails"},
	{S("health_retries", health_retries, K_POSITIVE, LIVE), "3", "consecutive failed probes before a restart"},
	{S("restart", restart, K_RESTART, LIVE), "always", "always | on-failure | never"},
	{S("success_exit", success_exit, K_EXITCODES, LIVE), "0", "exit codes that are not failures"},
	{S("backoff_initial", backoff_initial_ms, K_DURATION, LIVE), "1s", "first restart delay"},
	{S("backoff_factor", backoff_factor, K_FACTOR, LIVE), "2", "each consecutive failure multiplies the delay by this"},
	{S("backoff_max", backoff_max_ms, K_DURATION, LIVE), "60s", "longest restart delay"},
	{S("backoff_jitter", backoff_jitter, K_FRACTION, LIVE), "0.1", "random spread of each delay (0.1 = +-10%)"},
	{S("backoff_reset", backoff_reset_ms, K_DURATION, LIVE), "30s", "running this long resets the backoff and failure count"},
	{S("breaker_failures", breaker_failures, K_COUNT, LIVE), "5", "failures within breaker_window that open the breaker (0: never)"},
	{S("breaker_window", breaker_window_ms, K_DURATION, LIVE), "60s", "window of the breaker's failure count"},
	{S("breaker_cooldown", breaker_cooldown_ms, K_DURATION, LIVE), "2m", "open breaker: time until one trial start"},
	{S("stop_signal", stop_signal, K_SIGNAL, LIVE), "TERM", "signal that asks the service to stop"},
	{S("stop_timeout", stop_timeout_ms, K_DURATION, LIVE), "10s", "then KILL to the whole process group"},
	{S("stdout", out, K_STDOUT, RESTART), "log", "log | inherit | null | PATH"},
	{S("stderr", err, K_STDERR, RESTART), "stdout", "stdout | log | inherit | null | PATH"},
	{S("log_max_size", log_max_size, K_SIZE, LIVE), "10M", "rotate the log at this size"},
	{S("log_backups", log_backups, K_COUNT, LIVE), "5", "rotated logs kept"},
	{S("locks", locks, K_LOCKPATS, RESTART), "*", "lock names this service may take (glob patterns)"},
	{S("publish", publish, K_TOPICPATS, RESTART), ">", "topic patterns it may publish to"},
	{S("subscribe", subscribe, K_TOPICPATS, RESTART), ">", "topic patterns it may subscribe to"},
};
const size_t config_nkeys = ARRAY_LEN(config_keys);

static enum key_type type_of(const struct key_def *k)
{
	return (enum key_type)k->type;
}

int key_index(enum key_section sec, const char *name)
{
	for (size_t i = 0; i < config_nkeys; i++)
		if (config_keys[i].section == sec && strcmp(config_keys[i].name, name) == 0)
			return (int)i;
	return -1;
}

const char *key_suggest(enum key_section sec, const char *name)
{
	const char *cands[ARRAY_LEN(config_keys)];
	size_t n = 0;

	for (size_t i = 0; i < config_nkeys; i++)
		if (config_keys[i].section == sec)
			cands[n++] = config_keys[i].name;
	return did_you_mean(name, cands, n);
}

/*
 * Keys and sections of supervisord's [program:x] and of systemd units, and
 * what cohort uses instead.  People migrate by copying their old file, and
 * "unknown key" alone tells them nothing.  Matched without case: systemd
 * writes ExecStart, and a key of cohort's own is found before this table
 * is looked at.  Sections are written "[name]".
 */
static const struct {
	const char *name;
	const char *hint;
} foreign_keys[] = {
	/* supervisord */
	{"numprocs", "cohort runs one process per service: write a [service:NAME] section for each"},
	{"numprocs_start", "cohort runs one process per service: write a [service:NAME] section for each"},
	{"process_name", "the process is named by its [service:NAME] section"},
	{"priority", "the start order comes from requires and after (phases), or phase = N"},
	{"startsecs", "use ready = delay:DURATION; startsecs = 2 is ready = delay:2s"},
	{"startretries", "restarts back off (backoff_initial, backoff_max), and breaker_failures "
			 "within breaker_window end a crash loop"},
	{"autorestart", "use restart; true is always, unexpected is on-failure, false is never"},
	{"exitcodes", "use success_exit"},
	{"stopsignal", "use stop_signal"},
	{"stopwaitsecs", "use stop_timeout; stopwaitsecs = 10 is stop_timeout = 10s"},
	{"stopasgroup", "not needed: cohort always signals the whole process group"},
	{"killasgroup", "not needed: cohort always signals the whole process group"},
	{"redirect_stderr", "use stderr = stdout (the default)"},
	{"stdout_logfile", "use stdout = PATH, or stdout = log for log_dir/NAME.log"},
	{"stderr_logfile", "use stderr = PATH, stderr = log or stderr = stdout"},
	{"stdout_logfile_maxbytes", "use log_max_size"},
	{"stderr_logfile_maxbytes", "use log_max_size"},
	{"stdout_logfile_backups", "use log_backups"},
	{"stderr_logfile_backups", "use log_backups"},
	/* systemd */
	{"ExecStart", "use command; ExecStart=/usr/bin/app -x is command = /usr/bin/app -x"},
	{"ExecStartPre", "make it a service of its own with restart = on-failure, and requires = it here"},
	{"ExecStop", "stopping sends stop_signal to the process group: there is no stop command"},
	{"ExecReload", "reload a service with: cohortctl signal HUP NAME"},
	{"Type", "Type=notify is ready = notify; simple and exec are the default (ready = delay:1s); "
		 "oneshot is restart = on-failure"},
	{"Restart", "use restart = always, on-failure or never"},
	{"RestartSec", "use backoff_initial; RestartSec=5 is backoff_initial = 5s, "
		       "and later restarts back off up to backoff_max"},
	{"After", "use after with service names; After=db.service is after = db"},
	{"Requires", "use requires with service names; Requires=db.service is requires = db"},
	{"Wants", "use after = NAME: every service starts with the stack unless autostart = no"},
	{"BindsTo", "use requires: a service stops when one it requires stops"},
	{"User", "use user"},
	{"Group", "use group"},
	{"UMask", "use umask"},
	{"WorkingDirectory", "use directory"},
	{"Environment", "use environment = NAME=VALUE, NAME2=\"VALUE, with a comma\""},
	{"EnvironmentFile", "not supported: list the variables in environment"},
	{"KillSignal", "use stop_signal"},
	{"TimeoutStopSec", "use stop_timeout"},
	{"TimeoutStartSec", "use ready_timeout"},
	{"SuccessExitStatus", "use success_exit"},
	{"StartLimitBurst", "use breaker_failures"},
	{"StartLimitIntervalSec", "use breaker_window"},
	{"StandardOutput", "use stdout = log, inherit, null or a path"},
	{"StandardError", "use stderr = stdout, log, inherit, null or a path"},
	{"Description", "not a key here: write a comment (; or #)"},
	{"WantedBy", "not needed: services start with the stack unless autostart = no"},
	/* sections */
	{"[program]", "supervisord's [program:NAME] is [service:NAME] here"},
	{"[supervisord]", "cohortd's own settings go in [cohort]"},
	{"[Unit]", "a unit's keys go in one [service:NAME] section"},
	{"[Service]", "a unit's keys go in one [service:NAME] section"},
	{"[Install]", "not needed: services start with the stack unless autostart = no"},
};

static const char *foreign_hint(const char *name, size_t len)
{
	for (size_t i = 0; i < ARRAY_LEN(foreign_keys); i++)
		if (strlen(foreign_keys[i].name) == len && strncasecmp(foreign_keys[i].name, name, len) == 0)
			return foreign_keys[i].hint;
	return NULL;
}

const char *key_hint(const char *name)
{
	return *name == '[' ? NULL : foreign_hint(name, strlen(name));
}

const char *section_hint(const char *name)
{
	char buf[64];
	int n = snprintf(buf, sizeof(buf), "[%s]", name);

	return n > 0 && (size_t)n < sizeof(buf) ? foreign_hint(buf, (size_t)n) : NULL;
}

/* Signals by name. */
static const struct {
	const char *name;
	int sig;
} signals[] = {
	{"HUP", SIGHUP}, {"INT", SIGINT}, {"QUIT", SIGQUIT}, {"KILL", SIGKILL},
	{"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"TERM", SIGTERM},
	{"ALRM", SIGALRM}, {"CONT", SIGCONT}, {"STOP", SIGSTOP},
	{"TSTP", SIGTSTP}, {"WINCH", SIGWINCH}, {"PWR", SIGPWR},
	{"ABRT", SIGABRT}, {"PIPE", SIGPIPE}, {"SEGV", SIGSEGV},
	{"BUS", SIGBUS}, {"FPE", SIGFPE}, {"ILL", SIGILL}, {"TRAP", SIGTRAP},
	{"XCPU", SIGXCPU}, {"XFSZ", SIGXFSZ}, {"SYS", SIGSYS},
	{"TTIN", SIGTTIN}, {"TTOU", SIGTTOU}, {"URG", SIGURG},
	{"VTALRM", SIGVTALRM}, {"PROF", SIGPROF}, {"IO", SIGIO},
	{"CHLD", SIGCHLD},
};

const char *signal_name(int sig)
{
	for (size_t i = 0; i < ARRAY_LEN(signals); i++)
		if (signals[i].sig == sig)
			return signals[i].name;
	return "?";
}

int signal_number(const char *name)
{
	if (strncasecmp(name, "SIG", 3) == 0)
		name += 3;
	for (size_t i = 0; i < ARRAY_LEN(signals); i++)
		if (strcasecmp(signals[i].name, name) == 0)
			return signals[i].sig;
	if (isdigit((unsigned char)*name)) {
		char *end;
		long v = strtol(name, &end, 10);
		if (!*end && v > 0 && v < NSIG)
			return (int)v;
	}
	return -1;
}

/* Splits a comma-separated list, trimming items and dropping empty ones.
 * "\," is a literal comma. */
static void split_list(const char *value, struct strv *out)
{
	struct sbuf item = {0};

	*out = (struct strv){0};
	for (const char *p = value;; p++) {
		if (*p == '\\' && p[1] == ',') {
			sbuf_addc(&item, ',');
			p++;
			continue;
		}
		if (*p == ',' || *p == '\0') {
			if (item.len) {
				char *t = str_trim(item.buf);
				if (*t)
					strv_push(out, t);
			}
			sbuf_free(&item);
			if (*p == '\0')
				break;
			continue;
		}
		sbuf_addc(&item, *p);
	}
}

bool svc_name_valid(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > SVC_NAME_MAX)
		return false;
	return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			    "0123456789_.-") == n;
}

bool lock_name_valid(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > LOCK_NAME_MAX)
		return false;
	return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			    "0123456789_.:/-") == n;
}

bool lock_pattern_valid(const char *pat)
{
	size_t n = strlen(pat);

	if (n == 0 || n > LOCK_NAME_MAX)
		return false;
	return strspn(pat, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			   "0123456789_.:/-*?") == n;
}

static void check_free(struct check *c)
{
	free(c->host);
	free(c->port);
	free(c->path);
	free(c->text);
	strv_free(&c->argv);
	*c = (struct check){0};
}

static int parse_check(const char *v, struct check *c, bool health, struct sbuf *why)
{
	const char *w;
	const char *expected = health
		? "tcp:HOST:PORT, http://HOST:PORT/PATH, exec:CMD or nothing"
		: "notify, delay:DURATION, tcp:HOST:PORT, http://HOST:PORT/PATH or exec:CMD";
	struct check n = {0};

	if (!*v && health) {
		n.kind = CHECK_NONE;
	} else if (!health && strcmp(v, "notify") == 0) {
		n.kind = CHECK_NOTIFY;
	} else if (!health && str_starts(v, "delay:")) {
		n.kind = CHECK_DELAY;
		if (parse_duration_ms(v + 6, &n.delay_ms, &w) < 0) {
			sbuf_addf(why, "delay: expects %s", w);
			return -1;
		}
	} else if (str_starts(v, "tcp:")) {
		n.kind = CHECK_TCP;
		if (hostport_split(v + 4, NULL, &n.host, &n.port) < 0)
			goto bad;
	} else if (str_starts(v, "http://")) {
		const char *hp = v + 7;
		const char *slash = strchr(hp, '/');
		char *hostport = slash ? xstrndup(hp, (size_t)(slash - hp)) : xstrdup(hp);
		int rc = hostport_split(hostport, NULL, &n.host, &n.port);
		free(hostport);
		if (rc < 0)
			goto bad;
		n.kind = CHECK_HTTP;
		n.path = xstrdup(slash ? slash : "/");
		if (strpbrk(n.path, " \t\r\n")) {
			check_free(&n);
			goto bad;
		}
	} else if (str_starts(v, "exec:")) {
		n.kind = CHECK_EXEC;
		if (words_split(v + 5, &n.argv, &w) < 0) {
			sbuf_addf(why, "exec: %s", w);
			return -1;
		}
		if (n.argv.n == 0) {
			sbuf_adds(why, "exec: expects a command");
			return -1;
		}
	} else {
		goto bad;
	}
	n.text = xstrdup(v);
	check_free(c);
	*c = n;
	return 0;
bad:
	sbuf_addf(why, "expected %s", expected);
	return -1;
}

static bool check_equal(const struct check *a, const struct check *b)
{
	return (a->text && b->text) ? strcmp(a->text, b->text) == 0 : a->text == b->text;
}

static int parse_output(const char *v, struct output *o, bool is_err,
			const struct parse_ctx *ctx, struct sbuf *why)
{
	static const char *const outs[] = {"log", "inherit", "null", "stdout"};
	struct output n = {0};

	if (strcmp(v, "log") == 0)
		n.kind = OUT_LOG;
	else if (strcmp(v, "inherit") == 0)
		n.kind = OUT_INHERIT;
	else if (strcmp(v, "null") == 0)
		n.kind = OUT_NULL;
	else if (is_err && strcmp(v, "stdout") == 0)
		n.kind = OUT_STDOUT;
	else if (strchr(v, '/')) {
		n.kind = OUT_PATH;
		n.path = path_join(ctx->dir, v);
	} else {
		const char *m = did_you_mean(v, outs, is_err ? 4 : 3);
		sbuf_addf(why, "expected %slog, inherit, null or a path containing \"/\"",
			  is_err ? "stdout, " : "");
		if (m)
			sbuf_addf(why, " (did you mean \"%s\"?)", m);
		return -1;
	}
	free(o->path);
	*o = n;
	return 0;
}

/* A value quoted as supervisord users write it: "..." (where \" and \\
 * are a quote and a backslash) or '...'; *pp is at the opening quote and
 * is left after the closing one.  -1 when it does not close. */
static int env_quoted(const char **pp, struct sbuf *val)
{
	const char *p = *pp;
	char q = *p++;

	for (; *p && *p != q; p++) {
		if (q == '"' && *p == '\\' && (p[1] == '"' || p[1] == '\\'))
			p++;
		sbuf_addc(val, *p);
	}
	if (!*p)
		return -1;
	*pp = p + 1;
	return 0;
}

/* True for a variable name: [A-Za-z_][A-Za-z0-9_]*. */
static bool env_name_valid(const char *s, size_t n)
{
	if (n == 0 || isdigit((unsigned char)*s))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '_')
			return false;
	return true;
}

/* One NAME=VALUE item, from *pp up to the comma that ends it; *pp is left
 * past that comma.  An unquoted value runs to the next comma ("\," is a
 * literal one) and is trimmed; a quoted one keeps commas and blanks.
 * *item is NULL for an empty item ("A=1,,B=2", a trailing comma).  -1 with
 * why filled. */
static int env_item(const char **pp, char **item, struct sbuf *why)
{
	const char *start = *pp + strspn(*pp, " \t");
	const char *eq = start + strcspn(start, "=,");
	size_t seg = strcspn(start, ",");	/* the item as written, for messages */
	size_t n = (size_t)(eq - start);
	struct sbuf val = {0};
	const char *p;

	*item = NULL;
	while (n && (start[n - 1] == ' ' || start[n - 1] == '\t'))
		n--;	/* "A = 1" is written for humans */
	if (*eq != '=' && n == 0 && strspn(start, " \t") == seg) {
		*pp = start + seg + (start[seg] == ',');
		return 0;
	}
	if (*eq != '=' || !env_name_valid(start, n)) {
		char *shown = xstrndup(start, seg);
		sbuf_addf(why, "expected NAME=VALUE items, got \"%s\"", str_trim(shown));
		free(shown);
		return -1;
	}
	p = eq + 1 + strspn(eq + 1, " \t");
	if (*p == '"' || *p == '\'') {
		char q = *p;
		if (env_quoted(&p, &val) < 0) {
			sbuf_addf(why, "%.*s: the value's opening %c has no closing one", (int)n, start, q);
			sbuf_free(&val);
			return -1;
		}
		p += strspn(p, " \t");
		if (*p && *p != ',') {
			sbuf_addf(why, "%.*s: text after the closing %c (quote the whole value)", (int)n, start, q);
			sbuf_free(&val);
			return -1;
		}
	} else {
		for (; *p && *p != ','; p++) {
			if (*p == '\\' && p[1] == ',')
				p++;
			sbuf_addc(&val, *p);
		}
		while (val.len && (val.buf[val.len - 1] == ' ' || val.buf[val.len - 1] == '\t'))
			val.buf[--val.len] = '\0';
	}
	*item = xasprintf("%.*s=%s", (int)n, start, val.len ? val.buf : "");
	sbuf_free(&val);
	*pp = p + (*p == ',');
	return 0;
}

/* environment: NAME=VALUE items separated by commas.  The quoted forms
 * are supervisord's (KEY="value, with comma"); the unquoted ones, with
 * "\," for a comma, are cohort's from the start. */
static int parse_env(const char *v, struct strv *out, struct sbuf *why)
{
	struct strv items = {0};
	const char *p = v;

	while (*p) {
		char *item;
		if (env_item(&p, &item, why) < 0) {
			strv_free(&items);
			return -1;
		}
		if (item)
			strv_push_owned(&items, item);
	}
	strv_free(out);
	*out = items;
	return 0;
}

static int parse_list(const char *v, struct strv *out, bool (*valid)(const char *),
		      const char *what, struct sbuf *why)
{
	struct strv items;

	split_list(v, &items);
	for (size_t i = 0; i < items.n; i++) {
		if (!valid(items.v[i])) {
			sbuf_addf(why, "\"%s\" is not %s", items.v[i], what);
			strv_free(&items);
			return -1;
		}
	}
	strv_free(out);
	*out = items;
	return 0;
}

static bool any_path(const char *s)
{
	return *s != '\0';
}

static bool topic_pattern_wild(const char *s)
{
	return topic_pattern_valid(s, true);
}

/* An origin as a browser sends it: a scheme, a host, maybe a port; no path. */
static bool origin_valid(const char *s)
{
	const char *h;
	size_t n;

	if (strcmp(s, "*") == 0)
		return true;
	if (strncasecmp(s, "http://", 7) == 0)
		h = s + 7;
	else if (strncasecmp(s, "https://", 8) == 0)
		h = s + 8;
	else
		return false;
	n = strlen(h);
	return n > 0 && n < 250 && strspn(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
					 "0123456789.-:[]") == n;
}

static int parse_exitcodes(const char *v, uint8_t *bits, struct sbuf *why)
{
	struct strv items;
	uint8_t n[32] = {0};

	split_list(v, &items);
	for (size_t i = 0; i < items.n; i++) {
		uint64_t code;
		const char *w;
		if (parse_uint(items.v[i], 255, &code, &w) < 0) {
			sbuf_addf(why, "expected exit codes 0-255, got \"%s\"", items.v[i]);
			strv_free(&items);
			return -1;
		}
		n[code / 8] |= (uint8_t)(1u << (code % 8));
	}
	strv_free(&items);
	memcpy(bits, n, sizeof(n));
	return 0;
}

int key_parse(const struct key_def *k, const struct parse_ctx *ctx,
	      const char *v, void *p, struct sbuf *why)
{
	const char *w = NULL;

	switch (type_of(k)) {
	case K_STR:
	case K_COMMAND:
		free(*(char **)p);
		*(char **)p = *v ? xstrdup(v) : NULL;
		return 0;
	case K_PATH:
		free(*(char **)p);
		*(char **)p = *v ? path_join(ctx->dir, v) : NULL;
		return 0;
	case K_BOOL:
		if (parse_bool(v, p, &w) < 0)
			break;
		return 0;
	case K_DURATION:
		if (parse_duration_ms(v, p, &w) < 0)
			break;
		return 0;
	case K_SIZE:
		if (parse_size(v, p, &w) < 0)
			break;
		return 0;
	case K_MSGSIZE:
		/* A message is one journal record, which may not pass
		 * JRNL_RECORD_MAX with its topic and the keys of its durable
		 * subscribers: 16M leaves room for 48M of those. */
		if (parse_size(v, p, &w) < 0 || *(uint64_t *)p < 1024 || *(uint64_t *)p > (16u << 20)) {
			w = "a size from 1K to 16M";
			break;
		}
		return 0;
	case K_COUNT:
		if (parse_uint(v, 1000000, p, &w) < 0) {
			w = "a whole number from 0 to 1000000";
			break;
		}
		return 0;
	case K_POSITIVE:
		if (parse_uint(v, 1000000, p, &w) < 0 || *(uint64_t *)p == 0) {
			w = "a whole number from 1 to 1000000";
			break;
		}
		return 0;
	case K_PHASE:
		if (!*v) {
			*(uint64_t *)p = 0;
			return 0;
		}
		if (parse_uint(v, 10000, p, &w) < 0 || *(uint64_t *)p == 0) {
			w = "a phase number from 1 to 10000, or nothing";
			break;
		}
		return 0;
	case K_FACTOR:
	case K_FRACTION: {
		char *end;
		double d = strtod(v, &end);
		bool fraction = type_of(k) == K_FRACTION;
		if (!*v || *end || !(fraction ? (d >= 0 && d <= 1) : (d >= 1 && d <= 100))) {
			w = fraction ? "a number from 0 to 1 (0.1 = 10%)"
				     : "a number from 1 to 100";
			break;
		}
		*(double *)p = d;
		return 0;
	}
	case K_MODE: {
		char *end;
		unsigned long m = strtoul(v, &end, 8);
		if (!*v || *end || m > 07777) {
			w = "an octal file mode such as 0600";
			break;
		}
		*(uint64_t *)p = m;
		return 0;
	}
	case K_LISTEN: {
		char *h, *port;
		free(*(char **)p);
		*(char **)p = NULL;
		if (!*v)
			return 0;
		if (hostport_split(v, NULL, &h, &port) < 0) {
			w = "HOST:PORT, such as 127.0.0.1:7420, or nothing";
			break;
		}
		free(h);
		free(port);
		*(char **)p = xstrdup(v);
		return 0;
	}
	case K_FSYNC:
		if (strcmp(v, "always") == 0)
			*(enum fsync_policy *)p = FSYNC_ALWAYS;
		else if (strcmp(v, "batch") == 0)
			*(enum fsync_policy *)p = FSYNC_BATCH;
		else if (strcmp(v, "never") == 0)
			*(enum fsync_policy *)p = FSYNC_NEVER;
		else {
			w = "always, batch or never";
			break;
		}
		return 0;
	case K_RESTART:
		if (strcmp(v, "always") == 0)
			*(enum restart_policy *)p = RESTART_ALWAYS;
		else if (strcmp(v, "on-failure") == 0)
			*(enum restart_policy *)p = RESTART_ON_FAILURE;
		else if (strcmp(v, "never") == 0)
			*(enum restart_policy *)p = RESTART_NEVER;
		else {
			w = "always, on-failure or never";
			break;
		}
		return 0;
	case K_ENV:
		return parse_env(v, p, why);
	case K_NAMES:
		return parse_list(v, p, svc_name_valid,
				  "a service name ([A-Za-z0-9_.-], at most 64)", why);
	case K_INCLUDE:
		return parse_list(v, p, any_path, "a path", why);
	case K_LOCKPATS:
		return parse_list(v, p, lock_pattern_valid,
				  "a lock name pattern ([A-Za-z0-9_.:/-] and * ?)", why);
	case K_TOPICPATS:
		return parse_list(v, p, topic_pattern_wild,
				  "a topic pattern (dot-separated [A-Za-z0-9_-] segments, * and a last >)",
				  why);
	case K_ORIGINS:
		return parse_list(v, p, origin_valid, "an origin: http://HOST[:PORT], https://HOST[:PORT] or *", why);
	case K_EXITCODES:
		return parse_exitcodes(v, p, why);
	case K_READY:
		return parse_check(v, p, false, why);
	case K_HEALTH:
		return parse_check(v, p, true, why);
	case K_SIGNAL: {
		int sig = signal_number(v);
		if (sig < 0) {
			w = "a signal name such as TERM, INT, QUIT, HUP, USR1 or a number";
			break;
		}
		*(int *)p = sig;
		return 0;
	}
	case K_STDOUT:
		return parse_output(v, p, false, ctx, why);
	case K_STDERR:
		return parse_output(v, p, true, ctx, why);
	case K_UMASK:
		/* Octal digits only: "27" is 027, as umask(1) reads it; "0o27"
		 * or "rwx" would be guesses. */
		if (!*v) {
			*(int *)p = -1;
			return 0;
		}
		if (strlen(v) > 4 || strspn(v, "01234567") != strlen(v) || strtoul(v, NULL, 8) > 0777) {
			w = "an octal umask from 000 to 777, such as 022 or 027, or nothing";
			break;
		}
		*(int *)p = (int)strtoul(v, NULL, 8);
		return 0;
	case K_NTYPES:
		break;
	}
	sbuf_addf(why, "expected %s", w ? w : "a valid value");
	return -1;
}

void key_free(const struct key_def *k, void *p)
{
	switch (type_of(k)) {
	case K_STR:
	case K_PATH:
	case K_COMMAND:
	case K_LISTEN:
		free(*(char **)p);
		*(char **)p = NULL;
		break;
	case K_ENV:
	case K_NAMES:
	case K_INCLUDE:
	case K_LOCKPATS:
	case K_TOPICPATS:
	case K_ORIGINS:
		strv_free(p);
		break;
	case K_READY:
	case K_HEALTH:
		check_free(p);
		break;
	case K_STDOUT:
	case K_STDERR:
		free(((struct output *)p)->path);
		((struct output *)p)->path = NULL;
		break;
	default:
		break;
	}
}

static bool str_eq(const char *a, const char *b)
{
	return (a && b) ? strcmp(a, b) == 0 : a == b;
}

bool key_equal(const struct key_def *k, const void *a, const void *b)
{
	switch (type_of(k)) {
	case K_STR:
	case K_PATH:
	case K_COMMAND:
	case K_LISTEN:
		return str_eq(*(char *const *)a, *(char *const *)b);
	case K_ENV:
	case K_NAMES:
	case K_INCLUDE:
	case K_LOCKPATS:
	case K_TOPICPATS:
	case K_ORIGINS:
		return strv_equal(a, b);
	case K_READY:
	case K_HEALTH:
		return check_equal(a, b);
	case K_STDOUT:
	case K_STDERR: {
		const struct output *x = a, *y = b;
		return x->kind == y->kind && str_eq(x->path, y->path);
	}
	case K_BOOL:
		return *(const bool *)a == *(const bool *)b;
	case K_DURATION:
		return *(const int64_t *)a == *(const int64_t *)b;
	case K_SIZE:
	case K_MSGSIZE:
	case K_COUNT:
	case K_POSITIVE:
	case K_PHASE:
	case K_MODE:
		return *(const uint64_t *)a == *(const uint64_t *)b;
	case K_FACTOR:
	case K_FRACTION:
		return *(const double *)a == *(const double *)b;
	case K_FSYNC:
		return *(const enum fsync_policy *)a == *(const enum fsync_policy *)b;
	case K_RESTART:
		return *(const enum restart_policy *)a == *(const enum restart_policy *)b;
	case K_SIGNAL:
	case K_UMASK:
		return *(const int *)a == *(const int *)b;
	case K_EXITCODES:
		return memcmp(a, b, 32) == 0;
	case K_NTYPES:
		break;
	}
	return false;
}
