/*
 * cluster_stats.c - what `cohortctl status` and /metrics show of the
 * cluster (issue 18 item 3): its state, the server, the round trip and the
 * reconnections.
 *
 * The round trip is a PING and its PONG (natsConnection_GetRTT), which
 * blocks for as long as the server takes, up to the connection's timeout
 * when it hangs.  So it runs on a thread of its own every
 * CLUSTER_RTT_EVERY_MS: neither the loop nor the worker (whose requests
 * would queue behind it) ever waits for it.  The figure goes to the loop
 * like every other news (cluster_post), where status reads it.
 */
#include "autoconfig.h"

#include <errno.h>
#include <nats/nats.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cluster_impl.h"
#include "log.h"
#include "util.h"

static void *rtt_main(void *arg)
{
	struct cluster *c = arg;

	pthread_mutex_lock(&c->rtt_mu);
	while (!atomic_load(&c->stop)) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += CLUSTER_RTT_EVERY_MS / 1000;
		ts.tv_nsec += (CLUSTER_RTT_EVERY_MS % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&c->rtt_cv, &c->rtt_mu, &ts);
		if (atomic_load(&c->stop))
			break;
		/* c->nc is the worker's, set before it said kv_ready; it is
		 * destroyed only after this thread is joined. */
		if (!atomic_load(&c->kv_ready))
			continue;
		pthread_mutex_unlock(&c->rtt_mu);
		int64_t rtt_ns = 0;
		natsStatus s = natsConnection_GetRTT(c->nc, &rtt_ns);
		struct cmsg *m = xcalloc(1, sizeof(*m));
		m->kind = CM_RTT;
		m->rev = s == NATS_OK ? (uint64_t)(rtt_ns / 1000) + 1 : 0;	/* 0: none */
		cluster_post(c, m);
		pthread_mutex_lock(&c->rtt_mu);
	}
	pthread_mutex_unlock(&c->rtt_mu);
	return NULL;
}

void cluster_stats_start(struct cluster *c)
{
	int rc;

	c->rtt_us = -1;
	c->state_ms = now_wall_ms();
	pthread_mutex_init(&c->rtt_mu, NULL);
	pthread_cond_init(&c->rtt_cv, NULL);
	rc = pthread_create(&c->rtt_thread, NULL, rtt_main, c);
	if (rc != 0)	/* status shows no round trip; nothing else needs it */
		log_warn(NULL, "cluster: cannot start the round-trip thread: %s", strerror(rc));
	c->rtt_running = rc == 0;
}

/* Before the worker's thread is joined (it destroys the connection). */
void cluster_stats_stop(struct cluster *c)
{
	if (c->rtt_running) {
		pthread_mutex_lock(&c->rtt_mu);
		atomic_store(&c->stop, true);
		pthread_cond_signal(&c->rtt_cv);
		pthread_mutex_unlock(&c->rtt_mu);
		pthread_join(c->rtt_thread, NULL);
		c->rtt_running = false;
	}
	pthread_mutex_destroy(&c->rtt_mu);
	pthread_cond_destroy(&c->rtt_cv);
}

void cluster_info(const struct cluster *c, struct cluster_info *out)
{
	out->state = c->up ? CLUSTER_CONNECTED : c->ever_up ? CLUSTER_UNREACHABLE : CLUSTER_CONNECTING;
	out->urls = c->urls;
	out->server = c->server;
	out->why = c->up ? "" : c->refusal;
	out->since_ms = c->state_ms;
	out->rtt_us = c->up ? c->rtt_us : -1;
	out->reconnects = c->reconnects;
	out->refused = c->refused;
	out->on_loop = c->fast.sent - c->fast.handed;
	out->by_worker = c->worker_done;
}
