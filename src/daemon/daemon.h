/*
 * daemon.h - cohortd's state, all of it reachable from one root struct
 * (struct cohortd), and the service record the supervisor keeps for each
 * [service:NAME].  Watchers live inside their owners; callbacks find the
 * owner with container_of.
 *
 *   daemon.c      set-up, signals, the child watcher, shutdown, final reaping
 *   hooks.c       what the layers below ask of the daemon (the bus's token resolver)
 *   instance.c    one cohortd per run_dir and state_dir, leftovers of a killed one
 *   lock_group.c  stopping the process group of a lost lock lease
 *   cohortd.c     main
 * and in src/supervise:
 *   service.c     one service's state machine: the transition table and its actions
 *   stack.c       the services together: phases, dependencies, stop order
 *   reload.c      applying a new config to the running stack
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
#include "config.h"
#include "control.h"
#include "lock.h"
#include "logfile.h"
#include "map.h"
#include "notify.h"
#include "peer.h"
#include "plan.h"
#include "probe.h"

enum svc_state {
	SVC_STOPPED,	/* not running, not wanted (or never started) */
	SVC_WAITING,	/* wanted, held back by a dependency or the phase */
	SVC_STARTING,	/* process started, not ready yet */
	SVC_RUNNING,	/* ready */
	SVC_STOPPING,	/* stop signal sent, waiting for the exit */
	SVC_BACKOFF,	/* exited, restart delayed */
	SVC_EXITED,	/* ended and not to be restarted (success) */
	SVC_FAILED,	/* cannot start, or breaker open; maybe a trial later */
	SVC_NSTATES
};

enum svc_event {
	SE_START,	/* dependencies ready: spawn */
	SE_BLOCK,	/* wanted, but a dependency or the phase holds it */
	SE_STOP,	/* stop asked (stop_cause says why) */
	SE_EXEC_FAIL,	/* the program could not be started */
	SE_READY,	/* the readiness check passed */
	SE_UNHEALTHY,	/* ready timeout or failed health: stop as a failure */
	SE_TIMEOUT,	/* stop_timeout passed while stopping */
	SE_EXIT_DONE,	/* ended, not to be restarted */
	SE_EXIT_RESTART,	/* ended, restart after a delay */
	SE_EXIT_FAILED,	/* ended, breaker opens or restart=never failed */
	SE_EXIT_STOPPED,	/* ended after a stop that was asked for */
	SVC_NEVENTS
};

/* Why a stop was asked for: decides what the exit means. */
enum stop_cause {
	STOP_NONE,
	STOP_WANTED,	/* stop command, shutdown, removed by reload */
	STOP_RESTART,	/* restart command or changed by reload: start again */
	STOP_DEPENDENCY,	/* a required service went away: wait for it */
	STOP_FAILURE,	/* ready timeout or failed health: counts as a failure */
};

/* The last exit of the main process. */
struct exit_info {
	bool valid;
	int code;		/* exit code, when signal == 0 */
	int signal;		/* killing signal, or 0 */
};

struct service {
	struct cohortd *d;
	char *name;		/* owned copy: the config may be swapped */
	struct svc_config *cfg;
	struct cohort_config *cfg_owner;	/* holds a reference while cfg is in use */
	size_t index;		/* in d->plan, or SIZE_MAX once removed by reload */

	/* Actual state, and what was asked for (runit's want up / want down). */
	enum svc_state state;
	bool want_up;
	bool kick;		/* an explicit start: exited/failed may start again */
	bool trial_due;		/* failed: the cooldown passed, one trial start */
	bool half_open;		/* this start is the breaker's trial */
	bool removed;		/* reload dropped it: free once stopped */
	bool dirty;		/* queued for reconcile */
	bool restarting;	/* restart asked: stop (dependents first), then start */
	bool dep_lost;		/* a service it requires went: it stops once its dependents have */
	struct notify notify;	/* ready = notify: its own socket, which names it */
	uid_t notify_uid;	/* the user it runs as */
	bool notify_failed;	/* its own socket could not be made: the shared one */
	struct svc_config *next_cfg;	/* reload changed it: use this once stopped */
	struct cohort_config *next_owner;
	enum stop_cause stop_cause;

	pid_t pid;		/* main process (also its process group), 0 if none */
	pid_t recorded_pid;	/* the pid recorded_start is of (instance.c) */
	unsigned long long recorded_start;	/* its start time, /proc ticks */
	int paused_by;		/* signal that stopped the main process (STOP, TSTP...), 0 when it runs */
	int64_t since_ms;	/* wall clock of the last state change */
	int64_t running_since;	/* monotonic ms when it became ready */
	int64_t spawned_at;	/* monotonic ms of the last spawn */
	unsigned restarts;	/* automatic restarts, ever */
	unsigned failures;	/* consecutive failures (backoff exponent) */
	bool started_once;	/* spawned since the last explicit start */
	struct breaker breaker;
	struct exit_info last_exit;
	char reason[256];	/* why it is in its state */
	char exec_error[256];	/* the current spawn could not exec: why */
	int exec_errno;		/* and the errno of the step that failed */
	int64_t next_delay_ms;	/* restart delay chosen for the next backoff */
	bool has_followup;	/* an action asked for one more event: */
	enum svc_event followup_ev;
	char followup_reason[256];
	char status_text[128];	/* last STATUS= from sd_notify */
	char token[33];		/* COHORT_TOKEN of the current process */

	ev_timer timer;		/* backoff, stop timeout, breaker cooldown */
	ev_timer ready_timer;	/* ready_timeout, and delay: readiness */
	ev_timer probe_timer;	/* next readiness or health probe */
	ev_io exec_io;		/* exec-status pipe of the current spawn */
	struct probe probe;	/* readiness, then health */
	unsigned health_failures;
	char health[160];	/* "ok", "failing 2/3: ...", "" when off */

	struct outpipe out;	/* stdout (and stderr, when they share) */
	struct outpipe err;	/* stderr, when it goes elsewhere */
	bool out_open, err_open;
};

/* What a pid in d->children is. */
enum child_kind { CHILD_MAIN, CHILD_PROBE };
struct child_ref {
	enum child_kind kind;
	struct service *svc;
};

/* A state change, for the log and for `events` subscribers. */
typedef void (*event_fn)(struct cohortd *d, struct service *s, enum svc_state from,
			 enum svc_state to, const char *reason, void *arg);

struct event_sub {
	event_fn fn;
	void *arg;
	struct event_sub *next;
};

struct cohortd {
	struct ev_loop *loop;
	char *config_path;
	struct cohort_config *cfg;	/* current config (one reference) */
	struct cohort_config *started_cfg;	/* the one cohortd started with (one reference):
						 * what its listeners and directories run */
	struct plan *plan;		/* of cfg */
	struct service **svcs;		/* by plan index */
	struct service **leaving;	/* removed by reload, still stopping */
	size_t nleaving;
	struct map by_name;		/* name -> struct service (current and leaving) */
	struct intmap children;		/* pid -> struct child_ref */

	ev_child child_w;		/* every child: pid 0 */
	ev_signal sig_term, sig_int, sig_hup;
	ev_signal sig_stray[3];		/* USR1, USR2, ALRM: logged, not fatal */
	ev_timer shutdown_timer;
	ev_timer exit_timer;		/* bounds the wait for KILLed processes */
	ev_idle settle_w;		/* runs the reconcile queue */
	ev_async log_repeat_w;		/* a log line is being counted (any thread) */
	ev_timer log_flush_w;		/* writes the count once its second is over */
	struct notify notify;
	struct peer_auth auth;		/* who may drive cohortd: control socket, bus admins */
	struct control ctl;		/* the control socket and its clients */
	struct lock_table locks;	/* the lock service */
	LIST_HEAD(lock_stops, lock_stop) lock_stops;	/* process groups of lost leases being stopped */
	struct bus bus;			/* the message bus */
	struct map tokens;		/* COHORT_TOKEN -> struct service (running ones) */
	struct logwriter *logw;
	int devnull;			/* /dev/null, for stdin and null outputs */
	char *control_path;		/* for COHORT_SOCKET */
	char *bus_path;			/* for COHORT_BUS */
	char *log_dir;			/* as at start-up: a reload does not move it */
	char *run_dir;			/* as at start-up */
	int instance_fd;		/* run_dir/cohortd.pid, locked while we run */
	ev_prepare groups_w;		/* writes run_dir/cohortd.groups, once per loop iteration */
	int state_lock_fd;		/* state_dir/cohortd.lock, likewise (-1 on a full disk) */
	bool groups_write_failed;	/* run_dir/cohortd.groups: warned once */

	unsigned phase_open;		/* start-up: highest phase allowed to start */
	bool stack_up;			/* every phase has been opened */
	bool shutting_down;
	bool killed_all;		/* second TERM/INT or shutdown_timeout */
	int exit_code;

	/* Reconcile work: services to look at again. */
	struct service **dirty;
	size_t ndirty, dirty_cap;
	bool settling;

	struct event_sub *event_subs;
	uint64_t events_seq;
};

/* lock_group.c: the process groups of `cohortctl lock` leases. */
/* Lost leases with a group stop it before the next holder starts. */
void lock_group_init(struct cohortd *d);
/* At exit: no more stopping; a group still stopping is killed now. */
void lock_group_close(struct cohortd *d);

/* daemon.c */
int daemon_run(const char *config_path, struct cohort_config *cfg, struct plan *plan);
void daemon_track_child(struct cohortd *d, pid_t pid, enum child_kind kind, struct service *s);
void daemon_begin_shutdown(struct cohortd *d, const char *why);
/* Frees a service and forgets its children (reload removed it). */
void daemon_release_service(struct cohortd *d, struct service *s);
void daemon_subscribe(struct cohortd *d, event_fn fn, void *arg);
void daemon_unsubscribe(struct cohortd *d, event_fn fn, void *arg);

/* hooks.c: what the layers below ask of the daemon. */
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
/* The record of running process groups is to be rewritten (a spawn or an
 * exit): it is, once, before the loop next waits. */
void instance_record(struct cohortd *d);
/* Nothing runs any more (orderly exit): no record. */
void instance_forget(struct cohortd *d);

/* service.c */

struct service *svc_new(struct cohortd *d, struct svc_config *cfg, struct cohort_config *owner,
			size_t index);
void svc_free(struct service *s);
/* Closes the output pipes (before the log writer stops). */
void svc_free_outputs(struct service *s);
/* Feeds one event through the transition table. */
void svc_fire(struct service *s, enum svc_event ev, const char *reason);
/* The main process ended with status (from waitpid). */
void svc_main_exited(struct service *s, int status);
/* The main process was stopped by sig (waitpid's WIFSTOPPED), or continued
 * (sig 0). */
void svc_main_paused(struct service *s, int sig);
void svc_notify(struct service *s, const char *msg);
/* Sends sig to the service's process group; -1 with errno. */
int svc_signal(struct service *s, int sig);
/* Replaces the config (reload): keeps the process. */
void svc_set_config(struct service *s, struct svc_config *cfg, struct cohort_config *owner);
const char *svc_state_name(enum svc_state st);
const char *svc_event_name(enum svc_event ev);
/* True when s holds a live process. */
bool svc_live(const struct service *s);
/* Kills the whole process group at once (second TERM, shutdown timeout). */
void svc_kill_now(struct service *s);

/* stack.c */
void stack_start(struct cohortd *d);
/* Marks s to be reconciled; the queue runs from an idle watcher. */
void stack_dirty(struct cohortd *d, struct service *s);
/* s changed state: its dependents, the phase gate and shutdown may move. */
void stack_changed(struct cohortd *d, struct service *s, enum svc_state from);
void stack_settle(struct cohortd *d);
/* Explicit start/stop/restart of one service (commands). */
void stack_want(struct cohortd *d, struct service *s, bool up, bool restart);
bool stack_all_down(const struct cohortd *d);
struct service *stack_find(const struct cohortd *d, const char *name);
/* Waiting on something that will not come up by itself (a failed
 * dependency, or one not wanted up), once start-up is over. */
bool stack_blocked(const struct cohortd *d, const struct service *s);
/* Ready for what requires it: running, or exited with success. */
bool svc_ready_for_dependents(const struct service *s);

/* reload.c */
/* What a reload did, for its caller: lists of names, or of "FILE:LINE:
 * message" for errors.  changed: every service whose definition changed,
 * keys: the keys that changed in each (space-separated, parallel to
 * changed); restarted and updated: those of changed restarted for it, and
 * those changed in place.  applied: [cohort] keys that changed and apply
 * now; restart: [cohort] keys that differ from the value cohortd runs
 * with, until it restarts. */
struct reload_report {
	struct strv errors, added, removed, changed, keys, restarted, updated, applied, restart;
};
/* Re-reads the config: 0 applied, -1 invalid (every error logged and, when
 * r is not NULL, listed in it). */
int reload_config(struct cohortd *d, struct reload_report *r);
void reload_report_free(struct reload_report *r);

#endif
