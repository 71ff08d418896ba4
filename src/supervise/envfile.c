/*
 * envfile.c - see envfile.h.  The format, as systemd reads it:
 *   - blank lines, and lines whose first non-blank is # or ;, are skipped;
 *   - NAME=VALUE, blanks allowed around NAME, the = and before VALUE;
 *     NAME is [A-Za-z_][A-Za-z0-9_]*;
 *   - in VALUE, "..." keeps everything but a backslash before " \ ` $ or a
 *     newline (a newline after one is dropped); '...' keeps everything; a
 *     backslash outside quotes takes the next character as it is, and one
 *     at the end of a line joins the next line; blanks at the end of an
 *     unquoted value are dropped.
 * A bad line is an error naming the file and line (systemd would skip it
 * with a warning in its journal; here the service would start without the
 * variable and nobody would look).
 */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "envfile.h"

#define ENVFILE_MAX (1 << 20)	/* bytes of one file */

static bool name_start(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static bool name_char(char c)
{
	return name_start(c) || (c >= '0' && c <= '9');
}

static bool blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/* The value from *pp up to its end of line (past continuations); *line
 * counts the lines it spans.  -1 on an unterminated quote. */
static int parse_value(const char **pp, const char *end, int *line, struct sbuf *v)
{
	const char *p = *pp;
	size_t keep = 0;	/* v's length up to its last quoted or escaped char */

	while (p < end && *p != '\n') {
		char c = *p++;
		if (c == '\\') {
			if (p < end && *p == '\n') {
				(*line)++;
				p++;
				continue;
			}
			if (p < end)
				sbuf_addc(v, *p++);
			keep = v->len;
		} else if (c == '\'' || c == '"') {
			for (;;) {
				if (p >= end)
					return -1;
				char q = *p++;
				if (q == c)
					break;
				if (q == '\n')
					(*line)++;
				if (c == '"' && q == '\\' && p < end && *p && strchr("\"\\`$\n", *p)) {
					if (*p == '\n')
						(*line)++;
					else
						sbuf_addc(v, *p);
					p++;
					continue;
				}
				sbuf_addc(v, q);
			}
			keep = v->len;
		} else {
			sbuf_addc(v, c);
			if (!blank(c))
				keep = v->len;
		}
	}
	if (v->len > keep)
		v->len = keep;	/* trailing blanks of an unquoted value */
	if (v->buf)
		v->buf[v->len] = '\0';
	*pp = p;
	return 0;
}

int envfile_parse(const char *text, size_t len, const char *file, struct strv *out, char *err, size_t errlen)
{
	const char *p = text, *end = text + len;
	int line = 1;

	while (p < end) {
		int at = line;
		while (p < end && blank(*p))
			p++;
		if (p < end && (*p == '#' || *p == ';' || *p == '\n')) {
			while (p < end && *p != '\n')
				p++;
			p++, line++;
			continue;
		}
		if (p >= end)
			break;
		const char *name = p;
		while (p < end && name_char(*p))
			p++;
		size_t nlen = (size_t)(p - name);
		while (p < end && blank(*p))
			p++;
		if (!nlen || !name_start(*name) || p >= end || *p != '=') {
			snprintf(err, errlen, "%s:%d: expected NAME=VALUE (NAME of letters, digits and _, not "
				 "starting with a digit)", file, at);
			return -1;
		}
		p++;
		while (p < end && blank(*p))
			p++;
		struct sbuf v = {0};
		if (parse_value(&p, end, &line, &v) < 0) {
			snprintf(err, errlen, "%s:%d: a quote is not closed", file, at);
			sbuf_free(&v);
			return -1;
		}
		strv_push_owned(out, xasprintf("%.*s=%s", (int)nlen, name, v.buf ? v.buf : ""));
		sbuf_free(&v);
		p++, line++;
	}
	return 0;
}

static int read_text(const char *path, char **text, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;

	if (fd < 0)
		return -1;
	int e = fstat(fd, &st) < 0 ? errno : !S_ISREG(st.st_mode) ? EINVAL : st.st_size > ENVFILE_MAX ? EFBIG : 0;
	if (e) {
		close(fd);
		errno = e;
		return -1;
	}
	*text = xmalloc((size_t)st.st_size + 1);
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, *text + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	*len = got;
	return 0;
}

int envfile_load(const struct strv *files, struct strv *out, char *err, size_t errlen)
{
	for (size_t i = 0; i < files->n; i++) {
		const char *path = files->v[i];
		bool optional = *path == '-';
		char *text;
		size_t len;
		if (optional)
			path++;
		if (read_text(path, &text, &len) < 0) {
			if (optional && errno == ENOENT)
				continue;
			int e = errno;
			snprintf(err, errlen, "environment_file %s: %s", path,
				 e == EINVAL ? "not a regular file" : e == EFBIG ? "over 1 MiB" : strerror(e));
			errno = e;
			return -1;
		}
		int rc = envfile_parse(text, len, path, out, err, errlen);
		free(text);
		if (rc < 0) {
			errno = 0;
			return -1;
		}
	}
	return 0;
}
