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
#ifdef HAVE_LIBNATS
#include "cluster.h"
#endif

int daemon_cluster_open(struct cohortd *d, char *err, size_t errlen)
{
#ifdef HAVE_LIBNATS
	const struct cohort_config *cfg = d->started_cfg;
	struct cluster_opts o = {
		.urls = cfg->cluster,
		.name = cfg->cluster_name ? cfg->cluster_name : "cohort",
		.creds = cfg->cluster_creds,
		.tls_ca = cfg->cluster_tls_ca,
		.tls_cert = cfg->cluster_tls_cert,
		.tls_key = cfg->cluster_tls_key,
	};

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

void daemon_cluster_close(struct cohortd *d)
{
#ifdef HAVE_LIBNATS
	cluster_close(d->cluster);
	d->cluster = NULL;
#else
	(void)d;
#endif
}
