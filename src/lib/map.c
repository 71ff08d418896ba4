/*
 * map.c - see map.h.  Linear probing keeps lookups to one cache line in the
 * common case; the table doubles at 70% load (tombstones included) so
 * every operation is O(1) amortised.
 */
#include "autoconfig.h"

#include <stdlib.h>
#include <string.h>

#include "map.h"
#include "util.h"

static const char tombstone_key[] = "";
#define TOMBSTONE tombstone_key

static uint32_t hash_str(const char *s)
{
	uint32_t h = 2166136261u;

	while (*s) {
		h ^= (unsigned char)*s++;
		h *= 16777619u;
	}
	/* FNV-1a's low bits, which pick the slot, depend only on the low bits
	 * of each byte: keys that differ in a decimal counter (the bus's mids,
	 * "publisher\n<prefix>-<n>") fall in long runs of neighbouring slots,
	 * and linear probing walks them (recovering a million mids spent 40% of
	 * its time in map_find and map_put).  The avalanche of murmur3's
	 * finaliser spreads every bit over all of them. */
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	h ^= h >> 16;
	return h;
}

static struct map_slot *map_find(const struct map *m, const char *key, uint32_t h)
{
	if (!m->cap)
		return NULL;
	size_t mask = m->cap - 1;
	for (size_t i = h & mask;; i = (i + 1) & mask) {
		struct map_slot *s = &m->slots[i];
		if (!s->key)
			return NULL;
		if (s->key != TOMBSTONE && s->hash == h && strcmp(s->key, key) == 0)
			return s;
	}
}

static void map_grow(struct map *m)
{
	struct map old = *m;
	size_t cap = m->cap ? m->cap * 2 : 16;

	/* Shrink back when mostly tombstones. */
	if (m->cap && m->len * 4 < m->cap)
		cap = m->cap;
	m->slots = xcalloc(cap, sizeof(*m->slots));
	m->cap = cap;
	m->len = m->used = old.len;
	/* Every key is distinct and its hash kept: no string is read again
	 * (a map of half a million mids was rehashed in 20% of a recovery). */
	for (size_t i = 0; i < old.cap; i++) {
		struct map_slot *s = &old.slots[i];
		if (!s->key || s->key == TOMBSTONE)
			continue;
		size_t j = s->hash & (cap - 1);
		while (m->slots[j].key)
			j = (j + 1) & (cap - 1);
		m->slots[j] = *s;
	}
	free(old.slots);
}

void *map_get(const struct map *m, const char *key)
{
	struct map_slot *s = map_find(m, key, hash_str(key));

	return s ? s->value : NULL;
}

void *map_put(struct map *m, const char *key, void *value)
{
	uint32_t h = hash_str(key);
	struct map_slot *s = map_find(m, key, h);

	if (s) {
		void *old = s->value;
		s->key = key;
		s->value = value;
		return old;
	}
	if ((m->used + 1) * 10 > m->cap * 7)
		map_grow(m);
	size_t mask = m->cap - 1;
	size_t i = h & mask;
	while (m->slots[i].key && m->slots[i].key != TOMBSTONE)
		i = (i + 1) & mask;
	if (!m->slots[i].key)
		m->used++;
	m->slots[i] = (struct map_slot){key, value, h};
	m->len++;
	return NULL;
}

void *map_del(struct map *m, const char *key)
{
	struct map_slot *s = map_find(m, key, hash_str(key));

	if (!s)
		return NULL;
	void *old = s->value;
	s->key = TOMBSTONE;
	s->value = NULL;
	m->len--;
	return old;
}

void map_free(struct map *m)
{
	free(m->slots);
	*m = (struct map){0};
}

int map_next(const struct map *m, size_t *iter, const char **key, void **value)
{
	while (*iter < m->cap) {
		struct map_slot *s = &m->slots[(*iter)++];
		if (s->key && s->key != TOMBSTONE) {
			if (key)
				*key = s->key;
			if (value)
				*value = s->value;
			return 1;
		}
	}
	return 0;
}

static uint64_t hash_int(int64_t k)
{
	uint64_t x = (uint64_t)k;

	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	return x;
}

static struct intmap_slot *imap_find(const struct intmap *m, int64_t key)
{
	if (!m->cap)
		return NULL;
	size_t mask = m->cap - 1;
	for (size_t i = hash_int(key) & mask;; i = (i + 1) & mask) {
		struct intmap_slot *s = &m->slots[i];
		if (s->state == 0)
			return NULL;
		if (s->state == 1 && s->key == key)
			return s;
	}
}

static void intmap_grow(struct intmap *m)
{
	struct intmap old = *m;
	size_t cap = m->cap ? m->cap * 2 : 16;

	if (m->cap && m->len * 4 < m->cap)
		cap = m->cap;
	m->slots = xcalloc(cap, sizeof(*m->slots));
	m->cap = cap;
	m->len = m->used = 0;
	for (size_t i = 0; i < old.cap; i++)
		if (old.slots[i].state == 1)
			intmap_put(m, old.slots[i].key, old.slots[i].value);
	free(old.slots);
}

void *intmap_get(const struct intmap *m, int64_t key)
{
	struct intmap_slot *s = imap_find(m, key);

	return s ? s->value : NULL;
}

void *intmap_put(struct intmap *m, int64_t key, void *value)
{
	struct intmap_slot *s = imap_find(m, key);

	if (s) {
		void *old = s->value;
		s->value = value;
		return old;
	}
	if ((m->used + 1) * 10 > m->cap * 7)
		intmap_grow(m);
	size_t mask = m->cap - 1;
	size_t i = hash_int(key) & mask;
	while (m->slots[i].state == 1)
		i = (i + 1) & mask;
	if (m->slots[i].state == 0)
		m->used++;
	m->slots[i] = (struct intmap_slot){key, value, 1};
	m->len++;
	return NULL;
}

void *intmap_del(struct intmap *m, int64_t key)
{
	struct intmap_slot *s = imap_find(m, key);

	if (!s)
		return NULL;
	void *old = s->value;
	s->state = 2;
	s->value = NULL;
	m->len--;
	return old;
}

void intmap_free(struct intmap *m)
{
	free(m->slots);
	*m = (struct intmap){0};
}

int intmap_next(const struct intmap *m, size_t *iter, int64_t *key, void **value)
{
	while (*iter < m->cap) {
		struct intmap_slot *s = &m->slots[(*iter)++];
		if (s->state == 1) {
			if (key)
				*key = s->key;
			if (value)
				*value = s->value;
			return 1;
		}
	}
	return 0;
}
