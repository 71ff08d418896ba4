/*
 * journal_fill.c - the clients of bench_scale_journal.py: they fill cohortd's
 * journal and mosquitto's persistence with the same queued qos-1
 * messages, write the redis AOF with the same entries, drain the
 * sessions back, and probe the publish latency meanwhile.
 *
 *   journal_fill cohort|mosquitto unix:PATH hello
 *       connects (and says hello), then closes: is the server up?
 *   journal_fill cohort    unix:PATH sessions N
 *   journal_fill mosquitto unix:PATH sessions N
 *       N durable sessions s0..s(N-1) (mosquitto: clean_session false),
 *       each subscribed with qos 1 to its own topic q.I (q/I), then away.
 *   journal_fill cohort    unix:PATH fill COUNT N RETAINED DATALEN
 *   journal_fill mosquitto unix:PATH fill COUNT N RETAINED DATALEN
 *       COUNT qos-1 messages, message i to q.(i mod N), then RETAINED
 *       qos-1 retained values r.K; each data a JSON string of DATALEN
 *       bytes; at most 1000 unacknowledged (cohortd: its ok once stored;
 *       mosquitto: its PUBACK).
 *   journal_fill redis-aof FILE COUNT N RETAINED DATALEN
 *       the same as an AOF: RPUSH sI <data> per message, SET rK <data>.
 *   journal_fill cohort unix:PATH drain FIRST LAST PER
 *       sessions FIRST..LAST-1 back, 50 at a time, each reading (and
 *       acking) PER messages.
 *   journal_fill cohort unix:PATH clean FIRST LAST
 *       sessions FIRST..LAST-1 back with clean:true (their queues are
 *       dropped), then away again.
 *   journal_fill cohort unix:PATH probe RATE SECONDS
 *       qos-1 publishes at RATE a second to topic "probe" (a durable
 *       session "probe" of its own subscribes to it, so every publish is
 *       journaled); one line per publish: its start (CLOCK_MONOTONIC, ms)
 *       and the time to its ok (us).
 *
 * The last line of every mode is "done seconds=S count=C".
 */
#include "autoconfig.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cohort.h"
#ifdef HAVE_MOSQUITTO
#include <mosquitto.h>
#endif

#define WINDOW 1000
#define DRAIN_BATCH 50

static const char *address;

static void die(const char *fmt, const char *a, const char *b)
{
	fprintf(stderr, "journal_fill: ");
	fprintf(stderr, fmt, a, b);
	fputc('\n', stderr);
	exit(1);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *make_data(size_t len)
{
	char *d = malloc(len + 1);
	if (!d || len < 2)
		die("bad data length%s%s", "", "");
	memset(d, 'x', len);
	d[0] = d[len - 1] = '"';
	d[len] = 0;
	return d;
}

/* --- cohortd ------------------------------------------------------------------------- */

static cohort_t *c_open_as(const char *session, bool clean)
{
	struct cohort_options o = {.bus = address, .token = "", .session = session, .no_reconnect = true,
				   .clean = clean};
	cohort_t *c = cohort_new(&o);
	if (cohort_connect(c) < 0)
		die("cohort_connect %s: %s", address, cohort_error(c));
	return c;
}

static cohort_t *c_open(const char *session)
{
	return c_open_as(session, false);
}

static void c_clean(long first, long last)
{
	for (long i = first; i < last; i++) {
		char name[32];
		snprintf(name, sizeof(name), "s%ld", i);
		cohort_free(c_open_as(name, true));
	}
}

static void c_sessions(long n)
{
	for (long i = 0; i < n; i++) {
		char name[32], topic[32];
		snprintf(name, sizeof(name), "s%ld", i);
		snprintf(topic, sizeof(topic), "q.%ld", i);
		cohort_t *c = c_open(name);
		if (cohort_subscribe(c, topic, 1, NULL, NULL) < 0)
			die("subscribe %s: %s", topic, cohort_error(c));
		cohort_free(c);
	}
}

static void c_publish(cohort_t *c, const char *topic, const char *data, bool retain)
{
	while (cohort_unacked(c) >= WINDOW || cohort_wants_write(c))
		if (cohort_step(c, 100) < 0)
			die("cohort_step: %s%s", cohort_error(c), "");
	if (cohort_publish_nowait(c, topic, data, 1, retain) < 0)
		die("publish %s: %s", topic, cohort_error(c));
}

static void c_fill(long count, long n, long retained, const char *data)
{
	cohort_t *c = c_open(NULL);
	char topic[32];

	for (long i = 0; i < count; i++) {
		snprintf(topic, sizeof(topic), "q.%ld", i % n);
		c_publish(c, topic, data, false);
	}
	for (long k = 0; k < retained; k++) {
		snprintf(topic, sizeof(topic), "r.%ld", k);
		c_publish(c, topic, data, true);
	}
	if (cohort_flush(c, 600000) < 0 || cohort_unacked(c))
		die("flush: %s%s", cohort_error(c), "");
	cohort_free(c);
}

static void on_drained(cohort_t *c, const struct cohort_msg *m, void *arg)
{
	(void)c;
	(void)m;
	(*(long *)arg)++;
}

static void c_drain(long first, long last, long per)
{
	for (long b = first; b < last; b += DRAIN_BATCH) {
		cohort_t *cs[DRAIN_BATCH];
		long got[DRAIN_BATCH] = {0}, k = 0;
		for (long i = b; i < last && k < DRAIN_BATCH; i++, k++) {
			char name[32], topic[32];
			snprintf(name, sizeof(name), "s%ld", i);
			snprintf(topic, sizeof(topic), "q.%ld", i);
			cs[k] = c_open(name);
			if (cohort_subscribe(cs[k], topic, 1, on_drained, &got[k]) < 0)
				die("subscribe %s: %s", topic, cohort_error(cs[k]));
		}
		for (bool more = true; more;) {
			more = false;
			for (long i = 0; i < k; i++) {
				if (got[i] >= per)
					continue;
				more = true;
				if (cohort_step(cs[i], 0) < 0)
					die("cohort_step: %s%s", cohort_error(cs[i]), "");
			}
			if (more)
				usleep(200);
		}
		for (long i = 0; i < k; i++) {
			cohort_step(cs[i], 0);	/* the acks of the last ones */
			cohort_free(cs[i]);
		}
	}
}

static void c_probe(long rate, double seconds)
{
	cohort_t *c = c_open("probe");
	long got = 0;

	if (cohort_subscribe(c, "probe", 1, on_drained, &got) < 0)
		die("subscribe probe: %s%s", cohort_error(c), "");
	double start = now_s(), next = start;
	while (now_s() - start < seconds) {
		double t0 = now_s();
		if (cohort_publish(c, "probe", "1", 1, false, NULL) < 0)
			die("publish probe: %s%s", cohort_error(c), "");
		double t1 = now_s();
		printf("%.3f %.0f\n", t0 * 1e3, (t1 - t0) * 1e6);
		next += 1.0 / (double)rate;
		while (now_s() < next)
			cohort_step(c, 1);
	}
	cohort_free(c);
}

/* --- mosquitto ---------------------------------------------------------------------------- */

#ifdef HAVE_MOSQUITTO
struct mq {
	struct mosquitto *m;
	int connected;
	int subscribed;
	long acked;
};

static void mq_on_connect(struct mosquitto *m, void *arg, int rc)
{
	(void)m;
	((struct mq *)arg)->connected = rc == 0 ? 1 : -1;
}

static void mq_on_subscribe(struct mosquitto *m, void *arg, int mid, int n, const int *granted)
{
	(void)m;
	(void)mid;
	((struct mq *)arg)->subscribed = n > 0 && granted[0] == 1 ? 1 : -1;
}

static void mq_on_publish(struct mosquitto *m, void *arg, int mid)
{
	(void)m;
	(void)mid;
	((struct mq *)arg)->acked++;
}

static void mq_open(struct mq *q, const char *id)
{
	memset(q, 0, sizeof(*q));
	q->m = mosquitto_new(id, id == NULL, q);
	if (!q->m)
		die("mosquitto_new: %s%s", strerror(errno), "");
	mosquitto_max_inflight_messages_set(q->m, WINDOW);
	mosquitto_connect_callback_set(q->m, mq_on_connect);
	mosquitto_subscribe_callback_set(q->m, mq_on_subscribe);
	mosquitto_publish_callback_set(q->m, mq_on_publish);
	if (strncmp(address, "unix:", 5) != 0)
		die("%s: unix:PATH only%s", address, "");
	int rc = mosquitto_connect(q->m, address + 5, 0, 600);
	if (rc != MOSQ_ERR_SUCCESS)
		die("mosquitto_connect %s: %s", address, mosquitto_strerror(rc));
	while (q->connected == 0)
		if (mosquitto_loop(q->m, 100, 1) != MOSQ_ERR_SUCCESS)
			die("mosquitto: no CONNACK from %s%s", address, "");
	if (q->connected != 1)
		die("mosquitto refused %s%s", id ? id : "", "");
}

static void mq_close(struct mq *q)
{
	mosquitto_disconnect(q->m);
	mosquitto_loop(q->m, 10, 1);
	mosquitto_destroy(q->m);
}

static void mq_sessions(long n)
{
	for (long i = 0; i < n; i++) {
		char id[32], topic[32];
		struct mq q;
		snprintf(id, sizeof(id), "s%ld", i);
		snprintf(topic, sizeof(topic), "q/%ld", i);
		mq_open(&q, id);
		if (mosquitto_subscribe(q.m, NULL, topic, 1) != MOSQ_ERR_SUCCESS)
			die("subscribe %s%s", topic, "");
		while (q.subscribed == 0)
			if (mosquitto_loop(q.m, 100, 1) != MOSQ_ERR_SUCCESS)
				die("mosquitto: no SUBACK for %s%s", topic, "");
		if (q.subscribed != 1)
			die("mosquitto refused the subscription %s%s", topic, "");
		mq_close(&q);
	}
}

static void mq_publish(struct mq *q, long *sent, const char *topic, const char *data, bool retain)
{
	while (*sent - q->acked >= WINDOW)
		if (mosquitto_loop(q->m, 100, 1) != MOSQ_ERR_SUCCESS)
			die("mosquitto: the publisher's connection failed%s%s", "", "");
	int rc = mosquitto_publish(q->m, NULL, topic, (int)strlen(data), data, 1, retain);
	if (rc != MOSQ_ERR_SUCCESS)
		die("mosquitto_publish %s: %s", topic, mosquitto_strerror(rc));
	(*sent)++;
	if (*sent % 64 == 0)
		mosquitto_loop(q->m, 0, 1);
}

static void mq_fill(long count, long n, long retained, const char *data)
{
	struct mq q;
	long sent = 0;
	char topic[32];

	mq_open(&q, NULL);
	for (long i = 0; i < count; i++) {
		snprintf(topic, sizeof(topic), "q/%ld", i % n);
		mq_publish(&q, &sent, topic, data, false);
	}
	for (long k = 0; k < retained; k++) {
		snprintf(topic, sizeof(topic), "r/%ld", k);
		mq_publish(&q, &sent, topic, data, true);
	}
	while (q.acked < sent)
		if (mosquitto_loop(q.m, 100, 1) != MOSQ_ERR_SUCCESS)
			die("mosquitto: the publisher's connection failed%s%s", "", "");
	mq_close(&q);
}
#endif

/* --- redis ------------------------------------------------------------------------------- */

static void resp(FILE *f, const char *cmd, const char *key, const char *data)
{
	fprintf(f, "*3\r\n$%zu\r\n%s\r\n$%zu\r\n%s\r\n$%zu\r\n%s\r\n", strlen(cmd), cmd, strlen(key), key,
		strlen(data), data);
}

static void redis_aof(const char *path, long count, long n, long retained, const char *data)
{
	FILE *f = fopen(path, "w");
	char key[32];

	if (!f)
		die("%s: %s", path, strerror(errno));
	fputs("*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n", f);
	for (long i = 0; i < count; i++) {
		snprintf(key, sizeof(key), "s%ld", i % n);
		resp(f, "RPUSH", key, data);
	}
	for (long k = 0; k < retained; k++) {
		snprintf(key, sizeof(key), "r%ld", k);
		resp(f, "SET", key, data);
	}
	if (fclose(f) != 0)
		die("%s: %s", path, strerror(errno));
}

static void usage(void)
{
	fprintf(stderr, "usage: journal_fill cohort|mosquitto unix:PATH hello\n"
		"       journal_fill cohort|mosquitto unix:PATH sessions N\n"
		"       journal_fill cohort|mosquitto unix:PATH fill COUNT N RETAINED DATALEN\n"
		"       journal_fill redis-aof FILE COUNT N RETAINED DATALEN\n"
		"       journal_fill cohort unix:PATH drain FIRST LAST PER\n"
		"       journal_fill cohort unix:PATH clean FIRST LAST\n"
		"       journal_fill cohort unix:PATH probe RATE SECONDS\n");
	exit(2);
}

int main(int argc, char **argv)
{
	double t0 = now_s();
	long count = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 3)
		usage();
	address = argv[2];
	if (strcmp(argv[1], "redis-aof") == 0) {
		if (argc != 7)
			usage();
		count = atol(argv[3]) + atol(argv[5]);
		redis_aof(argv[2], atol(argv[3]), atol(argv[4]), atol(argv[5]), make_data((size_t)atol(argv[6])));
	} else if (argc < 4) {
		usage();
	} else if (strcmp(argv[1], "cohort") == 0) {
		const char *mode = argv[3];
		if (strcmp(mode, "hello") == 0 && argc == 4) {
			cohort_free(c_open(NULL));
		} else if (strcmp(mode, "sessions") == 0 && argc == 5) {
			c_sessions(count = atol(argv[4]));
		} else if (strcmp(mode, "fill") == 0 && argc == 8) {
			count = atol(argv[4]) + atol(argv[6]);
			c_fill(atol(argv[4]), atol(argv[5]), atol(argv[6]), make_data((size_t)atol(argv[7])));
		} else if (strcmp(mode, "drain") == 0 && argc == 7) {
			count = (atol(argv[5]) - atol(argv[4])) * atol(argv[6]);
			c_drain(atol(argv[4]), atol(argv[5]), atol(argv[6]));
		} else if (strcmp(mode, "clean") == 0 && argc == 6) {
			count = atol(argv[5]) - atol(argv[4]);
			c_clean(atol(argv[4]), atol(argv[5]));
		} else if (strcmp(mode, "probe") == 0 && argc == 6) {
			c_probe(atol(argv[4]), atof(argv[5]));
		} else {
			usage();
		}
	} else if (strcmp(argv[1], "mosquitto") == 0) {
#ifdef HAVE_MOSQUITTO
		const char *mode = argv[3];
		mosquitto_lib_init();
		if (strcmp(mode, "hello") == 0 && argc == 4) {
			struct mq q;
			mq_open(&q, NULL);
			mq_close(&q);
		} else if (strcmp(mode, "sessions") == 0 && argc == 5) {
			mq_sessions(count = atol(argv[4]));
		} else if (strcmp(mode, "fill") == 0 && argc == 8) {
			count = atol(argv[4]) + atol(argv[6]);
			mq_fill(atol(argv[4]), atol(argv[5]), atol(argv[6]), make_data((size_t)atol(argv[7])));
		} else {
			usage();
		}
		mosquitto_lib_cleanup();
#else
		printf("unsupported reason=built_without_libmosquitto\n");
		return 0;
#endif
	} else {
		usage();
	}
	printf("done seconds=%.3f count=%ld\n", now_s() - t0, count);
	return 0;
}
