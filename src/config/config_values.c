/*
 * config_values.c - one parser, free and compare per type of config value
 * (enum key_type), and the readers of lists, addresses, probes, outputs and
 * environments they use.  config_keys.c holds the key table; key_parse,
 * key_free and key_equal find a key's functions here by its type, and take
 * the bounds of a number from its row of the table.
 */
#include "autoconfig.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config_keys.h"
#include "hostport.h"
#include "topic.h"
#include "words.h"

/* Splits a comma-separated list, trimming items and dropping empty ones.
 * "\," is a literal comma. */
static void split_list(const char *value, struct strv *out)
{
	struct sbuf item = {0};

	*out = (struct strv){0};
	for (const char *p = value;; p++) {
		if (*p == '\\' && p[1] == ',') {
			sbuf_addc(&item, ',');
			p++;
			continue;
		}
		if (*p == ',' || *p == '\0') {
			if (item.len) {
				char *t = str_trim(item.buf);
				if (*t)
					strv_push(out, t);
			}
			sbuf_free(&item);
			if (*p == '\0')
				break;
			continue;
		}
		sbuf_addc(&item, *p);
	}
}


static void check_free(struct check *c)
{
	if (c->to) {
		free(c->to->host);
		free(c->to->port);
		free(c->to->path);
		strv_free(&c->to->argv);
		free(c->to);
	}
	free(c->text);
	*c = (struct check){0};
}

static int parse_check(const char *v, struct check *c, bool health, struct sbuf *why)
{
	const char *w;
	const char *expected = health
		? "tcp:HOST:PORT, http://HOST:PORT/PATH, exec:CMD or nothing"
		: "notify, delay:DURATION, tcp:HOST:PORT, http://HOST:PORT/PATH or exec:CMD";
	struct check n = {0};

	if (!*v && health) {
		n.kind = CHECK_NONE;
	} else if (!health && strcmp(v, "notify") == 0) {
		n.kind = CHECK_NOTIFY;
	} else if (!health && str_starts(v, "delay:")) {
		n.kind = CHECK_DELAY;
		if (parse_duration_ms(v + 6, &n.delay_ms, &w) < 0) {
			sbuf_addf(why, "delay: expects %s", w);
			return -1;
		}
	} else if (str_starts(v, "tcp:")) {
		n.kind = CHECK_TCP;
		n.to = xcalloc(1, sizeof(*n.to));
		if (hostport_split(v + 4, NULL, &n.to->host, &n.to->port) < 0)
			goto bad;
	} else if (str_starts(v, "http://")) {
		const char *hp = v + 7;
		const char *slash = strchr(hp, '/');
		char *hostport = slash ? xstrndup(hp, (size_t)(slash - hp)) : xstrdup(hp);
		n.to = xcalloc(1, sizeof(*n.to));
		int rc = hostport_split(hostport, NULL, &n.to->host, &n.to->port);
		free(hostport);
		if (rc < 0)
			goto bad;
		n.kind = CHECK_HTTP;
		n.to->path = xstrdup(slash ? slash : "/");
		if (strpbrk(n.to->path, " \t\r\n"))
			goto bad;
	} else if (str_starts(v, "exec:")) {
		n.kind = CHECK_EXEC;
		n.to = xcalloc(1, sizeof(*n.to));
		if (words_split(v + 5, &n.to->argv, &w) < 0) {
			sbuf_addf(why, "exec: %s", w);
			check_free(&n);
			return -1;
		}
		if (n.to->argv.n == 0) {
			sbuf_adds(why, "exec: expects a command");
			check_free(&n);
			return -1;
		}
	} else {
		goto bad;
	}
	n.text = xstrdup(v);
	check_free(c);
	*c = n;
	return 0;
bad:
	check_free(&n);
	sbuf_addf(why, "expected %s", expected);
	return -1;
}

static bool check_equal(const struct check *a, const struct check *b)
{
	return (a->text && b->text) ? strcmp(a->text, b->text) == 0 : a->text == b->text;
}

static int parse_output(const char *v, struct output *o, bool is_err,
			const struct parse_ctx *ctx, struct sbuf *why)
{
	static const char *const outs[] = {"log", "inherit", "null", "stdout"};
	struct output n = {0};

	if (strcmp(v, "log") == 0)
		n.kind = OUT_LOG;
	else if (strcmp(v, "inherit") == 0)
		n.kind = OUT_INHERIT;
	else if (strcmp(v, "null") == 0)
		n.kind = OUT_NULL;
	else if (is_err && strcmp(v, "stdout") == 0)
		n.kind = OUT_STDOUT;
	else if (strchr(v, '/')) {
		n.kind = OUT_PATH;
		n.path = path_join(ctx->dir, v);
	} else {
		const char *m = did_you_mean(v, outs, is_err ? 4 : 3);
		sbuf_addf(why, "expected %slog, inherit, null or a path containing \"/\"",
			  is_err ? "stdout, " : "");
		if (m)
			sbuf_addf(why, " (did you mean \"%s\"?)", m);
		return -1;
	}
	free(o->path);
	*o = n;
	return 0;
}

/* A value quoted as supervisord users write it: "..." (where \" and \\
 * are a quote and a backslash) or '...'; *pp is at the opening quote and
 * is left after the closing one.  -1 when it does not close. */
static int env_quoted(const char **pp, struct sbuf *val)
{
	const char *p = *pp;
	char q = *p++;

	for (; *p && *p != q; p++) {
		if (q == '"' && *p == '\\' && (p[1] == '"' || p[1] == '\\'))
			p++;
		sbuf_addc(val, *p);
	}
	if (!*p)
		return -1;
	*pp = p + 1;
	return 0;
}

/* True for a variable name: [A-Za-z_][A-Za-z0-9_]*. */
static bool env_name_valid(const char *s, size_t n)
{
	if (n == 0 || isdigit((unsigned char)*s))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '_')
			return false;
	return true;
}

/* One NAME=VALUE item, from *pp up to the comma that ends it; *pp is left
 * past that comma.  An unquoted value runs to the next comma ("\," is a
 * literal one) and is trimmed; a quoted one keeps commas and blanks.
 * *item is NULL for an empty item ("A=1,,B=2", a trailing comma).  -1 with
 * why filled. */
static int env_item(const char **pp, char **item, struct sbuf *why)
{
	const char *start = *pp + strspn(*pp, " \t");
	const char *eq = start + strcspn(start, "=,");
	size_t seg = strcspn(start, ",");	/* the item as written, for messages */
	size_t n = (size_t)(eq - start);
	struct sbuf val = {0};
	const char *p;

	*item = NULL;
	while (n && (start[n - 1] == ' ' || start[n - 1] == '\t'))
		n--;	/* "A = 1" is written for humans */
	if (*eq != '=' && n == 0 && strspn(start, " \t") == seg) {
		*pp = start + seg + (start[seg] == ',');
		return 0;
	}
	if (*eq != '=' || !env_name_valid(start, n)) {
		char *shown = xstrndup(start, seg);
		sbuf_addf(why, "expected NAME=VALUE items, got \"%s\"", str_trim(shown));
		free(shown);
		return -1;
	}
	p = eq + 1 + strspn(eq + 1, " \t");
	if (*p == '"' || *p == '\'') {
		char q = *p;
		if (env_quoted(&p, &val) < 0) {
			sbuf_addf(why, "%.*s: the value's opening %c has no closing one", (int)n, start, q);
			sbuf_free(&val);
			return -1;
		}
		p += strspn(p, " \t");
		if (*p && *p != ',') {
			sbuf_addf(why, "%.*s: text after the closing %c (quote the whole value)", (int)n, start, q);
			sbuf_free(&val);
			return -1;
		}
	} else {
		for (; *p && *p != ','; p++) {
			if (*p == '\\' && p[1] == ',')
				p++;
			sbuf_addc(&val, *p);
		}
		while (val.len && (val.buf[val.len - 1] == ' ' || val.buf[val.len - 1] == '\t'))
			val.buf[--val.len] = '\0';
	}
	*item = xasprintf("%.*s=%s", (int)n, start, val.len ? val.buf : "");
	sbuf_free(&val);
	*pp = p + (*p == ',');
	return 0;
}

/* environment: NAME=VALUE items separated by commas.  The quoted forms
 * are supervisord's (KEY="value, with comma"); the unquoted ones, with
 * "\," for a comma, are cohort's from the start. */
static int parse_env(const char *v, struct strv *out, struct sbuf *why)
{
	struct strv items = {0};
	const char *p = v;

	while (*p) {
		char *item;
		if (env_item(&p, &item, why) < 0) {
			strv_free(&items);
			return -1;
		}
		if (item)
			strv_push_owned(&items, item);
	}
	strv_free(out);
	*out = items;
	return 0;
}

static int parse_list(const char *v, struct strv *out, bool (*valid)(const char *),
		      const char *what, struct sbuf *why)
{
	struct strv items;

	split_list(v, &items);
	for (size_t i = 0; i < items.n; i++) {
		if (!valid(items.v[i])) {
			sbuf_addf(why, "\"%s\" is not %s", items.v[i], what);
			strv_free(&items);
			return -1;
		}
	}
	strv_free(out);
	*out = items;
	return 0;
}

static bool any_path(const char *s)
{
	return *s != '\0';
}

static bool topic_pattern_wild(const char *s)
{
	return topic_pattern_valid(s, true);
}

/* An origin as a browser sends it: a scheme, a host, maybe a port; no path. */
static bool origin_valid(const char *s)
{
	const char *h;
	size_t n;

	if (strcmp(s, "*") == 0)
		return true;
	if (strncasecmp(s, "http://", 7) == 0)
		h = s + 7;
	else if (strncasecmp(s, "https://", 8) == 0)
		h = s + 8;
	else
		return false;
	n = strlen(h);
	return n > 0 && n < 250 && strspn(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
					 "0123456789.-:[]") == n;
}

static int parse_exitcodes(const char *v, uint8_t *bits, struct sbuf *why)
{
	struct strv items;
	uint8_t n[32] = {0};

	split_list(v, &items);
	for (size_t i = 0; i < items.n; i++) {
		uint64_t code;
		const char *w;
		if (parse_uint(items.v[i], 255, &code, &w) < 0) {
			sbuf_addf(why, "expected exit codes 0-255, got \"%s\"", items.v[i]);
			strv_free(&items);
			return -1;
		}
		n[code / 8] |= (uint8_t)(1u << (code % 8));
	}
	strv_free(&items);
	memcpy(bits, n, sizeof(n));
	return 0;
}
/* --- one parser, free and compare per type ------------------------------- */

/* What a parser gets: the key (its type and bounds), the directory of its
 * file, the value as written, and where to say what was wrong. */
struct key_value {
	const struct key_def *key;
	const struct parse_ctx *ctx;
	const char *text;
	struct sbuf *why;
};

/* "expected WHAT" in why; -1. */
static int expected(const struct key_value *in, const char *what)
{
	sbuf_addf(in->why, "expected %s", what);
	return -1;
}

static int parse_str(const struct key_value *in, void *p)
{
	free(*(char **)p);
	*(char **)p = *in->text ? xstrdup(in->text) : NULL;
	return 0;
}

static int parse_path(const struct key_value *in, void *p)
{
	free(*(char **)p);
	*(char **)p = *in->text ? path_join(in->ctx->dir, in->text) : NULL;
	return 0;
}

static int parse_listen(const struct key_value *in, void *p)
{
	char *h, *port;

	if (*in->text && hostport_split(in->text, NULL, &h, &port) < 0)
		return expected(in, "HOST:PORT, such as 127.0.0.1:7420, or nothing");
	if (*in->text) {
		free(h);
		free(port);
	}
	return parse_str(in, p);
}

static int parse_yes_no(const struct key_value *in, void *p)
{
	const char *w;

	return parse_bool(in->text, p, &w) < 0 ? expected(in, w) : 0;
}

static int parse_duration(const struct key_value *in, void *p)
{
	const char *w;

	return parse_duration_ms(in->text, p, &w) < 0 ? expected(in, w) : 0;
}

/* A size with the unit that writes it shortest: "1K", "16M", "100". */
static void format_size(int64_t v, char *buf, size_t len)
{
	static const char units[] = "GMK";

	for (int i = 0; i < 3; i++) {
		int64_t unit = (int64_t)1 << (10 * (3 - i));
		if (v >= unit && v % unit == 0) {
			snprintf(buf, len, "%" PRId64 "%c", v / unit, units[i]);
			return;
		}
	}
	snprintf(buf, len, "%" PRId64, v);
}

/* A size; within the key's min and max when it has a max (bus_max_message:
 * a message is one journal record, which may not pass JRNL_RECORD_MAX
 * with its topic and the keys of its durable subscribers). */
static int parse_bytes(const struct key_value *in, void *p)
{
	const struct key_def *k = in->key;
	const char *w;
	uint64_t v;

	if (parse_size(in->text, &v, &w) == 0 &&
	    (k->max == 0 || (v >= (uint64_t)k->min && v <= (uint64_t)k->max))) {
		*(uint64_t *)p = v;
		return 0;
	}
	if (k->max == 0)
		return expected(in, w);
	char lo[32], hi[32];
	format_size(k->min, lo, sizeof(lo));
	format_size(k->max, hi, sizeof(hi));
	sbuf_addf(in->why, "expected a size from %s to %s", lo, hi);
	return -1;
}

/* A whole number from the key's min to its max into *v, or -1. */
static int whole_in_bounds(const struct key_value *in, uint64_t *v)
{
	const char *w;

	if (parse_uint(in->text, (uint64_t)in->key->max, v, &w) < 0 || *v < (uint64_t)in->key->min)
		return -1;
	return 0;
}

static int parse_whole(const struct key_value *in, void *p)
{
	uint64_t v;

	if (whole_in_bounds(in, &v) == 0) {
		*(uint64_t *)p = v;
		return 0;
	}
	sbuf_addf(in->why, "expected a whole number from %" PRId64 " to %" PRId64, in->key->min,
		  in->key->max);
	return -1;
}

/* The same, or nothing for 0: phase = is "the one the dependencies imply". */
static int parse_phase(const struct key_value *in, void *p)
{
	uint64_t v = 0;

	if (!*in->text || whole_in_bounds(in, &v) == 0) {
		*(uint64_t *)p = v;
		return 0;
	}
	sbuf_addf(in->why, "expected a phase number from %" PRId64 " to %" PRId64 ", or nothing",
		  in->key->min, in->key->max);
	return -1;
}

/* A real number from the key's min to its max; note follows the message. */
static int parse_real(const struct key_value *in, void *p, const char *note)
{
	char *end;
	double d = strtod(in->text, &end);

	if (*in->text && !*end && d >= (double)in->key->min && d <= (double)in->key->max) {
		*(double *)p = d;
		return 0;
	}
	sbuf_addf(in->why, "expected a number from %" PRId64 " to %" PRId64 "%s", in->key->min,
		  in->key->max, note);
	return -1;
}

static int parse_factor(const struct key_value *in, void *p)
{
	return parse_real(in, p, "");
}

static int parse_fraction(const struct key_value *in, void *p)
{
	return parse_real(in, p, " (0.1 = 10%)");
}

static int parse_mode(const struct key_value *in, void *p)
{
	char *end;
	unsigned long m = strtoul(in->text, &end, 8);

	if (!*in->text || *end || m > 07777)
		return expected(in, "an octal file mode such as 0600");
	*(uint64_t *)p = m;
	return 0;
}

/* Octal digits only: "27" is 027, as umask(1) reads it; "0o27" or "rwx"
 * would be guesses.  Nothing is -1: cohortd's own. */
static int parse_umask(const struct key_value *in, void *p)
{
	const char *v = in->text;

	if (!*v) {
		*(int *)p = -1;
		return 0;
	}
	if (strlen(v) > 4 || strspn(v, "01234567") != strlen(v) || strtoul(v, NULL, 8) > 0777)
		return expected(in, "an octal umask from 000 to 777, such as 022 or 027, or nothing");
	*(int *)p = (int)strtoul(v, NULL, 8);
	return 0;
}

/* The index of v among words, or -1. */
static int word_index(const char *v, const char *const *words, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v, words[i]) == 0)
			return (int)i;
	return -1;
}

static int parse_fsync(const struct key_value *in, void *p)
{
	static const char *const words[] = {
		[FSYNC_ALWAYS] = "always", [FSYNC_BATCH] = "batch", [FSYNC_NEVER] = "never",
	};
	int i = word_index(in->text, words, ARRAY_LEN(words));

	if (i < 0)
		return expected(in, "always, batch or never");
	*(enum fsync_policy *)p = (enum fsync_policy)i;
	return 0;
}

static int parse_restart(const struct key_value *in, void *p)
{
	static const char *const words[] = {
		[RESTART_ALWAYS] = "always", [RESTART_ON_FAILURE] = "on-failure", [RESTART_NEVER] = "never",
	};
	int i = word_index(in->text, words, ARRAY_LEN(words));

	if (i < 0)
		return expected(in, "always, on-failure or never");
	*(enum restart_policy *)p = (enum restart_policy)i;
	return 0;
}

static int parse_signal(const struct key_value *in, void *p)
{
	int sig = signal_number(in->text);

	if (sig < 0)
		return expected(in, "a signal name such as TERM, INT, QUIT, HUP, USR1 or a number");
	*(int *)p = sig;
	return 0;
}

static int parse_environment(const struct key_value *in, void *p)
{
	return parse_env(in->text, p, in->why);
}

static int parse_success_exit(const struct key_value *in, void *p)
{
	return parse_exitcodes(in->text, p, in->why);
}

static int parse_ready(const struct key_value *in, void *p)
{
	return parse_check(in->text, p, false, in->why);
}

static int parse_health(const struct key_value *in, void *p)
{
	return parse_check(in->text, p, true, in->why);
}

static int parse_stdout(const struct key_value *in, void *p)
{
	return parse_output(in->text, p, false, in->ctx, in->why);
}

static int parse_stderr(const struct key_value *in, void *p)
{
	return parse_output(in->text, p, true, in->ctx, in->why);
}

static int parse_items(const struct key_value *in, void *p);

/* The types of config_proc.c (limits, nice, oom_score_adjust,
 * environment_file). */
static int parse_proc(const struct key_value *in, void *p)
{
	return key_parse_proc(in->key->type, in->ctx, in->text, p, in->why);
}

/* instances (config_template.c). */
static int parse_instances(const struct key_value *in, void *p)
{
	return tmpl_parse_instances(in->text, p, in->why);
}

/* cluster and cluster_name (config_cluster.c). */
static int parse_cluster_urls(const struct key_value *in, void *p)
{
	return cluster_urls_parse(in->text, p, in->why);
}

static int parse_cluster_name(const struct key_value *in, void *p)
{
	return cluster_name_parse(in->text, p, in->why);
}

static bool equal_rlimit(const void *a, const void *b)
{
	return key_equal_proc(K_RLIMIT, a, b);
}

static void free_str(void *p)
{
	free(*(char **)p);
	*(char **)p = NULL;
}

static void free_strv(void *p)
{
	strv_free(p);
}

static void free_check(void *p)
{
	check_free(p);
}

static void free_output(void *p)
{
	free(((struct output *)p)->path);
	((struct output *)p)->path = NULL;
}

static bool str_eq(const char *a, const char *b)
{
	return (a && b) ? strcmp(a, b) == 0 : a == b;
}

static bool equal_str(const void *a, const void *b)
{
	return str_eq(*(char *const *)a, *(char *const *)b);
}

static bool equal_strv(const void *a, const void *b)
{
	return strv_equal(a, b);
}

static bool equal_check(const void *a, const void *b)
{
	return check_equal(a, b);
}

static bool equal_output(const void *a, const void *b)
{
	const struct output *x = a, *y = b;

	return x->kind == y->kind && str_eq(x->path, y->path);
}

static bool equal_double(const void *a, const void *b)
{
	return *(const double *)a == *(const double *)b;
}

/* How each type is read, freed (NULL: nothing to free) and compared
 * (NULL: a scalar of size bytes, the same when its bytes are).  A parser
 * writes the field only with a good value, and otherwise says in why what
 * it expected.  A list's items are checked by item_valid and named by
 * item_what in the message. */
static const struct value_type {
	int (*parse)(const struct key_value *in, void *field);
	void (*free)(void *field);
	bool (*equal)(const void *a, const void *b);
	size_t size;
	bool (*item_valid)(const char *item);
	const char *item_what;
} value_types[] = {
	[K_STR] = {.parse = parse_str, .free = free_str, .equal = equal_str},
	[K_PATH] = {.parse = parse_path, .free = free_str, .equal = equal_str},
	[K_LISTEN] = {.parse = parse_listen, .free = free_str, .equal = equal_str},
	[K_BOOL] = {.parse = parse_yes_no, .size = sizeof(bool)},
	[K_DURATION] = {.parse = parse_duration, .size = sizeof(int64_t)},
	[K_SIZE] = {.parse = parse_bytes, .size = sizeof(uint64_t)},
	[K_UINT] = {.parse = parse_whole, .size = sizeof(uint64_t)},
	[K_PHASE] = {.parse = parse_phase, .size = sizeof(uint64_t)},
	[K_MODE] = {.parse = parse_mode, .size = sizeof(uint64_t)},
	[K_FACTOR] = {.parse = parse_factor, .equal = equal_double, .size = sizeof(double)},
	[K_FRACTION] = {.parse = parse_fraction, .equal = equal_double, .size = sizeof(double)},
	[K_FSYNC] = {.parse = parse_fsync, .size = sizeof(enum fsync_policy)},
	[K_RESTART] = {.parse = parse_restart, .size = sizeof(enum restart_policy)},
	[K_SIGNAL] = {.parse = parse_signal, .size = sizeof(int)},
	[K_UMASK] = {.parse = parse_umask, .size = sizeof(int)},
	[K_EXITCODES] = {.parse = parse_success_exit, .size = sizeof(((struct svc_rare *)0)->success_exit)},
	[K_ENV] = {.parse = parse_environment, .free = free_strv, .equal = equal_strv},
	[K_NAMES] = {.parse = parse_items, .free = free_strv, .equal = equal_strv,
		.item_valid = svc_name_valid, .item_what = "a service name ([A-Za-z0-9_.-], at most 64, or an instance's NAME@K)"},
	[K_INCLUDE] = {.parse = parse_items, .free = free_strv, .equal = equal_strv,
		.item_valid = any_path, .item_what = "a path"},
	[K_LOCKPATS] = {.parse = parse_items, .free = free_strv, .equal = equal_strv,
		.item_valid = lock_pattern_valid, .item_what = "a lock name pattern ([A-Za-z0-9_.:/-] and * ?)"},
	[K_TOPICPATS] = {.parse = parse_items, .free = free_strv, .equal = equal_strv,
		.item_valid = topic_pattern_wild, .item_what = "a topic pattern (dot-separated [A-Za-z0-9_@-] segments, * and a last >)"},
	[K_ORIGINS] = {.parse = parse_items, .free = free_strv, .equal = equal_strv,
		.item_valid = origin_valid, .item_what = "an origin: http://HOST[:PORT], https://HOST[:PORT] or *"},
	[K_READY] = {.parse = parse_ready, .free = free_check, .equal = equal_check},
	[K_HEALTH] = {.parse = parse_health, .free = free_check, .equal = equal_check},
	[K_STDOUT] = {.parse = parse_stdout, .free = free_output, .equal = equal_output},
	[K_STDERR] = {.parse = parse_stderr, .free = free_output, .equal = equal_output},
	[K_RLIMIT] = {.parse = parse_proc, .equal = equal_rlimit, .size = sizeof(struct svc_rlimit)},
	[K_NICE] = {.parse = parse_proc, .size = sizeof(int)},
	[K_OOM] = {.parse = parse_proc, .size = sizeof(int)},
	[K_ENVFILES] = {.parse = parse_proc, .free = free_strv, .equal = equal_strv},
	[K_NATSURLS] = {.parse = parse_cluster_urls, .free = free_str, .equal = equal_str},
	[K_NATSNAME] = {.parse = parse_cluster_name, .free = free_str, .equal = equal_str},
	[K_INSTANCES] = {.parse = parse_instances, .size = sizeof(uint64_t)},
};
_Static_assert(ARRAY_LEN(value_types) == K_NTYPES, "a value type without its functions");

static const struct value_type *type_of(const struct key_def *k)
{
	return &value_types[k->type];
}

/* A comma-separated list whose every item the type's item_valid takes. */
static int parse_items(const struct key_value *in, void *p)
{
	const struct value_type *t = type_of(in->key);

	return parse_list(in->text, p, t->item_valid, t->item_what, in->why);
}

int key_parse(const struct key_def *k, const struct parse_ctx *ctx,
	      const char *v, void *p, struct sbuf *why)
{
	struct key_value in = {.key = k, .ctx = ctx, .text = v, .why = why};

	return type_of(k)->parse(&in, p);
}

/* The parsed defaults of the keys whose value owns nothing (a number, a
 * flag, a limit): parsed once, then copied, for every service of every
 * load.  At 10,000 services the parses were most of what the load
 * spent on the keys a section does not set. */
#define DEFAULT_SLOTS 128
#define DEFAULT_SLOT_SIZE 64
static unsigned char default_value[DEFAULT_SLOTS][DEFAULT_SLOT_SIZE];
static bool default_parsed[DEFAULT_SLOTS];

int key_parse_default(const struct key_def *k, size_t i, const struct parse_ctx *ctx, void *p,
		      struct sbuf *why)
{
	const struct value_type *t = type_of(k);

	if (t->free || !t->size || t->size > DEFAULT_SLOT_SIZE || i >= DEFAULT_SLOTS || &config_keys[i] != k)
		return key_parse(k, ctx, k->def, p, why);
	if (!default_parsed[i]) {
		if (key_parse(k, ctx, k->def, default_value[i], why) < 0)
			return -1;
		default_parsed[i] = true;
	}
	memcpy(p, default_value[i], t->size);
	return 0;
}

void key_free(const struct key_def *k, void *p)
{
	if (type_of(k)->free)
		type_of(k)->free(p);
}

bool key_equal(const struct key_def *k, const void *a, const void *b)
{
	const struct value_type *t = type_of(k);

	return t->equal ? t->equal(a, b) : memcmp(a, b, t->size) == 0;
}
