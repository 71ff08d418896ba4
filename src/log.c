/*
 * log.c - see log.h.  Each line is formatted whole and written with one
 * write(2), so lines from cohortd never interleave mid-line with the
 * output of services that inherit stderr.
 */
#include "autoconfig.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static enum log_level log_min = LOG_INFO;

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
	const char *p = line;
	while (len) {
		ssize_t w = write(STDERR_FILENO, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		p += w;
		len -= (size_t)w;
	}
	errno = saved;
}
