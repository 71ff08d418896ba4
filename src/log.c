/*
 * log.c - see log.h.  Each line is formatted whole and written with one
 * write(2), so lines from cohortd never interleave mid-line with the
 * output of services that inherit stderr.  The log file is opened with
 * O_APPEND (logrotate's copytruncate works too) and close-on-exec, so no
 * service inherits it.
 */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static enum log_level log_min = LOG_INFO;
static int file_fd = -1;		/* the log file, or -1 */
static char *file_path;
static bool file_pinned;		/* named on the command line */

int log_file_open(const char *path, bool pinned)
{
	int fd = -1;

	if (path && (fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640)) < 0)
		return -1;
	if (file_fd >= 0)
		close(file_fd);
	free(file_path);
	file_fd = fd;
	file_path = path ? xstrdup(path) : NULL;
	file_pinned = pinned && path;
	return 0;
}

int log_file_configure(const char *path)
{
	if (file_pinned || (path && file_path ? strcmp(path, file_path) == 0 : path == file_path))
		return 0;
	return log_file_open(path, false);
}

int log_file_reopen(void)
{
	if (!file_path)
		return 0;
	char *path = xstrdup(file_path);
	int rc = log_file_open(path, file_pinned);
	free(path);
	return rc;
}

const char *log_file_path(void)
{
	return file_path;
}

static void write_all(int fd, const char *p, size_t len)
{
	while (len) {
		ssize_t w = write(fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		p += w;
		len -= (size_t)w;
	}
}

void log_set_level(enum log_level min)
{
	log_min = min;
}

bool log_enabled(enum log_level level)
{
	return level >= log_min;
}

void log_msg(enum log_level level, const char *svc, const char *fmt, ...)
{
	static const char *const names[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};
	char ts[40], line[2048];
	va_list ap;
	int saved = errno;

	if (level < log_min)
		return;
	format_wall_ms(now_wall_ms(), ts, sizeof(ts));
	int n = snprintf(line, sizeof(line), "%s %s %s: ", ts, names[level], svc ? svc : "cohortd");
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
	if (len > sizeof(line) - 2)
		len = sizeof(line) - 2;
	line[len++] = '\n';
	write_all(STDERR_FILENO, line, len);
	if (file_fd >= 0)	/* a full disk loses these lines, not the stderr ones */
		write_all(file_fd, line, len);
	errno = saved;
}
