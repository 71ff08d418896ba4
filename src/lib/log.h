/*
 * log.h - cohortd's own log: one line per event on stderr,
 * "TIME LEVEL SERVICE: message", and in a file too when log_file (or
 * --log-file) names one.  Services' output goes elsewhere (logfile.c).
 */
#ifndef COHORT_LOG_H
#define COHORT_LOG_H

#include "util.h"

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Lines below min are not written (-v: debug, -q: warn). */
void log_set_level(enum log_level min);
bool log_enabled(enum log_level level);
/*
 * Also log to PATH (appended to, made 0640 if missing; NULL: stop).  0, or
 * -1 with errno and the file in use unchanged.  PINNED (the command line)
 * wins over every later log_file_configure.
 */
int log_file_open(const char *path, bool pinned);
/* A reload's log_file: opened when it changed, unless the command line
 * named the file.  0, or -1 with errno and the old file still in use. */
int log_file_configure(const char *path);
/* SIGUSR1, after logrotate moved the file: the same path again.  0 (also
 * when there is no file), or -1 with errno and the old file kept. */
int log_file_reopen(void);
const char *log_file_path(void);	/* NULL: stderr only */

#define LOG_TEXT_MAX 2000	/* a message's text is cut there */

/* svc may be NULL for the daemon itself.  A line identical to the one
 * before it within the same second is counted, not written (see log.c). */
void log_msg(enum log_level level, const char *svc, const char *fmt, ...) PRINTF(3, 4);

/* log_msg with the time given: the clock-free core, for tests. */
void log_write(int64_t now_ms, enum log_level level, const char *svc, const char *text);
/* Writes the count of repeats of the last line once its second is over
 * (NOW_MS).  True while a count waits: call again a second later. */
bool log_flush_repeats(int64_t now_ms);
/* FN(ARG) is called (from whatever thread logs, so ev_async_send) when a
 * line is first counted instead of written: it arms a timer that calls
 * log_flush_repeats.  NULL: none. */
void log_set_repeat_hook(void (*fn)(void *), void *arg);

#define log_debug(svc, ...) log_msg(LOG_DEBUG, svc, __VA_ARGS__)
#define log_info(svc, ...) log_msg(LOG_INFO, svc, __VA_ARGS__)
#define log_warn(svc, ...) log_msg(LOG_WARN, svc, __VA_ARGS__)
#define log_error(svc, ...) log_msg(LOG_ERROR, svc, __VA_ARGS__)

#endif
