/*
 * pgroup.c - process groups as /proc shows them: whether one still lives,
 * and whether a uid may signal all of it (see pgroup.h).
 */
#include "autoconfig.h"

#include <dirent.h>
#include <fcntl.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "pgroup.h"

const char *proc_stat_fields(const char *pid, char *buf, size_t len)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%s/stat", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	ssize_t n = read(fd, buf, len - 1);
	close(fd);
	if (n <= 0)
		return NULL;
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	return p ? p + 1 : NULL;
}

/* One process from /proc: its group, and whether uid may signal it.
 * -1: gone, or a zombie (a zombie does no work, and a slow reaper must
 * not hold the lock). */
static int proc_read(const char *pid, pid_t *pgrp, uid_t uid, bool *owned)
{
	char path[64], buf[1024], state;
	FILE *f;
	const char *p = proc_stat_fields(pid, buf, sizeof(buf));
	int ppid, pg;

	if (!p || sscanf(p, " %c %d %d", &state, &ppid, &pg) != 3 || state == 'Z' || state == 'X')
		return -1;
	*pgrp = pg;
	*owned = uid == 0;
	if (*owned)
		return 0;
	snprintf(path, sizeof(path), "/proc/%s/status", pid);
	if (!(f = fopen(path, "re")))
		return -1;
	unsigned real, eff, saved;
	while (fgets(buf, sizeof(buf), f))
		if (sscanf(buf, "Uid: %u %u %u", &real, &eff, &saved) == 3) {
			*owned = real == uid || saved == uid;
			break;
		}
	fclose(f);
	return 0;
}

/* The live processes of group pgid; *foreign: how many of them uid may
 * not signal. */
int pgroup_scan(pid_t pgid, uid_t uid, int *foreign)
{
	DIR *dir = opendir("/proc");
	struct dirent *e;
	int live = 0;

	*foreign = 0;
	if (!dir)
		return -1;
	while ((e = readdir(dir))) {
		pid_t pg;
		bool owned;
		if (e->d_name[0] < '1' || e->d_name[0] > '9' || proc_read(e->d_name, &pg, uid, &owned) < 0 ||
		    pg != pgid)
			continue;
		live++;
		*foreign += !owned;
	}
	closedir(dir);
	return live;
}

/* Whether a process of the group still lives: the cheap look first. */
bool pgroup_alive(pid_t pgid)
{
	int foreign;

	if (kill(-pgid, 0) < 0 && errno == ESRCH)
		return false;
	return pgroup_scan(pgid, 0, &foreign) != 0;
}

int pgroup_check(pid_t pgid, uid_t uid, char *err, size_t errlen)
{
	int foreign = 0, live;

	if (pgid == getpgrp()) {
		snprintf(err, errlen, "process group %d is cohortd's own", (int)pgid);
		return -1;
	}
	if (uid == 0 && geteuid() == 0)	/* the usual case, without a look at /proc */
		live = kill(-pgid, 0) == 0;
	else
		live = pgroup_scan(pgid, uid, &foreign);
	if (live <= 0) {
		snprintf(err, errlen, "no process group %d%s", (int)pgid,
			 live < 0 ? " (cannot read /proc)" : "");
		return -1;
	}
	if (foreign) {
		snprintf(err, errlen, "process group %d is not yours: %d of its processes run as "
			 "another user", (int)pgid, foreign);
		return -1;
	}
	if (geteuid() != 0 && (pgroup_scan(pgid, geteuid(), &foreign) < 0 || foreign)) {
		snprintf(err, errlen, "cohortd runs as uid %u and could not stop process group %d "
			 "if the lease were lost", (unsigned)geteuid(), (int)pgid);
		return -1;
	}
	return 0;
}

