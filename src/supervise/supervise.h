/*
 * supervise.h - the supervision layer: each service's state machine, the
 * stack of services together, and applying a reloaded config to them.
 *
 *   service.c        one service: the transition table, its actions
 *   service_spawn.c  starting its process: environment, outputs, token
 *   service_check.c  readiness and health checks, sd_notify messages
 *   service_exit.c   what an exit means: restart, done, breaker open
 *   decide.c         the stack's decision, a pure function of the data
 *   stack.c          the shell around it: reconcile queue, phases, wants
 *   children.c       the pids of our children, and whose each is
 *   pidfile.c        pidfile = PATH: a daemon that forks, adopted by its PID file
 *   reload.c         a new config against the running services
 *
 * The layer knows nothing above it (the daemon, the control socket, the
 * bus): what they need to hear of (a state change, a service's output, a
 * service freed) reaches them through struct supervise_hooks, which the
 * daemon fills in at start.
 */
#ifndef COHORT_SUPERVISE_H
#define COHORT_SUPERVISE_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "backoff.h"
#include "config.h"
#include "logfile.h"
#include "map.h"
#include "notify.h"
#include "plan.h"
#include "probe.h"

/* What the service is doing.  Only the transition table changes it. */
enum svc_state {
	SVC_STOPPED,	/* not running, not wanted (or never started) */
	SVC_WAITING,	/* wanted, held back by a dependency or the phase */
	SVC_STARTING,	/* process started, not ready yet */
	SVC_RUNNING,	/* ready */
	SVC_STOPPING,	/* stop signal sent, waiting for the exit */
	SVC_BACKOFF,	/* exited, restart delayed */
	SVC_EXITED,	/* ended and not to be restarted (success) */
	SVC_FAILED,	/* cannot start, or breaker open; maybe a trial later */
	SVC_ADOPTING,	/* pidfile: the started process exited 0, its daemon's
			 * PID file is awaited (shown as "starting": to users
			 * the start is one step) */
	SVC_NSTATES
};

/* What the service should be doing (runit's want up / want down): set
 * only by the SE_WANT_* events, which commands, start-up, shutdown and
 * reload fire; the stack's decision (decide.c) reconciles it with the
 * state. */
enum svc_want {
	WANT_DOWN,	/* stopped, and not started by anything but a command */
	WANT_UP,	/* running; restarted after a failure as its policy says */
	WANT_RESTART,	/* a fresh start asked for: a live process stops first
			 * (what requires it before it), one that ended, failed
			 * or waits out a delay starts now; WANT_UP once spawned */
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
	SE_DELAY_OVER,	/* backoff delay or breaker cooldown over: may start */
	SE_FORKED,	/* pidfile: the started process exited 0; read the file */
	SE_ADOPTED,	/* pidfile: its PID adopted; the ready probe judges it */
	SE_WANT_DOWN,	/* commands: the wanted state changes (state does not) */
	SE_WANT_UP,
	SE_WANT_RESTART,
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
	int code;		/* exit code, when signal == 0 */
	int signal;		/* killing signal, or 0 */
	bool valid;
	bool unknown;		/* an adopted process not our child: no status */
};

/* The longest texts a service keeps, NUL included: longer ones are cut. */
#define SVC_REASON_MAX 256	/* reason, exec_error, followup_reason */
#define SVC_STATUS_MAX 128	/* status_text */
#define SVC_HEALTH_MAX 160	/* health */

struct supervisor;

/* (Its small fields side by side, where they fit: no padding between them.) */
struct service {
	struct supervisor *sup;
	struct svc_config *cfg;
	struct cohort_config *cfg_owner;	/* holds a reference while cfg is in use */
	size_t index;		/* in sup->plan, or SIZE_MAX once removed by reload */

	/* Actual state, and what was asked for. */
	enum svc_state state;
	enum svc_want want;
	enum stop_cause stop_cause;
	bool delay_over;	/* backoff: the restart delay has passed */
	bool breaker_trial;	/* failed: the cooldown passed, the next start (or
				 * this one, until ready) is the breaker's trial */
	bool going_down;	/* a service it requires went: it stops once its
				 * dependents have, which see it going */
	bool removed;		/* reload dropped it: free once stopped */
	/* ready = notify: its own socket, which names it (service_spawn.c);
	 * made at its first start with ready = notify, freed with it: the
	 * other services carry a pointer, not 72 bytes each */
	struct svc_notify *notify;
	struct svc_config *next_cfg;	/* reload changed it: use this once stopped */
	struct cohort_config *next_owner;

	pid_t pid;		/* main process, 0 if none */
	pid_t pgid;		/* the process group stop signals go to: pid's own
				 * (spawned with setsid), or an adopted daemon's
				 * (pidfile.c); 0: signal pid alone */
	int paused_by;		/* signal that stopped the main process (STOP, TSTP...), 0 when it runs */
	bool adopted;		/* pid was read from the PID file: its end is the
				 * service's end, not the end of a start */
	bool started_once;	/* spawned since the last explicit start */
	bool ever_ready;	/* ready at least once (decide.c: a new instance) */
	bool queued;		/* in the reconcile queue */
	/* pidfile = PATH: the watchers of an adopted pid that is not our
	 * child, and the next look at the file (pidfile.c); made at the
	 * service's first start with a pidfile, freed with it: 10,000
	 * services without one carry a pointer, not 110 bytes each */
	struct pidfile_watch *pidw;
	pid_t recorded_pid;	/* the pid recorded_start is of (instance.c) */
	unsigned health_failures;	/* failed health checks in a row */
	unsigned long long recorded_start;	/* its start time, /proc ticks */
	int64_t since_ms;	/* wall clock of the last state change */
	int64_t running_since;	/* monotonic ms when it became ready */
	int64_t spawned_at;	/* monotonic ms of the last spawn */
	unsigned restarts;	/* automatic restarts, ever */
	unsigned failures;	/* consecutive failures (backoff exponent) */
	struct breaker breaker;
	struct exit_info last_exit;
	int exec_errno;		/* the errno of the step that failed, with exec_error */
	/* Texts are on the heap, NULL when empty (most are, most of the
	 * time: 10,000 services must not carry a kilobyte of empty arrays
	 * each); str_set() sets them, svc_text() reads them.  Each is cut
	 * as the fixed array it replaced was (SVC_*_MAX). */
	char *reason;		/* why it is in its state */
	char *exec_error;	/* the current spawn could not exec: why (exec_errno) */
	int64_t next_delay_ms;	/* restart delay chosen for the next backoff */
	char *status_text;	/* last STATUS= from sd_notify */
	char token[33];		/* COHORT_TOKEN of the current process */
	bool has_followup;	/* an action asked for one more event: */
	bool reload_touched;	/* the last reload added it, changed it or moved it to
				 * another phase (its $sys.service value, daemon) */
	enum svc_event followup_ev;
	char *followup_reason;

	ev_timer timer;		/* backoff, stop timeout, breaker cooldown */
	/* The other watchers are made when needed (service.c): 48 bytes each
	 * that 10,000 running services do not carry. */
	ev_timer *ready_timer;	/* ready_timeout: from a spawn until ready or stopped */
	ev_timer *probe_timer;	/* delay: readiness, the next readiness or health
				 * probe, or the next look at a missing PID file
				 * (ADOPTING); kept once made */
	ev_io *exec_io;		/* exec-status pipe of the current spawn, until read
				 * and its news handled */
	/* readiness, then health: made at the service's first probe (most
	 * services never probe: delay: and notify need none), kept until
	 * the service is freed; its watchers live in it */
	struct probe *probe;
	char *health;		/* "ok", "failing 2/3: ...", NULL when off */

	/* Output pipes, made while the output is captured (NULL when it is
	 * not: null, inherit, or could not be made). */
	struct outpipe *out;	/* stdout (and stderr, when they share) */
	struct outpipe *err;	/* stderr, when it goes elsewhere */
	char name[];		/* its own copy, in the same block: the config may be swapped */
};

/*
 * What the layers above hear of, wired by the daemon at start.  Each may
 * be NULL.  arg is passed back.
 */
struct supervise_hooks {
	void *arg;
	/* s changed state (or its reason changed): for `events` streams and
	 * waiting commands. */
	void (*state_changed)(void *arg, struct service *s, enum svc_state from, enum svc_state to,
			      const char *reason);
	/* Lines s wrote to a log file: for `log --follow`. */
	void (*output)(void *arg, struct service *s, const char *lines, size_t len);
	/* s, removed by a reload, is about to be freed: forget it. */
	void (*service_gone)(void *arg, struct service *s);
	/* s's main process started or ended: the record of running process
	 * groups changes; an ended one holds no lock any more. */
	void (*process_started)(void *arg, struct service *s);
	void (*process_ended)(void *arg, struct service *s);
	/* A reload was applied: services may be gone. */
	void (*reloaded)(void *arg);
};

/* What a pid in sup->children is. */
enum child_kind { CHILD_MAIN, CHILD_PROBE };

/* The services together, and what they are given. */
struct supervisor {
	struct ev_loop *loop;
	struct supervise_hooks hooks;

	/* Given to every service; owned by the daemon, which outlives them. */
	int devnull;			/* stdin and null outputs */
	const char *control_path;	/* COHORT_SOCKET */
	const char *bus_path;		/* COHORT_BUS */
	const char *log_dir;		/* output = log */
	const char *run_dir;		/* own notify sockets */
	const char *notify_path;	/* the shared NOTIFY_SOCKET, or NULL */
	struct logwriter *log_writer;	/* writes output to log files */

	struct plan *plan;		/* of the config in use */
	struct service **svcs;		/* by plan index */
	struct service **leaving;	/* removed by reload, still stopping */
	size_t nleaving;
	struct map by_name;		/* name -> struct service (current and leaving) */
	struct map tokens;		/* COHORT_TOKEN -> struct service (running ones) */
	struct intmap children;		/* pid -> struct child_ref (children.c) */

	unsigned phase_open;		/* start-up: highest phase allowed to start */
	bool stack_up;			/* every phase has been opened */
	bool shutting_down;

	/* Tallies, so that no event needs a look at every service (stack.c
	 * keeps them: svc_set_state, stack_recount, the pid's set and clear). */
	size_t nlive;			/* services with a process (svc_live), leaving ones too */
	size_t nstate[SVC_NSTATES];	/* services of the plan in each state */
	size_t *busy;			/* per phase 1..nphases: its services starting,
					 * running or stopping (a shutdown's order) */
	size_t settle_hint;		/* start-up: where the last look at the open phase
					 * found a service not settled (plan->order index) */

	/* Reconcile work: services to look at again, first queued first
	 * (stack.c): queue[qhead..nqueued). */
	struct service **queue;
	size_t qhead, nqueued, queue_cap;
	bool settling;
	bool settle_yielding;	/* a settle was cut short: only settle_more goes on */
	ev_timer settle_more;	/* a settle cut short at SETTLE_ROUNDS goes on
				 * at the loop's next pass */
};

/* --- service.c ----------------------------------------------------------- */

/* A service's text field (reason, health, ...), "" when it has none. */
static inline const char *svc_text(const char *t)
{
	return t ? t : "";
}

struct service *svc_new(struct supervisor *sup, struct svc_config *cfg, struct cohort_config *owner,
			size_t index);
void svc_free(struct service *s);
/* Closes the output pipes (before the log writer stops). */
void svc_free_outputs(struct service *s);
/* Feeds one event through the transition table. */
void svc_fire(struct service *s, enum svc_event ev, const char *reason);
/* The state an event leads to from st, or -1 when st does not expect it
 * (the transition table, for tests and tools). */
int svc_next_state(enum svc_state st, enum svc_event ev);
/* Sends sig to the service's process group; -1 with errno. */
int svc_signal(struct service *s, int sig);
/* That group (0: the main process alone).  An adopted daemon's is looked
 * up again each time: a daemon may call setsid after its parent wrote
 * the PID file (Debian's nginx does), so the group it had when adopted
 * may be the start's. */
pid_t svc_pgid(struct service *s);
/* Replaces the config (reload): keeps the process. */
void svc_set_config(struct service *s, struct svc_config *cfg, struct cohort_config *owner);
const char *svc_state_name(enum svc_state st);
const char *svc_event_name(enum svc_event ev);
const char *svc_want_name(enum svc_want w);
/* True when s holds a live process. */
bool svc_live(const struct service *s);
/* A restart asked of a live process, not yet through its stop. */
bool svc_restarting(const struct service *s);
/* In backoff, or failed with the breaker open: how long until the restart
 * or the trial start, in ms; -1 when none is due. */
int64_t svc_next_start_in_ms(const struct service *s);
/* Kills the whole process group at once (second TERM, shutdown timeout). */
void svc_kill_now(struct service *s);

/* service_exit.c */
/* The main process ended with status (from waitpid). */
void svc_main_exited(struct service *s, int status);
/* The main process was stopped by sig (waitpid's WIFSTOPPED), or continued
 * (sig 0). */
void svc_main_paused(struct service *s, int sig);
/* What an exit (s->last_exit) means, the service's counters and breaker
 * updated: the event, and its reason in reason.  was_ready: it got past
 * readiness; now: monotonic ms; jitter in [-1, 1] for the backoff. */
enum svc_event svc_classify_exit(struct service *s, bool was_ready, int64_t now, double jitter,
				 char *reason, size_t len);

/* The main process ended with what e says (an adopted process that is
 * not our child, whose status nobody but its parent sees). */
void svc_main_ended(struct service *s, const struct exit_info *e);

/* service_check.c */
/* A message from the service's process on a notify socket. */
void svc_notify(struct service *s, const char *msg);

/* --- decide.c: the stack's decision, with no process, socket or loop ---- */

struct decision {
	bool fire;		/* an event to fire: */
	enum svc_event event;	/* SE_START, SE_BLOCK or SE_STOP */
	enum stop_cause cause;	/* with SE_STOP */
	bool going_down;	/* the service's going_down from now on */
	const char *waits_for;	/* a stop held back by this service, or NULL */
	unsigned waits_phase;	/* a shutdown's stop held back by this phase, or 0 */
	char reason[256];
};
/* What s should do now, given every service's state and want, the
 * dependencies, the phase gate and a shutdown. */
void stack_decide(const struct supervisor *sup, const struct service *s, struct decision *out);
/* Start-up: phase ph has settled (each autostart service wanted up is
 * running, exited, failed or held by a failure). */
bool stack_phase_settled(const struct supervisor *sup, unsigned ph);
/* The same of one service: it does not hold its phase back. */
bool stack_svc_settled(const struct supervisor *sup, const struct service *s);
/* Starting, running or stopping: what a shutdown waits for. */
bool svc_busy(enum svc_state st);
/* The first service a reload removed whose process still runs, or NULL:
 * services start once none is (decide.c). */
const struct service *stack_leaving_live(const struct supervisor *sup);
/* Ready for what requires it: running, or exited with success. */
bool svc_ready_for_dependents(const struct service *s);
/* Waiting on something that will not come up by itself (a failed
 * dependency, or one not wanted up), once start-up is over. */
bool stack_blocked(const struct supervisor *sup, const struct service *s);

/* --- stack.c ---------------------------------------------------------------- */

/* sup zeroed: loop, hooks and the given fields set by the caller. */
void stack_init(struct supervisor *sup, struct cohort_config *cfg, struct plan *plan);
/* Frees every service and the registry (the loop has stopped). */
void stack_free(struct supervisor *sup);
void stack_start(struct supervisor *sup);
/* Every service wanted down, stopped in reverse phase order. */
void stack_shutdown(struct supervisor *sup);
/* The only way a service's state changes (svc_fire; tests): the tallies
 * follow. */
void stack_set_state(struct supervisor *sup, struct service *s, enum svc_state st);
/* The tallies counted afresh from the services (a reload moved them
 * between phases; a stack made by hand). */
void stack_recount(struct supervisor *sup);
/* Queues s to be reconciled; the queue runs in stack_settle(). */
void stack_queue(struct supervisor *sup, struct service *s);
/* s and the services whose next step may depend on s, queued. */
void stack_touch(struct supervisor *sup, struct service *s);
/* s changed state: its dependents, the phase gate and shutdown may move. */
void stack_changed(struct supervisor *sup, struct service *s, enum svc_state from);
void stack_settle(struct supervisor *sup);
/* A command's wish for one service (start, stop, restart). */
void stack_want(struct supervisor *sup, struct service *s, enum svc_want want);
/* No service has a process (nlive is 0). */
bool stack_all_down(const struct supervisor *sup);
struct service *stack_find(const struct supervisor *sup, const char *name);
/* The services a name given by a user means (config_match: NAME, a
 * template's NAME for all its instances, NAME@K, a glob such as worker@*),
 * and a service a reload removed that is still stopping, by its own name:
 * pushed to out; their number, or -1 with why. */
int stack_match(const struct supervisor *sup, const char *name, struct strv *out, struct sbuf *why);

/* --- children.c ------------------------------------------------------------- */

void children_track(struct supervisor *sup, pid_t pid, enum child_kind kind, struct service *s);
/* A child ended: its service hears of it.  False when pid is no child we
 * track (an orphan we inherited). */
bool children_exited(struct supervisor *sup, pid_t pid, int status);
/* A child was stopped or continued (waitpid's WIFSTOPPED/WIFCONTINUED). */
void children_paused(struct supervisor *sup, pid_t pid, int status);
/* A freed service's children are reaped as orphans. */
void children_forget(struct supervisor *sup, const struct service *s);
void children_free(struct supervisor *sup);

/* --- reload.c ------------------------------------------------------------------ */

/* What a reload did, for its caller: lists of names, or of "FILE:LINE:
 * message" for errors.  changed: every service whose definition changed,
 * keys: the keys that changed in each (space-separated, parallel to
 * changed); restarted and updated: those of changed restarted for it, and
 * those changed in place.  applied: [cohort] keys that changed and apply
 * now; restart: [cohort] keys that differ from the value cohortd runs
 * with, until it restarts. */
struct reload_report {
	struct strv errors, added, removed, changed, keys, restarted, updated, applied, restart;
	struct strv dependents;	/* live, unchanged, and requiring one of restarted: restarted too */
};
void reload_report_free(struct reload_report *r);

/* How a service's definition changed (reload_diff). */
enum svc_change {
	CHANGE_NONE,	/* same definition */
	CHANGE_ADDED,	/* a new service */
	CHANGE_REMOVED,	/* gone from the new config */
	CHANGE_LIVE,	/* changed only in keys applied to a running process */
	CHANGE_RESTART,	/* changed in what the process sees: it restarts */
};
struct svc_diff {
	const char *name;
	enum svc_change change;
	struct strv keys;	/* the keys that changed */
};
struct reload_diff {
	struct svc_diff *v;
	size_t n;
};
/* Compares each service's definition now (the one it runs, or the one
 * waiting for its next start) with the new config's: no processes, pure. */
void reload_diff(const struct supervisor *sup, const struct cohort_config *nc, struct reload_diff *out);
void reload_diff_free(struct reload_diff *d);
/* Says which [cohort] keys of nc apply now (they differ from running's)
 * and which differ from what cohortd started with (they wait for its
 * restart). */
void reload_compare_daemon(const struct cohort_config *running, const struct cohort_config *started,
			   const struct cohort_config *nc, struct strv *applied, struct strv *restart);
/* Moves the services onto the new config and plan (both taken): adds,
 * removes, updates in place or restarts each as its diff says, reported
 * in r (which may be NULL). */
void stack_reload(struct supervisor *sup, struct cohort_config *nc, struct plan *np,
		  struct reload_report *r);

#endif
