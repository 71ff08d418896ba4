/* Unit tests of jstr.c: JSON string text written and read without jansson,
 * checked against jansson itself. */
#include "autoconfig.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

/* S escaped and quoted, as a new string. */
static char *escaped(const char *s, size_t n)
{
	char *out = malloc(JSTR_ESCAPED_MAX(n) + 3);
	char *w = out;

	*w++ = '"';
	w = jstr_escape(w, s, n);
	*w++ = '"';
	*w = '\0';
	cr_assert_leq((size_t)(w - out), JSTR_ESCAPED_MAX(n) + 2);
	return out;
}

/* The value jansson reads from the quoted text, or NULL if it refuses. */
static char *jansson_reads(const char *quoted, size_t *len)
{
	json_error_t err;
	json_t *v = json_loads(quoted, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);

	if (!v)
		return NULL;
	*len = json_string_length(v);
	char *s = malloc(*len + 1);
	memcpy(s, json_string_value(v), *len + 1);
	json_decref(v);
	return s;
}

/* jstr_unescape of exactly N bytes, decoded in place (a copy with no NUL
 * after it: ASan and valgrind see any read past the end): the value and
 * *len, or NULL. */
static char *unescaped(const char *text, size_t n, size_t *len)
{
	char *copy = malloc(n ? n : 1);
	memcpy(copy, text, n);
	char *end = jstr_unescape(copy, copy, n);
	if (!end) {
		free(copy);
		return NULL;
	}
	*len = (size_t)(end - copy);
	cr_assert_leq(*len + 2, n);
	return copy;
}

Test(jstr, escape_round_trips_through_jansson_and_back)
{
	static const struct {
		const char *s;
		size_t n;
	} cases[] = {
#define CASE(lit) {lit, sizeof(lit) - 1}
		CASE("plain text"),
		CASE(""),
		CASE("quote \" backslash \\ slash /"),
		CASE("line\nbreak\ttab\rcr"),
		CASE("\x01\x1f\x7f control"),
		CASE("\033[32mrunning\033[0m"),
		CASE("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"),
		CASE("nul \0 inside"),
#undef CASE
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *q = escaped(cases[i].s, cases[i].n);
		size_t len;
		char *back = jansson_reads(q, &len);
		cr_assert(back, "jansson refuses %s", q);
		cr_assert_eq(len, cases[i].n, "case %zu", i);
		cr_assert(memcmp(back, cases[i].s, len) == 0, "case %zu", i);
		char *out = unescaped(q, strlen(q), &len);
		cr_assert(out, "%s", q);
		cr_assert_eq(len, cases[i].n, "case %zu", i);
		cr_assert(memcmp(out, cases[i].s, len) == 0, "case %zu", i);
		free(out);
		free(back);
		free(q);
	}
}

Test(jstr, bytes_that_are_not_utf8_become_the_replacement_character)
{
	static const char *const bad[] = {
		"\xff", "\xc3", "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xf0\x9f\x98",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *q = escaped(bad[i], strlen(bad[i]));
		size_t len;
		char *back = jansson_reads(q, &len);
		cr_assert(back, "jansson refuses %s (case %zu)", q, i);
		cr_assert(strstr(back, "\xef\xbf\xbd"), "case %zu: %s", i, q);
		free(back);
		free(q);
	}
}

Test(jstr, unescape_reads_what_jansson_writes)
{
	json_t *v = json_string("a\"b\\c\nd\x01 caf\xc3\xa9 \xf0\x9f\x98\x80");
	char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_ENSURE_ASCII);	/* \u00e9, a surrogate pair */
	size_t len;

	cr_assert(strstr(text, "\\uD83D\\uDE00"), "%s", text);
	char *out = unescaped(text, strlen(text), &len);
	cr_assert(out, "%s", text);
	cr_assert_eq(len, json_string_length(v));
	cr_assert(memcmp(out, json_string_value(v), len) == 0);
	free(out);
	free(text);
	json_decref(v);
}

Test(jstr, malformed_strings_are_refused)
{
	static const char *const bad[] = {
		"",		  "\"",		 "abc",		  "\"abc",	  "abc\"",
		"\"a\"b\"",	  "\"a\\\"",	 "\"\\x\"",	  "\"\\u12\"",	  "\"\\u12g4\"",
		"\"\\udc00\"",	  "\"\\ud83d\"", "\"\\ud83dx\"",  "\"\\ud83d\\u0041\"", "\"tab\there\"",
		"\"nl\nhere\"",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		size_t len;
		cr_assert_null(unescaped(bad[i], strlen(bad[i]), &len), "accepted %s", bad[i]);
	}
}

Test(jstr, plain_strings_end_where_jansson_says)
{
	static const char *const plain[] = {"\"\"", "\"abc\"", "\"caf\xc3\xa9 \xf0\x9f\x98\x80\"", "\"x\",1"};
	static const size_t ends[] = {2, 5, 12, 3};
	static const char *const ask[] = {
		"", "abc", "\"", "\"open", "\"esc\\n\"", "\"tab\there\"", "\"\xff\"", "\"\xc3\"", "\"nul\0\"",
	};

	for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
		size_t n = strlen(plain[i]);
		char *copy = malloc(n);	/* no NUL after: a read past END shows */
		memcpy(copy, plain[i], n);
		cr_assert_eq(jstr_plain_end(copy, copy + n), copy + ends[i], "%s", plain[i]);
		json_error_t err;
		json_t *v = json_loadb(copy, n, JSON_DECODE_ANY | JSON_DISABLE_EOF_CHECK, &err);
		cr_assert(v && (size_t)err.position == ends[i], "jansson agrees on %s", plain[i]);
		json_decref(v);
		free(copy);
	}
	for (size_t i = 0; i < sizeof(ask) / sizeof(ask[0]); i++) {
		size_t n = i == 8 ? 7 : strlen(ask[i]);
		char *copy = malloc(n ? n : 1);
		memcpy(copy, ask[i], n);
		cr_assert_null(jstr_plain_end(copy, copy + n), "case %zu", i);
		free(copy);
	}
}

/* The byte loop jstr_plain_end was first (and still ends with): the
 * eight-bytes-at-a-time front must give the same answer everywhere. */
static const char *plain_end_bytewise(const char *p, const char *end)
{
	json_error_t err;
	json_t *v;

	if (p >= end || *p != '"')
		return NULL;
	for (const char *q = p + 1; q < end; q++) {
		if (*q == '\\' || (unsigned char)*q < 0x20)
			return NULL;
		if (*q == '"') {
			/* the UTF-8 check: jansson's, on what was scanned */
			v = json_loadb(p, (size_t)(q + 1 - p), JSON_DECODE_ANY, &err);
			json_decref(v);
			return v ? q + 1 : NULL;
		}
	}
	return NULL;
}

Test(jstr, plain_end_word_at_a_time_agrees_at_every_offset)
{
	static const char *const specials[] = {
		"\"", "\\", "\x01", "\x1f", "\x20", "\x7f", "\x80", "\xff", "\xc3\xa9", "\xe2\x82\xac", "\xc3",
	};
	static const size_t lens[] = {1, 1, 1, 1, 1, 1, 1, 1, 2, 3, 1};
	size_t matched = 0;

	for (size_t body = 0; body <= 40; body++)
		for (size_t s = 0; s < sizeof(specials) / sizeof(specials[0]); s++)
			for (size_t at = 0; at <= body; at++)
				for (int closed = 0; closed < 2; closed++) {
					size_t n = 1 + body + lens[s] + (size_t)closed;
					char *text = malloc(n);	/* no NUL after it */
					text[0] = '"';
					memset(text + 1, 'a', body);
					memmove(text + 1 + at + lens[s], text + 1 + at, body - at);
					memcpy(text + 1 + at, specials[s], lens[s]);
					if (closed)
						text[n - 1] = '"';
					const char *want = plain_end_bytewise(text, text + n);
					cr_assert_eq(jstr_plain_end(text, text + n), want,
						     "body %zu, special %zu at %zu, closed %d", body, s, at, closed);
					matched += want != NULL;
					free(text);
				}
	cr_assert_gt(matched, 1000);
}
