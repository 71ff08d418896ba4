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
#include "topic.h"

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

#endif
