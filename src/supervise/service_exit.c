/*
 * service_exit.c - what the end of a service's main process means.
 *
 * Whether an exit is "stopped as asked", "done", "restart after a delay"
 * or "failed" (the breaker open, or restart = never) is decided here,
 * before the transition table, so the table itself stays a plain map.
 * svc_classify_exit() reads and updates only the service's data (its
 * counters and breaker): the time and the jitter are given, so the unit
 * tests drive it without processes.
 */
#include "autoconfig.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>

#include "log.h"
#include "service_impl.h"

static void describe_exit(const struct exit_info *e, char *buf, size_t len)
{
	if (e->unknown)
		snprintf(buf, len, "ended (not cohortd's child: no exit status)");
	else if (e->signal)
		snprintf(buf, len, "killed by SIG%s", signal_name(e->signal));
	else
		snprintf(buf, len, "exited with code %d", e->code);
}

double svc_jitter(void)
{
	uint32_t r;

	if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != sizeof(r))
		r = (uint32_t)random();
	return (double)r / 2147483647.5 - 1.0;
}

enum svc_event svc_classify_exit(struct service *s, bool was_ready, int64_t now, double jitter,
				 char *reason, size_t len)
{
	const struct svc_config *c = s->cfg;
	/* A failure's own reason (a health check's, with what its probe said)
	 * whole, with room left in reason for what follows it ("; restart in
	 * ...", the breaker's words).  It was cut at 60 characters. */
	char what[SVC_REASON_MAX - 80], dur[32];

	describe_exit(&s->last_exit, what, sizeof(what));
	if (s->want == WANT_DOWN && s->sup->shutting_down) {
		snprintf(reason, len, "stopped (%s)", what);
		return SE_EXIT_STOPPED;
	}
	if (s->state == SVC_STOPPING && s->stop_cause != STOP_FAILURE) {
		char buf[SVC_REASON_MAX + sizeof(what) + 8];
		snprintf(buf, sizeof(buf), "%s (%s)",
			 s->stop_cause == STOP_DEPENDENCY ? svc_text(s->reason) : "stopped", what);
		str_copy(reason, len, buf);
		return SE_EXIT_STOPPED;
	}
	/* A service meant to keep running that ends before it was ready did
	 * not start: a failure, even with a success code (for on-failure and
	 * never, that is a one-shot job done). */
	bool failure = s->stop_cause == STOP_FAILURE || s->last_exit.signal || s->last_exit.unknown ||
		       !exit_is_success(c, s->last_exit.code) ||
		       (!was_ready && c->restart == RESTART_ALWAYS);
	if (s->stop_cause == STOP_FAILURE)
		str_copy(what, sizeof(what), svc_text(s->reason));
	else if (failure && !s->last_exit.signal && exit_is_success(c, s->last_exit.code))
		strcat(what, " before it was ready");
	if (!failure) {
		if (c->restart != RESTART_ALWAYS) {
			snprintf(reason, len, "%s", what);
			return SE_EXIT_DONE;
		}
		s->next_delay_ms = backoff_delay_ms(c, 1, jitter);
		format_delay_ms(s->next_delay_ms, dur, sizeof(dur));
		snprintf(reason, len, "%s; restart in %s", what, dur);
		return SE_EXIT_RESTART;
	}
	/* Long enough up: earlier failures no longer count. */
	if (s->running_since && now - s->running_since >= c->backoff_reset_ms) {
		s->failures = 0;
		breaker_reset(&s->breaker);
	}
	return svc_failure_event(s, what, now, jitter, reason, len);
}

enum svc_event svc_failure_event(struct service *s, const char *what, int64_t now, double jitter,
				 char *reason, size_t len)
{
	const struct svc_config *c = s->cfg;
	char dur[32];

	s->failures++;
	if (c->restart == RESTART_NEVER) {
		snprintf(reason, len, "%s (restart = never)", what);
		return SE_EXIT_FAILED;
	}
	bool open = breaker_record(&s->breaker, c, now);
	if (open || s->breaker_trial) {
		format_duration_ms(c->breaker_cooldown_ms, dur, sizeof(dur));
		if (s->breaker_trial)
			snprintf(reason, len, "trial start failed (%s); breaker open again, next trial in %s",
				 what, dur);
		else
			snprintf(reason, len, "breaker open: %llu failures within %llds (last: %s); next trial in %s",
				 (unsigned long long)c->breaker_failures,
				 (long long)(c->breaker_window_ms / 1000), what, dur);
		return SE_EXIT_FAILED;
	}
	s->next_delay_ms = backoff_delay_ms(c, s->failures, jitter);
	format_delay_ms(s->next_delay_ms, dur, sizeof(dur));
	snprintf(reason, len, "%s; restart in %s (failure %u)", what, dur, s->failures);
	return SE_EXIT_RESTART;
}

/* pidfile: the started process ended with 0, which for a program that
 * forks is its start done.  Its group is left as it is: the daemon may
 * still be in it.  True when that is what this exit was. */
static bool fork_done(struct service *s, const struct exit_info *e)
{
	char reason[256];

	if (!s->cfg->rare->pidfile || s->adopted || s->state != SVC_STARTING || e->signal || e->code != 0)
		return false;
	s->pid = 0;
	s->sup->nlive--;
	s->paused_by = 0;
	if (svc_read_exec_status(s, reason, sizeof(reason)) == 1)
		return false;	/* cannot be: a failed exec exits 127 */
	snprintf(reason, sizeof(reason), "the started process exited 0; reading %s", s->cfg->rare->pidfile);
	svc_fire(s, SE_FORKED, reason);
	return true;
}

void svc_main_exited(struct service *s, int status)
{
	struct exit_info e = {
		.valid = true,
		.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1,
		.signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0,
	};

	svc_main_ended(s, &e);
}

void svc_main_ended(struct service *s, const struct exit_info *e)
{
	const struct supervise_hooks *h = &s->sup->hooks;
	char reason[256];
	pid_t pgid = svc_pgid(s);	/* (an adopted zombie still says) */
	bool started = s->cfg->rare->pidfile && !s->adopted;	/* what it ran, not its daemon */

	s->last_exit = *e;
	if (fork_done(s, e))
		return;
	/* Whatever the main process left in its group goes with it, so a
	 * restart never meets last run's children holding its port. */
	if (pgid > 0 && kill(-pgid, SIGKILL) == 0)
		log_debug(s->name, "killed what was left of process group %d", pgid);
	s->pid = 0;
	s->pgid = 0;
	s->adopted = false;
	svc_pidfd_close(s);
	s->sup->nlive--;
	s->paused_by = 0;
	/* A restart asked for that had not begun its stop: the process ended
	 * by itself, and is restarted as any end of it is. */
	if (s->want == WANT_RESTART && (s->state == SVC_STARTING || s->state == SVC_RUNNING))
		s->want = WANT_UP;
	svc_forget_token(s);
	if (h->process_ended)	/* a crash never holds a lock */
		h->process_ended(h->arg, s);

	int exec_rc = svc_read_exec_status(s, reason, sizeof(reason));
	if (exec_rc == 1)
		str_set(&s->exec_error, reason);
	/* ready = delay:0 means ready once exec'd, even if the exit got here
	 * before the exec's own news did (not with pidfile: the daemon's pid
	 * is what gets ready). */
	bool was_ready = s->state != SVC_STARTING ||
			 (exec_rc == 0 && !started && s->cfg->ready.kind == CHECK_DELAY &&
			  s->cfg->ready.delay_ms == 0);
	if (s->exec_error && s->state == SVC_STARTING) {
		svc_start_failed(s, s->exec_error, s->exec_errno, true);
		return;
	}
	enum svc_event ev = svc_classify_exit(s, was_ready, now_mono_ms(), svc_jitter(), reason,
					      sizeof(reason));
	svc_fire(s, ev, reason);
}

void svc_main_paused(struct service *s, int sig)
{
	if (sig == s->paused_by)
		return;
	if (sig)
		log_info(s->name, "paused: pid %d stopped by SIG%s", s->pid, signal_name(sig));
	else
		log_info(s->name, "continued: pid %d runs again", s->pid);
	s->paused_by = sig;
}
