/*
 * metrics.c - the stack in the Prometheus text format, version 0.0.4: one
 * family at a time (# HELP, # TYPE, then a sample per service or label),
 * names prefixed cohort_, counters ending _total, units _seconds and
 * _bytes; cohortd's own process under the usual process_* names.
 * doc/METRICS.md lists every one with its meaning.
 *
 * A scrape of 500 services is some 15,000 lines: each is written straight
 * into the reply (sbuf_reserve, put_decimal, no printf), nothing else is
 * allocated, and the time it took is itself a metric
 * (cohort_metrics_render_seconds: what `make bench` reads).  The one cost
 * that grows with the stack beyond the text is reading /proc/<pid>/stat of
 * each running service (metrics_proc.c).
 */
#include "autoconfig.h"

#include <string.h>
#include <unistd.h>

#include "daemon.h"
#include "metrics.h"

#define LINE_ROOM 256
#define PROC_SCRAPE_US 500	/* /proc reads a scrape may do itself */	/* a line's name, value and fixed labels; label values add theirs */

static char *put(char *w, const char *s)
{
	size_t n = strlen(s);

	memcpy(w, s, n);
	return w + n;
}

/* us as seconds, at most 6 decimals, without trailing zeros ("0.00025", "10"). */
static char *put_seconds_us(char *w, uint64_t us)
{
	w = put_decimal(w, us / 1000000);
	uint64_t frac = us % 1000000;
	if (!frac)
		return w;
	char digits[6];
	int n = 6;
	for (int i = 5; i >= 0; i--, frac /= 10)
		digits[i] = (char)('0' + frac % 10);
	while (n > 0 && digits[n - 1] == '0')
		n--;
	*w++ = '.';
	memcpy(w, digits, (size_t)n);
	return w + n;
}

static void family(struct sbuf *b, const char *name, const char *type, const char *help)
{
	char *w = sbuf_reserve(b, 2 * strlen(name) + strlen(type) + strlen(help) + 32);

	w = put(w, "# HELP ");
	w = put(w, name);
	*w++ = ' ';
	w = put(w, help);
	w = put(w, "\n# TYPE ");
	w = put(w, name);
	*w++ = ' ';
	w = put(w, type);
	*w++ = '\n';
	sbuf_commit(b, w);
}

/* name{labels} and a space; labels (without braces) may be "". */
static char *put_head(char *w, const char *name, const char *suffix, const char *labels, const char *extra)
{
	w = put(w, name);
	w = put(w, suffix);
	if (*labels || *extra) {
		*w++ = '{';
		w = put(w, labels);
		if (*labels && *extra)
			*w++ = ',';
		w = put(w, extra);
		*w++ = '}';
	}
	*w++ = ' ';
	return w;
}

static void sample_u(struct sbuf *b, const char *name, const char *labels, uint64_t v)
{
	char *w = sbuf_reserve(b, LINE_ROOM + strlen(labels));

	w = put_head(w, name, "", labels, "");
	w = put_decimal(w, v);
	*w++ = '\n';
	sbuf_commit(b, w);
}

static void sample_i(struct sbuf *b, const char *name, const char *labels, int64_t v)
{
	char *w = sbuf_reserve(b, LINE_ROOM + strlen(labels));

	w = put_head(w, name, "", labels, "");
	if (v < 0)
		*w++ = '-';
	w = put_decimal(w, v < 0 ? (uint64_t)-v : (uint64_t)v);
	*w++ = '\n';
	sbuf_commit(b, w);
}

static void sample_us(struct sbuf *b, const char *name, const char *labels, uint64_t us)
{
	char *w = sbuf_reserve(b, LINE_ROOM + strlen(labels));

	w = put_head(w, name, "", labels, "");
	w = put_seconds_us(w, us);
	*w++ = '\n';
	sbuf_commit(b, w);
}

/* A family of one sample without labels: its HELP, TYPE and value. */
static void single_u(struct sbuf *b, const char *name, const char *type, const char *help, uint64_t v)
{
	family(b, name, type, help);
	sample_u(b, name, "", v);
}

/* The same, for a value in microseconds written in seconds. */
static void single_us(struct sbuf *b, const char *name, const char *type, const char *help, uint64_t us)
{
	family(b, name, type, help);
	sample_us(b, name, "", us);
}

/* The _bucket lines (cumulative, le in seconds, then +Inf), _sum, _count
 * of the nle + 1 buckets of a histogram with the bounds le_us. */
static void sample_buckets(struct sbuf *b, const char *name, const char *labels, const uint64_t *le_us,
			   size_t nle, const _Atomic uint64_t *bucket, const _Atomic uint64_t *sum_us)
{
	uint64_t cum = 0;
	char *w = sbuf_reserve(b, (nle + 4) * (LINE_ROOM + strlen(labels)));

	for (size_t i = 0; i <= nle; i++) {
		cum += atomic_load_explicit(&bucket[i], memory_order_relaxed);
		w = put(put(w, name), "_bucket{");
		if (*labels) {
			w = put(w, labels);
			*w++ = ',';
		}
		w = put(w, "le=\"");
		w = i < nle ? put_seconds_us(w, le_us[i]) : put(w, "+Inf");
		w = put(w, "\"} ");
		w = put_decimal(w, cum);
		*w++ = '\n';
	}
	w = put_head(w, name, "_sum", labels, "");
	w = put_seconds_us(w, atomic_load_explicit(sum_us, memory_order_relaxed));
	*w++ = '\n';
	/* the count is the buckets' total: the +Inf bucket, as Prometheus checks */
	w = put_head(w, name, "_count", labels, "");
	w = put_decimal(w, cum);
	*w++ = '\n';
	sbuf_commit(b, w);
}

static void sample_histo(struct sbuf *b, const char *name, const char *labels, const struct histo *h)
{
	sample_buckets(b, name, labels, h->le_us, h->nle, h->bucket, &h->sum_us);
}

/* --- services ----------------------------------------------------------------------- */

const struct service *metrics_svc_at(const struct cohortd *d, size_t i)
{
	return i < d->sup.plan->n ? d->sup.svcs[d->sup.plan->order[i]] : d->sup.leaving[i - d->sup.plan->n];
}

/* service="NAME" (names are [A-Za-z0-9_.-], and @ in an instance's: nothing to escape). */
static const char *svc_label(char *buf, size_t len, const struct service *s)
{
	char *w = buf;
	size_t n = strlen(s->name);

	if (n + 12 > len)
		n = len - 12;
	w = put(w, "service=\"");
	memcpy(w, s->name, n);
	w += n;
	*w++ = '"';
	*w = '\0';
	return buf;
}

static bool breaker_open(const struct service *s)
{
	return s->breaker_trial || (s->state == SVC_FAILED && (str_starts(svc_text(s->reason), "breaker open") ||
							  str_starts(svc_text(s->reason), "trial start failed")));
}

void metrics_on_event(struct cohortd *d, struct service *s, enum svc_state from, enum svc_state to,
		      const char *reason, void *arg)
{
	struct metrics *m = arg;
	struct svc_metrics *sm = map_get(&m->svcs, s->name);
	(void)d;
	(void)reason;

	if (!sm) {
		size_t n = strlen(s->name) + 1;
		sm = xcalloc(1, sizeof(*sm) + n);
		memcpy(sm->name, s->name, n);
		map_put(&m->svcs, sm->name, sm);
	}
	if ((from == SVC_STARTING || from == SVC_ADOPTING) && to == SVC_RUNNING && s->spawned_at)
		histo_ready_observe_us(&sm->ready, (uint64_t)(now_mono_ms() - s->spawned_at) * 1000);
	if ((to == SVC_BACKOFF || to == SVC_FAILED) && from != SVC_FAILED)
		sm->failures++;
}

static void render_usage(struct metrics *m, struct sbuf *b);

static void render_services(struct metrics *m, struct sbuf *b)
{
	static const enum svc_state states[] = {SVC_STOPPED, SVC_WAITING, SVC_STARTING, SVC_RUNNING,
						SVC_STOPPING, SVC_BACKOFF, SVC_EXITED, SVC_FAILED};
	const struct cohortd *d = m->d;
	size_t n = d->sup.plan->n + d->sup.nleaving;
	char lab[160], st[224];
	int64_t now = now_mono_ms();

	family(b, "cohort_service_up", "gauge", "1 when the service is running and ready, else 0");
	for (size_t i = 0; i < n; i++)
		sample_u(b, "cohort_service_up", svc_label(lab, sizeof(lab), metrics_svc_at(d, i)),
			 metrics_svc_at(d, i)->state == SVC_RUNNING);
	family(b, "cohort_service_state", "gauge", "1 for the state the service is in, 0 for the others");
	for (size_t i = 0; i < n; i++) {
		const struct service *s = metrics_svc_at(d, i);
		char *w = put(st, svc_label(lab, sizeof(lab), s));
		w = put(w, ",state=\"");
		for (size_t k = 0; k < ARRAY_LEN(states); k++) {
			*put(put(w, svc_state_name(states[k])), "\"") = '\0';
			sample_u(b, "cohort_service_state", st, s->state == states[k]);
		}
	}
	family(b, "cohort_service_restarts_total", "counter", "starts of the service after its first, automatic or asked for");
	for (size_t i = 0; i < n; i++)
		sample_u(b, "cohort_service_restarts_total", svc_label(lab, sizeof(lab), metrics_svc_at(d, i)),
			 metrics_svc_at(d, i)->restarts);
	family(b, "cohort_service_failures_total", "counter",
	       "exits and failed starts counted as failures (to backoff or failed)");
	for (size_t i = 0; i < n; i++) {
		const struct svc_metrics *sm = map_get(&m->svcs, metrics_svc_at(d, i)->name);
		sample_u(b, "cohort_service_failures_total", svc_label(lab, sizeof(lab), metrics_svc_at(d, i)),
			 sm ? sm->failures : 0);
	}
	family(b, "cohort_service_last_exit_code", "gauge",
	       "exit code of the last exit of the main process (128+N when killed by signal N)");
	for (size_t i = 0; i < n; i++) {
		const struct service *s = metrics_svc_at(d, i);
		if (s->last_exit.valid)
			sample_i(b, "cohort_service_last_exit_code", svc_label(lab, sizeof(lab), s),
				 s->last_exit.signal ? 128 + s->last_exit.signal : s->last_exit.code);
	}
	family(b, "cohort_service_breaker_open", "gauge", "1 while the service's circuit breaker is open");
	for (size_t i = 0; i < n; i++)
		sample_u(b, "cohort_service_breaker_open", svc_label(lab, sizeof(lab), metrics_svc_at(d, i)),
			 breaker_open(metrics_svc_at(d, i)));
	family(b, "cohort_service_uptime_seconds", "gauge",
	       "seconds since the service's main process was started (0 when it has none)");
	for (size_t i = 0; i < n; i++) {
		const struct service *s = metrics_svc_at(d, i);
		int64_t up = s->pid > 0 && s->spawned_at ? now - s->spawned_at : 0;
		sample_us(b, "cohort_service_uptime_seconds", svc_label(lab, sizeof(lab), s),
			  up > 0 ? (uint64_t)up * 1000 : 0);
	}
	family(b, "cohort_service_ready_seconds", "histogram", "from the start of the process to ready");
	for (size_t i = 0; i < n; i++) {
		const struct svc_metrics *sm = map_get(&m->svcs, metrics_svc_at(d, i)->name);
		if (sm)
			sample_buckets(b, "cohort_service_ready_seconds",
				       svc_label(lab, sizeof(lab), metrics_svc_at(d, i)), histo_ready_us,
				       HISTO_READY_N, sm->ready.bucket, &sm->ready.sum_us);
	}
	render_usage(m, b);
}

/* /proc, as read after the last scrape (metrics_proc.c), or now for a
 * process not read yet, within PROC_SCRAPE_US; the memory lines wait in
 * m->scratch (kept between scrapes) while the CPU ones are written. */
static void render_usage(struct metrics *m, struct sbuf *b)
{
	const struct cohortd *d = m->d;
	size_t n = d->sup.plan->n + d->sup.nleaving;
	char lab[160];

	family(b, "cohort_service_cpu_seconds_total", "counter",
	       "user and system CPU time of the main process and the children it waited for");
	m->scratch.len = 0;
	int64_t t0 = histo_now_us();
	for (size_t i = 0; i < n; i++) {
		const struct service *s = metrics_svc_at(d, i);
		struct svc_metrics *sm = map_get(&m->svcs, s->name);
		if (!sm || s->pid <= 0)
			continue;
		if (sm->usage_pid != s->pid && histo_now_us() - t0 < PROC_SCRAPE_US &&
		    proc_usage_read(s->pid, &sm->usage) == 0)
			sm->usage_pid = s->pid;
		if (sm->usage_pid != s->pid)
			continue;
		svc_label(lab, sizeof(lab), s);
		sample_us(b, "cohort_service_cpu_seconds_total", lab, sm->usage.cpu_ms * 1000);
		sample_u(&m->scratch, "cohort_service_resident_memory_bytes", lab, sm->usage.rss_bytes);
	}
	family(b, "cohort_service_resident_memory_bytes", "gauge", "resident memory of the main process");
	sbuf_add(b, m->scratch.buf, m->scratch.len);
}

/* --- the bus, the locks, the control socket ---------------------------------------- */

static void render_bus(const struct cohortd *d, struct sbuf *b)
{
	struct bus_stats st;

	bus_stats_read(&d->bus, &st);
	family(b, "cohort_bus_connections", "gauge", "open bus connections, by transport");
	sample_u(b, "cohort_bus_connections", "transport=\"unix\"", st.connections[0]);
	sample_u(b, "cohort_bus_connections", "transport=\"tcp\"", st.connections[1]);
	single_u(b, "cohort_bus_subscriptions", "gauge", "subscriptions of every session", st.subscriptions);
	single_u(b, "cohort_bus_durable_sessions", "gauge", "durable sessions, connected or away",
	         st.durable_sessions);
	single_u(b, "cohort_bus_retained", "gauge", "topics with a retained value", st.retained);
	family(b, "cohort_bus_published_total", "counter",
	       "messages clients published, by the qos they were published with");
	sample_u(b, "cohort_bus_published_total", "qos=\"0\"", st.published_qos[0]);
	sample_u(b, "cohort_bus_published_total", "qos=\"1\"", st.published_qos[1]);
	single_u(b, "cohort_bus_sys_published_total", "counter", "cohortd's own messages published ($sys.*)",
	         st.sys_published);
	family(b, "cohort_bus_delivered_total", "counter",
	       "messages sent to subscribers (first sends), by the qos they were delivered with");
	sample_u(b, "cohort_bus_delivered_total", "qos=\"0\"", st.delivered_qos[0]);
	sample_u(b, "cohort_bus_delivered_total", "qos=\"1\"", st.delivered_qos[1]);
	single_u(b, "cohort_bus_redelivered_total", "counter",
	         "qos-1 messages sent again (no ack in time, a reconnect)", st.redelivered);
	single_u(b, "cohort_bus_qos0_dropped_total", "counter",
	         "qos-0 messages dropped for a subscriber that read too slowly", st.dropped_qos0);
	single_u(b, "cohort_bus_queue_dropped_total", "counter",
	         "queued messages dropped by bus_queue_max or bus_queue_age", st.dropped_queue);
	single_u(b, "cohort_bus_dead_letters_total", "counter", "qos-1 messages moved to $dead.<topic>",
	         st.dead_lettered);
	single_u(b, "cohort_bus_queued_messages", "gauge",
	         "messages queued for sessions (sent and unacked included)", st.queued);
	single_u(b, "cohort_bus_queued_bytes", "gauge", "memory held by the sessions' queues",
	         st.queued_bytes);
	single_u(b, "cohort_bus_journal_bytes", "gauge", "bytes in the bus journal's segments",
	         st.journal_bytes);
	if (st.fsync) {
		family(b, "cohort_bus_fsync_seconds", "histogram", "duration of the journal's fdatasync calls");
		sample_histo(b, "cohort_bus_fsync_seconds", "", st.fsync);
	}
}

static void render_locks(const struct cohortd *d, struct sbuf *b)
{
	const struct lock_table *t = &d->locks;
	size_t held, waiting;

	lock_table_counts(t, &held, &waiting);
	single_u(b, "cohort_locks_held", "gauge",
	         "leases held (those whose holder's work is being stopped too)", held);
	single_u(b, "cohort_locks_waiting", "gauge", "lock requests waiting", waiting);
	single_u(b, "cohort_lock_grants_total", "counter", "leases granted", t->grants);
	single_u(b, "cohort_lock_releases_total", "counter", "leases released by their holder", t->releases);
	single_u(b, "cohort_lock_expiries_total", "counter", "leases that expired (not renewed in time)",
	         t->expiries);
	single_u(b, "cohort_lock_holder_gone_total", "counter",
	         "leases ended because their holder went (connection closed, service ended)", t->holder_gone);
	family(b, "cohort_lock_wait_seconds", "histogram", "from a lock request to its grant (0 when at once)");
	sample_histo(b, "cohort_lock_wait_seconds", "", &t->wait_h);
	family(b, "cohort_lock_hold_seconds", "histogram", "from a grant to the lease's end");
	sample_histo(b, "cohort_lock_hold_seconds", "", &t->hold_h);
}

/* A connection's state: a sample per state, 1 for the current one. */
static void state_family(struct sbuf *b, const char *name, const char *help, enum cluster_state now)
{
	family(b, name, "gauge", help);
	for (int st = CLUSTER_CONNECTING; st <= CLUSTER_UNREACHABLE; st++) {
		char lab[48];
		*put(put(put(lab, "state=\""), cluster_state_name((enum cluster_state)st)), "\"") = '\0';
		sample_u(b, name, lab, now == (enum cluster_state)st);
	}
}

/* Only in cluster mode: one host shows none of these. */
static void render_cluster(const struct cohortd *d, struct sbuf *b)
{
	struct cluster_info ci;

	if (!daemon_cluster_info(d, &ci))
		return;
	state_family(b, "cohort_cluster_state",
		     "1 for the NATS cluster's current state (connecting, connected, unreachable), 0 for the others",
		     ci.state);
	if (ci.state == CLUSTER_CONNECTED && strlen(ci.server) < 200) {
		/* A URL from the server's INFO: escaped as a label value must be. */
		char lab[512], *w = put(lab, "server=\"");
		for (const char *p = ci.server; *p; p++) {
			if (*p == '"' || *p == '\\')
				*w++ = '\\';
			*w++ = *p == '\n' ? ' ' : *p;
		}
		*put(w, "\"") = '\0';
		family(b, "cohort_cluster_server", "gauge", "1, labelled with the NATS server connected to");
		sample_u(b, "cohort_cluster_server", lab, 1);
	}
	if (ci.rtt_us >= 0)
		single_us(b, "cohort_cluster_rtt_seconds", "gauge",
		          "round trip to the connected NATS server, measured every 2 s", (uint64_t)ci.rtt_us);
	single_u(b, "cohort_cluster_reconnects_total", "counter",
	         "times the cluster came back after it was lost", ci.reconnects);
	single_u(b, "cohort_cluster_refused_total", "counter",
	         "lock requests refused at once because the cluster was unreachable", ci.refused);
	if (!daemon_cluster_bus_info(d, &ci))
		return;
	state_family(b, "cohort_cluster_bus_state",
		     "1 for the state of the bus's own NATS connection (connecting, connected, unreachable), "
		     "0 for the others", ci.state);
	single_u(b, "cohort_cluster_bus_reconnects_total", "counter",
	         "times the bus's connection came back after it was lost", ci.reconnects);
	single_u(b, "cohort_cluster_bus_refused_total", "counter",
	         "qos-1 and retained publishes, durable hellos and their subscribes refused: the cluster unreachable",
	         d->bus.remote_refused);
	single_u(b, "cohort_cluster_bus_dropped_qos0_total", "counter",
	         "qos-0 publishes dropped because the cluster was unreachable", d->bus.remote_dropped);
}

static void render_control(const struct cohortd *d, struct sbuf *b)
{
	const struct control *ctl = &d->ctl;
	char lab[96];

	family(b, "cohort_control_requests_total", "counter", "control requests answered, by command");
	for (size_t i = 0; i < ctl->nstats; i++) {
		*put(put(put(lab, "command=\""), ctl->stats[i].cmd), "\"") = '\0';
		sample_u(b, "cohort_control_requests_total", lab, ctl->stats[i].requests);
	}
	family(b, "cohort_control_errors_total", "counter",
	       "control requests answered with an error, by command (\"\": not a request)");
	sample_u(b, "cohort_control_errors_total", "command=\"\"", ctl->bad_requests);
	for (size_t i = 0; i < ctl->nstats; i++) {
		*put(put(put(lab, "command=\""), ctl->stats[i].cmd), "\"") = '\0';
		sample_u(b, "cohort_control_errors_total", lab, ctl->stats[i].errors);
	}
	single_u(b, "cohort_control_clients", "gauge", "clients connected to the control socket",
	         ctl->nclients);
}

static void render_self(struct metrics *m, struct sbuf *b)
{
	const struct cohortd *d = m->d;
	struct proc_usage u;
	long fds = m->open_fds, max = proc_max_fds();

	single_u(b, "cohort_stack_up", "gauge", "1 once every phase has been started and while not stopping",
	         d->sup.stack_up && !d->sup.shutting_down);
	single_u(b, "cohort_services", "gauge",
	         "services cohortd supervises (those a reload removed and still stopping too)",
	         d->sup.plan->n + d->sup.nleaving);
	if (proc_usage_read(0, &u) == 0) {
		single_us(b, "process_cpu_seconds_total", "counter", "user and system CPU time of cohortd",
		          u.cpu_ms * 1000);
		single_u(b, "process_resident_memory_bytes", "gauge", "resident memory of cohortd",
		         u.rss_bytes);
	}
	single_us(b, "process_start_time_seconds", "gauge",
	          "when cohortd started, in seconds since the epoch", (uint64_t)m->started_wall_ms * 1000);
	if (fds >= 0) {
		single_u(b, "process_open_fds", "gauge", "descriptors cohortd has open", (uint64_t)fds);
	}
	if (max >= 0) {
		single_u(b, "process_max_fds", "gauge", "cohortd's descriptor limit", (uint64_t)max);
	}
	single_us(b, "cohort_metrics_render_seconds", "gauge", "how long the previous scrape took to render",
	          (uint64_t)m->render_us);
}

void metrics_render(struct metrics *m, struct sbuf *out)
{
	int64_t t0 = histo_now_us();

	(void)sbuf_reserve(out, m->last_size + m->last_size / 8);	/* one allocation */
	if (m->open_fds < 0 && !ev_is_active(&m->refresh_w))
		m->open_fds = proc_open_fds();	/* the first scrape */
	render_services(m, out);
	render_bus(m->d, out);
	render_locks(m->d, out);
	render_cluster(m->d, out);
	render_control(m->d, out);
	render_self(m, out);
	m->last_size = out->len;
	m->render_us = histo_now_us() - t0;
	proc_refresh_start(m);	/* for the next scrape */
}
