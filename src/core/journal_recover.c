/*
 * journal_recover.c - reading the journal: recovery at start (each file
 * scanned, a torn tail cut, damage skipped, the file kept aside as
 * *.corrupt and rewritten with its good records) and, while the writer
 * runs, reading the records back from a position (jrnl_read).
 */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"
#include "journal_impl.h"
#include "log.h"

/* --- recovery ------------------------------------------------------------------ */

/*
 * Recovery tells two kinds of damage apart.  A torn tail is what a crash
 * mid-write leaves after the last record: zeros (a file system that grew
 * the file and lost the data), or the beginning of one record whose length
 * runs past the end.  It holds nothing that was acknowledged, and is cut.
 * Anything else that does not read as records (a flipped bit, a damaged
 * jrnl_magic, a tail with whole but bad records in it, any shortfall in a
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
	bool mapped;			/* buf is the file, mapped */
	size_t dropped;			/* its pages before this are dropped */
};

#define SCAN_LOG_MAX 5	/* damaged stretches logged one by one, per file */

/* The length of the whole, valid record at off, or 0; what its checksum
 * cost is taken from *budget (NULL: no limit). */
static size_t record_at(const unsigned char *buf, size_t len, size_t off, uint64_t *budget)
{
	if (off + 8 > len)
		return 0;
	uint32_t l = jrnl_get_u32(buf + off);
	/* No record is empty: zeros are never a record. */
	if (l == 0 || l > JRNL_RECORD_MAX || l > len - off - 8)
		return 0;
	if (budget)
		*budget = *budget > l ? *budget - l : 0;
	return crc32c(0, buf + off + 8, l) == jrnl_get_u32(buf + off + 4) ? 8 + (size_t)l : 0;
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
	uint32_t l = off + 8 <= len ? jrnl_get_u32(buf + off) : 0;

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
	uint32_t l = jrnl_get_u32(buf + off);
	return l && l <= JRNL_RECORD_MAX && l > len - off - 8 &&
	       crc32c(0, buf + off + 8, len - off - 8) != jrnl_get_u32(buf + off + 4);
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
	if (!(sc->bad_magic && sc->damaged == 1 && from == sizeof(jrnl_magic)))
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

#define SCAN_DROP (16u << 20)	/* pages behind the scan are dropped this much at a time */

/* Drops the mapped pages before off (none if the file was read). */
static void scan_drop(struct scan *sc, size_t off)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t upto = off / page * page;

	if (!sc->mapped || upto < sc->dropped + SCAN_DROP)
		return;
	(void)madvise((void *)(sc->buf + sc->dropped), upto - sc->dropped, MADV_DONTNEED);
	sc->dropped = upto;
}

/* Replays the records of sc->buf through fn, noting what is damaged.  In
 * a snapshot (written whole, then renamed) no tail is a torn write. */
static void scan_file(struct scan *sc, bool snap, jrnl_record_fn fn, void *arg)
{
	size_t off = sizeof(jrnl_magic);

	if (sc->len < sizeof(jrnl_magic) || memcmp(sc->buf, jrnl_magic, sizeof(jrnl_magic)) != 0) {
		log_error(NULL, "bus journal %s: the segment header is damaged; the records after "
			  "it are read all the same", sc->path);
		sc->bad_magic = true;
		sc->damaged++;
		sc->damaged_bytes += sc->len < sizeof(jrnl_magic) ? sc->len : sizeof(jrnl_magic);
	}
	while (off < sc->len) {
		size_t n = record_at(sc->buf, sc->len, off, NULL);
		if (n) {
			fn(arg, sc->buf + off + 8, n - 8);
			sc->records++;
			scan_good(sc, off, off + n);
			off += n;
			scan_drop(sc, off);
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

/*
 * A file to replay: mapped, not read into a buffer.  A snapshot holds the
 * whole live state; read whole, it was in memory twice at the end of its
 * replay (its records, and the state made of them), and every segment
 * cost a 64 MB buffer, its pages cleared and copied into.  scan_file drops
 * the pages behind it (MADV_DONTNEED: mending reads them from the file
 * again).  NULL (errno set): slurp() reads it the old way.
 */
static char *map_file(const char *path, size_t *len, size_t *size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;

	*len = *size = 0;
	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) < 0 || st.st_size == 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		errno = EINVAL;
		return NULL;
	}
	void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return NULL;
	(void)madvise(p, (size_t)st.st_size, MADV_SEQUENTIAL);
	*len = *size = (size_t)st.st_size;
	return p;
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
		if (fd >= 0 && jrnl_write_all(fd, buf, len) == 0 && fsync(fd) == 0) {
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
	char *tmp = jrnl_seg_path(j, id, "tmp");
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	size_t size = sizeof(jrnl_magic);
	bool ok = fd >= 0 && jrnl_write_all(fd, jrnl_magic, sizeof(jrnl_magic)) == 0;

	for (size_t i = 0; ok && i < sc->ngood; i++) {
		ok = jrnl_write_all(fd, (const char *)sc->buf + sc->good[i].from,
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
	jrnl_fsync_dir(j->dir);
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
	char *path = jrnl_seg_path(j, sg->id, sg->snap ? "snap" : "seg");
	size_t len, size, after = 0;
	errno = 0;
	char *buf = map_file(path, &len, &size);
	bool mapped = buf != NULL;
	if (!mapped) {
		errno = 0;
		buf = slurp(path, &len, &size);
	}
	struct scan sc = {.path = path, .buf = (const unsigned char *)buf, .len = len,
			  .budget = 16 * (uint64_t)len + (1u << 20), .mapped = mapped};

	if (!buf || len < size) {
		log_error(NULL, "bus journal %s: cannot read %s: %s (%zu of %zu bytes read; what "
			  "was read is replayed, the file is left as it is)", path,
			  buf ? "all of it" : "it", errno ? strerror(errno) : "short read", len, size);
		rec->corrupt++;
		if (!buf)
			goto out;
	}
	if (!sg->snap && len == size && len < sizeof(jrnl_magic) && memcmp(buf, jrnl_magic, len) == 0) {
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
	if (mapped)
		munmap(buf, len);
	else
		free(buf);
	free(path);
	return after;
}

/* Replays segs (from the newest snapshot on) and opens the last one for
 * appending when it may be. */
void jrnl_recover_all(struct journal *j, const struct seg *segs, size_t n, jrnl_record_fn fn,
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
		if (i == n - 1 && !segs[i].snap && good >= sizeof(jrnl_magic)) {
			char *p = jrnl_seg_path(j, segs[i].id, "seg");
			j->fd = open(p, O_WRONLY | O_APPEND | O_CLOEXEC);
			j->seg_id = segs[i].id;
			j->seg_size = good;
			free(p);
		}
	}
	size_t left;
	if (snap_whole)	/* what it supersedes can go now */
		free(jrnl_list_segments(j, &left, JRNL_PRUNE_NOW));
}

/* --- reading back, while running ------------------------------------------------ */

/* The records of one file from *off on, and before end, through fn;
 * false when fn said stop.  *off is left after the last record read. */
static bool read_file(const char *path, uint64_t *off, uint64_t end, jrnl_read_fn fn, void *arg)
{
	FILE *f = fopen(path, "rbe");
	unsigned char head[8], *buf = NULL;
	size_t cap = 0;
	bool go = true;

	if (!f) {
		log_error(NULL, "bus journal %s: cannot read it back: %s", path, strerror(errno));
		return true;
	}
	if (*off < sizeof(jrnl_magic))
		*off = sizeof(jrnl_magic);
	if (fseeko(f, (off_t)*off, SEEK_SET) < 0)
		goto out;
	while (go && *off < end && fread(head, 1, 8, f) == 8) {
		uint32_t l = jrnl_get_u32(head);
		if (!l || l > JRNL_RECORD_MAX)
			break;
		if (l > cap)
			buf = xrealloc(buf, cap = l);
		if (fread(buf, 1, l, f) != l || crc32c(0, buf, l) != jrnl_get_u32(head + 4))
			break;
		*off += 8 + (uint64_t)l;
		go = fn(arg, buf, l);
	}
	/* The writer is idle: what does not read whole is damage, not a
	 * write under way. */
	if (go && *off < end && !feof(f))
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
		uint32_t l = jrnl_get_u32(p + off);
		if (!fn(arg, p + off + 8, l))
			return false;
		off += 8 + (size_t)l;
	}
	return true;
}

void jrnl_read(struct journal *j, struct jrnl_pos *pos, jrnl_read_fn fn, void *arg)
{
	jrnl_handover(j);
	pthread_mutex_lock(&j->io);
	pthread_mutex_lock(&j->lock);
	/* A compaction not written yet stands for everything before it (what
	 * failed to be written meanwhile may be only in it). */
	if (j->want_snapshot) {
		bool go;
		if (j->snapshot_file) {
			char *path = xasprintf("%s/" SNAP_NEW, j->dir);
			uint64_t from = 0;
			go = read_file(path, &from, UINT64_MAX, fn, arg);
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
	uint64_t next_id = j->next_id;	/* jrnl_list_segments sets it: the writer's */
	size_t n, i = 0;
	struct seg *segs = jrnl_list_segments(j, &n, JRNL_PRUNE_NO);
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
	/* A forked compaction's child: the files as they were at the fork
	 * (the writer appends to them meanwhile). */
	if (j->read_limited)
		while (n && segs[n - 1].id > j->limit_seg)
			n--;
	for (; go && i < n; i++, off = 0) {
		char *path = jrnl_seg_path(j, segs[i].id, segs[i].snap ? "snap" : "seg");
		uint64_t end = j->read_limited && segs[i].id == j->limit_seg ? j->limit_off : UINT64_MAX;
		go = read_file(path, &off, end, fn, arg);
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
