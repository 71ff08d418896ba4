/*
 * ctl_log.c - the streaming commands: log (the tail of a service's log,
 * then with follow every new line) and events (every state change).
 *
 * The tail is read by the log-writer thread, which owns the log files and
 * reads only once what was pending is written; its answer comes back on
 * the loop, by client id, so a client that left meanwhile is simply not
 * found.  Followed lines come straight from the service's output pipe.
 */
#include "autoconfig.h"

#include <stdlib.h>
#include <string.h>

#include "control.h"
#include "daemon.h"

static struct ctl_client *find_client(struct control *ctl, uint64_t id)
{
	for (struct ctl_client *c = ctl->clients; c; c = c->next)
		if (c->id == id)
			return c;
	return NULL;
}

/* Appends each line of text (without its newline) to arr. */
static void split_lines(json_t *arr, const char *text, size_t len)
{
	const char *p = text, *end = text + len;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		char *clean = utf8_clean(p, n);	/* services write any bytes */
		json_array_append_new(arr, json_string(clean));
		free(clean);
		p += n + (nl ? 1 : 0);
	}
}

struct tail_arg {
	struct control *ctl;
	bool follow;
	char *service;
};

static void tail_done(void *arg, uint64_t tag, const char *text, size_t len, const char *err)
{
	struct tail_arg *ta = arg;
	struct ctl_client *c = find_client(ta->ctl, tag);

	if (c) {
		json_t *resp = json_object();
		if (err) {
			ctl_error(resp, "%s", err);
		} else {
			json_t *lines = json_array();
			split_lines(lines, text, len);
			json_object_set_new(resp, "ok", json_true());
			json_object_set_new(resp, "lines", lines);
			struct service *s = stack_find(ta->ctl->d, ta->service);
			if (ta->follow && s) {
				c->follow = s;
				c->streaming = true;
			}
		}
		if (c->streaming)
			ctl_send(c, resp);	/* stays busy: a stream takes no requests */
		else
			ctl_reply_later(c, resp);
	}
	free(ta->service);
	free(ta);
}

static enum ctl_result cmd_log(struct ctl_client *c, json_t *req, json_t *resp)
{
	struct cohortd *d = c->ctl->d;
	const char *name;
	long long lines = 50;
	bool follow = false;

	if (ctl_get_string(req, resp, "service", true, &name) < 0 ||
	    ctl_get_int(req, resp, "lines", 0, 100000, &lines) < 0 ||
	    ctl_get_bool(req, resp, "follow", &follow) < 0)
		return CTL_ERROR;
	struct service *s = stack_find(d, name);
	if (!s)
		return ctl_error(resp, "no such service: %s", name);
	struct outpipe *p = s->out_open ? &s->out : s->err_open ? &s->err : NULL;
	if (!p)
		return ctl_error(resp, "%s does not log to a file (stdout = %s)", name,
				 s->cfg->out.kind == OUT_INHERIT ? "inherit" : "null");
	struct tail_arg *ta = xcalloc(1, sizeof(*ta));
	ta->ctl = c->ctl;
	ta->follow = follow;
	ta->service = xstrdup(s->name);
	logw_tail(d->logw, logw_sink_path(p->sink), (unsigned)s->cfg->log_backups, (unsigned)lines,
		  tail_done, ta, c->id);
	return CTL_LATER;
}

static enum ctl_result cmd_events(struct ctl_client *c, json_t *req, json_t *resp)
{
	(void)req;
	(void)resp;
	c->events = true;
	c->streaming = true;
	ctl_send(c, json_pack("{s:b}", "ok", 1));
	return CTL_LATER;	/* answered; stays a stream */
}

void ctl_stream_stop(struct ctl_client *c)
{
	c->events = false;
	c->follow = NULL;
}

void ctl_log_service_gone(struct control *ctl, struct service *s)
{
	for (struct ctl_client *c = ctl->clients; c; c = c->next) {
		if (c->follow != s)
			continue;
		c->follow = NULL;
		ctl_send(c, json_pack("{s:b,s:s}", "ok", 0, "error", "the service was removed"));
		c->closing = true;
	}
}

/* Every new line of a service's output, to its followers. */
void ctl_log_lines(struct control *ctl, struct service *s, const char *data, size_t len)
{
	for (struct ctl_client *c = ctl->clients; c; c = c->next) {
		if (c->follow != s || !ctl_stream_ok(c))
			continue;
		const char *p = data, *end = data + len;
		while (p < end) {
			const char *nl = memchr(p, '\n', (size_t)(end - p));
			size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
			json_t *o = json_object();
			char *clean = utf8_clean(p, n);
			json_object_set_new(o, "line", json_string(clean));
			free(clean);
			ctl_send(c, o);
			p += n + (nl ? 1 : 0);
		}
	}
}

/* Every state change, to events streams and waiting requests. */
void ctl_on_event(struct cohortd *d, struct service *s, enum svc_state from, enum svc_state to,
		  const char *reason, void *arg)
{
	struct control *ctl = arg;
	json_t *ev = NULL;
	(void)d;

	for (struct ctl_client *c = ctl->clients, *next; c; c = next) {
		next = c->next;
		if (c->wait)
			ctl_wait_event(c);
		if (!c->events || !ctl_stream_ok(c))
			continue;
		if (!ev)
			ev = json_pack("{s:I,s:s,s:s,s:s,s:s}", "ts_ms", (json_int_t)now_wall_ms(),
				       "service", s->name, "from", svc_state_name(from), "to",
				       svc_state_name(to), "reason", reason);
		ctl_send(c, json_incref(ev));
	}
	json_decref(ev);
}

const struct ctl_command ctl_log_commands[] = {
	{"log", cmd_log, "the last lines of a service's log; with follow, every new line"},
	{"events", cmd_events, "every state change, one line each, until the client closes"},
	{NULL, NULL, NULL},
};
