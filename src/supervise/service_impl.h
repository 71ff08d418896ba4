/*
 * service_impl.h - what the service files (service.c, service_spawn.c,
 * service_check.c, service_exit.c) share and nothing else uses: the
 * actions the transition table calls, and helpers between them.
 */
#ifndef COHORT_SERVICE_IMPL_H
#define COHORT_SERVICE_IMPL_H

#include "supervise.h"

/* service.c */
/* An action may ask for one more event once its own transition is done
 * (a spawn that failed before fork, a delay of 0). */
void svc_followup(struct service *s, enum svc_event ev, const char *reason);
/* Stops the timers, a probe under way and the exec-status watcher. */
void svc_stop_watchers(struct service *s);
/* A definition a reload changed takes effect once no process runs the
 * old one. */
void svc_apply_next_config(struct service *s);
/* s's probe, made at its first use. */
struct probe *svc_probe(struct service *s);
/* Two texts of a config (either may be NULL) are the same. */
bool svc_text_same(const char *a, const char *b);
/* The stop signal to the main process's group, KILL after stop_timeout. */
void svc_act_stop(struct service *s);

/* service_spawn.c */
void svc_act_spawn(struct service *s);
int svc_open_outputs(struct service *s);
void svc_close_outputs(struct service *s);
/* The token of the last start stops naming the service on the bus. */
void svc_forget_token(struct service *s);
/* Closes the service's own notify socket, if it has one, and frees it. */
void svc_notify_free(struct service *s);
/* A probe's process (probe.c's spawn callback). */
pid_t svc_probe_spawn(struct probe *p, char *err, size_t errlen);
/* 1: the exec failed (reason filled); 0: it succeeded; -1: not known yet. */
int svc_read_exec_status(struct service *s, char *reason, size_t len);
/* A start that failed before the program ran (NOW: fire at once, else
 * after the action under way). */
void svc_start_failed(struct service *s, const char *why, int err, bool now);

/* service_check.c */
void svc_begin_readiness(struct service *s);
void svc_start_health(struct service *s);
/* A reload changed what cohortd does around the running process. */
void svc_apply_live(struct service *s, const struct svc_config *old, bool probe_dropped);
void svc_ready_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);
void svc_probe_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);

/* service.c: the watchers made when needed.  svc_*_timer() makes it (not
 * started); a stop of one never made does nothing; the ready timer and the
 * exec watcher are freed when stopped, the probe timer kept. */
ev_timer *svc_ready_timer(struct service *s);
void svc_ready_timer_stop(struct service *s);
ev_timer *svc_probe_timer(struct service *s);
void svc_probe_timer_stop(struct service *s);
/* The exec-status watcher of a spawn's status pipe fd. */
ev_io *svc_exec_watch(struct service *s, int fd, void (*cb)(struct ev_loop *, ev_io *, int));
/* Stops and frees it, closing its pipe if still open. */
void svc_exec_drop(struct service *s);
/* Its pipe is still open: the exec's news has not been read. */
static inline bool svc_exec_pending(const struct service *s)
{
	return s->exec_io && s->exec_io->fd >= 0;
}
void svc_probe_done(struct probe *p, bool ok, const char *why);
/* The checks' share of the ready action: timers off, health on. */
void svc_checks_ready(struct service *s);

/* service_exit.c */
/* One more failure (what): restart after the backoff, or, with the
 * breaker open or restart = never, failed. */
enum svc_event svc_failure_event(struct service *s, const char *what, int64_t now, double jitter,
				 char *reason, size_t len);
/* A random number in [-1, 1] for the backoff's jitter. */
double svc_jitter(void);

/* pidfile.c */
/* Removes a PID file of an earlier run before a start; -1 and why. */
int svc_pidfile_clear(struct service *s, char *err, size_t len);
/* SE_FORKED: the started process exited 0: read the file now, and
 * again until ready_timeout. */
void svc_act_adopting(struct service *s);
/* SE_ADOPTED: the ready probe judges the adopted process. */
void svc_act_adopted(struct service *s);
/* SE_STOP while the file is awaited: it is looked for until stop_timeout
 * (svc_pidfile_stop_look), a pid found is stopped, else SE_TIMEOUT ends
 * the stop (svc_pidfile_stop_over). */
void svc_act_stop_adopting(struct service *s);
void svc_pidfile_stop_look(struct service *s);
void svc_pidfile_stop_over(struct service *s);
/* The probe timer in ADOPTING: look again. */
void svc_pidfile_retry(struct service *s);
/* ready_timeout in ADOPTING: a failed start, unless the file came. */
void svc_pidfile_timeout(struct service *s);
/* Stops watching an adopted process that is not our child. */
void svc_pidfd_close(struct service *s);
/* The same, and frees the watchers (svc_free). */
void svc_pidfile_free(struct service *s);

#endif
