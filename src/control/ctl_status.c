/*
 * ctl_status.c - the commands that describe the stack: status and plan.
 */
#include "autoconfig.h"

#include <string.h>

#include "control.h"
#include "supervise.h"
#include "wire.h"

json_t *ctl_service_json(const struct ctl_env *env, const struct service *s)
{
	json_t *o = json_object();
	json_t *exit_info = json_null();

	if (s->last_exit.valid)
		exit_info = s->last_exit.signal
			? json_pack("{s:s}", "signal", signal_name(s->last_exit.signal))
			: json_pack("{s:i}", "code", s->last_exit.code);
	json_object_set_new(o, "name", json_string(s->name));
	json_object_set_new(o, "state", json_string(svc_state_name(s->state)));
	json_object_set_new(o, "pid", s->pid > 0 ? json_integer(s->pid) : json_null());
	json_object_set_new(o, "phase", s->index < env->sup->plan->n ? json_integer(env->sup->plan->phase[s->index])
							       : json_null());
	json_object_set_new(o, "since_ms", json_integer(s->since_ms));
	json_object_set_new(o, "restarts", json_integer(s->restarts));
	json_object_set_new(o, "last_exit", exit_info);
	json_object_set_new(o, "reason", json_string(svc_text(s->reason)));
	int64_t next = svc_next_start_in_ms(s);
	if (next >= 0)
		json_object_set_new(o, "next_start_in_ms", json_integer(next));
	if (s->paused_by)
		json_object_set_new(o, "paused", json_string(signal_name(s->paused_by)));
	json_object_set_new(o, "health", s->health ? json_string(s->health) : json_null());
	json_object_set_new(o, "autostart", json_boolean(s->cfg->autostart));
	json_object_set_new(o, "wanted", json_string(s->want != WANT_DOWN ? "up" : "down"));
	if (s->status_text)
		json_object_set_new(o, "status", json_string(s->status_text));
	return o;
}

/*
 * The human table of `cohortctl status`, rendered here when the request
 * asks for "format": "table". For 500 services the JSON answer took the
 * client longer to parse than the whole rest of the command; a table is
 * one string. Columns as cohortctl prints them: NAME STATE PID PHASE
 * UPTIME RESTARTS REASON, aligned, the last one free.
 */
enum { TABLE_COLS = 7 };

struct table_row {
	const char *cell[TABLE_COLS];
	size_t len[TABLE_COLS];
	char pid[24], phase[24], up[32], restarts[24];
	const char *paused; /* signal name, "paused (SIGSTOP); " before the reason while stopped */
	const char *health; /* appended to the reason when failing */
	char due[48];	    /* " (due in 1s200ms)": the reason said the delay when it began */
};

/* The escape codes are written as JSON escapes: this text goes straight
 * into the answer. */
static const char *state_color(enum svc_state st)
{
	switch (st) {
	case SVC_RUNNING:
	case SVC_EXITED:
		return "\\u001b[32m";
	case SVC_FAILED:
		return "\\u001b[31m";
	case SVC_STOPPED:
		return "";
	default:
		return "\\u001b[33m";
	}
}

/* S (LEN bytes, plain ASCII) then spaces up to WIDTH. */
static char *put_padded(char *w, const char *s, size_t len, size_t width)
{
	memcpy(w, s, len);
	memset(w + len, ' ', width - len);
	return w + width;
}

static void fill_row(struct table_row *r, const struct ctl_env *env, const struct service *s, int64_t now)
{
	enum svc_state st = s->state;

	r->cell[0] = s->name;
	r->cell[1] = svc_state_name(st);
	if (s->pid > 0)
		*put_decimal(r->pid, (uint64_t)s->pid) = '\0';
	else
		strcpy(r->pid, "-");
	if (s->index < env->sup->plan->n)
		*put_decimal(r->phase, env->sup->plan->phase[s->index]) = '\0';
	else
		strcpy(r->phase, "-");
	if (st == SVC_RUNNING || st == SVC_STARTING || st == SVC_ADOPTING || st == SVC_STOPPING)
		format_duration_ms(now - s->since_ms, r->up, sizeof(r->up));
	else
		strcpy(r->up, "-");
	*put_decimal(r->restarts, s->restarts) = '\0';
	r->cell[2] = r->pid;
	r->cell[3] = r->phase;
	r->cell[4] = r->up;
	r->cell[5] = r->restarts;
	r->cell[6] = svc_text(s->reason);
	r->paused = s->paused_by ? signal_name(s->paused_by) : NULL;
	/* Of the process that runs: in backoff it was the last one's, and the
	 * reason says it already. */
	r->health = st == SVC_RUNNING && str_starts(svc_text(s->health), "failing") ? s->health : NULL;
	int64_t next = svc_next_start_in_ms(s);
	if (next >= 0) {
		char dur[32];
		format_delay_ms(next, dur, sizeof(dur));
		snprintf(r->due, sizeof(r->due), " (due in %s)", dur);
	}
	for (int k = 0; k < TABLE_COLS; k++)
		r->len[k] = strlen(r->cell[k]);
}

/* The whole answer line, {"ok":true,"table":"..."}. Cells are written
 * straight into the buffer: this is the hot part of `cohortctl status`. */
static void render_table(struct sbuf *b, const struct ctl_env *env, const struct service **sel, size_t n,
			 bool color, const char *footer)
{
	static const char *const head[TABLE_COLS] = {"NAME", "STATE", "PID", "PHASE", "UPTIME", "RESTARTS", "REASON"};
	static const char reset[] = "\\u001b[0m", open[] = "{\"ok\":true,\"table\":\"", close[] = "\"}\n";
	struct table_row *rows = xcalloc(n ? n : 1, sizeof(*rows));
	size_t width[TABLE_COLS], line = 0, room;
	int64_t now = now_wall_ms();

	for (int k = 0; k < TABLE_COLS; k++)
		width[k] = strlen(head[k]);
	for (size_t i = 0; i < n; i++) {
		fill_row(&rows[i], env, sel[i], now);
		for (int k = 0; k + 1 < TABLE_COLS; k++)
			if (rows[i].len[k] > width[k])
				width[k] = rows[i].len[k];
	}
	for (int k = 0; k + 1 < TABLE_COLS; k++)
		line += width[k] + 2;
	/* Names are plain ASCII (the config allows A-Z a-z 0-9 _ . -) and
	 * so are the other cells but the reason and health, escaped here. */
	room = sizeof(open) + line + strlen(head[TABLE_COLS - 1]) + 2 + sizeof(close);
	for (size_t i = 0; i < n; i++)
		room += line + 32 + sizeof(rows[i].due) + (rows[i].paused ? 32 : 0) + JSTR_ESCAPED_MAX(rows[i].len[6]) +
			(rows[i].health ? 10 + JSTR_ESCAPED_MAX(strlen(rows[i].health)) : 0);
	if (footer)
		room += JSTR_ESCAPED_MAX(strlen(footer)) + 4;
	char *w = sbuf_reserve(b, room);
	memcpy(w, open, sizeof(open) - 1);
	w += sizeof(open) - 1;
	for (int k = 0; k + 1 < TABLE_COLS; k++)
		w = put_padded(w, head[k], strlen(head[k]), width[k] + 2);
	w = stpcpy(w, head[TABLE_COLS - 1]);
	w = stpcpy(w, "\\n");
	for (size_t i = 0; i < n; i++) {
		const struct table_row *r = &rows[i];
		const char *esc = color ? state_color(sel[i]->state) : "";
		w = put_padded(w, r->cell[0], r->len[0], width[0] + 2);
		if (*esc) {
			w = stpcpy(w, esc);
			w = put_padded(w, r->cell[1], r->len[1], width[1]);
			w = stpcpy(w, reset);
			w = stpcpy(w, "  ");
		} else {
			w = put_padded(w, r->cell[1], r->len[1], width[1] + 2);
		}
		for (int k = 2; k + 1 < TABLE_COLS; k++)
			w = put_padded(w, r->cell[k], r->len[k], width[k] + 2);
		if (r->paused) {	/* a name from the signal table: plain ASCII */
			w = stpcpy(w, "paused (SIG");
			w = stpcpy(w, r->paused);
			w = stpcpy(w, "); ");
		}
		w = jstr_escape(w, r->cell[6], r->len[6]);
		if (r->health) {
			w = stpcpy(w, " (health ");
			w = jstr_escape(w, r->health, strlen(r->health));
			*w++ = ')';
		}
		w = stpcpy(w, r->due);	/* plain ASCII */
		w = stpcpy(w, "\\n");
	}
	if (footer) {
		w = jstr_escape(w, footer, strlen(footer));
		w = stpcpy(w, "\\n");
	}
	w = stpcpy(w, close);
	sbuf_commit(b, w);
	free(rows);
}

/* Under the table, in cluster mode: a line of the cluster's state (the
 * locks' connection), and one of the bus's connection. */
static void cluster_line(struct sbuf *b, json_t *cl, const char *who, const char *refusing)
{
	const char *state = json_string_value(json_object_get(cl, "state"));
	json_t *rtt = json_object_get(cl, "rtt_ms");
	long long since = (long long)json_integer_value(json_object_get(cl, "since_ms"));
	char ago[32];

	format_duration_ms(now_wall_ms() - since, ago, sizeof(ago));
	if (!strcmp(state, "connected")) {
		sbuf_addf(b, "%s: connected to %s for %s", who, json_string_value(json_object_get(cl, "server")), ago);
		if (json_is_real(rtt))
			sbuf_addf(b, ", round trip %.2f ms", json_real_value(rtt));
	} else {
		sbuf_addf(b, "%s: %s for %s (%s refused): %s", who, state, ago, refusing,
			  json_string_value(json_object_get(cl, "error")));
	}
	sbuf_addf(b, ", %lld reconnections", (long long)json_integer_value(json_object_get(cl, "reconnects")));
	json_t *bus = json_object_get(cl, "bus");
	if (bus) {
		sbuf_addf(b, "\n");
		cluster_line(b, bus, "cluster bus", "qos-1 and retained publishes");
	}
}

static const char *const formats[] = {"json", "table", NULL};
static const struct wire_field status_fields[] = {
	{"services", WIRE_LIST, false, 0, 0, "a list of service names", NULL},
	{"format", WIRE_STRING, false, 0, 0, NULL, formats},
	{"color", WIRE_BOOL, false, 0, 0, NULL, NULL},
	{NULL, 0, false, 0, 0, NULL, NULL},
};

static enum ctl_result cmd_status(struct ctl_client *c, json_t *req, json_t *resp)
{
	const struct ctl_env *env = &c->ctl->env;
	json_t *names = json_object_get(req, "services");
	json_t *format = json_object_get(req, "format");
	json_t *color = json_object_get(req, "color");
	const struct service **sel;
	size_t n = 0;

	if (names && json_array_size(names)) {
		size_t i;
		json_t *v;
		struct strv found = {0};
		struct sbuf why = {0};
		json_array_foreach(names, i, v) {
			if (!json_is_string(v) || stack_match(env->sup, json_string_value(v), &found, &why) < 0) {
				strv_free(&found);
				if (!json_is_string(v))
					return ctl_error(resp, "field \"services\" must be a list of service names");
				ctl_error(resp, "%s", why.buf);
				sbuf_free(&why);
				return CTL_ERROR;
			}
		}
		sel = xcalloc(found.n, sizeof(*sel));
		for (i = 0; i < found.n; i++)	/* a name given twice is shown twice, as before */
			sel[n++] = stack_find(env->sup, found.v[i]);
		strv_free(&found);
	} else {
		sel = xcalloc(env->sup->plan->n + env->sup->nleaving + 1, sizeof(*sel));
		for (size_t i = 0; i < env->sup->plan->n; i++)
			sel[n++] = env->sup->svcs[env->sup->plan->order[i]];
		for (size_t i = 0; i < env->sup->nleaving; i++)
			sel[n++] = env->sup->leaving[i];
	}
	if (format && !strcmp(json_string_value(format), "table")) {
		struct sbuf line = {0}, foot = {0};
		json_t *cl = env->cluster_status ? env->cluster_status(env->arg) : NULL;
		if (cl)
			cluster_line(&foot, cl, "cluster", "lock requests");
		render_table(&line, env, sel, n, json_is_true(color), foot.buf);
		json_decref(cl);
		sbuf_free(&foot);
		free(sel);
		ctl_send_line(c, line.buf, line.len);
		sbuf_free(&line);
		return CTL_SENT;
	}
	ctl_status_fill(env, sel, n, resp);
	free(sel);
	return CTL_REPLY;
}

void ctl_status_fill(const struct ctl_env *env, const struct service **sel, size_t n, json_t *resp)
{
	json_t *list = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(list, ctl_service_json(env, sel[i]));
	json_object_set_new(resp, "services", list);
	json_object_set_new(resp, "now_ms", json_integer(now_wall_ms()));
	json_object_set_new(resp, "stack_up", json_boolean(env->sup->stack_up));
	json_object_set_new(resp, "shutting_down", json_boolean(env->sup->shutting_down));
	json_object_set_new(resp, "bus", env->bus_status(env->arg));
	json_t *cl = env->cluster_status ? env->cluster_status(env->arg) : NULL;
	if (cl)
		json_object_set_new(resp, "cluster", cl);
}

static enum ctl_result cmd_plan(struct ctl_client *c, json_t *req, json_t *resp)
{
	const struct plan *p = c->ctl->env.sup->plan;
	json_t *phases = json_array();
	(void)req;

	for (unsigned ph = 1; ph <= p->nphases; ph++) {
		json_t *names = json_array();
		for (size_t k = p->phase_start[ph]; k < p->phase_start[ph + 1]; k++)
			json_array_append_new(names, json_string(p->cfg->services[p->order[k]]->name));
		json_array_append_new(phases, names);
	}
	json_object_set_new(resp, "phases", phases);
	return CTL_REPLY;
}

const struct ctl_command ctl_status_commands[] = {
	{"status", cmd_status, "every service (or those named): state, pid, phase, restarts, reason", status_fields},
	{"plan", cmd_plan, "the phases, each a list of service names", NULL},
	{NULL, NULL, NULL, NULL},
};
