/*
 * daemon.h - cohortd's state, all of it reachable from one root struct
 * (struct cohortd).  Watchers live inside their owners; callbacks find the
 * owner with container_of.  The services are the supervision layer's
 * (src/supervise/supervise.h): struct supervisor, embedded here as sup.
 *
 *   daemon.c            set-up, signals, the child watcher, shutdown, final reaping
 *   daemon_supervise.c  the supervision layer's hooks, and reading a reload
 *   daemon_cluster.c    the cluster mode wired into the lock table
 *   daemon_cluster_bus.c  ... and into the bus
 *   hooks.c             what the bus and the control socket ask of the daemon
 *   instance.c          one cohortd per run_dir and state_dir, leftovers of a killed one
 *   lock_group.c        stopping the process group of a lost lock lease
 *   sdnotify.c          telling systemd, when it started us
 *   cohortd.c           main
 */
#ifndef COHORT_DAEMON_H
#define COHORT_DAEMON_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

#include "backoff.h"
#include "bus.h"
#include "cluster.h"
#include "config.h"
#include "control.h"
#include "lock.h"
#include "logfile.h"
#include "map.h"
#include "notify.h"
#include "peer.h"
#include "plan.h"
#include "probe.h"
#include "sdnotify.h"
#include "supervise.h"

struct cluster;
struct cluster_bus;

struct cohortd {
	struct ev_loop *loop;
	char *config_path;
	struct cohort_config *cfg;	/* current config (one reference) */
	struct cohort_config *started_cfg;	/* the one cohortd started with (one reference):
						 * what its listeners and directories run */
	struct supervisor sup;		/* the services: plan, state, children */

	ev_child child_w;		/* every child: pid 0 */
	ev_signal sig_term, sig_int, sig_hup;
	ev_signal sig_stray[3];		/* USR1, USR2, ALRM: logged, not fatal */
	ev_timer shutdown_timer;
	ev_timer exit_timer;		/* bounds the wait for KILLed processes */
	ev_async log_repeat_w;		/* a log line is being counted (any thread) */
	ev_timer log_flush_w;		/* writes the count once its second is over */
	struct notify notify;
	struct peer_auth auth;		/* who may drive cohortd: control socket, bus admins */
	struct control ctl;		/* the control socket and its clients */
	struct lock_table locks;	/* the lock service */
	LIST_HEAD(lock_stops, lock_stop) lock_stops;	/* process groups of lost leases being stopped */
	struct cluster *cluster;	/* locks shared through NATS (src/cluster), or NULL */
	struct cluster_bus *cluster_bus;	/* the bus's messages through NATS, or NULL */
	struct bus bus;			/* the message bus */
	struct sdnotify sd;		/* telling systemd, when it started us (sdnotify.c) */
	struct logwriter *log_writer;
	struct metrics *metrics;	/* its HTTP pages and $sys topics (src/metrics/) */
	int devnull;			/* /dev/null, for stdin and null outputs */
	char *control_path;		/* for COHORT_SOCKET */
	char *bus_path;			/* for COHORT_BUS */
	char *log_dir;			/* as at start-up: a reload does not move it */
	char *run_dir;			/* as at start-up */
	int instance_fd;		/* run_dir/cohortd.pid, locked while we run */
	ev_prepare groups_w;		/* writes run_dir/cohortd.groups, once per loop iteration */
	int state_lock_fd;		/* state_dir/cohortd.lock, likewise (-1 on a full disk) */
	bool groups_write_failed;	/* run_dir/cohortd.groups: warned once */
	struct sbuf groups_add;		/* its lines not written yet (instance.c) */
	size_t groups_lines;		/* lines it has: rewritten whole past twice the live ones */
	bool groups_whole;		/* a whole rewrite is due (a reload) */

	bool killed_all;		/* second TERM/INT or shutdown_timeout */
	int exit_code;
};

/* lock_group.c: the process groups of `cohortctl lock` leases. */
/* Lost leases with a group stop it before the next holder starts. */
void lock_group_init(struct cohortd *d);
/* At exit: no more stopping; a group still stopping is killed now. */
void lock_group_close(struct cohortd *d);

/* daemon_cluster.c: with `cluster` set, the lock table's gate to it. */
/* The [cohort] cluster keys as both NATS connections take them. */
struct cluster_opts daemon_cluster_opts(const struct cohort_config *cfg);
int daemon_cluster_open(struct cohortd *d, char *err, size_t errlen);
/* After the control socket and the bus have closed their sessions. */
void daemon_cluster_close(struct cohortd *d);
/* false on one host (no `cluster`, or built without libnats). */
bool daemon_cluster_info(const struct cohortd *d, struct cluster_info *out);
/* status's "cluster" object; NULL on one host. */
json_t *daemon_cluster_json(const struct cohortd *d);
/* daemon_cluster_bus.c: with `cluster` set, the bus's messages through it. */
int daemon_cluster_bus_open(struct cohortd *d, char *err, size_t errlen);
void daemon_cluster_bus_close(struct cohortd *d);
/* The bus's own NATS connection; false on one host. */
bool daemon_cluster_bus_info(const struct cohortd *d, struct cluster_info *out);

/* daemon.c */
int daemon_run(const char *config_path, struct cohort_config *cfg, struct plan *plan);
void daemon_begin_shutdown(struct cohortd *d, const char *why);

/* daemon_supervise.c */
/* The supervision layer's hooks: its news reaches the control socket,
 * the lock table, the bus and the record of process groups. */
void daemon_hook_supervise(struct cohortd *d);
/* Re-reads the config: 0 applied, -1 invalid (every error logged and, when
 * r is not NULL, listed in it). */
int reload_config(struct cohortd *d, struct reload_report *r);

/* hooks.c: what the layers below ask of the daemon. */
/* Opens the control socket with what its commands act on (struct
 * ctl_env: the services, the lock table, the bus's status, reload and
 * shutdown); -1 with err. */
int daemon_open_control(struct cohortd *d, char *err, size_t errlen);
/* Opens the bus with the lock table, the peer rule, [cohort]'s bus keys,
 * and the token resolver; -1 with err. */
int daemon_open_bus(struct cohortd *d, char *err, size_t errlen);

/* instance.c */
/* Takes run_dir's single-instance lock (before any other file there is
 * touched); -1 with a message when another cohortd holds it. */
int instance_lock(const char *run_dir, int *fd, char *err, size_t errlen);
/* The same for state_dir (before the journal and lock.tokens are opened);
 * 0 with *fd -1 (and a warning) when a full disk refuses the file. */
int instance_lock_state(const char *state_dir, int *fd, char *err, size_t errlen);
void instance_unlock(int fd);
/* Stops the services a killed cohortd left running (before any starts);
 * bounded by their stop_timeout. */
void instance_sweep(const char *run_dir);
/* The record of running process groups is to be rewritten whole (a
 * reload): it is, once, before the loop next waits. */
void instance_record(struct cohortd *d);
/* s's process started, or ended: said in the record before the loop next
 * waits (one write for all of an iteration's). */
void instance_started(struct cohortd *d, struct service *s);
void instance_ended(struct cohortd *d, struct service *s);
/* Nothing runs any more (orderly exit): no record. */
void instance_forget(struct cohortd *d);

#endif
