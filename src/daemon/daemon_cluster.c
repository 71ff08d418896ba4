/*
 * daemon_cluster.c - wires the cluster mode (src/cluster) to the daemon:
 * with `cluster` set, the lock table gets the cluster's gate at start and
 * loses it at exit, after the control socket and the bus have let go of
 * their leases (whose keys are then deleted).  Built without libnats,
 * config --check refuses `cluster`, so there is nothing to do here.
 */
#include "autoconfig.h"

#include <stdio.h>

#include "daemon.h"
#include "log.h"
#include "cluster.h"	/* its types; its functions only with libnats */

struct cluster_opts daemon_cluster_opts(const struct cohort_config *cfg)
{
	return (struct cluster_opts){
		.urls = cfg->cluster,
		.name = cfg->cluster_name ? cfg->cluster_name : "cohort",
		.creds = cfg->cluster_creds,
		.tls_ca = cfg->cluster_tls_ca,
		.tls_cert = cfg->cluster_tls_cert,
		.tls_key = cfg->cluster_tls_key,
	};
}

int daemon_cluster_open(struct cohortd *d, char *err, size_t errlen)
{
#ifdef HAVE_LIBNATS
	const struct cohort_config *cfg = d->started_cfg;
	struct cluster_opts o = daemon_cluster_opts(cfg);

	if (!cfg->cluster)
		return 0;
	d->cluster = cluster_open(d->loop, &d->locks, &o, err, errlen);
	return d->cluster ? 0 : -1;
#else
	(void)d;
	(void)err;
	(void)errlen;
	return 0;
#endif
}

bool daemon_cluster_info(const struct cohortd *d, struct cluster_info *out)
{
#ifdef HAVE_LIBNATS
	if (!d->cluster)
		return false;
	cluster_info(d->cluster, out);
	return true;
#else
	(void)d;
	(void)out;
	return false;
#endif
}

/* One connection's state: the locks', or (no round trip) the bus's. */
static json_t *connection_json(const struct cluster_info *ci, bool rtt)
{
	json_t *o = json_pack("{s:s,s:I,s:I}", "state", cluster_state_name(ci->state), "since_ms",
			      (json_int_t)ci->since_ms, "reconnects", (json_int_t)ci->reconnects);

	json_object_set_new(o, "server", ci->state == CLUSTER_CONNECTED ? json_string(ci->server) : json_null());
	if (rtt)
		json_object_set_new(o, "rtt_ms", ci->rtt_us >= 0 ? json_real((double)ci->rtt_us / 1000.0)
								: json_null());
	if (ci->state != CLUSTER_CONNECTED)
		json_object_set_new(o, "error", json_string(ci->why));
	return o;
}

/* The "cluster" of status: absent on one host.  Its fields are the
 * locks' connection's; "bus" is the bus's own connection, and what the
 * bus refused or dropped while it was away. */
json_t *daemon_cluster_json(const struct cohortd *d)
{
	struct cluster_info ci;

	if (!daemon_cluster_info(d, &ci))
		return NULL;
	json_t *o = connection_json(&ci, true);
	json_object_set_new(o, "servers", json_string(ci.urls));
	json_object_set_new(o, "refused", json_integer((json_int_t)ci.refused));
	json_object_set_new(o, "requests", json_pack("{s:I,s:I}", "on_loop", (json_int_t)ci.on_loop,
						      "by_worker", (json_int_t)ci.by_worker));
	if (daemon_cluster_bus_info(d, &ci)) {
		json_t *bus = connection_json(&ci, false);
		json_object_set_new(bus, "refused", json_integer((json_int_t)d->bus.remote_refused));
		json_object_set_new(bus, "dropped_qos0", json_integer((json_int_t)d->bus.remote_dropped));
		json_object_set_new(o, "bus", bus);
	}
	return o;
}

void daemon_cluster_close(struct cohortd *d)
{
#ifdef HAVE_LIBNATS
	cluster_close(d->cluster);
	d->cluster = NULL;
#else
	(void)d;
#endif
}
