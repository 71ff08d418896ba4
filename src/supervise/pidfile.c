/*
 * pidfile.c - pidfile = PATH: a service whose program forks a daemon and
 * exits (systemd's Type=forking with PIDFile=, supervisord's pidproxy).
 *
 * The start runs in three steps, each a state of the transition table:
 *   STARTING  the started process runs; its exit 0 is SE_FORKED (any
 *             other end is a failed start, as for any service);
 *   ADOPTING  PATH is read, at once and then again after 10, 20, 40 ...
 *             200 ms until ready_timeout (the daemon may write it a moment
 *             after its parent exits); a pid found and checked becomes the
 *             main process: SE_READY with no ready probe, else SE_ADOPTED
 *             and the probe judges it in STARTING;
 *   then the adopted process is the service's main process like a spawned
 *             one: its exit a service exit, stops signal its group (looked
 *             up at each signal: svc_pgid).
 * A stop while the file is awaited goes to STOPPING and looks for it until
 * stop_timeout: a daemon on its way is stopped, not left behind.
 *
 * Whose pid it is.  systemd accepts a PID in the unit's cgroup; cohortd
 * has no cgroup, but it is a subreaper (or PID 1), so a daemon whose
 * parent exited is re-parented to it: a pid whose parent is cohortd, and
 * that is no other service's process or probe, is adopted and reaped by
 * waitpid as a spawned one is.  A pid whose parent still lives (something
 * of the service forked it and stays) is adopted when one of its
 * ancestors is in the process group or session the start made; its end
 * is seen through a pidfd, with no exit status (only its parent gets it).
 * Anything else (gone, a zombie not ours, cohortd, another service's) is
 * a failed start naming the file and the pid.
 *
 * A stale PATH from an earlier run would name a pid that may be anyone's
 * now: PATH is removed before each start (systemd leaves it), so what is
 * read was written by this start.
 */
#include "autoconfig.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "evtimer.h"
#include "log.h"
#include "pgroup.h"
#include "pidfile.h"
#include "service_impl.h"

#define RETRY_FIRST_MS 10	/* a missing PATH is looked at again after */
#define RETRY_MAX_MS 200	/* ... doubling up to this */
#define ANCESTORS_MAX 64	/* how far up a non-child's parents are followed */

/* --- the text ------------------------------------------------------------- */

/* The text as found, for a message: printable, and short. */
static void quote(const char *text, size_t len, char *out, size_t outlen)
{
	size_t o = 0;

	for (size_t i = 0; i < len && o + 4 < outlen; i++)
		out[o++] = isprint((unsigned char)text[i]) ? text[i] : '?';
	if (len > 0 && o + 4 >= outlen && o >= 3)
		memcpy(out + o - 3, "...", 3);
	out[o] = '\0';
}

int pidfile_parse(const char *text, size_t len, pid_t *pid, char *why, size_t whylen)
{
	const char *nl = memchr(text, '\n', len);
	size_t end = nl ? (size_t)(nl - text) : len;
	size_t a = 0, b = end;
	char shown[40];

	while (a < b && (text[a] == ' ' || text[a] == '\t'))
		a++;
	while (b > a && (text[b - 1] == ' ' || text[b - 1] == '\t' || text[b - 1] == '\r'))
		b--;
	if (a == b) {
		bool blank = true;
		for (size_t i = 0; i < len; i++)
			blank = blank && isspace((unsigned char)text[i]);
		if (blank) {
			snprintf(why, whylen, "is empty");
			return 1;
		}
	}
	long long v = 0;
	bool digits = a < b;
	for (size_t i = a; i < b && digits; i++) {
		digits = text[i] >= '0' && text[i] <= '9';
		if (digits && v <= PIDFILE_PID_MAX)
			v = v * 10 + (text[i] - '0');
	}
	quote(text + a, b - a, shown, sizeof(shown));
	if (!digits) {
		snprintf(why, whylen, "expected a process id, found \"%s\"", shown);
		return -1;
	}
	if (v <= 1 || v > PIDFILE_PID_MAX) {
		snprintf(why, whylen, "names pid %s, which no daemon can have", shown);
		return -1;
	}
	*pid = (pid_t)v;
	return 0;
}

/* --- whose pid it is ------------------------------------------------------ */

struct proc_info {
	char state;
	pid_t ppid, pgrp, session;
};

static int proc_info_read(pid_t pid, struct proc_info *pi)
{
	char id[24], buf[1024];
	int ppid, pgrp, session;

	snprintf(id, sizeof(id), "%d", (int)pid);
	const char *p = proc_stat_fields(id, buf, sizeof(buf));
	if (!p || sscanf(p, " %c %d %d %d", &pi->state, &ppid, &pgrp, &session) != 4)
		return -1;
	pi->ppid = ppid;
	pi->pgrp = pgrp;
	pi->session = session;
	return 0;
}

/* A process that is not our child is the service's when one of its
 * ancestors (or itself) is in the group or session its start made
 * (start_group: the started process's pid, which spawn made leader of
 * both). */
static bool descends_from_start(pid_t pid, const struct proc_info *pi, pid_t start_group)
{
	struct proc_info up = *pi;
	pid_t self = getpid();

	if (start_group <= 1)
		return false;
	for (int depth = 0; depth < ANCESTORS_MAX; depth++) {
		if (up.pgrp == start_group || up.session == start_group)
			return true;
		if (up.ppid <= 1 || up.ppid == self)
			return false;
		pid = up.ppid;
		if (proc_info_read(pid, &up) < 0)
			return false;
	}
	return false;
}

/* Without pidfd_open (a kernel before 5.3, or valgrind, which does not
 * know the call): a look at the process every PIDPOLL_S.  A zombie is
 * gone too (its parent has not reaped it yet; a pidfd says so as well). */
#define PIDPOLL_S 0.2

/* What a service with a pidfile watches, apart from struct service: most
 * services have none (see its pidw). */
struct pidfile_watch {
	struct service *svc;
	int pidfd;		/* an adopted pid that is not our child: watched
				 * through pidfd_open, -1 otherwise */
	ev_io pidfd_io;
	ev_timer pidpoll_w;	/* ... or by a look every 0.2 s, with no pidfd_open */
	int64_t retry_ms;	/* the next look at a missing PID file */
};

static void pidpoll_cb(struct ev_loop *loop, ev_timer *w, int revents);

static struct pidfile_watch *watch_of(struct service *s)
{
	if (!s->pidw) {
		struct pidfile_watch *pw = xcalloc(1, sizeof(*pw));
		pw->svc = s;
		pw->pidfd = -1;
		ev_io_init(&pw->pidfd_io, NULL, -1, EV_READ);
		ev_init(&pw->pidpoll_w, pidpoll_cb);
		s->pidw = pw;
	}
	return s->pidw;
}

static void pidfd_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct service *s = container_of(w, struct pidfile_watch, pidfd_io)->svc;
	(void)loop;
	(void)revents;

	log_debug(s->name, "pid %d ended (seen through its pidfd; not our child)", s->pid);
	svc_pidfd_close(s);
	svc_main_ended(s, &(struct exit_info){.valid = true, .code = -1, .unknown = true});
	stack_settle(s->sup);
}

static void pidpoll_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct service *s = container_of(w, struct pidfile_watch, pidpoll_w)->svc;
	struct proc_info pi;
	(void)loop;
	(void)revents;

	if (proc_info_read(s->pid, &pi) == 0 && pi.state != 'Z' && pi.state != 'X')
		return;
	log_debug(s->name, "pid %d ended (seen by a look every %.1f s; not our child)", s->pid, PIDPOLL_S);
	svc_pidfd_close(s);
	svc_main_ended(s, &(struct exit_info){.valid = true, .code = -1, .unknown = true});
	stack_settle(s->sup);
}

static void watch_by_polling(struct service *s)
{
	struct pidfile_watch *pw = watch_of(s);

	ev_timer_set(&pw->pidpoll_w, PIDPOLL_S, PIDPOLL_S);
	ev_timer_start(s->sup->loop, &pw->pidpoll_w);
}

static int watch_pidfd(struct service *s, pid_t pid)
{
#ifdef SYS_pidfd_open
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (fd < 0 && errno == ENOSYS) {
		watch_by_polling(s);
		return 0;
	}
	if (fd < 0)
		return -1;
	if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	struct pidfile_watch *pw = watch_of(s);
	pw->pidfd = fd;
	ev_io_init(&pw->pidfd_io, pidfd_cb, fd, EV_READ);
	ev_io_start(s->sup->loop, &pw->pidfd_io);
	return 0;
#else
	(void)pid;
	watch_by_polling(s);
	return 0;
#endif
}

void svc_pidfd_close(struct service *s)
{
	struct pidfile_watch *pw = s->pidw;

	if (!pw)
		return;
	ev_timer_stop(s->sup->loop, &pw->pidpoll_w);
	if (pw->pidfd < 0)
		return;
	ev_io_stop(s->sup->loop, &pw->pidfd_io);
	close(pw->pidfd);
	pw->pidfd = -1;
}

void svc_pidfile_free(struct service *s)
{
	svc_pidfd_close(s);
	free(s->pidw);
	s->pidw = NULL;
}

enum look { LOOK_ADOPTED, LOOK_NOT_YET, LOOK_BAD };

/* pid, read from the file, checked and made the main process. */
static enum look adopt(struct service *s, pid_t pid, char *why, size_t len)
{
	const char *path = s->cfg->rare->pidfile;
	struct proc_info pi;
	pid_t self = getpid();

	if (pid == self) {
		snprintf(why, len, "%s names pid %d, which is cohortd itself", path, (int)pid);
		return LOOK_BAD;
	}
	/* A zombie child is adopted: its exit is queued for our reaper. */
	bool found = proc_info_read(pid, &pi) == 0;
	bool child = found && pi.ppid == self;
	if (!child && (!found || pi.state == 'Z' || pi.state == 'X')) {
		snprintf(why, len, "%s names pid %d, which is not running", path, (int)pid);
		return LOOK_BAD;
	}
	if (intmap_get(&s->sup->children, pid)) {
		snprintf(why, len, "%s names pid %d, which is another process cohortd started", path, (int)pid);
		return LOOK_BAD;
	}
	if (!child && !descends_from_start(pid, &pi, s->pgid)) {
		snprintf(why, len, "%s names pid %d, which is not this service's (not cohortd's child, "
			 "nor started from its process group)", path, (int)pid);
		return LOOK_BAD;
	}
	if (!child && watch_pidfd(s, pid) < 0) {
		snprintf(why, len, "%s names pid %d, not cohortd's child, which cannot be watched: "
			 "pidfd_open: %s", path, (int)pid, strerror(errno));
		return LOOK_BAD;
	}
	s->pid = pid;
	s->sup->nlive++;
	s->adopted = true;
	/* Its group is signalled (unless it shares cohortd's own), looked up
	 * again at each signal: it may still be the start's now. */
	svc_pgid(s);
	if (child)
		children_track(s->sup, pid, CHILD_MAIN, s);
	if (s->sup->hooks.process_started)
		s->sup->hooks.process_started(s->sup->hooks.arg, s);
	snprintf(why, len, "adopted pid %d from %s%s", (int)pid, path,
		 child ? "" : s->pidw->pidfd >= 0 ? " (watched by pidfd)" : " (watched by a look every 0.2 s)");
	return LOOK_ADOPTED;
}

/* Reads the file; LOOK_ADOPTED: the pid is the main process now. */
static enum look look(struct service *s, char *why, size_t len)
{
	const char *path = s->cfg->rare->pidfile;
	char buf[128], msg[200];
	struct stat st;
	pid_t pid;

	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		int e = errno;
		snprintf(why, len, "%s: %s", path, e == ENOENT ? "not written" : strerror(e));
		return e == ENOENT ? LOOK_NOT_YET : LOOK_BAD;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(why, len, "%s: %s", path, "not a regular file");
		close(fd);
		return LOOK_BAD;
	}
	ssize_t n = read(fd, buf, sizeof(buf));
	int e = errno;
	close(fd);
	if (n < 0) {
		snprintf(why, len, "%s: %s", path, strerror(e));
		return LOOK_BAD;
	}
	int rc = pidfile_parse(buf, (size_t)n, &pid, msg, sizeof(msg));
	if (rc != 0) {
		snprintf(why, len, "%s: %s", path, msg);
		return rc > 0 ? LOOK_NOT_YET : LOOK_BAD;
	}
	return adopt(s, pid, why, len);
}

/* --- the steps ------------------------------------------------------------ */

int svc_pidfile_clear(struct service *s, char *err, size_t len)
{
	if (unlink(s->cfg->rare->pidfile) == 0 || errno == ENOENT)
		return 0;
	int e = errno;
	snprintf(err, len, "cannot remove the earlier PID file %s: %s", s->cfg->rare->pidfile, strerror(e));
	errno = e;	/* the caller tells a lasting failure from a passing one by it */
	return -1;
}

/* Ready once adopted: no probe to wait for (ready not set, or delay:0). */
static bool ready_at_adoption(const struct service *s)
{
	return s->cfg->ready.kind == CHECK_DELAY && s->cfg->ready.delay_ms == 0;
}

/* What the start left in its group goes: nothing of it can be told to be
 * the daemon now. */
static void drop_start_group(struct service *s)
{
	if (s->pgid > 0 && kill(-s->pgid, SIGKILL) == 0)
		log_debug(s->name, "killed what was left of process group %d", s->pgid);
	s->pgid = 0;
}

/* What the last look found, for status (and the reason a timeout gives). */
static void note_not_yet(struct service *s, const char *why)
{
	struct sbuf text = {0};

	sbuf_addf(&text, "not ready: %.*s", SVC_HEALTH_MAX - 12, why);
	str_set(&s->health, text.buf);
	sbuf_free(&text);
}

/* The next look at a file not written yet, each later than the last. */
static void look_later(struct service *s)
{
	struct pidfile_watch *pw = watch_of(s);

	evtimer_start_ms(s->sup->loop, svc_probe_timer(s), pw->retry_ms);
	if (pw->retry_ms < RETRY_MAX_MS)
		pw->retry_ms *= 2;
}

/* One look at the file, and its event.  in_action: from a transition's
 * action (the event follows it), else fired now. */
static void look_and_fire(struct service *s, bool in_action)
{
	char why[400], reason[512];
	enum svc_event ev;

	switch (look(s, why, sizeof(why))) {
	case LOOK_NOT_YET:
		note_not_yet(s, why);
		look_later(s);
		return;
	case LOOK_ADOPTED:
		str_set(&s->health, NULL);
		ev = ready_at_adoption(s) ? SE_READY : SE_ADOPTED;
		str_copy(reason, sizeof(reason), why);
		break;
	default:
		drop_start_group(s);
		ev = svc_failure_event(s, why, now_mono_ms(), svc_jitter(), reason, sizeof(reason));
		break;
	}
	if (in_action)
		svc_followup(s, ev, reason);
	else
		svc_fire(s, ev, reason);
}

void svc_act_adopting(struct service *s)
{
	watch_of(s)->retry_ms = RETRY_FIRST_MS;
	look_and_fire(s, true);
}

void svc_pidfile_retry(struct service *s)
{
	look_and_fire(s, false);
}

void svc_pidfile_timeout(struct service *s)
{
	char why[400], reason[512], dur[32];

	svc_probe_timer_stop(s);
	format_duration_ms(s->cfg->ready_timeout_ms, dur, sizeof(dur));
	/* One last look: it may have come since the last. */
	if (look(s, why, sizeof(why)) == LOOK_ADOPTED) {
		str_set(&s->health, NULL);
		svc_fire(s, ready_at_adoption(s) ? SE_READY : SE_ADOPTED, why);
		return;
	}
	char what[480];
	snprintf(what, sizeof(what), "no pid within %s: %s", dur, why);
	drop_start_group(s);
	enum svc_event ev = svc_failure_event(s, what, now_mono_ms(), svc_jitter(), reason, sizeof(reason));
	svc_fire(s, ev, reason);
}

void svc_act_adopted(struct service *s)
{
	svc_begin_readiness(s);
}

/* A stop before the pid was adopted: the daemon may be up, or on its
 * way, so the file is looked at until stop_timeout; a pid found is
 * stopped as a running service's is (KILL after stop_timeout), else what
 * the start left in its group is killed and the service is down. */
void svc_act_stop_adopting(struct service *s)
{
	char why[400], reason[512];

	svc_probe_timer_stop(s);
	svc_ready_timer_stop(s);
	if (s->stop_cause == STOP_NONE)
		s->stop_cause = STOP_WANTED;
	switch (look(s, why, sizeof(why))) {
	case LOOK_ADOPTED:
		log_info(s->name, "%s: stopping it", why);
		svc_act_stop(s);
		return;
	case LOOK_NOT_YET:
		note_not_yet(s, why);
		watch_of(s)->retry_ms = RETRY_FIRST_MS;
		evtimer_start_ms(s->sup->loop, svc_probe_timer(s), RETRY_FIRST_MS);
		evtimer_start_ms(s->sup->loop, &s->timer, s->cfg->stop_timeout_ms);
		return;
	default:
		drop_start_group(s);
		snprintf(reason, sizeof(reason), "stopped before its pid was adopted (%s)", why);
		svc_followup(s, SE_EXIT_STOPPED, reason);
		return;
	}
}

/* STOPPING with no pid yet: the probe timer looks again. */
void svc_pidfile_stop_look(struct service *s)
{
	char why[400], reason[512];

	switch (look(s, why, sizeof(why))) {
	case LOOK_ADOPTED:
		log_info(s->name, "%s: stopping it", why);
		svc_act_stop(s);
		return;
	case LOOK_NOT_YET:
		note_not_yet(s, why);
		look_later(s);
		return;
	default:
		ev_timer_stop(s->sup->loop, &s->timer);
		drop_start_group(s);
		snprintf(reason, sizeof(reason), "stopped before its pid was adopted (%s)", why);
		svc_fire(s, SE_EXIT_STOPPED, reason);
		return;
	}
}

/* SE_TIMEOUT in STOPPING with no pid: the file never came. */
void svc_pidfile_stop_over(struct service *s)
{
	char reason[512], dur[32];

	svc_probe_timer_stop(s);
	drop_start_group(s);
	format_duration_ms(s->cfg->stop_timeout_ms, dur, sizeof(dur));
	snprintf(reason, sizeof(reason), "stopped: no pid read within %s (%s)", dur, svc_text(s->health));
	svc_followup(s, SE_EXIT_STOPPED, reason);
}
