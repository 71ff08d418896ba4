/*
 * pgroup.h - process groups as /proc shows them.  A lease may name the
 * process group of its work (lock.acquire's "pgid"), which cohortd stops
 * when the lease is lost: it takes only a group the asker could signal
 * itself, each of its processes running as the asker's uid (real or saved,
 * as kill(2) checks), unless the asker is root.
 */
#ifndef COHORT_PGROUP_H
#define COHORT_PGROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* The live processes of group pgid (-1: /proc cannot be read); *foreign:
 * how many of them uid may not signal. */
/* The fields of /proc/PID/stat after the command name (which may hold
 * spaces and parentheses): " STATE PPID PGRP ...", read into buf.  PID is
 * a number or "self"; NULL when the process is gone. */
const char *proc_stat_fields(const char *pid, char *buf, size_t len);
int pgroup_scan(pid_t pgid, uid_t uid, int *foreign);
/* Whether a process of the group still lives: the cheap look first. */
bool pgroup_alive(pid_t pgid);
/* 0 when uid may hand cohortd group pgid to stop; else -1 and why in err. */
int pgroup_check(pid_t pgid, uid_t uid, char *err, size_t errlen);

#endif
