/*
 * journal_format.c - the journal's bytes (see journal.h): the record
 * codec (jbuf, jreader), the framing (length, CRC-32C, payload), and the
 * segment files: their names and magic, opening a new one, listing them
 * from the newest snapshot on.
 */
#include "autoconfig.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "crc32c.h"
#include "journal_impl.h"

const char jrnl_magic[8] = {'C', 'O', 'H', 'J', 'R', 'N', 'L', '1'};

/* --- codec ------------------------------------------------------------------ */

void jb_u8(struct jbuf *j, uint8_t v)
{
	sbuf_add(&j->b, &v, 1);
}

void jb_u64(struct jbuf *j, uint64_t v)
{
	unsigned char buf[10];
	size_t n = 0;

	do {
		buf[n] = (unsigned char)(v & 0x7F);
		v >>= 7;
		if (v)
			buf[n] |= 0x80;
		n++;
	} while (v);
	sbuf_add(&j->b, buf, n);
}

void jb_str(struct jbuf *j, const char *s, size_t n)
{
	jb_u64(j, n);
	sbuf_add(&j->b, s, n);
}

uint8_t jr_u8(struct jreader *r)
{
	if (r->p >= r->end) {
		r->bad = true;
		return 0;
	}
	return *r->p++;
}

uint64_t jr_u64(struct jreader *r)
{
	uint64_t v = 0;

	for (int shift = 0; shift < 64; shift += 7) {
		if (r->p >= r->end) {
			r->bad = true;
			return 0;
		}
		unsigned char c = *r->p++;
		v |= (uint64_t)(c & 0x7F) << shift;
		if (!(c & 0x80))
			return v;
	}
	r->bad = true;
	return 0;
}

const char *jr_str(struct jreader *r, size_t *n)
{
	uint64_t len = jr_u64(r);

	if (r->bad || len > (uint64_t)(r->end - r->p)) {
		r->bad = true;
		*n = 0;
		return "";
	}
	const char *s = (const char *)r->p;
	r->p += len;
	*n = (size_t)len;
	return s;
}

void jrnl_frame_head(unsigned char head[8], const void *payload, size_t len)
{
	uint32_t l = (uint32_t)len, c = crc32c(0, payload, len);

	for (int i = 0; i < 4; i++) {
		head[i] = (unsigned char)(l >> (8 * i));
		head[4 + i] = (unsigned char)(c >> (8 * i));
	}
}

void jrnl_frame(struct sbuf *out, const void *payload, size_t len)
{
	unsigned char head[8];

	jrnl_frame_head(head, payload, len);
	sbuf_add(out, head, 8);
	sbuf_add(out, payload, len);
}

uint32_t jrnl_get_u32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* --- files -------------------------------------------------------------------- */

char *jrnl_seg_path(const struct journal *j, uint64_t id, const char *ext)
{
	return xasprintf("%s/%016" PRIx64 ".%s", j->dir, id, ext);
}

void jrnl_fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd >= 0) {
		(void)fsync(fd);
		close(fd);
	}
}

int jrnl_write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Opens a new, empty append segment. */
int jrnl_seg_new(struct journal *j)
{
	/* After a failure the directory itself may be missing (a full disk
	 * when it was to be made at start). */
	if (j->failed && mkdir_p(j->dir, 0700) < 0)
		return -1;
	char *path = jrnl_seg_path(j, j->next_id, "seg");
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);

	free(path);
	if (fd < 0 || jrnl_write_all(fd, jrnl_magic, sizeof(jrnl_magic)) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (j->fd >= 0)
		close(j->fd);
	j->fd = fd;
	j->seg_id = j->next_id++;
	j->seg_size = sizeof(jrnl_magic);
	jrnl_fsync_dir(j->dir);
	return 0;
}

/* By id; a snapshot before a segment of the same id (see below). */
static int seg_cmp(const void *a, const void *b)
{
	const struct seg *x = a, *y = b;
	if (x->id != y->id)
		return (x->id > y->id) - (x->id < y->id);
	return (int)y->snap - (int)x->snap;
}

/* Segments in id order, from the newest snapshot on; older ones deleted if
 * prune.  NULL with *n 0 and errno set if the directory cannot be read. */
/* A file is cut down a few megabytes at a time before it goes: freeing a
 * 64 MiB segment at once is one large filesystem transaction, which the
 * writer's next write waited 15 ms for. */
#define PRUNE_STEP (4u << 20)

static void *unlink_all(void *arg)
{
	char **paths = arg;

	for (char **p = paths; *p; p++) {
		int fd = open(*p, O_WRONLY | O_CLOEXEC);
		struct stat st;
		if (fd >= 0 && fstat(fd, &st) == 0) {
			for (off_t size = st.st_size; size > (off_t)PRUNE_STEP;) {
				size -= PRUNE_STEP;
				if (ftruncate(fd, size) < 0)
					break;
				nanosleep(&(struct timespec){0, 1000000}, NULL);
			}
		}
		if (fd >= 0)
			close(fd);
		unlink(*p);
		free(*p);
	}
	free(paths);
	return NULL;
}

void jrnl_prune_wait(struct journal *j)
{
	if (j->pruning)
		pthread_join(j->pruner, NULL);
	j->pruning = false;
}

/* Superseded files go from a thread of their own: freeing a gigabyte of
 * segments took the writer, which every ok waits for, 350 ms. */
static void unlink_later(struct journal *j, char **paths, size_t n)
{
	if (!n) {
		free(paths);
		return;
	}
	jrnl_prune_wait(j);
	paths[n] = NULL;
	if (pthread_create(&j->pruner, NULL, unlink_all, paths) == 0)
		j->pruning = true;
	else
		unlink_all(paths);
}

struct seg *jrnl_list_segments(struct journal *j, size_t *n, enum jrnl_prune prune)
{
	char **gone = prune == JRNL_PRUNE_LATER ? xcalloc(1, sizeof(*gone)) : NULL;
	size_t ngone = 0;
	DIR *dh = opendir(j->dir);
	struct dirent *e;
	struct seg *v = NULL;
	size_t cnt = 0, cap = 0;

	*n = 0;
	if (!dh)
		return NULL;
	errno = 0;
	while ((e = readdir(dh))) {
		char ext[8];
		unsigned long long id;
		if (sscanf(e->d_name, "%16llx.%7s", &id, ext) != 2 || strlen(e->d_name) < 20 ||
		    strlen(e->d_name) > 21 || e->d_name[16] != '.')
			continue;
		if (strcmp(ext, "tmp") == 0) {	/* a compaction that died midway */
			char *p = xasprintf("%s/%s", j->dir, e->d_name);
			unlink(p);
			free(p);
			continue;
		}
		if (strcmp(ext, "seg") && strcmp(ext, "snap"))
			continue;
		if (cnt == cap)
			v = xrealloc(v, (cap = cap ? cap * 2 : 16) * sizeof(*v));
		v[cnt++] = (struct seg){id, strcmp(ext, "snap") == 0};
	}
	closedir(dh);
	if (!cnt) {
		errno = 0;
		return NULL;
	}
	qsort(v, cnt, sizeof(*v), seg_cmp);
	/* A snapshot written by a forked compaction takes the id of an empty
	 * segment, deleted once it is renamed: a crash between the two leaves
	 * both, and the snapshot is the one. */
	size_t kept = 0;
	for (size_t i = 0; i < cnt; i++) {
		if (kept && v[kept - 1].id == v[i].id) {
			char *p = jrnl_seg_path(j, v[i].id, v[i].snap ? "snap" : "seg");
			if (prune == JRNL_PRUNE_NOW)
				unlink(p);
			free(p);
			continue;
		}
		v[kept++] = v[i];
	}
	cnt = kept;
	size_t first = 0;
	for (size_t i = 0; i < cnt; i++)
		if (v[i].snap)
			first = i;
	for (size_t i = 0; prune != JRNL_PRUNE_NO && i < first; i++) {	/* superseded by the snapshot */
		char *p = jrnl_seg_path(j, v[i].id, v[i].snap ? "snap" : "seg");
		if (prune == JRNL_PRUNE_LATER) {
			gone = xrealloc(gone, (ngone + 2) * sizeof(*gone));
			gone[ngone++] = p;
			continue;
		}
		unlink(p);
		free(p);
	}
	if (gone)
		unlink_later(j, gone, ngone);
	memmove(v, v + first, (cnt - first) * sizeof(*v));
	*n = cnt - first;
	if (cnt)
		j->next_id = v[cnt - first - 1].id + 1;
	return v;
}
