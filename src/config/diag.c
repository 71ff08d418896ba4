/*
 * diag.c - the errors found in a config (struct diag, config.h): each as
 * "FILE:LINE: message", kept sorted by file (in the order files were
 * read) and line, so they read top to bottom whatever stage found them.
 * At most DIAG_MAX are kept; the rest are counted.
 */
#include "autoconfig.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

#define DIAG_MAX 100			/* errors kept; the rest are counted */

void diag_add(struct diag *d, const char *file, int line, const char *fmt, ...)
{
	struct sbuf b = {0};
	va_list ap;
	size_t fi;

	d->count++;
	if (d->lines.n >= DIAG_MAX)
		return;
	for (fi = 0; fi < d->files.n; fi++)
		if (strcmp(d->files.v[fi], file) == 0)
			break;
	if (fi == d->files.n)
		strv_push(&d->files, file);
	if (line > 0)
		sbuf_addf(&b, "%s:%d: ", file, line);
	else
		sbuf_addf(&b, "%s: ", file);
	va_start(ap, fmt);
	sbuf_vaddf(&b, fmt, ap);
	va_end(ap);
	/* The same error again (a template's instances share a section: a
	 * cycle through it is found once per instance) is said and counted
	 * once: it was counted when first said. */
	for (size_t i = 0; i < d->lines.n; i++)
		if (strcmp(d->lines.v[i], b.buf) == 0) {
			d->count--;
			sbuf_free(&b);
			return;
		}

	/* Insert after every entry with a key <= this one (stable). */
	int64_t key = (int64_t)fi << 32 | (line > 0 ? line : 0);
	size_t at = d->lines.n;
	while (at > 0 && d->keys[at - 1] > key)
		at--;
	strv_push_owned(&d->lines, NULL);
	d->keys = xrealloc(d->keys, d->lines.n * sizeof(*d->keys));
	memmove(&d->lines.v[at + 1], &d->lines.v[at], (d->lines.n - 1 - at) * sizeof(char *));
	memmove(&d->keys[at + 1], &d->keys[at], (d->lines.n - 1 - at) * sizeof(*d->keys));
	d->lines.v[at] = sbuf_steal(&b);
	d->keys[at] = key;
}

void diag_print(const struct diag *d, FILE *f)
{
	for (size_t i = 0; i < d->lines.n; i++)
		fprintf(f, "%s\n", d->lines.v[i]);
	if (d->count > d->lines.n)
		fprintf(f, "... and %zu more errors\n", d->count - d->lines.n);
}

void diag_free(struct diag *d)
{
	strv_free(&d->lines);
	strv_free(&d->files);
	free(d->keys);
	d->keys = NULL;
	d->count = 0;
}
