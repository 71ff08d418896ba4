/*
 * service_check.c - is the service up, and does it stay healthy: the
 * readiness check of a start (delay, a probe repeated, or READY=1 on a
 * notify socket) bounded by ready_timeout, then the health check every
 * health_interval.  What they find becomes SE_READY or SE_UNHEALTHY.
 */
#include "autoconfig.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "evtimer.h"
#include "log.h"
#include "service_impl.h"

#define PROBE_EVERY_MS 100	/* readiness probes repeat this often */
#define READY_ATTEMPT_MAX_MS 2000	/* one readiness attempt may take this long */

/* A start under way is judged by the new ready check from now on; a delay
 * counts from the spawn, as if it had been the check all along. */
static void restart_readiness(struct service *s)
{
	const struct check *r = &s->cfg->ready;
	int64_t at = 0;

	svc_probe_timer_stop(s);
	if (svc_exec_pending(s) || r->kind == CHECK_NOTIFY || (s->cfg->rare->pidfile && !s->adopted))
		return;	/* the exec's news (or the adoption) begins readiness; READY=1 needs no timer */
	if (r->kind == CHECK_DELAY)
		at = r->delay_ms - (now_mono_ms() - s->spawned_at);
	evtimer_start_ms(s->sup->loop, svc_probe_timer(s), at > 0 ? at : 0);
}

/* A reload changed only what cohortd does around the running process:
 * the new values take over now.  (Backoff, breaker, restart policy, stop
 * settings and health_retries are read when they are needed.) */
void svc_apply_live(struct service *s, const struct svc_config *old, bool probe_dropped)
{
	const struct svc_config *c = s->cfg;
	const struct svc_rare *was = old->rare, *r = c->rare;
	bool health_changed = !svc_text_same(was->health.text, r->health.text);

	if (was->log_max_size != r->log_max_size || was->log_backups != r->log_backups) {
		if (s->out)
			logfile_sink_limits(s->out->sink, r->log_max_size, (unsigned)r->log_backups);
		if (s->err)
			logfile_sink_limits(s->err->sink, r->log_max_size, (unsigned)r->log_backups);
	}
	if (s->state == SVC_STARTING) {
		if (!svc_text_same(old->ready.text, c->ready.text))
			restart_readiness(s);
		if (old->ready_timeout_ms != c->ready_timeout_ms) {
			int64_t left = c->ready_timeout_ms - (now_mono_ms() - s->spawned_at);
			svc_ready_timer_stop(s);
			evtimer_start_ms(s->sup->loop, svc_ready_timer(s), left > 0 ? left : 0);
		}
	} else if (s->state == SVC_RUNNING) {
		if (health_changed) {	/* earlier failures were of another check */
			s->health_failures = 0;
			str_set(&s->health, r->health.kind != CHECK_NONE ? "ok" : NULL);
		}
		/* The next probe at the new interval from now; one under way
		 * (same check) schedules the next itself when it ends. */
		if ((health_changed || probe_dropped || was->health_interval_ms != r->health_interval_ms) &&
		    !(s->probe && s->probe->active)) {
			svc_probe_timer_stop(s);
			svc_start_health(s);
		}
	}
}

/* --- readiness and health ------------------------------------------------- */

void svc_begin_readiness(struct service *s)
{
	const struct check *r = &s->cfg->ready;

	/* pidfile: what gets ready is the daemon, once adopted (pidfile.c). */
	if (s->cfg->rare->pidfile && !s->adopted)
		return;

	switch (r->kind) {
	case CHECK_DELAY:
		if (r->delay_ms == 0) {
			svc_fire(s, SE_READY, "started (ready = delay:0)");
			return;
		}
		evtimer_start_ms(s->sup->loop, svc_probe_timer(s), r->delay_ms);
		break;
	case CHECK_NOTIFY:
		break;	/* READY=1 will come through the notify socket */
	default:
		probe_start(svc_probe(s), r, READY_ATTEMPT_MAX_MS);
		break;
	}
}

void svc_start_health(struct service *s)
{
	if (s->cfg->rare->health.kind == CHECK_NONE)
		return;
	evtimer_start_ms(s->sup->loop, svc_probe_timer(s), s->cfg->rare->health_interval_ms);
}

void svc_probe_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct service *s = w->data;
	(void)loop;
	(void)revents;

	if (s->state == SVC_ADOPTING) {
		svc_pidfile_retry(s);
	} else if (s->state == SVC_STOPPING && !svc_live(s)) {
		svc_pidfile_stop_look(s);	/* stopped before its pid was read */
	} else if (s->state == SVC_STARTING) {
		if (s->cfg->ready.kind == CHECK_DELAY) {
			char r[80];
			char dur[32];
			format_duration_ms(s->cfg->ready.delay_ms, dur, sizeof(dur));
			snprintf(r, sizeof(r), "still up after %s", dur);
			svc_fire(s, SE_READY, r);
		} else {
			probe_start(svc_probe(s), &s->cfg->ready, READY_ATTEMPT_MAX_MS);
		}
	} else if (s->state == SVC_RUNNING) {
		probe_start(svc_probe(s), &s->cfg->rare->health, s->cfg->rare->health_timeout_ms);
	}
}

void svc_probe_done(struct probe *p, bool ok, const char *why)
{
	struct service *s = p->owner;
	char r[256], h[SVC_HEALTH_MAX];

	if (s->state == SVC_STARTING) {
		if (ok) {
			snprintf(r, sizeof(r), "ready: %s %s", s->cfg->ready.text, why);
			svc_fire(s, SE_READY, r);
			return;
		}
		snprintf(h, sizeof(h), "not ready: %s", why);
		str_set(&s->health, h);
		/* Next attempt 100 ms after this one began, or at once if it took longer. */
		double next = PROBE_EVERY_MS / 1000.0;
		ev_timer_set(svc_probe_timer(s), next, 0);
		ev_timer_start(s->sup->loop, s->probe_timer);
		return;
	}
	if (s->state != SVC_RUNNING)
		return;
	if (ok) {
		if (s->health_failures)
			log_info(s->name, "health check passes again: %s", why);
		else
			log_debug(s->name, "health ok: %s", why);
		s->health_failures = 0;
		str_set(&s->health, "ok");
	} else {
		s->health_failures++;
		snprintf(h, sizeof(h), "failing %u/%llu: %s", s->health_failures,
			 (unsigned long long)s->cfg->rare->health_retries, why);
		str_set(&s->health, h);
		log_warn(s->name, "health check failed (%u of %llu): %s", s->health_failures,
			 (unsigned long long)s->cfg->rare->health_retries, why);
		if (s->health_failures >= s->cfg->rare->health_retries) {
			snprintf(r, sizeof(r), "health check failed %u times: %s", s->health_failures, why);
			s->stop_cause = STOP_FAILURE;
			svc_fire(s, SE_UNHEALTHY, r);
			return;
		}
	}
	svc_start_health(s);
}

void svc_ready_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct service *s = w->data;
	char r[256], dur[32];
	(void)loop;
	(void)revents;

	if (s->state == SVC_ADOPTING) {
		svc_pidfile_timeout(s);
		return;
	}
	if (s->state != SVC_STARTING)
		return;
	format_duration_ms(s->cfg->ready_timeout_ms, dur, sizeof(dur));
	snprintf(r, sizeof(r), "not ready within %s%s%s", dur, s->health ? " (" : "", svc_text(s->health));
	if (s->health)
		strncat(r, ")", sizeof(r) - strlen(r) - 1);
	s->stop_cause = STOP_FAILURE;
	svc_fire(s, SE_UNHEALTHY, r);
}

void svc_notify(struct service *s, const char *msg)
{
	size_t len;
	const char *v;

	if ((v = notify_field(msg, "STATUS", &len))) {
		char text[SVC_STATUS_MAX];
		if (len >= sizeof(text))
			len = sizeof(text) - 1;
		memcpy(text, v, len);
		text[len] = '\0';
		utf8_fix(text, len);	/* it goes out as JSON */
		str_set(&s->status_text, text);
		log_debug(s->name, "status: %s", text);
	}
	if ((v = notify_field(msg, "READY", &len)) && len == 1 && *v == '1') {
		if (s->state != SVC_STARTING || s->cfg->ready.kind != CHECK_NOTIFY) {
			log_debug(s->name, "READY=1 ignored in state %s", svc_state_name(s->state));
			return;
		}
		/* READY=1 proves the exec worked, even if its EOF is still queued. */
		svc_exec_drop(s);
		svc_fire(s, SE_READY, s->status_text ? s->status_text : "sent READY=1");
	}
}

void svc_checks_ready(struct service *s)
{
	svc_ready_timer_stop(s);
	svc_probe_timer_stop(s);
	if (s->probe)
		probe_cancel(s->probe);
	str_set(&s->health, s->cfg->rare->health.kind != CHECK_NONE ? "ok" : NULL);
	svc_start_health(s);
}
