/*
 * bus_mirror.h - retained values mirrored as files (state_mirror_dir,
 * state_mirror_topics): each retained value on a topic that one of the
 * patterns matches is kept as DIR/NAME.json, NAME being the topic after
 * the pattern's leading literal segments (jarvis.state.* and topic
 * jarvis.state.vbia_state: vbia_state.json).  For programs that still
 * read the JSON files a stack shared before it moved to the bus.
 */
#ifndef COHORT_BUS_MIRROR_H
#define COHORT_BUS_MIRROR_H

#include <ev.h>
#include <stdbool.h>

#include "map.h"
#include "util.h"

struct bus;

struct bus_mirror {
	char *dir;		/* NULL: no mirror */
	struct strv topics;	/* the patterns mirrored */
	struct map dirty;	/* topics changed since the last write (keys owned) */
	ev_prepare write_w;	/* writes them, once per loop iteration */
	bool warned;		/* a failed write is logged once until one succeeds */
};

/* Before the journal is read (its retained values are written then). */
void bus_mirror_open(struct bus *b, const char *dir, const struct strv *topics);
/* Writes what is pending, then stops. */
void bus_mirror_close(struct bus *b);
/* The retained value of topic changed or went (bus_retain). */
void bus_mirror_changed(struct bus *b, const char *topic);
/* NAME of topic under pattern, or NULL when the pattern does not match it
 * (a pure function, unit-tested). */
const char *bus_mirror_name(const char *pattern, const char *topic);

#endif
