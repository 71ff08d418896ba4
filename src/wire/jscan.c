/*
 * jscan.c - see wire.h.  The input is known to be valid JSON, so this
 * only has to find where values end: strings (with their escapes), nesting
 * of objects and arrays, and the bare words of numbers and literals.  Any
 * surprise returns NULL rather than a guess.
 */
#include "autoconfig.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "wire.h"

static const char *skip_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

/* p is at the opening quote; the result is past the closing one. */
static const char *skip_string(const char *p, const char *end)
{
	for (p++; p < end; p++) {
		if (*p == '\\')
			p++;
		else if (*p == '"')
			return p + 1;
	}
	return NULL;
}

static const char *skip_value(const char *p, const char *end)
{
	if (p >= end)
		return NULL;
	if (*p == '"')
		return skip_string(p, end);
	if (*p == '{' || *p == '[') {
		int depth = 0;
		while (p < end) {
			if (*p == '"') {
				p = skip_string(p, end);
				if (!p)
					return NULL;
				continue;
			}
			if (*p == '{' || *p == '[')
				depth++;
			else if ((*p == '}' || *p == ']') && --depth == 0)
				return p + 1;
			p++;
		}
		return NULL;
	}
	const char *start = p;	/* a number, true, false or null */
	while (p < end && (memchr("+-.eE", *p, 5) || (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z')))
		p++;
	return p > start ? p : NULL;
}

const char *jscan_member(const char *text, size_t len, const char *key, size_t *n)
{
	const char *end = text + len, *p = skip_ws(text, end);
	size_t klen = strlen(key);

	if (p == end || *p != '{')
		return NULL;
	p = skip_ws(p + 1, end);
	if (p < end && *p == '}')
		return NULL;
	for (;;) {
		if (p == end || *p != '"')
			return NULL;
		const char *k = p + 1;
		if (!(p = skip_string(p, end)))
			return NULL;
		bool match = (size_t)(p - 1 - k) == klen && memcmp(k, key, klen) == 0;
		p = skip_ws(p, end);
		if (p == end || *p != ':')
			return NULL;
		const char *v = skip_ws(p + 1, end);
		if (!(p = skip_value(v, end)))
			return NULL;
		if (match) {
			*n = (size_t)(p - v);
			return v;
		}
		p = skip_ws(p, end);
		if (p == end || *p != ',')
			return NULL;
		p = skip_ws(p + 1, end);
	}
}

const char *jscan_item(const char *text, size_t len, size_t *at, size_t *n)
{
	const char *end = text + len, *p = skip_ws(text + *at, end);

	if (*at == 0) {
		if (p == end || *p != '[')
			return NULL;
		p = skip_ws(p + 1, end);
	} else if (p < end && *p == ',') {
		p = skip_ws(p + 1, end);
	}
	if (p == end || *p == ']')
		return NULL;
	const char *v = p;
	if (!(p = skip_value(v, end)))
		return NULL;
	*at = (size_t)(p - text);
	*n = (size_t)(p - v);
	return v;
}

size_t jscan_compact(char *out, const char *text, size_t n)
{
	const char *p = text, *end = text + n;
	char *w = out;

	while (p < end) {
		if (*p == '"') {
			const char *q = skip_string(p, end);
			if (!q)
				q = end;
			memcpy(w, p, (size_t)(q - p));
			w += q - p;
			p = q;
		} else if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') {
			p++;
		} else {
			*w++ = *p++;
		}
	}
	return (size_t)(w - out);
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Is P..END exactly a JSON number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static bool is_number(const char *p, const char *end)
{
	const char *d;

	if (p < end && *p == '-')
		p++;
	if (p < end && *p == '0')
		p++;
	else if (p < end && *p >= '1' && *p <= '9')
		while (p < end && is_digit(*p))
			p++;
	else
		return false;
	if (p < end && *p == '.') {
		for (d = ++p; p < end && is_digit(*p); p++)
			;
		if (p == d)
			return false;
	}
	if (p < end && (*p == 'e' || *p == 'E')) {
		if (++p < end && (*p == '+' || *p == '-'))
			p++;
		for (d = p; p < end && is_digit(*p); p++)
			;
		if (p == d)
			return false;
	}
	return p == end;
}

/*
 * Every well-formed number outside a string becomes a 0 of its width,
 * spaces before it (white space may come before any value, and the value
 * still ends where the number did: JSON_DISABLE_EOF_CHECK's position is
 * right), which jansson always holds: it still judges all the rest
 * (strings, nesting, duplicate keys, depth) and its error positions stay
 * those of the text.  A malformed number is left as it is, for jansson to
 * refuse.
 */
int jscan_check(const char *text, size_t len, size_t flags, json_error_t *err)
{
	json_t *v = json_loadb(text, len, flags | JSON_ALLOW_NUL, err);

	if (v) {
		json_decref(v);
		return 0;
	}
	char *copy = xmalloc(len ? len : 1), *end = copy + len;
	memcpy(copy, text, len);
	for (char *p = copy; p < end;) {
		if (*p == '"') {
			const char *q = skip_string(p, end);
			p = q ? copy + (q - copy) : end;
		} else if (*p == '-' || is_digit(*p)) {
			char *q = p;
			while (q < end && (is_digit(*q) || memchr("+-.eE", *q, 5)))
				q++;
			if (is_number(p, q)) {
				memset(p, ' ', (size_t)(q - p - 1));
				q[-1] = '0';
			}
			p = q;
		} else {
			p++;
		}
	}
	v = json_loadb(copy, len, flags | JSON_ALLOW_NUL, err);
	free(copy);
	json_decref(v);
	return v ? 0 : -1;
}

json_t *jscan_load_around(const char *text, size_t len, const char *member, size_t flags, json_error_t *err)
{
	size_t n;
	const char *m = jscan_member(text, len, member, &n);

	if (!m || n < 4)	/* "null" takes its place: shorter, jansson took it */
		return NULL;
	char *copy = xmalloc(len);
	memcpy(copy, text, len);
	memcpy(copy + (m - text), "null", 4);
	memset(copy + (m - text) + 4, ' ', n - 4);	/* same width: same error positions */
	json_t *v = json_loadb(copy, len, flags, err);
	free(copy);
	/* The whole text, not the member alone: jansson's depth limit counts
	 * from the top, and its errors are placed in the text. */
	if (v && jscan_check(text, len, flags, err) < 0) {
		json_decref(v);
		return NULL;
	}
	return v;
}
