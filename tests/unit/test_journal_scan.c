/* The journal's records by their place (journal_scan.c): the scan that
 * tells each record's place, a little at a time, and the reading back
 * from places; a compaction makes a new generation, damage stops it. */
#include "autoconfig.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"
#include "journal.h"

static struct ev_loop *loop;
static uint64_t durable;

static void reset(void *arg)
{
	(void)arg;
}

static void on_record(void *arg, const unsigned char *p, size_t len)
{
	(void)arg;
	(void)p;
	(void)len;
}

static void on_done(void *arg, uint64_t ticket)
{
	(void)arg;
	durable = ticket;
}

static void setup(void)
{
	loop = ev_loop_new(0);
	durable = 0;
}

static void teardown(void)
{
	ev_loop_destroy(loop);
	th_cleanup();
}

TestSuite(journal_scan, .init = setup, .fini = teardown);

static struct journal *open_j(const char *dir)
{
	char err[256];
	struct jrnl_recovery rec;
	struct journal *j = jrnl_open(dir, FSYNC_NEVER, loop, reset, on_record, on_done, NULL, &rec, err,
				      sizeof(err));
	cr_assert_not_null(j, "%s", err);
	return j;
}

static void wait_durable(uint64_t ticket)
{
	for (int i = 0; i < 2000 && durable < ticket; i++)
		ev_run(loop, EVRUN_ONCE);
	cr_assert_geq(durable, ticket);
}

/* 100 records "r<i> ppp...", 300 bytes each, over segments of 4 KiB. */
static void append_100(struct journal *j)
{
	char buf[300];
	uint64_t t = 0;

	jrnl_set_segment_max(j, 4096);
	for (int i = 0; i < 100; i++) {
		memset(buf, 'p', sizeof(buf));
		buf[snprintf(buf, sizeof(buf), "r%d", i)] = ' ';
		t = jrnl_append(j, buf, sizeof(buf));
		ev_run(loop, EVRUN_NOWAIT);
	}
	wait_durable(t);
}

struct seen {
	jrnl_at at[256];
	char *text[256];
	size_t n;
};

static void note(void *arg, jrnl_at at, const unsigned char *p, size_t len)
{
	struct seen *s = arg;
	cr_assert_lt(s->n, 256);
	s->at[s->n] = at;
	s->text[s->n++] = xstrndup((const char *)p, len < 8 ? len : 8);
}

static void seen_free(struct seen *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->text[i]);
	s->n = 0;
}

/* Scans to the end, budget bytes a call: how many calls it took. */
static int scan_all(struct journal *j, struct jrnl_pos *pos, uint64_t gen, size_t budget, struct seen *s)
{
	int calls = 0, rc;

	do {
		rc = jrnl_scan(j, pos, gen, budget, note, s);
		calls++;
		cr_assert(rc == JRNL_SCAN_MORE || rc == JRNL_SCAN_END || rc == JRNL_SCAN_BUSY, "rc %d", rc);
		cr_assert_lt(calls, 10000);
	} while (rc != JRNL_SCAN_END);
	return calls;
}

struct got {
	char *text[256];
	size_t n, stop_after;
};

static bool take(void *arg, const unsigned char *p, size_t len)
{
	struct got *g = arg;
	g->text[g->n++] = xstrndup((const char *)p, len < 8 ? len : 8);
	return !g->stop_after || g->n < g->stop_after;
}

static void got_free(struct got *g)
{
	for (size_t i = 0; i < g->n; i++)
		free(g->text[i]);
	g->n = 0;
}

static bool prefix(const char *text, int i)
{
	char want[16];
	snprintf(want, sizeof(want), "r%d ", i);
	return strncmp(text, want, strlen(want)) == 0;
}

Test(journal_scan, each_record_has_a_place_and_reads_back_from_it)
{
	char *dir = xasprintf("%s/places", th_tmpdir());
	struct journal *j = open_j(dir);
	struct seen s = {0};
	struct jrnl_pos pos = {0};

	append_100(j);
	uint64_t gen = jrnl_generation(j);
	/* a little at a time: about 1,000 bytes a call, over many segments */
	int calls = scan_all(j, &pos, gen, 1000, &s);
	cr_assert_eq(s.n, 100, "%zu records", s.n);
	cr_assert_geq(calls, 25, "%d calls", calls);
	for (int i = 0; i < 100; i++) {
		cr_assert(prefix(s.text[i], i), "%d: %s", i, s.text[i]);
		cr_assert_neq(s.at[i], 0);
	}
	/* at the end, nothing more until more is written */
	cr_assert_eq(jrnl_scan(j, &pos, gen, 1000, note, &s), JRNL_SCAN_END);
	cr_assert_eq(s.n, 100);

	/* read back from the places: all, or until fn says stop */
	struct got g = {0};
	struct jrnl_pos after = {0};
	bool ok;
	cr_assert_eq(jrnl_read_at(j, s.at, 100, take, &g, &after, &ok), 100);
	cr_assert(ok);
	for (int i = 0; i < 100; i++)
		cr_assert(prefix(g.text[i], i), "%d: %s", i, g.text[i]);
	got_free(&g);
	g.stop_after = 10;
	cr_assert_eq(jrnl_read_at(j, s.at + 40, 60, take, &g, &after, &ok), 10);
	cr_assert(ok && prefix(g.text[0], 40) && prefix(g.text[9], 49));
	got_free(&g);

	/* jrnl_read goes on after the last record read from its place */
	g.stop_after = 1;
	jrnl_read(j, &after, take, &g);
	cr_assert(prefix(g.text[0], 50), "%s", g.text[0]);
	got_free(&g);
	seen_free(&s);
	jrnl_close(j);
	free(dir);
}

static size_t files_in(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	size_t n = 0;

	cr_assert_not_null(d);
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

Test(journal_scan, a_compaction_is_a_new_generation)
{
	char *dir = xasprintf("%s/generation", th_tmpdir());
	struct journal *j = open_j(dir);
	struct seen s = {0};
	struct jrnl_pos pos = {0};

	append_100(j);
	uint64_t gen = jrnl_generation(j);
	scan_all(j, &pos, gen, 1 << 20, &s);
	cr_assert_eq(s.n, 100);

	struct sbuf snap = {0};
	jrnl_frame(&snap, "live one", 8);
	jrnl_compact(j, &snap);
	wait_durable(jrnl_append(j, "after it", 8));
	cr_assert_neq(jrnl_generation(j), gen);
	/* the places were of the old files */
	cr_assert_eq(jrnl_scan(j, &pos, gen, 1 << 20, note, &s), JRNL_SCAN_MOVED);
	/* the old files go (by a thread of their own): then their places do not read */
	for (int i = 0; i < 1000 && files_in(dir) > 2; i++)
		usleep(10000);
	cr_assert_eq(files_in(dir), 2, "%zu files", files_in(dir));
	struct got g = {0};
	struct jrnl_pos after = {0};
	bool ok;
	cr_assert_eq(jrnl_read_at(j, s.at, 1, take, &g, &after, &ok), 0);
	cr_assert(!ok);
	cr_assert_eq(jrnl_read_at(j, s.at + 50, 1, take, &g, &after, &ok), 0);
	cr_assert(!ok);
	seen_free(&s);

	/* the new generation from its start: the snapshot, then what came after */
	pos = (struct jrnl_pos){0};
	scan_all(j, &pos, jrnl_generation(j), 1 << 20, &s);
	cr_assert_eq(s.n, 2, "%zu records", s.n);
	cr_assert_str_eq(s.text[0], "live one");
	cr_assert_str_eq(s.text[1], "after it");
	cr_assert_eq(jrnl_read_at(j, s.at, 2, take, &g, &after, &ok), 2);
	cr_assert(ok);
	cr_assert_str_eq(g.text[1], "after it");
	got_free(&g);
	seen_free(&s);
	jrnl_close(j);
	free(dir);
}

Test(journal_scan, damage_stops_the_scan_after_what_reads_whole)
{
	char *dir = xasprintf("%s/damage", th_tmpdir());
	struct journal *j = open_j(dir);
	struct seen s = {0};
	struct jrnl_pos pos = {0};

	append_100(j);
	/* a bit flipped in the payload of the 3rd record of the first segment */
	char *seg = xasprintf("%s/%016llx.seg", dir, 0ull);
	int fd = open(seg, O_RDWR);
	cr_assert_geq(fd, 0, "%s", seg);
	unsigned char c;
	off_t at = 8 + 2 * 308 + 8 + 100;
	cr_assert_eq(pread(fd, &c, 1, at), 1);
	c ^= 0x10;
	cr_assert_eq(pwrite(fd, &c, 1, at), 1);
	close(fd);
	int rc;
	while ((rc = jrnl_scan(j, &pos, jrnl_generation(j), 1 << 20, note, &s)) == JRNL_SCAN_BUSY)
		;
	cr_assert_eq(rc, JRNL_SCAN_DAMAGED);
	cr_assert_eq(s.n, 2, "%zu records", s.n);
	/* its place does not read either */
	struct got g = {0};
	struct jrnl_pos after = {0};
	bool ok;
	jrnl_at third = s.at[1] + 308;
	cr_assert_eq(jrnl_read_at(j, &third, 1, take, &g, &after, &ok), 0);
	cr_assert(!ok);
	seen_free(&s);
	free(seg);
	jrnl_close(j);
	free(dir);
}
