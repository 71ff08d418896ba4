/*
 * import_read.c - the line readers of `cohortctl import`: a file becomes
 * sections of (key, value, line) entries, nothing more.  inih is not used:
 * it does not read configparser's indented continuation lines the way
 * Python does (joined values, inline comments only after a blank), nor
 * systemd's backslash continuations, and it keeps no line per key.
 *
 * configparser (supervisord): "key = value" or "key: value" (the first of
 * = and :), keys lower-cased; an indented line continues the value above;
 * full-line comments start with ; or #, and an inline comment is ; or #
 * after a blank (supervisord sets inline_comment_prefixes so); a key given
 * twice keeps the last value (strict = False).
 *
 * systemd: "Key=Value", comments # or ; at the start of a line only, a
 * backslash at the end joins the next line (comment lines in between are
 * skipped), every assignment kept in order (list keys accumulate).
 */
#include "autoconfig.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "import.h"

#define MAX_FILE_SIZE (4 << 20)

static int fail(struct sbuf *err, const char *path, int line, const char *fmt, ...) PRINTF(4, 5);

static int fail(struct sbuf *err, const char *path, int line, const char *fmt, ...)
{
	va_list ap;

	if (line > 0)
		sbuf_addf(err, "%s:%d: ", path, line);
	else
		sbuf_addf(err, "%s: ", path);
	va_start(ap, fmt);
	sbuf_vaddf(err, fmt, ap);
	va_end(ap);
	sbuf_addc(err, '\n');
	return -1;
}

/* The whole file, NUL-terminated, or NULL with the reason in ERR. */
static char *slurp(const char *path, struct sbuf *err)
{
	FILE *fp = fopen(path, "r");
	struct sbuf b = {0};
	char chunk[8192];
	size_t n;

	if (!fp) {
		fail(err, path, 0, "cannot read: %s", strerror(errno));
		return NULL;
	}
	while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0) {
		sbuf_add(&b, chunk, n);
		if (b.len > MAX_FILE_SIZE)
			break;
	}
	int bad = ferror(fp), e = errno;
	fclose(fp);
	if (bad || b.len > MAX_FILE_SIZE) {
		fail(err, path, 0, "cannot read: %s", bad ? strerror(e) : "larger than 4M");
		sbuf_free(&b);
		return NULL;
	}
	if (memchr(b.buf ? b.buf : "", '\0', b.len)) {
		fail(err, path, 0, "not a text file (it holds a NUL byte)");
		sbuf_free(&b);
		return NULL;
	}
	sbuf_add(&b, "", 0);
	return sbuf_steal(&b);
}

static struct imp_section *section_add(struct imp_file *f, const char *name, size_t len, int line)
{
	/* configparser merges a section given twice (strict = False). */
	for (size_t i = 0; f->kind == IMP_SUPERVISORD && i < f->n; i++)
		if (strlen(f->s[i].name) == len && strncmp(f->s[i].name, name, len) == 0)
			return &f->s[i];
	if (f->n == f->cap) {
		f->cap = f->cap ? 2 * f->cap : 8;
		f->s = xrealloc(f->s, f->cap * sizeof(*f->s));
	}
	f->s[f->n] = (struct imp_section){.name = xstrndup(name, len), .line = line};
	return &f->s[f->n++];
}

static struct imp_entry *entry_add(struct imp_section *s, char *key, const char *value, int line)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 16;
		s->e = xrealloc(s->e, s->cap * sizeof(*s->e));
	}
	s->e[s->n] = (struct imp_entry){.key = key, .value = xstrdup(value), .line = line};
	return &s->e[s->n++];
}

static void rtrim(char *s)
{
	size_t n = strlen(s);
	while (n > 0 && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
}

/* configparser's inline comment: ; or # after a blank. */
static void cut_inline_comment(char *s)
{
	for (char *p = s + 1; *p; p++)
		if ((*p == ';' || *p == '#') && isspace((unsigned char)p[-1])) {
			*p = '\0';
			break;
		}
	rtrim(s);
}

/* A "[name]" line: 1 and the name, 0 when not one, -1 on a bad header. */
static int header(char *t, const char **name, size_t *len)
{
	if (t[0] != '[')
		return 0;
	char *end = strchr(t, ']');
	if (!end || end == t + 1)
		return -1;
	*name = t + 1;
	*len = (size_t)(end - t - 1);
	return 1;
}

static int read_configparser(struct imp_file *f, char *text, struct sbuf *err)
{
	struct imp_section *sec = NULL;
	struct imp_entry *last = NULL;
	size_t key_indent = 0;
	int lineno = 0;

	for (char *line = text, *next; line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		lineno++;
		size_t indent = strspn(line, " \t");
		char *t = line + indent;
		rtrim(t);
		if (*t == '\0' || *t == ';' || *t == '#')
			continue;
		cut_inline_comment(t);
		if (last && indent > key_indent) {	/* a continuation line */
			char *joined = *last->value ? xasprintf("%s %s", last->value, t) : xstrdup(t);
			free(last->value);
			last->value = joined;
			continue;
		}
		const char *name;
		size_t len;
		int h = header(t, &name, &len);
		if (h < 0)
			return fail(err, f->path, lineno, "bad section header \"%s\"", t);
		if (h > 0) {
			sec = section_add(f, name, len, lineno);
			last = NULL;
			continue;
		}
		size_t k = strcspn(t, "=:");
		if (t[k] == '\0')
			return fail(err, f->path, lineno, "expected \"key = value\" or \"key: value\", got \"%s\"", t);
		if (!sec)
			return fail(err, f->path, lineno, "\"%s\" comes before any [section]", t);
		char *key = xstrndup(t, k);
		rtrim(key);
		if (!*key) {
			free(key);
			return fail(err, f->path, lineno, "a value with no key: \"%s\"", t);
		}
		for (char *p = key; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		char *value = t + k + 1;
		value += strspn(value, " \t");
		last = entry_add(sec, key, value, lineno);
		key_indent = indent;
	}
	return 0;
}

/* Does T end with a backslash that escapes nothing but the line end?  (As
 * systemd reads it: "\\\\" at the end is a backslash, not a continuation.) */
static bool ends_escaped(const char *t)
{
	bool escaped = false;

	for (; *t; t++)
		escaped = escaped ? false : *t == '\\';
	return escaped;
}

static int read_systemd(struct imp_file *f, char *text, struct sbuf *err)
{
	struct imp_section *sec = NULL;
	struct sbuf joined = {0};
	int lineno = 0, start = 0;

	for (char *line = text, *next; line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		lineno++;
		char *t = line + strspn(line, " \t");
		rtrim(t);
		if (*t == '#' || *t == ';' || (*t == '\0' && !joined.len))
			continue;
		size_t n = strlen(t);
		bool more = ends_escaped(t);
		if (!joined.len)
			start = lineno;
		if (more)
			t[n - 1] = ' ';
		sbuf_adds(&joined, t);
		if (more && next)
			continue;
		char *whole = sbuf_steal(&joined);
		rtrim(whole);
		const char *name;
		size_t len;
		int h = header(whole, &name, &len), rc = 0;
		if (h < 0 || (h > 0 && whole[len + 2] != '\0'))
			rc = fail(err, f->path, start, "bad section header \"%s\"", whole);
		else if (h > 0)
			sec = section_add(f, name, len, start);
		else if (!strchr(whole, '='))
			rc = fail(err, f->path, start, "expected \"Key=Value\", got \"%s\"", whole);
		else if (!sec)
			rc = fail(err, f->path, start, "\"%s\" comes before any [Section]", whole);
		else {
			size_t k = strcspn(whole, "=");
			char *key = xstrndup(whole, k);
			rtrim(key);
			const char *value = whole + k + 1;
			value += strspn(value, " \t");
			if (!*key) {
				free(key);
				rc = fail(err, f->path, start, "an assignment with no key: \"%s\"", whole);
			} else {
				entry_add(sec, key, value, start);
			}
		}
		free(whole);
		if (rc < 0)
			return -1;
	}
	sbuf_free(&joined);
	return 0;
}

static bool has_line_starting(const char *text, const char *what)
{
	for (const char *p = text; p; p = strchr(p, '\n')) {
		if (*p == '\n')
			p++;
		p += strspn(p, " \t");
		if (str_starts(p, what))
			return true;
	}
	return false;
}

char *imp_abspath(const char *path)
{
	char cwd[4096];
	char *full = path[0] == '/' || !getcwd(cwd, sizeof(cwd)) ? xstrdup(path) : path_join(cwd, path);
	struct strv parts = {0};
	char *save = NULL;

	for (char *p = strtok_r(full, "/", &save); p; p = strtok_r(NULL, "/", &save)) {
		if (strcmp(p, ".") == 0)
			continue;
		if (strcmp(p, "..") == 0) {
			if (parts.n)
				free(parts.v[--parts.n]);
			continue;
		}
		strv_push(&parts, p);
	}
	if (parts.v)
		parts.v[parts.n] = NULL;
	char *joined = strv_join(&parts, "/");
	char *out = xasprintf("/%s", joined);
	free(joined);
	free(full);
	strv_free(&parts);
	return out;
}

static int read_as(const char *path, int kind, struct imp_file *f, struct sbuf *err)
{
	char *dir = path_dirname(path);
	*f = (struct imp_file){.path = xstrdup(path), .dir = imp_abspath(dir)};
	free(dir);
	char *text = slurp(path, err);
	if (!text)
		return -1;
	size_t n = strlen(path);
	if (kind >= 0)
		f->kind = (enum imp_kind)kind;
	else if ((n > 8 && strcmp(path + n - 8, ".service") == 0) || has_line_starting(text, "[Service]"))
		f->kind = IMP_SYSTEMD;
	else if (has_line_starting(text, "[program:") || has_line_starting(text, "[supervisord]"))
		f->kind = IMP_SUPERVISORD;
	else {
		free(text);
		return fail(err, path, 0,
			    "neither a systemd unit (a .service name or a [Service] section) nor a "
			    "supervisord config (a [program:NAME] or [supervisord] section)");
	}
	int rc = f->kind == IMP_SYSTEMD ? read_systemd(f, text, err) : read_configparser(f, text, err);
	free(text);
	return rc;
}

int imp_read_file(const char *path, struct imp_file *f, struct sbuf *err)
{
	return read_as(path, -1, f, err);
}

int imp_read_kind(const char *path, enum imp_kind kind, struct imp_file *f, struct sbuf *err)
{
	return read_as(path, (int)kind, f, err);
}

const struct imp_entry *imp_section_get(const struct imp_section *s, const char *key)
{
	for (size_t i = s->n; i-- > 0;)
		if (strcmp(s->e[i].key, key) == 0)
			return &s->e[i];
	return NULL;
}

void imp_file_free(struct imp_file *f)
{
	for (size_t i = 0; i < f->n; i++) {
		for (size_t j = 0; j < f->s[i].n; j++) {
			free(f->s[i].e[j].key);
			free(f->s[i].e[j].value);
		}
		free(f->s[i].e);
		free(f->s[i].name);
	}
	free(f->s);
	free(f->path);
	free(f->dir);
	*f = (struct imp_file){0};
}
