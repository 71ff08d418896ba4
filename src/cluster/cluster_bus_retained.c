/*
 * cluster_bus_retained.c - the bus's retained values in cluster mode: a
 * KV bucket, COHORT_RETAINED_<cluster_name>, a key per topic, which a
 * thread of each cohortd watches (every value at first, then each change)
 * and hands to the loop, whose bus keeps them in its table for sub and
 * get.  The worker of cluster_bus_nats.c writes them (a retain publish).
 */
#include "autoconfig.h"

#include <nats/nats.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster_bus_impl.h"
#include "cluster_nats.h"
#include "util.h"

/* Topics are [A-Za-z0-9_@-] segments, KV keys [-/_=.A-Za-z0-9]. */
char *cbus_retained_key(const char *topic)
{
	struct sbuf b = {0};

	for (const char *p = topic; *p; p++) {
		if (*p == '@')
			sbuf_addf(&b, "=40");
		else
			sbuf_addf(&b, "%c", *p);
	}
	return b.buf ? b.buf : xstrdup("");
}

static char *retained_topic(const char *key)
{
	struct sbuf b = {0};

	for (const char *p = key; *p; p++) {
		if (strncmp(p, "=40", 3) == 0) {
			sbuf_addf(&b, "@");
			p += 2;
		} else {
			sbuf_addf(&b, "%c", *p);
		}
	}
	return b.buf ? b.buf : xstrdup("");
}

static void post_retained(struct cluster_bus *cb, kvEntry *e)
{
	struct bmsg *m = xcalloc(1, sizeof(*m));
	bool put = kvEntry_Operation(e) == kvOp_Put;

	m->kind = BM_RETAINED;
	m->topic = retained_topic(kvEntry_Key(e));
	m->len = put ? (size_t)kvEntry_ValueLen(e) : 4;
	m->data = put ? xstrndup(kvEntry_Value(e) ? kvEntry_Value(e) : "", m->len) : xstrdup("null");
	m->ts_ms = kvEntry_Created(e) / 1000000;
	cbus_post(cb, m);
}

static void retained_entry(void *arg, kvEntry *e)
{
	post_retained(arg, e);
	kvEntry_Destroy(e);
}

void *cbus_retained_watcher(void *arg)
{
	struct cluster_bus *cb = arg;

	cluster_nats_watch(&cb->rkv, &cb->ready, &cb->rewatch, &cb->stop, retained_entry, cb);
	return NULL;
}

