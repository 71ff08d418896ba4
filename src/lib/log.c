/*
 * log.c - see log.h.  Each line is formatted whole and written with one
 * write(2), so lines from cohortd never interleave mid-line with the
 * output of services that inherit stderr.  The log file is opened with
 * O_APPEND (logrotate's copytruncate works too) and close-on-exec, so no
 * service inherits it.
 *
 * Repeats are counted, not written: a line identical to the last one
 * written (same level, service and text) within the same second of wall
 * time adds one to a count, and the count is written as one line ("...
 * repeated N times") before the next different line, or when the second
 * is over (log_flush_repeats, which cohortd calls from a timer the repeat
 * hook arms).  A flood of one error (an accept failing 200,000 times a
 * second) costs one line a second, and no line that differs from the one
 * before it is ever dropped.  Lines come from the loop and from the writer
 * threads (logfile.c, journal.c): one mutex orders them.
 */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static enum log_level log_min = LOG_INFO;
static int file_fd = -1;		/* the log file, or -1 */
static char *file_path;
static bool file_pinned;		/* named on the command line */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
/* The last line written, and how often it came again since. */
static struct {
	enum log_level level;
	char svc[64];
	char text[LOG_TEXT_MAX];
	int64_t second;		/* wall-clock second it was written in */
	unsigned long long repeats;
	bool valid;
} last;
static void (*repeat_hook)(void *);
static void *repeat_arg;

int log_file_open(const char *path, bool pinned)
{
	int fd = -1;

	if (path && (fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640)) < 0)
		return -1;
	/* Under the lock: the journal and log writer threads write lines
	 * too, and a descriptor closed under one of them could be reused by
	 * the next open() anywhere, its line going to a stranger's file. */
	pthread_mutex_lock(&lock);
	if (file_fd >= 0)
		close(file_fd);
	file_fd = fd;
	pthread_mutex_unlock(&lock);
	free(file_path);
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

static const char *const level_names[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};

/* One whole line, with one write(2) per destination. */
static void write_line(int64_t now_ms, enum log_level level, const char *svc, const char *text)
{
	char ts[40], line[LOG_TEXT_MAX + 128];

	format_wall_ms(now_ms, ts, sizeof(ts));
	int n = snprintf(line, sizeof(line) - 1, "%s %s %s: %s", ts, level_names[level], svc, text);
	size_t len = n < 0 ? 0 : (size_t)n > sizeof(line) - 2 ? sizeof(line) - 2 : (size_t)n;
	line[len++] = '\n';
	write_all(STDERR_FILENO, line, len);
	if (file_fd >= 0)	/* a full disk loses these lines, not the stderr ones */
		write_all(file_fd, line, len);
}

/* The count of the last line's repeats, if any (lock held). */
static void flush_repeats_locked(int64_t now_ms)
{
	char text[64];

	if (!last.valid || !last.repeats)
		return;
	snprintf(text, sizeof(text), "... repeated %llu time%s", last.repeats, last.repeats == 1 ? "" : "s");
	write_line(now_ms, last.level, last.svc, text);
	last.repeats = 0;
}

void log_write(int64_t now_ms, enum log_level level, const char *svc, const char *text)
{
	bool first_repeat = false;

	if (level < log_min)
		return;
	svc = svc ? svc : "cohortd";
	pthread_mutex_lock(&lock);
	int64_t second = now_ms / 1000;
	if (last.valid && last.level == level && last.second == second && strcmp(last.svc, svc) == 0 &&
	    strcmp(last.text, text) == 0) {
		first_repeat = last.repeats++ == 0;
	} else {
		flush_repeats_locked(now_ms);
		write_line(now_ms, level, svc, text);
		last.level = level;
		last.second = second;
		str_copy(last.svc, sizeof(last.svc), svc);
		str_copy(last.text, sizeof(last.text), text);
		last.valid = true;
	}
	void (*hook)(void *) = repeat_hook;
	void *arg = repeat_arg;
	pthread_mutex_unlock(&lock);
	if (first_repeat && hook)
		hook(arg);
}

bool log_flush_repeats(int64_t now_ms)
{
	pthread_mutex_lock(&lock);
	if (last.valid && now_ms / 1000 != last.second) {
		flush_repeats_locked(now_ms);
		last.valid = false;	/* the same line again is news in a new second */
	}
	bool pending = last.valid && last.repeats;
	pthread_mutex_unlock(&lock);
	return pending;
}

void log_set_repeat_hook(void (*fn)(void *), void *arg)
{
	pthread_mutex_lock(&lock);
	repeat_hook = fn;
	repeat_arg = arg;
	pthread_mutex_unlock(&lock);
}

void log_msg(enum log_level level, const char *svc, const char *fmt, ...)
{
	char text[LOG_TEXT_MAX];
	va_list ap;
	int saved = errno;

	if (level < log_min)
		return;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	log_write(now_wall_ms(), level, svc, text);
	errno = saved;
}
