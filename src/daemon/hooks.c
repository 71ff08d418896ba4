/*
 * hooks.c - what the daemon answers for the layers under it, wired when
 * they open.  The bus knows nothing of services: it is opened with the
 * loop, the lock table, the peer rule and its policy (config values), and
 * asks here what a COHORT_TOKEN names and how many services run.  The
 * control socket's commands act on the services and the lock table, and
 * ask here for the bus's status, a reload and a shutdown (struct ctl_env).
 */
#include "autoconfig.h"

#include "daemon.h"

/* The token of a running service: an identity with the patterns its
 * config holds it to, owned (for the lock table) by the service. */
static struct bus_identity *resolve_token(const char *token, void *arg)
{
	struct cohortd *d = arg;
	struct service *s = map_get(&d->sup.tokens, token);

	if (!s || !svc_live(s))
		return NULL;
	const struct svc_rare *r = s->cfg->rare;
	return bus_identity_new(s->name, &r->locks, &r->publish, &r->subscribe, s);
}

static size_t count_services(void *arg)
{
	const struct cohortd *d = arg;

	return d->sup.plan->n + d->sup.nleaving;
}

int daemon_open_bus(struct cohortd *d, char *err, size_t errlen)
{
	struct bus_hooks hooks = {.resolve = resolve_token, .services = count_services, .arg = d};
	struct bus_policy pol;

	bus_policy_from_config(&pol, d->cfg);
	return bus_open(&d->bus, d->loop, &pol, &d->locks, &d->auth, &hooks, err, errlen);
}

static json_t *bus_status(void *arg)
{
	struct cohortd *d = arg;

	return bus_status_json(&d->bus);
}

static json_t *cluster_status(void *arg)
{
	return daemon_cluster_json(arg);
}

static int reload(void *arg, struct reload_report *r)
{
	return reload_config(arg, r);
}

static void shutdown_stack(void *arg, const char *why)
{
	daemon_begin_shutdown(arg, why);
}

int daemon_open_control(struct cohortd *d, char *err, size_t errlen)
{
	const struct ctl_env env = {
		.sup = &d->sup,
		.locks = &d->locks,
		.arg = d,
		.bus_status = bus_status,
		.cluster_status = cluster_status,
		.reload = reload,
		.shutdown = shutdown_stack,
	};

	return control_open(&d->ctl, d->loop, d->cfg->run_dir, (unsigned)d->cfg->control_mode, &d->auth, &env,
			    err, errlen);
}
