/*
 * words.c - see words.h.  A three-state scanner (outside a word, in plain
 * text, in single or double quotes) over the input, one pass.
 */
#include "autoconfig.h"

#include <string.h>

#include "words.h"

int words_split(const char *s, struct strv *out, const char **why)
{
	struct sbuf w = {0};
	bool in_word = false;

	*out = (struct strv){0};
	for (;;) {
		char c = *s++;

		if (c == '\0' || c == ' ' || c == '\t' || c == '\n' || c == '\r') {
			if (in_word) {
				/* an exact copy: the buffer's growth slack would stay
				 * with every service's argv for its whole life */
				strv_push_owned(out, xstrndup(w.buf ? w.buf : "", w.len));
				w.len = 0;
				in_word = false;
			}
			if (c == '\0')
				break;
			continue;
		}
		in_word = true;
		if (c == '\\') {
			if (*s == '\0') {
				*why = "a trailing backslash escapes nothing";
				goto fail;
			}
			if (*s == '\n')
				s++;	/* line continuation */
			else
				sbuf_addc(&w, *s++);
		} else if (c == '\'') {
			const char *end = strchr(s, '\'');
			if (!end) {
				*why = "unterminated single quote";
				goto fail;
			}
			sbuf_add(&w, s, (size_t)(end - s));
			s = end + 1;
		} else if (c == '"') {
			for (;;) {
				c = *s++;
				if (c == '\0') {
					*why = "unterminated double quote";
					goto fail;
				}
				if (c == '"')
					break;
				if (c == '\\' && (*s == '"' || *s == '\\' || *s == '$' ||
						  *s == '`' || *s == '\n')) {
					if (*s != '\n')
						sbuf_addc(&w, *s);
					s++;
					continue;
				}
				sbuf_addc(&w, c);
			}
			/* "" is an empty word, not nothing. */
			if (!w.buf)
				sbuf_add(&w, "", 0);
		} else {
			sbuf_addc(&w, c);
		}
	}
	sbuf_free(&w);
	return 0;
fail:
	sbuf_free(&w);
	strv_free(out);
	return -1;
}

char *words_quote(const char *word)
{
	struct sbuf b = {0};

	if (*word && strspn(word, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			    "0123456789_-./:=,+@%") == strlen(word))
		return xstrdup(word);
	sbuf_addc(&b, '\'');
	for (const char *p = word; *p; p++) {
		if (*p == '\'')
			sbuf_adds(&b, "'\\''");
		else
			sbuf_addc(&b, *p);
	}
	sbuf_addc(&b, '\'');
	return sbuf_steal(&b);
}
