/*
 * pidfile.h - the text of a PID file (pidfile = PATH), read without a
 * process or a loop: what pidfile.c adopts, and what the unit tests drive.
 */
#ifndef COHORT_PIDFILE_H
#define COHORT_PIDFILE_H

#include <stddef.h>
#include <sys/types.h>

/* The largest pid Linux hands out (PID_MAX_LIMIT on 64-bit). */
#define PIDFILE_PID_MAX 4194304

/* The first line of a PID file's text (len bytes, not NUL-terminated):
 * a decimal pid, blanks around it allowed, what follows the first line
 * ignored (as systemd reads it).  0: *pid set.  1: the file is empty or
 * blank (maybe not written yet: look again).  -1: anything else, with why
 * ("expected a process id, found \"abc\""). */
int pidfile_parse(const char *text, size_t len, pid_t *pid, char *why, size_t whylen);

#endif
