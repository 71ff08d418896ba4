/*
 * sys_topics.c - the stack's own events on the bus, for any client to
 * watch the stack as the dashboard does:
 *
 *   $sys.service.<name>   retained: the service now (state, pid, since,
 *                         reason, restarts, ...), one per service
 *   $sys.event.service    every state change of every service
 *   $sys.event.lock       every lease granted and ended
 *   $sys.bus              the bus's figures (connections, queues, counters),
 *                         every BUS_EVERY_S while someone subscribes to it
 *   $sys.log.<name>       the service's output lines as they come (the
 *                         dashboard's log tail), made only while someone
 *                         subscribes to it
 *
 * Fed by the daemon's state-change subscription and the lock table's
 * event hook; published with bus_publish_sys (qos 0, in memory only).
 * Who may read them is the bus's rule for every topic: admins, and a
 * service whose subscribe patterns include the pattern it asks for.
 */
#include "autoconfig.h"

#include <string.h>

#include "daemon.h"
#include "metrics.h"
#include "wire.h"

#define BUS_EVERY_S 2.0

/* Publishes o (taken); returns its text when keep, else NULL. */
static char *publish(struct cohortd *d, const char *topic, json_t *o, bool retain, bool keep)
{
	char *text = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);

	json_decref(o);
	if (text)
		bus_publish_sys(&d->bus, topic, text, strlen(text), retain);
	if (keep)
		return text;
	free(text);
	return NULL;
}

static void history_add(struct metrics *m, char *json)
{
	int64_t now = now_wall_ms();

	/* what is over an hour old, and the oldest when full, goes */
	while (m->history_len && (m->history_len == HISTORY_MAX ||
				  m->history[m->history_head].ts_ms < now - HISTORY_MS)) {
		free(m->history[m->history_head].json);
		m->history_head = (m->history_head + 1) % HISTORY_MAX;
		m->history_len--;
	}
	m->history[(m->history_head + m->history_len) % HISTORY_MAX] = (struct history_entry){now, json};
	m->history_len++;
}

void sys_history_json(struct metrics *m, struct sbuf *out)
{
	int64_t since = now_wall_ms() - HISTORY_MS;
	bool first = true;

	sbuf_addc(out, '[');
	for (size_t i = 0; i < m->history_len; i++) {
		const struct history_entry *e = &m->history[(m->history_head + i) % HISTORY_MAX];
		if (e->ts_ms < since)
			continue;
		if (!first)
			sbuf_addc(out, ',');
		sbuf_adds(out, e->json);
		first = false;
	}
	sbuf_addc(out, ']');
}

/* Publishes text (b's), and keeps it when asked: the history's. */
static char *publish_text(struct cohortd *d, const char *topic, struct sbuf *b, bool retain, bool keep)
{
	bus_publish_sys(&d->bus, topic, b->buf, b->len, retain);
	if (keep)
		return b->buf;
	sbuf_free(b);
	return NULL;
}

/* only_if_changed: not when the retained value is this one already. */
static void publish_service_if(struct cohortd *d, const struct service *s, bool only_if_changed)
{
	char topic[128];
	struct sbuf b = {0};
	/* is its output captured (and so on $sys.log.<name>)? */
	bool captured = s->cfg->out.kind == OUT_LOG || s->cfg->out.kind == OUT_PATH || s->cfg->err.kind == OUT_LOG ||
			s->cfg->err.kind == OUT_PATH;
	const struct wire_svc_state st = {
		.name = s->name, .state = svc_state_name(s->state), .reason = svc_text(s->reason),
		.pid = s->pid > 0 ? s->pid : 0, .since_ms = s->since_ms, .restarts = (int)s->restarts,
		.wanted_up = s->want != WANT_DOWN,
		.phase = s->index < d->sup.plan->n ? (int64_t)d->sup.plan->phase[s->index] : -1,
		.requires = (const char *const *)s->cfg->requires.v, .nrequires = s->cfg->requires.n,
		.after = (const char *const *)s->cfg->after.v, .nafter = s->cfg->after.n,
		.log = captured, .has_exit = s->last_exit.valid,
		.exit_signal = s->last_exit.valid && s->last_exit.signal ? signal_name(s->last_exit.signal) : NULL,
		.exit_code = s->last_exit.code,
	};

	snprintf(topic, sizeof(topic), "$sys.service.%s", s->name);
	wire_write_svc_state(&b, &st);
	if (only_if_changed && bus_retained_is(&d->bus, topic, b.buf, b.len))
		sbuf_free(&b);
	else
		publish_text(d, topic, &b, true, false);
}

static void publish_service(struct cohortd *d, const struct service *s)
{
	publish_service_if(d, s, false);
}

void sys_topics_on_process(struct cohortd *d, struct service *s)
{
	publish_service(d, s);
}

void sys_topics_on_reload(struct cohortd *d)
{
	/* Only those the reload touched: making every value again cost 10-15
	 * ms of a reload of 10,000 services. */
	for (size_t i = 0; i < d->sup.plan->n; i++) {
		struct service *s = d->sup.svcs[i];
		if (s->reload_touched)
			publish_service_if(d, s, true);
		s->reload_touched = false;
	}
}

void sys_topics_on_service(struct cohortd *d, struct service *s, enum svc_state from, enum svc_state to,
			   const char *reason, void *arg)
{
	char topic[128];
	struct sbuf b = {0};
	(void)arg;

	if (s->removed && to == SVC_STOPPED) {	/* reload dropped it: its value goes */
		snprintf(topic, sizeof(topic), "$sys.service.%s", s->name);
		bus_publish_sys(&d->bus, topic, "null", 4, true);
	} else {
		publish_service(d, s);
	}
	wire_write_svc_event(&b, &(struct wire_svc_event){
		.name = s->name, .from = svc_state_name(from), .to = svc_state_name(to),
		.reason = reason ? reason : "", .pid = s->pid > 0 ? s->pid : 0, .restarts = (int)s->restarts,
		.ts_ms = now_wall_ms()});
	history_add(d->metrics, publish_text(d, "$sys.event.service", &b, false, true));
}

static void on_lock(struct lock_table *t, const struct lock_lease *le, const char *why, void *arg)
{
	struct cohortd *d = arg;
	(void)t;

	/* Not built for nobody: 100,000 leases expiring at once made as many
	 * messages no one read. */
	if (!bus_has_subscribers(&d->bus, "$sys.event.lock"))
		return;
	publish(d, "$sys.event.lock", json_pack("{s:s,s:s,s:s?,s:I,s:s,s:s,s:I,s:I}", "lock", le->lock->name,
		"event", why ? "ended" : "granted", "why", why, "token", (json_int_t)le->token,
		"mode", lock_mode_name(le->mode), "holder", lock_lease_owner(le), "expires_ms",
		(json_int_t)le->expires_ms, "ts_ms", (json_int_t)now_wall_ms()), false, false);
}

static void on_lock_queue(struct lock_table *t, const struct lock_wait *w, bool queued, void *arg)
{
	struct cohortd *d = arg;
	(void)t;

	if (!bus_has_subscribers(&d->bus, "$sys.event.lock"))
		return;
	publish(d, "$sys.event.lock", json_pack("{s:s,s:s,s:s,s:s,s:I,s:I}", "lock", w->lock->name,
		"event", queued ? "waiting" : "done waiting", "waiter", w->session->owner, "mode",
		lock_mode_name(w->mode), "id", (json_int_t)w->id, "ts_ms", (json_int_t)now_wall_ms()),
		false, false);
}

/* The first loop iteration, once the services exist: a retained value for
 * each that has not changed state yet (autostart = no, a later phase). */
static void initial_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct metrics *m = container_of(w, struct metrics, sys_initial_w);
	struct cohortd *d = m->d;
	char topic[128];
	(void)loop;
	(void)revents;

	for (size_t i = 0; i < d->sup.plan->n; i++) {
		snprintf(topic, sizeof(topic), "$sys.service.%s", d->sup.svcs[i]->name);
		if (!bus_has_retained(&d->bus, topic))
			publish_service(d, d->sup.svcs[i]);
	}
}

/* $sys.bus, for a dashboard watching the bus: nothing is built while no
 * subscription matches. */
static void bus_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct metrics *m = container_of(w, struct metrics, sys_bus_w);
	struct cohortd *d = m->d;
	(void)loop;
	(void)revents;

	if (!bus_has_subscribers(&d->bus, "$sys.bus"))
		return;
	json_t *o = bus_status_json(&d->bus);
	json_object_set_new(o, "ts_ms", json_integer(now_wall_ms()));
	publish(d, "$sys.bus", o, false, false);
}

void sys_topics_start(struct cohortd *d)
{
	struct metrics *m = d->metrics;

	d->locks.on_event = on_lock;
	d->locks.on_queue = on_lock_queue;
	d->locks.event_arg = d;
	ev_timer_init(&m->sys_initial_w, initial_cb, 0, 0);
	ev_timer_start(d->loop, &m->sys_initial_w);
	ev_timer_init(&m->sys_bus_w, bus_cb, BUS_EVERY_S, BUS_EVERY_S);
	ev_timer_start(d->loop, &m->sys_bus_w);
}

void sys_topics_stop(struct cohortd *d)
{
	struct metrics *m = d->metrics;

	ev_timer_stop(d->loop, &m->sys_initial_w);
	ev_timer_stop(d->loop, &m->sys_bus_w);
	while (m->history_len) {
		free(m->history[m->history_head].json);
		m->history_head = (m->history_head + 1) % HISTORY_MAX;
		m->history_len--;
	}
	d->locks.on_event = NULL;
	d->locks.on_queue = NULL;
}

void sys_log_lines(struct cohortd *d, const struct service *s, const char *data, size_t len)
{
	char topic[128];

	snprintf(topic, sizeof(topic), "$sys.log.%s", s->name);
	if (!bus_has_subscribers(&d->bus, topic))
		return;
	json_t *lines = json_array();
	for (const char *p = data, *end = data + len; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		char *clean = utf8_clean(p, n);
		json_array_append_new(lines, json_string(clean));
		free(clean);
		p += n + (nl ? 1 : 0);
	}
	publish(d, topic, json_pack("{s:s,s:o,s:I}", "name", s->name, "lines", lines, "ts_ms",
				    (json_int_t)now_wall_ms()), false, false);
}
