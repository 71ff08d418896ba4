/*
 * cluster_bus.c - the loop's side of the bus on JetStream (cluster_bus.h):
 * requests queued for the worker of cluster_bus_nats.c, and its answers
 * and news handed to the hooks through an ev_async.
 */
#include "autoconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_bus_impl.h"
#include "log.h"
#include "util.h"

void bmsg_free(struct bmsg *m)
{
	if (!m)
		return;
	if (!m->packed) {
		free(m->topic);
		free(m->data);
		free(m->from);
		free(m->msgid);
	}
	free(m->key);
	free(m->ack);
	free(m);
}

static char *put_str(char **at, const char *s, size_t n)
{
	char *p = *at;

	memcpy(p, s, n);
	p[n] = 0;
	*at += n + 1;
	return p;
}

struct bmsg *bmsg_new_msg(enum bmsg_kind kind, const char *topic, size_t tn, const char *data, size_t len,
			  const char *from, const char *msgid)
{
	size_t fn = from ? strlen(from) : 0, mn = msgid ? strlen(msgid) : 0;
	struct bmsg *m = xcalloc(1, sizeof(*m) + tn + 1 + len + 1 + (from ? fn + 1 : 0) + (msgid ? mn + 1 : 0));
	char *at = (char *)(m + 1);

	m->kind = kind;
	m->packed = true;
	m->topic = put_str(&at, topic, tn);
	m->data = put_str(&at, data ? data : "", len);
	m->len = len;
	m->from = from ? put_str(&at, from, fn) : NULL;
	m->msgid = msgid ? put_str(&at, msgid, mn) : NULL;
	return m;
}

static void push(struct bmsg **head, struct bmsg **tail, struct bmsg *m)
{
	m->next = NULL;
	if (*tail)
		(*tail)->next = m;
	else
		*head = m;
	*tail = m;
}

static void send_job(struct cluster_bus *cb, struct bmsg *m)
{
	pthread_mutex_lock(&cb->mu);
	push(&cb->jobs, &cb->jobs_tail, m);
	pthread_cond_signal(&cb->cv);
	pthread_mutex_unlock(&cb->mu);
}

void cbus_post(struct cluster_bus *cb, struct bmsg *m)
{
	pthread_mutex_lock(&cb->mu);
	push(&cb->done, &cb->done_tail, m);
	pthread_mutex_unlock(&cb->mu);
	ev_async_send(cb->loop, &cb->wake);
}

static void handle(struct cluster_bus *cb, struct bmsg *m)
{
	const struct cluster_bus_hooks *h = &cb->h;

	switch (m->kind) {
	case BM_DELIVER:
		h->deliver(h->arg, m->topic, m->data, m->len, m->qos, m->ts_ms);
		break;
	case BM_RETAINED:
		h->retained(h->arg, m->topic, m->data, m->len, m->ts_ms);
		break;
	case BM_PUBLISH:
		h->published(h->arg, m->cookie, m->seq, m->duplicate, m->failed ? m->err : NULL);
		break;
	case BM_SESSION_MSG:
		h->session_msg(h->arg, m->key, m->topic, m->data, m->len, m->ts_ms, m->delivered, m->ack);
		break;
	case BM_SESSION_OPEN:
		h->session_ready(h->arg, m->cookie, m->failed ? NULL : m->data, m->failed ? m->err : NULL);
		break;
	case BM_SESSION_SUBS:
		h->subs_stored(h->arg, m->cookie, m->failed ? m->err : NULL);
		break;
	case BM_UP:
		if (!cb->up) {
			log_info(NULL, "cluster: bus connected to %s (stream %s)", m->err, cb->stream);
			cb->reconnects += cb->ever_up;
			cb->state_ms = now_wall_ms();
		}
		cb->up = cb->ever_up = true;
		str_set(&cb->server, m->err);
		break;
	case BM_DOWN:
		if (cb->up || strcmp(cb->why, m->err) != 0)
			log_warn(NULL, "cluster: bus unreachable: %s", m->err);
		if (cb->up)
			cb->state_ms = now_wall_ms();
		cb->up = false;
		snprintf(cb->why, sizeof(cb->why), "%s", m->err);
		break;
	case BM_SESSION_CLOSE:
	case BM_ACK:
		break;
	}
}

static void wake_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	struct cluster_bus *cb = container_of(w, struct cluster_bus, wake);
	struct bmsg *m;
	(void)loop;
	(void)revents;

	pthread_mutex_lock(&cb->mu);
	m = cb->done;
	cb->done = cb->done_tail = NULL;
	pthread_mutex_unlock(&cb->mu);
	while (m) {
		struct bmsg *next = m->next;
		handle(cb, m);
		bmsg_free(m);
		m = next;
	}
}

static char *dup_or_null(const char *s)
{
	return s && *s ? xstrdup(s) : NULL;
}

struct cluster_bus *cluster_bus_open(struct ev_loop *loop, const struct cluster_bus_opts *o,
				     const struct cluster_bus_hooks *h, char *err, size_t errlen)
{
	struct cluster_bus *cb = xcalloc(1, sizeof(*cb));
	const struct cluster_opts *c = o->conn;

	cb->loop = loop;
	cb->h = *h;
	cb->urls = xstrdup(c->urls);
	cb->name = xstrdup(c->name);
	cb->creds = dup_or_null(c->creds);
	cb->tls_ca = dup_or_null(c->tls_ca);
	cb->tls_cert = dup_or_null(c->tls_cert);
	cb->tls_key = dup_or_null(c->tls_key);
	cb->stream = xasprintf("COHORT_BUS_%s", c->name);
	cb->prefix = xasprintf("cohort.%s", c->name);
	cb->sessions_bucket = xasprintf("COHORT_SESSIONS_%s", c->name);
	cb->retained_bucket = xasprintf("COHORT_RETAINED_%s", c->name);
	cb->max_age_ms = o->max_age_ms;
	cb->ack_wait_ms = o->ack_wait_ms;
	snprintf(cb->why, sizeof(cb->why), "not connected yet to %s", cb->urls);
	cb->state_ms = now_wall_ms();
	pthread_mutex_init(&cb->mu, NULL);
	pthread_mutex_init(&cb->pmu, NULL);
	pthread_cond_init(&cb->cv, NULL);
	ev_async_init(&cb->wake, wake_cb);
	ev_async_start(loop, &cb->wake);
	if (cbus_thread_start(cb, err, errlen) < 0) {
		cluster_bus_close(cb);
		return NULL;
	}
	return cb;
}

void cluster_bus_close(struct cluster_bus *cb)
{
	if (!cb)
		return;
	cbus_thread_stop(cb);
	ev_async_stop(cb->loop, &cb->wake);
	for (struct bmsg *m = cb->done, *next; m; m = next) {
		next = m->next;
		bmsg_free(m);
	}
	for (struct bmsg *m = cb->jobs, *next; m; m = next) {
		next = m->next;
		bmsg_free(m);
	}
	pthread_mutex_destroy(&cb->mu);
	pthread_mutex_destroy(&cb->pmu);
	pthread_cond_destroy(&cb->cv);
	free(cb->urls);
	free(cb->server);
	free(cb->name);
	free(cb->creds);
	free(cb->tls_ca);
	free(cb->tls_cert);
	free(cb->tls_key);
	free(cb->stream);
	free(cb->prefix);
	free(cb->sessions_bucket);
	free(cb->retained_bucket);
	free(cb);
}

bool cluster_bus_up(const struct cluster_bus *cb, char *why, size_t whylen)
{
	if (cb->up)
		return true;
	snprintf(why, whylen, "%s", cb->why);
	return false;
}

void cluster_bus_info(const struct cluster_bus *cb, struct cluster_info *out)
{
	out->state = cb->up ? CLUSTER_CONNECTED : cb->ever_up ? CLUSTER_UNREACHABLE : CLUSTER_CONNECTING;
	out->urls = cb->urls;
	out->server = cb->server ? cb->server : "";
	out->why = cb->up ? "" : cb->why;
	out->since_ms = cb->state_ms;
	out->rtt_us = -1;	/* the locks' connection measures it (cluster_stats.c) */
	out->reconnects = cb->reconnects;
	out->refused = 0;	/* the bus counts its refusals (remote_refused) */
}

bool cluster_bus_publish(struct cluster_bus *cb, const char *topic, const char *data, size_t len, int qos,
			 bool retain, int64_t ts_ms, const char *from, const char *msgid, uint64_t cookie)
{
	if (!cb->up)
		return false;
	struct bmsg *m = bmsg_new_msg(BM_PUBLISH, topic, strlen(topic), data, len, from, msgid);
	m->qos = qos;
	m->flag = retain;
	m->ts_ms = ts_ms;
	m->cookie = cookie;
	send_job(cb, m);
	return true;
}

void cluster_bus_session_open(struct cluster_bus *cb, const char *key, uint64_t cookie)
{
	struct bmsg *m = xcalloc(1, sizeof(*m));

	m->kind = BM_SESSION_OPEN;
	m->key = xstrdup(key);
	m->cookie = cookie;
	send_job(cb, m);
}

void cluster_bus_session_close(struct cluster_bus *cb, const char *key, bool destroy)
{
	struct bmsg *m = xcalloc(1, sizeof(*m));

	m->kind = BM_SESSION_CLOSE;
	m->key = xstrdup(key);
	m->flag = destroy;
	send_job(cb, m);
}

void cluster_bus_session_subs(struct cluster_bus *cb, const char *key, const char *subs, uint64_t cookie)
{
	struct bmsg *m = xcalloc(1, sizeof(*m));

	m->kind = BM_SESSION_SUBS;
	m->key = xstrdup(key);
	m->data = xstrdup(subs);
	m->cookie = cookie;
	send_job(cb, m);
}

void cluster_bus_ack(struct cluster_bus *cb, const char *ack, bool nak)
{
	struct bmsg *m = xcalloc(1, sizeof(*m));

	m->kind = BM_ACK;
	m->ack = xstrdup(ack);
	m->flag = nak;
	send_job(cb, m);
}

static const char HEX[] = "0123456789ABCDEF";

/* Consumer names and subject tokens take [A-Za-z0-9_-]: the rest
 * (':' '/' '.' of a session key) as _XX, '_' itself _5F. */
char *cluster_bus_name_encode(const char *key)
{
	struct sbuf b = {0};

	for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-')
			sbuf_addf(&b, "%c", *p);
		else
			sbuf_addf(&b, "_%c%c", HEX[*p >> 4], HEX[*p & 15]);
	}
	return b.buf ? b.buf : xstrdup("");
}

char *cluster_bus_name_decode(const char *name)
{
	struct sbuf b = {0};

	for (const char *p = name; *p; p++) {
		if (*p != '_') {
			sbuf_addf(&b, "%c", *p);
			continue;
		}
		const char *hi = p[1] ? strchr(HEX, p[1]) : NULL, *lo = hi && p[2] ? strchr(HEX, p[2]) : NULL;
		if (!hi || !lo) {
			sbuf_free(&b);
			return NULL;
		}
		sbuf_addf(&b, "%c", (char)(((hi - HEX) << 4) | (lo - HEX)));
		p += 2;
	}
	return b.buf ? b.buf : xstrdup("");
}
