/*
 * bus_trie.h - subscriptions by topic pattern, in a trie of dot-separated
 * segments, so a publish visits only the nodes its topic can match: the
 * exact segment, `*` (any one segment) and `>` (one or more, last only) at
 * each level.  As in MQTT, a wildcard in the first segment does not match
 * a topic of the daemon's own, which starts with `$`.
 */
#ifndef COHORT_BUS_TRIE_H
#define COHORT_BUS_TRIE_H

#include <stdbool.h>
#include <stddef.h>

#include "map.h"

struct trie_node {
	struct map children;		/* literal segment -> node */
	struct trie_node *star;		/* "*" */
	struct trie_node *rest;		/* ">" */
	struct trie_node *parent;
	char *seg;			/* own segment ("*", ">" or literal) */
	void **subs;			/* subscriptions ending here */
	size_t nsubs, cap;
	size_t below;			/* subscriptions in this subtree */
};

struct trie {
	struct trie_node root;
	size_t nsubs;
};

/* sub is the caller's pointer; the same pattern may hold many. */
void trie_add(struct trie *t, const char *pattern, void *sub);
/* false when sub was not there under pattern. */
bool trie_remove(struct trie *t, const char *pattern, void *sub);
/* Calls fn for every subscription whose pattern matches topic. */
void trie_match(const struct trie *t, const char *topic, void (*fn)(void *sub, void *arg), void *arg);
void trie_free(struct trie *t);
/* Does pattern match topic (no trie: for retained values, permissions). */
bool topic_matches(const char *pattern, const char *topic);
/* Dot-separated [A-Za-z0-9_-] segments (the first may start with $);
 * with wildcards, a segment may be * and the last one >. */
bool topic_pattern_valid(const char *pat, bool allow_wildcards);
/* Is every topic pattern `inner` matches also matched by `outer`? */
bool pattern_within(const char *inner, const char *outer);

#endif
