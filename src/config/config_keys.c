/*
 * config_keys.c - the table of every configuration key (section, name,
 * type, where it lives, what a reload does with it, default, bounds) and
 * the names config files use besides keys: signals, service and lock names,
 * and the keys of supervisord and systemd with what cohort uses instead.
 * config.c drives the inih handler from this table, and the did-you-mean
 * candidates come from it; the unit tests hold doc/cohort.ini.5 to it
 * (every key described, with its default and its reload column), so a key
 * exists in one place.  The parsers of each type are in config_values.c;
 * svc_config_diff, at the end, compares two services through the table.
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
#define D(k, f, t, a) \
	.section = KS_DAEMON, .name = k, .type = t, .offset = offsetof(struct cohort_config, f), .apply = KEY_##a
#define S(k, f, t, a) \
	.section = KS_SERVICE, .name = k, .type = t, .offset = offsetof(struct svc_config, f), .apply = KEY_##a
/* A service key most sections leave to its default: in struct svc_rare. */
#define R(k, f, t, a) \
	.section = KS_SERVICE, .name = k, .type = t, .rare = true, .offset = offsetof(struct svc_rare, f), \
	.apply = KEY_##a
/* The least and the most a number may be (see enum key_type). */
#define BOUNDS(lo, hi) .min = (lo), .max = (hi)

const struct key_def config_keys[] = {
	{D("run_dir", run_dir, K_PATH, RESTART), "/run/cohort"},
	{D("state_dir", state_dir, K_PATH, RESTART), "/var/lib/cohort"},
	{D("log_dir", log_dir, K_PATH, RESTART), "/var/log/cohort"},
	{D("log_file", log_file, K_PATH, LIVE), ""},
	{D("include", include, K_INCLUDE, LIVE), "conf.d/*.ini"},
	{D("control_mode", control_mode, K_MODE, RESTART), "0600"},
	{D("control_group", control_group, K_STR, RESTART), ""},
	{D("bus_mode", bus_mode, K_MODE, RESTART), "0666"},
	{D("bus_listen", bus_listen, K_LISTEN, RESTART), ""},
	{D("admin_token_file", admin_token_file, K_PATH, RESTART), ""},
	{D("bus_allowed_origins", bus_allowed_origins, K_ORIGINS, RESTART), ""},
	{D("bus_fsync", bus_fsync, K_FSYNC, RESTART), "batch"},
	{D("bus_max_message", bus_max_message, K_SIZE, RESTART), "1M", BOUNDS(1024, 16 << 20)},
	{D("bus_ack_timeout", bus_ack_timeout_ms, K_DURATION, LIVE), "30s"},
	{D("bus_idle_timeout", bus_idle_timeout_ms, K_DURATION, RESTART), "60s"},
	{D("bus_max_connections", bus_max_connections, K_UINT, LIVE), "65536", BOUNDS(1, 1000000)},
	{D("bus_max_connections_per_uid", bus_max_connections_per_uid, K_UINT, LIVE), "128", BOUNDS(1, 1000000)},
	{D("bus_queue_max", bus_queue_max, K_SIZE, LIVE), "64M"},
	{D("bus_memory_max", bus_memory_max, K_SIZE, LIVE), "1G"},
	{D("bus_queue_age", bus_queue_age_ms, K_DURATION, LIVE), "7d"},
	{D("shutdown_timeout", shutdown_timeout_ms, K_DURATION, LIVE), "30s"},
	{D("cluster", cluster, K_NATSURLS, RESTART), ""},
	{D("cluster_name", cluster_name, K_NATSNAME, RESTART), "cohort"},
	{D("cluster_creds", cluster_creds, K_PATH, RESTART), ""},
	{D("cluster_tls_ca", cluster_tls_ca, K_PATH, RESTART), ""},
	{D("cluster_tls_cert", cluster_tls_cert, K_PATH, RESTART), ""},
	{D("cluster_tls_key", cluster_tls_key, K_PATH, RESTART), ""},
	{D("state_mirror_dir", state_mirror_dir, K_PATH, RESTART), ""},
	{D("state_mirror_topics", state_mirror_topics, K_TOPICPATS, RESTART), ""},

	{S("instances", instances, K_INSTANCES, LIVE), ""},
	{S("command", command, K_STR, RESTART), ""},
	{S("shell", shell, K_BOOL, RESTART), "no"},
	{S("directory", directory, K_PATH, RESTART), ""},
	{S("environment", environment, K_ENV, RESTART), ""},
	{S("user", user, K_STR, RESTART), ""},
	{S("group", group, K_STR, RESTART), ""},
	{S("umask", umask, K_UMASK, RESTART), ""},
	{R("environment_file", environment_file, K_ENVFILES, RESTART), ""},
	{R("limit_nofile", limit_nofile, K_RLIMIT, RESTART), ""},
	{R("limit_core", limit_core, K_RLIMIT, RESTART), ""},
	{R("limit_nproc", limit_nproc, K_RLIMIT, RESTART), ""},
	{R("limit_as", limit_as, K_RLIMIT, RESTART), ""},
	{R("nice", nice, K_NICE, RESTART), ""},
	{R("oom_score_adjust", oom_score_adjust, K_OOM, RESTART), ""},
	{R("pidfile", pidfile, K_PATH, RESTART), ""},
	{S("autostart", autostart, K_BOOL, LIVE), "yes"},
	{S("requires", requires, K_NAMES, LIVE), ""},
	{S("after", after, K_NAMES, LIVE), ""},
	{S("phase", phase, K_PHASE, LIVE), "", BOUNDS(1, 10000)},
	{S("ready", ready, K_READY, LIVE), "delay:1s"},
	{S("ready_timeout", ready_timeout_ms, K_DURATION, LIVE), "60s"},
	{R("health", health, K_HEALTH, LIVE), ""},
	{R("health_interval", health_interval_ms, K_DURATION, LIVE), "10s"},
	{R("health_timeout", health_timeout_ms, K_DURATION, LIVE), "2s"},
	{R("health_retries", health_retries, K_UINT, LIVE), "3", BOUNDS(1, 1000000)},
	{S("restart", restart, K_RESTART, LIVE), "always"},
	{R("success_exit", success_exit, K_EXITCODES, LIVE), "0"},
	{S("backoff_initial", backoff_initial_ms, K_DURATION, LIVE), "1s"},
	{S("backoff_factor", backoff_factor, K_FACTOR, LIVE), "2", BOUNDS(1, 100)},
	{S("backoff_max", backoff_max_ms, K_DURATION, LIVE), "60s"},
	{S("backoff_jitter", backoff_jitter, K_FRACTION, LIVE), "0.1", BOUNDS(0, 1)},
	{S("backoff_reset", backoff_reset_ms, K_DURATION, LIVE), "30s"},
	{S("breaker_failures", breaker_failures, K_UINT, LIVE), "5", BOUNDS(0, 1000000)},
	{S("breaker_window", breaker_window_ms, K_DURATION, LIVE), "60s"},
	{S("breaker_cooldown", breaker_cooldown_ms, K_DURATION, LIVE), "2m"},
	{S("stop_signal", stop_signal, K_SIGNAL, LIVE), "TERM"},
	{S("stop_timeout", stop_timeout_ms, K_DURATION, LIVE), "10s"},
	{S("stdout", out, K_STDOUT, RESTART), "log"},
	{S("stderr", err, K_STDERR, RESTART), "stdout"},
	{R("log_max_size", log_max_size, K_SIZE, LIVE), "10M"},
	{R("log_backups", log_backups, K_UINT, LIVE), "5", BOUNDS(0, 1000000)},
	{R("locks", locks, K_LOCKPATS, RESTART), "*"},
	{R("publish", publish, K_TOPICPATS, RESTART), ">"},
	{R("subscribe", subscribe, K_TOPICPATS, RESTART), ">"},
};
const size_t config_nkeys = ARRAY_LEN(config_keys);

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
	{"numprocs", "use instances = N: the services NAME@0 to NAME@N-1, with %i for the number "
		     "in command, environment, directory, ready/health addresses and pidfile"},
	{"numprocs_start", "instances are numbered from 0: write %{i+N} where the number should start at N"},
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
		 "forking is pidfile = PATH (its PIDFile=); oneshot is restart = on-failure"},
	{"PIDFile", "use pidfile = PATH: cohortd waits for the command to exit 0, then supervises "
		    "the pid the file names"},
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
	{"EnvironmentFile", "use environment_file (the same format; -PATH as in systemd)"},
	{"LimitNOFILE", "use limit_nofile"},
	{"LimitCORE", "use limit_core"},
	{"LimitNPROC", "use limit_nproc"},
	{"LimitAS", "use limit_as"},
	{"Nice", "use nice"},
	{"OOMScoreAdjust", "use oom_score_adjust"},
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

bool svc_name_valid(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > SVC_NAME_MAX)
		return false;
	size_t base = strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
				   "0123456789_.-");
	if (base == n)
		return true;
	/* an instance of a template: NAME@K */
	const char *k = name + base + 1;
	return base > 0 && name[base] == '@' && *k && strspn(k, "0123456789") == strlen(k) &&
	       (k[0] != '0' || !k[1]);
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

/* --- what is done through the table: comparing, finding a key's line --- */

bool svc_config_equal(const struct svc_config *a, const struct svc_config *b)
{
	return svc_config_diff(a, b, NULL, NULL) == 0;
}

size_t svc_config_diff(const struct svc_config *a, const struct svc_config *b, struct strv *keys,
		       bool *restart)
{
	size_t n = 0;

	if (restart)
		*restart = false;
	for (size_t k = 0; k < config_nkeys; k++) {
		const struct key_def *kd = &config_keys[k];
		/* instances is how many sections a template became: a reload
		 * adds or removes those by name, and to each one it is no change. */
		bool instances = !kd->rare && kd->offset == offsetof(struct svc_config, instances);
		if (kd->section != KS_SERVICE || instances ||
		    key_equal(kd, svc_key_field(a, kd), svc_key_field(b, kd)))
			continue;
		n++;
		if (keys)
			strv_push(keys, kd->name);
		if (restart && kd->apply == KEY_RESTART)
			*restart = true;
	}
	return n;
}

const void *svc_key_field(const struct svc_config *s, const struct key_def *k)
{
	return (const char *)(k->rare ? (const void *)s->rare : (const void *)s) + k->offset;
}

bool exit_is_success(const struct svc_config *s, int code)
{
	if (code < 0 || code > 255)
		return false;
	return s->rare->success_exit[code / 8] & (1u << (code % 8));
}

int svc_key_line(const struct svc_config *s, const char *key)
{
	int i = key_index(KS_SERVICE, key);

	for (size_t k = 0; i >= 0 && k < s->nkey_lines; k++)
		if (s->key_lines[k].key == (unsigned)i)
			return s->key_lines[k].line;
	return s->line;
}
