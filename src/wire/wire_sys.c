/*
 * wire_sys.c - the two documents cohortd publishes at every service
 * transition ($sys.service.NAME, retained, and $sys.event.service), written
 * without building a JSON value.  With jansson (json_pack, json_dumps)
 * they were half of cohortd's instructions in a start-up of 200 services
 * (doc/BENCHMARKS.md).  test_wire.c checks them against jansson.
 */
#include "autoconfig.h"

#include <stdint.h>
#include <string.h>

#include "util.h"
#include "wire.h"

static void add_str(struct sbuf *b, const char *s)
{
	size_t n = strlen(s);

	sbuf_addc(b, '"');
	sbuf_commit(b, jstr_escape(sbuf_reserve(b, JSTR_ESCAPED_MAX(n)), s, n));
	sbuf_addc(b, '"');
}

/* ,"key": (keys are plain words: nothing to escape) */
static void add_key(struct sbuf *b, const char *key)
{
	sbuf_adds(b, ",\"");
	sbuf_adds(b, key);
	sbuf_adds(b, "\":");
}

/* A decimal, without printf: these are written at every transition. */
static void add_int(struct sbuf *b, int64_t v)
{
	char tmp[24], *w = tmp + sizeof(tmp);
	uint64_t u = v < 0 ? -(uint64_t)v : (uint64_t)v;

	do {
		*--w = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		*--w = '-';
	sbuf_add(b, w, (size_t)(tmp + sizeof(tmp) - w));
}

/* A number, or null when absent. */
static void add_int_or_null(struct sbuf *b, int64_t v, bool present)
{
	if (present)
		add_int(b, v);
	else
		sbuf_adds(b, "null");
}

/* ["a","b"] */
static void add_names(struct sbuf *b, const char *const *v, size_t n)
{
	sbuf_addc(b, '[');
	for (size_t i = 0; i < n; i++) {
		if (i)
			sbuf_addc(b, ',');
		add_str(b, v[i]);
	}
	sbuf_addc(b, ']');
}

void wire_write_svc_state(struct sbuf *b, const struct wire_svc_state *s)
{
	sbuf_adds(b, "{\"name\":");
	add_str(b, s->name);
	add_key(b, "state");
	add_str(b, s->state);
	add_key(b, "pid");
	add_int_or_null(b, s->pid, s->pid > 0);
	add_key(b, "since_ms");
	add_int(b, s->since_ms);
	add_key(b, "reason");
	add_str(b, s->reason);
	add_key(b, "restarts");
	add_int(b, s->restarts);
	sbuf_adds(b, s->wanted_up ? ",\"wanted\":\"up\"" : ",\"wanted\":\"down\"");
	add_key(b, "phase");
	add_int_or_null(b, s->phase, s->phase >= 0);
	add_key(b, "requires");
	add_names(b, s->requires, s->nrequires);
	add_key(b, "after");
	add_names(b, s->after, s->nafter);
	sbuf_adds(b, s->log ? ",\"log\":true" : ",\"log\":false");
	if (s->exit_signal) {
		sbuf_adds(b, ",\"last_exit\":{\"signal\":");
		add_str(b, s->exit_signal);
		sbuf_addc(b, '}');
	} else if (s->has_exit) {
		sbuf_adds(b, ",\"last_exit\":{\"code\":");
		add_int(b, s->exit_code);
		sbuf_addc(b, '}');
	}
	sbuf_addc(b, '}');
}

void wire_write_svc_event(struct sbuf *b, const struct wire_svc_event *e)
{
	sbuf_adds(b, "{\"name\":");
	add_str(b, e->name);
	add_key(b, "from");
	add_str(b, e->from);
	add_key(b, "to");
	add_str(b, e->to);
	add_key(b, "reason");
	add_str(b, e->reason);
	add_key(b, "pid");
	add_int_or_null(b, e->pid, e->pid > 0);
	add_key(b, "restarts");
	add_int(b, e->restarts);
	add_key(b, "ts_ms");
	add_int(b, e->ts_ms);
	sbuf_addc(b, '}');
}
