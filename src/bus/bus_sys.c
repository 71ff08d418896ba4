/*
 * bus_sys.c - cohortd's own messages on its bus ($sys.*): published by the
 * daemon, never by a client (a client's pub to a $ topic is refused).
 *
 * They are qos 0 and never journaled: they describe the stack as it is
 * now, which a restarted cohortd publishes again, so a retained one is
 * kept in memory only (bus_retain, without bus_store_pub) and compaction
 * leaves $ topics out (bus_store.c).  Subscribers get them as any message,
 * a retained one first on sub; wildcards at the start of a pattern do not
 * match $ topics, so only a pattern naming $sys gets them.
 */
#include "autoconfig.h"

#include <string.h>

#include "bus.h"

void bus_publish_sys(struct bus *b, const char *topic, const char *json, size_t len, bool retain)
{
	struct bus_msg *m = xcalloc(1, sizeof(*m));

	m->refs = 1;
	m->seq = ++b->seq;
	m->topic = xstrdup(topic);
	m->data = xstrndup(json, len);
	m->data_len = len;
	m->ts_ms = now_wall_ms();
	m->qos = 0;
	m->publisher = xstrdup("cohortd");
	if (retain)
		bus_retain(b, m);	/* in memory only: m->retain stays false, nothing is stored */
	bus_publish(b, m);
	/* Counted apart: "published" is what clients published. */
	b->published--;
	b->published_qos[0]--;
	b->sys_published++;
	bus_msg_put(m);
}

bool bus_has_retained(const struct bus *b, const char *topic)
{
	return map_get(&b->retained, topic) != NULL;
}
