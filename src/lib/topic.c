/*
 * topic.c - topic names and patterns without a trie (see topic.h).
 */
#include "autoconfig.h"

#include <string.h>

#include "topic.h"

bool topic_matches(const char *p, const char *t)
{
	bool first = true;

	for (;;) {
		size_t pn = strcspn(p, "."), tn = strcspn(t, ".");
		bool own = first && *t == '$';
		if (pn == 1 && *p == '>')
			return !own;
		if (!(pn == 1 && *p == '*' && !own) && (pn != tn || memcmp(p, t, pn) != 0))
			return false;
		if (!p[pn] || !t[tn])
			return !p[pn] && !t[tn];
		p += pn + 1;
		t += tn + 1;
		first = false;
	}
}

bool pattern_within(const char *in, const char *out)
{
	bool first = true;

	for (;;) {
		size_t in_n = strcspn(in, "."), out_n = strcspn(out, ".");
		bool own = first && *in == '$';
		if (out_n == 1 && *out == '>')
			return !own;
		if (in_n == 1 && *in == '>')
			return false;	/* only ">" covers ">" */
		if (out_n == 1 && *out == '*') {
			if (own)
				return false;
		} else if (in_n != out_n || memcmp(in, out, in_n) != 0) {
			return false;	/* a literal covers only itself (not "*") */
		}
		if (!in[in_n] || !out[out_n])
			return !in[in_n] && !out[out_n];
		in += in_n + 1;
		out += out_n + 1;
		first = false;
	}
}

/* A character of a literal topic segment: [A-Za-z0-9_@-] (@: a
 * template's instance, $sys.service.worker@1). */
static bool segment_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
	       c == '-' || c == '@';
}

/* One pass, no strspn: every pub checks its topic here, and glibc's
 * strspn builds a table of its accept set on each call. */
bool topic_pattern_valid(const char *pat, bool wild)
{
	const unsigned char *begin = (const unsigned char *)pat, *p = begin;
	bool literal = false;

	if (*p == '$') {	/* the daemon's own topics: the first segment is a name */
		p++;
		literal = true;
	}
	for (;;) {
		const unsigned char *seg = p;
		if (wild && !literal && (*p == '*' || *p == '>') && (p[1] == '.' || p[1] == '\0')) {
			if (*p == '>' && p[1] != '\0')
				return false;	/* ">" only as the last segment */
			p++;
		} else {
			while (segment_char(*p))
				p++;
			if (p == seg)
				return false;	/* an empty segment, or a bad character */
		}
		literal = false;
		if (*p == '\0')
			return p - begin <= 1024;
		if (*p != '.')
			return false;
		p++;
	}
}
