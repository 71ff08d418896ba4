/*
 * lock_heap.c - see lock_heap.h.  The array halves when a quarter of it is
 * used, so a storm of 100,000 leases gives its memory back once they end.
 */
#include "autoconfig.h"

#include <stdlib.h>

#include "lock_heap.h"
#include "util.h"

static int64_t due(const struct lock_heap *h, const void *item)
{
	return *(const int64_t *)((const char *)item + h->due_off);
}

static uint32_t *place_of(const struct lock_heap *h, void *item)
{
	return (uint32_t *)((char *)item + h->place_off);
}

static void place(struct lock_heap *h, size_t i, void *item)
{
	h->v[i] = item;
	*place_of(h, item) = (uint32_t)i;
}

static void sift_up(struct lock_heap *h, size_t i)
{
	void *item = h->v[i];

	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (due(h, h->v[parent]) <= due(h, item))
			break;
		place(h, i, h->v[parent]);
		i = parent;
	}
	place(h, i, item);
}

static void sift_down(struct lock_heap *h, size_t i)
{
	void *item = h->v[i];

	for (;;) {
		size_t child = 2 * i + 1;
		if (child >= h->n)
			break;
		if (child + 1 < h->n && due(h, h->v[child + 1]) < due(h, h->v[child]))
			child++;
		if (due(h, item) <= due(h, h->v[child]))
			break;
		place(h, i, h->v[child]);
		i = child;
	}
	place(h, i, item);
}

void lock_heap_push(struct lock_heap *h, void *item)
{
	if (h->n == h->cap) {
		h->cap = h->cap ? h->cap * 2 : 64;
		h->v = xrealloc(h->v, h->cap * sizeof(*h->v));
	}
	place(h, h->n++, item);
	sift_up(h, h->n - 1);
}

void lock_heap_remove(struct lock_heap *h, void *item)
{
	size_t i = *place_of(h, item);

	if (i == LOCK_HEAP_NONE)
		return;
	*place_of(h, item) = LOCK_HEAP_NONE;
	void *last = h->v[--h->n];
	if (i < h->n) {
		place(h, i, last);
		lock_heap_update(h, last);
	}
	if (h->cap > 64 && h->n < h->cap / 4) {
		h->cap /= 2;
		h->v = xrealloc(h->v, h->cap * sizeof(*h->v));
	}
}

void lock_heap_update(struct lock_heap *h, void *item)
{
	size_t i = *place_of(h, item);

	if (i > 0 && due(h, h->v[(i - 1) / 2]) > due(h, item))
		sift_up(h, i);
	else
		sift_down(h, i);
}

bool lock_heap_first_due(const struct lock_heap *h, int64_t *due_us)
{
	if (!h->n)
		return false;
	*due_us = due(h, h->v[0]);
	return true;
}

void lock_heap_free(struct lock_heap *h)
{
	free(h->v);
	h->v = NULL;
	h->n = h->cap = 0;
}
