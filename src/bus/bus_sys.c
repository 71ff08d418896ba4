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

#include <stdlib.h>
#include <string.h>

#include "bus.h"

void bus_publish_sys(struct bus *b, const char *topic, const char *json, size_t len, bool retain)
{
	/* Packed: every service keeps its $sys.service.NAME retained, and
	 * 10,000 services made four allocations each of them. */
	struct bus_msg *m = bus_msg_new_packed(topic, strlen(topic), json, len, NULL, 0, bus_sys_publisher,
					       strlen(bus_sys_publisher));

	m->seq = ++b->seq;
	m->ts_ms = now_wall_ms();
	m->qos = 0;
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

bool bus_retained_is(const struct bus *b, const char *topic, const char *json, size_t len)
{
	const struct bus_msg *m = map_get(&b->retained, topic);

	return m && m->data_len == len && memcmp(m->data, json, len) == 0;
}

void bus_set_admin_token(struct bus *b, const char *token)
{
	free(b->admin_token);
	b->admin_token = token ? xstrdup(token) : NULL;
}

void bus_set_service_fn(struct bus *b, int (*fn)(void *arg, const char *action, const char *name, char *err,
						  size_t errlen), void *arg)
{
	b->service_fn = fn;
	b->service_arg = arg;
}

/* Compares all of both, whatever differs first: the time it takes says
 * nothing of how much of a guess was right. */
bool bus_is_admin_token(const struct bus *b, const char *token)
{
	if (!b->admin_token)
		return false;
	size_t n = strlen(b->admin_token), m = strlen(token);
	unsigned char diff = n != m;
	for (size_t i = 0; i < m; i++)
		diff |= (unsigned char)(token[i] ^ b->admin_token[i % n]);
	return diff == 0;
}

void bus_op_service(struct bus_conn *c, json_t *req, json_t *id)
{
	const char *action = json_string_value(json_object_get(req, "action"));
	const char *name = json_string_value(json_object_get(req, "name"));
	char err[256];

	if (!action || !name || (strcmp(action, "start") && strcmp(action, "stop") && strcmp(action, "restart"))) {
		bus_conn_error(c, id, "service: \"action\" is start, stop or restart, \"name\" a service");
		return;
	}
	if (!c->admin || !c->bus->service_fn) {
		bus_conn_refuse(c, id, "not allowed: only an admin may start, stop or restart a service");
		return;
	}
	if (c->bus->service_fn(c->bus->service_arg, action, name, err, sizeof(err)) < 0) {
		bus_conn_refuse(c, id, "%s", err);
		return;
	}
	bus_conn_send_json(c, json_pack("{s:s,s:O}", "op", "ok", "id", id));
}

static void count_sub(void *sub, void *arg)
{
	(void)sub;
	(*(size_t *)arg)++;
}

bool bus_has_subscribers(const struct bus *b, const char *topic)
{
	size_t n = 0;

	trie_match(&b->subs, topic, count_sub, &n);
	return n > 0;
}
