/*
 * cluster_value.c - what a lock's key holds, and the holders a waiter has
 * seen in it (doc/CLUSTER.md, "Shared locks").
 *
 *   exclusive:  "ttl_ms=30000 owner=h1:812:9f3c..."
 *   shared:     "shared h1:812:9f3c.../30000/4 h2:77:01ab.../5000/0"
 *
 * A shared value lists one entry per cohortd, not per lease: the leases of
 * one cohortd share its entry, which it keeps while any of them is held.
 * An entry is owner/ttl_ms/seq; its cohortd bumps seq at each renewal, so
 * that a waiter sees each entry move (or not) on its own even though every
 * write of the key gives the whole key a new revision.
 */
#include "autoconfig.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_impl.h"
#include "util.h"

bool cv_shared(const char *v)
{
	return v && strncmp(v, "shared", 6) == 0 && (v[6] == ' ' || v[6] == '\0');
}

char *cv_exclusive(int64_t ttl_ms, const char *owner)
{
	return xasprintf("ttl_ms=%" PRId64 " owner=%s", ttl_ms, owner);
}

/* The entries of a shared value, split in place: each "id/ttl/seq" with
 * the id ended at its own '/'.  n: how many. */
struct centry {
	const char *id, *text;	/* text: the whole entry, as written */
	size_t idlen, textlen;
	int64_t ttl_ms;
};

static size_t entries(const char *v, struct centry *out, size_t max)
{
	size_t n = 0;
	const char *p = v + 6;

	while (*p && n < max) {
		while (*p == ' ')
			p++;
		if (!*p)
			break;
		const char *end = strchr(p, ' ');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		const char *s1 = memchr(p, '/', len);
		struct centry *e = &out[n];
		e->id = e->text = p;
		e->textlen = len;
		e->idlen = s1 ? (size_t)(s1 - p) : len;
		e->ttl_ms = s1 ? strtoll(s1 + 1, NULL, 10) : 0;
		if (e->ttl_ms <= 0)
			e->ttl_ms = LOCK_TTL_MAX_MS;
		n++;
		p += len;
	}
	return n;
}

static bool id_is(const struct centry *e, const char *owner)
{
	return e->idlen == strlen(owner) && memcmp(e->id, owner, e->idlen) == 0;
}

#define CV_MAX 1024	/* cohortds in one value: far more than a cluster has */

/* v with owner's entry (or without it: ttl_ms < 0); NULL when none is left. */
static char *rewrite(const char *v, const char *owner, int64_t ttl_ms, uint64_t seq)
{
	static struct centry e[CV_MAX];	/* the loop's only */
	struct sbuf b = {0};
	size_t n = cv_shared(v) ? entries(v, e, CV_MAX) : 0;
	bool any = false;

	sbuf_addf(&b, "shared");
	for (size_t i = 0; i < n; i++) {
		if (id_is(&e[i], owner))
			continue;
		sbuf_addf(&b, " %.*s", (int)e[i].textlen, e[i].text);
		any = true;
	}
	if (ttl_ms >= 0) {
		sbuf_addf(&b, " %s/%" PRId64 "/%" PRIu64, owner, ttl_ms, seq);
		any = true;
	}
	if (!any) {
		sbuf_free(&b);
		return NULL;
	}
	return b.buf;
}

char *cv_with(const char *v, const char *owner, int64_t ttl_ms, uint64_t seq)
{
	return rewrite(v, owner, ttl_ms, seq);
}

char *cv_without(const char *v, const char *owner)
{
	return rewrite(v, owner, -1, 0);
}

bool cv_holds(const char *v, const char *owner)
{
	static struct centry e[CV_MAX];

	if (!v)
		return false;
	if (!cv_shared(v)) {
		const char *p = strstr(v, "owner=");
		return p && strcmp(p + 6, owner) == 0;
	}
	size_t n = entries(v, e, CV_MAX);
	for (size_t i = 0; i < n; i++)
		if (id_is(&e[i], owner))
			return true;
	return false;
}

/* What a waiter knows of the holders: each one's text as last seen and
 * when it last changed.  An exclusive holder is one entry whose text is
 * the revision (its renewal moves it); a shared value's entries move with
 * their seq.  self: this cohortd's entry, which a waiter here knows no
 * lease of its own relies on (a release that did not reach the cluster):
 * stale at once. */
void cseen_update(struct cseen_list *l, const char *v, uint64_t rev, const char *self, int64_t now)
{
	static struct centry e[CV_MAX];
	struct cseen *old = l->v;
	size_t nold = l->n, n;
	char revtext[32];

	if (cv_shared(v)) {
		n = entries(v, e, CV_MAX);
	} else {
		const char *p = v ? strstr(v, "owner=") : NULL;
		const char *t = v ? strstr(v, "ttl_ms=") : NULL;
		snprintf(revtext, sizeof(revtext), "rev %" PRIu64, rev);
		e[0].id = p ? p + 6 : "";
		e[0].idlen = strlen(e[0].id);
		e[0].text = revtext;
		e[0].textlen = strlen(revtext);
		e[0].ttl_ms = t ? strtoll(t + 7, NULL, 10) : 0;
		if (e[0].ttl_ms <= 0)
			e[0].ttl_ms = LOCK_TTL_MAX_MS;
		n = 1;
	}
	l->v = xcalloc(n ? n : 1, sizeof(*l->v));
	l->n = n;
	for (size_t i = 0; i < n; i++) {
		struct cseen *s = &l->v[i];
		s->id = xasprintf("%.*s", (int)e[i].idlen, e[i].id);
		s->text = xasprintf("%.*s", (int)e[i].textlen, e[i].text);
		s->ttl_ms = e[i].ttl_ms;
		s->seen_ms = now;
		if (self && strcmp(s->id, self) == 0)
			s->seen_ms = now - s->ttl_ms;
		for (size_t j = 0; j < nold; j++)
			if (strcmp(old[j].id, s->id) == 0 && strcmp(old[j].text, s->text) == 0)
				s->seen_ms = old[j].seen_ms;
	}
	for (size_t j = 0; j < nold; j++) {
		free(old[j].id);
		free(old[j].text);
	}
	free(old);
}

/* When every holder seen will have stood still for its TTL. */
int64_t cseen_free_at(const struct cseen_list *l, int64_t now)
{
	int64_t at = now;

	for (size_t i = 0; i < l->n; i++)
		if (l->v[i].seen_ms + l->v[i].ttl_ms > at)
			at = l->v[i].seen_ms + l->v[i].ttl_ms;
	return at;
}

void cseen_clear(struct cseen_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].id);
		free(l->v[i].text);
	}
	free(l->v);
	l->v = NULL;
	l->n = 0;
}
