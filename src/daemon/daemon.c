/*
 * daemon.c - cohortd's set-up and tear-down around one libev loop: the
 * directories and sockets, the signals (TERM/INT: orderly shutdown, a
 * second one: KILL everything; HUP: reload), the one child watcher that
 * reaps every child and every orphan we inherit, and the final sweep that
 * leaves no process of ours behind.
 *
 * libev's default loop owns SIGCHLD: it calls waitpid(-1, WNOHANG |
 * WUNTRACED | WCONTINUED) and hands each status to the ev_child watchers;
 * ours listens on pid 0 (all children), with stops and continues too (a
 * service paused by SIGSTOP shows so in its status), and routes by pid
 * through the supervision layer's child registry (children.c).  Nothing
 * else here waits for children while the loop runs.
 */
#include "autoconfig.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pgroup.h"
#include "daemon.h"
#include "evtimer.h"
#include "log.h"
#include "metrics.h"

#define EXIT_GRACE_S 5.0	/* after KILL, how long we wait for the exits */

static void describe_status(int status, char *buf, size_t len)
{
	if (WIFSIGNALED(status))
		snprintf(buf, len, "killed by SIG%s", signal_name(WTERMSIG(status)));
	else
		snprintf(buf, len, "exited with code %d", WEXITSTATUS(status));
}

static void child_cb(struct ev_loop *loop, ev_child *w, int revents)
{
	struct cohortd *d = container_of(w, struct cohortd, child_w);
	char how[64];
	(void)loop;
	(void)revents;

	if (WIFSTOPPED(w->rstatus) || WIFCONTINUED(w->rstatus)) {
		children_paused(&d->sup, w->rpid, w->rstatus);
		return;
	}
	if (!children_exited(&d->sup, w->rpid, w->rstatus)) {
		describe_status(w->rstatus, how, sizeof(how));
		log_debug(NULL, "reaped orphan pid %d (%s)", w->rpid, how);
		return;
	}
	stack_settle(&d->sup);
}

static void kill_all(struct cohortd *d, const char *why)
{
	size_t n = 0;

	for (size_t i = 0; i < d->sup.plan->n; i++)
		if (svc_live(d->sup.svcs[i])) {
			svc_kill_now(d->sup.svcs[i]);
			n++;
		}
	for (size_t i = 0; i < d->sup.nleaving; i++)
		if (svc_live(d->sup.leaving[i])) {
			svc_kill_now(d->sup.leaving[i]);
			n++;
		}
	log_warn(NULL, "%s: KILL to %zu process group%s", why, n, n == 1 ? "" : "s");
	d->killed_all = true;
	d->exit_code = 1;
	ev_timer_stop(d->loop, &d->shutdown_timer);
	ev_timer_set(&d->exit_timer, EXIT_GRACE_S, 0);
	ev_timer_start(d->loop, &d->exit_timer);
	if (stack_all_down(&d->sup))
		ev_break(d->loop, EVBREAK_ALL);
}

void daemon_begin_shutdown(struct cohortd *d, const char *why)
{
	if (d->sup.shutting_down)
		return;
	log_info(NULL, "shutting down (%s): stopping %s in reverse phase order", why,
		 d->sup.plan->n == 1 ? "1 service" : "the services");
	evtimer_start_ms(d->loop, &d->shutdown_timer, d->cfg->shutdown_timeout_ms);
	stack_shutdown(&d->sup);
}

static void signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct cohortd *d;
	(void)loop;
	(void)revents;

	if (w->signum == SIGHUP) {
		d = container_of(w, struct cohortd, sig_hup);
		if (d->sup.shutting_down) {
			log_info(NULL, "SIGHUP ignored: shutting down");
			return;
		}
		log_info(NULL, "SIGHUP: reloading %s", d->config_path);
		reload_config(d, NULL);
		return;
	}
	d = w->signum == SIGTERM ? container_of(w, struct cohortd, sig_term)
				 : container_of(w, struct cohortd, sig_int);
	if (!d->sup.shutting_down)
		daemon_begin_shutdown(d, w->signum == SIGTERM ? "SIGTERM" : "SIGINT");
	else if (!d->killed_all)
		kill_all(d, w->signum == SIGTERM ? "second SIGTERM" : "second SIGINT");
}

/* A stray signal's default action would end cohortd and leave the stack
 * unsupervised. */
static const int stray_signals[] = {SIGUSR1, SIGUSR2, SIGALRM};

/*
 * HUP and the stray signals kill by default: held from before the
 * start-up sweep (which lasts up to a stop_timeout) until their watchers
 * are set, a reload or logrotate's USR1 meanwhile waits for the loop
 * instead.  TERM and INT are not held: they end a cohortd that has not
 * started anything, as they always did.  (libev's default loop installs
 * handlers with sigaction and leaves the mask alone.)
 */
static void hold_signals(int how)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	for (size_t i = 0; i < ARRAY_LEN(stray_signals); i++)
		sigaddset(&set, stray_signals[i]);
	sigprocmask(how, &set, NULL);
}

static void stray_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)loop;
	(void)revents;
	/* USR1 after logrotate has moved the log file: the same path, anew. */
	if (w->signum == SIGUSR1 && log_file_path()) {
		if (log_file_reopen() < 0)
			log_error(NULL, "SIGUSR1: cannot reopen the log file %s: %s; still writing to the "
				  "old one", log_file_path(), strerror(errno));
		else
			log_info(NULL, "SIGUSR1: reopened the log file %s", log_file_path());
		return;
	}
	log_warn(NULL, "SIG%s ignored: cohortd acts on TERM, INT, HUP, and USR1 with a log_file",
		 signal_name(w->signum));
}

static void shutdown_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct cohortd *d = container_of(w, struct cohortd, shutdown_timer);
	char dur[32];
	(void)loop;
	(void)revents;

	format_duration_ms(d->cfg->shutdown_timeout_ms, dur, sizeof(dur));
	char why[80];
	snprintf(why, sizeof(why), "shutdown_timeout (%s) expired", dur);
	kill_all(d, why);
}

static void exit_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)w;
	(void)revents;
	log_error(NULL, "processes still not reaped %.0fs after KILL; exiting anyway", EXIT_GRACE_S);
	ev_break(loop, EVBREAK_ALL);
}

static void notify_cb(struct notify *n, pid_t pid, uid_t uid, char *msg)
{
	struct cohortd *d = container_of(n, struct cohortd, notify);
	pid_t pgid = getpgid(pid);
	(void)uid;

	/* The sender may be the main process or anything in its group. */
	for (size_t i = 0; i < d->sup.plan->n; i++) {
		struct service *s = d->sup.svcs[i];
		if (svc_live(s) && (s->pid == pid || s->pid == pgid)) {
			svc_notify(s, msg);
			stack_settle(&d->sup);
			return;
		}
	}
	log_debug(NULL, "notify message from pid %d, which is no service's: ignored", pid);
}

/* Our children right now, from /proc (the loop has stopped). */
static void kill_our_children(void)
{
	DIR *dh = opendir("/proc");
	struct dirent *e;
	pid_t self_pid = getpid();

	if (!dh)
		return;
	/* A /proc of another pid namespace (ours unmounted) would name other
	 * processes with our pid as their parent: then touch nothing. */
	char self[32] = "";
	ssize_t sl = readlink("/proc/self", self, sizeof(self) - 1);
	if (sl <= 0 || (self[sl] = '\0', atoi(self) != self_pid)) {
		log_warn(NULL, "/proc is not of our pid namespace: leftover processes not swept");
		closedir(dh);
		return;
	}
	while ((e = readdir(dh))) {
		if (!isdigit((unsigned char)e->d_name[0]))
			continue;
		char buf[512];
		const char *rp = proc_stat_fields(e->d_name, buf, sizeof(buf));
		int ppid = 0;
		char st;
		if (!rp || sscanf(rp, " %c %d", &st, &ppid) != 2 || ppid != self_pid || st == 'Z')
			continue;
		kill((pid_t)atoi(e->d_name), SIGKILL);
	}
	closedir(dh);
}

/* After the loop: no process of ours outlives us, zombies included. */
static void reap_everything(void)
{
	int64_t deadline = now_mono_ms() + (int64_t)(EXIT_GRACE_S * 1000);
	size_t killed = 0;
	struct timespec tick = {0, 10 * 1000 * 1000};

	/* A process sent KILL may still be found by the next sweep, until it
	 * is a zombie: what was killed is counted as it is reaped. */
	for (;;) {
		kill_our_children();
		pid_t pid;
		int st;
		while ((pid = waitpid(-1, &st, WNOHANG)) > 0)
			if (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL)
				killed++;
		if (pid < 0 && errno == ECHILD)
			break;
		if (now_mono_ms() > deadline) {
			log_error(NULL, "some processes did not exit after KILL");
			break;
		}
		nanosleep(&tick, NULL);
	}
	if (killed == 1)
		log_info(NULL, "killed 1 leftover process (it had left its service's process group)");
	else if (killed)
		log_info(NULL, "killed %zu leftover processes (they had left their services' process groups)",
			 killed);
}

/* log.c counts a repeated line: its count is written once the second is
 * over, even if no other line comes to push it out. */
static void log_repeat_hook(void *arg)
{
	struct cohortd *d = arg;

	ev_async_send(d->loop, &d->log_repeat_w);	/* any thread may log */
}

static void log_repeat_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	struct cohortd *d = container_of(w, struct cohortd, log_repeat_w);
	(void)revents;

	if (!ev_is_active(&d->log_flush_w)) {
		ev_timer_set(&d->log_flush_w, 1.0 - (double)(now_wall_ms() % 1000) / 1000 + 0.01, 0);
		ev_timer_start(loop, &d->log_flush_w);
	}
}

static void log_flush_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)revents;
	if (log_flush_repeats(now_wall_ms())) {
		ev_timer_set(w, 1.0, 0);
		ev_timer_start(loop, w);
	}
}

/* Hundreds of control and bus clients need more than the usual 1024 fds. */
static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max > 65536 ? 65536 : rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static int make_dirs(const struct cohort_config *c)
{
	bool wants_logs = false;

	for (size_t i = 0; i < c->nservices; i++)
		if (c->services[i]->out.kind == OUT_LOG || c->services[i]->err.kind == OUT_LOG)
			wants_logs = true;
	const char *dirs[] = {c->run_dir, c->state_dir, wants_logs ? c->log_dir : NULL};
	for (size_t i = 0; i < ARRAY_LEN(dirs); i++) {
		if (dirs[i] && mkdir_p(dirs[i], 0755) < 0) {
			log_error(NULL, "cannot make directory %s: %s", dirs[i], strerror(errno));
			return -1;
		}
	}
	return 0;
}

/* The names a phase's line lists before it says how many more. */
#define PLAN_LINE_NAMES 1500

static void log_plan(const struct cohortd *d)
{
	const struct plan *p = d->sup.plan;

	for (unsigned ph = 1; ph <= p->nphases; ph++) {
		if (p->phase_start[ph + 1] == p->phase_start[ph])
			continue;
		struct sbuf b = {0};
		size_t k = p->phase_start[ph];
		/* A log line is cut at about 2 KiB: a long phase says how many it
		 * left out, rather than ending mid-name. */
		for (; k < p->phase_start[ph + 1] && b.len < PLAN_LINE_NAMES; k++)
			sbuf_addf(&b, "%s%s", k > p->phase_start[ph] ? ", " : "", d->sup.svcs[p->order[k]]->name);
		if (k < p->phase_start[ph + 1])
			sbuf_addf(&b, " and %zu more (cohortd --check lists them all)", p->phase_start[ph + 1] - k);
		log_info(NULL, "phase %u: %s", ph, b.buf);
		sbuf_free(&b);
	}
}

static void daemon_free(struct cohortd *d)
{
	stack_free(&d->sup);
	peer_auth_free(&d->auth);
	config_unref(d->cfg);
	config_unref(d->started_cfg);
	free(d->control_path);
	free(d->bus_path);
	free(d->log_dir);
	free(d->run_dir);
	free(d->config_path);
	if (d->devnull >= 0)
		close(d->devnull);
	instance_unlock(d->state_lock_fd);
	instance_unlock(d->instance_fd);
	free(d);
}

/* The root struct, before anything is opened; NULL when not even a loop
 * and /dev/null can be had. */
static struct cohortd *daemon_new(const char *config_path, struct cohort_config *cfg, struct plan *plan)
{
	struct cohortd *d = xcalloc(1, sizeof(*d));

	d->loop = ev_default_loop(EVFLAG_AUTO);
	d->config_path = xstrdup(config_path);
	d->cfg = cfg;
	d->started_cfg = config_ref(cfg);
	d->sup.plan = plan;
	d->exit_code = 0;
	d->instance_fd = -1;
	d->state_lock_fd = -1;
	d->devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (!d->loop || d->devnull < 0) {
		log_error(NULL, "cannot start: %s", !d->loop ? "no event loop" : strerror(errno));
		daemon_free(d);
		return NULL;
	}
	d->control_path = xasprintf("%s/control.sock", cfg->run_dir);
	d->bus_path = xasprintf("%s/bus.sock", cfg->run_dir);
	d->log_dir = xstrdup(cfg->log_dir);
	d->run_dir = xstrdup(cfg->run_dir);
	return d;
}

/* The process-wide settings of a supervisor. */
static void set_process(void)
{
	/* Orphans of our services are re-parented to us, not to init: we reap
	 * them (and kill the ones left at exit). */
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
		log_warn(NULL, "cannot become a child subreaper: %s", strerror(errno));
	signal(SIGPIPE, SIG_IGN);
	/* A file past RLIMIT_FSIZE is a write error (EFBIG) we handle, like a
	 * full disk, not a reason to die. */
	signal(SIGXFSZ, SIG_IGN);
	raise_fd_limit();
}

/* run_dir and state_dir, each with its single-instance lock; -1 (logged)
 * when cohortd cannot run on them. */
static int claim_dirs(struct cohortd *d, const struct cohort_config *cfg)
{
	char err[256];

	/* A cohortd that runs on run_dir already must find nothing changed
	 * by our attempt: the lock comes before any file is touched. */
	if (mkdir_p(cfg->run_dir, 0755) < 0) {
		log_error(NULL, "cannot make directory %s: %s", cfg->run_dir, strerror(errno));
		return -1;
	}
	if (instance_lock(cfg->run_dir, &d->instance_fd, err, sizeof(err)) < 0) {
		log_error(NULL, "%s", err);
		return -1;
	}
	if (make_dirs(cfg) < 0)
		return -1;
	if (instance_lock_state(cfg->state_dir, &d->state_lock_fd, err, sizeof(err)) < 0) {
		log_error(NULL, "%s", err);
		return -1;
	}
	return 0;
}

/*
 * The layers around the services, each given what it needs: the notify
 * socket, the log writer, the lock service, the control socket and the
 * bus.  When one cannot open, what was opened before it is closed again,
 * in reverse (one ladder), and -1 (logged).
 */
static int open_layers(struct cohortd *d, const struct cohort_config *cfg)
{
	char err[256];

	char *notify_path = xasprintf("%s/notify.sock", cfg->run_dir);
	if (notify_open(&d->notify, d->loop, notify_path, 0666, notify_cb, err, sizeof(err)) < 0)
		log_warn(NULL, "no sd_notify socket (%s): ready = notify cannot work", err);
	free(notify_path);
	d->log_writer = logfile_start(d->loop);
	char *tokens = xasprintf("%s/lock.tokens", cfg->state_dir);
	int rc = lock_table_init(&d->locks, d->loop, tokens, err, sizeof(err));
	free(tokens);
	if (rc < 0) {
		log_error(NULL, "cannot start the lock service: %s", err);
		goto no_locks;
	}
	lock_group_init(d);
	if (daemon_cluster_open(d, err, sizeof(err)) < 0) {
		log_error(NULL, "cannot start the lock service: %s", err);
		goto no_cluster;
	}
	if (peer_auth_init(&d->auth, cfg->control_group, err, sizeof(err)) < 0 ||
	    daemon_open_control(d, err, sizeof(err)) < 0) {
		log_error(NULL, "cannot open the control socket: %s", err);
		goto no_control;
	}
	if (daemon_open_bus(d, err, sizeof(err)) < 0) {
		log_error(NULL, "cannot start the bus: %s", err);
		goto no_bus;
	}
	if (daemon_cluster_bus_open(d, err, sizeof(err)) < 0) {
		log_error(NULL, "cannot start the bus: %s", err);
		bus_close(&d->bus);
		goto no_bus;
	}
	if (metrics_start(d, err, sizeof(err)) < 0)
		log_warn(NULL, "no HTTP pages on the bus listeners: %s", err);
	return 0;
no_bus:
	control_close(&d->ctl);
no_control:
	daemon_cluster_close(d);
no_cluster:
	lock_table_free(&d->locks);
no_locks:
	notify_close(&d->notify, d->loop);
	logfile_stop(d->log_writer);
	d->log_writer = NULL;
	return -1;
}

/* The services of the plan, and the watchers that drive them. */
static void start_watchers(struct cohortd *d, struct cohort_config *cfg, struct plan *plan)
{
	daemon_hook_supervise(d);
	stack_init(&d->sup, cfg, plan);
	ev_child_init(&d->child_w, child_cb, 0, 1);	/* 1: stops and continues too */
	ev_child_start(d->loop, &d->child_w);
	ev_signal_init(&d->sig_term, signal_cb, SIGTERM);
	ev_signal_init(&d->sig_int, signal_cb, SIGINT);
	ev_signal_init(&d->sig_hup, signal_cb, SIGHUP);
	ev_signal_start(d->loop, &d->sig_term);
	ev_signal_start(d->loop, &d->sig_int);
	ev_signal_start(d->loop, &d->sig_hup);
	for (size_t i = 0; i < ARRAY_LEN(stray_signals); i++) {
		ev_signal_init(&d->sig_stray[i], stray_cb, stray_signals[i]);
		ev_signal_start(d->loop, &d->sig_stray[i]);
	}
	hold_signals(SIG_UNBLOCK);
	ev_init(&d->shutdown_timer, shutdown_timer_cb);
	ev_init(&d->exit_timer, exit_timer_cb);
	ev_async_init(&d->log_repeat_w, log_repeat_cb);
	ev_async_start(d->loop, &d->log_repeat_w);
	ev_unref(d->loop);	/* it alone must not keep the loop running */
	ev_init(&d->log_flush_w, log_flush_cb);
	log_set_repeat_hook(log_repeat_hook, d);
}

static void stop_watchers(struct cohortd *d)
{
	sigset_t ends, was;

	/* We are on our way out already: one more TERM must not cut the
	 * final sweep short.  ev_signal_stop gives a signal back its default
	 * action, which for TERM is death: a TERM that came between that and
	 * SIG_IGN killed cohortd after a clean shutdown (exit -15, in 11 of
	 * 20 runs of a TERM sent over and over).  Held meanwhile, it is
	 * dropped once ignored. */
	sigemptyset(&ends);
	sigaddset(&ends, SIGTERM);
	sigaddset(&ends, SIGINT);
	sigaddset(&ends, SIGHUP);
	sigprocmask(SIG_BLOCK, &ends, &was);
	ev_signal_stop(d->loop, &d->sig_term);
	ev_signal_stop(d->loop, &d->sig_int);
	ev_signal_stop(d->loop, &d->sig_hup);
	for (size_t i = 0; i < ARRAY_LEN(stray_signals); i++) {
		ev_signal_stop(d->loop, &d->sig_stray[i]);
		signal(stray_signals[i], SIG_IGN);
	}
	signal(SIGTERM, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	sigprocmask(SIG_SETMASK, &was, NULL);
	ev_child_stop(d->loop, &d->child_w);
	ev_timer_stop(d->loop, &d->shutdown_timer);
	ev_timer_stop(d->loop, &d->exit_timer);
	log_set_repeat_hook(NULL, NULL);
	ev_ref(d->loop);
	ev_async_stop(d->loop, &d->log_repeat_w);
	ev_timer_stop(d->loop, &d->log_flush_w);
}

/* After the loop: nothing of ours runs any more, the layers close. */
static void close_layers(struct cohortd *d)
{
	reap_everything();
	sdn_close(d);
	instance_forget(d);
	lock_group_close(d);	/* before the clients close: they lose their leases */
	metrics_stop(d);
	bus_close(&d->bus);
	control_close(&d->ctl);
	daemon_cluster_bus_close(d);	/* after the bus: its last acks go through it */
	daemon_cluster_close(d);
	lock_table_free(&d->locks);
	notify_close(&d->notify, d->loop);
	for (size_t i = 0; i < d->sup.plan->n; i++)
		svc_free_outputs(d->sup.svcs[i]);
	for (size_t i = 0; i < d->sup.nleaving; i++)
		svc_free_outputs(d->sup.leaving[i]);
	logfile_stop(d->log_writer);
	d->log_writer = NULL;
}

/* Runs the stack until it has stopped; the exit status. */
static int run(struct cohortd *d, const char *config_path, const struct plan *plan)
{
	log_info(NULL, "cohortd %s (pid %d%s): %zu service%s in %u phase%s from %s", PACKAGE_VERSION,
		 getpid(), getpid() == 1 ? ", init" : "", plan->n, plan->n == 1 ? "" : "s",
		 plan->nphases, plan->nphases == 1 ? "" : "s", config_path);
	log_plan(d);
	sdn_open(d);
	stack_start(&d->sup);
	ev_run(d->loop, 0);
	d->ctl.draining = true;
	control_flush(&d->ctl);
	if (!d->killed_all && d->sup.shutting_down)
		log_info(NULL, "every service has stopped");
	return d->exit_code;
}

int daemon_run(const char *config_path, struct cohort_config *cfg, struct plan *plan)
{
	struct cohortd *d = daemon_new(config_path, cfg, plan);
	int rc = 1;

	if (!d)
		return 1;
	set_process();
	if (claim_dirs(d, cfg) == 0) {
		hold_signals(SIG_BLOCK);
		instance_sweep(cfg->run_dir);
		if (open_layers(d, cfg) == 0) {
			start_watchers(d, cfg, plan);
			rc = run(d, config_path, plan);
			stop_watchers(d);
			close_layers(d);
			log_info(NULL, "exiting with status %d", rc);
			log_flush_repeats(now_wall_ms() + 1000);	/* a count still waiting */
		}
	}
	daemon_free(d);
	ev_default_destroy();
	return rc;
}
