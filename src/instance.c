/*
 * instance.c - one cohortd per run_dir.
 *
 * run_dir/cohortd.pid is held with flock() for cohortd's whole life, and
 * taken before any other file is touched: a second cohortd on the same
 * run_dir is refused without having removed a socket of the first or
 * moved its lock token counter.  The kernel drops the lock when its
 * holder dies, however it dies, so a stale file never blocks a start.
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

#include "daemon.h"
#include "log.h"

#define LOCK_FILE "cohortd.pid"

/* --- the single-instance lock ---------------------------------------------- */

int instance_lock(const char *run_dir, int *fd_out, char *err, size_t errlen)
{
	char *path = xasprintf("%s/%s", run_dir, LOCK_FILE);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);

	*fd_out = -1;
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		free(path);
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int saved = errno;
		char buf[32] = "";
		ssize_t n = read(fd, buf, sizeof(buf) - 1);
		buf[n > 0 ? n : 0] = '\0';
		long pid = strtol(buf, NULL, 10);
		if (saved == EWOULDBLOCK && pid > 0)
			snprintf(err, errlen, "another cohortd is running: pid %ld holds %s "
				 "(stop it, or use another run_dir)", pid, path);
		else if (saved == EWOULDBLOCK)
			snprintf(err, errlen, "another cohortd is running: %s is locked "
				 "(stop it, or use another run_dir)", path);
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

/* The file stays (removing a lock file races with the next taker); an
 * empty one says nobody holds it. */
void instance_unlock(int fd)
{
	if (fd < 0)
		return;
	(void)ftruncate(fd, 0);
	close(fd);
}
