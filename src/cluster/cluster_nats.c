/*
 * cluster_nats.c - connecting to NATS and watching a bucket, as both of a
 * cohortd's NATS connections do (see cluster_nats.h).
 */
#include "autoconfig.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster_nats.h"
#include "util.h"

static natsStatus options(const struct cluster_nats_conf *k, natsOptions *o, struct strv *urls)
{
	natsStatus s = natsOptions_SetServers(o, (const char **)urls->v, (int)urls->n);

	if (s == NATS_OK)
		s = natsOptions_SetTimeout(o, k->timeout_ms);
	if (s == NATS_OK)
		s = natsOptions_SetMaxReconnect(o, -1);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectWait(o, 250);
	if (s == NATS_OK)	/* a dead server is noticed within about 3 s */
		s = natsOptions_SetPingInterval(o, 1000);
	if (s == NATS_OK)
		s = natsOptions_SetMaxPingsOut(o, 2);
	if (s == NATS_OK && k->no_reconnect_buffer)
		s = natsOptions_SetReconnectBufSize(o, 0);
	if (s == NATS_OK && k->no_echo)
		s = natsOptions_SetNoEcho(o, true);
	if (s == NATS_OK && k->in_order)
		s = natsOptions_SetNoRandomize(o, true);
	if (s == NATS_OK && k->send_asap)
		s = natsOptions_SetSendAsap(o, true);
	if (s == NATS_OK && k->ev_loop)
		s = natsOptions_SetEventLoop(o, k->ev_loop, k->ev_attach, k->ev_read, k->ev_write, k->ev_detach);
	/* With a callback for the first connection, natsConnection_Connect
	 * returns at once and goes on trying in the background; without one it
	 * retries inside the call, MaxReconnect (forever) times, and the
	 * worker could never be stopped while the cluster is away. */
	if (s == NATS_OK)
		s = natsOptions_SetRetryOnFailedConnect(o, true, k->on_reconnected, k->arg);
	if (s == NATS_OK)
		s = natsOptions_SetDisconnectedCB(o, k->on_disconnected, k->arg);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectedCB(o, k->on_reconnected, k->arg);
	if (s == NATS_OK && k->on_closed)
		s = natsOptions_SetClosedCB(o, k->on_closed, k->arg);
	if (s == NATS_OK && k->creds)
		s = natsOptions_SetUserCredentialsFromFiles(o, k->creds, NULL);
	if (s == NATS_OK && k->tls_ca)
		s = natsOptions_LoadCATrustedCertificates(o, k->tls_ca);
	if (s == NATS_OK && k->tls_cert)
		s = natsOptions_LoadCertificatesChain(o, k->tls_cert, k->tls_key);
	if (s == NATS_OK && (k->tls_ca || k->tls_cert))
		s = natsOptions_SetSecure(o, true);
	return s;
}

natsStatus cluster_nats_connect(const struct cluster_nats_conf *k, natsConnection **nc,
				const char **step)
{
	natsOptions *o = NULL;
	struct strv urls = {0};
	char *copy = xstrdup(k->urls), *save = NULL;
	natsStatus s = natsOptions_Create(&o);

	*nc = NULL;
	for (char *u = strtok_r(copy, ", \t", &save); u; u = strtok_r(NULL, ", \t", &save))
		strv_push(&urls, u);
	if (s == NATS_OK)
		s = options(k, o, &urls);
	if (s != NATS_OK) {
		*step = "NATS options";
	} else {
		s = natsConnection_Connect(nc, o);
		if (s == NATS_NOT_YET_CONNECTED)
			s = NATS_OK;	/* it keeps trying in the background */
		if (s != NATS_OK)
			*step = "connect";
	}
	natsOptions_Destroy(o);
	strv_free(&urls);
	free(copy);
	return s;
}

void cluster_nats_watch(void *const *kv, atomic_bool *ready, atomic_bool *rewatch, atomic_bool *stop,
			void (*fn)(void *arg, kvEntry *e), void *arg)
{
	kvWatcher *w = NULL;

	while (!atomic_load(stop)) {
		if ((atomic_exchange(rewatch, false) || !atomic_load(ready)) && w) {
			kvWatcher_Destroy(w);
			w = NULL;
		}
		if (!w) {
			kvWatchOptions o;
			kvWatchOptions_Init(&o);
			if (!atomic_load(ready) || kvStore_WatchAll(&w, *kv, &o) != NATS_OK) {
				w = NULL;
				nanosleep(&(struct timespec){0, 100 * 1000000L}, NULL);
				continue;
			}
		}
		kvEntry *e = NULL;
		natsStatus s = kvWatcher_Next(&e, w, 250);
		if (s == NATS_TIMEOUT)
			continue;
		if (s != NATS_OK) {
			kvWatcher_Destroy(w);
			w = NULL;
			continue;
		}
		if (e)	/* NULL: the initial values are all in */
			fn(arg, e);
	}
	if (w)
		kvWatcher_Destroy(w);
}

void cluster_nats_pause(pthread_cond_t *cv, pthread_mutex_t *mu)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += 500 * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(cv, mu, &ts);
}
