/*
 * lock_heap.h - the lock table's deadlines: every lease in one binary
 * min-heap by the time it falls due, so that the table needs one libev
 * timer (set to the earliest) rather than one per lease.  With a timer per
 * lease, libev ran the callbacks of every lease falling due at once in one
 * loop iteration (100,000 expiries: the loop stopped for hundreds of
 * milliseconds); from the heap the table takes a bounded batch per
 * iteration.  A lease knows its place (heap_at), so removal and a renewal's
 * move are O(log n).  Pure: no loop, no clock.
 */
#ifndef COHORT_LOCK_HEAP_H
#define COHORT_LOCK_HEAP_H

#include <stddef.h>
#include <stdint.h>

struct lock_lease;

#define LOCK_HEAP_NONE UINT32_MAX	/* heap_at of a lease in no heap */

struct lock_heap {
	struct lock_lease **v;	/* v[0] falls due first */
	size_t n;
	size_t cap;
};

void lock_heap_push(struct lock_heap *h, struct lock_lease *le);
void lock_heap_remove(struct lock_heap *h, struct lock_lease *le);
/* le->due changed (a renewal): to its new place. */
void lock_heap_update(struct lock_heap *h, struct lock_lease *le);
static inline struct lock_lease *lock_heap_top(const struct lock_heap *h)
{
	return h->n ? h->v[0] : NULL;
}
void lock_heap_free(struct lock_heap *h);

#endif
