/*
 * service.c - one service's life: the transition table (state x event ->
 * action, next state) and its actions.
 *
 * Every input becomes an event fed through svc_fire(): what happens to
 * the process (service_spawn.c, service_check.c, service_exit.c), the
 * stack's decision (stack.c), and commands.  A command changes only the
 * wanted state (SE_WANT_*: the state stays, the action records the wish
 * as the state it arrives in makes it mean); the stack's decision then
 * turns the difference into START / BLOCK / STOP.  An event the table
 * does not allow in the current state is logged and dropped, never acted
 * on.
 */
#include "autoconfig.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "evtimer.h"
#include "log.h"
#include "service_impl.h"

typedef void (*action_fn)(struct service *s);

static void act_none(struct service *s);
static void act_ready(struct service *s);
static void act_kill(struct service *s);
static void act_backoff(struct service *s);
static void act_failed(struct service *s);
static void act_ended(struct service *s);
static void act_stopped(struct service *s);
static void act_cancel(struct service *s);
static void act_delay_over(struct service *s);
static void act_trial_due(struct service *s);
static void act_want_down(struct service *s);
static void act_want_up(struct service *s);
static void act_want_now(struct service *s);
static void act_want_fresh(struct service *s);

struct transition {
	bool allowed;
	bool keeps_state;	/* a wish or a timer's news: state and reason stay */
	enum svc_state next;
	action_fn act;
};

#define T(next, act) {true, false, SVC_##next, act}
#define KEEP(act) {true, true, SVC_STOPPED, act}

/* What a command means depends on the state it finds: start of a service
 * that ended or failed is a fresh start (new breaker and backoff), of one
 * waiting out its restart delay a start now; restart of a live one stops
 * it first. */
#define WANTS(up, restart) \
	[SE_WANT_DOWN] = KEEP(act_want_down), [SE_WANT_UP] = KEEP(up), [SE_WANT_RESTART] = KEEP(restart)

/* Every transition there is.  An empty cell is an event the state does not
 * expect: it is logged and ignored. */
static const struct transition table[SVC_NSTATES][SVC_NEVENTS] = {
	[SVC_STOPPED] = {
		[SE_START] = T(STARTING, svc_act_spawn),
		[SE_BLOCK] = T(WAITING, act_none),
		[SE_STOP] = T(STOPPED, act_none),
		WANTS(act_want_up, act_want_now),
	},
	[SVC_WAITING] = {
		[SE_START] = T(STARTING, svc_act_spawn),
		[SE_BLOCK] = T(WAITING, act_none),
		[SE_STOP] = T(STOPPED, act_none),
		WANTS(act_want_up, act_want_now),
	},
	[SVC_STARTING] = {
		[SE_READY] = T(RUNNING, act_ready),
		[SE_EXIT_STOPPED] = T(STOPPED, act_stopped),
		[SE_UNHEALTHY] = T(STOPPING, svc_act_stop),
		[SE_STOP] = T(STOPPING, svc_act_stop),
		[SE_EXEC_FAIL] = T(FAILED, act_failed),
		[SE_EXIT_DONE] = T(EXITED, act_ended),
		[SE_EXIT_RESTART] = T(BACKOFF, act_backoff),
		[SE_EXIT_FAILED] = T(FAILED, act_failed),
		[SE_FORKED] = T(ADOPTING, svc_act_adopting),
		WANTS(act_want_up, act_want_now),
	},
	/* pidfile: no process until the daemon's pid is read (pidfile.c);
	 * failing to read it is a failed start, as an exit before ready is. */
	[SVC_ADOPTING] = {
		[SE_READY] = T(RUNNING, act_ready),
		[SE_ADOPTED] = T(STARTING, svc_act_adopted),
		[SE_STOP] = T(STOPPING, svc_act_stop_adopting),
		[SE_EXIT_RESTART] = T(BACKOFF, act_backoff),
		[SE_EXIT_FAILED] = T(FAILED, act_failed),
		WANTS(act_want_up, act_want_now),
	},
	[SVC_RUNNING] = {
		[SE_UNHEALTHY] = T(STOPPING, svc_act_stop),
		[SE_EXIT_STOPPED] = T(STOPPED, act_stopped),
		[SE_STOP] = T(STOPPING, svc_act_stop),
		[SE_EXIT_DONE] = T(EXITED, act_ended),
		[SE_EXIT_RESTART] = T(BACKOFF, act_backoff),
		[SE_EXIT_FAILED] = T(FAILED, act_failed),
		WANTS(act_want_up, act_want_now),
	},
	[SVC_STOPPING] = {
		[SE_STOP] = T(STOPPING, act_none),
		[SE_TIMEOUT] = T(STOPPING, act_kill),
		[SE_EXIT_STOPPED] = T(STOPPED, act_stopped),
		[SE_EXIT_RESTART] = T(BACKOFF, act_backoff),
		[SE_EXIT_FAILED] = T(FAILED, act_failed),
		WANTS(act_want_up, act_want_now),
	},
	[SVC_BACKOFF] = {
		[SE_START] = T(STARTING, svc_act_spawn),
		[SE_BLOCK] = T(WAITING, act_cancel),
		[SE_STOP] = T(STOPPED, act_cancel),
		[SE_DELAY_OVER] = KEEP(act_delay_over),
		WANTS(act_want_now, act_want_now),
	},
	[SVC_EXITED] = {
		[SE_START] = T(STARTING, svc_act_spawn),
		[SE_BLOCK] = T(WAITING, act_none),
		[SE_STOP] = T(EXITED, act_none),
		WANTS(act_want_fresh, act_want_fresh),
	},
	[SVC_FAILED] = {
		[SE_START] = T(STARTING, svc_act_spawn),
		[SE_BLOCK] = T(WAITING, act_cancel),
		[SE_STOP] = T(STOPPED, act_cancel),
		[SE_DELAY_OVER] = KEEP(act_trial_due),
		WANTS(act_want_fresh, act_want_fresh),
	},
};
_Static_assert(sizeof(table) / sizeof(table[0]) == SVC_NSTATES, "a row per state");
_Static_assert(sizeof(table[0]) / sizeof(table[0][0]) == SVC_NEVENTS, "a column per event");

static const char *const state_names[] = {
	"stopped", "waiting", "starting", "running", "stopping", "backoff", "exited", "failed",
	"starting",	/* ADOPTING: to users, one step of the start */
};
_Static_assert(ARRAY_LEN(state_names) == SVC_NSTATES, "a name per state");

static const char *const event_names[] = {
	"start", "block", "stop", "exec-fail", "ready", "unhealthy", "timeout",
	"exit-done", "exit-restart", "exit-failed", "exit-stopped", "delay-over",
	"forked", "adopted",
	"want-down", "want-up", "want-restart",
};
_Static_assert(ARRAY_LEN(event_names) == SVC_NEVENTS, "a name per event");

static const char *const want_names[] = {"down", "up", "restart"};

const char *svc_state_name(enum svc_state st)
{
	return (unsigned)st < SVC_NSTATES ? state_names[st] : "?";
}

const char *svc_event_name(enum svc_event ev)
{
	return (unsigned)ev < SVC_NEVENTS ? event_names[ev] : "?";
}

const char *svc_want_name(enum svc_want w)
{
	return (unsigned)w < ARRAY_LEN(want_names) ? want_names[w] : "?";
}

int svc_next_state(enum svc_state st, enum svc_event ev)
{
	if ((unsigned)st >= SVC_NSTATES || (unsigned)ev >= SVC_NEVENTS || !table[st][ev].allowed)
		return -1;
	return table[st][ev].keeps_state ? (int)st : (int)table[st][ev].next;
}

bool svc_live(const struct service *s)
{
	return s->pid > 0;
}

bool svc_restarting(const struct service *s)
{
	return s->want == WANT_RESTART && (s->state == SVC_STARTING || s->state == SVC_ADOPTING ||
					   s->state == SVC_RUNNING || s->state == SVC_STOPPING);
}

int64_t svc_next_start_in_ms(const struct service *s)
{
	if ((s->state != SVC_BACKOFF && s->state != SVC_FAILED) || !s->sup->loop || !ev_is_active(&s->timer))
		return -1;
	double left = ev_timer_remaining(s->sup->loop, (ev_timer *)&s->timer);
	return left > 0 ? (int64_t)(left * 1000.0 + 0.5) : 0;
}

void svc_followup(struct service *s, enum svc_event ev, const char *reason)
{
	char r[SVC_REASON_MAX];

	s->has_followup = true;
	s->followup_ev = ev;
	str_copy(r, sizeof(r), reason);
	str_set(&s->followup_reason, r);
}

static void emit(struct service *s, enum svc_state from, const char *reason)
{
	const struct supervise_hooks *h = &s->sup->hooks;

	/* A new reason in the same state (waiting on something else now) is
	 * news too, and reads the same way.  A failure is a warning (backoff:
	 * it will be tried again) or an error (failed: it will not, until the
	 * breaker's trial), so that `cohortd -q` still says it. */
	enum log_level level = s->state == SVC_FAILED ? LOG_ERROR : s->state == SVC_BACKOFF ? LOG_WARN : LOG_INFO;
	log_msg(level, s->name, "%s -> %s%s%s", svc_state_name(from), svc_state_name(s->state),
		*reason ? ": " : "", reason);
	if (h->state_changed)
		h->state_changed(h->arg, s, from, s->state, reason);
}

void svc_fire(struct service *s, enum svc_event ev, const char *reason)
{
	const struct transition *t = &table[s->state][ev];
	enum svc_state from = s->state;

	if (!t->allowed) {
		log_warn(s->name, "event %s is not expected in state %s (ignored%s%s)",
			 svc_event_name(ev), svc_state_name(s->state), *reason ? ": " : "", reason);
		return;
	}
	if (t->keeps_state) {
		t->act(s);
		return;
	}
	bool same = from == t->next && strcmp(svc_text(s->reason), reason) == 0;
	char r[SVC_REASON_MAX];
	stack_set_state(s->sup, s, t->next);
	str_copy(r, sizeof(r), reason);
	utf8_fix(r, strlen(r));	/* it goes out as JSON */
	str_set(&s->reason, r);
	if (from != s->state)
		s->since_ms = now_wall_ms();
	/* Said before it is done, so the log reads in order: the transition,
	 * then what its action did. */
	if (!same)
		emit(s, from, svc_text(s->reason));
	t->act(s);
	if (s->has_followup) {
		s->has_followup = false;
		str_copy(r, sizeof(r), svc_text(s->followup_reason));
		str_set(&s->followup_reason, NULL);
		svc_fire(s, s->followup_ev, r);
	}
	if (from != t->next)
		stack_changed(s->sup, s, from);
}

/* --- set-up -------------------------------------------------------------- */

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents);

struct service *svc_new(struct supervisor *sup, struct svc_config *cfg, struct cohort_config *owner,
			size_t index)
{
	size_t n = strlen(cfg->name) + 1;
	struct service *s = xcalloc(1, sizeof(*s) + n);

	s->sup = sup;
	memcpy(s->name, cfg->name, n);
	s->cfg = cfg;
	s->cfg_owner = config_ref(owner);
	s->index = index;
	s->state = SVC_STOPPED;
	s->want = WANT_DOWN;
	s->since_ms = now_wall_ms();
	ev_init(&s->timer, timer_cb);
	svc_open_outputs(s);
	return s;
}

void svc_stop_watchers(struct service *s)
{
	struct ev_loop *loop = s->sup->loop;

	ev_timer_stop(loop, &s->timer);
	svc_ready_timer_stop(s);
	svc_probe_timer_stop(s);
	if (s->probe)
		probe_cancel(s->probe);
	svc_exec_drop(s);
}

static ev_timer *timer_made(struct service *s, ev_timer **t, void (*cb)(struct ev_loop *, ev_timer *, int))
{
	if (!*t) {
		*t = xmalloc(sizeof(**t));
		ev_init(*t, cb);
		(*t)->data = s;
	}
	return *t;
}

ev_timer *svc_ready_timer(struct service *s)
{
	return timer_made(s, &s->ready_timer, svc_ready_timer_cb);
}

void svc_ready_timer_stop(struct service *s)
{
	if (!s->ready_timer)
		return;
	ev_timer_stop(s->sup->loop, s->ready_timer);
	free(s->ready_timer);
	s->ready_timer = NULL;
}

ev_timer *svc_probe_timer(struct service *s)
{
	return timer_made(s, &s->probe_timer, svc_probe_timer_cb);
}

void svc_probe_timer_stop(struct service *s)
{
	if (s->probe_timer)
		ev_timer_stop(s->sup->loop, s->probe_timer);
}

ev_io *svc_exec_watch(struct service *s, int fd, void (*cb)(struct ev_loop *, ev_io *, int))
{
	svc_exec_drop(s);
	s->exec_io = xmalloc(sizeof(*s->exec_io));
	ev_io_init(s->exec_io, cb, fd, EV_READ);
	s->exec_io->data = s;
	return s->exec_io;
}

void svc_exec_drop(struct service *s)
{
	ev_io *w = s->exec_io;

	if (!w)
		return;
	ev_clear_pending(s->sup->loop, w);	/* an exec status fed, not yet run */
	ev_io_stop(s->sup->loop, w);
	if (w->fd >= 0)
		close(w->fd);
	free(w);
	s->exec_io = NULL;
}

void svc_free(struct service *s)
{
	if (!s)
		return;
	svc_forget_token(s);
	svc_stop_watchers(s);
	free(s->probe_timer);
	svc_pidfile_free(s);
	if (s->probe)
		probe_reset(s->probe);
	free(s->probe);
	svc_notify_free(s);
	svc_close_outputs(s);
	breaker_free(&s->breaker);
	config_unref(s->cfg_owner);
	config_unref(s->next_owner);
	free(s->reason);
	free(s->exec_error);
	free(s->followup_reason);
	free(s->status_text);
	free(s->health);
	free(s);
}

void svc_free_outputs(struct service *s)
{
	svc_close_outputs(s);
}

struct probe *svc_probe(struct service *s)
{
	if (!s->probe) {
		s->probe = xmalloc(sizeof(*s->probe));
		probe_init(s->probe, s->sup->loop, svc_probe_done, svc_probe_spawn, s);
	}
	return s->probe;
}

bool svc_text_same(const char *a, const char *b)
{
	return (a && b) ? strcmp(a, b) == 0 : a == b;
}

void svc_set_config(struct service *s, struct svc_config *cfg, struct cohort_config *owner)
{
	struct svc_config *old = s->cfg;
	const struct svc_rare *old_rare = old->rare, *rare = cfg->rare;
	struct cohort_config *old_owner = s->cfg_owner;
	bool outputs_changed = old->out.kind != cfg->out.kind || old->err.kind != cfg->err.kind ||
			       (old->out.path && cfg->out.path && strcmp(old->out.path, cfg->out.path)) ||
			       (old->err.path && cfg->err.path && strcmp(old->err.path, cfg->err.path)) ||
			       old_rare->log_max_size != rare->log_max_size ||
			       old_rare->log_backups != rare->log_backups;
	bool probe_dropped = false;
	struct probe *p = s->probe;

	/* A probe under way goes on when its check is the same: killing it
	 * would lose its result, and reloads often enough would keep a
	 * failing health check from ever being seen.  A probe of a check
	 * that changed is dropped (it points into the old config). */
	if (!p) {
		/* never probed: nothing points into the old config */
	} else if (p->check == &old->ready && svc_text_same(old->ready.text, cfg->ready.text)) {
		p->check = &cfg->ready;
	} else if (p->check == &old_rare->health && svc_text_same(old_rare->health.text, rare->health.text)) {
		p->check = &rare->health;
	} else if (p->check == &old->ready || p->check == &old_rare->health) {
		probe_dropped = p->active;
		probe_reset(p);
	}
	s->cfg = cfg;
	s->cfg_owner = config_ref(owner);
	if (svc_live(s)) {
		svc_apply_live(s, old, probe_dropped);
	} else if (outputs_changed) {
		svc_close_outputs(s);
		svc_open_outputs(s);
	}
	config_unref(old_owner);	/* old may be gone from here on */
}

void svc_apply_next_config(struct service *s)
{
	if (!s->next_cfg || svc_live(s))
		return;
	svc_set_config(s, s->next_cfg, s->next_owner);
	config_unref(s->next_owner);
	s->next_cfg = NULL;
	s->next_owner = NULL;
	s->failures = 0;
	breaker_reset(&s->breaker);
	log_info(s->name, "new definition in effect");
}

pid_t svc_pgid(struct service *s)
{
	if (s->adopted && s->pid > 0) {
		pid_t g = getpgid(s->pid);
		if (g > 0)
			s->pgid = g > 1 && g != getpgrp() ? g : 0;
	}
	return s->pgid;
}

int svc_signal(struct service *s, int sig)
{
	if (!svc_live(s)) {
		errno = ESRCH;
		return -1;
	}
	pid_t g = svc_pgid(s);
	if (g > 0 && kill(-g, sig) == 0)
		return 0;
	/* No group by that id: the main process alone (it is never left
	 * unsignalled, whatever its group became). */
	return g > 0 && errno != ESRCH ? -1 : kill(s->pid, sig);
}

void svc_kill_now(struct service *s)
{
	if (svc_signal(s, SIGKILL) < 0 && errno != ESRCH)
		log_warn(s->name, "KILL to process group %d: %s", s->pgid, strerror(errno));
}

/* --- actions of the state changes --------------------------------------- */

static void act_none(struct service *s)
{
	(void)s;
}

static void act_ready(struct service *s)
{
	s->running_since = now_mono_ms();
	s->ever_ready = true;
	if (s->breaker_trial) {
		log_info(s->name, "breaker closed: the trial start is ready");
		breaker_reset(&s->breaker);
		s->failures = 0;
		s->breaker_trial = false;
	}
	svc_checks_ready(s);
}

void svc_act_stop(struct service *s)
{
	svc_ready_timer_stop(s);
	svc_probe_timer_stop(s);
	if (s->probe)
		probe_cancel(s->probe);
	if (s->stop_cause == STOP_NONE)
		s->stop_cause = STOP_WANTED;
	/* A failed check's stop overtakes a restart asked for and not begun
	 * (it waited for dependents): the exit is a failure, restarted after
	 * its backoff like any other. */
	if (s->stop_cause == STOP_FAILURE && s->want == WANT_RESTART)
		s->want = WANT_UP;
	if (svc_signal(s, s->cfg->stop_signal) < 0 && errno != ESRCH)
		log_warn(s->name, "sending SIG%s to process group %d: %s", signal_name(s->cfg->stop_signal),
			 s->pgid, strerror(errno));
	/* As systemd does: a stopped (SIGSTOP, TSTP) process keeps a caught
	 * stop signal pending until it runs again, and would wait out
	 * stop_timeout for the KILL.  CONT after the stop signal lets it act
	 * on it; to a process that runs, CONT does nothing. */
	if (s->cfg->stop_signal != SIGCONT && s->cfg->stop_signal != SIGKILL &&
	    svc_signal(s, SIGCONT) < 0 && errno != ESRCH)
		log_warn(s->name, "sending SIGCONT to process group %d: %s", s->pgid, strerror(errno));
	evtimer_start_ms(s->sup->loop, &s->timer, s->cfg->stop_timeout_ms);
}

static void act_kill(struct service *s)
{
	if (!svc_live(s) && s->cfg->rare->pidfile) {	/* its daemon's pid never came */
		svc_pidfile_stop_over(s);
		return;
	}
	log_warn(s->name, "still running %.1fs after SIG%s: sending KILL to process group %d",
		 (double)s->cfg->stop_timeout_ms / 1000.0, signal_name(s->cfg->stop_signal), s->pgid);
	svc_kill_now(s);
}

static void act_backoff(struct service *s)
{
	svc_stop_watchers(s);
	s->breaker_trial = false;
	/* No delay: the reconcile that follows this transition starts it in
	 * the same loop iteration. */
	s->delay_over = s->next_delay_ms <= 0;
	if (!s->delay_over)
		evtimer_start_ms(s->sup->loop, &s->timer, s->next_delay_ms);
}

static void act_failed(struct service *s)
{
	svc_stop_watchers(s);
	s->breaker_trial = false;
	/* restart = never: no trial either, it waits for a start command. */
	if (s->cfg->restart == RESTART_NEVER)
		return;
	evtimer_start_ms(s->sup->loop, &s->timer, s->cfg->breaker_cooldown_ms);
}

static void act_ended(struct service *s)
{
	svc_stop_watchers(s);
	s->breaker_trial = false;
}

static void act_stopped(struct service *s)
{
	svc_stop_watchers(s);
	s->stop_cause = STOP_NONE;
	s->breaker_trial = false;
	svc_apply_next_config(s);
}

static void act_cancel(struct service *s)
{
	svc_stop_watchers(s);
}

/* --- actions of the timers' news and of commands (the state stays) ------ */

static void act_delay_over(struct service *s)
{
	s->delay_over = true;
}

static void act_trial_due(struct service *s)
{
	s->breaker_trial = true;
}

static void act_want_down(struct service *s)
{
	s->want = WANT_DOWN;
}

/* Up: a restart already asked for stays asked for. */
static void act_want_up(struct service *s)
{
	if (s->want != WANT_RESTART)
		s->want = WANT_UP;
}

/* Asked for now: no delay waited out; a live process stops first. */
static void act_want_now(struct service *s)
{
	s->want = WANT_RESTART;
}

/* An explicit start of what ended or failed: a fresh breaker and backoff. */
static void act_want_fresh(struct service *s)
{
	s->want = WANT_RESTART;
	s->failures = 0;
	breaker_reset(&s->breaker);
	s->started_once = false;
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct service *s = container_of(w, struct service, timer);
	(void)loop;
	(void)revents;

	switch (s->state) {
	case SVC_STOPPING:
		svc_fire(s, SE_TIMEOUT, svc_text(s->reason));
		break;
	case SVC_FAILED:
	case SVC_BACKOFF:
		svc_fire(s, SE_DELAY_OVER, "");
		stack_queue(s->sup, s);
		stack_settle(s->sup);
		break;
	default:
		break;
	}
}
