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

/* The literal child for segment s[0..n), which the map keys as a string
 * (segments longer than a topic may be are cut, as the topic checks do). */
static struct trie_node *child_get(const struct trie_node *x, const char *s, size_t n, size_t *cut)
{
	char key[1025];
	size_t k = n < sizeof(key) - 1 ? n : sizeof(key) - 1;

	memcpy(key, s, k);
	key[k] = '\0';
	if (cut)
		*cut = k;
	return map_get(&x->children, key);
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
			size_t k;
			next = child_get(x, s, n, &k);
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
			x = child_get(x, s, n, NULL);
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

	if (x->rest && !own)
		deliver(x->rest, fn, arg);	/* ">" takes this segment and the rest */
	const struct trie_node *lit = child_get(x, s, n, NULL);
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
