/*
 * libcohort_test.c - scenarios of the C client, run by test_libcohort.py
 * against a real cohortd: `libcohort_test SCENARIO` with COHORT_BUS set;
 * exits 0 when every check held, 1 (with the failed check on stderr)
 * when not.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cohort.h"

#define CHECK(cond) do { if (!(cond)) { fprintf(stderr, "%s:%d: check failed: %s (%s)\n", \
	__FILE__, __LINE__, #cond, last ? cohort_error(last) : ""); exit(1); } } while (0)

static cohort_t *last;

struct got {
	int n;
	char topic[64][64];
	char data[64][256];
	uint64_t seq[64];
	int qos[64];
	bool retained[64];
};

static void on_msg(cohort_t *c, const struct cohort_msg *m, void *arg)
{
	struct got *g = arg;
	(void)c;
	if (g->n >= 64)
		return;
	snprintf(g->topic[g->n], sizeof(g->topic[0]), "%s", m->topic);
	snprintf(g->data[g->n], sizeof(g->data[0]), "%.*s", (int)m->data_len, m->data);
	g->seq[g->n] = m->seq;
	g->qos[g->n] = m->qos;
	g->retained[g->n] = m->retained;
	g->n++;
}

static void step_until(cohort_t *c, struct got *g, int n)
{
	for (int i = 0; i < 500 && g->n < n; i++)
		cohort_step(c, 20);
	CHECK(g->n >= n);
}

static cohort_t *open_client(const char *session)
{
	struct cohort_options o = {.session = session};
	cohort_t *c = cohort_new(&o);
	last = c;
	CHECK(cohort_connect(c) == 0);
	return c;
}

static int basic(void)
{
	cohort_t *pub = open_client(NULL), *sub = open_client(NULL);
	struct got g = {0};
	uint64_t s1, s2, s3;
	char *json;

	CHECK(cohort_publish(pub, "state.mode", "\"prod\"", 1, true, &s1) == 0);
	CHECK(s1 > 0);
	CHECK(cohort_subscribe(sub, "state.*", 1, on_msg, &g) == 0);
	step_until(sub, &g, 1);		/* the retained value first */
	CHECK(g.retained[0] && strcmp(g.data[0], "\"prod\"") == 0);
	CHECK(cohort_publish(pub, "state.load", "{\"cpu\":0.5}", 1, false, &s2) == 0);
	CHECK(cohort_publish(pub, "state.load", "7", 0, false, NULL) == 0);
	/* your own loop: poll the fd, step with 0 */
	for (int i = 0; i < 500 && g.n < 3; i++) {
		struct pollfd p = {cohort_fd(sub), POLLIN, 0};
		poll(&p, 1, 20);
		cohort_step(sub, 0);
	}
	CHECK(g.n == 3);
	CHECK(g.seq[1] == s2 && g.qos[1] == 1 && strcmp(g.data[1], "{\"cpu\":0.5}") == 0);
	CHECK(g.qos[2] == 0 && strcmp(g.data[2], "7") == 0);
	/* data with a "seq" of its own, one inside a string, and UTF-8 come whole */
	const char *tricky = "{\"a\":1,\"seq\":2,\"s\":\"x,\\\"seq\\\":3\",\"u\":\"caf\xc3\xa9\"}";
	CHECK(cohort_publish(pub, "state.t", tricky, 1, false, NULL) == 0);
	step_until(sub, &g, 4);
	CHECK(strcmp(g.data[3], tricky) == 0);
	/* a retry with the same mid is a no-op */
	CHECK(cohort_publish_mid(pub, "state.x", "1", 1, false, "once", &s1) == 0);
	CHECK(cohort_publish_mid(pub, "state.x", "1", 1, false, "once", &s3) == 0);
	CHECK(s1 == s3);
	step_until(sub, &g, 5);
	for (int i = 0; i < 10; i++)
		cohort_step(sub, 10);
	CHECK(g.n == 5);
	CHECK(cohort_get(pub, "state.>", &json) == 0);
	CHECK(strstr(json, "\"state.mode\"") && strstr(json, "\"prod\""));
	free(json);
	CHECK(cohort_ping(pub) == 0);
	CHECK(cohort_unsubscribe(sub, "state.*") == 0);
	CHECK(cohort_publish(pub, "state.mode", "\"dev\"", 1, true, NULL) == 0);
	for (int i = 0; i < 10; i++)
		cohort_step(sub, 10);
	CHECK(g.n == 5);
	/* errors come back as errors */
	CHECK(cohort_publish(pub, "bad..topic", "1", 1, false, NULL) == -1);
	CHECK(strstr(cohort_error(pub), "bad topic"));
	CHECK(cohort_publish(pub, "a.b", "{not json", 1, false, NULL) == -1);
	CHECK(cohort_publish(pub, "a.b", "{\"k\":1,\"k\":2}", 0, false, NULL) == -1);	/* cohortd would refuse it */
	/* strings: a plain one is checked without the parser, the rest with it */
	CHECK(cohort_publish(pub, "a.b", "\"tab\there\"", 0, false, NULL) == -1);
	CHECK(cohort_publish(pub, "a.b", "\"\xff\"", 0, false, NULL) == -1);
	CHECK(cohort_publish(pub, "a.b", "\"open", 0, false, NULL) == -1);
	CHECK(cohort_publish(pub, "a.b", "\"a\" \"b\"", 0, false, NULL) == -1);
	CHECK(cohort_publish(pub, "a.b", "\"esc \\\" \\u00e9\"", 1, false, NULL) == 0);
	CHECK(cohort_publish(pub, "a.b", "\"caf\xc3\xa9\"", 1, false, NULL) == 0);
	CHECK(cohort_publish(pub, "a.b", "1", 2, false, NULL) == -1);
	CHECK(strstr(cohort_error(pub), "qos is 0 or 1"));
	CHECK(cohort_subscribe(sub, "a.>.b", 0, on_msg, &g) == -1);
	cohort_free(pub);
	cohort_free(sub);
	return 0;
}

static int locks(void)
{
	cohort_t *a = open_client(NULL), *b = open_client(NULL);
	uint64_t ta, tb;
	int64_t exp;

	CHECK(cohort_lock_acquire(a, "job.x", 5000, 0, false, &ta, &exp) == 0);
	CHECK(ta > 0 && exp > 0);
	last = b;
	CHECK(cohort_lock_acquire(b, "job.x", 5000, 100, false, &tb, &exp) == -1);
	CHECK(strcmp(cohort_error(b), "timeout") == 0);
	last = a;
	CHECK(cohort_lock_renew(a, "job.x", ta, 5000, &exp) == 0);
	CHECK(cohort_lock_release(a, "job.x", ta) == 0);
	CHECK(cohort_lock_release(a, "job.x", ta) == -1);
	CHECK(strcmp(cohort_error(a), "not held") == 0);
	last = b;
	CHECK(cohort_lock_acquire(b, "job.x", 5000, 0, true, &tb, &exp) == 0);
	CHECK(tb > ta);
	cohort_free(a);
	cohort_free(b);
	return 0;
}

struct counter {
	int distinct;
	char seen[100000];
};

static void count_msg(cohort_t *c, const struct cohort_msg *m, void *arg)
{
	struct counter *k = arg;
	int v = atoi(m->data);
	(void)c;
	if (v >= 0 && v < (int)sizeof(k->seen) && !k->seen[v]) {
		k->seen[v] = 1;
		k->distinct++;
	}
}

/* Publishes n qos-1 messages while the harness restarts cohortd under
 * both clients: the durable subscriber ends with every one, the publisher
 * with every ok. */
static int reconnect(int n)
{
	static struct counter k;
	cohort_t *sub = open_client("lc-sub"), *pub = open_client(NULL);

	CHECK(cohort_subscribe(sub, "rc.n", 1, count_msg, &k) == 0);
	for (int i = 0; i < n; i++) {
		char data[32];
		snprintf(data, sizeof(data), "%d", i);
		last = pub;
		CHECK(cohort_publish_nowait(pub, "rc.n", data, 1, false) == 0);
		if (i == n / 2) {
			cohort_flush(pub, 5000);
			printf("half\n");	/* the harness kills and restarts cohortd now */
			fflush(stdout);
			char line[16];
			if (!fgets(line, sizeof(line), stdin))
				return 1;
		}
		cohort_step(pub, 0);
		cohort_step(sub, 0);
	}
	time_t deadline = time(NULL) + 60;
	while ((k.distinct < n || cohort_unacked(pub)) && time(NULL) < deadline) {
		cohort_step(pub, 5);
		cohort_step(sub, 5);
	}
	last = pub;
	CHECK(cohort_unacked(pub) == 0);
	CHECK(k.distinct == n);
	CHECK(cohort_reconnects(pub) >= 1);
	CHECK(cohort_reconnects(sub) >= 1);
	cohort_free(pub);
	cohort_free(sub);
	return 0;
}

static void print_msg(cohort_t *c, const struct cohort_msg *m, void *arg)
{
	int *n = arg;
	(void)c;
	printf("%s|%.*s|%llu|%d|%lld|%d|%d\n", m->topic, (int)m->data_len, m->data,
	       (unsigned long long)m->seq, m->qos, (long long)m->ts_ms, m->retained, m->redelivered);
	fflush(stdout);
	(*n)++;
}

/* Prints the first n messages on any topic, one line each, every field. */
static int print(int n)
{
	cohort_t *c = open_client(NULL);
	int got = 0;

	CHECK(cohort_subscribe(c, ">", 1, print_msg, &got) == 0);
	for (int i = 0; i < 3000 && got < n; i++)	/* 60 s at most */
		cohort_step(c, 20);
	CHECK(got == n);
	cohort_free(c);
	return 0;
}

struct ended {
	int calls, code;
	char reason[300];
};

static void on_closed(cohort_t *c, int code, const char *reason, void *arg)
{
	struct ended *e = arg;
	(void)c;
	e->calls++;
	e->code = code;
	snprintf(e->reason, sizeof(e->reason), "%s", reason);
}

/* Connected with $COHORT_TOKEN, then cohortd restarts (the harness does it
 * after "connected"): the token is dead, the client stops for good, once. */
static int dead_token(void)
{
	cohort_t *c = open_client(NULL);
	struct ended e = {0};
	struct got g = {0};

	cohort_on_closed(c, on_closed, &e);
	CHECK(cohort_subscribe(c, "x.>", 1, on_msg, &g) == 0);
	printf("connected\n");
	fflush(stdout);
	time_t deadline = time(NULL) + 60;
	int rc = 0;
	while (time(NULL) < deadline && (rc = cohort_step(c, 100)) == 0)
		;
	CHECK(rc == -1);
	CHECK(e.calls == 1 && e.code == 1008 && cohort_close_code(c) == 1008);
	CHECK(strstr(e.reason, "bad token") && strstr(e.reason, "not reconnecting"));
	CHECK(strcmp(cohort_error(c), e.reason) == 0);
	/* and every call after it fails at once, without trying again */
	CHECK(cohort_step(c, 1000) == -1);
	CHECK(cohort_publish(c, "x.y", "1", 1, false, NULL) == -1);
	CHECK(cohort_ping(c) == -1);
	CHECK(e.calls == 1 && cohort_reconnects(c) == 0);
	printf("ended: %s\n", e.reason);
	cohort_free(c);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	if (strcmp(argv[1], "basic") == 0)
		return basic();
	if (strcmp(argv[1], "locks") == 0)
		return locks();
	if (strcmp(argv[1], "reconnect") == 0)
		return reconnect(argc > 2 ? atoi(argv[2]) : 200);
	if (strcmp(argv[1], "dead-token") == 0)
		return dead_token();
	if (strcmp(argv[1], "print") == 0 && argc > 2)
		return print(atoi(argv[2]));
	return 2;
}
