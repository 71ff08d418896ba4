/*
 * ctl_log.c - the streaming commands: log (the tail of a service's log,
 * or of several interleaved by time, then with follow every new line) and
 * events (every state change).
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
#include "supervise.h"

static struct ctl_client *find_client(struct control *ctl, uint64_t id)
{
	for (struct ctl_client *c = LIST_FIRST(&ctl->clients); c; c = LIST_NEXT(c, link))
		if (c->id == id)
			return c;
	return NULL;
}

/*
 * One log request: the tails of its services, each read by the log writer
 * in turn, merged by time once the last has come back.
 */
struct log_part {
	struct log_req *req;
	char *service;
	char *text;		/* the tail, or NULL */
	size_t len;
	char *err;		/* why it could not be read, or NULL */
};

struct log_req {
	struct control *ctl;
	bool follow;
	bool several;		/* asked with "services", or one name that is several:
				 * each line says whose it is */
	unsigned lines;
	size_t n, pending;
	struct log_part parts[];
};

/* "2026-11-26T11:42:44.733Z ": how logfile.c stamps every line. */
#define STAMP_LEN 24

static bool has_stamp(const char *p, size_t n)
{
	return n > STAMP_LEN && p[4] == '-' && p[10] == 'T' && p[STAMP_LEN - 1] == 'Z' &&
	       p[STAMP_LEN] == ' ';
}

struct part_cursor {
	const char *p, *end;
	const char *stamp;	/* of the line at p, or of the last stamped one before it */
};

static void cursor_fill_stamp(struct part_cursor *k)
{
	const char *nl = memchr(k->p, '\n', (size_t)(k->end - k->p));
	size_t n = nl ? (size_t)(nl - k->p) : (size_t)(k->end - k->p);

	if (has_stamp(k->p, n))
		k->stamp = k->p;	/* an unstamped line goes with the one before it */
}

/*
 * The last r->lines lines of every part together, in time order, as journalctl
 * interleaves units: a k-way merge by stamp, so each file's own order stays
 * even where its clock stepped back.  With several services, whose lines
 * they are in *whose.
 */
static json_t *merge_tails(struct log_req *r, json_t **whose)
{
	struct part_cursor *k = xcalloc(r->n, sizeof(*k));
	const char **line = NULL;
	size_t *len = NULL, *from = NULL, count = 0, cap = 0;

	for (size_t i = 0; i < r->n; i++) {
		k[i].p = r->parts[i].text ? r->parts[i].text : "";
		k[i].end = k[i].p + r->parts[i].len;
		if (k[i].p < k[i].end)
			cursor_fill_stamp(&k[i]);
	}
	for (;;) {
		size_t best = SIZE_MAX;
		for (size_t i = 0; i < r->n; i++) {
			if (k[i].p >= k[i].end)
				continue;
			/* no stamp yet sorts first; ties go to the service named first */
			if (best == SIZE_MAX || (k[best].stamp && (!k[i].stamp ||
							     memcmp(k[i].stamp, k[best].stamp, STAMP_LEN) < 0)))
				best = i;
		}
		if (best == SIZE_MAX)
			break;
		struct part_cursor *c = &k[best];
		const char *nl = memchr(c->p, '\n', (size_t)(c->end - c->p));
		if (count == cap) {
			cap = cap ? cap * 2 : 256;
			line = xrealloc(line, cap * sizeof(*line));
			len = xrealloc(len, cap * sizeof(*len));
			from = xrealloc(from, cap * sizeof(*from));
		}
		line[count] = c->p;
		len[count] = nl ? (size_t)(nl - c->p) : (size_t)(c->end - c->p);
		from[count++] = best;
		c->p += len[count - 1] + (nl ? 1 : 0);
		if (c->p < c->end)
			cursor_fill_stamp(c);
	}
	json_t *arr = json_array();
	*whose = r->several ? json_array() : NULL;
	for (size_t i = count > r->lines ? count - r->lines : 0; i < count; i++) {
		char *clean = utf8_clean(line[i], len[i]);	/* services write any bytes */
		json_array_append_new(arr, json_string(clean));
		free(clean);
		if (*whose)
			json_array_append_new(*whose, json_string(r->parts[from[i]].service));
	}
	free(line);
	free(len);
	free(from);
	free(k);
	return arr;
}

static void log_req_free(struct log_req *r)
{
	for (size_t i = 0; i < r->n; i++) {
		free(r->parts[i].service);
		free(r->parts[i].text);
		free(r->parts[i].err);
	}
	free(r);
}

/* Every tail is in: the answer, then with follow the stream. */
static void log_req_done(struct log_req *r, struct ctl_client *c)
{
	json_t *resp = json_object();

	for (size_t i = 0; i < r->n; i++) {
		if (!r->parts[i].err)
			continue;
		if (r->several)
			ctl_error(resp, "%s: %s", r->parts[i].service, r->parts[i].err);
		else
			ctl_error(resp, "%s", r->parts[i].err);
		break;
	}
	if (!json_object_get(resp, "error")) {
		json_t *whose;
		json_object_set_new(resp, "ok", json_true());
		json_object_set_new(resp, "lines", merge_tails(r, &whose));
		if (whose)
			json_object_set_new(resp, "services", whose);
		for (size_t i = 0; r->follow && i < r->n; i++) {
			struct service *s = stack_find(r->ctl->env.sup, r->parts[i].service);
			if (!s)
				continue;
			c->follow = xrealloc(c->follow, (c->nfollow + 1) * sizeof(*c->follow));
			c->follow[c->nfollow++] = s;
		}
		c->streaming = c->nfollow > 0;
	}
	if (c->streaming)
		ctl_send(c, resp);	/* stays busy: a stream takes no requests */
	else
		ctl_reply_later(c, resp);
}

static void tail_done(void *arg, uint64_t tag, const char *text, size_t len, const char *err)
{
	struct log_part *part = arg;
	struct log_req *r = part->req;

	if (err) {
		part->err = xstrdup(err);
	} else {
		part->text = xmalloc(len + 1);
		memcpy(part->text, text, len);
		part->len = len;
	}
	if (--r->pending)
		return;
	struct ctl_client *c = find_client(r->ctl, tag);
	if (c)
		log_req_done(r, c);
	log_req_free(r);
}

/* The services a log request names: "service", or "services" (a list, for
 * several interleaved).  Every one must log to a file. */
static int log_services(struct ctl_env *env, json_t *req, json_t *resp, struct strv *names)
{
	json_t *list = json_object_get(req, "services"), *v;
	const char *name = ctl_str(req, "service");
	struct strv given = {0};
	size_t i;

	*names = (struct strv){0};
	if (!list) {
		if (!name) {
			ctl_error(resp, "missing field \"service\" (a string), or \"services\"");
			return -1;
		}
		strv_push(&given, name);
	} else if (name) {
		ctl_error(resp, "give \"service\" (a name) or \"services\" (a list of names), not both");
		return -1;
	} else if (json_array_size(list) == 0) {
		ctl_error(resp, "field \"services\" must be a non-empty list of names");
		return -1;
	}
	json_array_foreach(list, i, v) {
		if (!json_is_string(v)) {
			ctl_error(resp, "field \"services\" must hold strings");
			goto fail;
		}
		strv_push(&given, json_string_value(v));
	}
	for (i = 0; i < given.n; i++) {	/* each once: worker@* and worker@1 show worker@1 once */
		struct strv found = {0};
		struct sbuf why = {0};
		if (stack_match(env->sup, given.v[i], &found, &why) < 0) {
			ctl_error(resp, "%s", why.buf);
			sbuf_free(&why);
			goto fail;
		}
		for (size_t k = 0; k < found.n; k++)
			if (!strv_contains(names, found.v[k]))
				strv_push(names, found.v[k]);
		strv_free(&found);
	}
	strv_free(&given);
	for (i = 0; i < names->n; i++) {
		struct service *s = stack_find(env->sup, names->v[i]);
		if (!s) {
			ctl_error(resp, "no such service: %s", names->v[i]);
			goto fail;
		}
		if (!s->out && !s->err) {
			ctl_error(resp, "%s does not log to a file (stdout = %s)", names->v[i],
				  s->cfg->out.kind == OUT_INHERIT ? "inherit" : "null");
			goto fail;
		}
	}
	return 0;
fail:
	strv_free(&given);
	strv_free(names);
	return -1;
}

static const struct wire_field log_fields[] = {
	{"service", WIRE_STRING, false, 0, 0, NULL, NULL},
	{"services", WIRE_LIST, false, 0, 0, "a non-empty list of names", NULL},
	{"lines", WIRE_INT, false, 0, 100000, NULL, NULL},
	{"follow", WIRE_BOOL, false, 0, 0, NULL, NULL},
	{NULL, 0, false, 0, 0, NULL, NULL},
};

static enum ctl_result cmd_log(struct ctl_client *c, json_t *req, json_t *resp)
{
	struct ctl_env *env = &c->ctl->env;
	struct strv names;
	long long lines = ctl_int(req, "lines", 50);
	bool follow = ctl_bool(req, "follow", false);

	if (log_services(env, req, resp, &names) < 0)
		return CTL_ERROR;
	struct log_req *r = xcalloc(1, sizeof(*r) + names.n * sizeof(r->parts[0]));
	r->ctl = c->ctl;
	r->follow = follow;
	/* a template's name or a glob may be several too */
	r->several = json_object_get(req, "services") != NULL || names.n > 1;
	r->lines = (unsigned)lines;
	r->n = r->pending = names.n;
	for (size_t i = 0; i < names.n; i++) {
		r->parts[i].req = r;
		r->parts[i].service = xstrdup(names.v[i]);
	}
	for (size_t i = 0; i < names.n; i++) {
		struct service *s = stack_find(env->sup, names.v[i]);
		struct outpipe *p = s->out ? s->out : s->err;
		unsigned backups = (unsigned)s->cfg->rare->log_backups;
		logfile_tail(env->sup->log_writer, logfile_sink_path(p->sink), backups, (unsigned)lines,
			     tail_done, &r->parts[i], c->id);
	}
	strv_free(&names);
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
	free(c->follow);
	c->follow = NULL;
	c->nfollow = 0;
}

static bool follows(const struct ctl_client *c, const struct service *s)
{
	for (size_t i = 0; i < c->nfollow; i++)
		if (c->follow[i] == s)
			return true;
	return false;
}

void ctl_log_service_gone(struct control *ctl, struct service *s)
{
	for (struct ctl_client *c = LIST_FIRST(&ctl->clients); c; c = LIST_NEXT(c, link)) {
		if (!follows(c, s))
			continue;
		ctl_stream_stop(c);
		ctl_send(c, json_pack("{s:b,s:s,s:s}", "ok", 0, "error", "the service was removed",
				      "service", s->name));
		c->closing = true;
	}
}

/* Every new line of a service's output, to its followers. */
void ctl_log_lines(struct control *ctl, struct service *s, const char *data, size_t len)
{
	for (struct ctl_client *c = LIST_FIRST(&ctl->clients); c; c = LIST_NEXT(c, link)) {
		if (!follows(c, s) || !ctl_stream_ok(c))
			continue;
		const char *p = data, *end = data + len;
		while (p < end) {
			const char *nl = memchr(p, '\n', (size_t)(end - p));
			size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
			json_t *o = json_object();
			char *clean = utf8_clean(p, n);
			json_object_set_new(o, "line", json_string(clean));
			json_object_set_new(o, "service", json_string(s->name));
			free(clean);
			ctl_send(c, o);
			p += n + (nl ? 1 : 0);
		}
	}
}

/* Every state change, to events streams and waiting requests. */
void ctl_on_event(struct control *ctl, struct service *s, enum svc_state from, enum svc_state to,
		  const char *reason)
{
	json_t *ev = NULL;

	for (struct ctl_client *c = LIST_FIRST(&ctl->clients), *next; c; c = next) {
		next = LIST_NEXT(c, link);
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
	{"log", cmd_log, "the last lines of a service's log; with follow, every new line", log_fields},
	{"events", cmd_events, "every state change, one line each, until the client closes", NULL},
	{NULL, NULL, NULL, NULL},
};
