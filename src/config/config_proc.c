/*
 * config_proc.c - the value types of the keys that set what a service's
 * process gets from the kernel before exec (limit_*, nice,
 * oom_score_adjust) and environment_file.  Each is "" for "as cohortd
 * has it", so a key left out changes nothing.  The values are applied in
 * the child by spawn_limits.c; environment_file is read at each start by
 * envfile.c (as systemd does: the file may change between starts).
 */
#include "autoconfig.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config_keys.h"

/* "infinity", a count, or a size (512M); UINT64_MAX is infinity. */
static int parse_rlim_one(const char *s, uint64_t *out)
{
	const char *w;

	if (strcasecmp(s, "infinity") == 0 || strcasecmp(s, "unlimited") == 0) {
		*out = UINT64_MAX;
		return 0;
	}
	if (*s && strspn(s, "0123456789") == strlen(s)) {
		errno = 0;
		unsigned long long v = strtoull(s, NULL, 10);
		if (errno || v == UINT64_MAX)
			return -1;
		*out = v;
		return 0;
	}
	return parse_size(s, out, &w);
}

static int parse_rlimit(const char *v, struct svc_rlimit *out, struct sbuf *why)
{
	struct svc_rlimit r = {0};

	if (*v) {
		const char *colon = strchr(v, ':');
		char *soft = colon ? xstrndup(v, (size_t)(colon - v)) : xstrdup(v);
		int rc = parse_rlim_one(soft, &r.cur);
		if (rc == 0)
			rc = parse_rlim_one(colon ? colon + 1 : soft, &r.max);
		free(soft);
		if (rc < 0) {
			sbuf_adds(why, "expected a number, a size such as 512M, infinity, or SOFT:HARD of those");
			return -1;
		}
		if (r.cur > r.max) {
			sbuf_adds(why, "the soft limit is above the hard one");
			return -1;
		}
		r.set = true;
	}
	*out = r;
	return 0;
}

static int parse_int_range(const char *v, int lo, int hi, int *out, struct sbuf *why)
{
	char *end;

	if (!*v) {
		*out = SVC_INT_UNSET;
		return 0;
	}
	errno = 0;
	long n = strtol(v, &end, 10);
	if (errno || *end || end == v || n < lo || n > hi) {
		sbuf_addf(why, "expected a whole number from %d to %d, or nothing", lo, hi);
		return -1;
	}
	*out = (int)n;
	return 0;
}

/* Comma-separated paths, relative ones from the file's directory; a
 * leading - (kept) marks a file that may be missing. */
static int parse_envfiles(const struct parse_ctx *ctx, const char *v, struct strv *out, struct sbuf *why)
{
	struct strv files = {0};
	char *copy = xstrdup(v), *save = NULL;

	for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
		item = str_trim(item);
		bool optional = *item == '-';
		if (optional)
			item = str_trim(item + 1);
		if (!*item) {
			sbuf_adds(why, "expected paths of files, separated by commas (-PATH: may be missing)");
			strv_free(&files);
			free(copy);
			return -1;
		}
		char *path = path_join(ctx->dir, item);
		strv_push_owned(&files, optional ? xasprintf("-%s", path) : xstrdup(path));
		free(path);
	}
	free(copy);
	strv_free(out);
	*out = files;
	return 0;
}

int key_parse_proc(enum key_type t, const struct parse_ctx *ctx, const char *v, void *p, struct sbuf *why)
{
	switch (t) {
	case K_RLIMIT:
		return parse_rlimit(v, p, why);
	case K_NICE:
		return parse_int_range(v, -20, 19, p, why);
	case K_OOM:
		return parse_int_range(v, -1000, 1000, p, why);
	case K_ENVFILES:
		return parse_envfiles(ctx, v, p, why);
	default:
		sbuf_adds(why, "expected a valid value");
		return -1;
	}
}

bool key_equal_proc(enum key_type t, const void *a, const void *b)
{
	switch (t) {
	case K_RLIMIT: {
		const struct svc_rlimit *x = a, *y = b;
		return x->set == y->set && x->cur == y->cur && x->max == y->max;
	}
	case K_NICE:
	case K_OOM:
		return *(const int *)a == *(const int *)b;
	case K_ENVFILES:
		return strv_equal(a, b);
	default:
		return false;
	}
}
