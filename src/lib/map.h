/*
 * map.h - a string-keyed hash table (open addressing, linear probing).
 * Keys are borrowed: the caller keeps them alive as long as the entry.
 * Used wherever cohort looks things up by name (services, locks, topics).
 */
#ifndef COHORT_MAP_H
#define COHORT_MAP_H

#include <stddef.h>
#include <stdint.h>

struct map_slot {
	const char *key;	/* NULL: empty; TOMBSTONE: deleted */
	void *value;
	uint32_t hash;
};

struct map {
	struct map_slot *slots;
	size_t cap;		/* power of two or 0 */
	size_t len;		/* live entries */
	size_t used;		/* live + tombstones */
};

void *map_get(const struct map *m, const char *key);
/* Inserts or replaces; returns the previous value or NULL. */
void *map_put(struct map *m, const char *key, void *value);
void *map_del(struct map *m, const char *key);
void map_free(struct map *m);
/* Iteration: for (size_t i = 0; map_next(m, &i, &k, &v);) */
int map_next(const struct map *m, size_t *iter, const char **key, void **value);

/* The same for integer keys (pids, sequence numbers, uids): an intmap. */
struct intmap_slot {
	int64_t key;
	void *value;		/* NULL: empty or deleted */
	int state;		/* 0 empty, 1 live, 2 deleted */
};

struct intmap {
	struct intmap_slot *slots;
	size_t cap;
	size_t len;
	size_t used;
};

void *intmap_get(const struct intmap *m, int64_t key);
void *intmap_put(struct intmap *m, int64_t key, void *value);
void *intmap_del(struct intmap *m, int64_t key);
void intmap_free(struct intmap *m);
int intmap_next(const struct intmap *m, size_t *iter, int64_t *key, void **value);

#endif
