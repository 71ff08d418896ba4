/*
 * bench_nats_bus.c - the floor of the cluster bus benchmark
 * (bench_cluster.py): what cohortd does for a cross-host message, done
 * directly with libnats, so that cohortd's figures (bench_bus with the
 * publisher on cohortd a and the subscriber on cohortd b) read as "NATS,
 * plus what cohort adds".
 *
 *   bench_nats_bus PUB_URL SUB_URL latency QOS [RATE [COUNT]]
 *   bench_nats_bus PUB_URL SUB_URL throughput QOS COUNT
 *
 * qos 0: a core NATS publish on one connection (PUB_URL), a core
 *        subscription on another (SUB_URL): cohortd's qos 0.
 * qos 1: a JetStream publish, pipelined (js_PublishAsync, at most 1,000
 *        unacknowledged, as bench_bus keeps), to a stream of 3 replicas
 *        (1 on a smaller cluster) on the subject a core subscription on
 *        the other connection follows: cohortd stores a qos-1 message so,
 *        and the other cohortd's fan-out reads it so.
 *
 * The payload, pacing and output lines are bench_bus's (one line of
 * key=value a measurement, kind=nats), so bench_cluster.py reads both
 * alike: latency = one-way from the publish to the subscriber's callback
 * (one clock: one machine), p50 / p99 / p99.9 after 500 warm-up messages;
 * throughput = deliveries per second from the first publish to the last
 * delivery.
 */
#include <inttypes.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PAYLOAD_LEN 100
#define WINDOW 1000
#define WARMUP 500
#define STREAM "COHORT_BENCH_BUS_FLOOR"
#define PREFIX "cohortbenchfloor"

static natsConnection *pub_nc, *sub_nc;
static jsCtx *js;
static int qos;

/* What the subscriber saw: a latency a message (ns; -1 never came). */
static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int64_t *lat;
	int64_t count;
	int64_t received, dups, warm;
	int64_t last_rx;
} rx = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *what, natsStatus s)
{
	fprintf(stderr, "bench_nats_bus: %s: %s (%s)\n", what, natsStatus_GetText(s), nats_GetLastError(NULL));
	exit(1);
}

static void make_payload(char *buf, int64_t t, int64_t i)
{
	int n = snprintf(buf, PAYLOAD_LEN + 1, "\"t=%" PRId64 " i=%" PRId64 " ", t, i);
	memset(buf + n, 'x', (size_t)(PAYLOAD_LEN - 1 - n));
	buf[PAYLOAD_LEN - 1] = '"';
	buf[PAYLOAD_LEN] = '\0';
}

static void on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *arg)
{
	char tmp[PAYLOAD_LEN + 8];
	int len = natsMsg_GetDataLength(msg);
	int64_t t, i, now = now_ns();
	(void)nc;
	(void)sub;
	(void)arg;

	if (len > (int)sizeof(tmp) - 1)
		len = (int)sizeof(tmp) - 1;
	memcpy(tmp, natsMsg_GetData(msg), (size_t)len);
	tmp[len] = '\0';
	natsMsg_Destroy(msg);
	if (sscanf(tmp, "\"t=%" SCNd64 " i=%" SCNd64, &t, &i) != 2)
		return;
	pthread_mutex_lock(&rx.mu);
	if (i < 0) {
		rx.warm++;
	} else if (i < rx.count) {
		if (rx.lat[i] >= 0) {
			rx.dups++;
		} else {
			rx.lat[i] = now - t;
			rx.received++;
			rx.last_rx = now;
		}
	}
	pthread_cond_broadcast(&rx.cv);
	pthread_mutex_unlock(&rx.mu);
}

static natsConnection *connect_to(const char *url)
{
	natsOptions *o = NULL;
	natsConnection *nc = NULL;
	natsStatus s = natsOptions_Create(&o);

	if (s == NATS_OK)
		s = natsOptions_SetURL(o, url);
	if (s == NATS_OK)
		s = natsOptions_SetTimeout(o, 5000);
	if (s == NATS_OK)
		s = natsConnection_Connect(&nc, o);
	natsOptions_Destroy(o);
	if (s != NATS_OK)
		die(url, s);
	return nc;
}

/* A fresh stream for the qos-1 subjects, as cohortd makes its own. */
static void stream_make(void)
{
	jsOptions jo;
	jsStreamConfig sc;
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	const char *subjects[] = {PREFIX ".s.>"};
	natsStatus s;

	jsOptions_Init(&jo);
	jo.Wait = 10000;
	jo.PublishAsync.MaxPending = WINDOW;
	jo.PublishAsync.StallWait = 10000;
	if ((s = natsConnection_JetStream(&js, pub_nc, &jo)) != NATS_OK)
		die("JetStream context", s);
	js_DeleteStream(js, STREAM, NULL, &jerr);
	for (int replicas = 3; replicas >= 1; replicas -= 2) {
		jsStreamConfig_Init(&sc);
		sc.Name = STREAM;
		sc.Subjects = subjects;
		sc.SubjectsLen = 1;
		sc.Storage = js_FileStorage;
		sc.Replicas = replicas;
		sc.Duplicates = 120 * (int64_t)1000000000;
		jerr = 0;
		if ((s = js_AddStream(&si, js, &sc, NULL, &jerr)) == NATS_OK)
			break;
	}
	if (s != NATS_OK)
		die("the stream", s);
	jsStreamInfo_Destroy(si);
}

static void publish(const char *subj, const char *payload)
{
	natsStatus s = qos ? js_PublishAsync(js, subj, payload, PAYLOAD_LEN, NULL)
			   : natsConnection_Publish(pub_nc, subj, payload, PAYLOAD_LEN);
	if (s != NATS_OK)
		die("publish", s);
}

/* Every publish acknowledged (qos 1) or on its way (qos 0). */
static void publish_done(void)
{
	natsStatus s = qos ? js_PublishAsyncComplete(js, NULL) : natsConnection_Flush(pub_nc);
	if (s != NATS_OK)
		die("publish complete", s);
}

/* Until the subscription's interest has crossed the routes: warm-up
 * messages until one arrives (10 s at most). */
static void warm_up(const char *subj)
{
	char payload[PAYLOAD_LEN + 1];
	int64_t end = now_ns() + 10 * 1000000000LL;

	for (;;) {
		make_payload(payload, now_ns(), -1);
		publish(subj, payload);
		publish_done();
		pthread_mutex_lock(&rx.mu);
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 20 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		if (!rx.warm)
			pthread_cond_timedwait(&rx.cv, &rx.mu, &ts);
		bool warm = rx.warm > 0;
		pthread_mutex_unlock(&rx.mu);
		if (warm)
			return;
		if (now_ns() > end) {
			fprintf(stderr, "bench_nats_bus: nothing reached the subscriber in 10 s\n");
			exit(1);
		}
	}
}

/* Waits for every message, or for 2 s without one. */
static void wait_all(void)
{
	pthread_mutex_lock(&rx.mu);
	int64_t seen = -1, quiet_since = now_ns();
	while (rx.received < rx.count) {
		if (rx.received != seen) {
			seen = rx.received;
			quiet_since = now_ns();
		} else if (now_ns() - quiet_since > 2000000000LL) {
			break;
		}
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&rx.cv, &rx.mu, &ts);
	}
	pthread_mutex_unlock(&rx.mu);
}

static int cmp64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static void latency(const char *subj, int rate, int64_t count)
{
	char payload[PAYLOAD_LEN + 1];
	int64_t period = 1000000000LL / rate;
	unsigned seed = (unsigned)now_ns();

	for (int64_t i = 0; i < WARMUP; i++) {
		make_payload(payload, now_ns(), -1);
		publish(subj, payload);
	}
	publish_done();
	int64_t next = now_ns();
	for (int64_t i = 0; i < count; i++) {
		struct timespec ts = {(time_t)(next / 1000000000LL), (long)(next % 1000000000LL)};
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
		next += period / 2 + (int64_t)((double)period * rand_r(&seed) / ((double)RAND_MAX + 1));
		make_payload(payload, now_ns(), i);
		publish(subj, payload);
	}
	publish_done();
	wait_all();
	pthread_mutex_lock(&rx.mu);
	int64_t *lat = malloc(sizeof(int64_t) * (size_t)(rx.received + 1));
	size_t n = 0;
	for (int64_t i = 0; i < count; i++)
		if (rx.lat[i] >= 0)
			lat[n++] = rx.lat[i];
	qsort(lat, n, sizeof(int64_t), cmp64);
#define PCT(q) (n ? (double)lat[(size_t)((double)(n - 1) * (q))] / 1e3 : -1.0)
	printf("latency kind=nats qos=%d rate=%d sent=%" PRId64 " received=%zu lost=%" PRId64 " dups=%" PRId64
	       " p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f unacked=0 reconnects=0\n",
	       qos, rate, count, n, count - (int64_t)n, rx.dups, PCT(0.50), PCT(0.99), PCT(0.999), PCT(1.0));
	pthread_mutex_unlock(&rx.mu);
	free(lat);
}

static void throughput(const char *subj, int64_t count)
{
	char payload[PAYLOAD_LEN + 1];
	int64_t t0 = now_ns();

	for (int64_t i = 0; i < count; i++) {
		make_payload(payload, now_ns(), i);
		publish(subj, payload);
	}
	int64_t t_sent = now_ns();
	publish_done();
	int64_t t_acked = now_ns();
	wait_all();
	pthread_mutex_lock(&rx.mu);
	double secs = rx.received ? (double)(rx.last_rx - t0) / 1e9 : 0;
	printf("throughput kind=nats qos=%d subs=1 sent=%" PRId64 " expected=%" PRId64 " delivered=%" PRId64
	       " lost=%" PRId64 " dups=%" PRId64 " seconds=%.3f msgs_per_s=%.0f publish_s=%.3f acked_s=%.3f"
	       " unacked=0 reconnects=0 closed=0\n",
	       qos, count, count, rx.received, count - rx.received, rx.dups, secs,
	       secs > 0 ? (double)rx.received / secs : 0.0, (double)(t_sent - t0) / 1e9,
	       (double)(t_acked - t0) / 1e9);
	pthread_mutex_unlock(&rx.mu);
}

static void usage(void)
{
	fprintf(stderr, "usage: bench_nats_bus PUB_URL SUB_URL latency QOS [RATE [COUNT]]\n"
		"       bench_nats_bus PUB_URL SUB_URL throughput QOS COUNT\n");
	exit(2);
}

int main(int argc, char **argv)
{
	natsSubscription *sub = NULL;
	natsStatus s;
	int rate = 1000;
	int64_t count = 5000;

	if (argc < 5)
		usage();
	const char *mode = argv[3];
	qos = atoi(argv[4]);
	if (qos != 0 && qos != 1)
		usage();
	if (strcmp(mode, "latency") == 0) {
		rate = argc > 5 ? atoi(argv[5]) : rate;
		count = argc > 6 ? atoll(argv[6]) : count;
	} else if (strcmp(mode, "throughput") == 0 && argc > 5) {
		count = atoll(argv[5]);
	} else {
		usage();
	}
	if (rate <= 0 || count <= 0)
		usage();
	rx.count = count;
	rx.lat = malloc(sizeof(int64_t) * (size_t)count);
	for (int64_t i = 0; i < count; i++)
		rx.lat[i] = -1;

	pub_nc = connect_to(argv[1]);
	sub_nc = connect_to(argv[2]);
	if (qos)
		stream_make();
	const char *subj = qos ? PREFIX ".s.bench" : PREFIX ".v.bench";
	if ((s = natsConnection_Subscribe(&sub, sub_nc, subj, on_msg, NULL)) != NATS_OK)
		die("subscribe", s);
	natsSubscription_SetPendingLimits(sub, -1, 1 << 30);
	if ((s = natsConnection_Flush(sub_nc)) != NATS_OK)
		die("flush", s);
	warm_up(subj);
	if (strcmp(mode, "latency") == 0)
		latency(subj, rate, count);
	else
		throughput(subj, count);
	fflush(stdout);

	natsSubscription_Unsubscribe(sub);
	natsSubscription_Destroy(sub);
	if (qos) {
		jsErrCode jerr = 0;
		js_DeleteStream(js, STREAM, NULL, &jerr);
		jsCtx_Destroy(js);
	}
	natsConnection_Destroy(pub_nc);
	natsConnection_Destroy(sub_nc);
	free(rx.lat);
	nats_Close();
	return 0;
}
