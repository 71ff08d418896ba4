/*
 * spawn_limits.h - what a service's process gets from the kernel before
 * exec: resource limits (limit_nofile, limit_core, limit_nproc, limit_as),
 * nice and oom_score_adjust.  Prepared in the parent (spawn_limits_from),
 * applied in the vfork child with async-signal-safe calls only, before it
 * drops root (as systemd does: a hard limit can only be raised, a nice or
 * an oom_score_adj only lowered, while privileged).
 */
#ifndef COHORT_SPAWN_LIMITS_H
#define COHORT_SPAWN_LIMITS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/resource.h>

struct svc_config;

#define SPAWN_LIMITS_NRLIM 4
/* Status-pipe stages of a failure here (spawn.c's own are below these). */
enum { SPAWN_ST_RLIMIT = 100, SPAWN_ST_NICE = 110, SPAWN_ST_OOM = 111 };

struct spawn_limits {
	struct {
		bool set;
		int resource;		/* RLIMIT_* */
		struct rlimit rl;
	} rlim[SPAWN_LIMITS_NRLIM];
	bool set_nice;
	int nice;
	bool set_oom;
	char oom_text[16];	/* "-500\n", written to /proc/self/oom_score_adj */
	size_t oom_len;
};

/* From a service's config (nothing set: the child keeps cohortd's). */
void spawn_limits_from(struct spawn_limits *l, const struct svc_config *c);
/* In the child: 0, or the stage that failed with errno set. */
int spawn_limits_apply(const struct spawn_limits *l);
/* The words for a failed stage of these ("setrlimit limit_nofile 4096:4096:
 * Operation not permitted"); false when stage is not one of them. */
bool spawn_limits_reason(int stage, const struct spawn_limits *l, int err, char *buf, size_t len);

#endif
