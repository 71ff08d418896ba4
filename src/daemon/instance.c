/*
 * instance.c - one cohortd per run_dir, and what a killed one left behind.
 *
 * run_dir/cohortd.pid is held with flock() for cohortd's whole life, and
 * taken before any other file is touched: a second cohortd on the same
 * run_dir is refused without having removed a socket of the first or
 * moved its lock token counter.  The kernel drops the lock when its
 * holder dies, however it dies, so a stale file never blocks a start.
 * state_dir/cohortd.lock is held the same way, so that two cohortds with
 * run_dirs of their own do not share one journal and one token counter.
 *
 * run_dir/cohortd.groups names the process group of every service that
 * runs, with the start time of its leader (field 22 of /proc/PID/stat,
 * which tells a recycled pid from the process we started).  After a
 * kill -9 of cohortd its services run on; the next cohortd reads the file
 * before it starts anything and stops each group that still lives (its
 * stop signal, SIGCONT, then KILL after its stop_timeout), so no service
 * ends up running twice.
 *
 * The file is a log: a line per group started, "-PGID START" once it has
 * ended, appended once per loop iteration with what that iteration
 * started and ended (one write, however many).  A rewrite of the whole
 * record at each spawn or exit cost O(n) each: with 10,000 services a
 * restart wrote 350 KB, and a shutdown gigabytes.  It is rewritten whole
 * (.new + rename) with the live groups only when the ended ones outnumber
 * them, and after a reload (whose stop_signal and stop_timeout apply at
 * once).  No fsync: it must survive a crash of cohortd, not of the
 * machine, whose reboot ends the processes it names anyway.
 */
#include "autoconfig.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pgroup.h"
#include "daemon.h"
#include "log.h"

#define GROUPS_FILE "cohortd.groups"
#define LOCK_FILE "cohortd.pid"
#define STATE_LOCK_FILE "cohortd.lock"	/* in state_dir */
#define KILL_GRACE_MS 5000	/* after KILL, how long we wait for a group to go */
#define TIMEOUT_MAX_MS (100LL * 86400000)	/* a config's longest duration (util.c) */

/* --- the single-instance locks --------------------------------------------- */

/*
 * Opens dir/name and flocks it; "dir_key" names the config key for the
 * refusal.  1 when the file cannot be made for a full disk and
 * full_disk_ok (a full state_dir must not stop supervision: see
 * instance_lock_state), 0 when locked, -1 with a message else.
 */
static int lock_file(const char *dir, const char *name, const char *dir_key, bool full_disk_ok,
		     int *fd_out, char *err, size_t errlen)
{
	char *path = xasprintf("%s/%s", dir, name);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);

	*fd_out = -1;
	if (fd < 0) {
		int saved = errno;
		snprintf(err, errlen, "%s: %s", path, strerror(saved));
		free(path);
		return full_disk_ok && (saved == ENOSPC || saved == EDQUOT) ? 1 : -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int saved = errno;
		char buf[32] = "";
		ssize_t n = read(fd, buf, sizeof(buf) - 1);
		buf[n > 0 ? n : 0] = '\0';
		long pid = strtol(buf, NULL, 10);
		if (saved == EWOULDBLOCK && pid > 0)
			snprintf(err, errlen, "another cohortd is running: pid %ld holds %s "
				 "(stop it, or use another %s)", pid, path, dir_key);
		else if (saved == EWOULDBLOCK)
			snprintf(err, errlen, "another cohortd is running: %s is locked "
				 "(stop it, or use another %s)", path, dir_key);
		else
			snprintf(err, errlen, "%s: lock: %s", path, strerror(saved));
		close(fd);
		free(path);
		return -1;
	}
	char buf[32];
	int len = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)len, 0) != len)
		log_warn(NULL, "%s: cannot write our pid: %s", path, strerror(errno));
	free(path);
	*fd_out = fd;
	return 0;
}

int instance_lock(const char *run_dir, int *fd_out, char *err, size_t errlen)
{
	return lock_file(run_dir, LOCK_FILE, "run_dir", false, fd_out, err, errlen) == 0 ? 0 : -1;
}

/*
 * Two cohortds on one state_dir (each with its own run_dir, both on the
 * default /var/lib/cohort) would append to one bus journal segment and
 * hand out the same lock tokens.  The lock is taken after run_dir's and
 * before the journal or lock.tokens is opened.  A full disk may refuse
 * even an empty file: then we run unlocked with a warning, as the rest of
 * the full-disk path runs without locks and durable publishes.
 */
int instance_lock_state(const char *state_dir, int *fd_out, char *err, size_t errlen)
{
	int rc = lock_file(state_dir, STATE_LOCK_FILE, "state_dir", true, fd_out, err, errlen);

	if (rc == 1)
		log_warn(NULL, "%s: running without the state_dir lock: nothing stops another "
			 "cohortd from using this state_dir", err);
	return rc < 0 ? -1 : 0;
}

/* The file stays (removing a lock file races with the next taker); an
 * empty one says nobody holds it. */
void instance_unlock(int fd)
{
	if (fd < 0)
		return;
	(void)ftruncate(fd, 0);
	close(fd);
}

/* --- /proc ------------------------------------------------------------------ */

struct proc_stat {
	char state;			/* R S D Z T ... */
	pid_t pgrp;
	unsigned long long start;	/* clock ticks after boot */
};

/* 0, or -1 when pid is gone (or /proc cannot say). */
static int proc_stat_read(pid_t pid, struct proc_stat *ps)
{
	char id[24], buf[1024];

	snprintf(id, sizeof(id), "%d", (int)pid);
	/* Fields 3 (state), 5 (pgrp) and 22 (starttime). */
	const char *p = proc_stat_fields(id, buf, sizeof(buf));
	int pgrp;
	if (!p || sscanf(p, " %c %*d %d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d "
			 "%*d %*d %llu", &ps->state, &pgrp, &ps->start) != 3)
		return -1;
	ps->pgrp = pgrp;
	return 0;
}

/* Start time of pid, a child not reaped yet (so its pid is not anyone
 * else's): 0 when /proc cannot say.  Its group is not checked: after a
 * fork (valgrind turns our vfork into one) the child may not have called
 * setsid yet, and a record of 0 would leave it running after a crash. */
static unsigned long long child_start(pid_t pid)
{
	struct proc_stat ps;

	return proc_stat_read(pid, &ps) < 0 ? 0 : ps.start;
}

/* --- the record --------------------------------------------------------------- */

#define GROUPS_HEADER "# pgid start_ticks stop_signal stop_timeout_ms service\n"
#define GROUPS_SLACK 64	/* ended groups a record may name beyond as many as live ones */

static void record_line(struct sbuf *b, struct service *s)
{
	if (!svc_live(s))
		return;
	/* Read once per spawn: the leader's start time does not change. */
	if (s->recorded_pid != s->pid) {
		s->recorded_pid = s->pid;
		s->recorded_start = child_start(s->pid);
	}
	/* A daemon adopted from its PID file (pidfile) may lead no group:
	 * its group is recorded with its own start, which the group's live
	 * members started at or after. */
	sbuf_addf(b, "%d %llu %d %" PRId64 " %s\n", (int)(svc_pgid(s) > 0 ? s->pgid : s->pid), s->recorded_start,
		  s->cfg->stop_signal, s->cfg->stop_timeout_ms, s->name);
}

/* The whole record, of the groups that live now; false on failure. */
static bool groups_rewrite(struct cohortd *d, const char *path)
{
	struct sbuf b = {0};

	sbuf_adds(&b, GROUPS_HEADER);
	for (size_t i = 0; d->sup.svcs && i < d->sup.plan->n; i++)
		record_line(&b, d->sup.svcs[i]);
	for (size_t i = 0; i < d->sup.nleaving; i++)
		record_line(&b, d->sup.leaving[i]);

	char *tmp = xasprintf("%s.new", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	bool ok = fd >= 0 && write(fd, b.buf, b.len) == (ssize_t)b.len;
	if (fd >= 0 && close(fd) < 0)
		ok = false;
	if (ok && rename(tmp, path) < 0)
		ok = false;
	if (!ok)
		unlink(tmp);
	d->groups_lines = 1 + d->sup.nlive;
	free(tmp);
	sbuf_free(&b);
	return ok;
}

/* This iteration's starts and ends, at the end of the record. */
static bool groups_append(struct cohortd *d, const char *path)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
	bool ok = fd >= 0 && write(fd, d->groups_add.buf, d->groups_add.len) == (ssize_t)d->groups_add.len;

	if (fd >= 0 && close(fd) < 0)
		ok = false;
	for (size_t i = 0; i < d->groups_add.len; i++)
		d->groups_lines += d->groups_add.buf[i] == '\n';
	return ok;
}

static void groups_write(struct cohortd *d)
{
	char *path = xasprintf("%s/%s", d->run_dir, GROUPS_FILE);
	size_t adds = 0;

	for (size_t i = 0; i < d->groups_add.len; i++)
		adds += d->groups_add.buf[i] == '\n';
	/* Whole when asked, when the last write failed (what it held is
	 * lost), and when ended groups would outnumber the live ones. */
	bool whole = d->groups_whole || d->groups_write_failed || d->groups_lines == 0 ||
		     d->groups_lines + adds > 2 * (1 + d->sup.nlive) + GROUPS_SLACK;
	bool ok = whole ? groups_rewrite(d, path) : groups_append(d, path);
	d->groups_add.len = 0;
	d->groups_whole = false;
	if (!ok) {
		/* Once per failure streak: this runs at every spawn and exit. */
		if (!d->groups_write_failed)
			log_warn(NULL, "%s: %s: a cohortd started after a crash of this one may "
				 "not find its services", path, strerror(errno));
	} else if (d->groups_write_failed) {
		log_info(NULL, "%s written again", path);
	}
	d->groups_write_failed = !ok;
	free(path);
}

/* Before the loop waits: the spawns and exits of this iteration, in one
 * write.  A kill -9 can only come while the loop waits, or in the
 * iteration that changed what runs. */
static void groups_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	struct cohortd *d = container_of(w, struct cohortd, groups_w);
	(void)revents;

	ev_prepare_stop(loop, w);
	groups_write(d);
}

static void write_soon(struct cohortd *d)
{
	if (ev_is_active(&d->groups_w))
		return;
	ev_prepare_init(&d->groups_w, groups_cb);
	ev_prepare_start(d->loop, &d->groups_w);
}

void instance_record(struct cohortd *d)
{
	d->groups_whole = true;
	write_soon(d);
}

/* What an iteration adds is written early once it passes GROUPS_ADD_MAX:
 * the start of 10,000 services in one iteration made a buffer of half a
 * megabyte, kept for good.  The record reads the same: a line is there
 * sooner, never later. */
#define GROUPS_ADD_MAX 65536

static void added(struct cohortd *d)
{
	if (d->groups_add.len >= GROUPS_ADD_MAX)
		groups_write(d);
	write_soon(d);
}

void instance_started(struct cohortd *d, struct service *s)
{
	record_line(&d->groups_add, s);
	added(d);
}

void instance_ended(struct cohortd *d, struct service *s)
{
	if (s->recorded_pid > 0)
		sbuf_addf(&d->groups_add, "-%d %llu\n", (int)s->recorded_pid, s->recorded_start);
	s->recorded_pid = 0;
	added(d);
}

void instance_forget(struct cohortd *d)
{
	char *path = xasprintf("%s/%s", d->run_dir, GROUPS_FILE);

	ev_prepare_stop(d->loop, &d->groups_w);
	sbuf_free(&d->groups_add);

	if (unlink(path) < 0 && errno != ENOENT)
		log_warn(NULL, "%s: %s", path, strerror(errno));
	free(path);
}

/* --- the sweep at start ------------------------------------------------------ */

/* A group a previous cohortd recorded. */
struct leftover {
	pid_t pgid;
	unsigned long long start;
	int sig;
	int64_t timeout_ms;
	char name[128];
	int64_t deadline;	/* monotonic ms: KILL, or give up once killed */
	bool leader_gone;	/* what it started still runs in its group */
	bool alive;		/* at the last look at /proc (groups_look) */
	bool killed;
	bool done;
};

static int leftover_cmp(const void *a, const void *b)
{
	const struct leftover *x = a, *y = b;

	return (x->pgid > y->pgid) - (x->pgid < y->pgid);
}

/*
 * One pass over /proc for every group at once (ls sorted by pgid): alive
 * is set on each group of which something lives (zombies do not count:
 * they are not ours to reap) that started at or after its leader, so the
 * group of a recycled pid is not taken for ours.  A pass per group would
 * cost groups x processes reads every tick: minutes for 2,000 services.
 */
static void groups_look(struct leftover *ls, size_t n)
{
	DIR *dh = opendir("/proc");
	struct dirent *e;

	for (size_t i = 0; i < n; i++)
		ls[i].alive = !dh && kill(-ls[i].pgid, 0) == 0;
	if (!dh)
		return;
	while ((e = readdir(dh))) {
		struct proc_stat ps;
		if (!isdigit((unsigned char)e->d_name[0]) ||
		    proc_stat_read((pid_t)atoi(e->d_name), &ps) < 0 || ps.state == 'Z')
			continue;
		struct leftover key = {.pgid = ps.pgrp};
		struct leftover *l = bsearch(&key, ls, n, sizeof(*ls), leftover_cmp);
		if (l && ps.start >= l->start)
			l->alive = true;
	}
	closedir(dh);
}

/* One line of the record; false when it is not one. */
static bool parse_leftover(const char *line, struct leftover *l)
{
	int pgid, sig, used = 0;

	*l = (struct leftover){0};
	if (sscanf(line, "%d %llu %d %" SCNd64 " %n", &pgid, &l->start, &sig, &l->timeout_ms,
		   &used) != 4 || used == 0 || pgid <= 1 || sig <= 0 || sig >= NSIG ||
	    l->timeout_ms < 0 || l->timeout_ms > TIMEOUT_MAX_MS || !line[used])
		return false;
	l->pgid = pgid;
	l->sig = sig;
	str_copy(l->name, sizeof(l->name), line + used);
	l->name[strcspn(l->name, "\n")] = '\0';
	return l->name[0] != '\0';
}

/*
 * Whether l's group is the one the previous cohortd started: its leader
 * lives and started when recorded, or the leader is gone and members
 * that started after it remain (what it forked, when the main process
 * died after cohortd).
 */
static bool leftover_is_ours(struct leftover *l)
{
	struct proc_stat ps;

	if (l->start == 0)
		return false;
	if (proc_stat_read(l->pgid, &ps) == 0 && ps.state != 'Z')
		return ps.pgrp == l->pgid && ps.start == l->start;
	l->leader_gone = true;
	return l->alive;
}

static void leftover_signal(struct leftover *l, int sig)
{
	if (kill(-l->pgid, sig) < 0 && errno != ESRCH)
		log_warn(l->name, "SIG%s to old process group %d: %s", signal_name(sig), l->pgid,
			 strerror(errno));
}

/* Stops l; false when that cannot be tried: a group of another user (a
 * record cohortd did not write, or a cohortd that ran as root) is left
 * alone at once rather than waited for until its KILL fails too. */
static bool leftover_stop(struct leftover *l)
{
	char dur[32];

	if (kill(-l->pgid, 0) < 0 && errno == EPERM) {
		log_error(l->name, "old process group %d still runs but is another user's: left alone "
			  "(a cohortd of that user, or root, can stop it)", l->pgid);
		return false;
	}

	format_duration_ms(l->timeout_ms, dur, sizeof(dur));
	log_warn(l->name, "old pid %d, left by a cohortd that ended without stopping it, %s: "
		 "SIG%s to its process group, KILL after %s", l->pgid,
		 l->leader_gone ? "is gone but its process group still runs" : "still runs",
		 signal_name(l->sig), dur);
	leftover_signal(l, l->sig);
	/* A stopped (SIGSTOP) process would not act on the signal until KILL. */
	if (l->sig != SIGCONT && l->sig != SIGKILL)
		leftover_signal(l, SIGCONT);
	l->deadline = now_mono_ms() + l->timeout_ms;
	return true;
}

/* One look at l; true while it needs more waiting. */
static bool leftover_step(struct leftover *l, int64_t now)
{
	if (!l->alive) {
		log_info(l->name, "old pid %d has stopped", l->pgid);
		return false;
	}
	if (now < l->deadline)
		return true;
	if (!l->killed) {
		log_warn(l->name, "old pid %d still runs after stop_timeout: KILL to its process group",
			 l->pgid);
		leftover_signal(l, SIGKILL);
		l->killed = true;
		l->deadline = now + KILL_GRACE_MS;
		return true;
	}
	log_error(l->name, "old process group %d still runs after KILL; starting anyway", l->pgid);
	return false;
}

/* Sorted by pgid (for groups_look's bsearch), each pgid once: a file we
 * did not write could name one twice.  The new count. */
static size_t sort_leftovers(const char *path, struct leftover *ls, size_t n)
{
	size_t kept = 0;

	if (n == 0)
		return 0;	/* ls is NULL: not for qsort */
	qsort(ls, n, sizeof(*ls), leftover_cmp);
	for (size_t i = 0; i < n; i++) {
		if (kept > 0 && ls[kept - 1].pgid == ls[i].pgid) {
			log_warn(ls[i].name, "%s: process group %d is named twice: the first is used", path,
				 ls[i].pgid);
			continue;
		}
		ls[kept++] = ls[i];
	}
	return kept;
}

/* "-PGID START": the group recorded earlier with that start has ended
 * (found through last, pgid -> 1 + its index); false when it is no such
 * line. */
static bool leftover_ended(const char *line, struct leftover *ls, struct intmap *last)
{
	int pgid, used = 0;
	unsigned long long start;

	if (sscanf(line, "-%d %llu%n", &pgid, &start, &used) != 2 || used == 0 ||
	    (line[used] && line[used] != '\n') || pgid <= 1)
		return false;
	size_t at = (size_t)(uintptr_t)intmap_get(last, pgid);
	if (at && ls[at - 1].start == start) {
		ls[at - 1].done = true;	/* dropped before the sort */
		intmap_del(last, pgid);
	}
	return true;
}

static size_t read_leftovers(const char *path, struct leftover **out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	struct stat st;
	size_t n = 0, cap = 0, lineno = 0, kept = 0;
	struct intmap last = {0};	/* pgid -> 1 + index of its latest line */
	char line[512];

	*out = NULL;
	if (fd < 0) {
		if (errno != ENOENT)
			log_warn(NULL, "%s: %s: services a killed cohortd left are not looked for", path,
				 strerror(errno));
		return 0;
	}
	/* It names groups to signal: only a file of our own user is trusted. */
	if (fstat(fd, &st) < 0 || st.st_uid != geteuid() || (st.st_mode & 022)) {
		log_warn(NULL, "%s: not owned by us or writable by others: ignored", path);
		close(fd);
		return 0;
	}
	FILE *f = fdopen(fd, "r");
	if (!f) {
		close(fd);
		return 0;
	}
	while (fgets(line, sizeof(line), f)) {
		struct leftover l;
		lineno++;
		if (line[0] == '#' || (line[0] == '-' && leftover_ended(line, *out, &last)))
			continue;
		if (!parse_leftover(line, &l)) {
			log_warn(NULL, "%s:%zu: not a process group record: ignored", path, lineno);
			continue;
		}
		if (n == cap) {
			cap = cap ? 2 * cap : 8;
			*out = xrealloc(*out, cap * sizeof(**out));
		}
		(*out)[n++] = l;
		intmap_put(&last, l.pgid, (void *)(uintptr_t)n);
	}
	fclose(f);
	intmap_free(&last);
	for (size_t i = 0; i < n; i++)
		if (!(*out)[i].done)
			(*out)[kept++] = (*out)[i];
	return sort_leftovers(path, *out, kept);
}

void instance_sweep(const char *run_dir)
{
	char *path = xasprintf("%s/%s", run_dir, GROUPS_FILE);
	struct leftover *ls;
	size_t n = read_leftovers(path, &ls), pending = 0;
	struct timespec tick = {0, 20 * 1000 * 1000};

	if (n)
		groups_look(ls, n);
	for (size_t i = 0; i < n; i++) {
		if (!leftover_is_ours(&ls[i])) {
			ls[i].done = true;
			log_debug(ls[i].name, "old process group %d is gone (or its pid is another "
				  "process's now): left alone", ls[i].pgid);
		} else if (leftover_stop(&ls[i])) {
			pending++;
		} else {
			ls[i].done = true;
		}
	}
	/* Before the loop, and bounded: every group has a deadline. */
	while (pending) {
		nanosleep(&tick, NULL);
		groups_look(ls, n);
		int64_t now = now_mono_ms();
		for (size_t i = 0; i < n; i++) {
			if (!ls[i].done && !leftover_step(&ls[i], now)) {
				ls[i].done = true;
				pending--;
			}
		}
	}
	free(ls);
	free(path);
}
