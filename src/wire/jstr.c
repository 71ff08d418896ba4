/*
 * jstr.c - see wire.h.
 */
#include "autoconfig.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "util.h"
#include "wire.h"

char *jstr_escape(char *w, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s, *end = p + n;

	while (p < end) {
		unsigned char c = *p;
		if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
			*w++ = (char)c;
			p++;
			continue;
		}
		if (c >= 0x80) {
			size_t len = utf8_seq(p, (size_t)(end - p));
			if (len) {
				memcpy(w, p, len);
				w += len;
				p += len;
			} else {
				memcpy(w, "\\ufffd", 6);	/* not UTF-8: JSON text must be */
				w += 6;
				p++;
			}
			continue;
		}
		*w++ = '\\';
		switch (c) {
		case '"': *w++ = '"'; break;
		case '\\': *w++ = '\\'; break;
		case '\n': *w++ = 'n'; break;
		case '\t': *w++ = 't'; break;
		case '\r': *w++ = 'r'; break;
		default:
			memcpy(w, "u00", 3);
			w[3] = hex[c >> 4];
			w[4] = hex[c & 15];
			w += 5;
		}
		p++;
	}
	return w;
}

static int hex4(const char *p, const char *end, uint32_t *out)
{
	uint32_t v = 0;

	if (end - p < 4)
		return -1;
	for (int i = 0; i < 4; i++) {
		char c = p[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (uint32_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (uint32_t)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (uint32_t)(c - 'A' + 10);
		else
			return -1;
	}
	*out = v;
	return 0;
}

static char *put_utf8(char *w, uint32_t cp)
{
	if (cp < 0x80) {
		*w++ = (char)cp;
	} else if (cp < 0x800) {
		*w++ = (char)(0xC0 | cp >> 6);
		*w++ = (char)(0x80 | (cp & 0x3F));
	} else if (cp < 0x10000) {
		*w++ = (char)(0xE0 | cp >> 12);
		*w++ = (char)(0x80 | ((cp >> 6) & 0x3F));
		*w++ = (char)(0x80 | (cp & 0x3F));
	} else {
		*w++ = (char)(0xF0 | cp >> 18);
		*w++ = (char)(0x80 | ((cp >> 12) & 0x3F));
		*w++ = (char)(0x80 | ((cp >> 6) & 0x3F));
		*w++ = (char)(0x80 | (cp & 0x3F));
	}
	return w;
}

char *jstr_unescape(char *w, const char *text, size_t n)
{
	const char *p = text, *end = text + n;

	if (n < 2 || *p != '"' || end[-1] != '"')
		return NULL;
	p++;
	end--;
	/* Every escape is longer than what it stands for, so w never passes
	 * p: W may be TEXT itself. */
	while (p < end) {
		char c = *p;
		if (c != '\\' && c != '"' && (unsigned char)c >= 0x20 && (unsigned char)c < 0x80) {
			*w++ = c;
			p++;
			continue;
		}
		if ((unsigned char)c >= 0x80) {	/* UTF-8, as jansson wants it */
			size_t len = utf8_seq((const unsigned char *)p, (size_t)(end - p));
			if (!len)
				return NULL;
			memmove(w, p, len);
			w += len;
			p += len;
			continue;
		}
		if (c != '\\' || end - p < 2)
			return NULL;	/* a bare quote or control character */
		char e = p[1];
		p += 2;
		switch (e) {
		case '"': *w++ = '"'; break;
		case '\\': *w++ = '\\'; break;
		case '/': *w++ = '/'; break;
		case 'b': *w++ = '\b'; break;
		case 'f': *w++ = '\f'; break;
		case 'n': *w++ = '\n'; break;
		case 'r': *w++ = '\r'; break;
		case 't': *w++ = '\t'; break;
		case 'u': {
			uint32_t cp, lo;
			if (hex4(p, end, &cp) < 0)
				return NULL;
			p += 4;
			if (cp >= 0xD800 && cp <= 0xDBFF) {	/* a pair's first half */
				if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, end, &lo) < 0 ||
				    lo < 0xDC00 || lo > 0xDFFF)
					return NULL;
				p += 6;
				cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
			} else if (cp >= 0xDC00 && cp <= 0xDFFF) {
				return NULL;
			}
			w = put_utf8(w, cp);
			break;
		}
		default:
			return NULL;
		}
	}
	return w;
}

/* Whether any of the 8 bytes of V is a control character, '"', '\\' or
 * not ASCII (what the byte loop must look at); the classic tests for a
 * zero byte and a byte below N, which never miss one. */
static bool word_has_special(uint64_t v)
{
	const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
	uint64_t quote = v ^ (ones * '"'), backslash = v ^ (ones * '\\');

	return (((v - ones * 0x20) & ~v) |		/* a byte below 0x20 */
		((quote - ones) & ~quote) |		/* a '"' */
		((backslash - ones) & ~backslash) |	/* a '\\' */
		v) & highs;				/* a byte from 0x80 */
}

const char *jstr_plain_end(const char *p, const char *end)
{
	const unsigned char *q = (const unsigned char *)p + 1, *e = (const unsigned char *)end;

	if (p >= end || *p != '"')
		return NULL;
	/* Eight bytes at a time while they are plain ASCII: bus data is
	 * mostly that, and a byte at a time cost 14 instructions each. */
	while (e - q >= 8) {
		uint64_t v;
		memcpy(&v, q, 8);
		if (word_has_special(v))
			break;
		q += 8;
	}
	while (q < e) {
		if (*q == '"')
			return (const char *)q + 1;
		if (*q < 0x20 || *q == '\\')
			return NULL;
		if (*q < 0x80) {
			q++;
			continue;
		}
		size_t n = utf8_seq(q, (size_t)(e - q));
		if (!n)
			return NULL;
		q += n;
	}
	return NULL;
}

const char *jstr_lit(const char *p, const char *end, const char *lit)
{
	size_t n = strlen(lit);

	return p && (size_t)(end - p) >= n && memcmp(p, lit, n) == 0 ? p + n : NULL;
}
