/*
 * daemon_supervise.c - where the supervision layer (src/supervise/) meets
 * the rest of cohortd.  The layer calls nothing above it: what the
 * control socket, the lock table, the bus and the record of process
 * groups must hear of (a state change, a service's output, a process that
 * started or ended, a service freed, a reload) comes through the hooks
 * wired here.  A reload is read here too: the file, its errors and the
 * [cohort] keys are the daemon's; the services are the layer's
 * (stack_reload).
 */
#include "autoconfig.h"

#include <errno.h>
#include <string.h>

#include "daemon.h"
#include "metrics.h"
#include "log.h"

static void on_state_changed(void *arg, struct service *s, enum svc_state from, enum svc_state to,
			     const char *reason)
{
	struct cohortd *d = arg;

	sdn_state_changed(d);
	if (to == SVC_RUNNING && s->adopted)	/* its group may have changed (svc_pgid) */
		instance_record(d);
	if (d->metrics) {
		metrics_on_event(d, s, from, to, reason, d->metrics);
		sys_topics_on_service(d, s, from, to, reason, NULL);
	}
	ctl_on_event(&d->ctl, s, from, to, reason);
}

static void on_output(void *arg, struct service *s, const char *lines, size_t len)
{
	struct cohortd *d = arg;

	if (!LIST_EMPTY(&d->ctl.clients))
		ctl_log_lines(&d->ctl, s, lines, len);
	if (d->metrics)
		sys_log_lines(d, s, lines, len);	/* $sys.log.<name>, when someone watches */
}

static void on_service_gone(void *arg, struct service *s)
{
	struct cohortd *d = arg;

	ctl_log_service_gone(&d->ctl, s);
	lock_drop_service(&d->locks, s, true);
	bus_forget_owner(&d->bus, s);
}

static void on_process_started(void *arg, struct service *s)
{
	struct cohortd *d = arg;

	instance_started(d, s);
	if (d->metrics)
		sys_topics_on_process(d, s);
}

static void on_process_ended(void *arg, struct service *s)
{
	struct cohortd *d = arg;

	instance_ended(d, s);
	lock_drop_service(&d->locks, s, false);	/* a crash never holds a lock */
}

/* A start waiting for a service the reload removed is over; a value of
 * $sys.service the reload changed is published. */
static void on_reloaded(void *arg)
{
	struct cohortd *d = arg;

	if (d->metrics)
		sys_topics_on_reload(d);

	for (struct ctl_client *c = LIST_FIRST(&d->ctl.clients), *next; c; c = next) {
		next = LIST_NEXT(c, link);
		ctl_wait_event(c);
	}
}

void daemon_hook_supervise(struct cohortd *d)
{
	struct supervisor *sup = &d->sup;

	sup->loop = d->loop;
	sup->devnull = d->devnull;
	sup->control_path = d->control_path;
	sup->bus_path = d->bus_path;
	sup->log_dir = d->log_dir;
	sup->run_dir = d->run_dir;
	sup->notify_path = d->notify.path;
	sup->log_writer = d->log_writer;
	sup->hooks = (struct supervise_hooks){
		.arg = d,
		.state_changed = on_state_changed,
		.output = on_output,
		.service_gone = on_service_gone,
		.process_started = on_process_started,
		.process_ended = on_process_ended,
		.reloaded = on_reloaded,
	};
}

/* The live [cohort] keys the bus copied at start-up (the others are read
 * from d->cfg when they are needed). */
static void apply_daemon(struct cohortd *d)
{
	struct bus_policy pol;

	bus_policy_from_config(&pol, d->cfg);
	bus_set_policy(&d->bus, &pol);
}

static void report_errors(struct cohortd *d, struct diag *diag, struct strv *errors)
{
	log_error(NULL, "reload: %s has %zu error%s; still running the old config:", d->config_path,
		  diag->count, diag->count == 1 ? "" : "s");
	if (errors && diag->count > diag->lines.n)
		strv_push_owned(errors, xasprintf("... and %zu more errors", diag->count - diag->lines.n));
	for (size_t i = 0; i < diag->lines.n; i++) {
		log_error(NULL, "  %s", diag->lines.v[i]);
		if (errors)
			strv_push(errors, diag->lines.v[i]);
	}
}

int reload_config(struct cohortd *d, struct reload_report *r)
{
	struct diag diag = {0};
	struct plan *np;
	struct cohort_config *nc = plan_load(d->config_path, &np, &diag);

	if (!nc) {
		report_errors(d, &diag, r ? &r->errors : NULL);
		diag_free(&diag);
		return -1;
	}
	reload_compare_daemon(d->cfg, d->started_cfg, nc, r ? &r->applied : NULL,
			      r ? &r->restart : NULL);
	if (log_file_configure(nc->log_file) < 0)	/* a new log_file applies now */
		log_error(NULL, "reload: cannot open the log file %s: %s; still logging to %s", nc->log_file,
			  strerror(errno), log_file_path() ? log_file_path() : "stderr only");
	struct cohort_config *old = d->cfg;
	d->cfg = nc;
	apply_daemon(d);
	stack_reload(&d->sup, nc, np, r);
	config_unref(old);	/* services that still run its definitions hold it */
	instance_record(d);	/* a stop_signal or stop_timeout applied live */
	return 0;
}
