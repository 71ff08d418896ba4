/*
 * util.c - see util.h.  Kept free of cohort's own types so every program
 * (cohortd, cohortctl, libcohort, the tests) can link it.
 */
#include "autoconfig.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

static void oom(size_t n)
{
	fprintf(stderr, "cohort: out of memory allocating %zu bytes\n", n);
	abort();
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		oom(n);
	return p;
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p)
		oom(n * size);
	return p;
}

void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		oom(n);
	return q;
}

char *xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *xasprintf(const char *fmt, ...)
{
	struct sbuf b = {0};
	va_list ap;

	va_start(ap, fmt);
	sbuf_vaddf(&b, fmt, ap);
	va_end(ap);
	if (!b.buf)
		return xstrdup("");
	return b.buf;
}

static void sbuf_grow(struct sbuf *b, size_t extra)
{
	size_t need = b->len + extra + 1;

	if (need <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap *= 2;
	b->buf = xrealloc(b->buf, cap);
	b->cap = cap;
}

char *sbuf_reserve(struct sbuf *b, size_t n)
{
	sbuf_grow(b, n);
	return b->buf + b->len;
}

void sbuf_commit(struct sbuf *b, char *end)
{
	b->len = (size_t)(end - b->buf);
	b->buf[b->len] = '\0';
}

void sbuf_add(struct sbuf *b, const void *data, size_t n)
{
	sbuf_grow(b, n);
	if (n)
		memcpy(b->buf + b->len, data, n);
	b->len += n;
	b->buf[b->len] = '\0';
}

void sbuf_adds(struct sbuf *b, const char *s)
{
	sbuf_add(b, s, strlen(s));
}

void sbuf_addc(struct sbuf *b, char c)
{
	sbuf_add(b, &c, 1);
}

void sbuf_vaddf(struct sbuf *b, const char *fmt, va_list ap)
{
	va_list ap2;
	int n;

	va_copy(ap2, ap);
	n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		return;
	sbuf_grow(b, (size_t)n);
	vsnprintf(b->buf + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
}

void sbuf_addf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	sbuf_vaddf(b, fmt, ap);
	va_end(ap);
}

void sbuf_consume(struct sbuf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
		if (b->buf)
			b->buf[0] = '\0';
		return;
	}
	memmove(b->buf, b->buf + n, b->len - n);
	b->len -= n;
	b->buf[b->len] = '\0';
}

char *sbuf_steal(struct sbuf *b)
{
	char *s = b->buf ? b->buf : xstrdup("");

	b->buf = NULL;
	b->len = b->cap = 0;
	return s;
}

void sbuf_free(struct sbuf *b)
{
	free(b->buf);
	b->buf = NULL;
	b->len = b->cap = 0;
}

void strv_push_owned(struct strv *sv, char *s)
{
	if (sv->n + 2 > sv->cap) {
		sv->cap = sv->cap ? sv->cap * 2 : 4;
		sv->v = xrealloc(sv->v, sv->cap * sizeof(*sv->v));
	}
	sv->v[sv->n++] = s;
	sv->v[sv->n] = NULL;
}

void strv_push(struct strv *sv, const char *s)
{
	strv_push_owned(sv, xstrdup(s));
}

void strv_free(struct strv *sv)
{
	for (size_t i = 0; i < sv->n; i++)
		free(sv->v[i]);
	free(sv->v);
	sv->v = NULL;
	sv->n = sv->cap = 0;
}

void strv_pack(struct strv *sv)
{
	size_t room = (sv->n + 1) * sizeof(char *);

	if (!sv->v)
		return;	/* empty, and nothing allocated */
	for (size_t i = 0; i < sv->n; i++)
		room += strlen(sv->v[i]) + 1;
	char **v = xmalloc(room);
	char *at = (char *)(v + sv->n + 1);
	for (size_t i = 0; i < sv->n; i++) {
		size_t len = strlen(sv->v[i]) + 1;
		v[i] = memcpy(at, sv->v[i], len);
		at += len;
	}
	v[sv->n] = NULL;
	size_t n = sv->n;
	strv_free(sv);
	*sv = (struct strv){.v = v, .n = n, .cap = n + 1};
}

void strv_copy(struct strv *dst, const struct strv *src)
{
	*dst = (struct strv){0};
	for (size_t i = 0; i < src->n; i++)
		strv_push(dst, src->v[i]);
}

bool strv_equal(const struct strv *a, const struct strv *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (strcmp(a->v[i], b->v[i]) != 0)
			return false;
	return true;
}

bool strv_contains(const struct strv *sv, const char *s)
{
	for (size_t i = 0; i < sv->n; i++)
		if (strcmp(sv->v[i], s) == 0)
			return true;
	return false;
}

char *strv_join(const struct strv *sv, const char *sep)
{
	struct sbuf b = {0};

	for (size_t i = 0; i < sv->n; i++) {
		if (i)
			sbuf_adds(&b, sep);
		sbuf_adds(&b, sv->v[i]);
	}
	return sbuf_steal(&b);
}

static int64_t clock_ms(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t now_mono_ms(void)
{
	return clock_ms(CLOCK_MONOTONIC);
}

int64_t now_wall_ms(void)
{
	return clock_ms(CLOCK_REALTIME);
}

void format_wall_ms(int64_t ms, char *buf, size_t len)
{
	time_t secs = (time_t)(ms / 1000);
	struct tm tm;
	char tmp[32];

	gmtime_r(&secs, &tm);
	strftime(tmp, sizeof(tmp), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, len, "%s.%03dZ", tmp, (int)(ms % 1000));
}

/* Parses "<number>[.<frac>]<unit>" where the number part is decimal.
 * Shared by durations and sizes; units[] maps suffixes to multipliers. */
struct unit {
	const char *suffix;
	double mult;
};

static int parse_scaled(const char *s, const struct unit *units, size_t nunits,
			double bare_mult, double max, double *out)
{
	char *end;
	double v;

	while (isspace((unsigned char)*s))
		s++;
	if (!isdigit((unsigned char)*s) && *s != '.')
		return -1;
	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || !isfinite(v) || v < 0)
		return -1;
	/* strtod accepts hex and exponents; we want plain decimals only. */
	for (const char *p = s; p < end; p++)
		if (!isdigit((unsigned char)*p) && *p != '.')
			return -1;
	while (isspace((unsigned char)*end))
		end++;
	char unit[8];
	size_t ul = 0;
	while (*end && !isspace((unsigned char)*end) && ul < sizeof(unit) - 1)
		unit[ul++] = *end++;
	unit[ul] = '\0';
	while (isspace((unsigned char)*end))
		end++;
	if (*end)
		return -1;
	double mult = bare_mult;
	if (ul) {
		size_t i;
		for (i = 0; i < nunits; i++)
			if (strcasecmp(unit, units[i].suffix) == 0)
				break;
		if (i == nunits)
			return -1;
		mult = units[i].mult;
	}
	v *= mult;
	if (v > max)
		return -1;
	*out = v;
	return 0;
}

int parse_duration_ms(const char *s, int64_t *out, const char **why)
{
	static const struct unit units[] = {
		{"ms", 1}, {"s", 1000}, {"sec", 1000}, {"m", 60000},
		{"min", 60000}, {"h", 3600000}, {"d", 86400000},
	};
	double v;

	/* 100 days: far beyond any sane timeout, far below overflow. */
	if (parse_scaled(s, units, ARRAY_LEN(units), 1000, 100.0 * 86400000, &v) < 0) {
		*why = "a duration such as 250ms, 10s, 2m or 1h (a bare number is seconds, at most 100d)";
		return -1;
	}
	*out = (int64_t)(v + 0.5);	/* v >= 0: llround without libm */
	return 0;
}

int parse_size(const char *s, uint64_t *out, const char **why)
{
	static const struct unit units[] = {
		{"B", 1}, {"K", 1024.0}, {"KB", 1024.0}, {"KiB", 1024.0},
		{"M", 1048576.0}, {"MB", 1048576.0}, {"MiB", 1048576.0},
		{"G", 1073741824.0}, {"GB", 1073741824.0}, {"GiB", 1073741824.0},
	};
	double v;

	if (parse_scaled(s, units, ARRAY_LEN(units), 1, 1099511627776.0, &v) < 0) {
		*why = "a size such as 512K, 10M or 1G (a bare number is bytes, at most 1024G)";
		return -1;
	}
	*out = (uint64_t)(v + 0.5);
	return 0;
}

int parse_bool(const char *s, bool *out, const char **why)
{
	static const char *const yes[] = {"yes", "true", "on", "1"};
	static const char *const no[] = {"no", "false", "off", "0"};

	for (size_t i = 0; i < ARRAY_LEN(yes); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	*why = "yes/no, true/false, on/off or 1/0";
	return -1;
}

int parse_uint(const char *s, uint64_t max, uint64_t *out, const char **why)
{
	char *end;
	unsigned long long v;

	*why = "a whole number";
	if (!isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v > max)
		return -1;
	*out = v;
	return 0;
}

char *put_decimal(char *w, uint64_t v)
{
	char tmp[20];
	size_t n = 0;

	do
		tmp[n++] = (char)('0' + v % 10);
	while ((v /= 10));
	while (n)
		*w++ = tmp[--n];
	return w;
}

/* Without printf: `cohortctl status` formats one per service. */
static void format_duration(int64_t ms, bool to_the_ms, char *buf, size_t len)
{
	static const struct {
		char name;
		int64_t ms;
	} units[] = {
		{'d', 86400000}, {'h', 3600000}, {'m', 60000}, {'s', 1000},
	};
	char tmp[48], *w = tmp;

	if (ms < 0)
		ms = 0;
	if (ms < 1000) {
		w = put_decimal(w, (uint64_t)ms);
		*w++ = 'm';
		*w++ = 's';
	} else {
		size_t i = 0;
		while (ms < units[i].ms)
			i++;
		w = put_decimal(w, (uint64_t)(ms / units[i].ms));
		*w++ = units[i].name;
		if (i + 1 < ARRAY_LEN(units)) {
			int64_t small = (ms % units[i].ms) / units[i + 1].ms;
			if (small) {
				w = put_decimal(w, (uint64_t)small);
				*w++ = units[i + 1].name;
			}
		} else if (to_the_ms && ms % 1000) {
			w = put_decimal(w, (uint64_t)(ms % 1000));
			*w++ = 'm';
			*w++ = 's';
		}
	}
	size_t n = (size_t)(w - tmp);
	if (!len)
		return;
	if (n >= len)
		n = len - 1;
	memcpy(buf, tmp, n);
	buf[n] = '\0';
}

void format_duration_ms(int64_t ms, char *buf, size_t len)
{
	format_duration(ms, false, buf, len);
}

/* A backoff's delay of 1963 ms was said "1s": under a minute, the
 * milliseconds are kept. */
void format_delay_ms(int64_t ms, char *buf, size_t len)
{
	format_duration(ms, true, buf, len);
}

/* Optimal string alignment distance: Levenshtein plus adjacent
 * transpositions ("lgo" -> "log" is one edit), case-insensitive. */
size_t edit_distance(const char *a, const char *b, size_t cap)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t rows[3][128];
	size_t *prev2 = rows[0], *prev = rows[1], *cur = rows[2];

	if ((la > lb ? la - lb : lb - la) > cap || lb >= ARRAY_LEN(rows[0]))
		return cap + 1;
	for (size_t j = 0; j <= lb; j++)
		prev[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t best = cur[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			int ca = tolower((unsigned char)a[i - 1]), cb = tolower((unsigned char)b[j - 1]);
			size_t v = prev[j - 1] + (ca != cb);
			if (prev[j] + 1 < v)
				v = prev[j] + 1;
			if (cur[j - 1] + 1 < v)
				v = cur[j - 1] + 1;
			if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) &&
			    tolower((unsigned char)a[i - 2]) == cb && prev2[j - 2] + 1 < v)
				v = prev2[j - 2] + 1;
			cur[j] = v;
			if (v < best)
				best = v;
		}
		if (best > cap)
			return cap + 1;
		size_t *t = prev2;
		prev2 = prev;
		prev = cur;
		cur = t;
	}
	return prev[lb];
}

const char *did_you_mean(const char *word, const char *const *cands, size_t n)
{
	size_t len = strlen(word);
	/* One typo per three letters, at most three: "comand" -> "command". */
	size_t cap = len / 3 > 3 ? 3 : len / 3;
	const char *best = NULL;
	size_t best_d;

	if (cap == 0)
		cap = 1;
	best_d = cap + 1;
	for (size_t i = 0; i < n; i++) {
		size_t d = edit_distance(word, cands[i], cap);
		if (d < best_d) {
			best_d = d;
			best = cands[i];
		}
	}
	return best;
}

void str_copy(char *dst, size_t len, const char *src)
{
	size_t n = strlen(src);

	if (len == 0)
		return;
	if (n >= len) {
		n = len - 1;
		/* Back off to the start of a character. */
		while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
			n--;
	}
	memcpy(dst, src, n);
	dst[n] = '\0';
}

void str_set(char **dst, const char *src)
{
	if (*dst && src && strcmp(*dst, src) == 0)
		return;	/* the same text (or src is *dst) */
	free(*dst);
	*dst = src && *src ? xstrdup(src) : NULL;
}

size_t utf8_seq(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	size_t len;
	unsigned char lo = 0x80, hi = 0xBF;

	if (c >= 0x01 && c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		len = 2;
	else if (c >= 0xE0 && c <= 0xEF) {
		len = 3;
		if (c == 0xE0)
			lo = 0xA0;	/* no overlong forms */
		if (c == 0xED)
			hi = 0x9F;	/* no surrogates */
	} else if (c >= 0xF0 && c <= 0xF4) {
		len = 4;
		if (c == 0xF0)
			lo = 0x90;
		if (c == 0xF4)
			hi = 0x8F;	/* nothing above U+10FFFF */
	} else {
		return 0;
	}
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if ((s[i] & 0xC0) != 0x80)
			return 0;
	return len;
}

bool utf8_valid(const void *s, size_t n)
{
	const unsigned char *p = s;

	for (size_t i = 0; i < n;) {
		/* ASCII eight bytes at a time: every frame a client sends is
		 * checked, and this was 7 % of a publishing cohortd's time. */
		uint64_t w;
		while (n - i >= sizeof(w) && (memcpy(&w, p + i, sizeof(w)), (w & 0x8080808080808080ULL) == 0))
			i += sizeof(w);
		if (i == n)
			break;
		size_t k = p[i] ? utf8_seq(p + i, n - i) : 1;
		if (k == 0)
			return false;
		i += k;
	}
	return true;
}

void utf8_fix(char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		size_t k = utf8_seq((const unsigned char *)s + i, n - i);
		if (k == 0) {
			s[i++] = '?';
			continue;
		}
		i += k;
	}
}

char *utf8_clean(const char *s, size_t n)
{
	struct sbuf b = {0};

	for (size_t i = 0; i < n;) {
		size_t k = utf8_seq((const unsigned char *)s + i, n - i);
		if (k == 0) {
			sbuf_add(&b, "\xEF\xBF\xBD", 3);	/* U+FFFD */
			i++;
			continue;
		}
		sbuf_add(&b, s + i, k);
		i += k;
	}
	return sbuf_steal(&b);
}

char *str_trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	size_t n = strlen(s);
	while (n && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
	return s;
}

bool str_starts(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

bool glob_match(const char *p, const char *s)
{
	const char *star = NULL, *resume = NULL;

	while (*s) {
		if (*p == '?' || (*p && *p != '*' && *p == *s)) {
			p++;
			s++;
		} else if (*p == '*') {
			star = p++;
			resume = s;
		} else if (star) {
			p = star + 1;
			s = ++resume;
		} else {
			return false;
		}
	}
	while (*p == '*')
		p++;
	return *p == '\0';
}

int mkdir_p(const char *path, unsigned mode)
{
	char buf[PATH_MAX];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof(buf)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1; ; p++) {
		if (*p == '/' || *p == '\0') {
			char c = *p;
			*p = '\0';
			if (mkdir(buf, mode) < 0 && errno != EEXIST)
				return -1;
			*p = c;
			if (c == '\0')
				break;
		}
	}
	struct stat st;
	if (stat(path, &st) < 0)
		return -1;
	if (!S_ISDIR(st.st_mode)) {
		errno = ENOTDIR;
		return -1;
	}
	return 0;
}

int write_file_atomic(const char *path, const void *data, size_t len)
{
	char *tmp = xasprintf("%s.new", path);
	char *dir = path_dirname(path);
	int fd = -1, rc = -1, saved;

	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		goto out;
	const char *p = data;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			goto out;
		}
		p += n;
		len -= (size_t)n;
	}
	if (fsync(fd) < 0)
		goto out;
	if (close(fd) < 0) {
		fd = -1;
		goto out;
	}
	fd = -1;
	if (rename(tmp, path) < 0)
		goto out;
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
	rc = 0;
out:
	saved = errno;
	if (fd >= 0)
		close(fd);
	if (rc < 0)
		unlink(tmp);
	free(tmp);
	free(dir);
	errno = saved;
	return rc;
}

char *path_dirname(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		return xstrdup(".");
	if (slash == path)
		return xstrdup("/");
	return xstrndup(path, (size_t)(slash - path));
}

char *path_join(const char *dir, const char *path)
{
	if (path[0] == '/' || !dir || !dir[0] || strcmp(dir, ".") == 0)
		return xstrdup(path);
	return xasprintf("%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", path);
}

int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0)
		return -1;
	return fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

int set_cloexec(int fd)
{
	int fl = fcntl(fd, F_GETFD);

	if (fl < 0)
		return -1;
	return fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
}
