/*
 * check_cli.c - runs the built `cohortd --check` on the fixture files in
 * tests/fixtures/check and compares its exit status and output with the
 * matching .out file (first line "exit N", then the expected output), and
 * feeds it the big and broken inputs generated here.
 */
#include "autoconfig.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	struct sbuf b = {0};
	char chunk[4096];
	size_t n;

	if (!f)
		return NULL;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		sbuf_add(&b, chunk, n);
	fclose(f);
	return sbuf_steal(&b);
}

static int run_check(const char *file, char **out)
{
	char *cohortd = xasprintf("%s/cohortd", th_builddir());
	char *argv[] = {cohortd, "--check", "-c", (char *)file, NULL};
	int rc = th_run(argv, out, 60000);

	free(cohortd);
	return rc;
}

Test(check_cli, fixtures_match_expected_output)
{
	char *dir = xasprintf("%s/tests/fixtures/check", th_srcdir());
	DIR *dh = opendir(dir);
	struct dirent *e;
	int checked = 0;

	cr_assert_not_null(dh, "%s", dir);
	cr_assert_eq(chdir(dir), 0);
	while ((e = readdir(dh))) {
		size_t len = strlen(e->d_name);
		if (len < 5 || strcmp(e->d_name + len - 4, ".ini") != 0)
			continue;
		char *expect_path = xasprintf("%.*s.out", (int)(len - 4), e->d_name);
		char *expect = slurp(expect_path);
		cr_assert_not_null(expect, "missing %s", expect_path);
		int want_rc = -2;
		cr_assert_eq(sscanf(expect, "exit %d", &want_rc), 1, "%s: first line must be \"exit N\"",
			     expect_path);
		char *body = strchr(expect, '\n');
		body = body ? body + 1 : expect + strlen(expect);
		char *out = NULL;
		int rc = run_check(e->d_name, &out);
		cr_expect_eq(rc, want_rc, "%s: exit %d, want %d; output:\n%s", e->d_name, rc, want_rc, out);
		cr_expect_str_eq(out, body, "%s: output differs.\n--- got:\n%s--- want:\n%s", e->d_name, out, body);
		free(out);
		free(expect);
		free(expect_path);
		checked++;
	}
	closedir(dh);
	free(dir);
	cr_assert_geq(checked, 10);
}

Test(check_cli, example_configs_are_valid)
{
	const char *files[] = {"etc/cohort.ini", "etc/minimal.ini"};

	for (size_t i = 0; i < ARRAY_LEN(files); i++) {
		char *path = xasprintf("%s/%s", th_srcdir(), files[i]);
		char *out;
		int rc = run_check(path, &out);
		cr_expect_eq(rc, 0, "%s:\n%s", path, out);
		free(out);
		free(path);
	}
	char *path = xasprintf("%s/etc/cohort.ini", th_srcdir());
	char *out;
	run_check(path, &out);
	cr_assert(strstr(out, "4 services in 3 phases"), "%s", out);
	cr_assert(strstr(out, "phase 1:\n  core"), "%s", out);
	cr_assert(strstr(out, "phase 3:\n  trinity"), "%s", out);
	free(out);
	free(path);
}

Test(check_cli, missing_file_and_directory)
{
	char *out;

	cr_assert_eq(run_check("/nonexistent/cohort.ini", &out), 1);
	cr_assert_str_eq(out, "/nonexistent/cohort.ini: cannot open: No such file or directory\n");
	free(out);
	cr_assert_eq(run_check(th_tmpdir(), &out), 1);
	cr_assert(strstr(out, ": is a directory, not a config file\n"), "%s", out);
	free(out);
	th_cleanup();
}

Test(check_cli, binary_garbage)
{
	const char *path = th_write("garbage.ini", "");
	FILE *f = fopen(path, "wb");
	unsigned x = 987654321;
	char *out;

	for (int i = 0; i < 100000; i++) {
		x = x * 1664525 + 1013904223;
		fputc((int)(x >> 24), f);
	}
	fclose(f);
	cr_assert_eq(run_check(path, &out), 1, "%s", out);
	cr_assert(strstr(out, "garbage.ini:1: ") || strstr(out, "garbage.ini:2: "), "%s", out);
	cr_assert(strstr(out, "more errors\n"), "%s", out);
	free(out);
	th_cleanup();
}

Test(check_cli, big_files)
{
	struct sbuf b = {0};
	char *out;

	/* 10,000 services in one file (20,000 lines). */
	for (int i = 0; i < 10000; i++)
		sbuf_addf(&b, "[service:svc%d]\ncommand = /bin/sleep %d\n", i, i);
	const char *path = th_write("big.ini", b.buf);
	cr_assert_eq(run_check(path, &out), 0, "%s", out);
	cr_assert(strstr(out, "10000 services in 1 phase\n"), "%.200s", out);
	free(out);

	/* A 10,000-line file with one error at its end. */
	sbuf_free(&b);
	sbuf_adds(&b, "[service:a]\ncommand = /bin/true\n");
	for (int i = 2; i < 9999; i++)
		sbuf_adds(&b, "; filler\n");
	sbuf_adds(&b, "restart = nonsense\n");
	path = th_write("lines.ini", b.buf);
	cr_assert_eq(run_check(path, &out), 1, "%s", out);
	cr_assert(strstr(out, "lines.ini:10000: [service:a]: restart = \"nonsense\""), "%s", out);
	free(out);

	/* A line of 5,000 characters. */
	sbuf_free(&b);
	sbuf_adds(&b, "[service:a]\ncommand = /bin/true\nenvironment = X=");
	for (int i = 0; i < 5000; i++)
		sbuf_addc(&b, 'x');
	sbuf_adds(&b, "\n");
	path = th_write("wide.ini", b.buf);
	cr_assert_eq(run_check(path, &out), 1, "%s", out);
	cr_assert(strstr(out, "wide.ini:3: line longer than 199 characters; continue the value on an indented next line\n"),
		  "%s", out);
	free(out);
	sbuf_free(&b);
	th_cleanup();
}

Test(check_cli, version_and_help_and_usage)
{
	char *cohortd = xasprintf("%s/cohortd", th_builddir());
	char *out;
	char *v[] = {cohortd, "--version", NULL};
	char *h[] = {cohortd, "--help", NULL};
	char *u[] = {cohortd, "--bogus", NULL};

	cr_assert_eq(th_run(v, &out, 10000), 0);
	cr_assert(strncmp(out, "cohortd ", 8) == 0, "%s", out);
	free(out);
	cr_assert_eq(th_run(h, &out, 10000), 0);
	cr_assert(strstr(out, "--check"), "%s", out);
	free(out);
	cr_assert_eq(th_run(u, &out, 10000), 2);
	cr_assert(strstr(out, "usage:"), "%s", out);
	free(out);
	free(cohortd);
}
