/*
 * journal_scan.c - records by their place: a scan of the files written so
 * far that tells where each record is, and the reading of records back
 * from places it told.  The bus keeps the place of each delivery it
 * spilled (bus_spill_index.c), so that reading one session's backlog back
 * does not mean scanning every other session's records too.
 *
 * A place is valid for one generation of the journal: a compaction
 * installed removes the files before it, and the generation moves on.
 */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"
#include "journal_impl.h"

/* A place packed in 64 bits: a snapshot's or a segment's file, its id,
 * the offset of the record's frame in it. */
#define AT_SNAP (1ull << 63)
#define AT_OFF_BITS 40
#define AT_ID_MAX (1ull << (63 - AT_OFF_BITS))

static jrnl_at at_make(const struct seg *sg, uint64_t off)
{
	if (sg->id >= AT_ID_MAX || off >= (1ull << AT_OFF_BITS))
		return 0;
	return (sg->snap ? AT_SNAP : 0) | sg->id << AT_OFF_BITS | off;
}

static struct seg at_seg(jrnl_at at)
{
	return (struct seg){(at & ~AT_SNAP) >> AT_OFF_BITS, (at & AT_SNAP) != 0};
}

static uint64_t at_off(jrnl_at at)
{
	return at & ((1ull << AT_OFF_BITS) - 1);
}

uint64_t jrnl_generation(const struct journal *j)
{
	struct journal *m = (struct journal *)j;
	pthread_mutex_lock(&m->lock);
	uint64_t g = j->generation;
	pthread_mutex_unlock(&m->lock);
	return g;
}

/* The records of one file from *off, to its end or about budget bytes. */
static int scan_file(const char *path, const struct seg *sg, uint64_t *off, uint64_t end, size_t *budget,
		     jrnl_scan_fn fn, void *arg)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	unsigned char *buf = NULL;
	size_t cap = 0;
	int rc = JRNL_SCAN_END;

	if (fd < 0 || fstat(fd, &st) < 0) {
		rc = JRNL_SCAN_MOVED;
		goto out;
	}
	if (end > (uint64_t)st.st_size)
		end = (uint64_t)st.st_size;
	while (*off < end) {
		if (*budget == 0) {
			rc = JRNL_SCAN_MORE;
			break;
		}
		size_t want = end - *off < JRNL_SCAN_CHUNK ? (size_t)(end - *off) : JRNL_SCAN_CHUNK;
		if (want > *budget)
			want = *budget < 8 ? 8 : *budget;
		if (want > cap)
			buf = xrealloc(buf, cap = want);
		ssize_t got = pread(fd, buf, want, (off_t)*off);
		if (got < 8) {
			rc = JRNL_SCAN_DAMAGED;
			break;
		}
		size_t p = 0;
		while (p + 8 <= (size_t)got) {
			uint32_t l = jrnl_get_u32(buf + p);
			if (l == 0 || l > JRNL_RECORD_MAX || *off + p + 8 + l > end) {
				rc = JRNL_SCAN_DAMAGED;
				goto out;
			}
			if (p + 8 + l > (size_t)got)
				break;	/* read whole next time */
			if (crc32c(0, buf + p + 8, l) != jrnl_get_u32(buf + p + 4)) {
				rc = JRNL_SCAN_DAMAGED;
				goto out;
			}
			jrnl_at at = at_make(sg, *off + p);
			if (!at) {
				rc = JRNL_SCAN_DAMAGED;
				goto out;
			}
			fn(arg, at, buf + p + 8, l);
			p += 8 + l;
		}
		if (p == 0) {	/* one record over the chunk */
			uint32_t l = jrnl_get_u32(buf);
			if (8 + (size_t)l > cap)
				buf = xrealloc(buf, cap = 8 + (size_t)l);
			if (pread(fd, buf, 8 + (size_t)l, (off_t)*off) != (ssize_t)(8 + l) ||
			    crc32c(0, buf + 8, l) != jrnl_get_u32(buf + 4)) {
				rc = JRNL_SCAN_DAMAGED;
				break;
			}
			fn(arg, at_make(sg, *off), buf + 8, l);
			p = 8 + (size_t)l;
		}
		*off += p;
		*budget = *budget > p ? *budget - p : 0;
	}
out:
	free(buf);
	if (fd >= 0)
		close(fd);
	return rc;
}

int jrnl_scan(struct journal *j, struct jrnl_pos *pos, uint64_t generation, size_t budget, jrnl_scan_fn fn,
	      void *arg)
{
	/* The writer between two writes: the files hold whole records. */
	if (pthread_mutex_trylock(&j->io) != 0)
		return JRNL_SCAN_BUSY;
	pthread_mutex_lock(&j->lock);
	if (j->generation != generation) {
		pthread_mutex_unlock(&j->lock);
		pthread_mutex_unlock(&j->io);
		return JRNL_SCAN_MOVED;
	}
	uint64_t next_id = j->next_id;	/* jrnl_list_segments sets it: the writer's */
	size_t n, i = 0;
	struct seg *segs = jrnl_list_segments(j, &n, JRNL_PRUNE_NO);
	j->next_id = next_id;
	pthread_mutex_unlock(&j->lock);

	int rc = JRNL_SCAN_END;
	uint64_t off = sizeof(jrnl_magic);
	if (pos->set) {
		while (i < n && (segs[i].id != pos->seg))
			i++;
		if (i == n)
			rc = JRNL_SCAN_MOVED;
		else
			off = pos->off;
	}
	for (; rc == JRNL_SCAN_END && i < n; i++, off = sizeof(jrnl_magic)) {
		char *path = jrnl_seg_path(j, segs[i].id, segs[i].snap ? "snap" : "seg");
		/* The segment appended to: up to its last whole record. */
		uint64_t end = j->fd >= 0 && segs[i].id == j->seg_id && !segs[i].snap ? j->seg_size : UINT64_MAX;
		rc = scan_file(path, &segs[i], &off, end, &budget, fn, arg);
		free(path);
		*pos = (struct jrnl_pos){segs[i].id, off, true};
	}
	pthread_mutex_unlock(&j->io);
	free(segs);
	return rc;
}

size_t jrnl_read_at(struct journal *j, const jrnl_at *at, size_t n, jrnl_read_fn fn, void *arg,
		    struct jrnl_pos *after, bool *ok)
{
	unsigned char small[8 + 512], *buf = small;
	size_t cap = sizeof(small), i;
	/* Opened for this call only: the last close of a file a compaction
	 * removed frees its blocks, tens of milliseconds for a segment. */
	int fd = -1;
	struct seg open_sg = {0};

	*ok = true;
	for (i = 0; i < n; i++) {
		struct seg sg = at_seg(at[i]);
		uint64_t off = at_off(at[i]);
		if (fd < 0 || sg.id != open_sg.id || sg.snap != open_sg.snap) {
			if (fd >= 0)
				close(fd);
			char *path = jrnl_seg_path(j, sg.id, sg.snap ? "snap" : "seg");
			fd = open(path, O_RDONLY | O_CLOEXEC);
			free(path);
			open_sg = sg;
		}
		ssize_t got = fd < 0 ? -1 : pread(fd, buf, cap, (off_t)off);
		uint32_t l = got >= 8 ? jrnl_get_u32(buf) : 0;
		if (l == 0 || l > JRNL_RECORD_MAX) {
			*ok = false;
			break;
		}
		if ((size_t)got < 8 + (size_t)l) {
			if (8 + (size_t)l > cap) {
				if (buf != small)
					free(buf);
				buf = xmalloc(cap = 8 + (size_t)l);
			}
			if (pread(fd, buf, 8 + (size_t)l, (off_t)off) != (ssize_t)(8 + l)) {
				*ok = false;
				break;
			}
		}
		if (crc32c(0, buf + 8, l) != jrnl_get_u32(buf + 4)) {
			*ok = false;
			break;
		}
		*after = (struct jrnl_pos){sg.id, off + 8 + l, true};
		if (!fn(arg, buf + 8, l)) {
			i++;
			break;
		}
	}
	if (buf != small)
		free(buf);
	if (fd >= 0)
		close(fd);
	return i;
}
