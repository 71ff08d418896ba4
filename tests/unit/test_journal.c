/* Unit tests of the journal (journal.c): framing, replay, torn tails,
 * corruption, segments, compaction; and of CRC-32C. */
#include "autoconfig.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"
#include "helpers.h"
#include "journal.h"

static struct ev_loop *loop;
static struct strv replayed;
static int resets;
static uint64_t durable;

static void reset(void *arg)
{
	(void)arg;
	resets++;
	strv_free(&replayed);
}

static void on_record(void *arg, const unsigned char *p, size_t len)
{
	(void)arg;
	strv_push_owned(&replayed, xstrndup((const char *)p, len));
}

static void on_done(void *arg, uint64_t ticket)
{
	(void)arg;
	durable = ticket;
}

static void setup(void)
{
	loop = ev_loop_new(0);
	replayed = (struct strv){0};
	resets = 0;
	durable = 0;
}

static void teardown(void)
{
	strv_free(&replayed);
	ev_loop_destroy(loop);
	th_cleanup();
}

TestSuite(journal, .init = setup, .fini = teardown);

static struct journal *open_j(const char *dir, enum fsync_policy pol, struct jrnl_recovery *rec)
{
	char err[256];
	struct journal *j = jrnl_open(dir, pol, loop, reset, on_record, on_done, NULL, rec, err, sizeof(err));
	cr_assert_not_null(j, "%s", err);
	return j;
}

static void wait_durable(uint64_t ticket)
{
	for (int i = 0; i < 2000 && durable < ticket; i++)
		ev_run(loop, EVRUN_ONCE);
	cr_assert_geq(durable, ticket);
}

static char *dir_of(const char *name)
{
	return xasprintf("%s/%s", th_tmpdir(), name);
}

Test(journal, crc32c_known_values)
{
	cr_assert_eq(crc32c(0, "123456789", 9), 0xE3069283);
	cr_assert_eq(crc32c(0, "", 0), 0);
	char big[1000];
	memset(big, 'x', sizeof(big));
	/* incremental equals one-shot */
	cr_assert_eq(crc32c(crc32c(0, big, 300), big + 300, 700), crc32c(0, big, 1000));
}

Test(journal, codec_round_trip)
{
	struct jbuf b = {0};
	jb_u8(&b, 7);
	jb_u64(&b, 0);
	jb_u64(&b, 300);
	jb_u64(&b, UINT64_MAX);
	jb_str(&b, "topic.a", 7);
	struct jreader r = {(const unsigned char *)b.b.buf, (const unsigned char *)b.b.buf + b.b.len, false};
	size_t n;
	cr_assert_eq(jr_u8(&r), 7);
	cr_assert_eq(jr_u64(&r), 0);
	cr_assert_eq(jr_u64(&r), 300);
	cr_assert_eq(jr_u64(&r), UINT64_MAX);
	const char *s = jr_str(&r, &n);
	cr_assert_eq(n, 7);
	cr_assert(memcmp(s, "topic.a", 7) == 0);
	cr_assert(!r.bad);
	jr_u8(&r);
	cr_assert(r.bad);	/* past the end */
	sbuf_free(&b.b);
}

Test(journal, append_close_replay)
{
	struct jrnl_recovery rec;
	char *dir = dir_of("j");
	struct journal *j = open_j(dir, FSYNC_ALWAYS, &rec);
	uint64_t t = 0;

	cr_assert_eq(rec.records, 0);
	for (int i = 0; i < 100; i++) {
		char buf[32];
		int n = snprintf(buf, sizeof(buf), "record %d", i);
		t = jrnl_append(j, buf, (size_t)n);
	}
	wait_durable(t);
	jrnl_close(j);
	j = open_j(dir, FSYNC_BATCH, &rec);
	cr_assert_eq(rec.records, 100);
	cr_assert_eq(replayed.n, 100);
	cr_assert_str_eq(replayed.v[0], "record 0");
	cr_assert_str_eq(replayed.v[99], "record 99");
	cr_assert_eq(rec.truncated, 0);
	/* batch: handed over once per loop iteration */
	t = jrnl_append(j, "more", 4);
	wait_durable(t);
	jrnl_close(j);
	j = open_j(dir, FSYNC_NEVER, &rec);
	cr_assert_eq(replayed.n, 101);
	jrnl_close(j);
	free(dir);
}

static char *only_segment(const char *dir)
{
	DIR *dh = opendir(dir);
	struct dirent *e;
	char *path = NULL;
	while ((e = readdir(dh)))
		if (strstr(e->d_name, ".seg")) {
			free(path);
			path = xasprintf("%s/%s", dir, e->d_name);
		}
	closedir(dh);
	return path;
}

Test(journal, torn_tail_is_cut_and_the_rest_kept)
{
	struct jrnl_recovery rec;
	char *dir = dir_of("torn");
	struct journal *j = open_j(dir, FSYNC_ALWAYS, &rec);
	uint64_t t = 0;

	for (int i = 0; i < 10; i++)
		t = jrnl_append(j, "0123456789", 10);
	wait_durable(t);
	jrnl_close(j);
	char *seg = only_segment(dir);
	struct stat st;
	stat(seg, &st);
	/* a record cut in its middle, as a crash mid-write leaves it */
	cr_assert_eq(truncate(seg, st.st_size - 4), 0);
	j = open_j(dir, FSYNC_ALWAYS, &rec);
	cr_assert_eq(rec.records, 9);
	cr_assert_eq(rec.truncated, 14);
	t = jrnl_append(j, "after", 5);
	wait_durable(t);
	jrnl_close(j);
	j = open_j(dir, FSYNC_ALWAYS, &rec);
	cr_assert_eq(rec.records, 10);
	cr_assert_str_eq(replayed.v[9], "after");
	jrnl_close(j);
	free(seg);
	free(dir);
}

/* Writes n records "record-00", "record-01", ... (9 bytes: 17 framed). */
static void write_numbered(const char *dir, int n)
{
	struct jrnl_recovery rec;
	struct journal *j = open_j(dir, FSYNC_ALWAYS, &rec);
	uint64_t t = 0;

	for (int i = 0; i < n; i++) {
		char buf[16];
		snprintf(buf, sizeof(buf), "record-%02d", i);
		t = jrnl_append(j, buf, 9);
	}
	wait_durable(t);
	jrnl_close(j);
}

#define NUMBERED_AT(i) (8 + 17 * (i))	/* the offset of record i */

static void flip_bit(const char *path, off_t at, int bit)
{
	int fd = open(path, O_RDWR);
	unsigned char c;

	cr_assert_eq(pread(fd, &c, 1, at), 1);
	c ^= (unsigned char)(1 << bit);
	cr_assert_eq(pwrite(fd, &c, 1, at), 1);
	close(fd);
}

static char *slurp_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	cr_assert_not_null(f, "%s", path);
	char *buf = xmalloc(1 << 20);
	*len = fread(buf, 1, 1 << 20, f);
	fclose(f);
	return buf;
}

/* The records replayed are record-00 .. record-(n-1) but `lost`. */
static void assert_numbered_but(int n, int lost)
{
	size_t k = 0;

	for (int i = 0; i < n; i++) {
		char want[16];
		if (i == lost)
			continue;
		snprintf(want, sizeof(want), "record-%02d", i);
		cr_assert_lt(k, replayed.n, "record %d missing", i);
		cr_assert_str_eq(replayed.v[k], want);
		k++;
	}
	cr_assert_eq(k, replayed.n, "%zu records replayed", replayed.n);
}

/*
 * One flipped bit costs the record it is in, not the journal: the records
 * after it are read, the damage is counted, the file as found is kept as
 * *.corrupt, and the segment is mended (the next start finds it clean, and
 * new records follow good ones).  In the header's length, its CRC, the
 * payload; in the first, a middle and the last record.
 */
Test(journal, one_flipped_bit_costs_one_record)
{
	static const struct {
		int record, byte, bit;
	} cases[] = {
		{2, 8 + 3, 0},	/* payload */
		{2, 4, 5},	/* CRC */
		{2, 0, 0},	/* length: one byte less */
		{2, 0, 6},	/* length: past the end of the file */
		{2, 3, 7},	/* length: past JRNL_RECORD_MAX */
		{0, 8, 1},	/* the first record */
		{5, 12, 2},	/* another one */
		{9, 10, 4},	/* the last one: a whole record, damaged, is no torn tail */
		{9, 0, 5},	/* nor is one whose length alone runs past the end */
	};

	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct jrnl_recovery rec;
		char *dir = xasprintf("%s/flip%zu", th_tmpdir(), c);
		write_numbered(dir, 10);
		char *seg = only_segment(dir);
		size_t len;
		flip_bit(seg, NUMBERED_AT(cases[c].record) + cases[c].byte, cases[c].bit);
		char *flipped = slurp_file(seg, &len);
		struct journal *j = open_j(dir, FSYNC_ALWAYS, &rec);
		assert_numbered_but(10, cases[c].record);
		cr_assert_eq(rec.corrupt, 1, "case %zu", c);
		cr_assert_eq(rec.corrupt_bytes, 17, "case %zu", c);
		cr_assert_eq(rec.truncated, 0, "case %zu", c);
		char *aside = xasprintf("%s.corrupt", seg);
		size_t alen;
		char *kept = slurp_file(aside, &alen);
		cr_assert(alen == len && memcmp(kept, flipped, len) == 0, "case %zu: *.corrupt is not "
			  "the file as found", c);
		uint64_t t = jrnl_append(j, "after", 5);
		wait_durable(t);
		jrnl_close(j);
		j = open_j(dir, FSYNC_ALWAYS, &rec);
		cr_assert_eq(rec.corrupt, 0, "case %zu: the damage was found again", c);
		cr_assert_eq(replayed.n, 10);
		cr_assert_str_eq(replayed.v[9], "after");
		jrnl_close(j);
		free(flipped);
		free(kept);
		free(aside);
		free(seg);
		free(dir);
	}
}

/* A damaged magic costs no record: the file is kept aside, its records
 * read, and it gets a good header back. */
Test(journal, a_damaged_magic_keeps_the_records)
{
	struct jrnl_recovery rec;
	char *dir = dir_of("magic");

	write_numbered(dir, 5);
	char *seg = only_segment(dir);
	flip_bit(seg, 3, 0);
	struct journal *j = open_j(dir, FSYNC_ALWAYS, &rec);
	assert_numbered_but(5, -1);
	cr_assert_eq(rec.corrupt, 1);
	jrnl_close(j);
	char *aside = xasprintf("%s.corrupt", seg);
	cr_assert_eq(access(aside, F_OK), 0, "%s is not there", aside);
	j = open_j(dir, FSYNC_ALWAYS, &rec);
	cr_assert_eq(rec.corrupt, 0);
	cr_assert_eq(replayed.n, 5);
	jrnl_close(j);
	free(aside);
	free(seg);
	free(dir);
}

/* A snapshot is written whole or not at all: one that ends early is
 * corruption (counted, kept aside), never silently shorter. */
Test(journal, a_truncated_snapshot_is_corruption)
{
	static const int keep[] = {12, 8 + 17 + 5};	/* a few bytes; mid second record */

	for (size_t c = 0; c < sizeof(keep) / sizeof(keep[0]); c++) {
		struct jrnl_recovery rec;
		char *dir = xasprintf("%s/snap%zu", th_tmpdir(), c);
		struct journal *j = open_j(dir, FSYNC_ALWAYS, &rec);
		struct sbuf snap = {0};
		jrnl_frame(&snap, "snap-0000", 9);
		jrnl_frame(&snap, "snap-0001", 9);
		jrnl_frame(&snap, "snap-0002", 9);
		jrnl_compact(j, &snap);
		uint64_t t = jrnl_append(j, "after", 5);
		wait_durable(t);
		jrnl_close(j);
		char *p = xasprintf("%s/%016x.snap", dir, 0);
		struct stat st;
		if (stat(p, &st) != 0) {	/* the snapshot took the next id */
			free(p);
			p = xasprintf("%s/%016x.snap", dir, 1);
		}
		cr_assert_eq(stat(p, &st), 0, "no snapshot %s", p);
		cr_assert_eq(truncate(p, keep[c]), 0);
		j = open_j(dir, FSYNC_ALWAYS, &rec);
		cr_assert_eq(rec.corrupt, 1, "case %zu", c);
		cr_assert_eq(rec.corrupt_bytes, (uint64_t)keep[c] - 8 - 17 * c);
		cr_assert_eq(replayed.n, c + 1);
		cr_assert_str_eq(replayed.v[c], "after");
		char *aside = xasprintf("%s.corrupt", p);
		cr_assert_eq(access(aside, F_OK), 0, "%s is not there", aside);
		jrnl_close(j);
		free(aside);
		free(p);
		free(dir);
	}
}

/* Segment ids are consecutive: one deleted in the middle is reported, and
 * the records of the others are all there. */
Test(journal, a_deleted_middle_segment_is_reported)
{
	struct jrnl_recovery rec;
	char *dir = dir_of("gap");
	struct journal *j = open_j(dir, FSYNC_NEVER, &rec);
	uint64_t t = 0;
	char buf[200];

	jrnl_set_segment_max(j, 1024);
	for (int i = 0; i < 30; i++) {
		memset(buf, 'a' + i % 26, sizeof(buf));
		snprintf(buf, sizeof(buf), "r%02d", i);
		t = jrnl_append(j, buf, sizeof(buf));
		wait_durable(t);	/* one record per write: segments fill evenly */
	}
	jrnl_close(j);
	/* 1024-byte segments of 208-byte records: 4 per segment (the first
	 * one over the limit rolls), so segment 1 holds r04 .. r07. */
	char *mid = xasprintf("%s/%016x.seg", dir, 1);
	cr_assert_eq(unlink(mid), 0, "%s", mid);
	j = open_j(dir, FSYNC_NEVER, &rec);
	cr_assert_eq(rec.missing, 1);
	cr_assert_eq(replayed.n, 26);
	cr_assert_str_eq(replayed.v[3], "r03");
	cr_assert_str_eq(replayed.v[4], "r08");
	cr_assert_str_eq(replayed.v[25], "r29");
	jrnl_close(j);
	free(mid);
	free(dir);
}

/* A segment whose creation was cut short (0 bytes: a full disk, a crash)
 * held no record: it is made whole and used, with no gap or damage. */
Test(journal, an_empty_segment_is_reused)
{
	struct jrnl_recovery rec;
	char *dir = dir_of("empty");

	write_numbered(dir, 3);
	char *p = xasprintf("%s/%016x.seg", dir, 1);
	close(open(p, O_WRONLY | O_CREAT, 0600));
	struct journal *j = open_j(dir, FSYNC_ALWAYS, &rec);
	cr_assert_eq(rec.corrupt, 0);
	cr_assert_eq(replayed.n, 3);
	uint64_t t = jrnl_append(j, "after", 5);
	wait_durable(t);
	jrnl_close(j);
	j = open_j(dir, FSYNC_ALWAYS, &rec);
	cr_assert_eq(rec.corrupt + rec.missing, 0);
	cr_assert_eq(replayed.n, 4);
	cr_assert_str_eq(replayed.v[3], "after");
	jrnl_close(j);
	free(p);
	free(dir);
}

Test(journal, a_zero_filled_tail_is_cut)
{
	struct jrnl_recovery rec;
	char *dir = dir_of("zeros");
	struct journal *j = open_j(dir, FSYNC_ALWAYS, &rec);
	uint64_t t = 0;

	for (int i = 0; i < 3; i++)
		t = jrnl_append(j, "abcdefgh", 8);
	wait_durable(t);
	jrnl_close(j);
	char *seg = only_segment(dir);
	struct stat st;
	stat(seg, &st);
	/* a file system that extended the file and lost what was in it */
	cr_assert_eq(truncate(seg, st.st_size + 4096), 0);
	j = open_j(dir, FSYNC_ALWAYS, &rec);
	cr_assert_eq(rec.records, 3);
	cr_assert_eq(rec.truncated, 4096);
	t = jrnl_append(j, "after", 5);
	wait_durable(t);
	jrnl_close(j);
	j = open_j(dir, FSYNC_ALWAYS, &rec);
	cr_assert_eq(rec.records, 4);
	cr_assert_eq(rec.truncated, 0);
	cr_assert_str_eq(replayed.v[3], "after");
	jrnl_close(j);
	free(seg);
	free(dir);
}

/*
 * Waits for the writer to make its failure visible.  The atomic is polled,
 * not the loop: the wake-up comes after the log line, and the log line is
 * held up below.
 */
static void wait_failing(struct journal *j)
{
	double deadline = (double)now_mono_ms() + 10000 * th_time_factor();

	while (!jrnl_failing(j) && (double)now_mono_ms() < deadline)
		usleep(1000);
	cr_assert_neq(jrnl_failing(j), 0);
}

/* Points stderr at a full pipe: the next log line blocks its writer. */
static int hold_stderr(int pipe_fds[2])
{
	char junk[4096];
	int saved = dup(STDERR_FILENO);

	cr_assert_eq(pipe(pipe_fds), 0);
	fcntl(pipe_fds[1], F_SETFL, O_NONBLOCK);
	memset(junk, '.', sizeof(junk));
	while (write(pipe_fds[1], junk, sizeof(junk)) > 0)
		;
	fcntl(pipe_fds[1], F_SETFL, 0);
	dup2(pipe_fds[1], STDERR_FILENO);
	return saved;
}

/* Lets the held log line through and gives stderr back. */
static void release_stderr(int pipe_fds[2], int saved)
{
	char junk[4096];

	fcntl(pipe_fds[0], F_SETFL, O_NONBLOCK);
	while (read(pipe_fds[0], junk, sizeof(junk)) > 0)
		;
	dup2(saved, STDERR_FILENO);
	close(saved);
}

/*
 * A write that fails (here: past RLIMIT_FSIZE, as on a full disk) is not
 * reported durable, leaves no part of itself in the segment, and is
 * written again, in order, once it can be.
 *
 * The part is cut before the failure shows: stderr is a full pipe while
 * the record fails, so the writer stops at its log line, just after making
 * the failure visible; whatever the scheduling, the segment must be whole
 * by then (a test that looked as soon as the failure showed once saw it
 * not yet cut, under valgrind).
 */
static void failed_write_is_retried(enum fsync_policy pol)
{
	struct jrnl_recovery rec;
	char *dir = dir_of("full");
	struct journal *j = open_j(dir, pol, &rec);
	struct rlimit old, lim;
	char big[200];
	int held[2];

	signal(SIGXFSZ, SIG_IGN);
	uint64_t t1 = jrnl_append(j, "first", 5);
	wait_durable(t1);
	char *seg = only_segment(dir);
	struct stat st;
	stat(seg, &st);
	cr_assert_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = (rlim_t)st.st_size + 50;	/* part of the next record fits */
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
	memset(big, 'b', sizeof(big));
	int saved = hold_stderr(held);
	uint64_t t2 = jrnl_append(j, big, sizeof(big));
	ev_run(loop, EVRUN_NOWAIT);	/* batch: hands the record over */
	wait_failing(j);
	struct stat now;
	stat(seg, &now);
	release_stderr(held, saved);
	cr_assert_eq(jrnl_failing(j), EFBIG);
	cr_assert_lt(durable, t2, "a record that is not on disk was reported durable");
	cr_assert_eq(now.st_size, st.st_size, "a part of the failed record stayed in the segment (%lld, not %lld bytes)", (long long)now.st_size, (long long)st.st_size);
	uint64_t t3 = jrnl_append(j, "third", 5);
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
	wait_durable(t3);	/* the next try, a second later */
	cr_assert_eq(jrnl_failing(j), 0);
	jrnl_close(j);
	j = open_j(dir, pol, &rec);
	cr_assert_eq(rec.records, 3);
	cr_assert_eq(rec.truncated, 0);
	cr_assert_eq(rec.corrupt, 0);
	cr_assert_str_eq(replayed.v[0], "first");
	cr_assert_eq(strlen(replayed.v[1]), sizeof(big));
	cr_assert_str_eq(replayed.v[2], "third");
	jrnl_close(j);
	close(held[0]);
	close(held[1]);
	free(seg);
	free(dir);
}

Test(journal, a_failed_write_is_not_durable_and_is_written_again_always)
{
	failed_write_is_retried(FSYNC_ALWAYS);
}

Test(journal, a_failed_write_is_not_durable_and_is_written_again_batch)
{
	failed_write_is_retried(FSYNC_BATCH);
}

Test(journal, garbage_file_is_not_a_journal)
{
	struct jrnl_recovery rec;
	char *dir = dir_of("garb");
	mkdir(dir, 0700);
	char *p = xasprintf("%s/0000000000000001.seg", dir);
	FILE *f = fopen(p, "w");
	fputs("this is not a journal at all", f);
	fclose(f);
	struct journal *j = open_j(dir, FSYNC_ALWAYS, &rec);
	cr_assert_eq(rec.records, 0);
	cr_assert_eq(rec.corrupt, 1);
	uint64_t t = jrnl_append(j, "x", 1);
	wait_durable(t);
	jrnl_close(j);
	/* kept as found, beside the mended file */
	char *aside = xasprintf("%s.corrupt", p);
	size_t len;
	char *kept = slurp_file(aside, &len);
	cr_assert(len == 28 && memcmp(kept, "this is not a journal at all", 28) == 0);
	j = open_j(dir, FSYNC_ALWAYS, &rec);
	cr_assert_eq(rec.corrupt, 0);
	cr_assert_eq(replayed.n, 1);
	jrnl_close(j);
	free(kept);
	free(aside);
	free(p);
	free(dir);
}

Test(journal, segments_roll_and_compaction_replaces_them)
{
	struct jrnl_recovery rec;
	char *dir = dir_of("roll");
	struct journal *j = open_j(dir, FSYNC_NEVER, &rec);
	uint64_t t = 0;
	char rec200[200];

	jrnl_set_segment_max(j, 4096);
	memset(rec200, 'r', sizeof(rec200));
	for (int i = 0; i < 200; i++) {
		t = jrnl_append(j, rec200, sizeof(rec200));
		ev_run(loop, EVRUN_NOWAIT);
	}
	wait_durable(t);
	cr_assert_gt(jrnl_size(j), 200 * 200);
	/* compact: the live state is two records */
	struct sbuf snap = {0};
	jrnl_frame(&snap, "live one", 8);
	jrnl_frame(&snap, "live two", 8);
	jrnl_compact(j, &snap);
	t = jrnl_append(j, "after snap", 10);
	wait_durable(t);
	cr_assert_lt(jrnl_size(j), 200);
	jrnl_close(j);
	j = open_j(dir, FSYNC_NEVER, &rec);
	cr_assert_eq(replayed.n, 3, "%zu records", replayed.n);
	cr_assert_str_eq(replayed.v[0], "live one");
	cr_assert_str_eq(replayed.v[2], "after snap");
	cr_assert_eq(rec.segments, 2);	/* the snapshot and the one after it */
	jrnl_close(j);
	free(dir);
}

/* jrnl_read: what it reads back, up to a number of records (0: all). */
struct readback {
	struct strv got;
	size_t stop_after;
};

static bool read_one(void *arg, const unsigned char *p, size_t len)
{
	struct readback *rb = arg;
	strv_push_owned(&rb->got, xstrndup((const char *)p, len));
	return !rb->stop_after || rb->got.n < rb->stop_after;
}

Test(journal, read_back_while_running_across_segments_buffers_and_a_compaction)
{
	struct jrnl_recovery rec;
	char *dir = dir_of("readback");
	struct journal *j = open_j(dir, FSYNC_NEVER, &rec);
	uint64_t t = 0;
	char buf[300];

	jrnl_set_segment_max(j, 4096);
	for (int i = 0; i < 100; i++) {
		memset(buf, 'p', sizeof(buf));
		int n = snprintf(buf, sizeof(buf), "r%d", i);
		buf[n] = ' ';
		t = jrnl_append(j, buf, sizeof(buf));
		ev_run(loop, EVRUN_NOWAIT);
	}
	wait_durable(t);
	/* batch would keep these in memory until the loop sleeps: never here */
	jrnl_append(j, "pending 1", 9);
	jrnl_append(j, "pending 2", 9);

	/* everything, in order, the last two from memory */
	struct jrnl_pos pos = {0};
	struct readback rb = {0};
	jrnl_read(j, &pos, read_one, &rb);
	cr_assert_eq(rb.got.n, 102, "%zu records", rb.got.n);
	cr_assert(strncmp(rb.got.v[0], "r0 ", 3) == 0);
	cr_assert(strncmp(rb.got.v[99], "r99 ", 4) == 0);
	cr_assert_str_eq(rb.got.v[101], "pending 2");
	strv_free(&rb.got);

	/* stopped after 30 (past a segment's end: 13 of 308 bytes fit in 4096),
	 * the next read goes on from there */
	pos = (struct jrnl_pos){0};
	rb.stop_after = 30;
	jrnl_read(j, &pos, read_one, &rb);
	cr_assert_eq(rb.got.n, 30);
	cr_assert(pos.set);
	strv_free(&rb.got);
	rb.stop_after = 1;
	jrnl_read(j, &pos, read_one, &rb);
	cr_assert(strncmp(rb.got.v[0], "r30 ", 4) == 0, "%s", rb.got.v[0]);
	strv_free(&rb.got);

	/* a compaction queued (not written: the writer waits for a reader)
	 * stands for all before it; once written, a position in a segment it
	 * deleted reads from the snapshot on */
	struct jrnl_pos old = pos;
	struct sbuf snap = {0};
	jrnl_frame(&snap, "live", 4);
	jrnl_compact(j, &snap);
	t = jrnl_append(j, "after", 5);
	rb.stop_after = 0;
	jrnl_read(j, &pos, read_one, &rb);
	cr_assert_geq(rb.got.n, 2);
	cr_assert_str_eq(rb.got.v[rb.got.n - 1], "after");
	strv_free(&rb.got);
	wait_durable(t);
	jrnl_read(j, &old, read_one, &rb);
	cr_assert_eq(rb.got.n, 2, "%zu records", rb.got.n);
	cr_assert_str_eq(rb.got.v[0], "live");
	cr_assert_str_eq(rb.got.v[1], "after");
	strv_free(&rb.got);
	jrnl_close(j);
	free(dir);
}

Test(journal, a_compaction_written_to_a_file_replaces_the_segments)
{
	struct jrnl_recovery rec;
	char *dir = dir_of("snapfile");
	struct journal *j = open_j(dir, FSYNC_ALWAYS, &rec);
	uint64_t t = 0;

	for (int i = 0; i < 50; i++)
		t = jrnl_append(j, "dead record", 11);
	wait_durable(t);
	struct jrnl_snap *s = jrnl_snap_begin(j);
	jrnl_snap_record(s, "live one", 8);
	jrnl_snap_record(s, "live two", 8);
	cr_assert_eq(jrnl_snap_end(j, s), 8 + 2 * (8 + 8));
	t = jrnl_append(j, "after", 5);
	/* read back while it may still be queued: the snapshot, then "after" */
	struct jrnl_pos pos = {0};
	struct readback rb = {0};
	jrnl_read(j, &pos, read_one, &rb);
	cr_assert_eq(rb.got.n, 3, "%zu records", rb.got.n);
	cr_assert_str_eq(rb.got.v[0], "live one");
	cr_assert_str_eq(rb.got.v[2], "after");
	strv_free(&rb.got);
	wait_durable(t);
	cr_assert_lt(jrnl_size(j), 100);
	jrnl_close(j);
	char *left = xasprintf("%s/snapshot.new", dir);
	cr_assert(access(left, F_OK) < 0, "snapshot.new left behind");
	free(left);
	j = open_j(dir, FSYNC_NEVER, &rec);
	cr_assert_eq(replayed.n, 3, "%zu records", replayed.n);
	cr_assert_str_eq(replayed.v[1], "live two");
	cr_assert_eq(rec.segments, 2);
	jrnl_close(j);
	free(dir);
}

/* --- a compaction written by a child process (journal_fork.c) ------------------- */

struct forked {
	struct journal *j;
	uint64_t bytes;
	bool done;
};

/* In the child: waits for the parent's records after the fork to be on
 * disk, then writes the live state and what it read of the journal. */
static void fork_snap(void *arg, struct jrnl_snap *s)
{
	struct forked *f = arg;
	struct jrnl_pos pos = {0};
	struct readback rb = {0};

	usleep(300 * 1000);
	jrnl_read(f->j, &pos, read_one, &rb);
	char *saw = xasprintf("saw %zu, the last %s", rb.got.n, rb.got.n ? rb.got.v[rb.got.n - 1] : "-");
	jrnl_snap_record(s, "live one", 8);
	jrnl_snap_record(s, saw, strlen(saw));
	free(saw);
	strv_free(&rb.got);
}

static void fork_done(void *arg, uint64_t bytes)
{
	struct forked *f = arg;
	f->bytes = bytes;
	f->done = true;
}

static struct journal *fork_setup(const char *dir, struct forked *f)
{
	struct jrnl_recovery rec;
	struct journal *j = open_j(dir, FSYNC_ALWAYS, &rec);
	uint64_t t = 0;

	for (int i = 0; i < 50; i++)
		t = jrnl_append(j, "dead record", 11);
	wait_durable(t);
	jrnl_append(j, "just before", 11);	/* maybe not written yet at the fork */
	*f = (struct forked){.j = j};
	int rc = 0;
	for (int i = 0; i < 1000 && rc == 0; i++) {
		rc = jrnl_fork_compact(j, fork_snap, fork_done, f);
		if (rc == 0)
			usleep(1000);	/* the writer was writing */
	}
	cr_assert_eq(rc, 1, "jrnl_fork_compact: %d (%s)", rc, strerror(errno));
	cr_assert_not(jrnl_may_compact(j), "a compaction is under way");
	/* the loop goes on: records after the fork, on disk before the child reads */
	for (int i = 0; i < 3; i++)
		t = jrnl_append(j, "after the fork", 14);
	wait_durable(t);
	return j;
}

Test(journal, a_compaction_by_a_child_keeps_what_came_after_the_fork)
{
	struct jrnl_recovery rec;
	struct forked f;
	char *dir = dir_of("forked");
	struct journal *j = fork_setup(dir, &f);

	for (int i = 0; i < 5000 && !f.done; i++)
		ev_run(loop, EVRUN_ONCE);
	cr_assert(f.done, "the child never reported");
	cr_assert_gt(f.bytes, 8);
	for (int i = 0; i < 5000 && !jrnl_may_compact(j); i++)
		usleep(1000);
	cr_assert(jrnl_may_compact(j), "the snapshot was not installed");
	uint64_t t = jrnl_append(j, "later", 5);
	wait_durable(t);
	jrnl_close(j);
	j = open_j(dir, FSYNC_NEVER, &rec);
	/* the child read the files as they were at the fork: 51 records,
	 * "just before" from memory or from the file, none after */
	cr_assert_eq(replayed.n, 6, "%zu records", replayed.n);
	cr_assert_str_eq(replayed.v[0], "live one");
	cr_assert_str_eq(replayed.v[1], "saw 51, the last just before");
	cr_assert_str_eq(replayed.v[2], "after the fork");
	cr_assert_str_eq(replayed.v[4], "after the fork");
	cr_assert_str_eq(replayed.v[5], "later");
	cr_assert_eq(rec.missing, 0);
	cr_assert_eq(rec.corrupt, 0);
	cr_assert_eq(rec.segments, 2, "%zu segments: the snapshot, then the records since the fork", rec.segments);
	char *left = xasprintf("%s/snapshot.new", dir);
	cr_assert(access(left, F_OK) < 0, "snapshot.new left behind");
	free(left);
	jrnl_close(j);
	free(dir);
}

static char *child_pid_file;

/* The child closes every descriptor it did not make: it says its pid in a file. */
static void fork_snap_pid(void *arg, struct jrnl_snap *s)
{
	FILE *f = fopen(child_pid_file, "w");

	fork_snap(arg, s);
	fprintf(f, "%d\n", (int)getpid());
	fclose(f);
}

/* Reaped: a zombie still has its /proc entry. */
static bool pid_gone(pid_t pid)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d", (int)pid);
	return access(path, F_OK) < 0;
}

/* On the default loop (cohortd's), which reaps every child, the child's
 * exit is not waited for (unmapping a large copy of cohortd took 20 ms of
 * the loop): the loop reaps it, also after the journal closed. */
Test(journal, a_compaction_by_a_child_on_the_default_loop_is_left_to_the_loop_to_reap)
{
	struct forked f;
	char *dir = dir_of("forkdefault");
	pid_t child = 0;

	ev_loop_destroy(loop);
	loop = ev_default_loop(0);
	child_pid_file = xasprintf("%s.pid", dir);
	/* A copy that takes the child a while to unmap: it is still there
	 * when it has reported, most times. */
	size_t big = 256u << 20;
	char *ballast = mmap(NULL, big, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert(ballast != MAP_FAILED);
	memset(ballast, 1, big);
	struct jrnl_recovery rec;
	struct journal *j = open_j(dir, FSYNC_ALWAYS, &rec);
	f = (struct forked){.j = j};
	int rc = 0;
	for (int i = 0; i < 1000 && rc == 0; i++) {
		rc = jrnl_fork_compact(j, fork_snap_pid, fork_done, &f);
		if (rc == 0)
			usleep(1000);
	}
	cr_assert_eq(rc, 1, "jrnl_fork_compact: %d (%s)", rc, strerror(errno));
	for (int i = 0; i < 5000 && !f.done; i++)
		ev_run(loop, EVRUN_ONCE);
	cr_assert(f.done, "the child never reported");
	cr_assert_gt(f.bytes, 8);
	FILE *pf = fopen(child_pid_file, "r");
	cr_assert(pf && fscanf(pf, "%d", &child) == 1, "the child's pid");
	fclose(pf);
	jrnl_close(j);
	for (int i = 0; i < 5000 && !pid_gone(child); i++) {
		ev_run(loop, EVRUN_NOWAIT);
		usleep(1000);
	}
	cr_assert(pid_gone(child), "the child %d was not reaped", (int)child);
	munmap(ballast, big);
	unlink(child_pid_file);
	free(child_pid_file);
	free(dir);
}

Test(journal, a_compaction_by_a_child_cut_short_leaves_every_record)
{
	struct jrnl_recovery rec;
	struct forked f;
	char *dir = dir_of("forkstop");
	struct journal *j = fork_setup(dir, &f);

	jrnl_close(j);	/* kills the child, as a stop or a crash would */
	cr_assert_not(f.done);
	j = open_j(dir, FSYNC_NEVER, &rec);
	cr_assert_eq(replayed.n, 54, "%zu records", replayed.n);
	cr_assert_str_eq(replayed.v[50], "just before");
	cr_assert_str_eq(replayed.v[53], "after the fork");
	/* the empty segment that held the snapshot's place: no gap */
	cr_assert_eq(rec.missing, 0);
	cr_assert_eq(rec.corrupt, 0);
	jrnl_close(j);
	free(dir);
}
