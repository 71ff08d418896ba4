/*
 * import_table.c - THE mapping of `cohortctl import`: every supervisord and
 * systemd key it knows, with the cohort key it becomes and how the value is
 * converted, or why it has no equivalent.  doc/MIGRATING.md and
 * cohortctl(1) print this same table; a key in no row is "not imported"
 * with a generic reason.  The converters of one kind only (Exec lines,
 * %(...)s) are in import_supervisord.c and import_systemd.c.
 */
#include "autoconfig.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "import.h"

const char IMP_FATAL[] = "fatal";

/* --- converters shared by both kinds ------------------------------------- */

static const char *conv_bool(struct imp_ctx *x, const char *k, const char *v)
{
	bool b;
	const char *why;

	if (parse_bool(v, &b, &why) < 0)
		return "not a boolean";
	imp_set(x->svc, k, b ? "yes" : "no");
	return NULL;
}

/* A number of seconds (supervisord) as a cohort duration. */
static const char *conv_seconds(struct imp_ctx *x, const char *k, const char *v)
{
	uint64_t n;
	const char *why;

	if (parse_uint(v, 8640000, &n, &why) < 0)
		return "not a number of seconds";
	char buf[32];
	snprintf(buf, sizeof(buf), "%llus", (unsigned long long)n);
	imp_set(x->svc, k, buf);
	return NULL;
}

static const char *conv_startsecs(struct imp_ctx *x, const char *k, const char *v)
{
	uint64_t n;
	const char *why;

	if (parse_uint(v, 8640000, &n, &why) < 0)
		return "not a number of seconds";
	char buf[48];
	snprintf(buf, sizeof(buf), "delay:%llus", (unsigned long long)n);
	imp_set(x->svc, k, buf);
	if (n >= 50) {	/* a delay not shorter than ready_timeout could never be ready */
		snprintf(buf, sizeof(buf), "%llus", (unsigned long long)n + 30);
		imp_set(x->svc, "ready_timeout", buf);
	}
	return NULL;
}

static const char *conv_autorestart(struct imp_ctx *x, const char *k, const char *v)
{
	bool b;
	const char *why;

	if (strcasecmp(v, "unexpected") == 0)
		imp_set(x->svc, k, "on-failure");
	else if (parse_bool(v, &b, &why) == 0)
		imp_set(x->svc, k, b ? "always" : "never");
	else
		return "not true, false or unexpected";
	return NULL;
}

static const char *conv_signal(struct imp_ctx *x, const char *k, const char *v)
{
	char buf[32];
	size_t i = 0;

	if (strncasecmp(v, "SIG", 3) == 0)
		v += 3;
	if (!*v || strlen(v) >= sizeof(buf))
		return "not a signal";
	for (; v[i]; i++) {
		if (!isalnum((unsigned char)v[i]) && v[i] != '+' && v[i] != '-')
			return "not a signal";
		buf[i] = (char)toupper((unsigned char)v[i]);
	}
	buf[i] = '\0';
	imp_set(x->svc, k, buf);
	return NULL;
}

/* Exit codes separated by commas (supervisord) or blanks (systemd's
 * SuccessExitStatus, which may name signals too: cohort cannot). */
static const char *conv_exitcodes(struct imp_ctx *x, const char *k, const char *v)
{
	struct sbuf out = {0};
	char *copy = xstrdup(v), *save = NULL;

	for (char *w = strtok_r(copy, ", \t", &save); w; w = strtok_r(NULL, ", \t", &save)) {
		uint64_t n;
		const char *why;
		if (parse_uint(w, 255, &n, &why) < 0) {
			free(copy);
			sbuf_free(&out);
			return "cohort's success_exit holds exit codes (0 to 255) only, no signals";
		}
		sbuf_addf(&out, "%s%llu", out.len ? ", " : "", (unsigned long long)n);
	}
	free(copy);
	if (!out.len)
		return "no exit code in it";
	imp_set(x->svc, k, out.buf);
	sbuf_free(&out);
	return NULL;
}

static const char *conv_size(struct imp_ctx *x, const char *k, const char *v)
{
	uint64_t n;
	const char *why;

	if (parse_size(v, &n, &why) < 0)
		return "not a size";
	if (n == 0)
		return "cohort always rotates its logs (at log_max_size)";
	imp_set(x->svc, k, v);
	return NULL;
}

static const char *conv_uint(struct imp_ctx *x, const char *k, const char *v)
{
	uint64_t n;
	const char *why;

	if (parse_uint(v, 1000000, &n, &why) < 0)
		return "not a number";
	imp_set(x->svc, k, v);
	return NULL;
}

/* The default of cohort: "true" needs nothing, "false" cannot be had. */
static const char *conv_group_signal(struct imp_ctx *x, const char *k, const char *v)
{
	bool b;
	const char *why;
	(void)x;
	(void)k;

	if (parse_bool(v, &b, &why) == 0 && b)
		return NULL;
	return "cohort always signals the service's whole process group";
}

static const char *conv_redirect_stderr(struct imp_ctx *x, const char *k, const char *v)
{
	bool b;
	const char *why;

	if (parse_bool(v, &b, &why) < 0)
		return "not a boolean";
	if (b)
		imp_set(x->svc, k, "stdout");
	return NULL;
}

/* --- systemd's value syntax ---------------------------------------------- */

/* A systemd time span ("90", "1min 30s", "100ms") in milliseconds, or -1
 * (also for "infinity", which the callers turn down with a reason). */
static long long sd_timespan_ms(const char *v)
{
	static const struct {
		const char *name;
		double ms;
	} units[] = {
		{"us", 0.001}, {"usec", 0.001}, {"ms", 1}, {"msec", 1}, {"s", 1000}, {"sec", 1000},
		{"second", 1000}, {"seconds", 1000}, {"m", 60000}, {"min", 60000}, {"minute", 60000},
		{"minutes", 60000}, {"h", 3600000}, {"hr", 3600000}, {"hour", 3600000},
		{"hours", 3600000}, {"d", 86400000}, {"day", 86400000}, {"days", 86400000},
		{"w", 604800000}, {"week", 604800000}, {"weeks", 604800000},
	};
	double total = 0;
	const char *p = v;
	bool any = false;

	while (*(p += strspn(p, " \t"))) {
		char *end;
		double n = strtod(p, &end);
		if (end == p || n < 0)
			return -1;
		p = end + strspn(end, " \t");
		size_t ulen = strspn(p, "abcdefghijklmnopqrstuvwxyz");
		double scale = ulen ? -1 : 1000;
		for (size_t i = 0; i < ARRAY_LEN(units) && ulen; i++)
			if (strlen(units[i].name) == ulen && strncmp(units[i].name, p, ulen) == 0)
				scale = units[i].ms;
		if (scale < 0)
			return -1;
		total += n * scale;
		p += ulen;
		any = true;
	}
	return any && total < 100.0 * 86400000 ? (long long)(total + 0.5) : -1;
}

static void set_ms(struct imp_svc *s, const char *k, long long ms)
{
	char buf[32];

	if (ms % 1000 == 0)
		snprintf(buf, sizeof(buf), "%llds", ms / 1000);
	else
		snprintf(buf, sizeof(buf), "%lldms", ms);
	imp_set(s, k, buf);
}

static const char *conv_timespan(struct imp_ctx *x, const char *k, const char *v)
{
	long long ms = sd_timespan_ms(v);

	if (ms < 0)
		return strcmp(v, "infinity") == 0 ? "cohort has no endless timeout" : "not a time span";
	if (ms == 0 && strcmp(k, "backoff_initial") != 0)
		return "0 turns the timeout off in systemd; cohort always has one";
	set_ms(x->svc, k, ms);
	return NULL;
}

/* TimeoutSec= is both the start and the stop timeout. */
static const char *conv_timeout_both(struct imp_ctx *x, const char *k, const char *v)
{
	const char *why = conv_timespan(x, "ready_timeout", v);
	(void)k;
	return why ? why : conv_timespan(x, "stop_timeout", v);
}

static const char *conv_sd_restart(struct imp_ctx *x, const char *k, const char *v)
{
	if (strcmp(v, "no") == 0)
		imp_set(x->svc, k, "never");
	else if (strcmp(v, "always") == 0 || strcmp(v, "on-failure") == 0)
		imp_set(x->svc, k, v);
	else if (strcmp(v, "on-abnormal") == 0 || strcmp(v, "on-abort") == 0 ||
		 strcmp(v, "on-watchdog") == 0) {
		imp_set(x->svc, k, "on-failure");
		imp_note(x->svc, "Restart=%s is restart = on-failure: cohort also restarts after an exit "
				 "with a code that is not in success_exit", v);
	} else if (strcmp(v, "on-success") == 0)
		return "cohort cannot restart only after a clean exit";
	else
		return "not a Restart= value";
	return NULL;
}

static const char *conv_killmode(struct imp_ctx *x, const char *k, const char *v)
{
	(void)x;
	(void)k;
	if (strcmp(v, "control-group") == 0)
		return NULL;	/* what cohort does */
	if (strcmp(v, "mixed") == 0)
		return "cohort sends stop_signal to the whole process group, not the main process "
		       "only (then KILL to the group, as mixed does)";
	return "cohort stops the service's whole process group";
}

/* StandardOutput= / StandardError=. */
static const char *conv_std(struct imp_ctx *x, const char *k, const char *v)
{
	if (strcmp(v, "journal") == 0 || strcmp(v, "syslog") == 0 || strcmp(v, "kmsg") == 0 ||
	    strcmp(v, "journal+console") == 0)
		imp_set(x->svc, k, strcmp(k, "stderr") == 0 ? "stdout" : "log");
	else if (strcmp(v, "null") == 0 || strcmp(v, "inherit") == 0)
		imp_set(x->svc, k, v);
	else if ((str_starts(v, "file:") || str_starts(v, "append:")) && strchr(v, '/'))
		imp_set(x->svc, k, strchr(v, ':') + 1);
	else
		return "cohort writes output to its log, a file, null or its own output";
	if (strcmp(v, "journal") == 0 && strcmp(k, "stdout") == 0)
		imp_note(x->svc, "StandardOutput=journal is stdout = log (cohort's log_dir/NAME.log)");
	return NULL;
}

/* --- the table ------------------------------------------------------------- */

#define SANDBOX "cohort does not sandbox services (no namespaces, capabilities or seccomp)"
#define DIRS "cohort makes no directories for a service: make it before, or in the command"
#define NOSTOPCMD "cohort stops a service with stop_signal, then KILL after stop_timeout"

const struct imp_map imp_table[] = {
	/* supervisord [program:x] */
	{W_PROGRAM, "command", "command", sv_command,
	 "expanded; split as a POSIX shell splits, as supervisord does"},
	{W_PROGRAM, "process_name", NULL, sv_process_name,
	 "the service is named after [program:NAME]; with numprocs the instances are NAME@0..."},
	{W_PROGRAM, "numprocs", "instances", sv_numprocs,
	 "instances = N when N > 1, %(process_num)d becoming %i (a width is lost, noted) and % "
	 "%% in the keys cohort expands per instance"},
	{W_PROGRAM, "numprocs_start", NULL, sv_numprocs_start,
	 "with one process, the value of %(process_num)d; with numprocs, %(process_num)d is "
	 "%{i+numprocs_start} (noted)"},
	{W_PROGRAM, "directory", "directory", sv_template_key, "expanded"},
	{W_PROGRAM, "environment", "environment", sv_template_key,
	 "expanded; cohort reads supervisord's quoted values"},
	{W_PROGRAM, "umask", "umask", NULL, NULL},
	{W_PROGRAM, "priority", "phase", sv_priority,
	 "the programs' distinct priorities, lowest first, become phases 1, 2, ..."},
	{W_PROGRAM, "autostart", "autostart", conv_bool, "yes/no"},
	{W_PROGRAM, "startsecs", "ready", conv_startsecs,
	 "ready = delay:Ns (and ready_timeout = N+30s from 50s on)"},
	{W_PROGRAM, "startretries", NULL, NULL,
	 "cohort never gives up on a service: after breaker_failures failures within breaker_window "
	 "it waits breaker_cooldown, then tries again"},
	{W_PROGRAM, "autorestart", "restart", conv_autorestart,
	 "true: always, false: never, unexpected: on-failure (also when not given: supervisord's default)"},
	{W_PROGRAM, "exitcodes", "success_exit", conv_exitcodes, "the same codes"},
	{W_PROGRAM, "stopsignal", "stop_signal", conv_signal, "the signal name without SIG"},
	{W_PROGRAM, "stopwaitsecs", "stop_timeout", conv_seconds, "seconds"},
	{W_PROGRAM, "stopasgroup", NULL, conv_group_signal,
	 "true is what cohort does; false cannot be had (not imported)"},
	{W_PROGRAM, "killasgroup", NULL, conv_group_signal,
	 "true is what cohort does; false cannot be had (not imported)"},
	{W_PROGRAM, "user", "user", NULL, NULL},
	{W_PROGRAM, "redirect_stderr", "stderr", conv_redirect_stderr,
	 "true: stderr = stdout (and stderr_logfile is not imported)"},
	{W_PROGRAM, "stdout_logfile", "stdout", sv_logfile,
	 "AUTO: log, NONE: null, /dev/stdout: inherit, else the path"},
	{W_PROGRAM, "stdout_logfile_maxbytes", "log_max_size", conv_size,
	 "the size (0, no rotation, is not imported)"},
	{W_PROGRAM, "stdout_logfile_backups", "log_backups", conv_uint, "the number"},
	{W_PROGRAM, "stderr_logfile", "stderr", sv_logfile, "as stdout_logfile"},
	{W_PROGRAM, "stderr_logfile_maxbytes", NULL, NULL,
	 "cohort rotates one log per service, at log_max_size"},
	{W_PROGRAM, "stderr_logfile_backups", NULL, NULL, "cohort keeps log_backups of one log per service"},
	{W_PROGRAM, "stdout_capture_maxbytes", NULL, NULL,
	 "cohort has no capture mode (publish on the bus instead)"},
	{W_PROGRAM, "stderr_capture_maxbytes", NULL, NULL,
	 "cohort has no capture mode (publish on the bus instead)"},
	{W_PROGRAM, "stdout_events_enabled", NULL, NULL, "cohort's events are service state changes only"},
	{W_PROGRAM, "stderr_events_enabled", NULL, NULL, "cohort's events are service state changes only"},
	{W_PROGRAM, "stdout_syslog", NULL, NULL, "cohort writes no syslog: stdout = log or a file"},
	{W_PROGRAM, "stderr_syslog", NULL, NULL, "cohort writes no syslog: stdout = log or a file"},
	{W_PROGRAM, "serverurl", NULL, NULL,
	 "cohort has no XML-RPC server: services find it in $COHORT_SOCKET"},
	{W_PROGRAM, "*", NULL, NULL, "no cohort equivalent"},
	/* supervisord [supervisord]: cohortd's own settings */
	{W_SUPERVISORD, "environment", NULL, NULL,
	 "services inherit cohortd's environment: set it there, or in each service's environment"},
	{W_SUPERVISORD, "logfile", NULL, NULL, "cohortd's own log is log_file in [cohort]"},
	{W_SUPERVISORD, "childlogdir", NULL, NULL, "the services' logs are in log_dir in [cohort]"},
	{W_SUPERVISORD, "pidfile", NULL, NULL, "cohortd keeps run_dir/cohortd.pid"},
	{W_SUPERVISORD, "nodaemon", NULL, NULL, "cohortd stays in the foreground (run it under systemd, or as PID 1)"},
	{W_SUPERVISORD, "user", NULL, NULL, "run cohortd as that user"},
	{W_SUPERVISORD, "minfds", NULL, NULL,
	 "cohortd raises its own soft RLIMIT_NOFILE to the hard one; a service has limit_nofile"},
	{W_SUPERVISORD, "*", NULL, NULL, "cohortd's own settings are in [cohort]: run_dir, log_dir, log_file"},
	/* supervisord's other sections, whole */
	{W_SV_SECTION, "unix_http_server", NULL, NULL,
	 "cohortd's control socket is run_dir/control.sock (control_mode, control_group)"},
	{W_SV_SECTION, "inet_http_server", NULL, NULL,
	 "cohortd's control socket is local; bus_listen serves the bus, /metrics and /healthz over TCP"},
	{W_SV_SECTION, "supervisorctl", NULL, NULL, "cohortctl finds cohortd with -s, $COHORT_SOCKET or -c"},
	{W_SV_SECTION, "rpcinterface:*", NULL, NULL, "cohort has no XML-RPC: the control socket and the bus"},
	{W_SV_SECTION, "eventlistener:*", NULL, NULL,
	 "cohort has no event listeners: subscribe to $sys.event.service on the bus"},
	{W_SV_SECTION, "fcgi-program:*", NULL, NULL, "cohort holds no sockets for FastCGI programs"},
	{W_SV_SECTION, "group:*", NULL, NULL,
	 "cohort has no groups: each program is a service (start and stop them by name or @PHASE)"},
	{W_SV_SECTION, "*", NULL, NULL, "no cohort equivalent"},

	/* systemd [Unit] */
	{W_UNIT, "Description", NULL, sd_description, "the comment above the service's keys"},
	{W_UNIT, "Documentation", NULL, NULL, "documentation only"},
	{W_UNIT, "Requires", "requires", sd_deps,
	 "requires, for the units imported together; another unit is not imported"},
	{W_UNIT, "Requisite", "requires", sd_deps, "as Requires"},
	{W_UNIT, "BindsTo", "requires", sd_deps, "as Requires"},
	{W_UNIT, "After", "after", sd_deps,
	 "after, for the units imported together; another unit is not imported"},
	{W_UNIT, "Wants", NULL, NULL,
	 "cohort starts every autostart service; order comes from After= (after)"},
	{W_UNIT, "Before", NULL, NULL, "write after on the other service"},
	{W_UNIT, "Conflicts", NULL, NULL, "cohort has no conflicting services"},
	{W_UNIT, "PartOf", NULL, NULL, "cohort stops what requires a service, not what is part of it"},
	{W_UNIT, "Condition*", NULL, NULL, "cohort has no start conditions"},
	{W_UNIT, "Assert*", NULL, NULL, "cohort has no start conditions"},
	{W_UNIT, "StartLimit*", NULL, NULL,
	 "cohort's breaker does this: breaker_failures within breaker_window, then breaker_cooldown"},
	{W_UNIT, "*", NULL, NULL, "no cohort equivalent"},

	/* systemd [Service] */
	{W_SERVICE, "Type", NULL, sd_type,
	 "notify: ready = notify; forking: pidfile = PIDFile (without PIDFile, not imported); "
	 "simple, exec, oneshot: nothing"},
	{W_SERVICE, "ExecStart", "command", sd_exec_start,
	 "systemd's quoting and specifiers, then cohort's quoting; $NAME and ${NAME}: shell = yes; "
	 "prefixes - @ + ! not honoured (noted), : honoured"},
	{W_SERVICE, "ExecStartPre", "command", sd_exec_start_pre,
	 "joined: shell = yes, command = pre1 && pre2 && exec main (a - prefix: its failure is "
	 "ignored); with a @ + ! prefix none is imported"},
	{W_SERVICE, "ExecStartPost", NULL, NULL, "cohort runs nothing after the start"},
	{W_SERVICE, "ExecCondition", NULL, NULL, "cohort has no start conditions"},
	{W_SERVICE, "ExecReload", NULL, NULL,
	 "reload it with cohortctl signal HUP NAME (if that is what it does)"},
	{W_SERVICE, "ExecStop", NULL, NULL, NOSTOPCMD},
	{W_SERVICE, "ExecStopPost", NULL, NULL, "cohort runs nothing after the stop"},
	{W_SERVICE, "Environment", "environment", sd_environment,
	 "NAME=\"VALUE\" items, systemd's quoting undone; several lines and several items a line"},
	{W_SERVICE, "EnvironmentFile", "environment_file", sd_environment_file, "the files, - prefix kept"},
	{W_SERVICE, "PassEnvironment", NULL, NULL, "a service gets cohortd's whole environment"},
	{W_SERVICE, "WorkingDirectory", "directory", sd_directory,
	 "the path (- prefix dropped, noted; ~ not imported)"},
	{W_SERVICE, "User", "user", NULL, NULL},
	{W_SERVICE, "Group", "group", NULL, NULL},
	{W_SERVICE, "SupplementaryGroups", NULL, NULL, "a service gets its user's groups"},
	{W_SERVICE, "Restart", "restart", conv_sd_restart,
	 "no (and when not given): never; always, on-failure; on-abnormal, on-abort, on-watchdog: "
	 "on-failure (noted); on-success not imported"},
	{W_SERVICE, "RestartSec", "backoff_initial", conv_timespan, "systemd's time span (1min 30s is 90s)"},
	{W_SERVICE, "SuccessExitStatus", "success_exit", conv_exitcodes,
	 "exit codes (signal names are not imported)"},
	{W_SERVICE, "KillSignal", "stop_signal", conv_signal, "the signal name without SIG"},
	{W_SERVICE, "KillMode", NULL, conv_killmode,
	 "control-group is what cohort does; mixed, process, none are not imported"},
	{W_SERVICE, "SendSIGKILL", NULL, NULL, "cohort always sends KILL after stop_timeout"},
	{W_SERVICE, "TimeoutStopSec", "stop_timeout", conv_timespan,
	 "time span; 0 and infinity are not imported"},
	{W_SERVICE, "TimeoutStartSec", "ready_timeout", conv_timespan,
	 "time span; 0 and infinity are not imported"},
	{W_SERVICE, "TimeoutSec", NULL, conv_timeout_both, "ready_timeout and stop_timeout"},
	{W_SERVICE, "LimitNOFILE", "limit_nofile", NULL, NULL},
	{W_SERVICE, "LimitCORE", "limit_core", NULL, NULL},
	{W_SERVICE, "LimitNPROC", "limit_nproc", NULL, NULL},
	{W_SERVICE, "LimitAS", "limit_as", NULL, NULL},
	{W_SERVICE, "Limit*", NULL, NULL, "cohort sets RLIMIT_NOFILE, CORE, NPROC and AS only"},
	{W_SERVICE, "PIDFile", "pidfile", sd_pidfile,
	 "with Type=forking; else not imported (cohort supervises the process it started)"},
	{W_SERVICE, "UMask", "umask", NULL, NULL},
	{W_SERVICE, "Nice", "nice", NULL, NULL},
	{W_SERVICE, "OOMScoreAdjust", "oom_score_adjust", NULL, NULL},
	{W_SERVICE, "StandardOutput", "stdout", conv_std,
	 "journal, syslog, kmsg: log; null, inherit; file:PATH, append:PATH: PATH"},
	{W_SERVICE, "StandardError", "stderr", conv_std,
	 "journal, syslog, kmsg: stdout; null, inherit; file:PATH, append:PATH: PATH"},
	{W_SERVICE, "NotifyAccess", NULL, NULL, "cohort takes READY=1 from any process of the service"},
	{W_SERVICE, "WatchdogSec", NULL, NULL, "cohort has no watchdog for services: use health"},
	{W_SERVICE, "Runtime*", NULL, NULL, DIRS},
	{W_SERVICE, "State*", NULL, NULL, DIRS},
	{W_SERVICE, "Cache*", NULL, NULL, DIRS},
	{W_SERVICE, "Logs*", NULL, NULL, DIRS},
	{W_SERVICE, "Configuration*", NULL, NULL, DIRS},
	{W_SERVICE, "Private*", NULL, NULL, SANDBOX},
	{W_SERVICE, "Protect*", NULL, NULL, SANDBOX},
	{W_SERVICE, "Restrict*", NULL, NULL, SANDBOX},
	{W_SERVICE, "ReadWrite*", NULL, NULL, SANDBOX},
	{W_SERVICE, "ReadOnly*", NULL, NULL, SANDBOX},
	{W_SERVICE, "Inaccessible*", NULL, NULL, SANDBOX},
	{W_SERVICE, "ExecPaths", NULL, NULL, SANDBOX},
	{W_SERVICE, "NoExecPaths", NULL, NULL, SANDBOX},
	{W_SERVICE, "Capability*", NULL, NULL, SANDBOX},
	{W_SERVICE, "AmbientCapabilities", NULL, NULL, SANDBOX},
	{W_SERVICE, "NoNewPrivileges", NULL, NULL, SANDBOX},
	{W_SERVICE, "LockPersonality", NULL, NULL, SANDBOX},
	{W_SERVICE, "MemoryDenyWriteExecute", NULL, NULL, SANDBOX},
	{W_SERVICE, "SystemCall*", NULL, NULL, SANDBOX},
	{W_SERVICE, "RemoveIPC", NULL, NULL, SANDBOX},
	{W_SERVICE, "DynamicUser", NULL, NULL, SANDBOX},
	{W_SERVICE, "*", NULL, NULL, "no cohort equivalent"},

	/* systemd [Install] */
	{W_INSTALL, "WantedBy", NULL, NULL, "cohortd starts every service with autostart = yes"},
	{W_INSTALL, "RequiredBy", NULL, NULL, "cohortd starts every service with autostart = yes"},
	{W_INSTALL, "Alias", NULL, NULL, "a cohort service has one name"},
	{W_INSTALL, "*", NULL, NULL, "no cohort equivalent"},
	{W_SD_SECTION, "*", NULL, NULL, "cohort imports [Unit], [Service] and [Install]"},
};
const size_t imp_table_len = ARRAY_LEN(imp_table);

static bool key_matches(const struct imp_map *m, enum imp_where where, const char *key, bool prefix)
{
	size_t n = strlen(m->key);

	if (m->where != where)
		return false;
	if (prefix)
		return n > 0 && m->key[n - 1] == '*' && strncmp(m->key, key, n - 1) == 0;
	if (where == W_PROGRAM || where == W_SUPERVISORD)
		return strcasecmp(m->key, key) == 0;	/* configparser lower-cases keys */
	return strcmp(m->key, key) == 0;
}

const struct imp_map *imp_lookup(enum imp_where where, const char *key)
{
	/* The exact key first, then the longest prefix: "*" comes last. */
	const struct imp_map *best = NULL;

	for (size_t i = 0; i < imp_table_len; i++)
		if (key_matches(&imp_table[i], where, key, false))
			return &imp_table[i];
	for (size_t i = 0; i < imp_table_len; i++)
		if (key_matches(&imp_table[i], where, key, true) &&
		    (!best || strlen(imp_table[i].key) > strlen(best->key)))
			best = &imp_table[i];
	return best;
}

int imp_apply(struct imp_ctx *x, enum imp_where where)
{
	const struct imp_entry *e = x->entry;
	const struct imp_map *m = imp_lookup(where, e->key);
	const char *why;

	if (!m)
		why = "no cohort equivalent";
	else if (m->conv)
		why = m->conv(x, m->cohort, e->value);
	else if (m->cohort) {
		imp_set(x->svc, m->cohort, e->value);
		why = NULL;
	} else
		why = m->reason;
	if (why == IMP_FATAL)
		return -1;
	const char *shown = x->written ? x->written : e->value;
	if (why && x->svc)
		imp_skip(x->svc, e->key, shown, why);
	else if (why)
		imp_daemon_skip(x->run, x->sec->name, e->key, shown, why);
	return 0;
}
