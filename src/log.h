/*
 * log.h - cohortd's own log: one line per event on stderr,
 * "TIME LEVEL SERVICE: message".  Services' output goes elsewhere
 * (logfile.c).
 */
#ifndef COHORT_LOG_H
#define COHORT_LOG_H

#include "util.h"

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Lines below min are not written (-v: debug, -q: warn). */
void log_set_level(enum log_level min);
bool log_enabled(enum log_level level);
/* svc may be NULL for the daemon itself. */
void log_msg(enum log_level level, const char *svc, const char *fmt, ...) PRINTF(3, 4);

#define log_debug(svc, ...) log_msg(LOG_DEBUG, svc, __VA_ARGS__)
#define log_info(svc, ...) log_msg(LOG_INFO, svc, __VA_ARGS__)
#define log_warn(svc, ...) log_msg(LOG_WARN, svc, __VA_ARGS__)
#define log_error(svc, ...) log_msg(LOG_ERROR, svc, __VA_ARGS__)

#endif
