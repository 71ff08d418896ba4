/*
 * cli_bus.c - pub, sub, get, bus: the message bus, through libcohort.
 */
#include "autoconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "wire.h"

/* $COHORT_BUS, else bus.sock beside the control socket. */
const char *bus_address(struct ctl *c)
{
	static char addr[4200];
	const char *env = getenv("COHORT_BUS");

	if (env && *env) {
		if (strncmp(env, "unix:", 5) != 0 && strncmp(env, "ws://", 5) != 0)
			die_usage("COHORT_BUS=%s: expected unix:PATH or ws://HOST:PORT/", env);
		return env;
	}
	char *dir = path_dirname(c->socket);
	snprintf(addr, sizeof(addr), "unix:%s/bus.sock", dir);
	free(dir);
	return addr;
}

/* The bus refused a request: on standard error, or with --json as an
 * answer on standard output, like the control commands' errors. */
static void bus_failed(const struct ctl *c, const char *what, const char *arg, const char *why)
{
	if (!c->json) {
		fprintf(stderr, "cohortctl: %s%s%s: %s\n", what, arg ? " " : "", arg ? arg : "", why);
		return;
	}
	json_t *o = json_pack("{s:b,s:s}", "ok", 0, "error", why);
	char *text = json_dumps(o, JSON_COMPACT);
	printf("%s\n", text);
	free(text);
	json_decref(o);
}

/* libcohort stopped for good: the command says why (cohort_error), once. */
static void bus_closed(cohort_t *b, int code, const char *reason, void *arg)
{
	(void)b;
	(void)code;
	(void)reason;
	(void)arg;
}

cohort_t *bus_connect(struct ctl *c, const char *session, bool clean, bool reconnect)
{
	struct cohort_options o = {.bus = bus_address(c), .session = session, .clean = clean,
				   .no_reconnect = !reconnect};
	cohort_t *b = cohort_new(&o);
	cohort_on_closed(b, bus_closed, NULL);

	if (cohort_connect(b) < 0) {
		fprintf(stderr, "cohortctl: %s\n", cohort_error(b));
		bool refused = strstr(cohort_error(b), "refused hello") != NULL;
		cohort_free(b);
		exit(refused ? EXIT_FAILED : EXIT_UNREACHABLE);
	}
	return b;
}

/*
 * DATA as JSON text: as given when it is JSON (subscribers get it as it
 * was written), a JSON string when it is plain text; NULL, with why, when
 * it starts as an object, array or string would but is not one: a typo
 * must not go out as a string.
 */
static char *as_json(const char *data, char *why, size_t whylen)
{
	json_error_t err;
	json_t *j;

	/* as cohortd judges data: numbers of any size are JSON */
	if (jscan_check(data, strlen(data), JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &err) == 0)
		return xstrdup(data);
	const char *p = data + strspn(data, " \t\r\n");
	if (*p == '{' || *p == '[' || *p == '"') {
		snprintf(why, whylen, "DATA is not JSON: %s (at column %d); quote it as a JSON string "
			 "to send text", err.text, err.column);
		return NULL;
	}
	j = json_string(data);
	if (!j) {
		snprintf(why, whylen, "DATA is neither JSON nor UTF-8 text");
		return NULL;
	}
	char *text = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
	json_decref(j);
	return text;
}

static const struct option pub_opts[] = {
	{"qos", required_argument, NULL, 'q'},
	{"retain", no_argument, NULL, 'r'},
	{0},
};

static int run_pub(struct ctl *c, int argc, char **argv)
{
	int qos = 0, o;
	bool retain = false;

	optind = 1;
	while ((o = getopt_long(argc, argv, "+", pub_opts, NULL)) != -1) {
		if (o == 'q' && (strcmp(optarg, "0") == 0 || strcmp(optarg, "1") == 0))
			qos = atoi(optarg);
		else if (o == 'r')
			retain = true;
		else
			die_usage("usage: cohortctl pub [--qos 0|1] [--retain] TOPIC DATA");
	}
	if (argc - optind != 2)
		die_usage("usage: cohortctl pub [--qos 0|1] [--retain] TOPIC DATA");
	char why[300];
	char *data = as_json(argv[optind + 1], why, sizeof(why));
	if (!data)
		die_usage("pub: %s", why);
	cohort_t *b = bus_connect(c, NULL, false, false);
	uint64_t seq = 0;
	int rc = cohort_publish(b, argv[optind], data, qos, retain, &seq);
	if (rc == 0 && qos == 0)	/* no answer of its own: a ping says if it was refused */
		rc = cohort_ping(b);
	if (rc < 0)
		bus_failed(c, "pub", argv[optind], cohort_error(b));
	else if (c->json)
		printf("{\"ok\":true,\"seq\":%llu}\n", (unsigned long long)seq);
	else if (qos == 1)
		printf("stored as seq %llu\n", (unsigned long long)seq);
	free(data);
	cohort_free(b);
	return rc < 0 ? EXIT_FAILED : EXIT_OK;
}

struct sub_state {
	struct ctl *c;
	long left;	/* messages still to print, -1: no end */
	bool printed;
	uint64_t last_seq;	/* of the last message printed */
};

static void print_msg(cohort_t *b, const struct cohort_msg *m, void *arg)
{
	struct sub_state *st = arg;

	if (st->printed && m->seq == st->last_seq)
		return;	/* the same message again, through a second matching pattern */
	if (st->left == 0) {	/* -n COUNT is done: not printed, so not acked */
		cohort_keep(b);
		return;
	}
	if (st->c->json) {
		struct wire_msg w = {.topic = m->topic, .topic_len = strlen(m->topic), .data = m->data,
				     .data_len = m->data_len, .seq = m->seq, .qos = m->qos, .ts_ms = m->ts_ms,
				     .retained = m->retained, .redelivered = m->redelivered};
		char *line = xmalloc(w.topic_len + w.data_len + WIRE_MSG_FIXED);
		char *end = wire_write_delivery(line, &w);
		*end++ = '\n';
		fwrite(line, 1, (size_t)(end - line), stdout);
		free(line);
	} else
		printf("%s %.*s%s%s\n", m->topic, (int)m->data_len, m->data, m->retained ? " (retained)" : "",
		       m->redelivered ? " (redelivered)" : "");
	fflush(stdout);
	st->printed = true;
	st->last_seq = m->seq;
	if (st->left > 0)
		st->left--;
}

static const char sub_shortopts[] = "+n:";
static const struct option sub_opts[] = {
	{"qos", required_argument, NULL, 'q'},
	{"durable", required_argument, NULL, 'd'},
	{"clean", no_argument, NULL, 'C'},
	{0},
};

static int run_sub(struct ctl *c, int argc, char **argv)
{
	const char *usage = "usage: cohortctl sub [--qos 0|1] [--durable SESSION [--clean]] [-n COUNT] PATTERN...";
	bool clean = false;
	struct sub_state st = {.c = c, .left = -1};
	const char *session = NULL, *why;
	uint64_t n;
	int qos = 0, o;

	optind = 1;
	while ((o = getopt_long(argc, argv, sub_shortopts, sub_opts, NULL)) != -1) {
		if (o == 'q' && (strcmp(optarg, "0") == 0 || strcmp(optarg, "1") == 0))
			qos = atoi(optarg);
		else if (o == 'd')
			session = optarg;
		else if (o == 'C')
			clean = true;
		else if (o == 'n' && parse_uint(optarg, 1u << 30, &n, &why) == 0)
			st.left = (long)n;
		else
			die_usage("%s", usage);
	}
	if (optind >= argc || (clean && !session))
		die_usage("%s", usage);
	cohort_t *b = bus_connect(c, session, clean, true);
	for (int i = optind; i < argc; i++) {
		if (cohort_subscribe(b, argv[i], qos, print_msg, &st) < 0) {
			bus_failed(c, "sub", argv[i], cohort_error(b));
			cohort_free(b);
			return EXIT_FAILED;
		}
	}
	while (st.left != 0)
		if (cohort_step(b, 1000) < 0) {	/* for good: say why */
			bus_failed(c, "sub", NULL, cohort_error(b));
			cohort_free(b);
			return EXIT_FAILED;
		}
	cohort_flush(b, 2000);	/* the last acks */
	cohort_free(b);
	return EXIT_OK;
}

struct get_line {
	const char *topic, *data;
	size_t tn, dn;
};

static int by_topic(const void *a, const void *b)
{
	const struct get_line *x = a, *y = b;
	size_t n = x->tn < y->tn ? x->tn : y->tn;
	int c = memcmp(x->topic, y->topic, n);

	return c ? c : (x->tn > y->tn) - (x->tn < y->tn);
}

static int run_get(struct ctl *c, int argc, char **argv)
{
	if (argc != 2)
		die_usage("usage: cohortctl get PATTERN");
	cohort_t *b = bus_connect(c, NULL, false, false);
	char *text = NULL;
	if (cohort_get(b, argv[1], &text) < 0) {
		bus_failed(c, "get", argv[1], cohort_error(b));
		cohort_free(b);
		return EXIT_FAILED;
	}
	if (c->json) {
		printf("%s\n", text);
	} else {
		/* each value as it was published: taken from the text, not parsed
		 * and printed again (1.50 stays 1.50, a 30-digit number whole);
		 * in topic order, not the daemon's hash order */
		size_t len = strlen(text), at = 0, n, tn, dn, nl = 0, cap = 0;
		struct get_line *lines = NULL;
		const char *m;
		while ((m = jscan_item(text, len, &at, &n))) {
			const char *t = jscan_member(m, n, "topic", &tn), *d = jscan_member(m, n, "data", &dn);
			if (!t || !d || tn < 2)	/* topics need no unescaping: [A-Za-z0-9_.$@-] */
				continue;
			if (nl == cap)
				lines = xrealloc(lines, (cap = cap ? cap * 2 : 64) * sizeof(*lines));
			lines[nl++] = (struct get_line){t + 1, d, tn - 2, dn};
		}
		qsort(lines, nl, sizeof(*lines), by_topic);
		for (size_t i = 0; i < nl; i++)
			printf("%.*s %.*s\n", (int)lines[i].tn, lines[i].topic, (int)lines[i].dn, lines[i].data);
		free(lines);
	}
	free(text);
	cohort_free(b);
	return EXIT_OK;
}

/* A durable session whose client is away: what waits for it, in memory
 * and (past half of bus_memory_max) in the journal only. */
static void print_away(json_t *x)
{
	long long queued = json_integer_value(json_object_get(x, "queued"));
	long long spilled = json_integer_value(json_object_get(x, "spilled"));

	printf("away: session %s, %lld queued", str_of(x, "session"), queued + spilled);
	if (spilled)
		printf(" (%lld of them in the journal only)", spilled);
	printf(", %lld dropped\n", json_integer_value(json_object_get(x, "dropped")));
}

static int run_bus(struct ctl *c, int argc, char **argv)
{
	no_args(argv[0], argc);
	char *raw;
	json_t *resp = call(c, json_pack("{s:s,s:[]}", "cmd", "status", "services"), &raw);
	json_t *bus = json_object_get(resp, "bus");
	if (c->json) {
		char *t = json_dumps(bus, JSON_COMPACT);
		printf("%s\n", t);
		free(t);
	} else {
		static const char *const head[] = {"CONN", "IDENTITY", "SESSION", "VIA", "SUBS", "QUEUED",
						   "INFLIGHT", "DROPPED"};
		json_t *conns = json_object_get(bus, "conns"), *x;
		size_t n = json_array_size(conns), i;
		char ***rows = table_new(head, 8, n + 1);
		json_array_foreach(conns, i, x) {
			char **r = rows[i + 1] = xcalloc(8, sizeof(char *));
			r[0] = xasprintf("%lld", json_integer_value(json_object_get(x, "id")));
			r[1] = xstrdup(str_of(x, "identity"));
			r[2] = xstrdup(*str_of(x, "session") ? str_of(x, "session") : "-");
			r[3] = xstrdup(str_of(x, "transport"));
			r[4] = xasprintf("%lld", json_integer_value(json_object_get(x, "subscriptions")));
			r[5] = xasprintf("%lld", json_integer_value(json_object_get(x, "queued")));
			r[6] = xasprintf("%lld", json_integer_value(json_object_get(x, "inflight")));
			r[7] = xasprintf("%lld", json_integer_value(json_object_get(x, "dropped_qos0")));
		}
		if (n)
			print_table(rows, n + 1, 8);
		free_rows(rows, n + 1, 8);
		json_array_foreach(json_object_get(bus, "sessions"), i, x)
			if (!json_is_true(json_object_get(x, "connected")))
				print_away(x);
		printf("%lld connection%s, %lld subscription%s, %lld retained, %lld published, "
		       "%lld qos-0 dropped, %lld queue drops, %lld dead letters, journal %lld bytes\n",
		       json_integer_value(json_object_get(bus, "connections")),
		       json_integer_value(json_object_get(bus, "connections")) == 1 ? "" : "s",
		       json_integer_value(json_object_get(bus, "subscriptions")),
		       json_integer_value(json_object_get(bus, "subscriptions")) == 1 ? "" : "s",
		       json_integer_value(json_object_get(bus, "retained")),
		       json_integer_value(json_object_get(bus, "published")),
		       json_integer_value(json_object_get(bus, "dropped_qos0")),
		       json_integer_value(json_object_get(bus, "dropped_queue")),
		       json_integer_value(json_object_get(bus, "dead_lettered")),
		       json_integer_value(json_object_get(bus, "journal_bytes")));
	}
	free(raw);
	json_decref(resp);
	return EXIT_OK;
}

const struct command cmd_pub_entry = {
	.name = "pub",
	.usage = "[--qos 0|1] [--retain] TOPIC DATA",
	.summary = "publish DATA (JSON, or taken as a string) on the bus",
	.run = run_pub,
	.shortopts = "+",
	.longopts = pub_opts,
};

const struct command cmd_sub_entry = {
	.name = "sub",
	.usage = "[--qos 0|1] [--durable SESSION [--clean]] [-n COUNT] PATTERN...",
	.summary = "print the bus messages matching the patterns",
	.run = run_sub,
	.shortopts = sub_shortopts,
	.longopts = sub_opts,
};

const struct command cmd_get_entry = {
	.name = "get",
	.usage = "PATTERN",
	.summary = "print the retained values matching PATTERN",
	.run = run_get,
};

const struct command cmd_bus_entry = {
	.name = "bus",
	.usage = "",
	.summary = "the bus: connections, sessions, queues, drops, journal size",
	.run = run_bus,
};
