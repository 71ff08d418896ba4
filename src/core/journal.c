/*
 * journal.c - see journal.h.
 */
#include "autoconfig.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"
#include "histo.h"
#include "journal.h"
#include "log.h"
#include "thread.h"

static const char magic[8] = {'C', 'O', 'H', 'J', 'R', 'N', 'L', '1'};

/* A compaction written by the loop, not yet handed over or renamed; not
 * a segment's name (list_segments would take it for one, or delete it). */
#define SNAP_NEW "snapshot.new"

struct journal {
	char *dir;
	enum fsync_policy policy;
	struct ev_loop *loop;
	jrnl_done_fn done;
	void *arg;
	ev_async done_w;
	ev_prepare batch_w;		/* batch: hands the iteration's records over */
	struct sbuf local;		/* batch: records of this loop iteration */
	uint64_t local_ticket;
	uint64_t ticket;		/* last ticket given (loop thread) */

	pthread_t thread;
	pthread_mutex_t lock;
	/* Held by the writer from taking work to putting back what failed,
	 * and by jrnl_read: a reader sees each record either in a file or in
	 * a buffer, never in the writer's hands.  Taken before lock. */
	pthread_mutex_t io;
	pthread_cond_t wake;
	/* shared, under lock */
	struct sbuf pending;		/* framed records to write */
	uint64_t pending_ticket;	/* highest ticket in pending */
	struct sbuf before;		/* records appended before the snapshot */
	uint64_t before_ticket;
	struct sbuf snapshot;		/* a compaction to do, after `before` */
	bool snapshot_file;		/* ... written in SNAP_NEW instead (jrnl_snap_*) */
	bool want_snapshot;
	uint64_t durable_ticket;	/* reported to the loop */
	bool compacting;		/* a snapshot is queued or being written */
	uint64_t failed_compact_size;	/* the size when the last compaction failed */
	uint64_t size;			/* bytes in all segments */
	bool stop;
	atomic_int failed_errno;	/* the last write failed (0: it did not); read unlocked */
	/* writer thread only */
	int fd;				/* current append segment (-1: open a new one) */
	uint64_t seg_id;		/* its id */
	uint64_t seg_size;		/* bytes in it, up to its last good record */
	uint64_t seg_max;
	uint64_t next_id;
	bool failed;			/* a write failed and was said; not mended yet */
	struct timespec retry_at;	/* after a failure: no new try before this */
	struct histo fsync_h;		/* the fdatasyncs' durations, for /metrics */
};

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

void jrnl_frame(struct sbuf *out, const void *payload, size_t len)
{
	unsigned char head[8];
	uint32_t l = (uint32_t)len, c = crc32c(0, payload, len);

	for (int i = 0; i < 4; i++) {
		head[i] = (unsigned char)(l >> (8 * i));
		head[4 + i] = (unsigned char)(c >> (8 * i));
	}
	sbuf_add(out, head, 8);
	sbuf_add(out, payload, len);
}

/* --- files -------------------------------------------------------------------- */

static char *seg_path(const struct journal *j, uint64_t id, const char *ext)
{
	return xasprintf("%s/%016" PRIx64 ".%s", j->dir, id, ext);
}

static void fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd >= 0) {
		(void)fsync(fd);
		close(fd);
	}
}

static int write_all(int fd, const char *p, size_t n)
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
static int seg_new(struct journal *j)
{
	/* After a failure the directory itself may be missing (a full disk
	 * when it was to be made at start). */
	if (j->failed && mkdir_p(j->dir, 0700) < 0)
		return -1;
	char *path = seg_path(j, j->next_id, "seg");
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);

	free(path);
	if (fd < 0 || write_all(fd, magic, sizeof(magic)) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (j->fd >= 0)
		close(j->fd);
	j->fd = fd;
	j->seg_id = j->next_id++;
	j->seg_size = sizeof(magic);
	fsync_dir(j->dir);
	return 0;
}

struct seg {
	uint64_t id;
	bool snap;
};

static int seg_cmp(const void *a, const void *b)
{
	const struct seg *x = a, *y = b;
	return (x->id > y->id) - (x->id < y->id);
}

/* Segments in id order, from the newest snapshot on; older ones deleted if
 * prune.  NULL with *n 0 and errno set if the directory cannot be read. */
static struct seg *list_segments(struct journal *j, size_t *n, bool prune)
{
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
	size_t first = 0;
	for (size_t i = 0; i < cnt; i++)
		if (v[i].snap)
			first = i;
	for (size_t i = 0; prune && i < first; i++) {	/* superseded by the snapshot */
		char *p = seg_path(j, v[i].id, v[i].snap ? "snap" : "seg");
		unlink(p);
		free(p);
	}
	memmove(v, v + first, (cnt - first) * sizeof(*v));
	*n = cnt - first;
	if (cnt)
		j->next_id = v[cnt - first - 1].id + 1;
	return v;
}

/* --- recovery ------------------------------------------------------------------ */

/*
 * Recovery tells two kinds of damage apart.  A torn tail is what a crash
 * mid-write leaves after the last record: zeros (a file system that grew
 * the file and lost the data), or the beginning of one record whose length
 * runs past the end.  It holds nothing that was acknowledged, and is cut.
 * Anything else that does not read as records (a flipped bit, a damaged
 * magic, a tail with whole but bad records in it, any shortfall in a
 * snapshot, which is written whole or not at all) is corruption: the
 * records around it are kept (reading resumes at the next offset where a
 * plausible header has a matching CRC), the file as found is kept aside as
 * <file>.corrupt, and the file is rewritten with only its good records, so
 * that new records follow good ones and the next start does not report
 * the same damage again.  Nothing is unlinked or cut at start that could
 * hold a record.
 *
 * No manifest of segments: ids are consecutive from the newest snapshot
 * on (a failed compaction gives its id back), so a segment missing in the
 * middle shows as a gap and is logged.  A manifest would also notice the
 * loss of the newest or the oldest file, but it is one more file that must
 * be rewritten durably at every roll and compaction, and that can itself
 * be lost or damaged; files vanish from a directory through an operator's
 * rm or a repaired file system, not through a crash, and the gap check
 * covers the common case of those for free.
 */

/* What reading one file found. */
struct scan {
	const char *path;
	const unsigned char *buf;
	size_t len;			/* bytes read */
	size_t records;
	bool bad_magic;
	size_t damaged;			/* stretches skipped (the tail's included) */
	uint64_t damaged_bytes;
	size_t tail;			/* where the tail starts (len: none) */
	bool torn;			/* the tail is a torn write, not damage */
	struct span { size_t from, to; } *good;	/* stretches of good records */
	size_t ngood;
	uint64_t budget;		/* bytes resync may still checksum */
};

#define SCAN_LOG_MAX 5	/* damaged stretches logged one by one, per file */

static uint32_t get_u32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The length of the whole, valid record at off, or 0; what its checksum
 * cost is taken from *budget (NULL: no limit). */
static size_t record_at(const unsigned char *buf, size_t len, size_t off, uint64_t *budget)
{
	if (off + 8 > len)
		return 0;
	uint32_t l = get_u32(buf + off);
	/* No record is empty: zeros are never a record. */
	if (l == 0 || l > JRNL_RECORD_MAX || l > len - off - 8)
		return 0;
	if (budget)
		*budget = *budget > l ? *budget - l : 0;
	return crc32c(0, buf + off + 8, l) == get_u32(buf + off + 4) ? 8 + (size_t)l : 0;
}

/*
 * The next offset after off where a valid record starts, or 0.  A record
 * whose payload took the damage has its successor right after it: tried
 * first.  Then every offset; as random bytes often look like a length
 * that fits, the checksums this costs are bounded (a few passes over the
 * file): past that the rest of the file counts as damaged, and is kept
 * aside with the rest.
 */
static size_t resync(struct scan *sc, size_t off)
{
	const unsigned char *buf = sc->buf;
	size_t len = sc->len;
	uint32_t l = off + 8 <= len ? get_u32(buf + off) : 0;

	if (l && l <= JRNL_RECORD_MAX && l <= len - off - 8 && record_at(buf, len, off + 8 + l, NULL))
		return off + 8 + l;
	for (size_t p = off + 1; p + 8 < len && sc->budget; p++)
		if (record_at(buf, len, p, &sc->budget))
			return p;
	return 0;
}

/* Is what follows the last good record a torn write (see above)?  Not if
 * the bytes to the end match the record's CRC: then they are its whole
 * payload, and the damage is in its length. */
static bool tail_is_torn(const unsigned char *buf, size_t len, size_t off)
{
	size_t p = off;

	while (p < len && buf[p] == 0)
		p++;
	if (p == len || len - off < 8)
		return true;
	uint32_t l = get_u32(buf + off);
	return l && l <= JRNL_RECORD_MAX && l > len - off - 8 &&
	       crc32c(0, buf + off + 8, len - off - 8) != get_u32(buf + off + 4);
}

static void scan_good(struct scan *sc, size_t from, size_t to)
{
	if (to <= from)
		return;
	if (sc->ngood && sc->good[sc->ngood - 1].to == from) {
		sc->good[sc->ngood - 1].to = to;
		return;
	}
	sc->good = xrealloc(sc->good, (sc->ngood + 1) * sizeof(*sc->good));
	sc->good[sc->ngood++] = (struct span){from, to};
}

static void scan_damaged(struct scan *sc, size_t from, size_t to)
{
	/* A damaged header and damage right after it are one place. */
	if (!(sc->bad_magic && sc->damaged == 1 && from == sizeof(magic)))
		sc->damaged++;
	sc->damaged_bytes += to - from;
	if (sc->damaged > SCAN_LOG_MAX)
		return;
	if (to == sc->len)
		log_error(NULL, "bus journal %s: corrupt data from byte %zu to the end (%zu bytes) "
			  "left out", sc->path, from, to - from);
	else
		log_error(NULL, "bus journal %s: corrupt data at byte %zu (%zu bytes) skipped; "
			  "reading resumes at byte %zu", sc->path, from, to - from, to);
}

/* Replays the records of sc->buf through fn, noting what is damaged.  In
 * a snapshot (written whole, then renamed) no tail is a torn write. */
static void scan_file(struct scan *sc, bool snap, jrnl_record_fn fn, void *arg)
{
	size_t off = sizeof(magic);

	if (sc->len < sizeof(magic) || memcmp(sc->buf, magic, sizeof(magic)) != 0) {
		log_error(NULL, "bus journal %s: the segment header is damaged; the records after "
			  "it are read all the same", sc->path);
		sc->bad_magic = true;
		sc->damaged++;
		sc->damaged_bytes += sc->len < sizeof(magic) ? sc->len : sizeof(magic);
	}
	while (off < sc->len) {
		size_t n = record_at(sc->buf, sc->len, off, NULL);
		if (n) {
			fn(arg, sc->buf + off + 8, n - 8);
			sc->records++;
			scan_good(sc, off, off + n);
			off += n;
			continue;
		}
		size_t next = resync(sc, off);
		if (!next)
			break;
		scan_damaged(sc, off, next);
		off = next;
	}
	sc->tail = off < sc->len ? off : sc->len;
	sc->torn = sc->tail < sc->len && !snap && tail_is_torn(sc->buf, sc->len, sc->tail);
	if (sc->tail < sc->len && !sc->torn)
		scan_damaged(sc, sc->tail, sc->len);
}

static char *slurp(const char *path, size_t *len, size_t *size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	char *buf;

	*len = *size = 0;
	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return NULL;
	}
	*size = (size_t)st.st_size;
	buf = xmalloc((size_t)st.st_size + 1);
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	*len = got;
	return buf;
}

/* Keeps the file as found beside it, as <path>.corrupt (.1, .2, ... if that
 * is taken): a hard link, else a copy.  The name, or NULL. */
static char *keep_aside(const char *path, const char *buf, size_t len)
{
	for (int i = 0; i < 100; i++) {
		char *aside = i ? xasprintf("%s.corrupt.%d", path, i) : xasprintf("%s.corrupt", path);
		if (link(path, aside) == 0)
			return aside;
		if (errno == EEXIST) {
			free(aside);
			continue;
		}
		/* No hard links here: a copy. */
		int fd = open(aside, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd >= 0 && write_all(fd, buf, len) == 0 && fsync(fd) == 0) {
			close(fd);
			return aside;
		}
		int err = errno;
		if (fd >= 0) {
			close(fd);
			unlink(aside);
		}
		free(aside);
		errno = err;
		return NULL;
	}
	errno = EEXIST;
	return NULL;
}

/* Rewrites path with the magic and sc's good records (tmp, fsync, rename):
 * the file's size after, or 0 if it could not (path is then as it was). */
static size_t rewrite(struct journal *j, uint64_t id, const char *path, const struct scan *sc)
{
	char *tmp = seg_path(j, id, "tmp");
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	size_t size = sizeof(magic);
	bool ok = fd >= 0 && write_all(fd, magic, sizeof(magic)) == 0;

	for (size_t i = 0; ok && i < sc->ngood; i++) {
		ok = write_all(fd, (const char *)sc->buf + sc->good[i].from,
			       sc->good[i].to - sc->good[i].from) == 0;
		size += sc->good[i].to - sc->good[i].from;
	}
	ok = ok && fsync(fd) == 0;
	int err = errno;
	if (fd >= 0)
		close(fd);
	if (ok && rename(tmp, path) < 0) {
		err = errno;
		ok = false;
	}
	if (!ok) {
		unlink(tmp);
		errno = err;
	}
	free(tmp);
	if (!ok)
		return 0;
	fsync_dir(j->dir);
	return size;
}

/* Keeps the damaged file aside and rewrites it with its good records: its
 * size after, or 0 (logged) if either cannot be done. */
static size_t mend(struct journal *j, const struct seg *sg, struct scan *sc, const char *buf)
{
	char *aside = keep_aside(sc->path, buf, sc->len);
	size_t size = aside ? rewrite(j, sg->id, sc->path, sc) : 0;
	int err = errno;

	if (aside && !size)
		unlink(aside);	/* the file itself is still as found */
	if (size)
		log_error(NULL, "bus journal %s: %zu records kept, %llu damaged bytes in %zu place%s "
			  "left out; the file as found is kept as %s", sc->path, sc->records,
			  (unsigned long long)sc->damaged_bytes, sc->damaged, sc->damaged == 1 ? "" : "s",
			  aside);
	else
		log_error(NULL, "bus journal %s: cannot %s: %s (the damaged file is left as it is, "
			  "and not written to)", sc->path, aside ? "rewrite it" : "keep a copy of it",
			  strerror(err));
	free(aside);
	return size;
}

/*
 * Replays one file and mends it (see above).  Returns the offset new
 * records may follow at (its size after); 0 when it must not be appended
 * to: it could not be read whole, or not be mended, and is left as found.
 */
static size_t recover_file(struct journal *j, const struct seg *sg, jrnl_record_fn fn, void *arg,
			   struct jrnl_recovery *rec)
{
	char *path = seg_path(j, sg->id, sg->snap ? "snap" : "seg");
	size_t len, size, after = 0;
	errno = 0;
	char *buf = slurp(path, &len, &size);
	struct scan sc = {.path = path, .buf = (const unsigned char *)buf, .len = len,
			  .budget = 16 * (uint64_t)len + (1u << 20)};

	if (!buf || len < size) {
		log_error(NULL, "bus journal %s: cannot read %s: %s (%zu of %zu bytes read; what "
			  "was read is replayed, the file is left as it is)", path,
			  buf ? "all of it" : "it", errno ? strerror(errno) : "short read", len, size);
		rec->corrupt++;
		if (!buf)
			goto out;
	}
	if (!sg->snap && len == size && len < sizeof(magic) && memcmp(buf, magic, len) == 0) {
		/* Its creation was cut short (a crash, a full disk): no record
		 * was ever in it.  Made whole again, it keeps its id. */
		after = rewrite(j, sg->id, path, &sc);
		goto out;
	}
	scan_file(&sc, sg->snap, fn, arg);
	rec->records += sc.records;
	rec->corrupt += sc.damaged;
	rec->corrupt_bytes += sc.damaged_bytes;
	if (len < size)
		after = 0;	/* not read whole: not touched */
	else if (sc.damaged)
		after = mend(j, sg, &sc, buf);
	else if (sc.tail < len)
		after = truncate(path, (off_t)sc.tail) == 0 ? sc.tail : 0;
	else
		after = len;
	if (sc.torn && after) {
		log_warn(NULL, "bus journal %s: cut %zu bytes of a torn tail at byte %zu (a crash "
			 "mid-write)", path, len - sc.tail, sc.tail);
		rec->truncated += len - sc.tail;
	} else if (sc.torn && !sc.damaged && len == size) {
		log_error(NULL, "bus journal %s: cannot cut %zu bytes of a torn tail at byte %zu: %s "
			  "(not written to)", path, len - sc.tail, sc.tail, strerror(errno));
	}
out:
	rec->bytes += after ? after : len;
	free(sc.good);
	free(buf);
	free(path);
	return after;
}

/* Replays segs (from the newest snapshot on) and opens the last one for
 * appending when it may be. */
static void recover_all(struct journal *j, const struct seg *segs, size_t n, jrnl_record_fn fn,
			void *arg, struct jrnl_recovery *rec)
{
	/* From the newest snapshot on (the first), ids are consecutive. */
	bool snap_whole = n && segs[0].snap;
	for (size_t i = 0; i < n; i++) {
		if (i > 0 && segs[i].id != segs[i - 1].id + 1) {
			uint64_t lost = segs[i].id - segs[i - 1].id - 1;
			log_error(NULL, "bus journal %s: %" PRIu64 " segment%s missing, from %016" PRIx64
				  " to %016" PRIx64 " (deleted?): the records in %s are lost", j->dir, lost,
				  lost == 1 ? "" : "s", segs[i - 1].id + 1, segs[i].id - 1,
				  lost == 1 ? "it" : "them");
			rec->missing += lost;
		}
		size_t good = recover_file(j, &segs[i], fn, arg, rec);
		rec->segments++;
		if (segs[i].snap && rec->corrupt)
			snap_whole = false;
		if (i == n - 1 && !segs[i].snap && good >= sizeof(magic)) {
			char *p = seg_path(j, segs[i].id, "seg");
			j->fd = open(p, O_WRONLY | O_APPEND | O_CLOEXEC);
			j->seg_id = segs[i].id;
			j->seg_size = good;
			free(p);
		}
	}
	size_t left;
	if (snap_whole)	/* what it supersedes can go now */
		free(list_segments(j, &left, true));
}

/* --- reading back, while running ------------------------------------------------ */

static void handover(struct journal *j);

/* The records of one file from *off on, through fn; false when fn said
 * stop.  *off is left after the last record read. */
static bool read_file(const char *path, uint64_t *off, jrnl_read_fn fn, void *arg)
{
	FILE *f = fopen(path, "rbe");
	unsigned char head[8], *buf = NULL;
	size_t cap = 0;
	bool go = true;

	if (!f) {
		log_error(NULL, "bus journal %s: cannot read it back: %s", path, strerror(errno));
		return true;
	}
	if (*off < sizeof(magic))
		*off = sizeof(magic);
	if (fseeko(f, (off_t)*off, SEEK_SET) < 0)
		goto out;
	while (go && fread(head, 1, 8, f) == 8) {
		uint32_t l = get_u32(head);
		if (!l || l > JRNL_RECORD_MAX)
			break;
		if (l > cap)
			buf = xrealloc(buf, cap = l);
		if (fread(buf, 1, l, f) != l || crc32c(0, buf, l) != get_u32(head + 4))
			break;
		*off += 8 + (uint64_t)l;
		go = fn(arg, buf, l);
	}
	/* The writer is idle: what does not read whole is damage, not a
	 * write under way. */
	if (go && !feof(f))
		log_error(NULL, "bus journal %s: a damaged record at byte %llu: what follows it in "
			  "this file is not read back", path, (unsigned long long)*off);
out:
	free(buf);
	fclose(f);
	return go;
}

/* The framed records of a buffer the writer has not written yet. */
static bool read_buf(const struct sbuf *b, jrnl_read_fn fn, void *arg)
{
	const unsigned char *p = (const unsigned char *)b->buf;

	for (size_t off = 0; off + 8 <= b->len;) {
		uint32_t l = get_u32(p + off);
		if (!fn(arg, p + off + 8, l))
			return false;
		off += 8 + (size_t)l;
	}
	return true;
}

void jrnl_read(struct journal *j, struct jrnl_pos *pos, jrnl_read_fn fn, void *arg)
{
	handover(j);
	pthread_mutex_lock(&j->io);
	pthread_mutex_lock(&j->lock);
	/* A compaction not written yet stands for everything before it (what
	 * failed to be written meanwhile may be only in it). */
	if (j->want_snapshot) {
		bool go;
		if (j->snapshot_file) {
			char *path = xasprintf("%s/" SNAP_NEW, j->dir);
			uint64_t from = 0;
			go = read_file(path, &from, fn, arg);
			free(path);
		} else {
			go = read_buf(&j->snapshot, fn, arg);
		}
		if (go)
			read_buf(&j->pending, fn, arg);
		pthread_mutex_unlock(&j->lock);
		pthread_mutex_unlock(&j->io);
		return;
	}
	uint64_t next_id = j->next_id;	/* list_segments sets it: the writer's */
	size_t n, i = 0;
	struct seg *segs = list_segments(j, &n, false);
	j->next_id = next_id;
	uint64_t off = 0;
	if (pos->set) {
		while (i < n && segs[i].id != pos->seg)
			i++;
		if (i < n)
			off = pos->off;
		else
			i = 0;	/* compacted away: its records are in the snapshot */
	}
	bool go = true;
	for (; go && i < n; i++, off = 0) {
		char *path = seg_path(j, segs[i].id, segs[i].snap ? "snap" : "seg");
		go = read_file(path, &off, fn, arg);
		free(path);
		*pos = (struct jrnl_pos){segs[i].id, off, true};
	}
	/* Not written yet. */
	if (go && read_buf(&j->before, fn, arg))
		read_buf(&j->pending, fn, arg);
	pthread_mutex_unlock(&j->lock);
	pthread_mutex_unlock(&j->io);
	free(segs);
}

/* --- the writer thread -------------------------------------------------------- */

/*
 * Makes a failure visible.  Called only once the segment is back to its
 * last good record: whoever sees the failure (the bus refusing, a test
 * looking at the segment) must not see the part of a record that failed.
 */
static void write_failed(struct journal *j, const char *what, int err)
{
	if (!err)
		err = EIO;
	/* Refusals start now, before the log line that says why. */
	atomic_store_explicit(&j->failed_errno, err, memory_order_relaxed);
	if (!j->failed)
		log_error(NULL, "bus journal %s: %s: %s (nothing more is stored or acknowledged "
			  "until this is mended; tried again every second)", j->dir, what, strerror(err));
	j->failed = true;
}

/*
 * A write or sync of records failed: none of them may be read back ahead
 * of their retry, nor may a later record follow a partial one.  Cut the
 * segment back to its last good record; if that fails too, leave the
 * segment (its torn end is where its reading stops) and roll to a new one.
 */
static void drop_tail(struct journal *j)
{
	if (ftruncate(j->fd, (off_t)j->seg_size) == 0 && (j->policy == FSYNC_NEVER || fdatasync(j->fd) == 0))
		return;
	close(j->fd);
	j->fd = -1;
}

/* Writes the snapshot (from memory, or syncs the file SNAP_NEW) and drops
 * what it supersedes; false if it could not. */
static bool do_compact(struct journal *j, struct sbuf *snap, bool in_file)
{
	uint64_t id = j->next_id++;
	char *tmp = in_file ? xasprintf("%s/" SNAP_NEW, j->dir) : seg_path(j, id, "tmp");
	char *final = seg_path(j, id, "snap");
	int fd = open(tmp, in_file ? O_WRONLY | O_CLOEXEC : O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	struct stat st = {.st_size = (off_t)(sizeof(magic) + snap->len)};

	if (fd < 0 || (!in_file && write_all(fd, magic, sizeof(magic)) < 0) ||
	    (!in_file && write_all(fd, snap->buf ? snap->buf : "", snap->len) < 0) || fsync(fd) < 0 ||
	    fstat(fd, &st) < 0) {
		int err = errno;
		if (fd >= 0)
			close(fd);
		unlink(tmp);
		write_failed(j, "writing a compacted snapshot", err);
		j->next_id = id;	/* ids stay consecutive: a gap means a lost file */
		goto out;
	}
	close(fd);
	if (rename(tmp, final) < 0) {
		int err = errno;
		unlink(tmp);
		write_failed(j, "renaming a compacted snapshot", err);
		j->next_id = id;
		goto out;
	}
	fsync_dir(j->dir);
	/* Everything before the snapshot is now redundant, the append segment
	 * too: the next write opens a new one. */
	size_t n;
	struct seg *segs = list_segments(j, &n, true);
	free(segs);
	if (j->fd >= 0)
		close(j->fd);
	j->fd = -1;
	j->seg_size = 0;
	pthread_mutex_lock(&j->lock);
	j->size = (uint64_t)st.st_size + j->seg_size;
	pthread_mutex_unlock(&j->lock);
	free(tmp);
	free(final);
	return true;
out:
	free(tmp);
	free(final);
	return false;
}

/* Appends framed records to the append segment and syncs them (per the
 * policy); false, with none of them in the segment, if it could not. */
static bool write_records(struct journal *j, const struct sbuf *data)
{
	/* Nothing to write, unless there is no segment since a failure: then
	 * opening one is the work that ends the failure (at start, on a full
	 * disk, nothing else would try). */
	if (!data->len && (j->fd >= 0 || !j->failed))
		return true;
	if ((j->fd < 0 || (j->seg_size + data->len > j->seg_max && j->seg_size > sizeof(magic))) &&
	    seg_new(j) < 0) {
		write_failed(j, "opening a segment", errno);
		return false;
	}
	/* The part written is cut before the failure is made visible. */
	if (write_all(j->fd, data->buf, data->len) < 0) {
		int err = errno;
		drop_tail(j);
		write_failed(j, "write", err);
		return false;
	}
	/* After a failed fdatasync the kernel may have dropped the pages it
	 * could not write: the records are written again, never trusted. */
	int64_t t0 = j->policy != FSYNC_NEVER ? histo_now_us() : 0;
	if (j->policy != FSYNC_NEVER && fdatasync(j->fd) < 0) {
		int err = errno;
		drop_tail(j);
		write_failed(j, "fsync", err);
		return false;
	}
	if (j->policy != FSYNC_NEVER)
		histo_observe_us(&j->fsync_h, (uint64_t)(histo_now_us() - t0));
	j->seg_size += data->len;
	return true;
}

/* Puts records that could not be written back ahead of what came since. */
static void put_back(struct sbuf *queue, struct sbuf *failed)
{
	if (!failed->len)
		return;
	sbuf_add(failed, queue->buf, queue->len);
	sbuf_free(queue);
	*queue = *failed;
	*failed = (struct sbuf){0};
}

static bool has_work(const struct journal *j)
{
	return j->pending.len || j->before.len || j->want_snapshot || (j->failed && j->fd < 0);
}

/* Sleeps until there is work, or until stop; after a failure, not before
 * retry_at unless stopping (then one last try). */
static void wait_for_work(struct journal *j)
{
	for (;;) {
		if (j->stop)
			return;
		if (has_work(j)) {
			struct timespec now;
			clock_gettime(CLOCK_REALTIME, &now);
			if (!j->failed || now.tv_sec > j->retry_at.tv_sec ||
			    (now.tv_sec == j->retry_at.tv_sec && now.tv_nsec >= j->retry_at.tv_nsec))
				return;
			pthread_cond_timedwait(&j->wake, &j->lock, &j->retry_at);
		} else {
			pthread_cond_wait(&j->wake, &j->lock);
		}
	}
}

static void *writer_main(void *arg)
{
	struct journal *j = arg;

	pthread_mutex_lock(&j->lock);
	for (bool last_try = false;;) {
		wait_for_work(j);
		pthread_mutex_unlock(&j->lock);
		pthread_mutex_lock(&j->io);
		pthread_mutex_lock(&j->lock);
		if (!has_work(j) || last_try) {
			pthread_mutex_unlock(&j->io);
			break;	/* stopping, and nothing left, or it cannot be written */
		}
		last_try = j->stop;
		struct sbuf data = j->pending, before = j->before, snap = j->snapshot;
		uint64_t data_ticket = j->pending_ticket, before_ticket = j->before_ticket;
		bool compact = j->want_snapshot, in_file = j->snapshot_file;
		j->pending = j->before = j->snapshot = (struct sbuf){0};
		j->want_snapshot = j->snapshot_file = false;
		pthread_mutex_unlock(&j->lock);

		/* Order: what came before a compaction, the snapshot, what came
		 * after.  A snapshot holds the effect of every record before it,
		 * so once it is written what failed before it is moot. */
		uint64_t grew = 0;
		bool before_ok = write_records(j, &before);
		if (before_ok)
			grew += before.len;
		bool compacted = compact && do_compact(j, &snap, in_file);
		if (compacted)
			grew = 0;	/* do_compact set the size afresh */
		bool data_ok = write_records(j, &data);
		if (data_ok)
			grew += data.len;
		sbuf_free(&snap);

		pthread_mutex_lock(&j->lock);
		j->size += grew;
		if (compact && !j->want_snapshot)
			j->compacting = false;
		if (compact && !compacted)	/* no new try before the journal doubles */
			j->failed_compact_size = j->size;
		/* What failed is written again, in order, before anything newer;
		 * a snapshot queued meanwhile supersedes it. */
		if (!j->want_snapshot) {
			if (!data_ok)
				put_back(&j->pending, &data);
			if (!before_ok && !compacted) {
				put_back(&j->pending, &before);
				if (data_ticket < before_ticket)
					data_ticket = before_ticket;
			}
			if ((!data_ok || (!before_ok && !compacted)) && j->pending_ticket < data_ticket)
				j->pending_ticket = data_ticket;
		}
		sbuf_free(&data);
		sbuf_free(&before);
		uint64_t upto = data_ticket > before_ticket ? data_ticket : before_ticket;
		if (data_ok && (before_ok || compacted)) {
			if (j->failed)
				log_info(NULL, "bus journal %s: written again", j->dir);
			j->failed = false;
			j->failed_errno = 0;
			if (upto > j->durable_ticket)
				j->durable_ticket = upto;
		} else {
			clock_gettime(CLOCK_REALTIME, &j->retry_at);
			j->retry_at.tv_sec += 1;
		}
		pthread_mutex_unlock(&j->io);
		ev_async_send(j->loop, &j->done_w);
	}
	pthread_mutex_unlock(&j->lock);
	return NULL;
}

static void done_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	struct journal *j = container_of(w, struct journal, done_w);
	(void)loop;
	(void)revents;

	pthread_mutex_lock(&j->lock);
	uint64_t t = j->durable_ticket;
	pthread_mutex_unlock(&j->lock);
	j->done(j->arg, t);
}

/* Hands records to the writer (batch: once per loop iteration). */
static void handover(struct journal *j)
{
	if (!j->local.len)
		return;
	pthread_mutex_lock(&j->lock);
	sbuf_add(&j->pending, j->local.buf, j->local.len);
	j->pending_ticket = j->local_ticket;
	pthread_cond_signal(&j->wake);
	pthread_mutex_unlock(&j->lock);
	j->local.len = 0;
}

/*
 * Just before the loop sleeps, after every other callback of the
 * iteration (lowest priority): a check watcher would run first in the
 * next iteration, before that iteration's records exist, so a record would
 * wait for some later event; and the writer woken before the bus's own
 * prepare watcher would take the CPU from the deliveries it sends.
 */
static void batch_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	(void)loop;
	(void)revents;
	handover(container_of(w, struct journal, batch_w));
}

uint64_t jrnl_append(struct journal *j, const void *payload, size_t len)
{
	assert(len > 0);	/* an empty record reads back as a torn tail */
	jrnl_frame(&j->local, payload, len);
	j->local_ticket = ++j->ticket;
	if (j->policy != FSYNC_BATCH)
		handover(j);
	return j->ticket;
}

void jrnl_compact(struct journal *j, struct sbuf *framed)
{
	handover(j);
	pthread_mutex_lock(&j->lock);
	/* What came before belongs to the old segments, ahead of the snapshot
	 * (a snapshot not yet written is superseded by this one). */
	if (j->pending.len) {
		sbuf_add(&j->before, j->pending.buf, j->pending.len);
		j->before_ticket = j->pending_ticket;
		sbuf_free(&j->pending);
	}
	sbuf_free(&j->snapshot);
	j->snapshot = *framed;
	*framed = (struct sbuf){0};
	j->snapshot_file = false;
	j->want_snapshot = true;
	j->compacting = true;
	pthread_cond_signal(&j->wake);
	pthread_mutex_unlock(&j->lock);
}

/* A compaction written record by record into SNAP_NEW by the loop: a
 * snapshot as big as the spilled queues it holds is never in memory. */
struct jrnl_snap {
	FILE *f;
	uint64_t bytes;
	int err;
};

struct jrnl_snap *jrnl_snap_begin(struct journal *j)
{
	struct jrnl_snap *s = xcalloc(1, sizeof(*s));
	char *path = xasprintf("%s/" SNAP_NEW, j->dir);

	s->f = fopen(path, "wbe");
	free(path);
	if (!s->f)
		s->err = errno;
	else if (fwrite(magic, 1, sizeof(magic), s->f) != sizeof(magic))
		s->err = errno ? errno : EIO;
	s->bytes = sizeof(magic);
	return s;
}

void jrnl_snap_record(struct jrnl_snap *s, const void *payload, size_t len)
{
	unsigned char head[8];
	uint32_t l = (uint32_t)len, c = crc32c(0, payload, len);

	if (s->err)
		return;
	for (int i = 0; i < 4; i++) {
		head[i] = (unsigned char)(l >> (8 * i));
		head[4 + i] = (unsigned char)(c >> (8 * i));
	}
	if (fwrite(head, 1, 8, s->f) != 8 || fwrite(payload, 1, len, s->f) != len)
		s->err = errno ? errno : EIO;
	s->bytes += 8 + len;
}

uint64_t jrnl_snap_end(struct journal *j, struct jrnl_snap *s)
{
	uint64_t bytes = s->bytes;

	if (s->f && fclose(s->f) != 0 && !s->err)
		s->err = errno ? errno : EIO;
	if (s->err) {
		char *path = xasprintf("%s/" SNAP_NEW, j->dir);
		log_error(NULL, "bus journal %s: cannot write a compacted snapshot: %s (not compacted)",
			  path, strerror(s->err));
		unlink(path);
		free(path);
		pthread_mutex_lock(&j->lock);
		j->failed_compact_size = j->size;	/* no new try before the journal doubles */
		pthread_mutex_unlock(&j->lock);
		free(s);
		return 0;
	}
	free(s);
	handover(j);
	pthread_mutex_lock(&j->lock);
	if (j->pending.len) {
		sbuf_add(&j->before, j->pending.buf, j->pending.len);
		j->before_ticket = j->pending_ticket;
		sbuf_free(&j->pending);
	}
	sbuf_free(&j->snapshot);
	j->snapshot_file = true;
	j->want_snapshot = true;
	j->compacting = true;
	pthread_cond_signal(&j->wake);
	pthread_mutex_unlock(&j->lock);
	return bytes;
}

bool jrnl_may_compact(const struct journal *j)
{
	struct journal *m = (struct journal *)j;
	pthread_mutex_lock(&m->lock);
	bool may = !j->compacting && j->size >= 2 * j->failed_compact_size;
	pthread_mutex_unlock(&m->lock);
	return may;
}

const struct histo *jrnl_fsync_histo(const struct journal *j)
{
	return &j->fsync_h;
}

uint64_t jrnl_size(const struct journal *j)
{
	struct journal *m = (struct journal *)j;
	pthread_mutex_lock(&m->lock);
	uint64_t s = j->size + j->pending.len + j->before.len + j->local.len;
	pthread_mutex_unlock(&m->lock);
	return s;
}

int jrnl_failing(const struct journal *j)
{
	return atomic_load_explicit(&j->failed_errno, memory_order_relaxed);
}

uint64_t jrnl_last_ticket(const struct journal *j)
{
	return j->ticket;
}

void jrnl_set_segment_max(struct journal *j, uint64_t bytes)
{
	pthread_mutex_lock(&j->lock);
	j->seg_max = bytes;
	pthread_mutex_unlock(&j->lock);
}

struct journal *jrnl_open(const char *dir, enum fsync_policy policy, struct ev_loop *loop,
			  void (*reset)(void *arg), jrnl_record_fn fn, jrnl_done_fn done, void *arg,
			  struct jrnl_recovery *rec, char *err, size_t errlen)
{
	struct journal *j = xcalloc(1, sizeof(*j));
	size_t n;

	*rec = (struct jrnl_recovery){0};
	j->dir = xstrdup(dir);
	j->seg_max = JRNL_SEGMENT_MAX;
	j->policy = policy;
	j->loop = loop;
	j->done = done;
	j->arg = arg;
	j->fd = -1;
	HISTO_INIT_FAST(&j->fsync_h);
	/* A directory that cannot be made holds nothing to recover: the
	 * journal starts failing (below), as on a full disk. */
	int mkdir_errno = mkdir_p(dir, 0700) < 0 ? errno : 0;
	/* Older segments are dropped only once their snapshot has been read
	 * whole: at start nothing is destroyed that might be needed. */
	struct seg *segs = list_segments(j, &n, false);
	if (!segs && errno && !mkdir_errno) {
		/* What is there is unknown: starting afresh could overwrite it. */
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		free(j->dir);
		free(j);
		return NULL;
	}
	char *snap_new = xasprintf("%s/" SNAP_NEW, dir);
	unlink(snap_new);	/* a compaction that died before it was handed over */
	free(snap_new);
	reset(arg);
	recover_all(j, segs, n, fn, arg, rec);
	free(segs);
	j->size = rec->bytes;
	/* A full state_dir at start must not stop the stack: the journal
	 * starts failing (what is to be stored is refused, with the reason)
	 * and the writer tries to open a segment every second, as after a
	 * failed write at runtime. */
	if (mkdir_errno)
		write_failed(j, "making the journal directory", mkdir_errno);
	else if (j->fd < 0 && seg_new(j) < 0)
		write_failed(j, "opening a segment", errno);
	if (j->failed) {
		clock_gettime(CLOCK_REALTIME, &j->retry_at);
		j->retry_at.tv_sec += 1;
	}
	pthread_mutex_init(&j->lock, NULL);
	pthread_mutex_init(&j->io, NULL);
	pthread_cond_init(&j->wake, NULL);
	ev_async_init(&j->done_w, done_cb);
	ev_async_start(loop, &j->done_w);
	ev_prepare_init(&j->batch_w, batch_cb);
	ev_set_priority(&j->batch_w, EV_MINPRI);
	ev_prepare_start(loop, &j->batch_w);
	int rc = thread_start(&j->thread, writer_main, j);
	if (rc != 0) {
		log_error(NULL, "cannot start the journal thread: %s", strerror(rc));
		abort();
	}
	return j;
}

void jrnl_close(struct journal *j)
{
	if (!j)
		return;
	handover(j);
	pthread_mutex_lock(&j->lock);
	j->stop = true;
	pthread_cond_signal(&j->wake);
	pthread_mutex_unlock(&j->lock);
	pthread_join(j->thread, NULL);
	ev_async_stop(j->loop, &j->done_w);
	ev_prepare_stop(j->loop, &j->batch_w);
	if (j->fd >= 0)
		close(j->fd);
	pthread_mutex_destroy(&j->lock);
	pthread_mutex_destroy(&j->io);
	pthread_cond_destroy(&j->wake);
	sbuf_free(&j->local);
	sbuf_free(&j->pending);
	sbuf_free(&j->before);
	sbuf_free(&j->snapshot);
	free(j->dir);
	free(j);
}
