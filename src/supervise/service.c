/*
 * service.c - one service's life: the transition table (state x event ->
 * action, next state), the actions, and turning what happens to the
 * process (exec result, readiness, exit status) into events.
 *
 * Every input becomes an event fed through svc_fire(); an event the table
 * does not allow in the current state is logged and dropped, never acted
 * on.  Whether an exit means "restart", "done" or "breaker open" is decided
 * before the table (classify_exit), so the table itself stays a plain map.
 * What the service should be doing (want_up) is set by commands and the
 * stack; stack.c turns the difference into START / BLOCK / STOP events.
 */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon.h"
#include "evtimer.h"
#include "log.h"
#include "spawn.h"

#define PROBE_EVERY_MS 100	/* readiness probes repeat this often */
#define READY_ATTEMPT_MAX_MS 2000	/* one readiness attempt may take this long */

typedef void (*action_fn)(struct service *s);

static void act_none(struct service *s);
static void act_spawn(struct service *s);
static void apply_next_config(struct service *s);
static void forget_token(struct service *s);
static void act_ready(struct service *s);
static void act_stop(struct service *s);
static void act_kill(struct service *s);
static void act_backoff(struct service *s);
static void act_failed(struct service *s);
static void act_ended(struct service *s);
static void act_stopped(struct service *s);
static void act_cancel(struct service *s);

struct transition {
	bool allowed;
	enum svc_state next;
	action_fn act;
};

#define T(next, act) {true, SVC_##next, act}

/* Every transition there is.  An empty cell is an event the state does not
 * expect: it is logged and ignored. */
static const struct transition table[SVC_NSTATES][SVC_NEVENTS] = {
	[SVC_STOPPED] = {
		[SE_START] = T(STARTING, act_spawn),
		[SE_BLOCK] = T(WAITING, act_none),
		[SE_STOP] = T(STOPPED, act_none),
	},
	[SVC_WAITING] = {
		[SE_START] = T(STARTING, act_spawn),
		[SE_BLOCK] = T(WAITING, act_none),
		[SE_STOP] = T(STOPPED, act_none),
	},
	[SVC_STARTING] = {
		[SE_READY] = T(RUNNING, act_ready),
		[SE_EXIT_STOPPED] = T(STOPPED, act_stopped),
		[SE_UNHEALTHY] = T(STOPPING, act_stop),
		[SE_STOP] = T(STOPPING, act_stop),
		[SE_EXEC_FAIL] = T(FAILED, act_failed),
		[SE_EXIT_DONE] = T(EXITED, act_ended),
		[SE_EXIT_RESTART] = T(BACKOFF, act_backoff),
		[SE_EXIT_FAILED] = T(FAILED, act_failed),
	},
	[SVC_RUNNING] = {
		[SE_UNHEALTHY] = T(STOPPING, act_stop),
		[SE_EXIT_STOPPED] = T(STOPPED, act_stopped),
		[SE_STOP] = T(STOPPING, act_stop),
		[SE_EXIT_DONE] = T(EXITED, act_ended),
		[SE_EXIT_RESTART] = T(BACKOFF, act_backoff),
		[SE_EXIT_FAILED] = T(FAILED, act_failed),
	},
	[SVC_STOPPING] = {
		[SE_STOP] = T(STOPPING, act_none),
		[SE_TIMEOUT] = T(STOPPING, act_kill),
		[SE_EXIT_STOPPED] = T(STOPPED, act_stopped),
		[SE_EXIT_RESTART] = T(BACKOFF, act_backoff),
		[SE_EXIT_FAILED] = T(FAILED, act_failed),
	},
	[SVC_BACKOFF] = {
		[SE_START] = T(STARTING, act_spawn),
		[SE_BLOCK] = T(WAITING, act_cancel),
		[SE_STOP] = T(STOPPED, act_cancel),
	},
	[SVC_EXITED] = {
		[SE_START] = T(STARTING, act_spawn),
		[SE_BLOCK] = T(WAITING, act_none),
		[SE_STOP] = T(EXITED, act_none),
	},
	[SVC_FAILED] = {
		[SE_START] = T(STARTING, act_spawn),
		[SE_BLOCK] = T(WAITING, act_cancel),
		[SE_STOP] = T(STOPPED, act_cancel),
	},
};
_Static_assert(sizeof(table) / sizeof(table[0]) == SVC_NSTATES, "a row per state");
_Static_assert(sizeof(table[0]) / sizeof(table[0][0]) == SVC_NEVENTS, "a column per event");

static const char *const state_names[] = {
	"stopped", "waiting", "starting", "running", "stopping", "backoff", "exited", "failed",
};
_Static_assert(ARRAY_LEN(state_names) == SVC_NSTATES, "a name per state");

static const char *const event_names[] = {
	"start", "block", "stop", "exec-fail", "ready", "unhealthy", "timeout",
	"exit-done", "exit-restart", "exit-failed", "exit-stopped",
};
_Static_assert(ARRAY_LEN(event_names) == SVC_NEVENTS, "a name per event");

const char *svc_state_name(enum svc_state st)
{
	return (unsigned)st < SVC_NSTATES ? state_names[st] : "?";
}

const char *svc_event_name(enum svc_event ev)
{
	return (unsigned)ev < SVC_NEVENTS ? event_names[ev] : "?";
}

bool svc_live(const struct service *s)
{
	return s->pid > 0;
}

/* An action may ask for one more event once its own transition is done
 * (a spawn that failed before fork, a delay of 0). */
static void followup(struct service *s, enum svc_event ev, const char *reason)
{
	s->has_followup = true;
	s->followup_ev = ev;
	str_copy(s->followup_reason, sizeof(s->followup_reason), reason);
}

static void emit(struct service *s, enum svc_state from, const char *reason)
{
	struct cohortd *d = s->d;

	/* A new reason in the same state (waiting on something else now) is
	 * news too, and reads the same way. */
	log_info(s->name, "%s -> %s%s%s", svc_state_name(from), svc_state_name(s->state),
		 *reason ? ": " : "", reason);
	d->events_seq++;
	for (struct event_sub *e = d->event_subs, *next; e; e = next) {
		next = e->next;
		e->fn(d, s, from, s->state, reason, e->arg);
	}
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
	bool same = from == t->next && strcmp(s->reason, reason) == 0;
	s->state = t->next;
	str_copy(s->reason, sizeof(s->reason), reason);
	utf8_fix(s->reason, strlen(s->reason));	/* it goes out as JSON */
	if (from != s->state)
		s->since_ms = now_wall_ms();
	/* Said before it is done, so the log reads in order: the transition,
	 * then what its action did. */
	if (!same)
		emit(s, from, s->reason);
	t->act(s);
	if (s->has_followup) {
		char r[256];
		s->has_followup = false;
		str_copy(r, sizeof(r), s->followup_reason);
		svc_fire(s, s->followup_ev, r);
	}
	if (from != t->next)
		stack_changed(s->d, s, from);
}

/* --- set-up -------------------------------------------------------------- */

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void start_health(struct service *s);
static void ready_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void probe_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void probe_done(struct probe *p, bool ok, const char *why);
static pid_t probe_spawn(struct probe *p, char *err, size_t errlen);

static void output_lines(struct outpipe *p, const char *lines, size_t len)
{
	struct service *s = p->owner;

	if (!LIST_EMPTY(&s->d->ctl.clients))
		ctl_log_lines(&s->d->ctl, s, lines, len);
}

static int open_outputs(struct service *s)
{
	struct cohortd *d = s->d;
	const struct svc_config *c = s->cfg;
	char *path = NULL;

	if (c->out.kind == OUT_LOG || c->out.kind == OUT_PATH) {
		path = c->out.kind == OUT_LOG ? xasprintf("%s/%s.log", d->log_dir, s->name)
					      : xstrdup(c->out.path);
		struct logsink *sink = logw_sink(d->logw, path, c->log_max_size, (unsigned)c->log_backups);
		if (outpipe_open(&s->out, d->loop, sink) < 0) {
			logw_sink_put(sink);
			goto fail;
		}
		s->out.on_lines = output_lines;
		s->out.owner = s;
		s->out_open = true;
	}
	bool err_separate = c->err.kind == OUT_PATH ||
			    (c->err.kind == OUT_LOG && c->out.kind != OUT_LOG);
	if (err_separate) {
		char *epath = c->err.kind == OUT_LOG ? xasprintf("%s/%s.log", d->log_dir, s->name)
						     : xstrdup(c->err.path);
		bool same = path && strcmp(path, epath) == 0;
		if (!same) {
			struct logsink *sink = logw_sink(d->logw, epath, c->log_max_size,
							 (unsigned)c->log_backups);
			if (outpipe_open(&s->err, d->loop, sink) < 0) {
				logw_sink_put(sink);
				free(epath);
				goto fail;
			}
			s->err.on_lines = output_lines;
			s->err.owner = s;
			s->err_open = true;
		}
		free(epath);
	}
	free(path);
	return 0;
fail:
	log_error(s->name, "cannot make an output pipe: %s", strerror(errno));
	free(path);
	return -1;
}

static void close_outputs(struct service *s)
{
	if (s->out_open)
		outpipe_close(&s->out, s->d->loop);
	if (s->err_open)
		outpipe_close(&s->err, s->d->loop);
	s->out_open = s->err_open = false;
}

void svc_free_outputs(struct service *s)
{
	close_outputs(s);
}

struct service *svc_new(struct cohortd *d, struct svc_config *cfg, struct cohort_config *owner,
			size_t index)
{
	struct service *s = xcalloc(1, sizeof(*s));

	s->d = d;
	s->name = xstrdup(cfg->name);
	s->cfg = cfg;
	s->cfg_owner = config_ref(owner);
	s->index = index;
	s->state = SVC_STOPPED;
	s->since_ms = now_wall_ms();
	s->out.wfd = s->err.wfd = -1;
	ev_init(&s->timer, timer_cb);
	ev_init(&s->ready_timer, ready_timer_cb);
	ev_init(&s->probe_timer, probe_timer_cb);
	ev_io_init(&s->exec_io, NULL, -1, EV_READ);
	probe_init(&s->probe, d->loop, probe_done, probe_spawn);
	open_outputs(s);
	return s;
}

static void stop_watchers(struct service *s)
{
	struct ev_loop *loop = s->d->loop;

	ev_timer_stop(loop, &s->timer);
	ev_timer_stop(loop, &s->ready_timer);
	ev_timer_stop(loop, &s->probe_timer);
	probe_cancel(&s->probe);
	if (ev_is_active(&s->exec_io) || s->exec_io.fd >= 0) {
		ev_io_stop(loop, &s->exec_io);
		if (s->exec_io.fd >= 0)
			close(s->exec_io.fd);
		ev_io_set(&s->exec_io, -1, EV_READ);
	}
}

void svc_free(struct service *s)
{
	if (!s)
		return;
	forget_token(s);
	stop_watchers(s);
	probe_reset(&s->probe);
	notify_close(&s->notify, s->d->loop);
	close_outputs(s);
	breaker_free(&s->breaker);
	config_unref(s->cfg_owner);
	config_unref(s->next_owner);
	free(s->name);
	free(s);
}

static bool text_same(const char *a, const char *b)
{
	return (a && b) ? strcmp(a, b) == 0 : a == b;
}

/* A start under way is judged by the new ready check from now on; a delay
 * counts from the spawn, as if it had been the check all along. */
static void restart_readiness(struct service *s)
{
	const struct check *r = &s->cfg->ready;
	int64_t at = 0;

	ev_timer_stop(s->d->loop, &s->probe_timer);
	if (s->exec_io.fd >= 0 || r->kind == CHECK_NOTIFY)
		return;	/* the exec's news begins readiness; READY=1 needs no timer */
	if (r->kind == CHECK_DELAY)
		at = r->delay_ms - (now_mono_ms() - s->spawned_at);
	evtimer_start_ms(s->d->loop, &s->probe_timer, at > 0 ? at : 0);
}

/* A reload changed only what cohortd does around the running process:
 * the new values take over now.  (Backoff, breaker, restart policy, stop
 * settings and health_retries are read when they are needed.) */
static void apply_live(struct service *s, const struct svc_config *old, bool probe_dropped)
{
	const struct svc_config *c = s->cfg;
	bool health_changed = !text_same(old->health.text, c->health.text);

	if (old->log_max_size != c->log_max_size || old->log_backups != c->log_backups) {
		if (s->out_open)
			logw_sink_limits(s->out.sink, c->log_max_size, (unsigned)c->log_backups);
		if (s->err_open)
			logw_sink_limits(s->err.sink, c->log_max_size, (unsigned)c->log_backups);
	}
	if (s->state == SVC_STARTING) {
		if (!text_same(old->ready.text, c->ready.text))
			restart_readiness(s);
		if (old->ready_timeout_ms != c->ready_timeout_ms) {
			int64_t left = c->ready_timeout_ms - (now_mono_ms() - s->spawned_at);
			ev_timer_stop(s->d->loop, &s->ready_timer);
			evtimer_start_ms(s->d->loop, &s->ready_timer, left > 0 ? left : 0);
		}
	} else if (s->state == SVC_RUNNING) {
		if (health_changed) {	/* earlier failures were of another check */
			s->health_failures = 0;
			snprintf(s->health, sizeof(s->health), "%s", c->health.kind != CHECK_NONE ? "ok" : "");
		}
		/* The next probe at the new interval from now; one under way
		 * (same check) schedules the next itself when it ends. */
		if ((health_changed || probe_dropped || old->health_interval_ms != c->health_interval_ms) &&
		    !s->probe.active) {
			ev_timer_stop(s->d->loop, &s->probe_timer);
			start_health(s);
		}
	}
}

void svc_set_config(struct service *s, struct svc_config *cfg, struct cohort_config *owner)
{
	struct svc_config *old = s->cfg;
	struct cohort_config *old_owner = s->cfg_owner;
	bool outputs_changed = old->out.kind != cfg->out.kind || old->err.kind != cfg->err.kind ||
			       (old->out.path && cfg->out.path && strcmp(old->out.path, cfg->out.path)) ||
			       (old->err.path && cfg->err.path && strcmp(old->err.path, cfg->err.path)) ||
			       old->log_max_size != cfg->log_max_size || old->log_backups != cfg->log_backups;
	bool probe_dropped = false;

	/* A probe under way goes on when its check is the same: killing it
	 * would lose its result, and reloads often enough would keep a
	 * failing health check from ever being seen.  A probe of a check
	 * that changed is dropped (it points into the old config). */
	if (s->probe.check == &old->ready && text_same(old->ready.text, cfg->ready.text)) {
		s->probe.check = &cfg->ready;
	} else if (s->probe.check == &old->health && text_same(old->health.text, cfg->health.text)) {
		s->probe.check = &cfg->health;
	} else if (s->probe.check == &old->ready || s->probe.check == &old->health) {
		probe_dropped = s->probe.active;
		probe_reset(&s->probe);
	}
	s->cfg = cfg;
	s->cfg_owner = config_ref(owner);
	if (svc_live(s)) {
		apply_live(s, old, probe_dropped);
	} else if (outputs_changed) {
		close_outputs(s);
		open_outputs(s);
	}
	config_unref(old_owner);	/* old may be gone from here on */
}

/* --- spawning ------------------------------------------------------------- */

/* Sets item ("NAME=VALUE") in env, replacing an earlier NAME. */
static void env_set(struct strv *env, struct map *at, struct strv *names, const char *item)
{
	const char *eq = strchr(item, '=');

	if (!eq)
		return;
	char *name = xstrndup(item, (size_t)(eq - item));
	uintptr_t pos = (uintptr_t)map_get(at, name);
	if (pos) {
		free(env->v[pos - 1]);
		env->v[pos - 1] = xstrdup(item);
		free(name);
		return;
	}
	strv_push(env, item);
	strv_push_owned(names, name);	/* the map borrows its keys */
	map_put(at, name, (void *)(uintptr_t)env->n);
}

/* cohortd's environment, then the user's HOME/USER/LOGNAME, then the
 * service's environment, then ours: a later NAME replaces an earlier one. */
static void build_env(struct service *s, const struct spawn_ids *ids, struct strv *env)
{
	extern char **environ;
	struct cohortd *d = s->d;
	struct map at = {0};
	struct strv names = {0};
	char *item;

	*env = (struct strv){0};
	for (char **e = environ; e && *e; e++)
		env_set(env, &at, &names, *e);
	if (ids) {
		const char *fmt[] = {"HOME=%s", "USER=%s", "LOGNAME=%s"};
		for (size_t i = 0; i < ARRAY_LEN(fmt); i++) {
			item = xasprintf(fmt[i], i == 0 ? ids->home : ids->name);
			env_set(env, &at, &names, item);
			free(item);
		}
	}
	for (size_t i = 0; i < s->cfg->environment.n; i++)
		env_set(env, &at, &names, s->cfg->environment.v[i]);
	char *ours[] = {
		xasprintf("COHORT_SERVICE=%s", s->name),
		xasprintf("COHORT_SOCKET=%s", d->control_path),
		xasprintf("COHORT_BUS=unix:%s", d->bus_path),
		xasprintf("COHORT_TOKEN=%s", s->token),
		s->notify.path ? xasprintf("NOTIFY_SOCKET=%s", s->notify.path)
		: d->notify.path ? xasprintf("NOTIFY_SOCKET=%s", d->notify.path) : NULL,
	};
	for (size_t i = 0; i < ARRAY_LEN(ours); i++) {
		if (ours[i])
			env_set(env, &at, &names, ours[i]);
		free(ours[i]);
	}
	map_free(&at);
	strv_free(&names);
}

static const char *env_path(const struct strv *env)
{
	for (size_t i = 0; i < env->n; i++)
		if (str_starts(env->v[i], "PATH="))
			return env->v[i] + 5;
	return NULL;
}

/* The token of the last start stops naming the service on the bus. */
static void forget_token(struct service *s)
{
	if (s->token[0] && map_get(&s->d->tokens, s->token) == s)
		map_del(&s->d->tokens, s->token);
	s->token[0] = '\0';
}

static void new_token(char out[33])
{
	unsigned char raw[16];

	/* Never block the loop, even as PID 1 early in boot before the pool
	 * is ready: then take what the kernel has (GRND_INSECURE). */
	if (getrandom(raw, sizeof(raw), GRND_NONBLOCK) != (ssize_t)sizeof(raw)) {
#ifdef GRND_INSECURE
		if (getrandom(raw, sizeof(raw), GRND_INSECURE) != (ssize_t)sizeof(raw))
#endif
			for (size_t i = 0; i < sizeof(raw); i++)
				raw[i] = (unsigned char)(random() >> 7);
	}
	for (size_t i = 0; i < sizeof(raw); i++)
		snprintf(out + 2 * i, 3, "%02x", raw[i]);
}

/* Fills sp for running argv in the service's world. */
/*
 * A message on the service's own socket is its when the sender is its
 * process or in its process group, as on the shared socket; or, when the
 * sender is gone already (a helper that sent READY=1 and exited at once,
 * systemd-notify in a script), when it ran as the service's user or root.
 */
static void own_notify_cb(struct notify *n, pid_t pid, uid_t uid, char *msg)
{
	struct service *s = container_of(n, struct service, notify);

	if (!svc_live(s))
		return;
	pid_t pgid = getpgid(pid);
	bool gone = pgid < 0 && errno == ESRCH;
	if (pid != s->pid && pgid != s->pid && !(gone && (uid == s->notify_uid || uid == 0))) {
		log_debug(s->name, "notify message from pid %d (uid %u), which is not its: ignored", pid,
			  (unsigned)uid);
		return;
	}
	svc_notify(s, msg);
	stack_settle(s->d);
}

/*
 * With ready = notify, a socket of the service's own: a message there
 * names the service even when its sender has exited before it is read,
 * which on the shared socket (where the sender's pid names the service)
 * loses it.
 */
static void own_notify_socket(struct service *s, const struct spawn_ids *ids)
{
	char err[300];

	if (s->cfg->ready.kind != CHECK_NOTIFY) {
		notify_close(&s->notify, s->d->loop);	/* a reload changed ready */
		return;
	}
	s->notify_uid = ids ? ids->uid : geteuid();
	if (!s->notify.path && !s->notify_failed) {
		char *path = xasprintf("%s/notify.%s.sock", s->d->run_dir, s->name);
		if (notify_open(&s->notify, s->d->loop, path, 0666, own_notify_cb, err, sizeof(err)) < 0) {
			/* Out of descriptors: the next start tries again. */
			s->notify_failed = !spawn_transient(errno);
			log_warn(s->name, "no notify socket of its own (%s): it uses the shared one", err);
		}
		free(path);
	}
	notify_drain(&s->notify);	/* nothing of an earlier run counts for this one */
}

/* own: the service's own process (else a probe's). */
static int prepare(struct service *s, bool own, char *const *argv, struct spawn_spec *sp,
		   struct spawn_ids *ids, struct strv *env, char *err, size_t errlen)
{
	const struct svc_config *c = s->cfg;
	bool use_ids = false;

	if (c->user && geteuid() == 0) {
		if (spawn_resolve_ids(c->user, c->group, ids, err, errlen) < 0)
			return -1;
		use_ids = true;
	} else if (c->user) {
		log_debug(s->name, "user = %s ignored: cohortd is not root", c->user);
	}
	if (own)
		own_notify_socket(s, use_ids ? ids : NULL);
	build_env(s, use_ids ? ids : NULL, env);
	*sp = (struct spawn_spec){
		.argv = argv,
		.envp = env->v,
		.dir = c->directory,
		.fd_in = s->d->devnull,
		.fd_out = 1,
		.fd_err = 2,
		.ids = use_ids ? ids : NULL,
		.path = env_path(env),
		.set_umask = c->umask >= 0,
		.umask = (mode_t)(c->umask >= 0 ? c->umask : 0),
	};
	return 0;
}

static void exec_status_cb(struct ev_loop *loop, ev_io *w, int revents);
static void begin_readiness(struct service *s);

/* "cannot start: WHY; next trial in 2m" */
static void exec_fail_reason(const struct service *s, const char *why, char *buf, size_t len)
{
	char dur[32];

	format_duration_ms(s->cfg->breaker_cooldown_ms, dur, sizeof(dur));
	snprintf(buf, len, "cannot start: %s%s%s", why,
		 s->cfg->restart == RESTART_NEVER ? "" : "; next trial in ",
		 s->cfg->restart == RESTART_NEVER ? "" : dur);
}

static enum svc_event failure_event(struct service *s, const char *what, char *reason, size_t len);

/*
 * A start that failed before the program ran.  A missing program, user or
 * directory will not come back by itself: failed, one trial after
 * breaker_cooldown.  A shortage that passes (no descriptors, processes or
 * memory left, say while something floods cohortd with connections) is a
 * failure like a crash: restarted with backoff, the breaker counting it.
 * NOW: fire the event (else it follows the action under way).
 */
static void start_failed(struct service *s, const char *why, int err, bool now)
{
	char msg[320];
	enum svc_event ev = SE_EXEC_FAIL;

	if (spawn_transient(err)) {
		char what[300];
		snprintf(what, sizeof(what), "cannot start: %s", why);
		ev = failure_event(s, what, msg, sizeof(msg));
	} else {
		s->failures++;
		exec_fail_reason(s, why, msg, sizeof(msg));
	}
	if (now)
		svc_fire(s, ev, msg);
	else
		followup(s, ev, msg);
}

static void act_spawn(struct service *s)
{
	const struct svc_config *c;
	struct spawn_spec sp;
	struct spawn_ids ids = {0};
	struct strv env = {0};
	char err[256];
	pid_t pid;
	int status_fd;

	stop_watchers(s);
	apply_next_config(s);	/* e.g. changed while it was failing */
	c = s->cfg;
	if (!s->out_open && !s->err_open)
		open_outputs(s);	/* they could not be made (no descriptors left) */
	if (s->started_once)
		s->restarts++;
	s->started_once = true;
	s->half_open = s->trial_due;
	s->trial_due = false;
	s->kick = false;
	s->stop_cause = STOP_NONE;
	s->health_failures = 0;
	s->health[0] = '\0';
	s->status_text[0] = '\0';
	s->exec_error[0] = '\0';
	s->exec_errno = 0;
	forget_token(s);
	new_token(s->token);
	map_put(&s->d->tokens, s->token, s);	/* the bus knows this start by it */
	if (prepare(s, true, c->argv.v, &sp, &ids, &env, err, sizeof(err)) < 0) {
		start_failed(s, err, errno, false);
		return;
	}
	sp.fd_out = c->out.kind == OUT_INHERIT ? 1 : c->out.kind == OUT_NULL ? s->d->devnull
		    : s->out_open ? s->out.wfd : s->d->devnull;
	switch (c->err.kind) {
	case OUT_STDOUT:
		sp.fd_err = sp.fd_out;
		break;
	case OUT_INHERIT:
		sp.fd_err = 2;
		break;
	case OUT_NULL:
		sp.fd_err = s->d->devnull;
		break;
	default:
		sp.fd_err = s->err_open ? s->err.wfd : s->out_open ? s->out.wfd : s->d->devnull;
		break;
	}
	int rc = spawn_start(&sp, &pid, &status_fd, err, sizeof(err));
	int saved = errno;
	strv_free(&env);
	spawn_ids_free(&ids);
	if (rc < 0) {
		start_failed(s, err, saved, false);
		return;
	}
	s->pid = pid;
	s->spawned_at = now_mono_ms();
	s->running_since = 0;
	daemon_track_child(s->d, pid, CHILD_MAIN, s);
	instance_record(s->d);	/* a cohortd after a crash of ours finds it */
	ev_io_init(&s->exec_io, exec_status_cb, status_fd, EV_READ);
	ev_io_start(s->d->loop, &s->exec_io);
	evtimer_start_ms(s->d->loop, &s->ready_timer, c->ready_timeout_ms);
	log_debug(s->name, "spawned pid %d: %s", pid, c->command);
}

/* Minimal spec to turn an exec-status message into words. */
static void status_spec(const struct service *s, struct spawn_spec *sp)
{
	*sp = (struct spawn_spec){.argv = s->cfg->argv.v, .dir = s->cfg->directory};
}

/* 1: the exec failed (reason filled); 0: it succeeded; -1: not known yet. */
static int read_exec_status(struct service *s, char *reason, size_t len)
{
	struct spawn_spec sp;

	if (s->exec_io.fd < 0)
		return 0;
	status_spec(s, &sp);
	int rc = spawn_read_status(s->exec_io.fd, &sp, reason, len, &s->exec_errno);
	if (rc >= 0) {
		ev_io_stop(s->d->loop, &s->exec_io);
		close(s->exec_io.fd);
		ev_io_set(&s->exec_io, -1, EV_READ);
	}
	return rc;
}

static void exec_status_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct service *s = container_of(w, struct service, exec_io);
	char reason[256];
	(void)loop;
	(void)revents;

	int rc = read_exec_status(s, reason, sizeof(reason));
	if (rc == 1) {
		/* The child exits 127 right after; its exit reports the failure. */
		str_copy(s->exec_error, sizeof(s->exec_error), reason);
		return;
	}
	if (rc == 0 && s->state == SVC_STARTING)
		begin_readiness(s);
}

/* --- readiness and health ------------------------------------------------- */

static void begin_readiness(struct service *s)
{
	const struct check *r = &s->cfg->ready;

	switch (r->kind) {
	case CHECK_DELAY:
		if (r->delay_ms == 0) {
			svc_fire(s, SE_READY, "started (ready = delay:0)");
			return;
		}
		evtimer_start_ms(s->d->loop, &s->probe_timer, r->delay_ms);
		break;
	case CHECK_NOTIFY:
		break;	/* READY=1 will come through the notify socket */
	default:
		probe_start(&s->probe, r, READY_ATTEMPT_MAX_MS);
		break;
	}
}

static void start_health(struct service *s)
{
	if (s->cfg->health.kind == CHECK_NONE)
		return;
	evtimer_start_ms(s->d->loop, &s->probe_timer, s->cfg->health_interval_ms);
}

static void probe_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct service *s = container_of(w, struct service, probe_timer);
	(void)loop;
	(void)revents;

	if (s->state == SVC_STARTING) {
		if (s->cfg->ready.kind == CHECK_DELAY) {
			char r[80];
			char dur[32];
			format_duration_ms(s->cfg->ready.delay_ms, dur, sizeof(dur));
			snprintf(r, sizeof(r), "still up after %s", dur);
			svc_fire(s, SE_READY, r);
		} else {
			probe_start(&s->probe, &s->cfg->ready, READY_ATTEMPT_MAX_MS);
		}
	} else if (s->state == SVC_RUNNING) {
		probe_start(&s->probe, &s->cfg->health, s->cfg->health_timeout_ms);
	}
}

static void probe_done(struct probe *p, bool ok, const char *why)
{
	struct service *s = container_of(p, struct service, probe);
	char r[256];

	if (s->state == SVC_STARTING) {
		if (ok) {
			snprintf(r, sizeof(r), "ready: %s %s", s->cfg->ready.text, why);
			svc_fire(s, SE_READY, r);
			return;
		}
		snprintf(s->health, sizeof(s->health), "not ready: %s", why);
		/* Next attempt 100 ms after this one began, or at once if it took longer. */
		double next = PROBE_EVERY_MS / 1000.0;
		ev_timer_set(&s->probe_timer, next, 0);
		ev_timer_start(s->d->loop, &s->probe_timer);
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
		snprintf(s->health, sizeof(s->health), "ok");
	} else {
		s->health_failures++;
		snprintf(s->health, sizeof(s->health), "failing %u/%llu: %s", s->health_failures,
			 (unsigned long long)s->cfg->health_retries, why);
		log_warn(s->name, "health check failed (%u of %llu): %s", s->health_failures,
			 (unsigned long long)s->cfg->health_retries, why);
		if (s->health_failures >= s->cfg->health_retries) {
			snprintf(r, sizeof(r), "health check failed %u times: %s", s->health_failures, why);
			s->stop_cause = STOP_FAILURE;
			svc_fire(s, SE_UNHEALTHY, r);
			return;
		}
	}
	start_health(s);
}

static pid_t probe_spawn(struct probe *p, char *err, size_t errlen)
{
	struct service *s = container_of(p, struct service, probe);
	struct spawn_spec sp;
	struct spawn_ids ids = {0};
	struct strv env = {0};
	pid_t pid;
	int status_fd;

	if (prepare(s, false, p->check->argv.v, &sp, &ids, &env, err, errlen) < 0)
		return -1;
	sp.fd_out = sp.fd_err = s->d->devnull;
	int rc = spawn_start(&sp, &pid, &status_fd, err, errlen);
	strv_free(&env);
	spawn_ids_free(&ids);
	if (rc < 0)
		return -1;
	close(status_fd);	/* an exec failure shows as exit 127 */
	daemon_track_child(s->d, pid, CHILD_PROBE, s);
	return pid;
}

static void ready_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct service *s = container_of(w, struct service, ready_timer);
	char r[256], dur[32];
	(void)loop;
	(void)revents;

	if (s->state != SVC_STARTING)
		return;
	format_duration_ms(s->cfg->ready_timeout_ms, dur, sizeof(dur));
	snprintf(r, sizeof(r), "not ready within %s%s%s", dur, s->health[0] ? " (" : "",
		 s->health[0] ? s->health : "");
	if (s->health[0])
		strncat(r, ")", sizeof(r) - strlen(r) - 1);
	s->stop_cause = STOP_FAILURE;
	svc_fire(s, SE_UNHEALTHY, r);
}

void svc_notify(struct service *s, const char *msg)
{
	size_t len;
	const char *v;

	if ((v = notify_field(msg, "STATUS", &len))) {
		if (len >= sizeof(s->status_text))
			len = sizeof(s->status_text) - 1;
		memcpy(s->status_text, v, len);
		s->status_text[len] = '\0';
		utf8_fix(s->status_text, len);	/* it goes out as JSON */
		log_debug(s->name, "status: %s", s->status_text);
	}
	if ((v = notify_field(msg, "READY", &len)) && len == 1 && *v == '1') {
		if (s->state != SVC_STARTING || s->cfg->ready.kind != CHECK_NOTIFY) {
			log_debug(s->name, "READY=1 ignored in state %s", svc_state_name(s->state));
			return;
		}
		/* READY=1 proves the exec worked, even if its EOF is still queued. */
		if (s->exec_io.fd >= 0) {
			ev_io_stop(s->d->loop, &s->exec_io);
			close(s->exec_io.fd);
			ev_io_set(&s->exec_io, -1, EV_READ);
		}
		svc_fire(s, SE_READY, s->status_text[0] ? s->status_text : "sent READY=1");
	}
}

/* --- actions -------------------------------------------------------------- */

static void act_none(struct service *s)
{
	(void)s;
}

static void act_ready(struct service *s)
{
	ev_timer_stop(s->d->loop, &s->ready_timer);
	ev_timer_stop(s->d->loop, &s->probe_timer);
	probe_cancel(&s->probe);
	s->running_since = now_mono_ms();
	if (s->half_open) {
		log_info(s->name, "breaker closed: the trial start is ready");
		breaker_reset(&s->breaker);
		s->failures = 0;
		s->half_open = false;
	}
	s->health[0] = '\0';
	if (s->cfg->health.kind != CHECK_NONE)
		snprintf(s->health, sizeof(s->health), "ok");
	start_health(s);
}

int svc_signal(struct service *s, int sig)
{
	if (!svc_live(s)) {
		errno = ESRCH;
		return -1;
	}
	return kill(-s->pid, sig);
}

static void act_stop(struct service *s)
{
	ev_timer_stop(s->d->loop, &s->ready_timer);
	ev_timer_stop(s->d->loop, &s->probe_timer);
	probe_cancel(&s->probe);
	if (s->stop_cause == STOP_NONE)
		s->stop_cause = STOP_WANTED;
	if (svc_signal(s, s->cfg->stop_signal) < 0 && errno != ESRCH)
		log_warn(s->name, "sending SIG%s to process group %d: %s", signal_name(s->cfg->stop_signal),
			 s->pid, strerror(errno));
	/* As systemd does: a stopped (SIGSTOP, TSTP) process keeps a caught
	 * stop signal pending until it runs again, and would wait out
	 * stop_timeout for the KILL.  CONT after the stop signal lets it act
	 * on it; to a process that runs, CONT does nothing. */
	if (s->cfg->stop_signal != SIGCONT && s->cfg->stop_signal != SIGKILL &&
	    svc_signal(s, SIGCONT) < 0 && errno != ESRCH)
		log_warn(s->name, "sending SIGCONT to process group %d: %s", s->pid, strerror(errno));
	evtimer_start_ms(s->d->loop, &s->timer, s->cfg->stop_timeout_ms);
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

static void act_kill(struct service *s)
{
	log_warn(s->name, "still running %.1fs after SIG%s: sending KILL to process group %d",
		 (double)s->cfg->stop_timeout_ms / 1000.0, signal_name(s->cfg->stop_signal), s->pid);
	svc_kill_now(s);
}

void svc_kill_now(struct service *s)
{
	if (svc_live(s) && kill(-s->pid, SIGKILL) < 0 && errno != ESRCH)
		log_warn(s->name, "KILL to process group %d: %s", s->pid, strerror(errno));
}

static void act_backoff(struct service *s)
{
	stop_watchers(s);
	/* No delay: the reconcile that follows this transition starts it in
	 * the same loop iteration. */
	if (s->next_delay_ms <= 0)
		return;
	evtimer_start_ms(s->d->loop, &s->timer, s->next_delay_ms);
}

static void act_failed(struct service *s)
{
	stop_watchers(s);
	s->half_open = false;
	/* restart = never: no trial either, it waits for a start command. */
	if (s->cfg->restart == RESTART_NEVER)
		return;
	evtimer_start_ms(s->d->loop, &s->timer, s->cfg->breaker_cooldown_ms);
}

static void act_ended(struct service *s)
{
	stop_watchers(s);
}

/* A definition a reload changed takes effect once no process runs the
 * old one. */
static void apply_next_config(struct service *s)
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

static void act_stopped(struct service *s)
{
	stop_watchers(s);
	s->stop_cause = STOP_NONE;
	s->restarting = false;
	apply_next_config(s);
}

static void act_cancel(struct service *s)
{
	stop_watchers(s);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct service *s = container_of(w, struct service, timer);
	(void)loop;
	(void)revents;

	switch (s->state) {
	case SVC_STOPPING:
		svc_fire(s, SE_TIMEOUT, s->reason);
		break;
	case SVC_FAILED:
		s->trial_due = true;
		stack_dirty(s->d, s);
		stack_settle(s->d);
		break;
	case SVC_BACKOFF:
		stack_dirty(s->d, s);
		stack_settle(s->d);
		break;
	default:
		break;
	}
}

/* --- exits ------------------------------------------------------------------ */

static void describe_exit(const struct exit_info *e, char *buf, size_t len)
{
	if (e->signal)
		snprintf(buf, len, "killed by SIG%s", signal_name(e->signal));
	else
		snprintf(buf, len, "exited with code %d", e->code);
}

static double jitter_rnd(void)
{
	uint32_t r;

	if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != sizeof(r))
		r = (uint32_t)random();
	return (double)r / 2147483647.5 - 1.0;
}

/* Decides what an exit means: the event, its reason, and the delay. */
static enum svc_event classify_exit(struct service *s, bool was_ready, char *reason, size_t len)
{
	const struct svc_config *c = s->cfg;
	char what[64], dur[32];
	int64_t now = now_mono_ms();

	describe_exit(&s->last_exit, what, sizeof(what));
	if (!s->want_up && s->d->shutting_down) {
		snprintf(reason, len, "stopped (%s)", what);
		return SE_EXIT_STOPPED;
	}
	if (s->state == SVC_STOPPING && s->stop_cause != STOP_FAILURE) {
		char buf[sizeof(s->reason) + sizeof(what) + 8];
		snprintf(buf, sizeof(buf), "%s (%s)", s->stop_cause == STOP_DEPENDENCY ? s->reason : "stopped",
			 what);
		str_copy(reason, len, buf);
		return SE_EXIT_STOPPED;
	}
	/* A service meant to keep running that ends before it was ready did
	 * not start: a failure, even with a success code (for on-failure and
	 * never, that is a one-shot job done). */
	bool failure = s->stop_cause == STOP_FAILURE || s->last_exit.signal ||
		       !exit_is_success(c, s->last_exit.code) ||
		       (!was_ready && c->restart == RESTART_ALWAYS);
	if (s->stop_cause == STOP_FAILURE)
		str_copy(what, 61, s->reason);
	else if (failure && !s->last_exit.signal && exit_is_success(c, s->last_exit.code))
		strcat(what, " before it was ready");
	if (!failure) {
		if (c->restart != RESTART_ALWAYS) {
			snprintf(reason, len, "%s", what);
			return SE_EXIT_DONE;
		}
		s->next_delay_ms = backoff_delay_ms(c, 1, jitter_rnd());
		format_duration_ms(s->next_delay_ms, dur, sizeof(dur));
		snprintf(reason, len, "%s; restart in %s", what, dur);
		return SE_EXIT_RESTART;
	}
	/* Long enough up: earlier failures no longer count. */
	if (s->running_since && now - s->running_since >= c->backoff_reset_ms) {
		s->failures = 0;
		breaker_reset(&s->breaker);
	}
	return failure_event(s, what, reason, len);
}

/* One more failure (WHAT): restart after the backoff, or, with the
 * breaker open or restart = never, failed. */
static enum svc_event failure_event(struct service *s, const char *what, char *reason, size_t len)
{
	const struct svc_config *c = s->cfg;
	char dur[32];
	int64_t now = now_mono_ms();

	s->failures++;
	if (c->restart == RESTART_NEVER) {
		snprintf(reason, len, "%s (restart = never)", what);
		return SE_EXIT_FAILED;
	}
	bool open = breaker_record(&s->breaker, c, now);
	if (open || s->half_open) {
		format_duration_ms(c->breaker_cooldown_ms, dur, sizeof(dur));
		if (s->half_open)
			snprintf(reason, len, "trial start failed (%s); breaker open again, next trial in %s",
				 what, dur);
		else
			snprintf(reason, len, "breaker open: %llu failures within %llds (last: %s); next trial in %s",
				 (unsigned long long)c->breaker_failures,
				 (long long)(c->breaker_window_ms / 1000), what, dur);
		return SE_EXIT_FAILED;
	}
	s->next_delay_ms = backoff_delay_ms(c, s->failures, jitter_rnd());
	format_duration_ms(s->next_delay_ms, dur, sizeof(dur));
	snprintf(reason, len, "%s; restart in %s (failure %u)", what, dur, s->failures);
	return SE_EXIT_RESTART;
}

void svc_main_exited(struct service *s, int status)
{
	char reason[256];
	pid_t pgid = s->pid;

	s->last_exit = (struct exit_info){
		.valid = true,
		.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1,
		.signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0,
	};
	/* Whatever the main process left in its group goes with it, so a
	 * restart never meets last run's children holding its port. */
	if (pgid > 0 && kill(-pgid, SIGKILL) == 0)
		log_debug(s->name, "killed what was left of process group %d", pgid);
	s->pid = 0;
	instance_record(s->d);
	s->paused_by = 0;
	s->restarting = false;	/* the stop half of a restart is done, however */
	forget_token(s);
	/* A crash never holds a lock. */
	lock_drop_service(&s->d->locks, s, false);

	int exec_rc = read_exec_status(s, reason, sizeof(reason));
	if (exec_rc == 1)
		str_copy(s->exec_error, sizeof(s->exec_error), reason);
	/* ready = delay:0 means ready once exec'd, even if the exit got here
	 * before the exec's own news did. */
	bool was_ready = s->state != SVC_STARTING ||
			 (exec_rc == 0 && s->cfg->ready.kind == CHECK_DELAY && s->cfg->ready.delay_ms == 0);
	if (s->exec_error[0] && s->state == SVC_STARTING) {
		start_failed(s, s->exec_error, s->exec_errno, true);
		return;
	}
	enum svc_event ev = classify_exit(s, was_ready, reason, sizeof(reason));
	svc_fire(s, ev, reason);
}
