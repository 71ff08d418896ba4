/*
 * bench_bus.c - message bus benchmarks: cohortd's bus through libcohort,
 * beside mosquitto through libmosquitto and redis pub/sub (RESP spoken
 * here), with the same client pattern, one kind per run.
 *
 *   bench_bus cohort    unix:PATH | ws://HOST:PORT/   MODE ...   ($COHORT_TOKEN on TCP)
 *   bench_bus mosquitto HOST:PORT | unix:PATH         MODE ...
 *   bench_bus redis     HOST:PORT | unix:PATH         MODE ...
 *
 *   MODE = latency QOS [RATE [COUNT]]     default 1000 msg/s, 5000 messages
 *        | throughput QOS SUBSCRIBERS COUNT
 *
 *   $BENCH_SUB_ADDRESS (cohort): the subscribers' address, when not the
 *   publisher's (another cohortd of a cluster).
 *
 * Every payload is the same 100 bytes of text, a JSON string (cohortd's
 * data must be JSON): "t=<CLOCK_MONOTONIC ns> i=<index> <padding to 100 bytes>".  The
 * subscribers (a thread of their own, one poll() over every connection)
 * take now - t for the latency and count each index once.
 *
 * latency: one publisher paces COUNT messages at RATE msg/s on average,
 * gaps drawn evenly from 0.5 to 1.5 periods (after 500
 * warm-up messages that are not counted) to one subscriber; one-way
 * latency p50 / p99 / p99.9.  qos 1: cohort publishes with
 * cohort_publish_nowait (not paced by the oks) and subscribes with qos 1
 * (each delivery acked); mosquitto publishes and subscribes with QoS 1.
 * Redis has no qos 1: it says so.
 *
 * throughput: one publisher sends COUNT messages as fast as its client
 * lets it: it never queues more than the socket takes (it waits for the
 * socket while the client has bytes it could not write), and for qos 1
 * (and for redis, whose every PUBLISH has a reply) keeps at most 1000
 * unacknowledged.  The figure is deliveries per second at the
 * subscribers, from the first publish to the last delivery; what never
 * arrived is reported as lost.
 *
 * One line per measurement, key=value, for bench_bus.py.
 */
#include "autoconfig.h"

#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cohort.h"
#ifdef HAVE_MOSQUITTO
#include <mosquitto.h>
#endif

#define PAYLOAD_LEN 100
#define WINDOW 1000		/* unacknowledged publishes, at most */
#define WARMUP 500		/* latency: messages before the measured ones */
#define LAT_TOPIC_COHORT "bench.lat"
#define LAT_TOPIC_MQTT "bench/lat"
#define TP_TOPIC_COHORT "bench.tp"
#define TP_TOPIC_MQTT "bench/tp"

enum kind { K_COHORT, K_MOSQ, K_REDIS };

static enum kind kind;
static const char *kind_name;
static const char *address;

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

	fprintf(stderr, "bench_bus %s: ", kind_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* ppoll with a timeout in ns (negative: 0). */
static int wait_fds(struct pollfd *p, nfds_t n, int64_t timeout_ns)
{
	if (timeout_ns < 0)
		timeout_ns = 0;
	struct timespec ts = {(time_t)(timeout_ns / 1000000000), (long)(timeout_ns % 1000000000)};
	int r = ppoll(p, n, &ts, NULL);
	if (r < 0 && errno != EINTR)
		die("poll: %s", strerror(errno));
	return r;
}

/* The 100-byte payload: a JSON string holding the send time and index. */
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
	return true;
}

/* --- sockets (redis) ------------------------------------------------------------------ */

/* "unix:PATH" or "HOST:PORT"; blocking connect, then non-blocking. */
static int sock_connect(const char *addr)
{
	int fd;

	if (strncmp(addr, "unix:", 5) == 0) {
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		strncpy(sa.sun_path, addr + 5, sizeof(sa.sun_path) - 1);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
			die("connect %s: %s", addr, strerror(errno));
	} else {
		char host[256];
		const char *colon = strrchr(addr, ':');
		if (!colon)
			die("bad address %s (HOST:PORT or unix:PATH)", addr);
		snprintf(host, sizeof(host), "%.*s", (int)(colon - addr), addr);
		struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
		if (getaddrinfo(host, colon + 1, &hints, &res) != 0 || !res)
			die("cannot resolve %s", addr);
		fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) < 0)
			die("connect %s: %s", addr, strerror(errno));
		freeaddrinfo(res);
		int one = 1;	/* as hiredis does */
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	return fd;
}

static void set_nonblock(int fd, bool on)
{
	int one = on;
	ioctl(fd, FIONBIO, &one);
}

struct rconn {
	int fd;
	char *in;
	size_t len, cap, off;
	char *out;		/* bytes the socket did not take yet */
	size_t olen, ocap;
	uint64_t replies;	/* publisher: replies read */
	bool closed;
};

static void rconn_open(struct rconn *r)
{
	memset(r, 0, sizeof(*r));
	r->fd = sock_connect(address);
	r->cap = 1 << 20;
	r->in = malloc(r->cap);
}

/* Reads what is there; false when the connection is gone. */
static bool rconn_read(struct rconn *r)
{
	for (;;) {
		if (r->off && r->off == r->len)
			r->off = r->len = 0;
		if (r->cap - r->len < 65536) {
			if (r->off) {
				memmove(r->in, r->in + r->off, r->len - r->off);
				r->len -= r->off;
				r->off = 0;
			} else {
				r->cap *= 2;
				r->in = realloc(r->in, r->cap);
			}
			continue;
		}
		ssize_t n = recv(r->fd, r->in + r->len, r->cap - r->len, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return true;
		if (n <= 0) {
			r->closed = true;
			return false;
		}
		r->len += (size_t)n;
		if ((size_t)n < 65536)
			return true;
	}
}

static void rconn_flush(struct rconn *r)
{
	size_t done = 0;
	while (done < r->olen) {
		ssize_t n = send(r->fd, r->out + done, r->olen - done, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0)
			die("redis: write: %s", strerror(errno));
		done += (size_t)n;
	}
	memmove(r->out, r->out + done, r->olen - done);
	r->olen -= done;
}

static void rconn_send(struct rconn *r, const char *data, size_t n)
{
	if (r->olen + n > r->ocap) {
		r->ocap = (r->olen + n) * 2;
		r->out = realloc(r->out, r->ocap);
	}
	memcpy(r->out + r->olen, data, n);
	r->olen += n;
	rconn_flush(r);
}

static void resp_cmd(struct rconn *r, int argc, const char **argv, const size_t *lens)
{
	char msg[1024];
	int n = snprintf(msg, sizeof(msg), "*%d\r\n", argc);
	for (int i = 0; i < argc; i++) {
		n += snprintf(msg + n, sizeof(msg) - (size_t)n, "$%zu\r\n", lens[i]);
		memcpy(msg + n, argv[i], lens[i]);
		n += (int)lens[i];
		memcpy(msg + n, "\r\n", 2);
		n += 2;
	}
	rconn_send(r, msg, (size_t)n);
}

/* One line ending in \r\n at p (within end): its length, or -1 if incomplete. */
static long resp_line(const char *p, const char *end)
{
	const char *nl = memchr(p, '\n', (size_t)(end - p));
	return nl ? (long)(nl - p + 1) : -1;
}

/*
 * Parses one reply at r->in + r->off.  1: complete (taken); 0: incomplete.
 * For an array of bulk strings ("message", channel, payload), *payload
 * points at the third element; for anything else *payload is NULL.
 */
static int resp_next(struct rconn *r, const char **payload, size_t *plen)
{
	const char *p = r->in + r->off, *end = r->in + r->len;
	long l = resp_line(p, end);

	*payload = NULL;
	if (l < 0)
		return 0;
	if (p[0] != '*') {	/* a simple reply: +OK, :N, -ERR */
		if (p[0] == '-')
			die("redis error: %.*s", (int)(l - 2), p);
		r->off += (size_t)l;
		return 1;
	}
	long n = strtol(p + 1, NULL, 10);
	const char *q = p + l, *third = NULL;
	size_t third_len = 0;
	for (long k = 0; k < n; k++) {
		long el = resp_line(q, end);
		if (el < 0)
			return 0;
		if (q[0] == '$') {
			long bl = strtol(q + 1, NULL, 10);
			if (end - (q + el) < bl + 2)
				return 0;
			if (k == 2) {
				third = q + el;
				third_len = (size_t)bl;
			}
			q += el + bl + 2;
		} else {
			q += el;	/* :N */
		}
	}
	if (n == 3 && r->in[r->off + l] == '$' && strncmp(p + l, "$7\r\nmessage\r\n", 13) == 0) {
		*payload = third;
		*plen = third_len;
	}
	r->off = (size_t)(q - r->in);
	return 1;
}

/* --- subscribers ------------------------------------------------------------------------ */

struct subset;

struct sub {
	struct subset *set;
	int no;
	cohort_t *c;
#ifdef HAVE_MOSQUITTO
	struct mosquitto *m;
#endif
	struct rconn r;
	int connected, subscribed;	/* mosquitto: set by callbacks */
	uint8_t *seen;		/* a bit per index */
	uint64_t received, dups, bad;
};

struct subset {
	int n;
	struct sub *subs;
	int qos;
	int64_t count;		/* measured indexes 0..count-1 */
	bool latency;
	int64_t *lat;
	size_t nlat;
	int64_t *by_index;	/* each message's latency, -1 if it never came */
	uint64_t total, dups;
	int64_t first_rx, last_rx;
	int64_t idle_ns;	/* after the publisher is done: silence that ends it */
	atomic_int pub_done;
	atomic_llong pub_end;
	int64_t hard_end;
	pthread_t th;
};

static void got_message(struct sub *s, const char *data, size_t len)
{
	struct subset *set = s->set;
	int64_t now = now_ns(), t, i;

	if (!parse_payload(data, len, &t, &i)) {
		s->bad++;
		return;
	}
	if (i < 0)
		return;		/* warm-up */
	if (i >= set->count) {
		s->bad++;
		return;
	}
	if (s->seen[i / 8] & (1u << (i % 8))) {
		s->dups++;
		set->dups++;
		return;
	}
	s->seen[i / 8] |= (uint8_t)(1u << (i % 8));
	s->received++;
	set->total++;
	if (!set->first_rx)
		set->first_rx = now;
	set->last_rx = now;
	if (set->latency && set->nlat < (size_t)set->count)
		set->lat[set->nlat++] = set->by_index[i] = now - t;
}

static void cohort_on_msg(cohort_t *c, const struct cohort_msg *m, void *arg)
{
	(void)c;
	got_message(arg, m->data, m->data_len);
}

#ifdef HAVE_MOSQUITTO
static void mq_on_connect(struct mosquitto *m, void *arg, int rc)
{
	int *connected = arg;
	(void)m;
	*connected = rc == 0 ? 1 : -1;
}

static void mq_sub_on_connect(struct mosquitto *m, void *arg, int rc)
{
	struct sub *s = arg;
	mq_on_connect(m, &s->connected, rc);
}

static void mq_on_subscribe(struct mosquitto *m, void *arg, int mid, int n, const int *granted)
{
	struct sub *s = arg;
	(void)m;
	(void)mid;
	s->subscribed = n > 0 && granted[0] <= 2 ? 1 : -1;
}

static void mq_on_message(struct mosquitto *m, void *arg, const struct mosquitto_message *msg)
{
	(void)m;
	got_message(arg, msg->payload, (size_t)msg->payloadlen);
}

static struct mosquitto *mq_new(void *arg, bool publisher)
{
	struct mosquitto *m = mosquitto_new(NULL, true, arg);
	if (!m)
		die("mosquitto_new: %s", strerror(errno));
	/* Latency over TCP: no Nagle (libcohort's frames are written at once
	 * too; the broker's listener has set_tcp_nodelay). */
	mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
	if (publisher)	/* the same window as the others (v3.1.1: this call) */
		mosquitto_max_inflight_messages_set(m, WINDOW);
	return m;
}

static void mq_connect(struct mosquitto *m, int *connected)
{
	char host[256];
	int port = 0;

	if (strncmp(address, "unix:", 5) == 0) {
		snprintf(host, sizeof(host), "%s", address + 5);
	} else {
		const char *colon = strrchr(address, ':');
		if (!colon)
			die("bad address %s (HOST:PORT or unix:PATH)", address);
		snprintf(host, sizeof(host), "%.*s", (int)(colon - address), address);
		port = atoi(colon + 1);
	}
	int rc = mosquitto_connect(m, host, port, 60);
	if (rc != MOSQ_ERR_SUCCESS)
		die("mosquitto_connect %s: %s", address,
		    rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
	int64_t end = now_ns() + 5000000000LL;
	while (*connected == 0 && now_ns() < end)
		mosquitto_loop(m, 100, 1);
	if (*connected != 1)
		die("mosquitto: no CONNACK from %s", address);
}

/* Reads every whole packet the socket holds (libmosquitto reads exactly
 * what a packet needs, so what the kernel still has is what is left). */
static void mq_read(struct mosquitto *m)
{
	int fd = mosquitto_socket(m);
	for (int k = 0; k < 100000; k++) {
		int rc = mosquitto_loop_read(m, 1);
		if (rc != MOSQ_ERR_SUCCESS)
			die("mosquitto: read: %s", mosquitto_strerror(rc));
		int avail = 0;
		if (ioctl(fd, FIONREAD, &avail) < 0 || avail <= 0)
			break;
	}
}
#endif

static void sub_open(struct subset *set, struct sub *s, const char *topic_c, const char *topic_m)
{
	(void)topic_m;
	s->set = set;
	s->seen = calloc((size_t)set->count / 8 + 1, 1);
	switch (kind) {
	case K_COHORT: {
		const char *tok = getenv("COHORT_TOKEN");
		/* $BENCH_SUB_ADDRESS: the subscribers on another cohortd of a
		 * cluster (bench_cluster.py: published on a, delivered on b). */
		const char *at = getenv("BENCH_SUB_ADDRESS") ? getenv("BENCH_SUB_ADDRESS") : address;
		struct cohort_options o = {.bus = at, .token = tok ? tok : ""};
		s->c = cohort_new(&o);
		if (cohort_connect(s->c) < 0)
			die("cohort_connect %s: %s", at, cohort_error(s->c));
		if (cohort_subscribe(s->c, topic_c, set->qos, cohort_on_msg, s) < 0)
			die("cohort_subscribe %s: %s", topic_c, cohort_error(s->c));
		break;
	}
	case K_MOSQ:
#ifdef HAVE_MOSQUITTO
		s->m = mq_new(s, false);
		mosquitto_connect_callback_set(s->m, mq_sub_on_connect);
		mosquitto_subscribe_callback_set(s->m, mq_on_subscribe);
		mosquitto_message_callback_set(s->m, mq_on_message);
		mq_connect(s->m, &s->connected);
		if (mosquitto_subscribe(s->m, NULL, topic_m, set->qos) != MOSQ_ERR_SUCCESS)
			die("mosquitto_subscribe %s", topic_m);
		for (int64_t end = now_ns() + 5000000000LL; !s->subscribed && now_ns() < end;)
			mosquitto_loop(s->m, 100, 1);
		if (s->subscribed != 1)
			die("mosquitto: no SUBACK for %s", topic_m);
#endif
		break;
	case K_REDIS: {
		const char *argv[] = {"SUBSCRIBE", topic_c};
		size_t lens[] = {9, strlen(topic_c)};
		rconn_open(&s->r);
		set_nonblock(s->r.fd, true);
		resp_cmd(&s->r, 2, argv, lens);
		const char *pl;
		size_t plen;
		struct pollfd p = {s->r.fd, POLLIN, 0};
		for (int64_t end = now_ns() + 5000000000LL;;) {
			if (resp_next(&s->r, &pl, &plen))
				break;	/* the subscribe confirmation */
			if (now_ns() > end || wait_fds(&p, 1, end - now_ns()) < 0 || !rconn_read(&s->r))
				die("redis: no answer to SUBSCRIBE %s", topic_c);
		}
		break;
	}
	}
}

static void sub_close(struct sub *s)
{
	switch (kind) {
	case K_COHORT:
		cohort_free(s->c);
		break;
	case K_MOSQ:
#ifdef HAVE_MOSQUITTO
		mosquitto_disconnect(s->m);
		mosquitto_destroy(s->m);
#endif
		break;
	case K_REDIS:
		close(s->r.fd);
		free(s->r.in);
		free(s->r.out);
		break;
	}
	free(s->seen);
}

/* The pollfd of s: its fd and what it waits for. */
static void sub_pollfd(struct sub *s, struct pollfd *p)
{
	p->revents = 0;
	switch (kind) {
	case K_COHORT:
		p->fd = cohort_fd(s->c);
		p->events = (short)(POLLIN | (cohort_wants_write(s->c) ? POLLOUT : 0));
		break;
	case K_MOSQ:
#ifdef HAVE_MOSQUITTO
		p->fd = mosquitto_socket(s->m);
		p->events = (short)(POLLIN | (mosquitto_want_write(s->m) ? POLLOUT : 0));
#endif
		break;
	case K_REDIS:
		p->fd = s->r.fd;
		p->events = (short)(POLLIN | (s->r.olen ? POLLOUT : 0));
		break;
	}
}

static void sub_service(struct sub *s, short revents)
{
	switch (kind) {
	case K_COHORT:
		if (revents || cohort_fd(s->c) < 0)
			cohort_step(s->c, 0);
		break;
	case K_MOSQ:
#ifdef HAVE_MOSQUITTO
		if (revents & (POLLIN | POLLERR | POLLHUP))
			mq_read(s->m);
		if (mosquitto_want_write(s->m)) {
			int rc = mosquitto_loop_write(s->m, 1);
			if (rc != MOSQ_ERR_SUCCESS)
				die("mosquitto: write: %s", mosquitto_strerror(rc));
		}
#endif
		break;
	case K_REDIS:
		if (revents & POLLOUT)
			rconn_flush(&s->r);
		if (revents & (POLLIN | POLLERR | POLLHUP)) {
			rconn_read(&s->r);	/* closed: r.closed, counted at the end */
			const char *pl;
			size_t plen;
			while (resp_next(&s->r, &pl, &plen))
				if (pl)
					got_message(s, pl, plen);
		}
		break;
	}
}

static void *subset_main(void *arg)
{
	struct subset *set = arg;
	struct pollfd *p = calloc((size_t)set->n, sizeof(*p));
	uint64_t want = (uint64_t)set->count * (uint64_t)set->n;
	int64_t misc_at = now_ns() + 1000000000;

	while (set->total < want) {
		int64_t now = now_ns();
		if (now > set->hard_end)
			break;
		if (atomic_load(&set->pub_done)) {
			int64_t quiet_since = atomic_load(&set->pub_end);
			if (set->last_rx > quiet_since)
				quiet_since = set->last_rx;
			if (now - quiet_since > set->idle_ns)
				break;
		}
		int live = 0;
		for (int i = 0; i < set->n; i++) {
			if (kind == K_REDIS && set->subs[i].r.closed) {
				p[i].fd = -1;
				continue;
			}
			sub_pollfd(&set->subs[i], &p[i]);
			live += p[i].fd >= 0;
		}
		if (!live && kind == K_REDIS)
			break;	/* redis closed every subscriber (output buffer limit) */
		if (wait_fds(p, (nfds_t)set->n, 50000000) < 0)
			continue;
		for (int i = 0; i < set->n; i++)
			if (p[i].revents || p[i].fd < 0)
				sub_service(&set->subs[i], p[i].revents);
#ifdef HAVE_MOSQUITTO
		if (kind == K_MOSQ && now_ns() > misc_at) {
			for (int i = 0; i < set->n; i++)
				mosquitto_loop_misc(set->subs[i].m);
			misc_at = now_ns() + 1000000000;
		}
#else
		(void)misc_at;
#endif
	}
	free(p);
	return NULL;
}

/* --- the publisher ---------------------------------------------------------------------- */

struct pub {
	cohort_t *c;
#ifdef HAVE_MOSQUITTO
	struct mosquitto *m;
#endif
	int connected;
	struct rconn r;
	int qos;
	uint64_t sent, acked;	/* mosquitto: on_publish; redis: replies */
};

#ifdef HAVE_MOSQUITTO
static void mq_pub_on_connect(struct mosquitto *m, void *arg, int rc)
{
	struct pub *p = arg;
	mq_on_connect(m, &p->connected, rc);
}

static void mq_on_publish(struct mosquitto *m, void *arg, int mid)
{
	struct pub *p = arg;
	(void)m;
	(void)mid;
	p->acked++;
}
#endif

static void pub_open(struct pub *p, int qos)
{
	memset(p, 0, sizeof(*p));
	p->qos = qos;
	switch (kind) {
	case K_COHORT: {
		const char *tok = getenv("COHORT_TOKEN");
		struct cohort_options o = {.bus = address, .token = tok ? tok : ""};
		p->c = cohort_new(&o);
		if (cohort_connect(p->c) < 0)
			die("cohort_connect %s: %s", address, cohort_error(p->c));
		break;
	}
	case K_MOSQ:
#ifdef HAVE_MOSQUITTO
		p->m = mq_new(p, true);
		mosquitto_connect_callback_set(p->m, mq_pub_on_connect);
		mosquitto_publish_callback_set(p->m, mq_on_publish);
		mq_connect(p->m, &p->connected);
#endif
		break;
	case K_REDIS:
		rconn_open(&p->r);
		set_nonblock(p->r.fd, true);
		break;
	}
}

static void pub_close(struct pub *p)
{
	switch (kind) {
	case K_COHORT:
		cohort_free(p->c);
		break;
	case K_MOSQ:
#ifdef HAVE_MOSQUITTO
		mosquitto_disconnect(p->m);
		mosquitto_destroy(p->m);
#endif
		break;
	case K_REDIS:
		close(p->r.fd);
		free(p->r.in);
		free(p->r.out);
		break;
	}
}

/* Publishes not yet acknowledged (qos 1; redis: replies not yet read). */
static uint64_t pub_outstanding(struct pub *p)
{
	switch (kind) {
	case K_COHORT:
		return cohort_unacked(p->c);
	case K_MOSQ:
		return p->qos ? p->sent - p->acked : 0;
	case K_REDIS:
		return p->sent - p->r.replies;
	}
	return 0;
}

/* The client holds bytes the socket did not take. */
static bool pub_wants_write(struct pub *p)
{
	switch (kind) {
	case K_COHORT:
		return cohort_wants_write(p->c);
	case K_MOSQ:
#ifdef HAVE_MOSQUITTO
		return mosquitto_want_write(p->m);
#endif
		break;
	case K_REDIS:
		return p->r.olen > 0;
	}
	return false;
}

static int pub_fd(struct pub *p)
{
	switch (kind) {
	case K_COHORT:
		return cohort_fd(p->c);
	case K_MOSQ:
#ifdef HAVE_MOSQUITTO
		return mosquitto_socket(p->m);
#endif
		break;
	case K_REDIS:
		return p->r.fd;
	}
	return -1;
}

/* Waits up to timeout_ns for the socket, then does the I/O that is ready. */
static void pub_service(struct pub *p, int64_t timeout_ns)
{
	struct pollfd pf = {pub_fd(p), (short)(POLLIN | (pub_wants_write(p) ? POLLOUT : 0)), 0};

	if (pf.fd < 0) {	/* cohort: reconnecting */
		cohort_step(p->c, (int)(timeout_ns / 1000000));
		return;
	}
	if (wait_fds(&pf, 1, timeout_ns) <= 0)
		return;
	switch (kind) {
	case K_COHORT:
		cohort_step(p->c, 0);
		break;
	case K_MOSQ:
#ifdef HAVE_MOSQUITTO
		if (pf.revents & (POLLIN | POLLERR | POLLHUP))
			mq_read(p->m);
		if (mosquitto_want_write(p->m)) {
			int rc = mosquitto_loop_write(p->m, 1);
			if (rc != MOSQ_ERR_SUCCESS)
				die("mosquitto: write: %s", mosquitto_strerror(rc));
		}
#endif
		break;
	case K_REDIS:
		if (pf.revents & POLLOUT)
			rconn_flush(&p->r);
		if (pf.revents & (POLLIN | POLLERR | POLLHUP)) {
			if (!rconn_read(&p->r))
				die("redis: the publisher's connection closed");
			const char *pl;
			size_t plen;
			while (resp_next(&p->r, &pl, &plen))
				p->r.replies++;
		}
		break;
	}
}

static void pub_send(struct pub *p, const char *topic_c, const char *topic_m, const char *payload)
{
	switch (kind) {
	case K_COHORT:
		if (cohort_publish_nowait(p->c, topic_c, payload, p->qos, false) < 0)
			die("cohort_publish_nowait: %s", cohort_error(p->c));
		break;
	case K_MOSQ:
#ifdef HAVE_MOSQUITTO
	{
		int rc = mosquitto_publish(p->m, NULL, topic_m, PAYLOAD_LEN, payload, p->qos, false);
		if (rc != MOSQ_ERR_SUCCESS)
			die("mosquitto_publish: %s", mosquitto_strerror(rc));
	}
#endif
		break;
	case K_REDIS: {
		const char *argv[] = {"PUBLISH", topic_c, payload};
		size_t lens[] = {7, strlen(topic_c), PAYLOAD_LEN};
		resp_cmd(&p->r, 3, argv, lens);
		break;
	}
	}
	(void)topic_m;
	p->sent++;
}

/* Until every publish is acknowledged and written (or 30 s). */
static void pub_finish(struct pub *p)
{
	int64_t end = now_ns() + 30000000000LL;
	while ((pub_outstanding(p) || pub_wants_write(p)) && now_ns() < end)
		pub_service(p, 10000000);
}

/* --- the measurements --------------------------------------------------------------------- */

static int cmp64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

static void subset_start(struct subset *set, int n, int qos, int64_t count, bool latency,
			 const char *topic_c, const char *topic_m)
{
	memset(set, 0, sizeof(*set));
	set->n = n;
	set->qos = qos;
	set->count = count;
	set->latency = latency;
	set->idle_ns = qos ? 5000000000LL : 1500000000LL;
	if (latency) {
		set->lat = malloc((size_t)count * sizeof(int64_t));
		set->by_index = malloc((size_t)count * sizeof(int64_t));
		for (int64_t i = 0; i < count; i++)
			set->by_index[i] = -1;
	}
	set->subs = calloc((size_t)n, sizeof(*set->subs));
	for (int i = 0; i < n; i++) {
		set->subs[i].no = i;
		sub_open(set, &set->subs[i], topic_c, topic_m);
	}
	atomic_store(&set->pub_done, 0);
	set->hard_end = now_ns() + 120000000000LL;
	pthread_create(&set->th, NULL, subset_main, set);
}

static void subset_stop(struct subset *set, int64_t pub_end)
{
	atomic_store(&set->pub_end, pub_end);
	atomic_store(&set->pub_done, 1);
	pthread_join(set->th, NULL);
}

static unsigned subset_reconnects(struct subset *set)
{
	unsigned n = 0;
	if (kind == K_COHORT)
		for (int i = 0; i < set->n; i++)
			n += cohort_reconnects(set->subs[i].c);
	return n;
}

static unsigned redis_closed(struct subset *set)
{
	unsigned n = 0;
	if (kind == K_REDIS)
		for (int i = 0; i < set->n; i++)
			n += set->subs[i].r.closed;
	return n;
}

static void subset_free(struct subset *set)
{
	for (int i = 0; i < set->n; i++)
		sub_close(&set->subs[i]);
	free(set->subs);
	free(set->lat);
	free(set->by_index);
}

/* $BENCH_SAMPLES names a file that gets each message's latency in ns, one
 * a line in the order they were sent, -1 for one that never came:
 * bench_bus.py pools the rounds and pairs the servers' messages by their
 * send time. */
static void write_samples(const int64_t *lat, size_t n)
{
	const char *path = getenv("BENCH_SAMPLES");
	FILE *f;

	if (!path || !*path)
		return;
	if (!(f = fopen(path, "w"))) {
		fprintf(stderr, "bench_bus: %s: %s\n", path, strerror(errno));
		exit(1);
	}
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%" PRId64 "\n", lat[i]);
	if (fclose(f) != 0) {
		fprintf(stderr, "bench_bus: %s: %s\n", path, strerror(errno));
		exit(1);
	}
}

static void latency(int qos, int rate, int64_t count)
{
	struct subset set;
	struct pub p;
	char payload[PAYLOAD_LEN + 1];
	int64_t period = 1000000000LL / rate;

	subset_start(&set, 1, qos, count, true, LAT_TOPIC_COHORT, LAT_TOPIC_MQTT);
	pub_open(&p, qos);
	int64_t next = now_ns();
	unsigned seed = (unsigned)getpid() ^ (unsigned)next;
	for (int64_t i = -WARMUP; i < count; i++) {
		/* Paced on an absolute schedule; meanwhile, read (oks, acks). */
		for (int64_t now = now_ns(); now < next; now = now_ns())
			pub_service(&p, next - now);
		/* Gaps of 0.5 to 1.5 periods (the same rate): runs against
		 * several servers at once must not fall into step, one server's
		 * messages always arriving with another's. */
		next += period / 2 + (int64_t)((double)period * rand_r(&seed) / ((double)RAND_MAX + 1));
		int64_t t = now_ns();
		make_payload(payload, t, i < 0 ? -1 : i);
		pub_send(&p, LAT_TOPIC_COHORT, LAT_TOPIC_MQTT, payload);
	}
	pub_finish(&p);
	subset_stop(&set, now_ns());
	qsort(set.lat, set.nlat, sizeof(int64_t), cmp64);
	size_t n = set.nlat;
#define PCT(q) (n ? (double)set.lat[(size_t)((double)(n - 1) * (q))] / 1e3 : -1.0)
	printf("latency kind=%s qos=%d rate=%d sent=%" PRId64 " received=%zu lost=%" PRId64
	       " dups=%" PRIu64 " p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f unacked=%" PRIu64
	       " reconnects=%u\n",
	       kind_name, qos, rate, count, n, count - (int64_t)n, set.dups, PCT(0.50), PCT(0.99),
	       PCT(0.999), PCT(1.0), pub_outstanding(&p), subset_reconnects(&set));
	fflush(stdout);
	write_samples(set.by_index, (size_t)count);
	pub_close(&p);
	subset_free(&set);
}

static void throughput(int qos, int nsubs, int64_t count)
{
	struct subset set;
	struct pub p;
	char payload[PAYLOAD_LEN + 1];

	subset_start(&set, nsubs, qos, count, false, TP_TOPIC_COHORT, TP_TOPIC_MQTT);
	pub_open(&p, qos);
	/* Warm the path up (not counted), and let it drain. */
	for (int i = 0; i < 200; i++) {
		make_payload(payload, now_ns(), -1);
		pub_send(&p, TP_TOPIC_COHORT, TP_TOPIC_MQTT, payload);
		while (pub_wants_write(&p) || pub_outstanding(&p) >= WINDOW)
			pub_service(&p, 10000000);
	}
	pub_finish(&p);
	{
		struct timespec ts = {0, 200000000};
		nanosleep(&ts, NULL);
	}
	uint64_t window = qos || kind == K_REDIS ? WINDOW : UINT64_MAX;
	int64_t t0 = now_ns();
	for (int64_t i = 0; i < count; i++) {
		while (pub_wants_write(&p) || pub_outstanding(&p) >= window)
			pub_service(&p, 10000000);
		make_payload(payload, now_ns(), i);
		pub_send(&p, TP_TOPIC_COHORT, TP_TOPIC_MQTT, payload);
	}
	int64_t t_sent = now_ns();
	pub_finish(&p);
	int64_t t_acked = now_ns();
	subset_stop(&set, t_acked);
	uint64_t want = (uint64_t)count * (uint64_t)nsubs;
	double secs = set.total ? (double)(set.last_rx - t0) / 1e9 : 0;
	printf("throughput kind=%s qos=%d subs=%d sent=%" PRId64 " expected=%" PRIu64 " delivered=%" PRIu64
	       " lost=%" PRIu64 " dups=%" PRIu64 " seconds=%.3f msgs_per_s=%.0f publish_s=%.3f acked_s=%.3f"
	       " unacked=%" PRIu64 " reconnects=%u closed=%u\n",
	       kind_name, qos, nsubs, count, want, set.total, want - set.total, set.dups, secs,
	       secs > 0 ? (double)set.total / secs : 0.0, (double)(t_sent - t0) / 1e9,
	       (double)(t_acked - t0) / 1e9, pub_outstanding(&p), subset_reconnects(&set),
	       redis_closed(&set));
	fflush(stdout);
	pub_close(&p);
	subset_free(&set);
}

static void usage(void)
{
	fprintf(stderr, "usage: bench_bus cohort|mosquitto|redis ADDRESS latency QOS [RATE [COUNT]]\n"
		"       bench_bus cohort|mosquitto|redis ADDRESS throughput QOS SUBSCRIBERS COUNT\n"
		"  ADDRESS: cohort unix:PATH or ws://HOST:PORT/ ($COHORT_TOKEN on TCP);\n"
		"           mosquitto, redis HOST:PORT or unix:PATH\n");
	exit(2);
}

int main(int argc, char **argv)
{
	if (argc < 5)
		usage();
	kind_name = argv[1];
	if (strcmp(kind_name, "cohort") == 0)
		kind = K_COHORT;
	else if (strcmp(kind_name, "mosquitto") == 0)
		kind = K_MOSQ;
	else if (strcmp(kind_name, "redis") == 0)
		kind = K_REDIS;
	else
		usage();
	address = argv[2];
	const char *mode = argv[3];
	int qos = atoi(argv[4]);
	if (qos != 0 && qos != 1)
		usage();
#ifndef HAVE_MOSQUITTO
	if (kind == K_MOSQ) {
		printf("unsupported kind=mosquitto qos=%d mode=%s reason=built_without_libmosquitto\n", qos, mode);
		return 0;
	}
#else
	if (kind == K_MOSQ)
		mosquitto_lib_init();
#endif
	if (kind == K_REDIS && qos == 1) {
		printf("unsupported kind=redis qos=1 mode=%s reason=redis_pubsub_has_no_qos1"
		       "_(at_most_once_only)\n", mode);
		return 0;
	}
	if (strcmp(mode, "latency") == 0) {
		int rate = argc > 5 ? atoi(argv[5]) : 1000;
		int64_t count = argc > 6 ? atoll(argv[6]) : 5000;
		if (rate <= 0 || count <= 0)
			usage();
		latency(qos, rate, count);
	} else if (strcmp(mode, "throughput") == 0) {
		if (argc < 7)
			usage();
		int nsubs = atoi(argv[5]);
		int64_t count = atoll(argv[6]);
		if (nsubs <= 0 || count <= 0)
			usage();
		throughput(qos, nsubs, count);
	} else {
		usage();
	}
#ifdef HAVE_MOSQUITTO
	if (kind == K_MOSQ)
		mosquitto_lib_cleanup();
#endif
	return 0;
}
