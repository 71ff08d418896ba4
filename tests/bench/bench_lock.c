/*
 * bench_lock.c - lock grant benchmarks, cohortd beside redis-server with
 * the same client pattern, in the same run.
 *
 *   bench_lock cohort SOCKET   (cohortd's control socket)
 *   bench_lock redis SOCKET    (redis-server --unixsocket)
 *
 * Uncontended: each client thread takes and releases its own lock in a
 * loop (cohortd: lock.acquire + lock.release; redis: SET name token NX PX
 * + a compare-and-delete script), over its own connection; the figure is
 * the round trip of one acquire+release pair (p50/p99) and pairs per
 * second, for 1 and 16 clients.
 * Environment (bench_cluster.py): BENCH_WAITER_SOCKET puts B on another
 * cohortd, BENCH_HANDOVER_PAUSE_US and BENCH_HANDOVER_ROUNDS change the
 * hand-over's 300 us and 2000 rounds.
 *
 * Contended hand-over: B is waiting for the lock A holds; the latency is
 * from A sending its release to B holding the lock.  cohortd queues B and
 * grants on release; redis has no queue, so B retries SET NX as fast as it
 * can (the usual redis pattern, at the cost of a spinning client).
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static const char *sock_path;
static const char *waiter_path;	/* the hand-over's B: BENCH_WAITER_SOCKET, else sock_path */
static long pause_us = 300;	/* A holds this long before it releases (BENCH_HANDOVER_PAUSE_US) */
static bool redis;
static double seconds = 2.0;
static char release_sha[64];

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

struct conn {
	int fd;
	char buf[65536];
	size_t len;
};

static void conn_open_at(struct conn *c, const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};

	strncpy(sa.sun_path, path, sizeof(sa.sun_path) - 1);
	c->fd = socket(AF_UNIX, SOCK_STREAM, 0);
	c->len = 0;
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "connect %s: %s\n", path, strerror(errno));
		exit(1);
	}
}

static void conn_open(struct conn *c)
{
	conn_open_at(c, sock_path);
}

static void conn_send(struct conn *c, const char *data, size_t n)
{
	while (n) {
		ssize_t w = write(c->fd, data, n);
		if (w <= 0) {
			perror("write");
			exit(1);
		}
		data += w;
		n -= (size_t)w;
	}
}

/* One line (without \r\n) into out. */
static void conn_line(struct conn *c, char *out, size_t outlen)
{
	for (;;) {
		char *nl = memchr(c->buf, '\n', c->len);
		if (nl) {
			size_t n = (size_t)(nl - c->buf);
			size_t k = n && c->buf[n - 1] == '\r' ? n - 1 : n;
			if (k >= outlen)
				k = outlen - 1;
			memcpy(out, c->buf, k);
			out[k] = '\0';
			memmove(c->buf, nl + 1, c->len - n - 1);
			c->len -= n + 1;
			return;
		}
		ssize_t r = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
		if (r <= 0) {
			fprintf(stderr, "connection closed\n");
			exit(1);
		}
		c->len += (size_t)r;
	}
}

/* --- redis ------------------------------------------------------------------ */

static void resp_cmd(struct conn *c, int argc, const char **argv)
{
	char msg[1024];
	int n = snprintf(msg, sizeof(msg), "*%d\r\n", argc);
	for (int i = 0; i < argc; i++)
		n += snprintf(msg + n, sizeof(msg) - (size_t)n, "$%zu\r\n%s\r\n", strlen(argv[i]), argv[i]);
	conn_send(c, msg, (size_t)n);
}

/* Reads one simple reply line; bulk replies: returns the payload line. */
static void resp_reply(struct conn *c, char *out, size_t len)
{
	conn_line(c, out, len);
	if (out[0] == '$' && strcmp(out, "$-1") != 0)
		conn_line(c, out, len);
}

static bool redis_acquire(struct conn *c, const char *name, const char *token)
{
	const char *argv[] = {"SET", name, token, "NX", "PX", "30000"};
	char r[256];
	resp_cmd(c, 6, argv);
	resp_reply(c, r, sizeof(r));
	return strcmp(r, "+OK") == 0;
}

static void redis_release(struct conn *c, const char *name, const char *token)
{
	const char *argv[] = {"EVALSHA", release_sha, "1", name, token};
	char r[256];
	resp_cmd(c, 5, argv);
	resp_reply(c, r, sizeof(r));
	if (strcmp(r, ":1") != 0) {
		fprintf(stderr, "redis release failed: %s\n", r);
		exit(1);
	}
}

/* --- cohortd ------------------------------------------------------------------ */

/*
 * The answers are read the way the redis answers are, by what they start
 * with ("+OK", ":1"), not by a JSON parser: a parse per answer would cost
 * this client more than the server spends, and the 16 clients share the
 * machine's two cores with the server.  Anything else is parsed, to say
 * what went wrong.
 */
static const char grant_prefix[] = "{\"ok\":true,\"token\":";

static void cohort_call(struct conn *c, const char *req, char *line, size_t len)
{
	conn_send(c, req, strlen(req));
	conn_line(c, line, len);
}

static const char *cohort_error(const char *line)
{
	static char msg[256];
	json_t *r = json_loads(line, 0, NULL);
	const char *e = r ? json_string_value(json_object_get(r, "error")) : NULL;

	snprintf(msg, sizeof(msg), "%s", e ? e : line);
	json_decref(r);
	return msg;
}

static uint64_t cohort_acquire(struct conn *c, const char *name, int64_t wait_ms)
{
	char req[512], line[4096];
	snprintf(req, sizeof(req), "{\"cmd\":\"lock.acquire\",\"name\":\"%s\",\"ttl_ms\":30000,"
		 "\"wait_ms\":%" PRId64 "}\n", name, wait_ms);
	cohort_call(c, req, line, sizeof(line));
	uint64_t token = strncmp(line, grant_prefix, sizeof(grant_prefix) - 1) == 0
		? strtoull(line + sizeof(grant_prefix) - 1, NULL, 10) : 0;
	if (!token)
		fprintf(stderr, "acquire %s (wait %" PRId64 " ms): %s\n", name, wait_ms, cohort_error(line));
	return token;
}

static void cohort_release(struct conn *c, const char *name, uint64_t token)
{
	char req[512], line[4096];
	snprintf(req, sizeof(req), "{\"cmd\":\"lock.release\",\"name\":\"%s\",\"token\":%" PRIu64 "}\n",
		 name, token);
	cohort_call(c, req, line, sizeof(line));
	if (strcmp(line, "{\"ok\":true}") != 0) {
		fprintf(stderr, "release of %s token %" PRIu64 " failed: %s\n", name, token, cohort_error(line));
		exit(1);
	}
}

/* --- uncontended -------------------------------------------------------------- */

struct worker {
	pthread_t th;
	int id;
	int64_t *lat;
	size_t n, cap;
	int64_t end_ns;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct conn c;
	char name[64], token[64];

	conn_open(&c);
	snprintf(name, sizeof(name), "bench.client%d", w->id);
	while (now_ns() < w->end_ns) {
		int64_t t0 = now_ns();
		if (redis) {
			snprintf(token, sizeof(token), "%d-%zu", w->id, w->n);
			if (!redis_acquire(&c, name, token)) {
				fprintf(stderr, "uncontended SET NX failed\n");
				exit(1);
			}
			redis_release(&c, name, token);
		} else {
			uint64_t t = cohort_acquire(&c, name, 0);
			if (!t) {
				fprintf(stderr, "uncontended acquire failed\n");
				exit(1);
			}
			cohort_release(&c, name, t);
		}
		if (w->n == w->cap) {
			w->cap = w->cap ? w->cap * 2 : 65536;
			w->lat = realloc(w->lat, w->cap * sizeof(int64_t));
		}
		w->lat[w->n++] = now_ns() - t0;
	}
	close(c.fd);
	return NULL;
}

static int cmp64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

static void uncontended(int nclients)
{
	struct worker *ws = calloc((size_t)nclients, sizeof(*ws));
	int64_t start = now_ns(), end = start + (int64_t)(seconds * 1e9);
	size_t total = 0;

	for (int i = 0; i < nclients; i++) {
		ws[i].id = i;
		ws[i].end_ns = end;
		pthread_create(&ws[i].th, NULL, worker_main, &ws[i]);
	}
	for (int i = 0; i < nclients; i++) {
		pthread_join(ws[i].th, NULL);
		total += ws[i].n;
	}
	double elapsed = (double)(now_ns() - start) / 1e9;
	int64_t *all = malloc(total * sizeof(int64_t));
	size_t k = 0;
	for (int i = 0; i < nclients; i++) {
		memcpy(all + k, ws[i].lat, ws[i].n * sizeof(int64_t));
		k += ws[i].n;
		free(ws[i].lat);
	}
	qsort(all, total, sizeof(int64_t), cmp64);
	printf("uncontended %2d client%s: acquire+release p50 %7.1f us  p99 %7.1f us  %9.0f pairs/s"
	       "  (p90 %.1f p99.9 %.1f us)\n",
	       nclients, nclients == 1 ? " " : "s", (double)all[total / 2] / 1e3,
	       (double)all[(size_t)((double)total * 0.99)] / 1e3, (double)total / elapsed,
	       (double)all[(size_t)((double)total * 0.9)] / 1e3,
	       (double)all[(size_t)((double)total * 0.999)] / 1e3);
	free(all);
	free(ws);
}

/* --- contended hand-over ------------------------------------------------------- */

struct handover {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int64_t released_at;	/* set by A right before it sends its release */
	int rounds;
	int64_t *lat;
	int phase;		/* 0: A takes the lock; 1: A holds it, B asks; 2: B had it */
};

static struct handover ho = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, NULL, 0};

static void *waiter_main(void *arg)
{
	struct conn c;
	(void)arg;

	conn_open_at(&c, waiter_path);
	for (int i = 0; i < ho.rounds; i++) {
		pthread_mutex_lock(&ho.mu);
		while (ho.phase != 1)
			pthread_cond_wait(&ho.cv, &ho.mu);
		pthread_mutex_unlock(&ho.mu);
		char token[32];
		snprintf(token, sizeof(token), "b%d", i);
		uint64_t t = 0;
		if (redis) {
			while (!redis_acquire(&c, "bench.handover", token))
				;
		} else {
			t = cohort_acquire(&c, "bench.handover", 10000);
		}
		int64_t got = now_ns();
		ho.lat[i] = got - ho.released_at;
		if (redis)
			redis_release(&c, "bench.handover", token);
		else
			cohort_release(&c, "bench.handover", t);
		pthread_mutex_lock(&ho.mu);
		ho.phase = 2;
		pthread_cond_broadcast(&ho.cv);
		pthread_mutex_unlock(&ho.mu);
	}
	close(c.fd);
	return NULL;
}

static void contended(int rounds)
{
	struct conn a;
	pthread_t th;

	ho.rounds = rounds;
	ho.lat = calloc((size_t)rounds, sizeof(int64_t));
	conn_open(&a);
	for (int i = 0; i < rounds; i++) {
		char token[32];
		uint64_t t = 0;
		snprintf(token, sizeof(token), "a%d", i);
		if (redis)
			redis_acquire(&a, "bench.handover", token);
		else
			t = cohort_acquire(&a, "bench.handover", 10000);	/* B's release may still be on its way to the cluster */
		if (i == 0)
			pthread_create(&th, NULL, waiter_main, NULL);
		pthread_mutex_lock(&ho.mu);
		ho.phase = 1;	/* A holds it: B, ask */
		pthread_cond_broadcast(&ho.cv);
		pthread_mutex_unlock(&ho.mu);
		/* Give B time to be waiting in cohortd's queue (or spinning;
		 * in cluster mode, on the other cohortd: known busy there). */
		struct timespec pause = {pause_us / 1000000, pause_us % 1000000 * 1000};
		nanosleep(&pause, NULL);
		ho.released_at = now_ns();
		if (redis)
			redis_release(&a, "bench.handover", token);
		else
			cohort_release(&a, "bench.handover", t);
		pthread_mutex_lock(&ho.mu);
		while (ho.phase != 2)
			pthread_cond_wait(&ho.cv, &ho.mu);
		ho.phase = 0;
		pthread_mutex_unlock(&ho.mu);
	}
	pthread_join(th, NULL);
	qsort(ho.lat, (size_t)rounds, sizeof(int64_t), cmp64);
	printf("contended hand-over (release -> next holder): p50 %7.1f us  p99 %7.1f us  (%d rounds)\n",
	       (double)ho.lat[rounds / 2] / 1e3, (double)ho.lat[(int)(rounds * 0.99)] / 1e3, rounds);
	close(a.fd);
	free(ho.lat);
}

int main(int argc, char **argv)
{
	if (argc < 3 || (strcmp(argv[1], "cohort") && strcmp(argv[1], "redis"))) {
		fprintf(stderr, "usage: bench_lock cohort|redis SOCKET [SECONDS]\n");
		return 2;
	}
	redis = strcmp(argv[1], "redis") == 0;
	sock_path = argv[2];
	if (argc > 3)
		seconds = atof(argv[3]);
	if (redis) {
		struct conn c;
		const char *load[] = {"SCRIPT", "LOAD",
				      "if redis.call('get', KEYS[1]) == ARGV[1] then "
				      "return redis.call('del', KEYS[1]) else return 0 end"};
		conn_open(&c);
		resp_cmd(&c, 3, load);
		resp_reply(&c, release_sha, sizeof(release_sha));
		close(c.fd);
	}
	waiter_path = getenv("BENCH_WAITER_SOCKET") ? getenv("BENCH_WAITER_SOCKET") : sock_path;
	if (getenv("BENCH_HANDOVER_PAUSE_US"))
		pause_us = atol(getenv("BENCH_HANDOVER_PAUSE_US"));
	uncontended(1);
	uncontended(16);
	contended(getenv("BENCH_HANDOVER_ROUNDS") ? atoi(getenv("BENCH_HANDOVER_ROUNDS")) : 2000);
	return 0;
}
