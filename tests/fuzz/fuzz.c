/* fuzz.c - see fuzz.h. */
#include "autoconfig.h"

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ev.h>

#include "config.h"
#include "fuzz.h"
#include "log.h"
#include "util.h"

static char tmpdir[PATH_MAX];

static void rmtree(const char *path)
{
	fz_empty(path);
	rmdir(path);
}

void fz_empty(const char *dir)
{
	DIR *dh = opendir(dir);
	struct dirent *e;

	if (!dh)
		return;
	while ((e = readdir(dh))) {
		char p[PATH_MAX];
		struct stat st;
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
			rmtree(p);
		else
			unlink(p);
	}
	closedir(dh);
}

static void cleanup(void)
{
	if (tmpdir[0])
		rmtree(tmpdir);
}

const char *fz_tmpdir(void)
{
	if (!tmpdir[0]) {
		const char *base = getenv("TMPDIR");
		snprintf(tmpdir, sizeof(tmpdir), "%s/cohort-fuzz.XXXXXX", base && *base ? base : "/tmp");
		if (!mkdtemp(tmpdir)) {
			perror(tmpdir);
			abort();
		}
		atexit(cleanup);
	}
	return tmpdir;
}

const char *fz_write(const char *name, const void *data, size_t size)
{
	static char path[PATH_MAX];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", fz_tmpdir(), name);
	if (!(f = fopen(path, "w")) || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
		perror(path);
		abort();
	}
	return path;
}

void fz_quiet(void)
{
	log_set_level((enum log_level)(LOG_ERROR + 1));
}

struct cohort_config *fz_setup(const char *text, size_t len, struct ev_loop **loop, char **bus_dir)
{
	struct diag d = {0};

	fz_quiet();
	*loop = ev_loop_new(EVFLAG_AUTO);
	struct cohort_config *cfg = config_load(fz_write("cohort.ini", text, len), &d);
	if (!cfg || d.count) {
		diag_print(&d, stderr);
		abort();
	}
	*bus_dir = xasprintf("%s/bus", fz_tmpdir());
	return cfg;
}
