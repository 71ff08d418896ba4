/*
 * pages.c - the HTTP pages cohortd serves on its bus listeners (the bus's
 * unix socket and bus_listen), registered with the bus at start:
 *
 *   GET /metrics      the Prometheus exposition (metrics.c)
 *   GET /healthz      200 "ok" when the stack is up, 503 and why otherwise
 *   GET /api/status   the answer of the control command status, as
 *                     `cohortctl --json status` prints it
 *   GET /             the dashboard (dashboard.c)
 *
 * None takes a token: what they show is what a Prometheus scrape shows,
 * and bus_listen is bound to exactly its address (127.0.0.1 unless told
 * otherwise).  Changing anything takes a bus connection with the admin
 * token (the dashboard's buttons).
 */
#include "autoconfig.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"
#include "daemon.h"
#include "log.h"
#include "metrics.h"

static unsigned page_metrics(void *arg, const char *path, struct sbuf *body, const char **type)
{
	struct cohortd *d = arg;
	(void)path;

	metrics_render(d->metrics, body);
	*type = "text/plain; version=0.0.4; charset=utf-8";
	return 200;
}

/* Why the stack is not healthy, into why; false when it is. */
static bool unhealthy(const struct cohortd *d, char *why, size_t len)
{
	size_t bad = 0, n = 0;

	if (d->sup.shutting_down) {
		snprintf(why, len, "cohortd is stopping");
		return true;
	}
	/* Starting: the services the open phase waits for.  Up: a service
	 * that should run and does not, on its own (failed, or in backoff). */
	why[0] = '\0';
	if (!d->sup.stack_up)
		snprintf(why, len, "starting (phase %u of %u): ", d->sup.phase_open, d->sup.plan->nphases);
	size_t start = strlen(why);
	for (size_t i = 0; i < d->sup.plan->n; i++) {
		const struct service *s = d->sup.svcs[i];
		bool waited = !d->sup.stack_up && d->sup.plan->phase[i] == d->sup.phase_open && (s->want != WANT_DOWN) &&
			      !svc_ready_for_dependents(s);
		if (!waited && (!(s->want != WANT_DOWN) || (s->state != SVC_FAILED && s->state != SVC_BACKOFF)))
			continue;
		if (bad++ < 3) {
			size_t used = strlen(why);
			snprintf(why + used, len - used, "%s%s %s: %s", used > start ? "; " : "", s->name,
				 svc_state_name(s->state), svc_text(s->reason));
		}
		n++;
	}
	if (bad > 3) {
		size_t used = strlen(why);
		snprintf(why + used, len - used, "; and %zu more", bad - 3);
	}
	if (!d->sup.stack_up && !n) {
		size_t used = strlen(why);
		snprintf(why + used, len - used, "the phase is opening");
	}
	return !d->sup.stack_up || n > 0;
}

static unsigned page_healthz(void *arg, const char *path, struct sbuf *body, const char **type)
{
	struct cohortd *d = arg;
	char why[1024];
	(void)path;
	(void)type;

	if (unhealthy(d, why, sizeof(why))) {
		sbuf_addf(body, "unhealthy: %s\n", why);
		return 503;
	}
	sbuf_addf(body, "ok: %zu services, the stack is up\n", d->sup.plan->n);
	return 200;
}

static int append_cb(const char *buf, size_t size, void *data)
{
	sbuf_add(data, buf, size);
	return 0;
}

static unsigned page_status(void *arg, const char *path, struct sbuf *body, const char **type)
{
	struct cohortd *d = arg;
	const struct service **sel = xcalloc(d->sup.plan->n + d->sup.nleaving + 1, sizeof(*sel));
	size_t n = 0;
	(void)path;

	for (size_t i = 0; i < d->sup.plan->n; i++)
		sel[n++] = d->sup.svcs[d->sup.plan->order[i]];
	for (size_t i = 0; i < d->sup.nleaving; i++)
		sel[n++] = d->sup.leaving[i];
	json_t *resp = json_pack("{s:b}", "ok", 1);	/* first, as control.c answers */
	ctl_status_fill(&d->ctl.env, sel, n, resp);
	free(sel);
	(void)json_dump_callback(resp, append_cb, body, JSON_COMPACT | JSON_ENSURE_ASCII);
	json_decref(resp);
	sbuf_addc(body, '\n');
	*type = "application/json";
	return 200;
}

int metrics_start(struct cohortd *d, char *err, size_t errlen)
{
	struct metrics *m = xcalloc(1, sizeof(*m));

	m->d = d;
	m->started_wall_ms = now_wall_ms();
	m->open_fds = -1;
	d->metrics = m;
	if (bus_http_page(&d->bus, "/metrics", page_metrics, d) < 0 ||
	    bus_http_page(&d->bus, "/healthz", page_healthz, d) < 0 ||
	    bus_http_page(&d->bus, "/api/status", page_status, d) < 0) {
		snprintf(err, errlen, "too many HTTP pages for the bus");
		return -1;
	}
	sys_topics_start(d);
	dashboard_start(d);
	if (admin_token_load(d, err, errlen) < 0)	/* the pages work; no admin over TCP */
		log_warn(NULL, "no admin token (%s): the dashboard cannot connect, cohortctl dashboard says so", err);
	return 0;
}

void metrics_stop(struct cohortd *d)
{
	struct metrics *m = d->metrics;
	size_t it = 0;
	void *v;

	if (!m)
		return;
	proc_refresh_stop(m);
	sys_topics_stop(d);
	while (map_next(&m->svcs, &it, NULL, &v)) {
		free(v);
	}
	map_free(&m->svcs);
	sbuf_free(&m->scratch);
	free(m->admin_token);
	free(m->admin_token_path);
	free(m);
	d->metrics = NULL;
}
