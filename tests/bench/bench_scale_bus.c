/*
 * bench_scale_bus.c - thousands of bus clients in one process, for
 * bench_scale_bus.py (issue 19, item 2): libcohort clients of cohortd, or
 * libmosquitto clients of mosquitto, the same pattern for both.
 *
 *   bench_scale_bus swarm KIND ADDRESS N THREADS TOPIC QOS EXPECT [SESSION_PREFIX]
 *   bench_scale_bus publish KIND ADDRESS TOPIC QOS
 *
 * KIND is cohort or mosquitto; ADDRESS unix:PATH, or ws://HOST:PORT/
 * (cohort, $COHORT_TOKEN) / HOST:PORT (mosquitto).
 *
 * swarm: N clients spread over THREADS threads (a libcohort client's
 * connect and reconnect block on cohortd's answer, as they would in N
 * programs: the threads let that many wait at once), each subscribed to
 * TOPIC with QOS.  With SESSION_PREFIX each has a durable session
 * (libcohort: session PREFIX-i; libmosquitto: client id PREFIX-i,
 * clean_session false).  A client that loses its connection reconnects:
 * libcohort by itself (100 ms, then doubling to 30 s with +-20 % jitter);
 * a libmosquitto client is driven here by the same policy.  Prints
 * "ready n=N" once all are subscribed, then answers lines on stdin:
 *   stats          "stats connected=C complete=K got=G dups=D reconnects=R
 *                  closed=F": C connected now, K having every message index
 *                  0..EXPECT-1, G distinct deliveries, F stopped for good
 *   dump PATH      writes "l NS" (each delivery's latency), "m I COUNT
 *                  FIRST_NS LAST_NS" (each message's receivers: how many,
 *                  the first one's latency and the last one's) and "r
 *                  DOWN_NS UP_NS RECONNECTS" (each client's last loss and
 *                  return, CLOCK_MONOTONIC) to PATH, then "dumped"
 *   quit (or EOF)  closes every client and exits
 *
 * publish: one client; "send COUNT INTERVAL_MS" publishes COUNT messages
 * (the next indexes) INTERVAL_MS apart, qos-1 ones without waiting for the
 * oks (kept and re-sent after a reconnect by the client: libcohort's
 * cohort_publish_nowait, libmosquitto's queue), says "sent n=N" after the
 * last; quit.
 *
 * A payload is a 100-byte JSON string "t=<CLOCK_MONOTONIC ns> i=<index> xx..".
 */
#include "autoconfig.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "cohort.h"
#ifdef HAVE_MOSQUITTO
#include <mosquitto.h>
#endif

#define PAYLOAD_LEN 100
#define MAX_INDEX 100000	/* message indexes followed */
#define BACKOFF_FIRST_MS 100	/* libcohort's policy, for the mosquitto clients */
#define BACKOFF_MAX_MS 30000
#define KEEPALIVE_S 60

enum kind { K_COHORT, K_MOSQ };

static enum kind kind;
static const char *address;
static const char *topic;
static int qos;
static int64_t expect;
static const char *session_prefix;
static atomic_int stopping;

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	fputs("bench_scale_bus: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void *xcalloc_(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size);
	if (!p)
		die("out of memory");
	return p;
}

static void make_payload(char *buf, int64_t t, int64_t i)
{
	int n = snprintf(buf, PAYLOAD_LEN + 1, "\"t=%" PRId64 " i=%" PRId64 " ", t, i);
	memset(buf + n, 'x', (size_t)(PAYLOAD_LEN - 1 - n));
	buf[PAYLOAD_LEN - 1] = '"';
	buf[PAYLOAD_LEN] = '\0';
}

static bool parse_payload(const char *p, size_t len, int64_t *t, int64_t *i)
{
	char tmp[PAYLOAD_LEN + 8];

	if (len > sizeof(tmp) - 1)
		len = sizeof(tmp) - 1;
	memcpy(tmp, p, len);
	tmp[len] = '\0';
	const char *a = strstr(tmp, "t="), *b = strstr(tmp, " i=");
	if (!a || !b)
		return false;
	*t = strtoll(a + 2, NULL, 10);
	*i = strtoll(b + 3, NULL, 10);
	return *i >= 0 && *i < MAX_INDEX;
}

/* The address as libmosquitto takes it: a host and port, or a socket path and 0. */
static void mq_host(char *host, size_t len, int *port)
{
	*port = 0;
	if (strncmp(address, "unix:", 5) == 0) {
		snprintf(host, len, "%s", address + 5);
		return;
	}
	const char *colon = strrchr(address, ':');
	if (!colon)
		die("bad address %s (HOST:PORT or unix:PATH)", address);
	snprintf(host, len, "%.*s", (int)(colon - address), address);
	*port = atoi(colon + 1);
}

/* --- the swarm ------------------------------------------------------------------------ */

struct worker;

enum mq_state { MQ_DOWN, MQ_CONNECTING, MQ_UP };

struct client {
	struct worker *w;
	int no;
	cohort_t *c;
#ifdef HAVE_MOSQUITTO
	struct mosquitto *m;
#endif
	enum mq_state state;	/* mosquitto */
	bool subscribed;	/* mosquitto: the first SUBACK came */
	int64_t backoff_ms, next_attempt_ns;	/* mosquitto */
	bool up;		/* connected at the last look */
	int64_t down_at, up_at;
	unsigned reconnects;
	uint8_t *seen;		/* a bit per index below expect */
	uint32_t got;
};

struct worker {
	pthread_t th;
	pthread_mutex_t mu;	/* held while it steps its clients */
	struct client *cl;
	int n;
	int ready;		/* subscribed clients */
	int64_t *lat;
	size_t nlat, cap;
	uint64_t dups;
	int64_t *first, *last;	/* by index: the least and greatest latency */
	uint32_t *count;
};

static void got_message(struct client *k, const char *data, size_t len)
{
	struct worker *w = k->w;
	int64_t now = now_ns(), t, i;

	if (!parse_payload(data, len, &t, &i))
		return;
	if (i < expect) {
		if (k->seen[i / 8] & (1u << (i % 8))) {
			w->dups++;
			return;
		}
		k->seen[i / 8] |= (uint8_t)(1u << (i % 8));
	}
	k->got++;
	if (w->nlat == w->cap) {
		w->cap = w->cap ? 2 * w->cap : 4096;
		w->lat = realloc(w->lat, w->cap * sizeof(*w->lat));
		if (!w->lat)
			die("out of memory");
	}
	w->lat[w->nlat++] = now - t;
	if (!w->count[i] || now - t < w->first[i])
		w->first[i] = now - t;
	if (!w->count[i] || now - t > w->last[i])
		w->last[i] = now - t;
	w->count[i]++;
}

static void on_cohort_msg(cohort_t *c, const struct cohort_msg *m, void *arg)
{
	(void)c;
	got_message(arg, m->data, m->data_len);
}

/* The client's connection came or went since the last look. */
static void look(struct client *k, bool up_now)
{
	if (up_now == k->up)
		return;
	k->up = up_now;
	if (up_now) {
		k->up_at = now_ns();
		k->reconnects++;
	} else {
		k->down_at = now_ns();
	}
}

static void cohort_open(struct client *k)
{
	const char *tok = getenv("COHORT_TOKEN");
	char name[96];
	struct cohort_options o = {.bus = address, .token = tok ? tok : ""};

	if (session_prefix) {
		snprintf(name, sizeof(name), "%s-%d", session_prefix, k->no);
		o.session = name;
	}
	k->c = cohort_new(&o);
	/* The first connect may be refused while the server is busy with
	 * the others: tried again, as a program would, for a minute. */
	for (int64_t end = now_ns() + 60000000000LL; cohort_connect(k->c) < 0;) {
		if (now_ns() > end)
			die("cohort_connect %s: %s", address, cohort_error(k->c));
		usleep(100000);
	}
	if (cohort_subscribe(k->c, topic, qos, on_cohort_msg, k) < 0)
		die("cohort_subscribe %s: %s", topic, cohort_error(k->c));
	k->up = true;
	k->w->ready++;
}

#ifdef HAVE_MOSQUITTO
static void mq_schedule(struct client *k)
{
	double jitter = 0.8 + 0.4 * ((double)random() / RAND_MAX);
	k->next_attempt_ns = now_ns() + (int64_t)((double)k->backoff_ms * jitter) * 1000000;
	k->backoff_ms = k->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : k->backoff_ms * 2;
}

static void mq_lost(struct client *k)
{
	if (k->state == MQ_DOWN)
		return;
	mosquitto_disconnect(k->m);	/* closes its socket */
	k->state = MQ_DOWN;
	look(k, false);
	/* as libcohort: the first attempt 100 ms after the loss */
	k->backoff_ms = BACKOFF_FIRST_MS;
	k->next_attempt_ns = now_ns() + BACKOFF_FIRST_MS * 1000000LL;
	k->backoff_ms *= 2;
}

static void mq_on_connect(struct mosquitto *m, void *arg, int rc)
{
	struct client *k = arg;

	if (rc != 0) {
		mq_lost(k);
		return;
	}
	k->state = MQ_UP;
	k->backoff_ms = BACKOFF_FIRST_MS;
	look(k, true);
	/* as libcohort does at every hello: the subscription again */
	if (mosquitto_subscribe(m, NULL, topic, qos) != MOSQ_ERR_SUCCESS)
		mq_lost(k);
}

static void mq_on_subscribe(struct mosquitto *m, void *arg, int mid, int n, const int *granted)
{
	struct client *k = arg;
	(void)m;
	(void)mid;
	if (!k->subscribed && n > 0 && granted[0] <= 2) {
		k->subscribed = true;
		k->w->ready++;
	}
}

static void mq_on_message(struct mosquitto *m, void *arg, const struct mosquitto_message *msg)
{
	(void)m;
	got_message(arg, msg->payload, (size_t)msg->payloadlen);
}

static void mq_attempt(struct client *k, bool first)
{
	char host[256];
	int port, rc;

	mq_host(host, sizeof(host), &port);
	rc = first ? mosquitto_connect(k->m, host, port, KEEPALIVE_S) : mosquitto_reconnect(k->m);
	if (rc == MOSQ_ERR_SUCCESS) {
		k->state = MQ_CONNECTING;
		return;
	}
	mq_schedule(k);
}

static void mq_open(struct client *k)
{
	char id[96];

	if (session_prefix)
		snprintf(id, sizeof(id), "%s-%d", session_prefix, k->no);
	k->m = mosquitto_new(session_prefix ? id : NULL, !session_prefix, k);
	if (!k->m)
		die("mosquitto_new: %s", strerror(errno));
	mosquitto_int_option(k->m, MOSQ_OPT_TCP_NODELAY, 1);
	mosquitto_connect_callback_set(k->m, mq_on_connect);
	mosquitto_subscribe_callback_set(k->m, mq_on_subscribe);
	mosquitto_message_callback_set(k->m, mq_on_message);
	k->backoff_ms = BACKOFF_FIRST_MS;
	mq_attempt(k, true);
}

/* Reads every whole packet the socket holds. */
static void mq_read(struct client *k)
{
	int fd = mosquitto_socket(k->m);
	for (int i = 0; i < 10000; i++) {
		if (mosquitto_loop_read(k->m, 1) != MOSQ_ERR_SUCCESS) {
			mq_lost(k);
			return;
		}
		int avail = 0;
		if (ioctl(fd, FIONREAD, &avail) < 0 || avail <= 0)
			return;
	}
}
#endif

/* One pass over a worker's clients: poll, then step those that are ready
 * or due.  The poll waits at most wait_ms. */
static void worker_pass(struct worker *w, struct pollfd *p, int wait_ms)
{
	int64_t now = now_ns();

	for (int i = 0; i < w->n; i++) {
		struct client *k = &w->cl[i];
		p[i] = (struct pollfd){-1, 0, 0};
		if (kind == K_COHORT) {
			p[i].fd = cohort_fd(k->c);
			p[i].events = (short)(POLLIN | (cohort_wants_write(k->c) ? POLLOUT : 0));
			int t = cohort_next_timeout_ms(k->c);
			if (t >= 0 && t < wait_ms)
				wait_ms = t;
		}
#ifdef HAVE_MOSQUITTO
		if (kind == K_MOSQ && k->state != MQ_DOWN) {
			p[i].fd = mosquitto_socket(k->m);
			p[i].events = (short)(POLLIN | (mosquitto_want_write(k->m) ? POLLOUT : 0));
		} else if (kind == K_MOSQ) {
			int64_t t = (k->next_attempt_ns - now) / 1000000;
			if (t < wait_ms)
				wait_ms = t < 0 ? 0 : (int)t;
		}
#endif
	}
	pthread_mutex_unlock(&w->mu);
	int r = poll(p, (nfds_t)w->n, wait_ms);
	pthread_mutex_lock(&w->mu);
	if (r < 0 && errno != EINTR)
		die("poll: %s", strerror(errno));
	now = now_ns();
	for (int i = 0; i < w->n; i++) {
		struct client *k = &w->cl[i];
		if (kind == K_COHORT) {
			if (p[i].revents || (p[i].fd < 0 && cohort_next_timeout_ms(k->c) == 0))
				cohort_step(k->c, 0);
			look(k, cohort_connected(k->c));
			continue;
		}
#ifdef HAVE_MOSQUITTO
		if (k->state == MQ_DOWN) {
			if (now >= k->next_attempt_ns)
				mq_attempt(k, false);
			continue;
		}
		if (p[i].revents & (POLLIN | POLLERR | POLLHUP))
			mq_read(k);
		if (k->state != MQ_DOWN && mosquitto_want_write(k->m) &&
		    mosquitto_loop_write(k->m, 1) != MOSQ_ERR_SUCCESS)
			mq_lost(k);
#endif
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct pollfd *p = xcalloc_((size_t)w->n, sizeof(*p));
	int64_t misc_at = now_ns() + 1000000000LL;

	pthread_mutex_lock(&w->mu);
	for (int i = 0; i < w->n && kind == K_COHORT; i++)
		cohort_open(&w->cl[i]);
#ifdef HAVE_MOSQUITTO
	for (int i = 0; i < w->n && kind == K_MOSQ; i++)
		mq_open(&w->cl[i]);
#endif
	while (!atomic_load(&stopping)) {
		worker_pass(w, p, 100);
#ifdef HAVE_MOSQUITTO
		if (kind == K_MOSQ && now_ns() > misc_at) {	/* keepalive PINGREQs */
			for (int i = 0; i < w->n; i++)
				if (w->cl[i].state == MQ_UP && mosquitto_loop_misc(w->cl[i].m) != MOSQ_ERR_SUCCESS)
					mq_lost(&w->cl[i]);
			misc_at = now_ns() + 1000000000LL;
		}
#else
		(void)misc_at;
#endif
	}
	pthread_mutex_unlock(&w->mu);
	free(p);
	return NULL;
}

static void swarm_stats(struct worker *ws, int nw)
{
	uint64_t connected = 0, complete = 0, got = 0, dups = 0, reconnects = 0, closed = 0;

	for (int i = 0; i < nw; i++) {
		struct worker *w = &ws[i];
		pthread_mutex_lock(&w->mu);
		for (int j = 0; j < w->n; j++) {
			struct client *k = &w->cl[j];
			connected += k->up;
			complete += expect > 0 && (int64_t)k->got >= expect;
			got += k->got;
			reconnects += k->reconnects ? k->reconnects - 1 : 0;
			closed += kind == K_COHORT && cohort_close_code(k->c) != 0;
		}
		dups += w->dups;
		pthread_mutex_unlock(&w->mu);
	}
	printf("stats connected=%" PRIu64 " complete=%" PRIu64 " got=%" PRIu64 " dups=%" PRIu64
	       " reconnects=%" PRIu64 " closed=%" PRIu64 "\n", connected, complete, got, dups, reconnects, closed);
	fflush(stdout);
}

static void swarm_dump(struct worker *ws, int nw, const char *path)
{
	FILE *f = fopen(path, "w");

	if (!f)
		die("%s: %s", path, strerror(errno));
	int64_t top = 0;
	for (int i = 0; i < nw; i++) {
		struct worker *w = &ws[i];
		pthread_mutex_lock(&w->mu);
		for (size_t j = 0; j < w->nlat; j++)
			fprintf(f, "l %" PRId64 "\n", w->lat[j]);
		for (int j = 0; j < w->n; j++)
			fprintf(f, "r %" PRId64 " %" PRId64 " %u\n", w->cl[j].down_at, w->cl[j].up_at,
				w->cl[j].reconnects);
		for (int64_t j = 0; j < MAX_INDEX; j++)
			if (w->count[j] && j >= top)
				top = j + 1;
		pthread_mutex_unlock(&w->mu);
	}
	for (int64_t j = 0; j < top; j++) {
		int64_t first = 0, last = 0;
		uint64_t n = 0;
		for (int i = 0; i < nw; i++) {
			struct worker *w = &ws[i];
			pthread_mutex_lock(&w->mu);
			if (w->count[j]) {
				if (!n || w->first[j] < first)
					first = w->first[j];
				if (!n || w->last[j] > last)
					last = w->last[j];
				n += w->count[j];
			}
			pthread_mutex_unlock(&w->mu);
		}
		fprintf(f, "m %" PRId64 " %" PRIu64 " %" PRId64 " %" PRId64 "\n", j, n, first, last);
	}
	if (fclose(f) != 0)
		die("%s: %s", path, strerror(errno));
	printf("dumped\n");
	fflush(stdout);
}

static int swarm(int n, int nthreads)
{
	if (nthreads < 1 || nthreads > n)
		nthreads = n;
	struct worker *ws = xcalloc_((size_t)nthreads, sizeof(*ws));
	struct client *cl = xcalloc_((size_t)n, sizeof(*cl));
	char line[1024];

	for (int i = 0, at = 0; i < nthreads; i++) {
		struct worker *w = &ws[i];
		w->n = n / nthreads + (i < n % nthreads);
		w->cl = cl + at;
		at += w->n;
		w->first = xcalloc_(MAX_INDEX, sizeof(*w->first));
		w->last = xcalloc_(MAX_INDEX, sizeof(*w->last));
		w->count = xcalloc_(MAX_INDEX, sizeof(*w->count));
		pthread_mutex_init(&w->mu, NULL);
		for (int j = 0; j < w->n; j++) {
			w->cl[j].w = w;
			w->cl[j].no = (int)(w->cl + j - cl) + atoi(getenv("BENCH_FIRST") ? getenv("BENCH_FIRST") : "0");
			w->cl[j].seen = xcalloc_((size_t)expect / 8 + 1, 1);
		}
		if (pthread_create(&w->th, NULL, worker_main, w) != 0)
			die("pthread_create: %s", strerror(errno));
	}
	for (int ready = 0; ready < n;) {
		usleep(50000);
		ready = 0;
		for (int i = 0; i < nthreads; i++) {
			pthread_mutex_lock(&ws[i].mu);
			ready += ws[i].ready;
			pthread_mutex_unlock(&ws[i].mu);
		}
	}
	printf("ready n=%d\n", n);
	fflush(stdout);
	while (fgets(line, sizeof(line), stdin)) {
		line[strcspn(line, "\n")] = '\0';
		if (strcmp(line, "stats") == 0)
			swarm_stats(ws, nthreads);
		else if (strncmp(line, "dump ", 5) == 0)
			swarm_dump(ws, nthreads, line + 5);
		else if (strcmp(line, "quit") == 0)
			break;
	}
	atomic_store(&stopping, 1);
	for (int i = 0; i < nthreads; i++)
		pthread_join(ws[i].th, NULL);
	for (int i = 0; i < n; i++) {
		if (kind == K_COHORT)
			cohort_free(cl[i].c);
#ifdef HAVE_MOSQUITTO
		if (kind == K_MOSQ) {
			mosquitto_disconnect(cl[i].m);
			mosquitto_destroy(cl[i].m);
		}
#endif
		free(cl[i].seen);
	}
	for (int i = 0; i < nthreads; i++) {
		free(ws[i].lat);
		free(ws[i].first);
		free(ws[i].last);
		free(ws[i].count);
	}
	free(cl);
	free(ws);
	return 0;
}

/* --- the publisher ------------------------------------------------------------------- */

struct publisher {
	cohort_t *c;
#ifdef HAVE_MOSQUITTO
	struct mosquitto *m;
	bool mq_up;
	int64_t backoff_ms, next_attempt_ns;
#endif
	int64_t next_index;
	int64_t to_send;	/* left of the current "send" */
	int64_t interval_ns, next_send_ns;
	uint64_t sent;
};

#ifdef HAVE_MOSQUITTO
static void pub_on_connect(struct mosquitto *m, void *arg, int rc)
{
	struct publisher *p = arg;
	(void)m;
	p->mq_up = rc == 0;
}

static void pub_mq_attempt(struct publisher *p, bool first)
{
	char host[256];
	int port;

	mq_host(host, sizeof(host), &port);
	int rc = first ? mosquitto_connect(p->m, host, port, KEEPALIVE_S) : mosquitto_reconnect(p->m);
	if (rc != MOSQ_ERR_SUCCESS) {
		p->next_attempt_ns = now_ns() + p->backoff_ms * 1000000;
		p->backoff_ms = p->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : p->backoff_ms * 2;
	} else {
		p->backoff_ms = BACKOFF_FIRST_MS;
		p->next_attempt_ns = 0;
	}
}
#endif

static void pub_one(struct publisher *p)
{
	char payload[PAYLOAD_LEN + 1];

	make_payload(payload, now_ns(), p->next_index++);
	if (kind == K_COHORT) {
		if (cohort_publish_nowait(p->c, topic, payload, qos, false) < 0 && qos == 1)
			die("publish: %s", cohort_error(p->c));
		p->sent++;
		return;
	}
#ifdef HAVE_MOSQUITTO
	/* Queued by libmosquitto while disconnected (qos 1), sent at its CONNACK. */
	int rc = mosquitto_publish(p->m, NULL, topic, PAYLOAD_LEN, payload, qos, false);
	if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_NO_CONN)
		die("mosquitto_publish: %s", mosquitto_strerror(rc));
	p->sent++;
#endif
}

static void pub_command(struct publisher *p, char *line)
{
	long long count, interval;

	line[strcspn(line, "\n")] = '\0';
	if (sscanf(line, "send %lld %lld", &count, &interval) == 2) {
		p->to_send = count;
		p->interval_ns = interval * 1000000;
		p->next_send_ns = now_ns();
	} else if (strcmp(line, "quit") == 0) {
		atomic_store(&stopping, 1);
	}
}

/* One pass: stdin, the client's socket, the next send. */
static void pub_pass(struct publisher *p)
{
	struct pollfd fds[2] = {{0, POLLIN, 0}, {-1, 0, 0}};
	int64_t now = now_ns();
	int wait = 100;

	if (kind == K_COHORT) {
		fds[1].fd = cohort_fd(p->c);
		fds[1].events = (short)(POLLIN | (cohort_wants_write(p->c) ? POLLOUT : 0));
		int t = cohort_next_timeout_ms(p->c);
		if (t >= 0 && t < wait)
			wait = t;
	}
#ifdef HAVE_MOSQUITTO
	if (kind == K_MOSQ && mosquitto_socket(p->m) >= 0) {
		fds[1].fd = mosquitto_socket(p->m);
		fds[1].events = (short)(POLLIN | (mosquitto_want_write(p->m) ? POLLOUT : 0));
	}
#endif
	if (p->to_send > 0) {
		int64_t t = (p->next_send_ns - now) / 1000000;
		if (t < wait)
			wait = t < 0 ? 0 : (int)t;
	}
	if (poll(fds, 2, wait) < 0 && errno != EINTR)
		die("poll: %s", strerror(errno));
	if (fds[0].revents) {
		char line[256];
		if (!fgets(line, sizeof(line), stdin))
			atomic_store(&stopping, 1);
		else
			pub_command(p, line);
	}
	if (kind == K_COHORT && (fds[1].revents || fds[1].fd < 0))
		cohort_step(p->c, 0);
#ifdef HAVE_MOSQUITTO
	if (kind == K_MOSQ) {
		if (fds[1].fd < 0 || !p->mq_up) {
			if (fds[1].fd < 0 && now_ns() >= p->next_attempt_ns)
				pub_mq_attempt(p, false);
		}
		if (fds[1].revents & (POLLIN | POLLERR | POLLHUP)) {
			if (mosquitto_loop_read(p->m, 10) != MOSQ_ERR_SUCCESS) {
				mosquitto_disconnect(p->m);
				p->mq_up = false;
				p->next_attempt_ns = now_ns() + BACKOFF_FIRST_MS * 1000000LL;
			}
		}
		if (mosquitto_socket(p->m) >= 0 && mosquitto_want_write(p->m))
			(void)mosquitto_loop_write(p->m, 10);
		(void)mosquitto_loop_misc(p->m);
	}
#endif
	while (p->to_send > 0 && now_ns() >= p->next_send_ns) {
		pub_one(p);
		p->next_send_ns += p->interval_ns;
		if (--p->to_send == 0) {
			printf("sent n=%" PRIu64 "\n", p->sent);
			fflush(stdout);
		}
	}
}

static int publish(void)
{
	struct publisher p = {0};

	if (kind == K_COHORT) {
		const char *tok = getenv("COHORT_TOKEN");
		struct cohort_options o = {.bus = address, .token = tok ? tok : "", .session = "bench-publisher"};
		p.c = cohort_new(&o);
		if (cohort_connect(p.c) < 0)
			die("cohort_connect %s: %s", address, cohort_error(p.c));
	}
#ifdef HAVE_MOSQUITTO
	if (kind == K_MOSQ) {
		p.m = mosquitto_new("bench-publisher", false, &p);
		if (!p.m)
			die("mosquitto_new: %s", strerror(errno));
		mosquitto_int_option(p.m, MOSQ_OPT_TCP_NODELAY, 1);
		mosquitto_max_inflight_messages_set(p.m, 1000);
		mosquitto_connect_callback_set(p.m, pub_on_connect);
		p.backoff_ms = BACKOFF_FIRST_MS;
		pub_mq_attempt(&p, true);
		for (int64_t end = now_ns() + 10000000000LL; !p.mq_up; mosquitto_loop(p.m, 100, 1))
			if (now_ns() > end)
				die("mosquitto: no CONNACK from %s", address);
	}
#endif
	printf("ready n=1\n");
	fflush(stdout);
	while (!atomic_load(&stopping))
		pub_pass(&p);
	if (kind == K_COHORT)
		cohort_free(p.c);
#ifdef HAVE_MOSQUITTO
	if (kind == K_MOSQ) {
		mosquitto_disconnect(p.m);
		mosquitto_destroy(p.m);
	}
#endif
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 6)
		die("usage: bench_scale_bus swarm KIND ADDRESS N THREADS TOPIC QOS EXPECT [SESSION_PREFIX]\n"
		    "       bench_scale_bus publish KIND ADDRESS TOPIC QOS");
	if (strcmp(argv[2], "cohort") == 0)
		kind = K_COHORT;
	else if (strcmp(argv[2], "mosquitto") == 0)
		kind = K_MOSQ;
	else
		die("unknown kind %s (cohort or mosquitto)", argv[2]);
#ifndef HAVE_MOSQUITTO
	if (kind == K_MOSQ)
		die("built without libmosquitto");
#else
	mosquitto_lib_init();
#endif
	address = argv[3];
	srandom((unsigned)(now_ns() ^ getpid()));
	if (strcmp(argv[1], "publish") == 0) {
		topic = argv[4];
		qos = atoi(argv[5]);
		return publish();
	}
	if (strcmp(argv[1], "swarm") != 0 || argc < 9)
		die("unknown mode %s (swarm or publish)", argv[1]);
	topic = argv[6];
	qos = atoi(argv[7]);
	expect = atoll(argv[8]);
	if (expect < 0 || expect > MAX_INDEX)
		die("EXPECT is 0 to %d", MAX_INDEX);
	session_prefix = argc > 9 ? argv[9] : NULL;
	return swarm(atoi(argv[4]), atoi(argv[5]));
}
