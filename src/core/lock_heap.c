/*
 * lock_heap.c - see lock_heap.h.  The array halves when a quarter of it is
 * used, so a storm of 100,000 leases gives its memory back once they end.
 */
#include "autoconfig.h"

#include <stdlib.h>

#include "lock.h"
#include "lock_heap.h"
#include "util.h"

static void place(struct lock_heap *h, size_t i, struct lock_lease *le)
{
	h->v[i] = le;
	le->heap_at = (uint32_t)i;
}

static void sift_up(struct lock_heap *h, size_t i)
{
	struct lock_lease *le = h->v[i];

	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (h->v[parent]->due_us <= le->due_us)
			break;
		place(h, i, h->v[parent]);
		i = parent;
	}
	place(h, i, le);
}

static void sift_down(struct lock_heap *h, size_t i)
{
	struct lock_lease *le = h->v[i];

	for (;;) {
		size_t child = 2 * i + 1;
		if (child >= h->n)
			break;
		if (child + 1 < h->n && h->v[child + 1]->due_us < h->v[child]->due_us)
			child++;
		if (le->due_us <= h->v[child]->due_us)
			break;
		place(h, i, h->v[child]);
		i = child;
	}
	place(h, i, le);
}

void lock_heap_push(struct lock_heap *h, struct lock_lease *le)
{
	if (h->n == h->cap) {
		h->cap = h->cap ? h->cap * 2 : 64;
		h->v = xrealloc(h->v, h->cap * sizeof(*h->v));
	}
	place(h, h->n++, le);
	sift_up(h, h->n - 1);
}

void lock_heap_remove(struct lock_heap *h, struct lock_lease *le)
{
	size_t i = le->heap_at;

	if (i == LOCK_HEAP_NONE)
		return;
	le->heap_at = LOCK_HEAP_NONE;
	struct lock_lease *last = h->v[--h->n];
	if (i < h->n) {
		place(h, i, last);
		lock_heap_update(h, last);
	}
	if (h->cap > 64 && h->n < h->cap / 4) {
		h->cap /= 2;
		h->v = xrealloc(h->v, h->cap * sizeof(*h->v));
	}
}

void lock_heap_update(struct lock_heap *h, struct lock_lease *le)
{
	size_t i = le->heap_at;

	if (i > 0 && h->v[(i - 1) / 2]->due_us > le->due_us)
		sift_up(h, i);
	else
		sift_down(h, i);
}

void lock_heap_free(struct lock_heap *h)
{
	free(h->v);
	*h = (struct lock_heap){0};
}
