/*
 * cluster_fast.c - the lock requests of the hot path, sent and answered
 * on the loop itself: a create over a delete marker the loop knows, a
 * renewal, a release.  Through the worker, each crossed four threads (loop
 * -> worker -> libnats's reader -> its delivery thread -> loop), about
 * 60 us each on a loaded machine: a quarter of an acquire and release
 * pair (bench_cluster.py).  Here cohortd has a connection of its own on
 * its libev loop (libnats's event-loop adapter: no reader thread), writes
 * the request from the loop, and reads the answer from a synchronous
 * reply subscription right after libnats has read the socket.
 *
 * Anything but a plain "stored" answer (a conflict, a stream without a
 * leader, a connection that is not up) goes to the worker, which does the
 * request again the long way.  Every write expects a revision, so doing
 * one again can only conflict with what it did, never grant twice.
 */
#include "autoconfig.h"

#include <jansson.h>
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_impl.h"
#include "cluster_nats.h"
#include "evtimer.h"
#include "log.h"
#include "util.h"

/* --- the adapter: libnats's calls, from any thread ---------------------- */

static bool on_loop(const struct cluster *c)
{
	return pthread_equal(pthread_self(), c->fast.loop_thread);
}

/* Loop: the watchers as libnats last asked.  A new attach (or a detach)
 * sets them again even on the same fd number: the old socket is closed. */
static void apply(struct cluster *c)
{
	struct cluster_fast *f = &c->fast;

	pthread_mutex_lock(&f->mu);
	int fd = f->fd;
	bool rd = f->rd, wr = f->wr;
	unsigned gen = f->gen;
	pthread_mutex_unlock(&f->mu);

	if (gen != f->applied_gen) {
		ev_io_stop(c->loop, &f->rio);
		ev_io_stop(c->loop, &f->wio);
		if (fd >= 0) {
			ev_io_set(&f->rio, fd, EV_READ);
			ev_io_set(&f->wio, fd, EV_WRITE);
		}
		f->applied_fd = fd;
		f->applied_gen = gen;
	}
	if (f->applied_fd < 0)
		rd = wr = false;
	if (rd)
		ev_io_start(c->loop, &f->rio);
	else
		ev_io_stop(c->loop, &f->rio);
	if (wr)
		ev_io_start(c->loop, &f->wio);
	else
		ev_io_stop(c->loop, &f->wio);
}

static void asked(struct cluster *c)
{
	if (on_loop(c))
		apply(c);
	else
		ev_async_send(c->loop, &c->fast.kick);
}

static natsStatus ev_attach(void **user, void *loop, natsConnection *nc, natsSock fd)
{
	struct cluster *c = loop;

	*user = c;
	pthread_mutex_lock(&c->fast.mu);
	c->fast.conn = nc;
	c->fast.fd = (int)fd;
	c->fast.rd = true;
	c->fast.wr = false;
	c->fast.gen++;
	pthread_mutex_unlock(&c->fast.mu);
	atomic_store(&c->fast.up, true);
	asked(c);
	return NATS_OK;
}

/* libnats wants (add) or no longer wants the socket's read or write events. */
static natsStatus want(struct cluster *c, bool *which, bool add)
{
	pthread_mutex_lock(&c->fast.mu);
	*which = add;
	pthread_mutex_unlock(&c->fast.mu);
	asked(c);
	return NATS_OK;
}

static natsStatus ev_read(void *user, bool add)
{
	struct cluster *c = user;

	return want(c, &c->fast.rd, add);
}

static natsStatus ev_write(void *user, bool add)
{
	struct cluster *c = user;

	return want(c, &c->fast.wr, add);
}

static natsStatus ev_detach(void *user)
{
	struct cluster *c = user;

	/* Before anything else: the loop sends nothing more here.  libnats
	 * holds the connection's lock through each reconnection attempt, and
	 * a publish from the loop would wait for it.  The watch is the
	 * watcher thread's until this connection is back (came_back). */
	atomic_store(&c->fast.up, false);
	atomic_store(&c->slow_watch, true);
	atomic_store(&c->fast.lost, true);
	pthread_mutex_lock(&c->fast.mu);
	c->fast.conn = NULL;
	c->fast.fd = -1;
	c->fast.rd = c->fast.wr = false;
	c->fast.gen++;
	pthread_mutex_unlock(&c->fast.mu);
	ev_async_send(c->loop, &c->fast.kick);	/* never from inside libnats's call */
	return NATS_OK;
}

/* --- answers ------------------------------------------------------------- */

/* libnats frees a natsMsg on a thread of its own, woken by each
 * natsMsg_Destroy that finds it asleep: two futex calls on the loop, and a
 * thread woken, per message, in the middle of a request's way.  Destroyed
 * together every CLUSTER_SWEEP_MS (or CLUSTER_SWEEP_MAX at once), they
 * cost one wake-up. */
#define CLUSTER_SWEEP_MS 5
#define CLUSTER_SWEEP_MAX 1024

static void on_sweep(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct cluster *c = container_of(w, struct cluster, fast.sweep);
	(void)revents;

	for (size_t i = 0; i < c->fast.ntrash; i++)
		natsMsg_Destroy(c->fast.trash[i]);
	c->fast.ntrash = 0;
	ev_timer_stop(loop, w);
}

static void discard(struct cluster *c, natsMsg *msg)
{
	struct cluster_fast *f = &c->fast;

	if (f->ntrash == f->trash_cap) {
		f->trash_cap = f->trash_cap ? f->trash_cap * 2 : 64;
		f->trash = xrealloc(f->trash, f->trash_cap * sizeof(*f->trash));
	}
	f->trash[f->ntrash++] = msg;
	if (f->ntrash >= CLUSTER_SWEEP_MAX)
		on_sweep(c->loop, &f->sweep, 0);
	else if (!ev_is_active(&f->sweep))
		evtimer_start_ms(c->loop, &f->sweep, CLUSTER_SWEEP_MS);
}

static void arm(struct cluster *c);

/* Out of the requests waiting for an answer: the list (oldest first, for
 * the timer) and the map by reply number (for the answer). */
static void unlink_sent(struct cluster_fast *f, struct cmsg *m)
{
	if (m->prev)
		m->prev->next = m->next;
	else
		f->head = m->next;
	if (m->next)
		m->next->prev = m->prev;
	else
		f->tail = m->prev;
	m->next = m->prev = NULL;
	intmap_del(&f->sent_by_seq, (int64_t)m->fseq);
}

static void finish(struct cluster *c, struct cmsg *m)
{
	cluster_lock_handle(c, m);
	cmsg_free(m);
}

/* To the worker, as if never sent here. */
static void hand(struct cluster *c, struct cmsg *m)
{
	m->res = CR_OK;
	m->rev = 0;
	m->err[0] = '\0';
	c->fast.handed++;
	cluster_enqueue(c, m);
}

static const char *what_of(const struct cmsg *m)
{
	return m->kind == CM_DELETE ? "delete" : m->kind == CM_CREATE ? "create" : "update";
}

/* What the stream answered: stored (1, m->rev set), to be done again by
 * the worker (0: a conflict, which it reads; no leader, which it tries
 * again), or refused (-1, m->err set), as the worker's own write would be:
 * any other error may come after the write was proposed, so it is not
 * written twice. */
static int stored(natsMsg *msg, struct cmsg *m)
{
	json_t *root, *err, *seq;
	int rc = -1;

	if (natsMsg_IsNoResponders(msg))
		return 0;
	root = json_loadb(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), 0, NULL);
	if (!root) {
		snprintf(m->err, sizeof(m->err), "%s: an answer that is not JSON", what_of(m));
		return -1;
	}
	err = json_object_get(root, "error");
	seq = json_object_get(root, "seq");
	if (err) {
		json_int_t code = json_integer_value(json_object_get(err, "err_code"));
		const char *text = json_string_value(json_object_get(err, "description"));
		/* the key moved (a conflict); the stream has no leader for a moment */
		if (code == JSStreamWrongLastSequenceErr || code == JSStreamNotFoundErr)
			rc = 0;
		else
			snprintf(m->err, sizeof(m->err), "%s: %s", what_of(m), text ? text : "refused");
	} else if (json_is_integer(seq) && json_integer_value(seq) > 0) {
		m->rev = (uint64_t)json_integer_value(seq);
		rc = 1;
	} else {
		snprintf(m->err, sizeof(m->err), "%s: an answer without a sequence", what_of(m));
	}
	json_decref(root);
	return rc;
}

static void answered(struct cluster *c, natsMsg *msg)
{
	struct cluster_fast *f = &c->fast;
	const char *subj = natsMsg_GetSubject(msg);
	size_t n = strlen(f->inbox);
	struct cmsg *m;

	if (strncmp(subj, f->inbox, n) != 0)
		return;
	m = intmap_get(&f->sent_by_seq, (int64_t)strtoull(subj + n, NULL, 10));
	if (!m)
		return;	/* timed out before: already answered "unreachable" */
	unlink_sent(f, m);
	switch (stored(msg, m)) {
	case 1:
		m->res = CR_OK;
		finish(c, m);
		break;
	case 0:
		hand(c, m);
		break;
	default:
		m->res = CR_AWAY;
		finish(c, m);
	}
}

/* Loop: the messages libnats has read for sub, each to fn.  Not from
 * inside a libnats call: handling one may send the next request. */
static void drain(struct cluster *c, natsSubscription *sub, void (*fn)(struct cluster *c, natsMsg *msg))
{
	int msgs = 0, bytes = 0;

	if (!sub || natsSubscription_GetPending(sub, &msgs, &bytes) != NATS_OK)
		return;
	while (msgs-- > 0) {
		natsMsg *msg = NULL;
		if (natsSubscription_NextMsg(&msg, sub, 0) != NATS_OK)
			break;
		fn(c, msg);
		discard(c, msg);
	}
}

/* A change of a key, from the bucket's watch: as the watcher thread's
 * would be (cluster_conn.c post_entry), without its two thread hops. */
static void entry(struct cluster *c, natsMsg *msg)
{
	const char *subj = natsMsg_GetSubject(msg), *op = NULL;
	size_t n = strlen(c->bucket);
	jsMsgMetaData *meta = NULL;

	if (strncmp(subj, "$KV.", 4) != 0 || strncmp(subj + 4, c->bucket, n) != 0 || subj[4 + n] != '.')
		return;
	if (natsMsg_GetMetaData(&meta, msg) != NATS_OK)
		return;
	struct cmsg m = {
		.kind = CM_ENTRY,
		.key = (char *)subj + 5 + n,
		.rev = meta->Sequence.Stream,
		.value = (char *)(natsMsg_GetData(msg) ? natsMsg_GetData(msg) : ""),
	};
	jsMsgMetaData_Destroy(meta);
	m.deleted = natsMsgHeader_Get(msg, "KV-Operation", &op) == NATS_OK && op &&
		    (strcmp(op, "DEL") == 0 || strcmp(op, "PURGE") == 0);
	cluster_lock_handle(c, &m);
}

static natsConnection *conn_of(struct cluster *c)
{
	pthread_mutex_lock(&c->fast.mu);
	natsConnection *nc = c->fast.conn;
	pthread_mutex_unlock(&c->fast.mu);
	return nc;
}

static void on_read(struct ev_loop *loop, ev_io *w, int revents)
{
	struct cluster *c = container_of(w, struct cluster, fast.rio);
	natsConnection *nc = conn_of(c);
	(void)loop;
	(void)revents;

	if (nc)
		natsConnection_ProcessReadEvent(nc);
	drain(c, atomic_load(&c->fast.sub), answered);
	drain(c, c->fast.wsub, entry);
	arm(c);
}

static void on_write(struct ev_loop *loop, ev_io *w, int revents)
{
	struct cluster *c = container_of(w, struct cluster, fast.wio);
	natsConnection *nc = conn_of(c);
	(void)loop;
	(void)revents;

	if (nc)
		natsConnection_ProcessWriteEvent(nc);
}

/* The connection went while requests waited for their answer.  A
 * release is done again by the worker (it can only conflict with itself);
 * a create or renewal may have been stored, and is not written twice:
 * unreachable, as the worker's would be. */
static void lost(struct cluster *c)
{
	struct cluster_fast *f = &c->fast;

	while (f->head) {
		struct cmsg *m = f->head;
		unlink_sent(f, m);
		if (m->kind == CM_DELETE) {
			hand(c, m);
			continue;
		}
		m->res = CR_AWAY;
		snprintf(m->err, sizeof(m->err), "%s: the connection to NATS was lost", what_of(m));
		finish(c, m);
	}
	arm(c);
}

static void on_kick(struct ev_loop *loop, ev_async *w, int revents)
{
	struct cluster *c = container_of(w, struct cluster, fast.kick);
	(void)loop;
	(void)revents;

	apply(c);
	if (atomic_exchange(&c->fast.lost, false) && !atomic_load(&c->fast.up))
		lost(c);
}

/* A request unanswered after CLUSTER_OP_TIMEOUT_MS: unreachable, as the
 * worker's would be.  Its write may have been stored: not tried again. */
static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct cluster *c = container_of(w, struct cluster, fast.timer);
	struct cluster_fast *f = &c->fast;
	int64_t now = now_mono_ms();
	(void)loop;
	(void)revents;

	while (f->head && now - f->head->fast_ms >= CLUSTER_OP_TIMEOUT_MS) {
		struct cmsg *m = f->head;
		unlink_sent(f, m);
		m->res = CR_AWAY;
		snprintf(m->err, sizeof(m->err), "%s: no answer in %d ms", what_of(m), CLUSTER_OP_TIMEOUT_MS);
		finish(c, m);
	}
	arm(c);
}

static void arm(struct cluster *c)
{
	struct cluster_fast *f = &c->fast;

	if (!f->head) {
		ev_timer_stop(c->loop, &f->timer);
		return;
	}
	if (ev_is_active(&f->timer))
		return;
	int64_t left = f->head->fast_ms + CLUSTER_OP_TIMEOUT_MS - now_mono_ms();
	ev_timer_set(&f->timer, left > 0 ? (double)left / 1000.0 : 0.0, 0.0);
	ev_timer_start(c->loop, &f->timer);
}

/* --- requests ------------------------------------------------------------ */

bool cluster_fast_send(struct cluster *c, struct cmsg *m)
{
	struct cluster_fast *f = &c->fast;
	natsConnection *nc = atomic_load(&f->nc);
	natsMsg *msg = NULL;
	char subj[512], reply[128], last[24];
	natsStatus s;

	/* A create over no known marker reads the key first: the worker's. */
	if (f->closing || !nc || !m->last || !atomic_load(&c->kv_ready) || !atomic_load(&f->up))
		return false;
	if ((size_t)snprintf(subj, sizeof(subj), "$KV.%s.%s", c->bucket, m->key) >= sizeof(subj))
		return false;
	snprintf(reply, sizeof(reply), "%s%llu", f->inbox, (unsigned long long)(f->seq + 1));
	snprintf(last, sizeof(last), "%llu", (unsigned long long)m->last);
	s = natsMsg_Create(&msg, subj, reply, m->value, (int)strlen(m->value));
	if (s == NATS_OK)	/* refused unless the key's last revision is still m->last */
		s = natsMsgHeader_Set(msg, "Nats-Expected-Last-Subject-Sequence", last);
	if (s == NATS_OK && m->kind == CM_DELETE)
		s = natsMsgHeader_Set(msg, "KV-Operation", "DEL");
	if (s == NATS_OK)
		s = natsConnection_PublishMsg(nc, msg);
	if (msg)
		discard(c, msg);
	if (s != NATS_OK)
		return false;
	/* Written now, not at the loop's next turn (the write watcher's). */
	natsConnection_ProcessWriteEvent(nc);
	m->fseq = ++f->seq;
	m->fast_ms = now_mono_ms();
	m->next = NULL;
	m->prev = f->tail;
	if (f->tail)
		f->tail->next = m;
	else
		f->head = m;
	f->tail = m;
	intmap_put(&f->sent_by_seq, (int64_t)m->fseq, m);
	f->sent++;
	arm(c);
	return true;
}

/* --- opening and closing ------------------------------------------------- */

void cluster_fast_init(struct cluster *c)
{
	struct cluster_fast *f = &c->fast;

	f->loop_thread = pthread_self();
	pthread_mutex_init(&f->mu, NULL);
	f->fd = f->applied_fd = -1;
	ev_async_init(&f->kick, on_kick);
	ev_async_start(c->loop, &f->kick);
	ev_io_init(&f->rio, on_read, -1, EV_READ);
	/* Before the timer in the same turn: an answer already read is not
	 * expired as unanswered. */
	ev_set_priority(&f->rio, EV_MAXPRI);
	ev_io_init(&f->wio, on_write, -1, EV_WRITE);
	ev_init(&f->timer, on_timer);
	ev_init(&f->sweep, on_sweep);
}

static void nothing(natsConnection *nc, void *arg)
{
	(void)nc;
	(void)arg;
}

/* libnats's thread: connected again, maybe to another server; the watch
 * is made again, as the watcher thread's is (cluster_conn.c). */
static void came_back(natsConnection *nc, void *arg)
{
	struct cluster *c = arg;
	(void)nc;

	atomic_store(&c->fast.rewatch, true);
	pthread_mutex_lock(&c->mu);
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

/* Each attempt to connect holds libnats's connection lock, which a publish
 * from the loop would wait for in the moment before libnats detaches:
 * short.  (A server that cannot be reached in it is tried again, every
 * 250 ms, as the worker's connection's.) */
#define CLUSTER_FAST_CONNECT_MS 500

/* Without it, the hot path's requests go to the worker: slower, not wrong. */
void cluster_fast_connect(struct cluster *c, const char *first)
{
	char *urls = *first ? xasprintf("%s,%s", first, c->urls) : xstrdup(c->urls);
	const struct cluster_nats_conf k = {
		.urls = urls, .in_order = *first != '\0', .creds = c->o.creds, .tls_ca = c->o.tls_ca, .tls_cert = c->o.tls_cert,
		.tls_key = c->o.tls_key, .timeout_ms = CLUSTER_FAST_CONNECT_MS,
		.send_asap = true,
		.ev_loop = c, .ev_attach = ev_attach, .ev_read = ev_read, .ev_write = ev_write,
		.ev_detach = ev_detach,
		.on_reconnected = came_back, .on_disconnected = nothing, .on_closed = nothing, .arg = c,
	};
	natsConnection *nc = NULL;
	natsSubscription *sub = NULL;
	natsInbox *inbox = NULL;
	char subj[128];
	const char *step = "connect";
	natsStatus s = cluster_nats_connect(&k, &nc, &step);

	if (s == NATS_OK && (s = natsInbox_Create(&inbox)) != NATS_OK)
		step = "inbox";
	if (s == NATS_OK) {
		snprintf(c->fast.inbox, sizeof(c->fast.inbox), "%s.", inbox);
		snprintf(subj, sizeof(subj), "%s*", c->fast.inbox);
		s = natsConnection_SubscribeSync(&sub, nc, subj);
		step = "subscribe";
	}
	if (s == NATS_OK)
		s = natsSubscription_SetPendingLimits(sub, -1, -1);
	natsInbox_Destroy(inbox);
	free(urls);
	if (s != NATS_OK) {
		log_warn(NULL, "cluster: the loop's own connection: %s: %s (lock requests go through the worker)",
			 step, natsStatus_GetText(s));
		natsSubscription_Destroy(sub);
		c->fast.stray = nc;	/* the loop may still read it: closed at close */
		return;
	}
	atomic_store(&c->fast.sub, sub);
	atomic_store(&c->fast.nc, nc);
}

bool cluster_fast_watch(struct cluster *c)
{
	struct cluster_fast *f = &c->fast;
	natsConnection *nc = atomic_load(&f->nc);
	natsSubscription *sub = NULL;
	jsSubOptions so;
	jsErrCode jerr = 0;
	char subj[256], stream[256];
	natsStatus s;

	if (!nc || !atomic_load(&f->up))
		return false;
	if (!f->js) {
		jsOptions jo;
		jsCtx *js = NULL;
		jsOptions_Init(&jo);
		jo.Wait = CLUSTER_OP_TIMEOUT_MS;
		if (natsConnection_JetStream(&js, nc, &jo) != NATS_OK)
			return false;
		f->js = js;
	}
	/* What kvStore_WatchAll asks for: every key's last message, then each
	 * change, in the stream's order (an ordered consumer, made again by
	 * libnats if it misses one). */
	snprintf(subj, sizeof(subj), "$KV.%s.>", c->bucket);
	snprintf(stream, sizeof(stream), "KV_%s", c->bucket);
	jsSubOptions_Init(&so);
	so.Stream = stream;
	so.Ordered = true;
	so.Config.DeliverPolicy = js_DeliverLastPerSubject;
	s = js_SubscribeSync(&sub, f->js, subj, NULL, &so, &jerr);
	if (s == NATS_OK)
		s = natsSubscription_SetPendingLimits(sub, -1, -1);
	if (s != NATS_OK) {
		log_warn(NULL, "cluster: the watch on the loop's own connection: %s (a thread watches instead)",
			 natsStatus_GetText(s));
		natsSubscription_Destroy(sub);
		return false;
	}
	struct cmsg *m = xcalloc(1, sizeof(*m));
	m->kind = CM_WATCH;
	m->sub = sub;
	cluster_post(c, m);
	return true;
}

void cluster_fast_watching(struct cluster *c, struct cmsg *m)
{
	struct cluster_fast *f = &c->fast;
	natsSubscription *old = f->wsub;

	f->wsub = m->sub;
	m->sub = NULL;
	natsSubscription_Destroy(old);	/* an UNSUB written, nothing waited for */
	drain(c, f->wsub, entry);	/* what came before the loop heard of it */
}

void cluster_fast_hand_over(struct cluster *c)
{
	struct cluster_fast *f = &c->fast;

	f->closing = true;
	while (f->head) {
		struct cmsg *m = f->head;
		unlink_sent(f, m);
		hand(c, m);
	}
	ev_timer_stop(c->loop, &f->timer);
}

void cluster_fast_close(struct cluster *c)
{
	struct cluster_fast *f = &c->fast;
	natsConnection *nc = atomic_exchange(&f->nc, NULL);
	natsSubscription *sub = atomic_exchange(&f->sub, NULL);

	on_sweep(c->loop, &f->sweep, 0);	/* while the library is there */
	if (!nc)
		nc = f->stray;
	f->stray = NULL;
	atomic_store(&f->up, false);
	/* Closed first, then its subscriptions (closed ones write no UNSUB):
	 * with anything left unwritten, Close waits half a second for a PONG
	 * only the loop, stopped now, would read.  What libnats wrote last is
	 * written now. */
	if (nc) {
		natsConnection_ProcessWriteEvent(nc);
		natsConnection_Close(nc);
	}
	pthread_mutex_lock(&c->mu);	/* a watch made, not yet handed to the loop */
	for (struct cmsg *m = c->done; m; m = m->next)
		if (m->kind == CM_WATCH) {
			natsSubscription_Destroy(m->sub);
			m->sub = NULL;
		}
	pthread_mutex_unlock(&c->mu);
	natsSubscription_Destroy(f->wsub);
	f->wsub = NULL;
	natsSubscription_Destroy(sub);
	if (f->js)
		jsCtx_Destroy(f->js);
	f->js = NULL;
	natsConnection_Destroy(nc);
}

void cluster_fast_free(struct cluster *c)
{
	struct cluster_fast *f = &c->fast;

	ev_io_stop(c->loop, &f->rio);
	ev_io_stop(c->loop, &f->wio);
	ev_timer_stop(c->loop, &f->timer);
	ev_async_stop(c->loop, &f->kick);
	free(f->trash);
	intmap_free(&f->sent_by_seq);	/* empty: cluster_fast_hand_over took what was in it */
	pthread_mutex_destroy(&f->mu);
}
