/*
 * lock_heap.h - the lock table's deadlines: every lease (and, in a second
 * heap, every waiting request) in one binary min-heap by the time it falls
 * due, so that the table needs one libev timer per heap (set to the
 * earliest) rather than one per lease.  With a timer per lease, libev ran
 * the callbacks of every lease falling due at once in one loop iteration
 * (100,000 expiries: the loop stopped for up to 1.7 s); from the heap the
 * table takes a bounded batch per iteration.  An item keeps its deadline
 * (int64_t, monotonic microseconds) and its place in the heap (uint32_t)
 * in fields of its own, which the heap finds by their offsets, so a lease
 * stays 120 bytes; removal and a renewal's move are O(log n).  Pure: no
 * loop, no clock.
 */
#ifndef COHORT_LOCK_HEAP_H
#define COHORT_LOCK_HEAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LOCK_HEAP_NONE UINT32_MAX	/* the place of an item in no heap */

struct lock_heap {
	void **v;		/* v[0] falls due first */
	size_t n;
	size_t cap;
	size_t due_off;		/* offsetof the item's int64_t deadline */
	size_t place_off;	/* offsetof the item's uint32_t place */
};

#define LOCK_HEAP_OF(type, due, place) \
	((struct lock_heap){.due_off = offsetof(type, due), .place_off = offsetof(type, place)})

void lock_heap_push(struct lock_heap *h, void *item);
/* An item in no heap (its place LOCK_HEAP_NONE) is let be. */
void lock_heap_remove(struct lock_heap *h, void *item);
/* The item's deadline changed (a renewal): to its new place. */
void lock_heap_update(struct lock_heap *h, void *item);
static inline void *lock_heap_top(const struct lock_heap *h)
{
	return h->n ? h->v[0] : NULL;
}
/* The deadline of the earliest; false when empty. */
bool lock_heap_first_due(const struct lock_heap *h, int64_t *due_us);
void lock_heap_free(struct lock_heap *h);

#endif
