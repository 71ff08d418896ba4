/*
 * jscan.c - see jscan.h.  The input is known to be valid JSON, so this
 * only has to find where values end: strings (with their escapes), nesting
 * of objects and arrays, and the bare words of numbers and literals.  Any
 * surprise returns NULL rather than a guess.
 */
#include "autoconfig.h"

#include <stdbool.h>
#include <string.h>

#include "jscan.h"

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
