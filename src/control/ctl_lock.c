/*
 * ctl_lock.c - the lock commands on the control socket: locks,
 * lock.acquire, lock.renew, lock.release.  Each client connection is one
 * lock session, opened at its first lock command and closed with it (so a
 * client that dies lets go at once).  A client that is a process of a
 * service is held to that service's locks patterns, and its leases end
 * when that service's process ends.  A lease may name the process group
 * its holder's work runs in ("pgid", as `cohortctl lock` does): if the
 * lease is lost, that group is stopped before the next holder starts
 * (lock_group.c).
 */
#include "autoconfig.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "control.h"
#include "supervise.h"
#include "lock.h"
#include "lock_request.h"
#include "pgroup.h"

/* The service a peer process belongs to (its process group), or NULL. */
static struct service *service_of_pid(struct ctl_env *env, pid_t pid)
{
	pid_t pgid = getpgid(pid);

	for (size_t i = 0; i < env->sup->plan->n; i++) {
		struct service *s = env->sup->svcs[i];
		if (svc_live(s) && (s->pid == pid || s->pid == pgid))
			return s;
	}
	return NULL;
}

/* The answers to grants and renewals are written as text
 * (wire_write_lock_ok), not built as JSON values and dumped: they are the
 * lock service's hot path, and their layout is fixed. */
static size_t ok_line(char *line, const uint64_t *token, int64_t expires_ms)
{
	return (size_t)(wire_write_lock_ok(line, token, expires_ms) - line);
}

static void lock_waited(struct lock_session *ls, void *cookie, bool granted, uint64_t token,
			int64_t expires_ms, const char *why)
{
	struct ctl_client *c = cookie;
	(void)ls;

	if (granted) {
		char line[WIRE_LOCK_OK_MAX];
		ctl_reply_later_line(c, line, ok_line(line, &token, expires_ms));
	} else {
		json_t *resp = json_object();
		ctl_error(resp, "%s", why);
		ctl_reply_later(c, resp);
	}
}

static struct lock_session *session_of(struct ctl_client *c)
{
	struct ctl_env *env = &c->ctl->env;

	if (!c->locks) {
		char owner[160];
		struct service *s = service_of_pid(env, c->pid);
		if (s)
			snprintf(owner, sizeof(owner), "service %s (pid %d)", s->name, (int)c->pid);
		else
			snprintf(owner, sizeof(owner), "uid %u (pid %d)", (unsigned)c->uid, (int)c->pid);
		const struct strv *allowed = s ? &s->cfg->rare->locks : NULL;
		c->locks = lock_session_open(env->locks, owner, allowed, s, lock_waited);
	}
	return c->locks;
}

/* The work a lease names ("pgid"), checked against the peer's uid: 0, or
 * -1 with resp's error set. */
static int get_work(struct ctl_client *c, const struct lock_request *r, json_t *resp, struct lock_work *work)
{
	char err[200];

	if (r->pgid && pgroup_check(r->pgid, c->uid, err, sizeof(err)) < 0) {
		ctl_error(resp, "pgid: %s", err);
		return -1;
	}
	*work = (struct lock_work){.pgid = r->pgid, .uid = c->uid, .stop_timeout_ms = r->stop_timeout_ms};
	return 0;
}

static enum ctl_result cmd_acquire(struct ctl_client *c, json_t *req, json_t *resp)
{
	struct lock_request r;
	struct lock_work work;
	uint64_t token;
	int64_t expires;
	const char *why;

	lock_request_read(req, &r);	/* its fields are checked: lock_acquire_fields */
	if (get_work(c, &r, resp, &work) < 0)
		return CTL_ERROR;
	switch (lock_acquire_work(session_of(c), r.name, r.mode, r.ttl_ms, r.wait_ms, &work, c, &token, &expires,
				  &why)) {
	case LOCK_GRANTED: {
		char line[WIRE_LOCK_OK_MAX];
		ctl_send_line(c, line, ok_line(line, &token, expires));
		return CTL_SENT;
	}
	case LOCK_QUEUED:
		return CTL_LATER;	/* lock_waited answers */
	default:
		return ctl_error(resp, "%s", why);
	}
}

static enum ctl_result cmd_renew(struct ctl_client *c, json_t *req, json_t *resp)
{
	struct lock_request r;
	const char *why;
	int64_t expires;

	lock_request_read(req, &r);
	if (lock_renew(session_of(c), r.name, r.token, r.ttl_ms, &expires, &why) < 0)
		return ctl_error(resp, "%s", why);
	char line[WIRE_LOCK_OK_MAX];
	ctl_send_line(c, line, ok_line(line, NULL, expires));
	return CTL_SENT;
}

static enum ctl_result cmd_release(struct ctl_client *c, json_t *req, json_t *resp)
{
	struct lock_request r;
	const char *why;

	lock_request_read(req, &r);
	if (lock_release(session_of(c), r.name, r.token, &why) < 0)
		return ctl_error(resp, "%s", why);
	return CTL_REPLY;
}

json_t *ctl_locks_json(const struct lock_table *t)
{
	json_t *list = json_array();
	size_t it = 0;
	void *v;

	while (map_next(&t->locks, &it, NULL, &v)) {
		const struct lock *l = v;
		json_t *holders = json_array(), *waiters = json_array();
		const struct lock_lease *le;
		const struct lock_wait *w;
		LIST_FOREACH(le, &l->holders, link)
			json_array_append_new(holders, json_pack("{s:s,s:I,s:I,s:b}", "owner", lock_lease_owner(le),
								 "token", (json_int_t)le->token,
								 "expires_ms", (json_int_t)le->expires_ms,
								 "stopping", le->ending));
		TAILQ_FOREACH(w, &l->waiters, link)
			json_array_append_new(waiters, json_pack("{s:s,s:s,s:I}", "owner", w->session->owner,
								 "mode", lock_mode_name(w->mode), "id", (json_int_t)w->id));
		json_array_append_new(list, json_pack("{s:s,s:s,s:o,s:o}", "name", l->name, "mode",
						      l->nholders ? lock_mode_name(l->held_mode) : "none",
						      "holders", holders, "waiters", waiters));
	}
	return list;
}

static enum ctl_result cmd_locks(struct ctl_client *c, json_t *req, json_t *resp)
{
	(void)req;
	json_object_set_new(resp, "locks", ctl_locks_json(c->ctl->env.locks));
	json_object_set_new(resp, "now_ms", json_integer(now_wall_ms()));
	json_object_set_new(resp, "next_token", json_integer((json_int_t)c->ctl->env.locks->next_token));
	return CTL_REPLY;
}

const struct ctl_command ctl_lock_commands[] = {
	{"locks", cmd_locks, "every lock: name, mode, holders (owner, token, expires_ms), waiters", NULL},
	{"lock.acquire", cmd_acquire, "take a lease: name, ttl_ms, wait_ms, mode, pgid, stop_timeout_ms",
	 lock_acquire_fields},
	{"lock.renew", cmd_renew, "extend a lease: name, token, ttl_ms", lock_renew_fields},
	{"lock.release", cmd_release, "end a lease: name, token", lock_release_fields},
	{NULL, NULL, NULL, NULL},
};
