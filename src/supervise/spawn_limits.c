/*
 * spawn_limits.c - see spawn_limits.h.
 */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "config.h"
#include "spawn_limits.h"
#include "util.h"

static const struct {
	const char *key;
	int resource;
	size_t offset;
} rlimit_keys[SPAWN_LIMITS_NRLIM] = {
	{"limit_nofile", RLIMIT_NOFILE, offsetof(struct svc_rare, limit_nofile)},
	{"limit_core", RLIMIT_CORE, offsetof(struct svc_rare, limit_core)},
	{"limit_nproc", RLIMIT_NPROC, offsetof(struct svc_rare, limit_nproc)},
	{"limit_as", RLIMIT_AS, offsetof(struct svc_rare, limit_as)},
};

static rlim_t to_rlim(uint64_t v)
{
	return v == UINT64_MAX ? RLIM_INFINITY : (rlim_t)v;
}

void spawn_limits_from(struct spawn_limits *l, const struct svc_config *c)
{
	*l = (struct spawn_limits){0};
	for (size_t i = 0; i < ARRAY_LEN(rlimit_keys); i++) {
		const struct svc_rlimit *r = (const void *)((const char *)c->rare + rlimit_keys[i].offset);
		l->rlim[i].resource = rlimit_keys[i].resource;
		if (!r->set)
			continue;
		l->rlim[i].set = true;
		l->rlim[i].rl = (struct rlimit){to_rlim(r->cur), to_rlim(r->max)};
	}
	if (c->rare->nice != SVC_INT_UNSET) {
		l->set_nice = true;
		l->nice = c->rare->nice;
	}
	if (c->rare->oom_score_adjust != SVC_INT_UNSET) {
		l->set_oom = true;
		l->oom_len = (size_t)snprintf(l->oom_text, sizeof(l->oom_text), "%d\n",
					      c->rare->oom_score_adjust);
	}
}

int spawn_limits_apply(const struct spawn_limits *l)
{
	for (int i = 0; i < SPAWN_LIMITS_NRLIM; i++)
		if (l->rlim[i].set && setrlimit(l->rlim[i].resource, &l->rlim[i].rl) < 0)
			return SPAWN_ST_RLIMIT + i;
	/* setpriority, not nice(): the value is absolute, not cohortd's plus it. */
	if (l->set_nice && setpriority(PRIO_PROCESS, 0, l->nice) < 0)
		return SPAWN_ST_NICE;
	if (l->set_oom) {
		int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
		if (fd < 0)
			return SPAWN_ST_OOM;
		ssize_t n = write(fd, l->oom_text, l->oom_len);
		int saved = errno;
		close(fd);
		if (n != (ssize_t)l->oom_len) {
			errno = n < 0 ? saved : EIO;
			return SPAWN_ST_OOM;
		}
	}
	return 0;
}

static void format_rlim(rlim_t v, char *buf, size_t len)
{
	if (v == RLIM_INFINITY)
		snprintf(buf, len, "infinity");
	else
		snprintf(buf, len, "%llu", (unsigned long long)v);
}

bool spawn_limits_reason(int stage, const struct spawn_limits *l, int err, char *buf, size_t len)
{
	const char *e = strerror(err);

	if (stage >= SPAWN_ST_RLIMIT && stage < SPAWN_ST_RLIMIT + SPAWN_LIMITS_NRLIM) {
		int i = stage - SPAWN_ST_RLIMIT;
		char cur[32], max[32];
		format_rlim(l->rlim[i].rl.rlim_cur, cur, sizeof(cur));
		format_rlim(l->rlim[i].rl.rlim_max, max, sizeof(max));
		snprintf(buf, len, "setrlimit %s %s:%s: %s%s", rlimit_keys[i].key, cur, max, e,
			 err == EPERM ? " (a hard limit above cohortd's needs CAP_SYS_RESOURCE, and none may pass "
			 "fs.nr_open)" : "");
		return true;
	}
	if (stage == SPAWN_ST_NICE) {
		snprintf(buf, len, "nice %d: %s%s", l->nice, e,
			 err == EACCES || err == EPERM ? " (a nice below cohortd's needs CAP_SYS_NICE)" : "");
		return true;
	}
	if (stage == SPAWN_ST_OOM) {
		snprintf(buf, len, "oom_score_adjust %.*s: %s%s", (int)(l->oom_len ? l->oom_len - 1 : 0),
			 l->oom_text, e,
			 err == EACCES || err == EPERM ? " (a value below cohortd's needs CAP_SYS_RESOURCE)" : "");
		return true;
	}
	return false;
}
