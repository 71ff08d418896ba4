/*
 * cli.h - what the files of cohortctl share: the connection to cohortd's
 * control socket, the command entries, the output helpers, and the job
 * that `cohortctl lock` runs.  One file per family of commands, each
 * holding its commands' entries (as tmux has a cmd_entry per command):
 *
 *   cohortctl.c     main: global options, the table of entries, help, the
 *                   options of a command moved before its operands
 *   cli_conn.c      the control socket: requests, answers, output helpers
 *   cli_service.c   status, start, stop, restart, signal
 *   cli_daemon.c    reload, shutdown, plan
 *   cli_log.c       log, events
 *   cli_bus.c       pub, sub, get, bus (through libcohort)
 *   cli_lock.c      locks, lock (over the control socket or the bus)
 *   cli_job.c       lock's command: its process group, terminal, signals
 *   cli_import.c    import (supervisord configs and systemd units; see import.h)
 *
 * Exit status: 0 success; 1 the operation failed (a start target ended
 * failed, the daemon refused the request); 2 usage error; 3 cohortd
 * cannot be reached.
 */
#ifndef COHORT_CLI_H
#define COHORT_CLI_H

#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "cohort.h"
#include "util.h"

#define DEFAULT_CONFIG "/etc/cohort/cohort.ini"
#define DEFAULT_SOCKET "/run/cohort/control.sock"

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2, EXIT_UNREACHABLE = 3 };

struct ctl {
	const char *socket;
	bool json;
	bool color;
	int fd;
	struct sbuf in;
};

struct command {
	const char *name;
	const char *usage;	/* arguments after the name */
	const char *summary;
	int (*run)(struct ctl *c, int argc, char **argv);
	/* Its options, for getopt_long ("+": the runner's getopt stops at the
	 * operands), or NULL: it takes none but --json and --help. */
	const char *shortopts;
	const struct option *longopts;
	bool then_command;	/* NAME [--] CMD...: nothing in CMD is an option */
};

/* --- cli_conn.c: the control socket ----------------------------------------- */

void die_usage(const char *fmt, ...) PRINTF(1, 2) __attribute__((noreturn));
/* 0, or -1 with errno. */
int try_connect(struct ctl *c);
/* Connects, or exits 3 saying why. */
void connect_daemon(struct ctl *c);
/* Sends one request (takes the reference). */
void send_request(struct ctl *c, json_t *req);
/* The next line from the daemon, or NULL at end of stream. */
char *read_line(struct ctl *c);
/* One answer; exits 3 if the daemon went away, 1 if it said no (after
 * printing its error), unless keep_errors.  *raw, when asked, is its text. */
json_t *parse_answer(struct ctl *c, char *line, char **raw, bool keep_errors);
json_t *read_answer(struct ctl *c, char **raw, bool keep_errors);
/* Connects, sends REQ and reads its answer as read_answer does. */
json_t *call(struct ctl *c, json_t *req, char **raw);
/* One request and its answer on the open connection; NULL if it closed. */
json_t *roundtrip(struct ctl *c, json_t *req);
/* Exits 2 when CMD was given arguments. */
void no_args(const char *cmd, int argc);

/* --- cli_conn.c: output ------------------------------------------------------ */

/* The colour of a state, as ctl_status.c paints the status table. */
const char *state_color(const char *state);
/* The string member KEY of O, or "". */
const char *str_of(json_t *o, const char *key);
/* Room for CAP rows of NCOLS cells, the first filled with HEAD. */
char ***table_new(const char *const *head, size_t ncols, size_t cap);
/* Prints rows of cells in aligned columns (the last one free). */
void print_table(char ***rows, size_t nrows, size_t ncols);
void free_rows(char ***rows, size_t nrows, size_t ncols);

/* --- cli_bus.c ---------------------------------------------------------------- */

/* $COHORT_BUS, else bus.sock beside the control socket. */
const char *bus_address(struct ctl *c);
/* A libcohort client on the bus, connected, or exits saying why. */
cohort_t *bus_connect(struct ctl *c, const char *session, bool clean, bool reconnect);

/* --- cli_job.c: the command `cohortctl lock` runs ------------------------------- */

/*
 * CMD runs in a process group of its own, which the lease names: when the
 * lease is lost without us (we were killed, the TTL ran out), cohortd stops
 * that whole group before the next holder starts.  The group must exist
 * when the lease is asked for, so CMD's process is forked first and waits
 * on a pipe: it gets the token there once the lease is granted, or EOF
 * (it exits) if it is not.
 *
 * On a terminal, a group of its own would leave CMD in the background:
 * whenever we are in the terminal's foreground, we hand it to CMD's group,
 * and take it back when CMD ends; a stop for the terminal (Ctrl-Z, or CMD
 * reading it from the background) stops us too, as a shell expects of its
 * job (the way sudo relays it), and once continued in the foreground
 * (fg), CMD gets the terminal.
 */
struct job {
	pid_t pid;	/* CMD, and its process group */
	int go;		/* writes the token to it; -1 once written */
	int tty;	/* our controlling terminal, or -1 */
	bool had_tty;	/* CMD ended with the terminal's foreground */
};

/* CMD's process, waiting in its own group for the token: 0, or -1 with errno. */
int job_fork(struct job *job, char **cmd, const char *name);
/* No lease: CMD's process goes without running CMD. */
void job_abandon(struct job *job);
/* The lease is granted: CMD runs, with the terminal if we have it. */
void job_start(struct job *job, uint64_t token);
/* Readable after a signal (from job_start on): call job_command_ended. */
int job_signal_fd(void);
/* After a signal: forwards TERM/INT/HUP to the command's group, relays a
 * stop; true, with its status, if it ended. */
bool job_command_ended(struct job *job, int *status);
/* CMD's status as ours, once the lock is released. */
int job_status(const struct job *job, int st);
/* The lease is lost: CMD's group is stopped; returns the exit status. */
int job_lost_lease(struct job *job, const char *name, const char *why);

/* --- the commands, in the order of the help ----------------------------------- */

extern const struct command cmd_status_entry, cmd_start_entry, cmd_stop_entry, cmd_restart_entry,
	cmd_signal_entry, cmd_reload_entry, cmd_shutdown_entry, cmd_plan_entry, cmd_log_entry,
	cmd_events_entry, cmd_locks_entry, cmd_pub_entry, cmd_sub_entry, cmd_get_entry, cmd_bus_entry, cmd_dashboard_entry,
	cmd_lock_entry, cmd_import_entry;

#endif
