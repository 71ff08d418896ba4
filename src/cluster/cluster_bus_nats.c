/*
 * cluster_bus_nats.c - the threads of the bus on JetStream: the worker
 * runs the loop's requests in order on the bus's own NATS connection
 * (publishes, durable sessions' consumers, their patterns in the KV
 * bucket, acks); libnats's threads read the fan-out subscription and the
 * sessions' consumers.  Its own connection, not the locks' (cluster_conn.c):
 * a burst of messages never waits behind a lock's request, nor the other
 * way round.  They touch nothing but the queues of struct cluster_bus.
 */
#include "autoconfig.h"

#include <errno.h>
#include <inttypes.h>
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster_bus_impl.h"
#include "cluster_nats.h"
#include "log.h"
#include "util.h"

/* Cohort's headers on a message: when it was published, and by whom. */
#define H_TS "Cohort-Ts"
#define H_FROM "Cohort-From"
#define MAX_ACK_PENDING 1000	/* BUS_INFLIGHT_MAX: what a session may have unacked */
#define ACK_WAIT_MIN_MS 30000	/* a consumer's redelivery (the ring redelivers before) */

struct csub {
	char *name;		/* the encoded session key: the map's key */
	natsSubscription *sub;
};

static void post_text(struct cluster_bus *cb, enum bmsg_kind kind, const char *text)
{
	struct bmsg *m = xcalloc(1, sizeof(*m));

	m->kind = kind;
	snprintf(m->err, sizeof(m->err), "%s", text);
	cbus_post(cb, m);
}

static void status_text(char *buf, size_t len, const char *what, natsStatus s, jsErrCode jerr)
{
	const char *last = nats_GetLastError(NULL);

	snprintf(buf, len, "%s: %s%s%s", what, natsStatus_GetText(s), last && *last ? ": " : "",
		 last && *last ? last : "");
	if (jerr)
		snprintf(buf + strlen(buf), len - strlen(buf), " (JetStream error %d)", (int)jerr);
}

/* --- libnats's threads ------------------------------------------------------ */

static int64_t header_ts(natsMsg *msg)
{
	const char *v = NULL;

	if (natsMsgHeader_Get(msg, H_TS, &v) == NATS_OK && v)
		return strtoll(v, NULL, 10);
	return now_wall_ms();
}

/* cohort.<name>.s.T or .v.T -> T, and whether it was stored. */
static const char *topic_of(const struct cluster_bus *cb, const char *subj, int *qos)
{
	size_t n = strlen(cb->prefix);

	if (strncmp(subj, cb->prefix, n) != 0 || subj[n] != '.' || !subj[n + 1] || subj[n + 2] != '.')
		return NULL;
	if (subj[n + 1] != 's' && subj[n + 1] != 'v')
		return NULL;
	*qos = subj[n + 1] == 's';
	return subj + n + 3;
}

static struct bmsg *msg_news(struct cluster_bus *cb, natsMsg *msg, enum bmsg_kind kind)
{
	int qos = 0;
	const char *topic = topic_of(cb, natsMsg_GetSubject(msg), &qos);

	if (!topic || !*topic)
		return NULL;
	struct bmsg *m = bmsg_new_msg(kind, topic, strlen(topic), natsMsg_GetData(msg),
				      (size_t)natsMsg_GetDataLength(msg), NULL, NULL);
	m->qos = qos;
	m->ts_ms = header_ts(msg);
	return m;
}

static void on_fanout(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *arg)
{
	struct cluster_bus *cb = arg;
	struct bmsg *m = msg_news(cb, msg, BM_DELIVER);
	(void)nc;
	(void)sub;

	if (m)
		cbus_post(cb, m);
	natsMsg_Destroy(msg);
}

/* $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>:
 * the consumer (the encoded session key) and the count of deliveries. */
static char *ack_fields(const char *reply, unsigned *delivered)
{
	char *copy = xstrdup(reply), *save = NULL, *tok[12];
	int n = 0;

	for (char *t = strtok_r(copy, ".", &save); t && n < 12; t = strtok_r(NULL, ".", &save))
		tok[n++] = t;
	char *consumer = NULL;
	if (n == 9 && strcmp(tok[0], "$JS") == 0 && strcmp(tok[1], "ACK") == 0) {
		consumer = xstrdup(tok[3]);
		*delivered = (unsigned)strtoul(tok[4], NULL, 10);
	}
	free(copy);
	return consumer;
}

static void on_session(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *arg)
{
	struct cluster_bus *cb = arg;
	const char *reply = natsMsg_GetReply(msg);
	unsigned delivered = 1;
	char *consumer = reply ? ack_fields(reply, &delivered) : NULL;
	(void)nc;
	(void)sub;

	if (consumer) {
		struct bmsg *m = msg_news(cb, msg, BM_SESSION_MSG);
		char *key = cluster_bus_name_decode(consumer);
		if (m && key) {
			m->key = key;
			m->ack = xstrdup(reply);
			m->delivered = delivered ? delivered : 1;
			cbus_post(cb, m);
		} else {
			free(key);
			bmsg_free(m);
		}
		free(consumer);
	}
	natsMsg_Destroy(msg);
}

static void on_disconnected(natsConnection *nc, void *arg)
{
	struct cluster_bus *cb = arg;
	(void)nc;

	post_text(cb, BM_DOWN, "disconnected from the NATS servers, reconnecting");
}

/* The last callback of the connection (libnats calls them in order on
 * one thread): once it ran, none will touch cb again. */
static void on_closed(natsConnection *nc, void *arg)
{
	struct cluster_bus *cb = arg;
	(void)nc;

	pthread_mutex_lock(&cb->mu);
	cb->closed = true;
	pthread_cond_broadcast(&cb->cv);
	pthread_mutex_unlock(&cb->mu);
}

static void on_reconnected(natsConnection *nc, void *arg)
{
	struct cluster_bus *cb = arg;
	char url[128] = "";

	natsConnection_GetConnectedUrl(nc, url, sizeof(url));
	atomic_store(&cb->rewatch, true);	/* a watch does not outlive every reconnection */
	if (atomic_load(&cb->ready)) {
		post_text(cb, BM_UP, url);
		return;
	}
	pthread_mutex_lock(&cb->mu);	/* the first connection: set up now */
	pthread_cond_signal(&cb->cv);
	pthread_mutex_unlock(&cb->mu);
}

/* --- the worker: connecting and setting up -------------------------------------- */

static natsStatus conn_start(struct cluster_bus *cb, char *err, size_t errlen)
{
	/* As the locks' connection, and with no reconnect buffer: what is
	 * published while away is refused or dropped here, not sent later
	 * behind the publisher's back.  Without echo: the bus hands its own
	 * publishes to its subscribers itself (bus_remote_publish), and each
	 * coming back through the fan-out cost a publishing cohortd as much
	 * again as the publish (a profile under load: a third of its CPU). */
	const struct cluster_nats_conf k = {
		.urls = cb->urls, .creds = cb->creds, .tls_ca = cb->tls_ca, .tls_cert = cb->tls_cert,
		.tls_key = cb->tls_key, .timeout_ms = CBUS_OP_TIMEOUT_MS, .no_reconnect_buffer = true,
		.no_echo = true,
		.on_reconnected = on_reconnected, .on_disconnected = on_disconnected, .on_closed = on_closed,
		.arg = cb,
	};
	natsConnection *nc = NULL;
	const char *step = NULL;
	natsStatus s = cluster_nats_connect(&k, &nc, &step);

	if (s != NATS_OK)
		status_text(err, errlen, step, s, 0);
	cb->nc = nc;
	return s;
}

/* The stream of stored messages: three replicas (a quorum stores each),
 * or one where the cluster has fewer servers. */
static natsStatus stream_ensure(struct cluster_bus *cb, char *err, size_t errlen)
{
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	natsStatus s = js_GetStreamInfo(&si, cb->js, cb->stream, NULL, &jerr);

	if (s == NATS_OK) {
		jsStreamInfo_Destroy(si);
		return s;
	}
	char *subj = xasprintf("%s.s.>", cb->prefix);
	const char *subjects[] = {subj};
	jsStreamConfig sc;
	for (int replicas = 3; replicas >= 1; replicas -= 2) {
		jsStreamConfig_Init(&sc);
		sc.Name = cb->stream;
		sc.Description = "cohort: the bus's qos-1 messages of the cohortds of one cluster_name";
		sc.Subjects = subjects;
		sc.SubjectsLen = 1;
		sc.Storage = js_FileStorage;
		sc.Replicas = replicas;
		sc.MaxAge = cb->max_age_ms * 1000000;
		sc.Duplicates = 120 * (int64_t)1000000000;	/* BUS_MID_WINDOW_MS */
		jerr = 0;
		s = js_AddStream(&si, cb->js, &sc, NULL, &jerr);
		if (s == NATS_OK)
			break;
	}
	free(subj);
	jsStreamInfo_Destroy(si);
	if (s != NATS_OK)
		status_text(err, errlen, "the bus stream", s, jerr);
	return s;
}

static natsStatus bucket_ensure(struct cluster_bus *cb, const char *bucket, const char *what, void **out,
				char *err, size_t errlen)
{
	kvStore *kv = NULL;
	natsStatus s = js_KeyValue(&kv, cb->js, bucket);

	for (int replicas = 3; s != NATS_OK && replicas >= 1; replicas -= 2) {
		kvConfig kc;
		kvConfig_Init(&kc);
		kc.Bucket = bucket;
		kc.Description = what;
		kc.History = 1;
		kc.Replicas = replicas;
		s = js_CreateKeyValue(&kv, cb->js, &kc);
	}
	if (s != NATS_OK)
		status_text(err, errlen, what, s, 0);
	else
		*out = kv;
	return s;
}

static void on_pub_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *arg);

static void setup_try(struct cluster_bus *cb)
{
	static int64_t warned;
	char err[256] = "";
	natsStatus s = NATS_OK;

	if (!cb->nc || natsConnection_Status(cb->nc) != NATS_CONN_STATUS_CONNECTED)
		return;
	if (!cb->js) {
		jsOptions jo;
		jsCtx *js = NULL;
		jsOptions_Init(&jo);
		jo.Wait = CBUS_OP_TIMEOUT_MS;
		jo.PublishAsync.AckHandler = on_pub_ack;
		jo.PublishAsync.AckHandlerClosure = cb;
		jo.PublishAsync.MaxPending = 65536;
		jo.PublishAsync.StallWait = CBUS_OP_TIMEOUT_MS;
		if (natsConnection_JetStream(&js, cb->nc, &jo) != NATS_OK)
			return;
		cb->js = js;
	}
	if (!cb->fanout) {
		natsSubscription *sub = NULL;
		char *subj = xasprintf("%s.*.>", cb->prefix);
		s = natsConnection_Subscribe(&sub, cb->nc, subj, on_fanout, cb);
		free(subj);
		if (s == NATS_OK) {
			natsSubscription_SetPendingLimits(sub, -1, 256 << 20);
			cb->fanout = sub;
		} else {
			status_text(err, sizeof(err), "subscribe", s, 0);
		}
	}
	if (s == NATS_OK)
		s = stream_ensure(cb, err, sizeof(err));
	if (s == NATS_OK && !cb->kv)
		s = bucket_ensure(cb, cb->sessions_bucket, "cohort: the durable bus sessions' patterns", &cb->kv, err,
				  sizeof(err));
	if (s == NATS_OK && !cb->rkv)
		s = bucket_ensure(cb, cb->retained_bucket, "cohort: the bus's retained values", &cb->rkv, err,
				  sizeof(err));
	if (s != NATS_OK) {
		int64_t now = now_mono_ms();
		if (now - warned > 10000) {	/* tried every 500 ms: said every 10 s */
			post_text(cb, BM_DOWN, err);
			warned = now;
		}
		return;
	}
	atomic_store(&cb->ready, true);
	char url[128] = "";
	natsConnection_GetConnectedUrl(cb->nc, url, sizeof(url));
	post_text(cb, BM_UP, url);
}

/* --- the worker: the jobs ---------------------------------------------------------- */

static bool connected(struct cluster_bus *cb, struct bmsg *m)
{
	if (atomic_load(&cb->ready) && natsConnection_Status(cb->nc) == NATS_CONN_STATUS_CONNECTED)
		return true;
	m->failed = true;
	snprintf(m->err, sizeof(m->err), "not connected to any of %s", cb->urls);
	return false;
}

/* The stream's answer to a qos-1 publish (libnats's thread), or the
 * library's timeout after MaxWait. */
static void on_pub_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *arg)
{
	struct cluster_bus *cb = arg;
	(void)js;

	pthread_mutex_lock(&cb->pmu);
	struct bmsg *m = intmap_del(&cb->inflight, (int64_t)(uintptr_t)msg);
	pthread_mutex_unlock(&cb->pmu);
	if (m && pa) {
		m->seq = pa->Sequence;
		m->duplicate = pa->Duplicate;
	} else if (m) {
		m->failed = true;
		snprintf(m->err, sizeof(m->err), "publish: %s%s%s",
			 natsStatus_GetText(pae ? pae->Err : NATS_ERR), pae && pae->ErrText ? ": " : "",
			 pae && pae->ErrText ? pae->ErrText : "");
	}
	if (m)
		cbus_post(cb, m);
	natsMsg_Destroy(msg);
}

/* This host's copy of m, for its own subscribers: NATS does not send it
 * back (NoEcho).  Posted once m has gone to NATS, never for one refused
 * or dropped here, which no other host sees either. */
static struct bmsg *local_copy(const struct bmsg *m)
{
	struct bmsg *c = bmsg_new_msg(BM_DELIVER, m->topic, strlen(m->topic), m->data, m->len, NULL, NULL);

	c->qos = m->qos;
	c->ts_ms = m->ts_ms;
	return c;
}

/* true when m is answered later, by on_pub_ack: qos-1 publishes are
 * pipelined (one round trip each, in turn, bounded the bus at about a
 * thousand a second); the stream takes them in order. */
static bool run_publish(struct cluster_bus *cb, struct bmsg *m)
{
	char *subj = xasprintf("%s.%s.%s", cb->prefix, m->qos ? "s" : "v", m->topic);
	char ts[32];
	natsMsg *msg = NULL;
	natsStatus s = NATS_OK;
	bool later = false;
	struct bmsg *local = NULL;

	if (!connected(cb, m))
		goto out;
	snprintf(ts, sizeof(ts), "%" PRId64, m->ts_ms);
	s = natsMsg_Create(&msg, subj, NULL, m->data, (int)m->len);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(msg, H_TS, ts);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(msg, H_FROM, m->from);
	if (s == NATS_OK && m->flag) {	/* retained: the value first, kept */
		char *key = cbus_retained_key(m->topic);
		uint64_t rev = 0;
		s = kvStore_Put(&rev, cb->rkv, key, m->data, (int)m->len);
		free(key);
	}
	if (s == NATS_OK)
		local = local_copy(m);	/* m may be on_pub_ack's, and freed, once sent */
	if (s == NATS_OK && !m->qos) {
		s = natsConnection_PublishMsg(cb->nc, msg);
	} else if (s == NATS_OK) {
		jsPubOptions po;
		jsPubOptions_Init(&po);
		po.MaxWait = CBUS_OP_TIMEOUT_MS;
		po.MsgId = m->msgid;
		po.ExpectStream = cb->stream;
		int64_t key = (int64_t)(uintptr_t)msg;
		pthread_mutex_lock(&cb->pmu);	/* before: the ack may come at once */
		intmap_put(&cb->inflight, key, m);
		pthread_mutex_unlock(&cb->pmu);
		s = js_PublishMsgAsync(cb->js, &msg, &po);
		if (s == NATS_OK) {
			later = true;	/* m is on_pub_ack's now */
			goto out;
		}
		pthread_mutex_lock(&cb->pmu);
		intmap_del(&cb->inflight, key);
		pthread_mutex_unlock(&cb->pmu);
	}
	if (s != NATS_OK) {
		m->failed = true;
		status_text(m->err, sizeof(m->err), "publish", s, 0);
	}
out:
	if (local && s == NATS_OK)
		cbus_post(cb, local);
	else
		bmsg_free(local);
	natsMsg_Destroy(msg);
	free(subj);
	return later;
}

static natsStatus consumer_ensure(struct cluster_bus *cb, const char *name, const char *key, const char *deliver,
				  jsErrCode *jerr)
{
	jsConsumerInfo *ci = NULL;
	natsStatus s = js_GetConsumerInfo(&ci, cb->js, cb->stream, name, NULL, jerr);

	if (s == NATS_OK) {
		jsConsumerInfo_Destroy(ci);
		return s;
	}
	if (s != NATS_NOT_FOUND && *jerr != JSConsumerNotFoundErr)
		return s;
	char *filter = xasprintf("%s.s.>", cb->prefix);
	jsConsumerConfig cc;
	jsConsumerConfig_Init(&cc);
	cc.Durable = name;
	cc.Description = key;
	cc.DeliverSubject = deliver;
	cc.DeliverPolicy = js_DeliverNew;	/* a new session is owed what comes from now on */
	cc.AckPolicy = js_AckExplicit;
	cc.AckWait = (cb->ack_wait_ms > ACK_WAIT_MIN_MS ? cb->ack_wait_ms : ACK_WAIT_MIN_MS) * 1000000;
	cc.MaxAckPending = MAX_ACK_PENDING;
	cc.FilterSubject = filter;
	*jerr = 0;
	s = js_AddConsumer(&ci, cb->js, cb->stream, &cc, NULL, jerr);
	jsConsumerInfo_Destroy(ci);
	free(filter);
	return s;
}

static void run_session_open(struct cluster_bus *cb, struct bmsg *m)
{
	char *name = cluster_bus_name_encode(m->key);
	char *deliver = xasprintf("cohort_d.%s.%s", cb->name, name);
	kvEntry *e = NULL;
	jsErrCode jerr = 0;
	natsStatus s = NATS_OK;

	if (!connected(cb, m))
		goto out;
	s = kvStore_Get(&e, cb->kv, name);
	if (s == NATS_OK) {
		m->data = xstrdup(kvEntry_ValueString(e) ? kvEntry_ValueString(e) : "");
		kvEntry_Destroy(e);
	} else if (s == NATS_NOT_FOUND) {
		s = NATS_OK;
	}
	if (s == NATS_OK)
		s = consumer_ensure(cb, name, m->key, deliver, &jerr);
	if (s != NATS_OK) {
		m->failed = true;
		status_text(m->err, sizeof(m->err), "the session's consumer", s, jerr);
		goto out;
	}
	/* The answer goes first: the loop knows the session's patterns before
	 * the consumer's first message comes (else it would hand it back). */
	cbus_post(cb, m);
	if (!map_get(&cb->subs, name)) {
		struct csub *cs = xcalloc(1, sizeof(*cs));
		s = natsConnection_Subscribe(&cs->sub, cb->nc, deliver, on_session, cb);
		if (s == NATS_OK) {
			natsSubscription_SetPendingLimits(cs->sub, -1, 256 << 20);
			cs->name = xstrdup(name);
			map_put(&cb->subs, cs->name, cs);
		} else {
			char why[256];
			status_text(why, sizeof(why), "the session's consumer", s, 0);
			post_text(cb, BM_DOWN, why);
			free(cs);
		}
	}
	m = NULL;
out:
	if (m)
		cbus_post(cb, m);
	free(deliver);
	free(name);
}

/* Drained, not only unsubscribed: what the consumer pushed before the
 * server had the unsubscribe still reaches on_session (which hands it
 * back: the session is not here), where an unsubscribe would drop it,
 * and the consumer would send it again only after its AckWait. */
static void csub_free(struct cluster_bus *cb, struct csub *cs)
{
	/* (Away, nothing more comes, and a drain would wait for nothing.) */
	if (natsConnection_Status(cb->nc) == NATS_CONN_STATUS_CONNECTED && natsSubscription_Drain(cs->sub) == NATS_OK)
		natsSubscription_WaitForDrainCompletion(cs->sub, CBUS_OP_TIMEOUT_MS);
	else
		natsSubscription_Unsubscribe(cs->sub);
	natsSubscription_Destroy(cs->sub);
	free(cs->name);
	free(cs);
}

static void run_session_close(struct cluster_bus *cb, struct bmsg *m)
{
	char *name = cluster_bus_name_encode(m->key);
	struct csub *cs = map_del(&cb->subs, name);
	jsErrCode jerr = 0;

	if (cs)
		csub_free(cb, cs);
	if (m->flag && connected(cb, m)) {
		js_DeleteConsumer(cb->js, cb->stream, name, NULL, &jerr);
		kvStore_Delete(cb->kv, name);
	}
	free(name);
}

static void run_session_subs(struct cluster_bus *cb, struct bmsg *m)
{
	char *name = cluster_bus_name_encode(m->key);
	uint64_t rev = 0;

	if (connected(cb, m)) {
		natsStatus s = kvStore_PutString(&rev, cb->kv, name, m->data);
		if (s != NATS_OK) {
			m->failed = true;
			status_text(m->err, sizeof(m->err), "the session's patterns", s, 0);
		}
	}
	free(name);
}

enum after { FREE, POST, POSTED };

/* Runs m; then the loop hears of it (POST), or not (FREE), or m went to
 * it already (POSTED).  Stopping, only what lets go (acks, naks,
 * unsubscribing) is still done. */
static enum after run_job(struct cluster_bus *cb, struct bmsg *m)
{
	if (atomic_load(&cb->stop) && m->kind != BM_ACK && m->kind != BM_SESSION_CLOSE)
		return FREE;
	switch (m->kind) {
	case BM_PUBLISH:
		if (run_publish(cb, m))
			return POSTED;	/* on_pub_ack posts it */
		return m->qos || m->flag || m->failed ? POST : FREE;	/* a qos-0 one only when dropped */
	case BM_SESSION_OPEN:
		run_session_open(cb, m);	/* it answers before it subscribes */
		return POSTED;
	case BM_SESSION_CLOSE:
		run_session_close(cb, m);
		return FREE;
	case BM_SESSION_SUBS:
		run_session_subs(cb, m);
		return POST;
	case BM_ACK:
		if (cb->nc)	/* lost while away: the consumer sends it again */
			natsConnection_PublishString(cb->nc, m->ack, m->flag ? "-NAK" : "+ACK");
		return FREE;
	default:
		return FREE;
	}
}

static void *worker_main(void *arg)
{
	struct cluster_bus *cb = arg;
	char err[256];

	if (conn_start(cb, err, sizeof(err)) != NATS_OK)
		post_text(cb, BM_DOWN, err);
	pthread_mutex_lock(&cb->mu);
	while (!atomic_load(&cb->stop) || cb->jobs) {
		if (!cb->jobs) {
			if (!atomic_load(&cb->ready)) {
				pthread_mutex_unlock(&cb->mu);
				setup_try(cb);
				pthread_mutex_lock(&cb->mu);
				if (atomic_load(&cb->ready) || cb->jobs || atomic_load(&cb->stop))
					continue;
			}
			cluster_nats_pause(&cb->cv, &cb->mu);
			continue;
		}
		struct bmsg *m = cb->jobs;
		cb->jobs = m->next;
		if (!cb->jobs)
			cb->jobs_tail = NULL;
		pthread_mutex_unlock(&cb->mu);
		enum after next = run_job(cb, m);
		if (next == POST)
			cbus_post(cb, m);
		else if (next == FREE)
			bmsg_free(m);
		pthread_mutex_lock(&cb->mu);
	}
	pthread_mutex_unlock(&cb->mu);
	return NULL;
}

int cbus_thread_start(struct cluster_bus *cb, char *err, size_t errlen)
{
	int rc = pthread_create(&cb->worker, NULL, worker_main, cb);

	if (rc == 0) {
		cb->thread = true;
		rc = pthread_create(&cb->watcher, NULL, cbus_retained_watcher, cb);
		cb->watching = rc == 0;
	}
	if (rc != 0) {
		snprintf(err, errlen, "cannot start the cluster bus's threads: %s", strerror(rc));
		cbus_thread_stop(cb);
		return -1;
	}
	return 0;
}

/* What is still queued is left to cluster_bus_close: the sessions'
 * unacked messages come again from their consumers. */
void cbus_thread_stop(struct cluster_bus *cb)
{
	if (!cb->thread)
		return;
	pthread_mutex_lock(&cb->mu);
	atomic_store(&cb->stop, true);
	pthread_cond_signal(&cb->cv);
	pthread_mutex_unlock(&cb->mu);
	pthread_join(cb->worker, NULL);
	if (cb->watching)
		pthread_join(cb->watcher, NULL);
	cb->thread = cb->watching = false;
	size_t it = 0;
	void *v;
	while (map_next(&cb->subs, &it, NULL, &v))
		csub_free(cb, v);
	map_free(&cb->subs);
	if (cb->fanout) {
		natsSubscription_Unsubscribe(cb->fanout);
		natsSubscription_Destroy(cb->fanout);
	}
	if (cb->js) {	/* the answers still on their way, for a while */
		jsPubOptions po;
		jsPubOptions_Init(&po);
		po.MaxWait = 1000;
		js_PublishAsyncComplete(cb->js, &po);
	}
	if (cb->kv)
		kvStore_Destroy(cb->kv);
	if (cb->rkv)
		kvStore_Destroy(cb->rkv);
	if (cb->js)
		jsCtx_Destroy(cb->js);
	if (cb->nc) {
		if (natsConnection_Status(cb->nc) == NATS_CONN_STATUS_CONNECTED)
			natsConnection_FlushTimeout(cb->nc, 1000);	/* the last acks and naks */
		natsConnection_Close(cb->nc);
		int64_t until = now_mono_ms() + 2000;
		pthread_mutex_lock(&cb->mu);
		while (!cb->closed && now_mono_ms() < until)
			cluster_nats_pause(&cb->cv, &cb->mu);
		pthread_mutex_unlock(&cb->mu);
		natsConnection_Destroy(cb->nc);
	}
	cb->fanout = cb->kv = cb->rkv = cb->js = cb->nc = NULL;
	/* Sent, never answered: nobody waits for them now. */
	it = 0;
	while (intmap_next(&cb->inflight, &it, NULL, &v))
		bmsg_free(v);
	intmap_free(&cb->inflight);
}
