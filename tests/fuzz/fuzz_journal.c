/*
 * fuzz_journal.c - journal recovery: the input is a segment file, put in
 * a scratch bus directory and recovered by bus_store_open as cohortd does
 * at start (jrnl_open's scan, resynchronisation, moving damaged segments
 * aside, and bus_store.c replaying each record into sessions, queues,
 * retained values and mids).  Then it is recovered once more from what
 * the first recovery left on disk: that must read without damage, to
 * the same records and state.
 *
 * The first byte says what the file is: even a .seg, odd a .snap.
 */
#include "autoconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bus.h"
#include "daemon.h"
#include "fuzz.h"

static const char config_text[] = "[cohort]\nbus_fsync = never\n[service:svc]\ncommand = true\n";

static struct ev_loop *loop;
static struct cohort_config *cfg;
static char *dir;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	cfg = fz_setup(config_text, sizeof(config_text) - 1, &loop, &dir);
	if (mkdir(dir, 0700) < 0) {
		perror(dir);
		abort();
	}
	return 0;
}

static void recover(struct cohortd *d, const char *what)
{
	char err[256];

	struct bus_policy pol;

	bus_policy_from_config(&pol, cfg);
	d->bus = (struct bus){.loop = loop};
	bus_set_policy(&d->bus, &pol);
	d->bus.max_message = pol.max_message;
	d->bus.fsync = pol.fsync;
	if (bus_store_open(&d->bus, dir, err, sizeof(err)) < 0) {
		/* a directory we made and may write: nothing in a segment
		 * is a reason to refuse it */
		fprintf(stderr, "%s recovery refused the journal: %s\n", what, err);
		abort();
	}
}

static void close_bus(struct cohortd *d)
{
	bus_store_close(&d->bus);
	bus_free_all(&d->bus);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct cohortd d;

	if (!size)
		return 0;
	d = (struct cohortd){.loop = loop, .cfg = cfg};
	fz_empty(dir);
	char name[64];
	snprintf(name, sizeof(name), "bus/%016x.%s", 1, data[0] & 1 ? "snap" : "seg");
	fz_write(name, data + 1, size - 1);

	recover(&d, "the first");
	struct jrnl_recovery first = d.bus.recovery;
	size_t sessions = d.bus.sessions.len, retained = d.bus.retained.len;
	uint64_t seq = d.bus.seq;
	close_bus(&d);

	recover(&d, "the second");
	const struct jrnl_recovery *r = &d.bus.recovery;
	if (r->corrupt || r->truncated || r->missing || r->records != first.records ||
	    d.bus.sessions.len != sessions || d.bus.retained.len != retained || d.bus.seq != seq) {
		fprintf(stderr, "the second recovery differs: %zu records (first %zu), %zu damaged, %llu cut, "
			"%zu sessions (%zu), %zu retained (%zu), seq %llu (%llu)\n", r->records, first.records,
			r->corrupt, (unsigned long long)r->truncated, d.bus.sessions.len, sessions,
			d.bus.retained.len, retained, (unsigned long long)d.bus.seq, (unsigned long long)seq);
		abort();
	}
	close_bus(&d);
	return 0;
}
