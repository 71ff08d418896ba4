/* helpers.c - see helpers.h. */
#include "autoconfig.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

static char tmpdir[PATH_MAX];

const char *th_tmpdir(void)
{
	if (!tmpdir[0]) {
		const char *base = getenv("TMPDIR");
		snprintf(tmpdir, sizeof(tmpdir), "%s/cohort-test.XXXXXX", base && *base ? base : "/tmp");
		if (!mkdtemp(tmpdir)) {
			perror("mkdtemp");
			abort();
		}
	}
	return tmpdir;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void th_cleanup(void)
{
	if (tmpdir[0])
		nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	tmpdir[0] = '\0';
}

const char *th_write(const char *name, const char *text)
{
	static char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/%s", th_tmpdir(), name);
	char *dir = path_dirname(path);
	mkdir_p(dir, 0755);
	free(dir);
	FILE *f = fopen(path, "w");
	if (!f) {
		perror(path);
		abort();
	}
	fputs(text, f);
	fclose(f);
	return path;
}

struct cohort_config *th_load(const char *text, struct diag *d)
{
	th_cleanup();
	const char *path = th_write("cohort.ini", text);
	return config_load(path, d);
}

int th_diag_has(const struct diag *d, const char *needle)
{
	for (size_t i = 0; i < d->lines.n; i++)
		if (strstr(d->lines.v[i], needle))
			return 1;
	return 0;
}

const char *th_diag_text(const struct diag *d)
{
	static char buf[16384];
	size_t len = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < d->lines.n && len < sizeof(buf) - 2; i++)
		len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s\n", d->lines.v[i]);
	return buf;
}

struct cohort_config *th_good(const char *text, struct diag *d)
{
	struct cohort_config *c = th_load(text, d);

	cr_assert_not_null(c);
	cr_assert_eq(d->count, 0, "unexpected errors:\n%s", th_diag_text(d));
	return c;
}

void th_bad(const char *text, const char *needle, struct diag *d)
{
	struct cohort_config *c = th_load(text, d);

	cr_assert_gt(d->count, 0, "no error for:\n%s", text);
	cr_assert(th_diag_has(d, needle), "want \"%s\" in:\n%s", needle, th_diag_text(d));
	config_free(c);
	diag_free(d);
}

int th_run(char *const argv[], char **out, int timeout_ms)
{
	int p[2];
	struct sbuf b = {0};

	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		dup2(p[1], 1);
		dup2(p[1], 2);
		execv(argv[0], argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(p[1]);
	int64_t deadline = now_mono_ms() + timeout_ms;
	for (;;) {
		int64_t left = deadline - now_mono_ms();
		if (left <= 0) {
			kill(pid, SIGKILL);
			sbuf_adds(&b, "\n[th_run: timed out]\n");
			break;
		}
		struct pollfd pfd = {p[0], POLLIN, 0};
		int r = poll(&pfd, 1, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			continue;
		char chunk[65536];
		ssize_t n = read(p[0], chunk, sizeof(chunk));
		if (n <= 0)
			break;
		sbuf_add(&b, chunk, (size_t)n);
	}
	close(p[0]);
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	*out = sbuf_steal(&b);
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return -1;
}

/* $COHORT_BUILDDIR and $COHORT_SRCDIR (make check sets them), else the
 * trees this program was built from (Makefile.am compiles them in), so that
 * the suite runs from anywhere with no environment set. */
const char *th_builddir(void)
{
	const char *d = getenv("COHORT_BUILDDIR");
	return d && *d ? d : TH_BUILDDIR;
}

const char *th_srcdir(void)
{
	const char *d = getenv("COHORT_SRCDIR");
	return d && *d ? d : TH_SRCDIR;
}

double th_time_factor(void)
{
	const char *f = getenv("COHORT_TIME_FACTOR");

	if (f && *f)
		return atof(f);
	return getenv("COHORT_VALGRIND") && *getenv("COHORT_VALGRIND") ? 6.0 : 1.0;
}
