/*
 * daemon_cluster_bus.c - wires the bus on JetStream (src/cluster/cluster_bus.c)
 * to the bus (src/bus/bus_remote.c), which cannot see each other: with
 * `cluster` set, the bus's publishes and durable sessions go through the
 * cluster, and what comes from it to the bus.  Opened after the bus,
 * closed after it (its last acks go out through the cluster).
 */
#include "autoconfig.h"

#include <stdio.h>

#include "daemon.h"
#include "log.h"
#ifdef HAVE_LIBNATS
#include "cluster_bus.h"

/* The bus asks ... */
static bool r_up(void *arg, char *why, size_t whylen)
{
	return cluster_bus_up(arg, why, whylen);
}

static bool r_publish(void *arg, const char *topic, const char *data, size_t len, int qos, bool retain,
		      int64_t ts_ms, const char *from, const char *msgid, uint64_t cookie)
{
	return cluster_bus_publish(arg, topic, data, len, qos, retain, ts_ms, from, msgid, cookie);
}

static void r_session_open(void *arg, const char *key, uint64_t cookie)
{
	cluster_bus_session_open(arg, key, cookie);
}

static void r_session_close(void *arg, const char *key, bool destroy)
{
	cluster_bus_session_close(arg, key, destroy);
}

static void r_session_subs(void *arg, const char *key, const char *subs, uint64_t cookie)
{
	cluster_bus_session_subs(arg, key, subs, cookie);
}

static void r_ack(void *arg, const char *ack, bool nak)
{
	cluster_bus_ack(arg, ack, nak);
}

static const struct bus_remote_ops remote_ops = {
	.up = r_up,
	.publish = r_publish,
	.session_open = r_session_open,
	.session_close = r_session_close,
	.session_subs = r_session_subs,
	.ack = r_ack,
};

/* ... and the cluster answers. */
static void h_deliver(void *arg, const char *topic, const char *data, size_t len, int qos, int64_t ts_ms)
{
	bus_remote_deliver(arg, topic, data, len, qos, ts_ms);
}

static void h_retained(void *arg, const char *topic, const char *data, size_t len, int64_t ts_ms)
{
	bus_remote_retained(arg, topic, data, len, ts_ms);
}

static void h_published(void *arg, uint64_t cookie, uint64_t seq, bool duplicate, const char *err)
{
	bus_remote_published(arg, cookie, seq, duplicate, err);
}

static void h_session_msg(void *arg, const char *key, const char *topic, const char *data, size_t len,
			  int64_t ts_ms, unsigned delivered, const char *ack)
{
	bus_remote_session_msg(arg, key, topic, data, len, ts_ms, delivered, ack);
}

static void h_session_ready(void *arg, uint64_t cookie, const char *subs, const char *err)
{
	bus_remote_session_ready(arg, cookie, subs, err);
}

static void h_subs_stored(void *arg, uint64_t cookie, const char *err)
{
	bus_remote_subs_stored(arg, cookie, err);
}
#endif

int daemon_cluster_bus_open(struct cohortd *d, char *err, size_t errlen)
{
#ifdef HAVE_LIBNATS
	const struct cohort_config *cfg = d->started_cfg;
	struct cluster_opts co = daemon_cluster_opts(cfg);
	struct cluster_bus_opts o = {
		.conn = &co,
		.max_age_ms = cfg->bus_queue_age_ms,
		.ack_wait_ms = cfg->bus_ack_timeout_ms,
	};
	struct cluster_bus_hooks h = {
		.deliver = h_deliver,
		.retained = h_retained,
		.published = h_published,
		.session_msg = h_session_msg,
		.session_ready = h_session_ready,
		.subs_stored = h_subs_stored,
		.arg = &d->bus,
	};

	if (!cfg->cluster)
		return 0;
	d->cluster_bus = cluster_bus_open(d->loop, &o, &h, err, errlen);
	if (!d->cluster_bus)
		return -1;
	bus_set_remote(&d->bus, &remote_ops, d->cluster_bus);
	return 0;
#else
	(void)d;
	(void)err;
	(void)errlen;
	return 0;
#endif
}

void daemon_cluster_bus_close(struct cohortd *d)
{
#ifdef HAVE_LIBNATS
	cluster_bus_close(d->cluster_bus);
	d->cluster_bus = NULL;
#else
	(void)d;
#endif
}

bool daemon_cluster_bus_info(const struct cohortd *d, struct cluster_info *out)
{
#ifdef HAVE_LIBNATS
	if (!d->cluster_bus)
		return false;
	cluster_bus_info(d->cluster_bus, out);
	return true;
#else
	(void)d;
	(void)out;
	return false;
#endif
}
