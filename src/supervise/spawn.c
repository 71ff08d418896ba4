/*
 * spawn.c - see spawn.h.
 *
 * The child is made with vfork(): it borrows cohortd's memory until it
 * execs, so starting a service costs no copy of cohortd's page tables
 * (restart latency is a hot path).  The rules that come with it:
 *  - every signal is blocked around vfork, and the child puts every
 *    disposition back to default before it unblocks anything, so none of
 *    cohortd's handlers can ever run on the shared memory;
 *  - the child only makes async-signal-safe calls and writes nothing but
 *    its own stack: argv, envp, uid/gid/groups and PATH are prepared by the
 *    parent, and a failure goes back as a {stage, errno} pair on the status
 *    pipe, which the parent turns into words;
 *  - set*id go to the kernel directly: glibc's wrappers would try to change
 *    the ids of cohortd's other threads too.
 */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "spawn.h"
#include "util.h"

enum stage { ST_SETSID = 1, ST_DUP, ST_CHDIR, ST_GROUPS, ST_GID, ST_UID, ST_EXEC };

struct status_msg {
	int stage;
	int err;
};

int spawn_resolve_ids(const char *user, const char *group, struct spawn_ids *ids,
		      char *err, size_t errlen)
{
	struct passwd pw, *pwp = NULL;
	struct group gr, *grp = NULL;
	char buf[16384];
	int rc;

	*ids = (struct spawn_ids){0};
	rc = getpwnam_r(user, &pw, buf, sizeof(buf), &pwp);
	if (!pwp) {
		snprintf(err, errlen, "no such user \"%s\"%s%s", user, rc ? ": " : "",
			 rc ? strerror(rc) : "");
		errno = rc;	/* EMFILE reading /etc/passwd is not a missing user */
		return -1;
	}
	ids->uid = pw.pw_uid;
	ids->gid = pw.pw_gid;
	ids->name = xstrdup(pw.pw_name);
	ids->home = xstrdup(pw.pw_dir);
	if (group) {
		rc = getgrnam_r(group, &gr, buf, sizeof(buf), &grp);
		if (!grp) {
			snprintf(err, errlen, "no such group \"%s\"%s%s", group, rc ? ": " : "",
				 rc ? strerror(rc) : "");
			spawn_ids_free(ids);
			errno = rc;
			return -1;
		}
		ids->gid = gr.gr_gid;
	}
	int n = 32;
	ids->groups = xmalloc((size_t)n * sizeof(gid_t));
	if (getgrouplist(ids->name, ids->gid, ids->groups, &n) < 0) {
		ids->groups = xrealloc(ids->groups, (size_t)n * sizeof(gid_t));
		if (getgrouplist(ids->name, ids->gid, ids->groups, &n) < 0)
			n = 0;
	}
	ids->ngroups = n;
	return 0;
}

void spawn_ids_free(struct spawn_ids *ids)
{
	free(ids->groups);
	free(ids->name);
	free(ids->home);
	*ids = (struct spawn_ids){0};
}

static void child_fail(int fd, int stage, int err)
{
	struct status_msg m = {stage, err};

	(void)!write(fd, &m, sizeof(m));
	_exit(127);
}

/* execve along PATH, remembering the most telling error, as execvp does;
 * written with stack buffers only (we are between fork and exec). */
static void child_exec(const struct spawn_spec *sp, int fd)
{
	const char *prog = sp->argv[0];
	const char *path = sp->path ? sp->path : "/usr/local/bin:/usr/bin:/bin";
	char buf[4096];
	int seen_eacces = 0, last = ENOENT;

	if (strchr(prog, '/')) {
		execve(prog, sp->argv, sp->envp);
		child_fail(fd, ST_EXEC, errno);
	}
	size_t plen = strlen(prog);
	for (const char *p = path;; p++) {
		const char *end = strchr(p, ':');
		size_t dlen = end ? (size_t)(end - p) : strlen(p);
		if (dlen + plen + 2 <= sizeof(buf)) {
			if (dlen == 0) {
				buf[0] = '.';
				dlen = 1;
			} else {
				memcpy(buf, p, dlen);
			}
			buf[dlen] = '/';
			memcpy(buf + dlen + 1, prog, plen + 1);
			execve(buf, sp->argv, sp->envp);
			if (errno == EACCES)
				seen_eacces = 1;
			else if (errno != ENOENT && errno != ENOTDIR)
				last = errno;
		}
		if (!end)
			break;
		p = end;
	}
	child_fail(fd, ST_EXEC, seen_eacces && last == ENOENT ? EACCES : last);
}

static void child(const struct spawn_spec *sp, int fd)
{
	sigset_t none;
	struct sigaction dfl = {.sa_handler = SIG_DFL};

	/* Dispositions first (signals are still blocked), then the mask. */
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			sigaction(sig, &dfl, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (setsid() < 0)
		child_fail(fd, ST_SETSID, errno);
	if (dup2(sp->fd_in, 0) < 0 || dup2(sp->fd_out, 1) < 0 || dup2(sp->fd_err, 2) < 0)
		child_fail(fd, ST_DUP, errno);
	if (fd != 3) {
		if (dup2(fd, 3) < 0)
			child_fail(fd, ST_DUP, errno);
		fd = 3;
	}
	fcntl(fd, F_SETFD, FD_CLOEXEC);
	if (syscall(SYS_close_range, 4u, ~0u, 0u) < 0) {
		long max = sysconf(_SC_OPEN_MAX);
		for (long i = 4; i < (max > 0 ? max : 65536); i++)
			close((int)i);
	}
	if (sp->dir && chdir(sp->dir) < 0)
		child_fail(fd, ST_CHDIR, errno);
	int st = spawn_limits_apply(&sp->limits);	/* while still root */
	if (st)
		child_fail(fd, st, errno);
	if (sp->ids) {
		if (syscall(SYS_setgroups, (size_t)sp->ids->ngroups, sp->ids->groups) < 0)
			child_fail(fd, ST_GROUPS, errno);
		if (syscall(SYS_setgid, sp->ids->gid) < 0)
			child_fail(fd, ST_GID, errno);
		if (syscall(SYS_setuid, sp->ids->uid) < 0)
			child_fail(fd, ST_UID, errno);
	}
	if (sp->set_umask)
		umask(sp->umask);	/* async-signal-safe, and cannot fail */
	child_exec(sp, fd);
}

int spawn_start(const struct spawn_spec *sp, pid_t *pid, int *status_fd, char *err, size_t errlen)
{
	int p[2];

	if (pipe2(p, O_CLOEXEC) < 0) {
		int saved = errno;
		snprintf(err, errlen, "pipe: %s", strerror(saved));
		errno = saved;
		return -1;
	}
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pid_t child_pid = vfork();
	if (child_pid == 0) {
		close(p[0]);
		child(sp, p[1]);
	}
	int saved = errno;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (child_pid < 0) {
		snprintf(err, errlen, "vfork: %s", strerror(saved));
		close(p[0]);
		close(p[1]);
		errno = saved;
		return -1;
	}
	close(p[1]);
	set_nonblock(p[0]);
	*pid = child_pid;
	*status_fd = p[0];
	return 0;
}

bool spawn_transient(int err)
{
	return err == EMFILE || err == ENFILE || err == EAGAIN || err == ENOMEM;
}

int spawn_read_status(int fd, const struct spawn_spec *sp, char *reason, size_t len, int *err)
{
	struct status_msg m;
	ssize_t n;

	do
		n = read(fd, &m, sizeof(m));
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EAGAIN ? -1 : 0;
	if (n == 0)
		return 0;
	if (n != sizeof(m)) {
		snprintf(reason, len, "start failed (short status)");
		*err = 0;
		return 1;
	}
	*err = m.err;
	if (spawn_limits_reason(m.stage, &sp->limits, m.err, reason, len))
		return 1;
	const char *e = strerror(m.err);
	switch (m.stage) {
	case ST_SETSID:
		snprintf(reason, len, "setsid: %s", e);
		break;
	case ST_DUP:
		snprintf(reason, len, "setting up stdin/stdout/stderr: %s", e);
		break;
	case ST_CHDIR:
		snprintf(reason, len, "chdir %s: %s", sp->dir ? sp->dir : "?", e);
		break;
	case ST_GROUPS:
		snprintf(reason, len, "setgroups: %s", e);
		break;
	case ST_GID:
		snprintf(reason, len, "setgid %u: %s", sp->ids ? (unsigned)sp->ids->gid : 0, e);
		break;
	case ST_UID:
		snprintf(reason, len, "setuid %u: %s", sp->ids ? (unsigned)sp->ids->uid : 0, e);
		break;
	default:
		snprintf(reason, len, "exec %s: %s", sp->argv[0], e);
		break;
	}
	return 1;
}
