/*
 * bus_stats.c - the bus's figures for /metrics, read without changing
 * anything and without allocating: counters kept as the bus works, gauges
 * summed over the connections and sessions (a walk of the lists).
 */
#include "autoconfig.h"

#include "bus.h"

void bus_stats_read(const struct bus *b, struct bus_stats *st)
{
	size_t it = 0;
	void *v;

	*st = (struct bus_stats){0};
	const struct bus_conn *c;

	LIST_FOREACH(c, &b->conns, link) {
		st->connections[c->unix_peer ? 0 : 1]++;
		const struct bus_session *s = c->session;
		if (s && !s->key)
			st->queued += s->qlen;	/* durable ones are counted below */
	}
	while (map_next(&b->sessions, &it, NULL, &v)) {
		const struct bus_session *s = v;
		st->queued += s->qlen;
		st->durable_away += s->conn == NULL;
	}
	st->subscriptions = b->subs.nsubs;
	st->durable_sessions = b->sessions.len;
	st->retained = b->retained.len;
	st->published_qos[0] = b->published_qos[0];
	st->published_qos[1] = b->published_qos[1];
	st->delivered_qos[0] = b->delivered_qos[0];
	st->delivered_qos[1] = b->delivered_qos[1];
	st->redelivered = b->redelivered;
	st->sys_published = b->sys_published;
	st->dropped_qos0 = b->dropped_qos0;
	st->dropped_queue = b->dropped_queue;
	st->dead_lettered = b->dead_lettered;
	st->queued_bytes = b->queued_mem;
	st->journal_bytes = b->j ? jrnl_size(b->j) : 0;
	st->fsync = b->j ? jrnl_fsync_histo(b->j) : NULL;
}
