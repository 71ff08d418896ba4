/*
 * cluster_conn.c - the threads that talk to NATS: the worker connects and
 * makes the bucket, then it and its helpers run the loop's requests
 * (create, update, delete), the watcher reads the bucket's watch; libnats's own
 * threads call back on connection changes.  None of them touches
 * anything but the two queues of struct cluster: results and news go to
 * the loop through cluster_post (an ev_async).
 */
#include "autoconfig.h"

#include <errno.h>
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster_impl.h"
#include "cluster_nats.h"
#include "log.h"
#include "util.h"

void cmsg_free(struct cmsg *m)
{
	if (!m)
		return;
	free(m->key);
	free(m->value);
	free(m);
}

static void push(struct cmsg **head, struct cmsg **tail, struct cmsg *m)
{
	m->next = NULL;
	if (*tail)
		(*tail)->next = m;
	else
		*head = m;
	*tail = m;
}

void cluster_send(struct cluster *c, struct cmsg *m)
{
	if (!cluster_fast_send(c, m))
		cluster_enqueue(c, m);
}

void cluster_enqueue(struct cluster *c, struct cmsg *m)
{
	pthread_mutex_lock(&c->mu);
	push(&c->jobs, &c->jobs_tail, m);
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

void cluster_post(struct cluster *c, struct cmsg *m)
{
	pthread_mutex_lock(&c->mu);
	push(&c->done, &c->done_tail, m);
	pthread_mutex_unlock(&c->mu);
	ev_async_send(c->loop, &c->wake);
}

static void post_kind(struct cluster *c, enum cmsg_kind kind, const char *text)
{
	struct cmsg *m = xcalloc(1, sizeof(*m));

	m->kind = kind;
	snprintf(m->err, sizeof(m->err), "%s", text ? text : "");
	cluster_post(c, m);
}

/* --- libnats's threads ------------------------------------------------- */

static void on_disconnected(natsConnection *nc, void *arg)
{
	(void)nc;
	post_kind(arg, CM_DOWN, "disconnected");
}

static void on_reconnected(natsConnection *nc, void *arg)
{
	struct cluster *c = arg;
	char url[128] = "";

	natsConnection_GetConnectedUrl(nc, url, sizeof(url));
	/* A watch does not outlive every reconnection: start a new one. */
	atomic_store(&c->rewatch, true);
	if (atomic_load(&c->kv_ready)) {
		post_kind(c, CM_UP, url);
		return;
	}
	/* The first connection: the worker opens the bucket now, not at its
	 * next half-second tick, so that services started with the stack do
	 * not find the cluster away for longer than it takes. */
	pthread_mutex_lock(&c->mu);
	pthread_cond_broadcast(&c->cv);	/* the helpers wait on it too */
	pthread_mutex_unlock(&c->mu);
}

/* --- the worker -------------------------------------------------------- */

/* What JetStream answers, for a moment, while the stream of the bucket has
 * no leader (just made, or between two): the request was not carried out,
 * and may be tried again.  A write answered "temporarily unavailable" may
 * have been proposed all the same: only a read is tried again on that. */
static bool between_leaders(natsStatus s, jsErrCode jerr, bool write)
{
	return s == NATS_NO_RESPONDERS || jerr == JSStreamNotFoundErr || (!write && jerr == JSClusterNotAvailErr);
}

static void status_text(char *buf, size_t len, const char *what, natsStatus s)
{
	const char *last = nats_GetLastError(NULL);

	snprintf(buf, len, "%s: %s%s%s", what, natsStatus_GetText(s), last && *last ? ": " : "",
		 last && *last ? last : "");
}

static natsStatus conn_start(struct cluster *c, char *err, size_t errlen)
{
	const struct cluster_nats_conf k = {
		.urls = c->urls, .creds = c->o.creds, .tls_ca = c->o.tls_ca, .tls_cert = c->o.tls_cert,
		.tls_key = c->o.tls_key, .timeout_ms = CLUSTER_OP_TIMEOUT_MS,
		.on_reconnected = on_reconnected, .on_disconnected = on_disconnected, .arg = c,
	};
	natsConnection *nc = NULL;
	const char *step = NULL;
	natsStatus s = cluster_nats_connect(&k, &nc, &step);

	if (s != NATS_OK)
		status_text(err, errlen, step, s);
	c->nc = nc;
	return s;
}

static int last_of(struct cluster *c, struct cmsg *m, uint64_t *rev, bool *deleted, char **value);

/* Tried every 500 ms while the bucket is not there: said every 10 s. */
static void bucket_not_yet(struct cluster *c, const char *why)
{
	static int64_t warned;
	int64_t now = now_mono_ms();

	if (now - warned > 10000) {
		post_kind(c, CM_DOWN, why);
		warned = now;
	}
}

/* Opens (or makes) the bucket once connected; then the loop hears "up". */
static void bucket_try(struct cluster *c)
{
	jsOptions jo;
	kvStore *kv = NULL;
	natsStatus s;

	if (!c->nc || natsConnection_Status(c->nc) != NATS_CONN_STATUS_CONNECTED)
		return;
	if (!c->js) {
		jsCtx *js = NULL;
		jsOptions_Init(&jo);
		jo.Wait = CLUSTER_OP_TIMEOUT_MS;
		if (natsConnection_JetStream(&js, c->nc, &jo) != NATS_OK)
			return;
		c->js = js;
	}
	if (!c->kv) {
		s = js_KeyValue(&kv, c->js, c->bucket);
		if (s != NATS_OK) {
			kvConfig kc;
			kvConfig_Init(&kc);
			kc.Bucket = c->bucket;
			kc.Description = "cohort: the locks of the cohortds of one cluster_name";
			kc.History = 1;
			kc.Replicas = c->replicas;
			s = js_CreateKeyValue(&kv, c->js, &kc);
		}
		if (s != NATS_OK) {
			char why[200];
			status_text(why, sizeof(why), "the lock bucket", s);
			bucket_not_yet(c, why);
			return;
		}
		c->kv = kv;
	}
	/* A bucket just made may not answer yet ("stream not found" until its
	 * stream has a leader): requests that waited for the first connection
	 * would fail on that.  One read as the requests make them ("=probe" is
	 * no encoded name: '=' is always followed by two hex digits). */
	struct cmsg probe = {.key = (char *)"=probe"};
	uint64_t rev = 0;
	bool deleted = false;
	if (last_of(c, &probe, &rev, &deleted, NULL) < 0) {
		bucket_not_yet(c, probe.err);
		return;
	}
	atomic_store(&c->kv_ready, true);
	char url[128] = "";
	natsConnection_GetConnectedUrl(c->nc, url, sizeof(url));
	if (!c->fast_tried) {	/* on the same server as this one */
		c->fast_tried = true;
		cluster_fast_connect(c, url);
		atomic_store(&c->fast.rewatch, false);
		atomic_store(&c->slow_watch, !cluster_fast_watch(c));
	}
	post_kind(c, CM_UP, url);
}

/* The key's last message in the stream, delete markers included (which
 * kvStore_Get hides): its revision, whether it is a delete, its value.
 * Read from the stream's leader.  1: found, 0: never written, -1: no
 * answer (m->err says why). */
static int last_of(struct cluster *c, struct cmsg *m, uint64_t *rev, bool *deleted, char **value)
{
	natsMsg *msg = NULL;
	jsErrCode jerr = 0;
	char *stream = xasprintf("KV_%s", c->bucket);
	char *subj = xasprintf("$KV.%s.%s", c->bucket, m->key);
	natsStatus s = js_GetLastMsg(&msg, c->js, stream, subj, NULL, &jerr);
	int rc = 1;

	free(stream);
	free(subj);
	if (s == NATS_NOT_FOUND)
		return 0;
	if (s != NATS_OK) {
		status_text(m->err, sizeof(m->err), "read", s);
		m->again = between_leaders(s, jerr, false);
		return -1;
	}
	const char *op = NULL;
	*rev = natsMsg_GetSequence(msg);
	*deleted = natsMsgHeader_Get(msg, "KV-Operation", &op) == NATS_OK && op &&
		   (strcmp(op, "DEL") == 0 || strcmp(op, "PURGE") == 0);
	if (value) {
		int n = natsMsg_GetDataLength(msg);
		*value = xmalloc((size_t)n + 1);
		memcpy(*value, natsMsg_GetData(msg), (size_t)n);
		(*value)[n] = '\0';
	}
	natsMsg_Destroy(msg);
	return rc;
}

/* Where a failed create or update leaves the key: its revision and value. */
static void read_back(struct cluster *c, struct cmsg *m)
{
	uint64_t rev = 0;
	bool deleted = false;
	char *value = NULL;
	int rc = last_of(c, m, &rev, &deleted, &value);

	free(m->value);
	m->value = NULL;
	if (rc < 0) {
		m->res = CR_AWAY;
		m->again = false;	/* its value is gone: not the same request again */
	} else if (rc == 0 || deleted) {
		m->res = CR_GONE;
		free(value);
	} else {
		m->res = CR_CONFLICT;
		m->rev = rev;
		m->value = value;
	}
}

/* A write of m's value expecting the key's last revision to be `last`
 * (0: that it was never written). */
static natsStatus put_expecting(struct cluster *c, struct cmsg *m, uint64_t last, bool *conflict)
{
	jsPubOptions po;
	jsPubAck *pa = NULL;
	jsErrCode jerr = 0;
	char *subj = xasprintf("$KV.%s.%s", c->bucket, m->key);
	natsStatus s;

	jsPubOptions_Init(&po);
	if (last)
		po.ExpectLastSubjectSeq = last;
	else
		po.ExpectNoMessage = true;
	po.MaxWait = CLUSTER_OP_TIMEOUT_MS;
	s = js_Publish(&pa, c->js, subj, m->value, (int)strlen(m->value), &po, &jerr);
	m->again = between_leaders(s, jerr, true);
	*conflict = s == NATS_ERR && jerr != 0 && !m->again;
	if (s == NATS_OK)
		m->rev = pa->Sequence;
	jsPubAck_Destroy(pa);
	free(subj);
	return s;
}

/* A create that cannot race: kvStore_Create of 3.4.1 reads a deleted key
 * and then writes on what it read, so two cohortds both creating over the
 * same delete marker could both succeed.  Here the write expects the very
 * revision read (the marker's, or none), and the stream's leader decides. */
static void run_create(struct cluster *c, struct cmsg *m)
{
	uint64_t rev = 0;
	bool deleted = false, conflict = false;
	char *value = NULL;

	/* m->last: the delete marker the loop knows to be the key's last
	 * message (its own delete, or the watch's): one write on it, without
	 * the read first; only if the key moved since, the read. */
	if (m->last) {
		natsStatus s = put_expecting(c, m, m->last, &conflict);
		if (s == NATS_OK) {
			m->res = CR_OK;
			return;
		}
		if (!conflict) {
			m->res = CR_AWAY;
			status_text(m->err, sizeof(m->err), "create", s);
			return;
		}
	}
	int rc = last_of(c, m, &rev, &deleted, &value);

	if (rc < 0) {
		m->res = CR_AWAY;
		return;
	}
	if (rc == 1 && !deleted) {
		m->res = CR_CONFLICT;
		m->rev = rev;
		free(m->value);
		m->value = value;
		return;
	}
	free(value);
	natsStatus s = put_expecting(c, m, rc == 1 ? rev : 0, &conflict);
	if (s == NATS_OK)
		m->res = CR_OK;
	else if (conflict)
		read_back(c, m);
	else {
		m->res = CR_AWAY;
		status_text(m->err, sizeof(m->err), "create", s);
	}
}

static void run_delete(struct cluster *c, struct cmsg *m)
{
	natsMsg *msg = NULL;
	jsPubOptions po;
	jsPubAck *pa = NULL;
	jsErrCode jerr = 0;
	char *subj = xasprintf("$KV.%s.%s", c->bucket, m->key);
	natsStatus s = natsMsg_Create(&msg, subj, NULL, NULL, 0);

	/* kvStore_Delete (3.4.1) checks no revision: a stale holder could
	 * delete its successor's key.  This publish is refused unless the
	 * key's last revision is still ours. */
	if (s == NATS_OK)
		s = natsMsgHeader_Set(msg, "KV-Operation", "DEL");
	if (s == NATS_OK) {
		jsPubOptions_Init(&po);
		po.ExpectLastSubjectSeq = m->last;
		po.MaxWait = CLUSTER_OP_TIMEOUT_MS;
		s = js_PublishMsg(&pa, c->js, msg, &po, &jerr);
		m->again = between_leaders(s, jerr, true);
	}
	if (s == NATS_OK) {
		m->res = CR_OK;
		m->rev = pa->Sequence;
	} else if (s == NATS_ERR && jerr && !m->again) {
		read_back(c, m);	/* a shared release computes again from it */
	} else {
		m->res = CR_AWAY;
		status_text(m->err, sizeof(m->err), "delete", s);
	}
	jsPubAck_Destroy(pa);
	natsMsg_Destroy(msg);
	free(subj);
}

static void run_once(struct cluster *c, struct cmsg *m)
{
	natsStatus s;
	uint64_t rev = 0;

	if (!atomic_load(&c->kv_ready) || natsConnection_Status(c->nc) != NATS_CONN_STATUS_CONNECTED) {
		m->res = CR_AWAY;
		snprintf(m->err, sizeof(m->err), "not connected");
		return;
	}
	if (m->kind == CM_DELETE) {
		run_delete(c, m);
		return;
	}
	if (m->kind == CM_CREATE) {
		run_create(c, m);
		return;
	}
	s = kvStore_Update(&rev, c->kv, m->key, m->value, (int)strlen(m->value), m->last);
	if (s == NATS_OK) {
		m->res = CR_OK;
		m->rev = rev;
	} else if (s == NATS_ERR) {
		read_back(c, m);	/* exists, or not at the revision expected */
	} else {
		m->res = CR_AWAY;
		status_text(m->err, sizeof(m->err), m->kind == CM_CREATE ? "create" : "update", s);
	}
}

/* A request the stream refused without carrying it out because it had no
 * leader for a moment is tried again, 20 ms later, then 40, ... (at most
 * 250 ms apart), while CLUSTER_OP_TIMEOUT_MS have not passed (a try
 * itself may wait that long for its answer): a loaded cluster elects leaders now and
 * then (a lock asked for just after the bucket was made was refused so,
 * "stream not found", in a test run beside a busy machine's other work). */
static void run_job(struct cluster *c, struct cmsg *m)
{
	int64_t until = now_mono_ms() + CLUSTER_OP_TIMEOUT_MS;

	for (int64_t pause = 20;; pause = pause * 2 > 250 ? 250 : pause * 2) {
		m->again = false;
		run_once(c, m);
		if (m->res != CR_AWAY || !m->again || atomic_load(&c->stop) || now_mono_ms() + pause > until)
			return;
		struct timespec ts = {.tv_sec = pause / 1000, .tv_nsec = (pause % 1000) * 1000000};
		nanosleep(&ts, NULL);
	}
}

/* Takes the first job off the queue and runs it, with c->mu released
 * meanwhile; held on entry and on return. */
static void run_next_job(struct cluster *c)
{
	struct cmsg *m = c->jobs;

	c->jobs = m->next;
	if (!c->jobs)
		c->jobs_tail = NULL;
	pthread_mutex_unlock(&c->mu);
	run_job(c, m);
	cluster_post(c, m);
	pthread_mutex_lock(&c->mu);
}

static void *worker_main(void *arg)
{
	struct cluster *c = arg;
	char err[200];

	if (conn_start(c, err, sizeof(err)) != NATS_OK)
		post_kind(c, CM_DOWN, err);
	pthread_mutex_lock(&c->mu);
	/* Stopping, it still runs what was sent (the releases at exit). */
	while (!atomic_load(&c->stop) || c->jobs) {
		if (!c->jobs) {
			if (!atomic_load(&c->kv_ready)) {
				pthread_mutex_unlock(&c->mu);
				bucket_try(c);
				pthread_mutex_lock(&c->mu);
				if (atomic_load(&c->kv_ready) || c->jobs || atomic_load(&c->stop))
					continue;
			} else if (!atomic_load(&c->stop) && atomic_exchange(&c->fast.rewatch, false)) {
				/* the loop's connection is back: a new watch on it, or
				 * the watcher thread's meanwhile */
				pthread_mutex_unlock(&c->mu);
				atomic_store(&c->slow_watch, !cluster_fast_watch(c));
				pthread_mutex_lock(&c->mu);
				continue;
			}
			cluster_nats_pause(&c->cv, &c->mu);
			continue;
		}
		run_next_job(c);
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

/* --- the watcher ------------------------------------------------------- */

static void post_entry(void *arg, kvEntry *e)
{
	struct cmsg *m = xcalloc(1, sizeof(*m));

	m->kind = CM_ENTRY;
	m->key = xstrdup(kvEntry_Key(e));
	m->rev = kvEntry_Revision(e);
	m->deleted = kvEntry_Operation(e) != kvOp_Put;
	m->value = xstrdup(kvEntry_ValueString(e) ? kvEntry_ValueString(e) : "");
	kvEntry_Destroy(e);
	cluster_post(arg, m);
}

static void *watcher_main(void *arg)
{
	struct cluster *c = arg;

	cluster_nats_watch(&c->kv, &c->slow_watch, &c->rewatch, &c->stop, post_entry, c);
	return NULL;
}

/* The worker's helpers: more requests on their way at once.  Each is a
 * round trip or two that blocks its thread, and 16 clients of one
 * cohortd took turns behind a single worker (bench_cluster.py: a third of
 * what libnats does with 16 threads on one connection).  Order between
 * them does not matter: every write expects a revision, so two requests
 * on one key that cross can only make one of them conflict. */
static void *helper_main(void *arg)
{
	struct cluster *c = arg;

	pthread_mutex_lock(&c->mu);
	while (!atomic_load(&c->stop) || c->jobs) {
		if (!c->jobs) {
			pthread_cond_wait(&c->cv, &c->mu);
			continue;
		}
		run_next_job(c);
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

static void helpers_stop(struct cluster *c)
{
	pthread_mutex_lock(&c->mu);
	atomic_store(&c->stop, true);
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
	for (int i = 0; i < c->nhelpers; i++)
		pthread_join(c->helpers[i], NULL);
	c->nhelpers = 0;
}

int cluster_threads_start(struct cluster *c, char *err, size_t errlen)
{
	int rc = pthread_create(&c->worker, NULL, worker_main, c);

	for (int i = 0; rc == 0 && i < CLUSTER_HELPERS; i++) {
		if (pthread_create(&c->helpers[i], NULL, helper_main, c) != 0)
			break;	/* fewer helpers: slower, not wrong */
		c->nhelpers++;
	}

	if (rc == 0) {
		rc = pthread_create(&c->watcher, NULL, watcher_main, c);
		if (rc != 0) {
			helpers_stop(c);
			pthread_join(c->worker, NULL);
		}
	}
	if (rc != 0) {
		snprintf(err, errlen, "cannot start the cluster's threads: %s", strerror(rc));
		return -1;
	}
	c->threads = true;
	return 0;
}

void cluster_threads_stop(struct cluster *c)
{
	if (!c->threads)
		return;
	helpers_stop(c);	/* they and the worker still run what was sent */
	pthread_join(c->worker, NULL);
	pthread_join(c->watcher, NULL);
	c->threads = false;
	if (c->kv)
		kvStore_Destroy(c->kv);
	if (c->js)
		jsCtx_Destroy(c->js);
	if (c->nc) {
		natsConnection_Close(c->nc);
		natsConnection_Destroy(c->nc);
	}
	c->kv = c->js = c->nc = NULL;
	cluster_fast_close(c);
	/* The library's own threads and memory: nothing else in cohortd uses
	 * it, and a valgrind run should see them gone. */
	nats_CloseAndWait(2000);
}
