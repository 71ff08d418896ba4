/* Unit tests of the per-service process keys (config_proc.c: limit_*,
 * nice, oom_score_adjust, environment_file) and of envfile.c, the
 * EnvironmentFile format. */
#include "autoconfig.h"

#include <criterion/criterion.h>
#include <string.h>

#include "config_keys.h"
#include "envfile.h"
#include "helpers.h"

static struct diag d;

static struct cohort_config *loaded;	/* good()'s, freed after the test */

static void teardown(void)
{
	config_free(loaded);
	loaded = NULL;
	diag_free(&d);
	th_cleanup();
}

TestSuite(proc_keys, .fini = teardown);

static struct svc_config *good(const char *text)
{
	struct cohort_config *c = th_good(text, &d);

	config_free(loaded);
	loaded = c;
	return config_find(c, "a");
}

static void bad(const char *text, const char *needle)
{
	th_bad(text, needle, &d);
}

/* s is the service's rare keys: these are all among them. */
Test(proc_keys, defaults_change_nothing)
{
	const struct svc_rare *s = good("[service:a]\ncommand = /bin/true\n")->rare;

	cr_assert(!s->limit_nofile.set && !s->limit_core.set && !s->limit_nproc.set && !s->limit_as.set);
	cr_assert_eq(s->nice, SVC_INT_UNSET);
	cr_assert_eq(s->oom_score_adjust, SVC_INT_UNSET);
	cr_assert_eq(s->environment_file.n, 0);
}

Test(proc_keys, values)
{
	const struct svc_rare *s = good("[service:a]\ncommand = /bin/true\nlimit_nofile = 4096\n"
					"limit_core = 0:infinity\nlimit_nproc = 100:unlimited\nlimit_as = 2G\n"
					"nice = -5\noom_score_adjust = 1000\n"
					"environment_file = app.env, -/etc/opt/x.env\n")->rare;

	cr_assert(s->limit_nofile.set && s->limit_nofile.cur == 4096 && s->limit_nofile.max == 4096);
	cr_assert(s->limit_core.set && s->limit_core.cur == 0 && s->limit_core.max == UINT64_MAX);
	cr_assert(s->limit_nproc.cur == 100 && s->limit_nproc.max == UINT64_MAX);
	cr_assert(s->limit_as.cur == 2ull << 30 && s->limit_as.max == 2ull << 30);
	cr_assert_eq(s->nice, -5);
	cr_assert_eq(s->oom_score_adjust, 1000);
	cr_assert_eq(s->environment_file.n, 2);
	cr_assert(str_starts(s->environment_file.v[0], "/"), "%s", s->environment_file.v[0]);
	cr_assert(strstr(s->environment_file.v[0], "/app.env"));
	cr_assert_str_eq(s->environment_file.v[1], "-/etc/opt/x.env");
}

Test(proc_keys, errors)
{
	bad("[service:a]\ncommand = x\nlimit_nofile = lots\n", "cohort.ini:3: [service:a]: limit_nofile");
	bad("[service:a]\ncommand = x\nlimit_nofile = 10:5\n", "soft limit is above the hard one");
	bad("[service:a]\ncommand = x\nlimit_as = 1G:\n", "SOFT:HARD");
	bad("[service:a]\ncommand = x\nnice = 20\n", "from -20 to 19");
	bad("[service:a]\ncommand = x\nnice = -21\n", "from -20 to 19");
	bad("[service:a]\ncommand = x\noom_score_adjust = 1001\n", "from -1000 to 1000");
	bad("[service:a]\ncommand = x\noom_score_adjust = 5x\n", "oom_score_adjust");
	bad("[service:a]\ncommand = x\nenvironment_file = a.env, ,b.env\n", "paths of files");
	bad("[service:a]\ncommand = x\nLimitNOFILE = 5\n", "use limit_nofile");
	bad("[service:a]\ncommand = x\nEnvironmentFile = /x\n", "use environment_file");
}

static void parses(const char *text, const char *const *want, size_t n)
{
	struct strv out = {0};
	char err[256] = "";

	cr_assert_eq(envfile_parse(text, strlen(text), "f.env", &out, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(out.n, n, "%zu items for:\n%s", out.n, text);
	for (size_t i = 0; i < n; i++)
		cr_assert_str_eq(out.v[i], want[i]);
	strv_free(&out);
}

static void refuses(const char *text, const char *needle)
{
	struct strv out = {0};
	char err[256] = "";

	cr_assert_eq(envfile_parse(text, strlen(text), "f.env", &out, err, sizeof(err)), -1, "%s", text);
	cr_assert(strstr(err, needle), "want \"%s\" in \"%s\"", needle, err);
	strv_free(&out);
}

Test(proc_keys, envfile_format)
{
	const char *plain[] = {"A=1", "B=two words", "C=", "D_2=x=y"};
	parses("# comment\n; another\n\nA=1\n  B = two words   \nC=\nD_2=x=y", plain, 4);
	const char *quoted[] = {"Q=a \"b\" $c `d` \\e", "S=it's \\n $x", "J=ab", "M=one\ntwo"};
	parses("Q=\"a \\\"b\\\" \\$c \\`d\\` \\\\e\"\nS='it'\\''s \\n $x'\nJ=a\\\nb\nM=\"one\ntwo\"\n", quoted, 4);
	const char *cont[] = {"L=first second", "N=after"};
	parses("L=first \\\nsecond\nN=after\n", cont, 2);
	const char *crlf[] = {"W=x"};
	parses("W=x\r\n", crlf, 1);
	refuses("A=1\nnot a line\n", "f.env:2: expected NAME=VALUE");
	refuses("A=1\n\n1X=2\n", "f.env:3:");
	refuses("A=\"open\nB=2\n", "f.env:1: a quote is not closed");
	refuses("export A=1\n", "f.env:1:");
}

Test(proc_keys, envfile_load)
{
	const char *dir = th_tmpdir();
	char *a = xasprintf("%s/a.env", dir), *missing = xasprintf("-%s/none.env", dir);
	struct strv files = {0}, out = {0};
	char err[300];
	FILE *f = fopen(a, "w");

	fputs("X=1\nY=2\n", f);
	fclose(f);
	strv_push(&files, a);
	strv_push(&files, missing);
	cr_assert_eq(envfile_load(&files, &out, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(out.n, 2);
	cr_assert_str_eq(out.v[1], "Y=2");
	strv_push(&files, missing + 1);	/* the same file, not optional */
	cr_assert_eq(envfile_load(&files, &out, err, sizeof(err)), -1);
	cr_assert(strstr(err, "none.env: No such file or directory"), "%s", err);
	strv_free(&files);
	strv_free(&out);
	free(a);
	free(missing);
}
