/*
 * service_spawn.c - starting a service's process, and a probe's: its
 * output pipes, its environment (with the COHORT_* variables and a fresh
 * COHORT_TOKEN), its own notify socket, the spawn itself and the news of
 * its exec.  A start that fails before the program runs is an event too.
 */
#include "autoconfig.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "envfile.h"
#include "evtimer.h"
#include "log.h"
#include "service_impl.h"
#include "spawn.h"

/* A service's own notify socket (ready = notify), apart from struct
 * service: most services have none (see its notify). */
struct svc_notify {
	struct notify sock;
	struct service *svc;
	uid_t uid;		/* the user it runs as */
	bool failed;		/* the socket could not be made: the shared one */
};

/* Output for `log --follow`, to whoever hooked in. */
static void output_lines(struct outpipe *p, const char *lines, size_t len)
{
	struct service *s = p->owner;
	const struct supervise_hooks *h = &s->sup->hooks;

	if (h->output)
		h->output(h->arg, s, lines, len);
}

/* A pipe into sink (taken), or NULL with errno. */
static struct outpipe *open_pipe(struct service *s, struct logsink *sink)
{
	struct outpipe *p = xcalloc(1, sizeof(*p));

	if (outpipe_open(p, s->sup->loop, sink) < 0) {
		int e = errno;
		logfile_sink_put(sink);
		free(p);
		errno = e;
		return NULL;
	}
	p->on_lines = output_lines;
	p->owner = s;
	return p;
}

int svc_open_outputs(struct service *s)
{
	struct supervisor *sup = s->sup;
	const struct svc_config *c = s->cfg;
	char *path = NULL;

	if (c->out.kind == OUT_LOG || c->out.kind == OUT_PATH) {
		path = c->out.kind == OUT_LOG ? xasprintf("%s/%s.log", sup->log_dir, s->name)
					      : xstrdup(c->out.path);
		struct logsink *sink = logfile_sink(sup->log_writer, path, c->rare->log_max_size,
						 (unsigned)c->rare->log_backups);
		if (!(s->out = open_pipe(s, sink)))
			goto fail;
	}
	bool err_separate = c->err.kind == OUT_PATH ||
			    (c->err.kind == OUT_LOG && c->out.kind != OUT_LOG);
	if (err_separate) {
		char *epath = c->err.kind == OUT_LOG ? xasprintf("%s/%s.log", sup->log_dir, s->name)
						     : xstrdup(c->err.path);
		bool same = path && strcmp(path, epath) == 0;
		if (!same) {
			struct logsink *sink = logfile_sink(sup->log_writer, epath, c->rare->log_max_size,
							 (unsigned)c->rare->log_backups);
			if (!(s->err = open_pipe(s, sink))) {
				free(epath);
				goto fail;
			}
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

void svc_close_outputs(struct service *s)
{
	if (s->out)
		outpipe_close(s->out, s->sup->loop);
	if (s->err)
		outpipe_close(s->err, s->sup->loop);
	free(s->out);
	free(s->err);
	s->out = s->err = NULL;
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
 * service's environment, then its environment_file (from_files), then
 * ours: a later NAME replaces an earlier one. */
static void build_env(struct service *s, const struct spawn_ids *ids, const struct strv *from_files,
		      struct strv *env)
{
	extern char **environ;
	struct supervisor *sup = s->sup;
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
	for (size_t i = 0; i < from_files->n; i++)
		env_set(env, &at, &names, from_files->v[i]);
	char *ours[] = {
		xasprintf("COHORT_SERVICE=%s", s->name),
		xasprintf("COHORT_SOCKET=%s", sup->control_path),
		xasprintf("COHORT_BUS=unix:%s", sup->bus_path),
		xasprintf("COHORT_TOKEN=%s", s->token),
		s->notify && s->notify->sock.path ? xasprintf("NOTIFY_SOCKET=%s", s->notify->sock.path)
		: sup->notify_path ? xasprintf("NOTIFY_SOCKET=%s", sup->notify_path) : NULL,
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
void svc_forget_token(struct service *s)
{
	if (s->token[0] && map_get(&s->sup->tokens, s->token) == s)
		map_del(&s->sup->tokens, s->token);
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

/*
 * A message on the service's own socket is its when the sender is its
 * process or in its process group, as on the shared socket; or, when the
 * sender is gone already (a helper that sent READY=1 and exited at once,
 * systemd-notify in a script), when it ran as the service's user or root.
 */
static void own_notify_cb(struct notify *n, pid_t pid, uid_t uid, char *msg)
{
	struct svc_notify *sn = container_of(n, struct svc_notify, sock);
	struct service *s = sn->svc;

	if (!svc_live(s))
		return;
	pid_t pgid = getpgid(pid);
	bool gone = pgid < 0 && errno == ESRCH;
	if (pid != s->pid && pgid != s->pid && !(gone && (uid == sn->uid || uid == 0))) {
		log_debug(s->name, "notify message from pid %d (uid %u), which is not its: ignored", pid,
			  (unsigned)uid);
		return;
	}
	svc_notify(s, msg);
	stack_settle(s->sup);
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
		if (s->notify)
			notify_close(&s->notify->sock, s->sup->loop);	/* a reload changed ready */
		return;
	}
	if (!s->notify) {
		s->notify = xcalloc(1, sizeof(*s->notify));
		s->notify->svc = s;
	}
	struct svc_notify *sn = s->notify;
	sn->uid = ids ? ids->uid : geteuid();
	if (!sn->sock.path && !sn->failed) {
		char *path = xasprintf("%s/notify.%s.sock", s->sup->run_dir, s->name);
		if (notify_open(&sn->sock, s->sup->loop, path, 0666, own_notify_cb, err, sizeof(err)) < 0) {
			/* Out of descriptors: the next start tries again. */
			sn->failed = !spawn_transient(errno);
			log_warn(s->name, "no notify socket of its own (%s): it uses the shared one", err);
		}
		free(path);
	}
	notify_drain(&sn->sock);	/* nothing of an earlier run counts for this one */
}

void svc_notify_free(struct service *s)
{
	if (!s->notify)
		return;
	notify_close(&s->notify->sock, s->sup->loop);
	free(s->notify);
	s->notify = NULL;
}

/* Fills sp for running argv in the service's world.  own: the service's
 * own process (else a probe's). */
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
	struct strv from_files = {0};
	if (envfile_load(&c->rare->environment_file, &from_files, err, errlen) < 0) {
		int e = errno;
		strv_free(&from_files);
		if (use_ids)
			spawn_ids_free(ids);
		errno = e;
		return -1;
	}
	if (own)
		own_notify_socket(s, use_ids ? ids : NULL);
	build_env(s, use_ids ? ids : NULL, &from_files, env);
	strv_free(&from_files);
	*sp = (struct spawn_spec){
		.argv = argv,
		.envp = env->v,
		.dir = c->directory,
		.fd_in = s->sup->devnull,
		.fd_out = 1,
		.fd_err = 2,
		.ids = use_ids ? ids : NULL,
		.path = env_path(env),
		.set_umask = c->umask >= 0,
		.umask = (mode_t)(c->umask >= 0 ? c->umask : 0),
	};
	if (own)
		spawn_limits_from(&sp->limits, c);
	return 0;
}

static void exec_status_cb(struct ev_loop *loop, ev_io *w, int revents);
static void exec_status_now(struct service *s);

/* "cannot start: WHY; next trial in 2m" */
static void exec_fail_reason(const struct service *s, const char *why, char *buf, size_t len)
{
	char dur[32];

	format_duration_ms(s->cfg->breaker_cooldown_ms, dur, sizeof(dur));
	snprintf(buf, len, "cannot start: %s%s%s", why,
		 s->cfg->restart == RESTART_NEVER ? "" : "; next trial in ",
		 s->cfg->restart == RESTART_NEVER ? "" : dur);
}


/*
 * A start that failed before the program ran.  A missing program, user or
 * directory will not come back by itself: failed, one trial after
 * breaker_cooldown.  A shortage that passes (no descriptors, processes or
 * memory left, say while something floods cohortd with connections) is a
 * failure like a crash: restarted with backoff, the breaker counting it.
 * NOW: fire the event (else it follows the action under way).
 */
void svc_start_failed(struct service *s, const char *why, int err, bool now)
{
	char msg[320];
	enum svc_event ev = SE_EXEC_FAIL;

	if (spawn_transient(err)) {
		char what[300];
		snprintf(what, sizeof(what), "cannot start: %s", why);
		ev = svc_failure_event(s, what, now_mono_ms(), svc_jitter(), msg, sizeof(msg));
	} else {
		s->failures++;
		exec_fail_reason(s, why, msg, sizeof(msg));
	}
	if (now)
		svc_fire(s, ev, msg);
	else
		svc_followup(s, ev, msg);
}

/* Where the process's stdout and stderr go: a pipe that could not be
 * made sends its output to /dev/null. */
static void choose_outputs(const struct service *s, struct spawn_spec *sp)
{
	const struct svc_config *c = s->cfg;
	int devnull = s->sup->devnull;

	sp->fd_out = c->out.kind == OUT_INHERIT ? 1 : c->out.kind == OUT_NULL ? devnull
		     : s->out ? s->out->wfd : devnull;
	switch (c->err.kind) {
	case OUT_STDOUT:
		sp->fd_err = sp->fd_out;
		break;
	case OUT_INHERIT:
		sp->fd_err = 2;
		break;
	case OUT_NULL:
		sp->fd_err = devnull;
		break;
	default:
		sp->fd_err = s->err ? s->err->wfd : s->out ? s->out->wfd : devnull;
		break;
	}
}

void svc_act_spawn(struct service *s)
{
	const struct svc_config *c;
	struct spawn_spec sp;
	struct spawn_ids ids = {0};
	struct strv env = {0};
	char err[256];
	pid_t pid;
	int status_fd;

	svc_stop_watchers(s);
	svc_apply_next_config(s);	/* e.g. changed while it was failing */
	c = s->cfg;
	if (!s->out && !s->err)
		svc_open_outputs(s);	/* they could not be made (no descriptors left) */
	if (s->started_once)
		s->restarts++;
	s->started_once = true;
	if (s->want == WANT_RESTART)
		s->want = WANT_UP;	/* the fresh start asked for is this one */
	s->stop_cause = STOP_NONE;
	s->health_failures = 0;
	str_set(&s->health, NULL);
	str_set(&s->status_text, NULL);
	str_set(&s->exec_error, NULL);
	s->exec_errno = 0;
	svc_forget_token(s);
	new_token(s->token);
	map_put(&s->sup->tokens, s->token, s);	/* the bus knows this start by it */
	if (c->rare->pidfile && svc_pidfile_clear(s, err, sizeof(err)) < 0) {
		svc_start_failed(s, err, errno, false);
		return;
	}
	if (prepare(s, true, c->argv.v, &sp, &ids, &env, err, sizeof(err)) < 0) {
		svc_start_failed(s, err, errno, false);
		return;
	}
	choose_outputs(s, &sp);
	int rc = spawn_start(&sp, &pid, &status_fd, err, sizeof(err));
	int saved = errno;
	strv_free(&env);
	spawn_ids_free(&ids);
	if (rc < 0) {
		svc_start_failed(s, err, saved, false);
		return;
	}
	s->pid = pid;
	s->pgid = pid;	/* spawn made it a session and group leader */
	s->adopted = false;
	s->sup->nlive++;
	s->spawned_at = now_mono_ms();
	s->running_since = 0;
	children_track(s->sup, pid, CHILD_MAIN, s);
	if (s->sup->hooks.process_started)	/* a cohortd after a crash of ours finds it */
		s->sup->hooks.process_started(s->sup->hooks.arg, s);
	svc_exec_watch(s, status_fd, exec_status_cb);
	exec_status_now(s);
	evtimer_start_ms(s->sup->loop, svc_ready_timer(s), c->ready_timeout_ms);
	log_debug(s->name, "spawned pid %d: %s", pid, c->command);
}

/* Minimal spec to turn an exec-status message into words. */
static void status_spec(const struct service *s, struct spawn_spec *sp)
{
	*sp = (struct spawn_spec){.argv = s->cfg->argv.v, .dir = s->cfg->directory};
	spawn_limits_from(&sp->limits, s->cfg);	/* to name the value that failed */
}

/* 1: the exec failed (reason filled); 0: it succeeded; -1: not known yet. */
int svc_read_exec_status(struct service *s, char *reason, size_t len)
{
	struct spawn_spec sp;

	if (!svc_exec_pending(s))
		return 0;
	status_spec(s, &sp);
	int rc = spawn_read_status(s->exec_io->fd, &sp, reason, len, &s->exec_errno);
	if (rc >= 0) {	/* the watcher stays for a fed event (exec_status_now) */
		ev_io_stop(s->sup->loop, s->exec_io);
		close(s->exec_io->fd);
		ev_io_set(s->exec_io, -1, EV_READ);
	}
	return rc;
}

/*
 * vfork has returned, so the child has exec'd or failed: its status is
 * nearly always readable already.  Read now, rather than at the next loop
 * pass, so that a phase of 10,000 starts does not keep 10,000 status pipes
 * open meanwhile: every vfork copies cohortd's descriptor table and every
 * child closes it, which made a start-up quadratic.  The rest of
 * exec_status_cb (readiness) still runs from the loop, fed as an event;
 * only a status not there yet (the exec between its point of no return and
 * its close-on-exec) is waited for.
 */
static void exec_status_now(struct service *s)
{
	char reason[256];
	int rc = svc_read_exec_status(s, reason, sizeof(reason));

	if (rc < 0) {
		ev_io_start(s->sup->loop, s->exec_io);
	} else if (rc == 1) {
		str_set(&s->exec_error, reason);	/* its exit 127 reports it */
		svc_exec_drop(s);
	} else {
		ev_feed_event(s->sup->loop, s->exec_io, EV_READ);
	}
}

static void exec_status_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct service *s = w->data;
	char reason[256];
	(void)loop;
	(void)revents;

	int rc = svc_read_exec_status(s, reason, sizeof(reason));
	if (rc < 0)
		return;	/* not all of it yet */
	svc_exec_drop(s);	/* read: the watcher's work is done */
	if (rc == 1) {
		/* The child exits 127 right after; its exit reports the failure. */
		str_set(&s->exec_error, reason);
		return;
	}
	if (s->state == SVC_STARTING)
		svc_begin_readiness(s);
}

pid_t svc_probe_spawn(struct probe *p, char *err, size_t errlen)
{
	struct service *s = p->owner;
	struct spawn_spec sp;
	struct spawn_ids ids = {0};
	struct strv env = {0};
	pid_t pid;
	int status_fd;

	if (prepare(s, false, p->check->to->argv.v, &sp, &ids, &env, err, errlen) < 0)
		return -1;
	sp.fd_out = sp.fd_err = s->sup->devnull;
	int rc = spawn_start(&sp, &pid, &status_fd, err, errlen);
	strv_free(&env);
	spawn_ids_free(&ids);
	if (rc < 0)
		return -1;
	close(status_fd);	/* an exec failure shows as exit 127 */
	children_track(s->sup, pid, CHILD_PROBE, s);
	return pid;
}
