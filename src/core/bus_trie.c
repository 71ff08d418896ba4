/*
 * bus_trie.c - see bus_trie.h.
 */
#include "autoconfig.h"

#include <stdlib.h>
#include <string.h>

#include "bus_trie.h"
#include "util.h"

static struct trie_node *node_new(struct trie_node *parent, const char *seg, size_t n)
{
	struct trie_node *x = xcalloc(1, sizeof(*x));

	x->parent = parent;
	x->seg = xstrndup(seg, n);
	return x;
}

void trie_add(struct trie *t, const char *pattern, void *sub)
{
	struct trie_node *x = &t->root;

	for (const char *s = pattern;;) {
		size_t n = strcspn(s, ".");
		struct trie_node **slot = NULL, *next;
		if (n == 1 && *s == '*')
			slot = &x->star;
		else if (n == 1 && *s == '>')
			slot = &x->rest;
		if (slot) {
			if (!*slot)
				*slot = node_new(x, s, n);
			next = *slot;
		} else {
			char key[1025];
			size_t k = n < sizeof(key) - 1 ? n : sizeof(key) - 1;
			memcpy(key, s, k);
			key[k] = '\0';
			next = map_get(&x->children, key);
			if (!next) {
				next = node_new(x, s, k);
				map_put(&x->children, next->seg, next);
			}
		}
		x->below++;
		x = next;
		if (!s[n])
			break;
		s += n + 1;
	}
	x->below++;
	if (x->nsubs == x->cap)
		x->subs = xrealloc(x->subs, (x->cap = x->cap ? x->cap * 2 : 4) * sizeof(void *));
	x->subs[x->nsubs++] = sub;
	t->nsubs++;
}

static void node_free(struct trie_node *x)
{
	size_t it = 0;
	void *v;

	while (map_next(&x->children, &it, NULL, &v))
		node_free(v);
	map_free(&x->children);
	if (x->star)
		node_free(x->star);
	if (x->rest)
		node_free(x->rest);
	free(x->subs);
	free(x->seg);
	free(x);
}

/* Drops empty nodes on the way back up. */
static void prune(struct trie_node *x, struct trie_node *root)
{
	while (x != root) {
		struct trie_node *p = x->parent;
		x->below--;
		if (x->below == 0) {
			if (p->star == x)
				p->star = NULL;
			else if (p->rest == x)
				p->rest = NULL;
			else
				map_del(&p->children, x->seg);
			node_free(x);
		}
		x = p;
	}
	root->below--;
}

bool trie_remove(struct trie *t, const char *pattern, void *sub)
{
	struct trie_node *x = &t->root;

	for (const char *s = pattern;;) {
		size_t n = strcspn(s, ".");
		if (n == 1 && *s == '*') {
			x = x->star;
		} else if (n == 1 && *s == '>') {
			x = x->rest;
		} else {
			char key[1025];
			size_t k = n < sizeof(key) - 1 ? n : sizeof(key) - 1;
			memcpy(key, s, k);
			key[k] = '\0';
			x = map_get(&x->children, key);
		}
		if (!x)
			return false;
		if (!s[n])
			break;
		s += n + 1;
	}
	for (size_t i = 0; i < x->nsubs; i++) {
		if (x->subs[i] != sub)
			continue;
		x->subs[i] = x->subs[--x->nsubs];
		t->nsubs--;
		prune(x, &t->root);
		return true;
	}
	return false;
}

static void deliver(const struct trie_node *x, void (*fn)(void *, void *), void *arg)
{
	for (size_t i = 0; i < x->nsubs; i++)
		fn(x->subs[i], arg);
}

static void match(const struct trie_node *x, const char *s, bool first,
		  void (*fn)(void *, void *), void *arg)
{
	size_t n = strcspn(s, ".");
	bool own = first && *s == '$';	/* wildcards skip the daemon's topics */
	char key[1025];
	size_t k = n < sizeof(key) - 1 ? n : sizeof(key) - 1;

	if (x->rest && !own)
		deliver(x->rest, fn, arg);	/* ">" takes this segment and the rest */
	memcpy(key, s, k);
	key[k] = '\0';
	const struct trie_node *lit = map_get(&x->children, key);
	const struct trie_node *star = own ? NULL : x->star;
	if (!s[n]) {
		if (lit)
			deliver(lit, fn, arg);
		if (star)
			deliver(star, fn, arg);
		return;
	}
	if (lit)
		match(lit, s + n + 1, false, fn, arg);
	if (star)
		match(star, s + n + 1, false, fn, arg);
}

void trie_match(const struct trie *t, const char *topic, void (*fn)(void *sub, void *arg), void *arg)
{
	if (t->root.below)
		match(&t->root, topic, true, fn, arg);
}

void trie_free(struct trie *t)
{
	size_t it = 0;
	void *v;

	while (map_next(&t->root.children, &it, NULL, &v))
		node_free(v);
	map_free(&t->root.children);
	if (t->root.star)
		node_free(t->root.star);
	if (t->root.rest)
		node_free(t->root.rest);
	free(t->root.subs);
	*t = (struct trie){0};
}

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

/* A character of a literal topic segment: [A-Za-z0-9_-]. */
static bool segment_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
	       c == '-';
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
