/*
 * spawn.h - start a child the way a supervisor must: its own session and
 * process group, chosen fds on 0-2 and nothing else open, default signal
 * handling, working directory, user and groups, and an exec that reports
 * its failure back through a close-on-exec pipe, so a program that could
 * not be started is never taken for a running one.
 */
#ifndef COHORT_SPAWN_H
#define COHORT_SPAWN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "spawn_limits.h"

/* Who to run as (resolved in the parent, before fork). */
struct spawn_ids {
	uid_t uid;
	gid_t gid;
	gid_t *groups;
	int ngroups;
	char *name;		/* user name, for USER/LOGNAME */
	char *home;
};

struct spawn_spec {
	char *const *argv;
	char *const *envp;
	const char *dir;	/* NULL: stay */
	int fd_in, fd_out, fd_err;
	const struct spawn_ids *ids;	/* NULL: keep cohortd's */
	const char *path;	/* PATH to search argv[0] in, if it has no '/' */
	bool set_umask;		/* false: the child keeps cohortd's umask */
	mode_t umask;
	struct spawn_limits limits;	/* zero: the child keeps cohortd's */
};

/* Resolves user (and group, if given) into ids.  -1 with err filled
 * ("no such user \"x\"") and errno set (0: there is no such user). */
int spawn_resolve_ids(const char *user, const char *group, struct spawn_ids *ids,
		      char *err, size_t errlen);
void spawn_ids_free(struct spawn_ids *ids);

/* Forks and execs.  On success *pid is the child and *status_fd the read
 * end of the exec-status pipe (non-blocking, close-on-exec).  -1 with err
 * and errno when fork or pipe fails. */
int spawn_start(const struct spawn_spec *sp, pid_t *pid, int *status_fd, char *err, size_t errlen);

/* Reads the exec-status pipe: 0 exec succeeded (EOF), 1 it failed (reason
 * filled, e.g. "exec foo: No such file or directory", and *err the errno
 * of the failed step), -1 nothing yet. */
int spawn_read_status(int fd, const struct spawn_spec *sp, char *reason, size_t len, int *err);

/* Is err a shortage that passes (descriptors, processes, memory), so that
 * the start is worth trying again soon, unlike a missing program? */
bool spawn_transient(int err);

#endif
