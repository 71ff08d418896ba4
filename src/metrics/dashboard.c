/*
 * dashboard.c - the web dashboard: one page (src/metrics/dashboard.html,
 * HTML, CSS and plain JavaScript, compiled into cohortd as a string; no
 * build step, nothing fetched from elsewhere), live over the bus
 * WebSocket: it says hello with the admin token from its URL's fragment
 * (a browser cannot set headers on a WebSocket) and subscribes to the
 * $sys topics.  Besides the page:
 *
 *   GET /api/dashboard   what the page starts from: the last hour's
 *                        transitions (its timeline), the locks, the bus
 *   {"op":"service",...} an admin's start, stop, restart, over the bus
 *                        (bus_op_service calls service_action here)
 */
#include "autoconfig.h"

#include <stdio.h>
#include <string.h>

#include "control.h"
#include "daemon.h"
#include "log.h"
#include "metrics.h"

extern const char dashboard_html[];	/* dashboard_html.c, made from dashboard.html */

static unsigned page_dashboard(void *arg, const char *path, struct sbuf *body, const char **type)
{
	(void)arg;
	(void)path;
	sbuf_adds(body, dashboard_html);
	*type = "text/html; charset=utf-8";
	return 200;
}

static int append_cb(const char *buf, size_t size, void *data)
{
	sbuf_add(data, buf, size);
	return 0;
}

static unsigned page_api(void *arg, const char *path, struct sbuf *body, const char **type)
{
	struct cohortd *d = arg;
	(void)path;

	sbuf_adds(body, "{\"events\":");
	sys_history_json(d->metrics, body);
	json_t *o = json_pack("{s:o,s:o,s:I}", "locks", ctl_locks_json(&d->locks), "bus", bus_status_json(&d->bus),
			      "now_ms", (json_int_t)now_wall_ms());
	sbuf_addc(body, ',');
	/* the rest of the object, without its opening brace */
	struct sbuf rest = {0};
	(void)json_dump_callback(o, append_cb, &rest, JSON_COMPACT | JSON_ENSURE_ASCII);
	json_decref(o);
	if (rest.len > 1)
		sbuf_add(body, rest.buf + 1, rest.len - 1);
	else
		sbuf_addc(body, '}');
	sbuf_free(&rest);
	sbuf_addc(body, '\n');
	*type = "application/json";
	return 200;
}

/* An admin's start, stop or restart from the bus: the wanted state, as
 * the control commands set it; the $sys events show what follows. */
static int service_action(void *arg, const char *action, const char *name, char *err, size_t errlen)
{
	struct cohortd *d = arg;
	struct service *s = stack_find(&d->sup, name);
	bool up = strcmp(action, "stop") != 0, restart = strcmp(action, "restart") == 0;

	if (!s || s->removed) {
		snprintf(err, errlen, "no such service: %s", name);
		return -1;
	}
	if (d->sup.shutting_down && up) {
		snprintf(err, errlen, "cohortd is shutting down");
		return -1;
	}
	log_info(NULL, "bus: an admin asked to %s %s", action, name);
	stack_want(&d->sup, s, !up ? WANT_DOWN : restart ? WANT_RESTART : WANT_UP);
	return 0;
}

void dashboard_start(struct cohortd *d)
{
	(void)bus_http_page(&d->bus, "/", page_dashboard, d);
	(void)bus_http_page(&d->bus, "/api/dashboard", page_api, d);
	bus_set_service_fn(&d->bus, service_action, d);
}

int dashboard_url(const struct cohortd *d, char *buf, size_t len)
{
	const char *listen = d->started_cfg->bus_listen;

	if (!listen) {
		snprintf(buf, len, "the dashboard needs bus_listen = HOST:PORT in [cohort] (a browser "
			 "cannot open a unix socket); it is off");
		return -1;
	}
	if (!d->metrics || !d->metrics->admin_token) {
		snprintf(buf, len, "there is no admin token (admin_token_file could not be read or made: "
			 "see cohortd's log)");
		return -1;
	}
	snprintf(buf, len, "http://%s/#token=%s", listen, d->metrics->admin_token);
	return 0;
}

/* The control command behind `cohortctl dashboard`: the control socket is
 * an admin's already, so handing it the admin token gives nothing away. */
static enum ctl_result cmd_dashboard(struct ctl_client *c, json_t *req, json_t *resp)
{
	char url[512];
	(void)req;

	if (dashboard_url(c->ctl->env.arg, url, sizeof(url)) < 0)
		return ctl_error(resp, "%s", url);
	json_object_set_new(resp, "url", json_string(url));
	return CTL_REPLY;
}

const struct ctl_command ctl_dashboard_commands[] = {
	{"dashboard", cmd_dashboard, "the dashboard's URL, with the admin token in its fragment", NULL},
	{NULL, NULL, NULL, NULL},
};
