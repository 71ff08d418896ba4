/*
 * jflat.c - see wire.h.  Every construct it accepts is one that jansson
 * accepts with the same value; the first thing outside that small grammar
 * gives up, so jansson stays the one judge of what is JSON.
 */
#include "autoconfig.h"

#include <stdbool.h>
#include <string.h>

#include "wire.h"

static const char *skip_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

/* Where a bare word (number or literal) may end: JSON's delimiters. */
static bool word_end(const char *p, const char *end)
{
	return p == end || *p == ',' || *p == '}' || *p == ' ' || *p == '\t' || *p == '\n' || *p == '\r';
}

/* An integer as JSON spells it, short enough that it cannot overflow. */
static const char *integer(const char *p, const char *end, json_int_t *out)
{
	bool neg = p < end && *p == '-';
	json_int_t v = 0;
	int digits = 0;

	if (neg)
		p++;
	if (p < end && *p == '0') {
		p++;
		digits = 1;
	} else {
		while (p < end && *p >= '0' && *p <= '9' && digits < 18) {
			v = v * 10 + (*p++ - '0');
			digits++;
		}
	}
	if (!digits || !word_end(p, end))
		return NULL;	/* 01, 1.5, 1e3, a 19th digit: jansson's to judge */
	*out = neg ? -v : v;
	return p;
}

/* The value at P (before END) as a new reference, and *next past it. */
static json_t *value(const char *p, const char *end, const char **next)
{
	const char *q;
	json_int_t i;

	if (*p == '"') {
		if (!(q = jstr_plain_end(p, end)))
			return NULL;
		*next = q;
		return json_stringn_nocheck(p + 1, (size_t)(q - p - 2));
	}
	if ((q = integer(p, end, &i))) {
		*next = q;
		return json_integer(i);
	}
	static const struct {
		const char *word;
		size_t len;
	} lits[] = {{"true", 4}, {"false", 5}, {"null", 4}};
	for (size_t k = 0; k < 3; k++) {
		if ((size_t)(end - p) >= lits[k].len && memcmp(p, lits[k].word, lits[k].len) == 0 &&
		    word_end(p + lits[k].len, end)) {
			*next = p + lits[k].len;
			return k == 0 ? json_true() : k == 1 ? json_false() : json_null();
		}
	}
	return NULL;
}

json_t *jflat_load(const char *text, size_t len)
{
	const char *end = text + len, *p = skip_ws(text, end);
	json_t *obj;

	if (p == end || *p != '{')
		return NULL;
	obj = json_object();
	p = skip_ws(p + 1, end);
	if (p < end && *p == '}')
		goto close;
	for (;;) {
		const char *k = p, *q;
		json_t *v;

		if (!(q = jstr_plain_end(k, end)))
			goto ask_jansson;
		p = skip_ws(q, end);
		if (p == end || *p != ':')
			goto ask_jansson;
		p = skip_ws(p + 1, end);
		if (p == end || !(v = value(p, end, &p)))
			goto ask_jansson;
		size_t before = json_object_size(obj);
		json_object_setn_new_nocheck(obj, k + 1, (size_t)(q - k - 2), v);
		if (json_object_size(obj) == before)
			goto ask_jansson;	/* a duplicate key: jansson names it */
		p = skip_ws(p, end);
		if (p < end && *p == '}')
			break;
		if (p == end || *p != ',')
			goto ask_jansson;
		p = skip_ws(p + 1, end);
	}
close:
	if (skip_ws(p + 1, end) == end)
		return obj;
ask_jansson:
	json_decref(obj);
	return NULL;
}
