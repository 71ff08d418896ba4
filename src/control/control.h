/*
 * control.h - the control socket: a unix stream socket speaking
 * newline-delimited JSON, one request object per line, one response object
 * per line; `events` and `log --follow` stream further lines.
 *
 *   control.c      the listener, clients, buffers, dispatch; who may connect
 *                  is peer.c's rule (src/lib), shared with the bus
 *   ctl_status.c   status, plan
 *   ctl_service.c  start, stop, restart (with wait), signal
 *   ctl_daemon.c   reload, shutdown
 *   ctl_log.c      log (with follow), events
 *   ctl_lock.c     lock, renew, release, locks
 *
 * Every client is non-blocking on the loop.  A request line may be at most
 * CTL_REQUEST_MAX bytes; output waits in a per-client buffer, and a
 * streaming client whose buffer passes CTL_STREAM_MAX is told and closed.
 * A client whose answers pile up past CTL_OUT_MAX unread is not read
 * until they drain (at most a request's worth waits meanwhile).
 * A client with a request in progress (a wait) is not read until it is
 * answered, so answers always come in request order.
 */
#ifndef COHORT_CONTROL_H
#define COHORT_CONTROL_H

#include <ev.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

#include "map.h"
#include "util.h"
#include "wire.h"

#define CTL_REQUEST_MAX (64u << 10)
#define CTL_STREAM_MAX (1u << 20)
#define CTL_OUT_MAX (1u << 20)

struct service;
struct supervisor;
struct lock_table;
struct reload_report;
struct ctl_wait;
struct lock_session;

/*
 * What the command families act on, filled in by the daemon at start
 * (src/daemon/hooks.c), as the supervision layer's hooks are: the
 * services and the lock table, and what only the daemon may do.  The
 * layer sees no further up than this.
 */
struct ctl_env {
	struct supervisor *sup;		/* the services (src/supervise), and their log writer */
	struct lock_table *locks;	/* the lock service */
	void *arg;			/* passed back to the functions below */
	/* The bus's part of status (the bus is beside this layer). */
	json_t *(*bus_status)(void *arg);
	/* The cluster's state (doc/CLUSTER.md); NULL on one host. */
	json_t *(*cluster_status)(void *arg);
	/* Re-reads the config: 0 applied, -1 invalid (every error listed in r). */
	int (*reload)(void *arg, struct reload_report *r);
	/* The stack goes down and cohortd exits, saying why. */
	void (*shutdown)(void *arg, const char *why);
};

struct ctl_client {
	struct control *ctl;
	ev_io io;
	uint64_t id;
	uid_t uid;
	pid_t pid;
	struct sbuf in;		/* bytes of the request line being read */
	struct sbuf out;	/* bytes not yet written */
	bool skipping;		/* discarding the rest of an oversize line */
	bool closing;		/* close once out is written */
	bool eof;		/* it shut its side: answer what it sent, then close */
	bool busy;		/* a request is in progress: do not read more */
	bool streaming;		/* events or follow: input is only watched for EOF */
	bool events;		/* streams state changes */
	struct service **follow;	/* streams these services' log lines */
	size_t nfollow;
	struct ctl_wait *wait;	/* the request waiting for targets to settle */
	struct lock_session *locks;	/* opened by the first lock command */
	LIST_ENTRY(ctl_client) link;	/* in control.clients */
	STAILQ_ENTRY(ctl_client) flush_link;	/* in control.flush, when flush_queued */
	bool flush_queued;
};

struct control {
	struct ctl_env env;	/* what the command families act on (control.c never looks) */
	struct ev_loop *loop;
	ev_io listen_io;
	ev_timer accept_pause;	/* out of file descriptors: accept again later */
	ev_timer trim_w;	/* running: a malloc_trim was made less than CTL_TRIM_EVERY_S ago */
	bool trim_wanted;	/* another big answer since: trimmed when trim_w ends */
	bool fd_warned;		/* said so, this time */
	bool draining;		/* the loop has ended: write what waits, run nothing more */
	char *path;
	struct peer_auth *auth;	/* who may connect (the daemon's, shared with the bus) */
	LIST_HEAD(ctl_clients, ctl_client) clients;
	size_t nclients;
	/* Clients with answers to write, written just before the loop waits:
	 * each answer wakes its client, which would otherwise take the CPU
	 * from the rest of the batch (as redis does it, in beforeSleep). */
	ev_prepare flush_w;
	STAILQ_HEAD(ctl_flushq, ctl_client) flush;	/* in the order answered */
	uint64_t next_id;
	/* ctl_stats.c: requests by command, for /metrics */
	struct ctl_stat {
		const char *cmd;	/* the command table's own name */
		uint64_t requests, errors;
	} stats[48];
	size_t nstats;
	uint64_t bad_requests;		/* not JSON, or no known command */
};

/* Handler results. */
enum ctl_result {
	CTL_REPLY,	/* resp holds the answer */
	CTL_ERROR,	/* resp holds {"error": ...} */
	CTL_LATER,	/* the handler answers later (ctl_reply_later) */
	CTL_SENT,	/* the handler sent its answer itself (ctl_send_line) */
};

typedef enum ctl_result (*ctl_handler)(struct ctl_client *c, json_t *req, json_t *resp);

/* A command: its handler runs only once control.c has checked the
 * request's fields against FIELDS (ended by a NULL name; NULL: it takes
 * none), an unknown one included, so a handler reads them unchecked. */
struct ctl_command {
	const char *name;
	ctl_handler handler;
	const char *help;
	const struct wire_field *fields;
};

struct peer_auth;
/* Listens on run_dir/control.sock (mode, and control_group's group when
 * auth has one); env (copied) is handed to the command families.  -1
 * with err. */
int control_open(struct control *ctl, struct ev_loop *loop, const char *run_dir, unsigned mode,
		 struct peer_auth *auth, const struct ctl_env *env, char *err, size_t errlen);
/* Writes the queued answers now: done before the loop sleeps, and by
 * cohortd once the loop has ended, so that the last answers (the one to
 * "shutdown") do not wait for the final sweep. */
void control_flush(struct control *ctl);
void control_close(struct control *ctl);

/* The request in LINE (LEN bytes, without its newline) as a client's
 * line is read: the flat fast path (jflat.c), else jansson.  NULL, with
 * the error in resp, when it is not JSON, not an object, names no known
 * "cmd", or its fields are not those the command declares; else the
 * request and *cmd its command. */
json_t *ctl_parse_request(const char *line, size_t len, json_t *resp, const struct ctl_command **cmd);
/* Sends one JSON object as a line (takes the reference). */
void ctl_send(struct ctl_client *c, json_t *obj);
/* Sends LEN bytes that are already one JSON line, newline included. */
void ctl_send_line(struct ctl_client *c, const char *line, size_t len);
/* Answers a CTL_LATER request and reads the client again. */
void ctl_reply_later(struct ctl_client *c, json_t *resp);
void ctl_reply_later_line(struct ctl_client *c, const char *line, size_t len);
/* Sets resp's error text; returns CTL_ERROR. */
enum ctl_result ctl_error(json_t *resp, const char *fmt, ...) PRINTF(2, 3);
/* Streaming: is c still able to take more? */
bool ctl_stream_ok(struct ctl_client *c);
void ctl_client_close(struct ctl_client *c);

/* A field of a request whose fields were checked (struct ctl_command):
 * its value, or DFLT (NULL for a string) when it is absent. */
const char *ctl_str(json_t *req, const char *field);
long long ctl_int(json_t *req, const char *field, long long dflt);
bool ctl_bool(json_t *req, const char *field, bool dflt);

/* ctl_stats.c: one request of cmd (NULL: it named none) was answered. */
void ctl_stats_count(struct control *ctl, const struct ctl_command *cmd, bool error);

/* The command families. */
extern const struct ctl_command ctl_status_commands[];
extern const struct ctl_command ctl_service_commands[];
extern const struct ctl_command ctl_daemon_commands[];
extern const struct ctl_command ctl_log_commands[];
extern const struct ctl_command ctl_lock_commands[];
extern const struct ctl_command ctl_dashboard_commands[];	/* src/metrics/dashboard.c */
struct lock_table;
json_t *ctl_locks_json(const struct lock_table *t);

/* ctl_service.c: a client went away: forget its wait. */
void ctl_wait_cancel(struct ctl_client *c);
/* ctl_service.c: something changed: answer c's wait if it is over. */
void ctl_wait_event(struct ctl_client *c);
/* ctl_log.c: a client went away: stop its streams. */
void ctl_stream_stop(struct ctl_client *c);
/* ctl_log.c: a service is going away: its followers are told and closed. */
void ctl_log_service_gone(struct control *ctl, struct service *s);

/* ctl_log.c: new lines of a service's output, for its followers. */
void ctl_log_lines(struct control *ctl, struct service *s, const char *data, size_t len);
/* ctl_log.c: the daemon's state-change subscriber (events, waits). */
enum svc_state;
void ctl_on_event(struct control *ctl, struct service *s, enum svc_state from, enum svc_state to,
		  const char *reason);

/* For status (and GET /api/status): the services in sel, the stack and
 * the bus, into resp. */
void ctl_status_fill(const struct ctl_env *env, const struct service **sel, size_t n, json_t *resp);
/* For status: one service as JSON. */
json_t *ctl_service_json(const struct ctl_env *env, const struct service *s);

#endif
