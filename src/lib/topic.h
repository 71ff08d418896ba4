/*
 * topic.h - the syntax of bus topics and patterns, and matching one
 * against the other without a trie: dot-separated segments, `*` any one
 * segment, `>` one or more (last only).  As in MQTT, a wildcard in the
 * first segment does not match a topic of the daemon's own, which starts
 * with `$`.  The config checks patterns with it, the bus and the client
 * check topics and permissions.
 */
#ifndef COHORT_TOPIC_H
#define COHORT_TOPIC_H

#include <stdbool.h>

/* Does pattern match topic (no trie: for retained values, permissions). */
bool topic_matches(const char *pattern, const char *topic);
/* Dot-separated [A-Za-z0-9_-] segments (the first may start with $);
 * with wildcards, a segment may be * and the last one >. */
bool topic_pattern_valid(const char *pat, bool allow_wildcards);
/* Is every topic pattern `inner` matches also matched by `outer`? */
bool pattern_within(const char *inner, const char *outer);

#endif
