/*
 * journal_fork.c - a compaction written by a child process (see journal.h,
 * jrnl_fork_compact).
 *
 * Written by the loop, a snapshot of a large live state held it for as
 * long as writing took: a second for 30 MB, which every publish waited
 * for.  A forked child has the state as it was at the fork, for free
 * (copy on write), and the loop goes on at once.  The fork is the cut:
 * under the writer's io lock (the writer idle, nothing half written), what
 * was appended so far goes to `before` and cut is set; the writer writes
 * it, closes the segment and makes an empty one, whose id (snap_id) the
 * snapshot takes, so the records appended after the fork are in the
 * segments after it.  The child reads the spilled records as the files
 * were at the fork (read_limited), writes SNAP_NEW, syncs it (not the
 * writer: publishes wait for the writer), and reports its size through
 * a pipe; the loop then asks the writer to install it (rename to
 * <snap_id>.snap, drop the empty segment and everything before it).
 *
 * A crash at any point leaves either the old files (with an empty
 * segment among them: the ids stay consecutive) or the snapshot and the
 * segments after it.
 */
#include "autoconfig.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "journal_impl.h"
#include "log.h"

bool jrnl_fork_cut(struct journal *j)
{
	/* Empty, it holds the snapshot's place: the next write opens the
	 * segment after it.  The directory is not synced for it: the next
	 * segment's making does that, and without one nothing follows the
	 * gap a lost placeholder would leave. */
	char *path = jrnl_seg_path(j, j->next_id, "seg");
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	int err = errno;

	free(path);
	if (fd < 0 || jrnl_write_all(fd, jrnl_magic, sizeof(jrnl_magic)) < 0) {
		err = errno;
		if (fd >= 0)
			close(fd);
		jrnl_write_failed(j, "opening a segment", err);
		return false;
	}
	close(fd);
	if (j->fd >= 0)
		close(j->fd);
	j->fd = -1;
	j->seg_size = 0;
	j->snap_id = j->next_id++;
	return true;
}

bool jrnl_fork_install(struct journal *j)
{
	char *tmp = xasprintf("%s/" SNAP_NEW, j->dir);
	char *final = jrnl_seg_path(j, j->snap_id, "snap");
	char *holder = jrnl_seg_path(j, j->snap_id, "seg");
	bool ok = false;

	/* The child synced it (it reports a failed sync as a failure). */
	if (rename(tmp, final) < 0) {
		int err = errno;
		unlink(tmp);
		jrnl_write_failed(j, "installing a compacted snapshot", err);
		goto out;
	}
	unlink(holder);
	jrnl_fsync_dir(j->dir);
	/* Before the snapshot: gone.  After it: the records since the fork. */
	size_t n;
	uint64_t size = 0;
	struct seg *segs = jrnl_list_segments(j, &n, JRNL_PRUNE_LATER);
	for (size_t i = 0; i < n; i++) {
		char *p = jrnl_seg_path(j, segs[i].id, segs[i].snap ? "snap" : "seg");
		struct stat st;
		if (stat(p, &st) == 0)
			size += (uint64_t)st.st_size;
		free(p);
	}
	free(segs);
	pthread_mutex_lock(&j->lock);
	j->size = size;
	pthread_mutex_unlock(&j->lock);
	ok = true;
out:
	free(tmp);
	free(final);
	free(holder);
	return ok;
}

/* Closes every descriptor from `from` on but keep: a connection or a
 * pipe cohortd closes must not stay open in the child for seconds (its
 * peer would not see the end). */
static void close_from(int from, int keep)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d))) {
		int fd = atoi(e->d_name);
		if (fd >= from && fd != keep && fd != dirfd(d) && e->d_name[0] != '.')
			close(fd);
	}
	closedir(d);
}

/* The child: the snapshot, its size (0: failed) through fd, and out. */
static void child_main(struct journal *j, int fd, pid_t parent, jrnl_snap_fn fn, void *arg)
{
	static const int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGCHLD, SIGUSR1, SIGUSR2, SIGPIPE};
	sigset_t none;

	/* Not left writing for a cohortd that is gone; its signal handlers
	 * would wake cohortd's loop through the pipe they share. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(1);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		signal(sigs[i], SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	close_from(3, fd);
	/* The parent held both at the fork: they are this thread's. */
	pthread_mutex_init(&j->io, NULL);
	pthread_mutex_init(&j->lock, NULL);
	j->read_limited = true;
	struct jrnl_snap *s = jrnl_snap_begin(j);
	jrnl_snap_trickle(s);
	fn(arg, s);
	uint64_t bytes = jrnl_snap_close(s, true);
	ssize_t w = write(fd, &bytes, sizeof(bytes));
	_exit(w == (ssize_t)sizeof(bytes) ? 0 : 1);
}

/*
 * The child has reported (or is killed): it is done with.  Its exit takes
 * a while: the kernel unmaps the copy of cohortd it had, ~20 ms for 500
 * MB, and waiting for it there held every publish.  The default loop reaps
 * every child itself (its SIGCHLD handler), so there it is left to end on
 * its own; elsewhere, or killed, it is waited for.
 */
static void reap(struct journal *j, bool wait)
{
	ev_io_stop(j->loop, &j->child_w);
	close(j->child_fd);
	j->child_fd = -1;
	if (wait || !ev_is_default_loop(j->loop)) {
		/* The default loop's SIGCHLD handler may have reaped it already. */
		while (waitpid(j->child, NULL, 0) < 0 && errno == EINTR)
			;
	}
	j->child = 0;
}

static void child_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct journal *j = container_of(w, struct journal, child_w);
	uint64_t bytes = 0;
	(void)loop;
	(void)revents;

	ssize_t r = read(j->child_fd, &bytes, sizeof(bytes));
	if (r < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (r != (ssize_t)sizeof(bytes))
		bytes = 0;
	reap(j, false);
	pthread_mutex_lock(&j->lock);
	if (bytes) {
		j->install = true;
		pthread_cond_signal(&j->wake);
	} else {
		j->compacting = false;
		j->failed_compact_size = j->size;	/* no new try before it doubles */
	}
	pthread_mutex_unlock(&j->lock);
	if (!bytes) {
		char *path = xasprintf("%s/" SNAP_NEW, j->dir);
		log_error(NULL, "bus journal %s: the process writing a compacted snapshot failed (not "
			  "compacted)", path);
		unlink(path);
		free(path);
	}
	j->forked(j->forked_arg, bytes);
}

int jrnl_fork_compact(struct journal *j, jrnl_snap_fn fn, jrnl_forked_fn done, void *arg)
{
	int p[2];

	if (j->child)
		return 0;
	jrnl_handover(j);
	/* The writer must be between two writes: nothing of what it holds may
	 * be half in a file and missing from memory in the child's copy. */
	if (pthread_mutex_trylock(&j->io) != 0)
		return 0;
	if (pipe2(p, O_CLOEXEC) < 0) {
		pthread_mutex_unlock(&j->io);
		return -1;
	}
	pthread_mutex_lock(&j->lock);
	if (j->pending.len) {
		sbuf_add(&j->before, j->pending.buf, j->pending.len);
		j->before_ticket = j->pending_ticket;
		sbuf_free(&j->pending);
	}
	/* What the child reads of the files: as they are now. */
	j->limit_seg = j->fd >= 0 ? j->seg_id : (j->next_id ? j->next_id - 1 : 0);
	j->limit_off = j->fd >= 0 ? j->seg_size : UINT64_MAX;
	pid_t parent = getpid(), pid = fork();
	if (pid == 0) {
		close(p[0]);
		child_main(j, p[1], parent, fn, arg);
	}
	int err = errno;
	if (pid > 0) {
		j->cut = true;
		j->compacting = true;
		pthread_cond_signal(&j->wake);
	}
	pthread_mutex_unlock(&j->lock);
	pthread_mutex_unlock(&j->io);
	close(p[1]);
	if (pid < 0) {
		close(p[0]);
		errno = err;
		return -1;
	}
	j->child = pid;
	j->child_fd = p[0];
	j->forked = done;
	j->forked_arg = arg;
	ev_io_init(&j->child_w, child_cb, p[0], EV_READ);
	ev_io_start(j->loop, &j->child_w);
	return 1;
}

void jrnl_fork_stop(struct journal *j)
{
	if (!j->child)
		return;
	kill(j->child, SIGKILL);
	reap(j, true);
	char *path = xasprintf("%s/" SNAP_NEW, j->dir);
	unlink(path);
	free(path);
	pthread_mutex_lock(&j->lock);
	j->compacting = false;
	pthread_mutex_unlock(&j->lock);
}
