/*
 * import_supervisord.c - a supervisord config into cohort services: each
 * [program:x] is a service x (numprocs = N: a template of N instances,
 * with %(process_num)d as %i), [include] files = GLOBS reads more files
 * (globs relative to the including file), [group:x] and the daemon's own
 * sections become comments.  Values are expanded as supervisord expands
 * them, with Python's %-formatting: %(ENV_X)s, %(here)s, %(program_name)s,
 * %(process_num)02d, %(group_name)s, %(host_node_name)s, %(numprocs)d,
 * and %% for a percent sign.
 */
#include "autoconfig.h"

#include <errno.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

#include "import.h"
#include "words.h"

#define MAX_INCLUDE_DEPTH 8

/* One [program:x] being converted. */
struct sv_state {
	const char *program;
	const char *here;
	unsigned long numprocs, numprocs_start;
	bool saw_process_num;	/* the value being expanded named it */
	bool saw_width;		/* ... with a width %i cannot keep */
};

/* Python's %(name)FLAGSWIDTH.PRECtype, of a string or a number. */
static int format_one(struct sbuf *out, const char *spec, size_t speclen, char type, const char *str,
		      long long num, bool is_num)
{
	char fmt[64];

	if (speclen > 20)
		return -1;
	if (strchr("diu", type)) {
		if (!is_num) {
			char *end;
			num = strtoll(str, &end, 10);
			if (!*str || *end)
				return -1;
		}
		snprintf(fmt, sizeof(fmt), "%%%.*slld", (int)speclen, spec);
		sbuf_addf(out, fmt, num);
	} else if (type == 's' || type == 'r') {
		char nbuf[32];
		if (is_num) {
			snprintf(nbuf, sizeof(nbuf), "%lld", num);
			str = nbuf;
		}
		snprintf(fmt, sizeof(fmt), "%%%.*ss", (int)speclen, spec);
		sbuf_addf(out, fmt, str);
	} else {
		return -1;
	}
	return 0;
}

/* The value of NAME, as a string or a number; -1 if there is none. */
static int lookup(const struct sv_state *st, const char *name, const char **str, long long *num,
		  bool *is_num)
{
	static struct utsname uts;

	*is_num = false;
	if (str_starts(name, "ENV_")) {
		*str = getenv(name + 4);
		return *str ? 0 : -1;
	}
	if (strcmp(name, "here") == 0)
		*str = st->here;
	else if (strcmp(name, "program_name") == 0 && st->program)
		*str = st->program;
	else if (strcmp(name, "group_name") == 0 && st->program)
		*str = st->program;	/* its own homogeneous group */
	else if (strcmp(name, "host_node_name") == 0) {
		if (!uts.nodename[0] && uname(&uts) < 0)
			return -1;
		*str = uts.nodename;
	} else if (strcmp(name, "process_num") == 0 && st->program) {
		*num = (long long)st->numprocs_start;
		*is_num = true;
	} else if (strcmp(name, "numprocs") == 0 && st->program) {
		*num = (long long)st->numprocs;
		*is_num = true;
	} else
		return -1;
	return 0;
}

/* In a template's per-instance keys cohort reads %i, %{i+N} and %%: a
 * percent sign of the value is written %% there. */
static void add_text(struct sbuf *out, const char *s, size_t n, bool tmpl)
{
	for (size_t i = 0; i < n; i++) {
		if (tmpl && s[i] == '%')
			sbuf_addc(out, '%');
		sbuf_addc(out, s[i]);
	}
}

/* Expands V into OUT (for a template's per-instance key when TMPL); -1
 * with a message in ERR (naming FILE:LINE). */
static int expand(struct sv_state *st, const char *v, struct sbuf *out, const char *file, int line, bool tmpl,
		  struct sbuf *err)
{
	struct sbuf one = {0};

	st->saw_process_num = st->saw_width = false;
	for (const char *p = v; *p; p++) {
		if (*p != '%') {
			add_text(out, p, 1, tmpl);
			continue;
		}
		if (p[1] == '%') {
			add_text(out, p, 1, tmpl);
			p++;
			continue;
		}
		const char *close = p[1] == '(' ? strchr(p, ')') : NULL;
		if (!close) {
			sbuf_addf(err, "%s:%d: a %% that starts no %%(name)s: write %%%% for a percent sign\n", file, line);
			return -1;
		}
		char *name = xstrndup(p + 2, (size_t)(close - p - 2));
		const char *spec = close + 1;
		size_t speclen = strspn(spec, "-+ #0123456789.");
		char type = spec[speclen];
		const char *str = NULL;
		long long num = 0;
		bool is_num;
		int rc = lookup(st, name, &str, &num, &is_num);
		if (rc == 0 && strcmp(name, "process_num") == 0 && st->numprocs > 1 && strchr("dis", type)) {
			/* the instance number, in a template; cohort's count from 0 */
			if (st->numprocs_start)
				sbuf_addf(out, "%%{i+%lu}", st->numprocs_start);
			else
				sbuf_adds(out, "%i");
			st->saw_process_num = true;
			st->saw_width = st->saw_width || speclen > 0;
		} else if (rc == 0) {
			sbuf_free(&one);
			rc = format_one(&one, spec, speclen, type, str, num, is_num);
			add_text(out, one.buf ? one.buf : "", one.len, tmpl);
		}
		if (rc < 0)
			sbuf_addf(err, "%s:%d: %%(%s)%.*s%c cannot be expanded (%s)\n", file, line, name, (int)speclen,
				  spec, type ? type : ' ',
				  str_starts(name, "ENV_") && !str
					  ? "no such variable in the environment"
					  : "supervisord knows ENV_X, here, program_name, process_num, group_name, "
					    "host_node_name and numprocs, as %(name)s or %(name)d");
		free(name);
		if (rc < 0) {
			sbuf_free(&one);
			return -1;
		}
		p = spec + speclen;
	}
	sbuf_free(&one);
	sbuf_add(out, "", 0);
	return 0;
}

/* The keys whose values cohort expands per instance of a template (and
 * process_name, which names the instances). */
static bool template_key(const char *key)
{
	static const char *const keys[] = {"command", "directory", "environment", "stdout_logfile",
					   "stderr_logfile", "process_name"};

	for (size_t i = 0; i < ARRAY_LEN(keys); i++)
		if (strcmp(key, keys[i]) == 0)
			return true;
	return false;
}

/* --- converters of the table ------------------------------------------------ */

const char *sv_command(struct imp_ctx *x, const char *k, const char *v)
{
	struct strv words;
	const char *why;

	if (words_split(v, &words, &why) < 0) {
		sbuf_addf(x->err, "%s:%d: [%s]: command: %s\n", x->file->path, x->entry->line, x->sec->name, why);
		return IMP_FATAL;
	}
	bool empty = words.n == 0;
	strv_free(&words);
	if (empty) {
		sbuf_addf(x->err, "%s:%d: [%s]: command is empty\n", x->file->path, x->entry->line, x->sec->name);
		return IMP_FATAL;
	}
	imp_set(x->svc, k, v);
	return NULL;
}

const char *sv_template_key(struct imp_ctx *x, const char *k, const char *v)
{
	imp_set(x->svc, k, v);
	return NULL;
}

const char *sv_numprocs(struct imp_ctx *x, const char *k, const char *v)
{
	const struct sv_state *st = x->kind_state;
	char buf[32];

	(void)v;
	if (st->numprocs > 1) {
		snprintf(buf, sizeof(buf), "%lu", st->numprocs);
		imp_set(x->svc, k, buf);
	}
	return NULL;
}

const char *sv_numprocs_start(struct imp_ctx *x, const char *k, const char *v)
{
	const struct sv_state *st = x->kind_state;

	(void)k;
	(void)v;
	if (st->numprocs > 1 && st->numprocs_start != 0)
		imp_note(x->svc, "numprocs_start=%lu: instances are numbered from 0, so %%(process_num)d is "
				 "%%{i+%lu}", st->numprocs_start, st->numprocs_start);
	return NULL;	/* one process: %(process_num)d was expanded to it */
}

const char *sv_process_name(struct imp_ctx *x, const char *k, const char *v)
{
	const struct sv_state *st = x->kind_state;

	(void)k;
	if (st->numprocs > 1)
		return "the instances of a template are named NAME@0 to NAME@N-1";
	if (strcmp(v, st->program) == 0)
		return NULL;
	return "the service is named after [program:NAME]";
}

const char *sv_priority(struct imp_ctx *x, const char *k, const char *v)
{
	uint64_t n;
	const char *why;

	(void)k;
	if (parse_uint(v, 1000000, &n, &why) < 0)
		return "not a number";
	x->svc->priority = (int)n;
	return NULL;
}

const char *sv_logfile(struct imp_ctx *x, const char *k, const char *v)
{
	const struct imp_entry *redirect = imp_section_get(x->sec, "redirect_stderr");
	bool b;
	const char *why;

	if (strcmp(k, "stderr") == 0 && redirect && parse_bool(redirect->value, &b, &why) == 0 && b)
		return "redirect_stderr = true sends standard error to stdout_logfile";
	if (strcmp(v, "AUTO") == 0)
		imp_set(x->svc, k, strcmp(k, "stderr") == 0 ? "stdout" : "log");
	else if (strcmp(v, "NONE") == 0)
		imp_set(x->svc, k, "null");
	else if (strcmp(v, "/dev/stdout") == 0 || strcmp(v, "/dev/stderr") == 0)
		imp_set(x->svc, k, "inherit");
	else if (strchr(v, '/'))
		imp_set(x->svc, k, v);
	else
		return "cohort writes to its log (log_dir/NAME.log), null or a path with a /";
	return NULL;
}

/* --- the sections --------------------------------------------------------------- */

static int read_count(struct sv_state *st, const struct imp_section *sec, const char *key,
		      unsigned long *out, const char *file, struct sbuf *err)
{
	const struct imp_entry *e = imp_section_get(sec, key);
	struct sbuf v = {0};
	uint64_t n;
	const char *why;

	if (!e)
		return 0;
	if (expand(st, e->value, &v, file, e->line, false, err) < 0)
		return -1;
	int rc = parse_uint(v.buf, 100000, &n, &why);
	sbuf_free(&v);
	if (rc < 0) {
		sbuf_addf(err, "%s:%d: [%s]: %s: %s\n", file, e->line, sec->name, key, why);
		return -1;
	}
	*out = (unsigned long)n;
	return 0;
}


/* One entry of a program, expanded and converted. */
static int program_entry(struct imp_ctx *x, struct sv_state *st, const struct imp_entry *e)
{
	struct sbuf v = {0};

	if (expand(st, e->value, &v, x->file->path, e->line, st->numprocs > 1 && template_key(e->key), x->err) < 0)
		return -1;
	struct imp_entry exp = {.key = e->key, .value = v.buf, .line = e->line};
	int rc = 0;
	x->entry = &exp;
	x->written = e->value;
	if (st->saw_process_num && !template_key(e->key))
		imp_skip(x->svc, e->key, e->value,
			 "with numprocs, %(process_num)d is %i, which cohort expands in command, "
			 "environment, directory, stdout and stderr only");
	else
		rc = imp_apply(x, W_PROGRAM);
	if (rc == 0 && st->saw_width && template_key(e->key) && strcmp(e->key, "process_name") != 0)
		imp_note(x->svc, "%s: %%(process_num) is %%i, without its width (0, 1, ... not 00, 01)", e->key);
	sbuf_free(&v);
	return rc;
}

static int program(struct imp_run *run, struct imp_file *f, const struct imp_section *sec, struct sbuf *err)
{
	const char *name = sec->name + strlen("program:");
	struct sv_state st = {.program = name, .here = f->dir, .numprocs = 1};

	if (read_count(&st, sec, "numprocs", &st.numprocs, f->path, err) < 0 ||
	    read_count(&st, sec, "numprocs_start", &st.numprocs_start, f->path, err) < 0)
		return -1;
	if (!imp_section_get(sec, "command")) {
		sbuf_addf(err, "%s:%d: [%s]: no command (what to run)\n", f->path, sec->line, sec->name);
		return -1;
	}
	struct imp_svc *svc = imp_svc_add(run, name, f->path, sec->line, err);
	if (!svc)
		return -1;
	struct imp_ctx x = {.run = run, .svc = svc, .file = f, .sec = sec, .err = err, .kind_state = &st};
	/* supervisord's defaults that are not cohort's. */
	imp_set(svc, "restart", "on-failure");
	for (size_t i = 0; i < sec->n; i++)
		if (program_entry(&x, &st, &sec->e[i]) < 0)
			return -1;
	return 0;
}

static int include(struct imp_run *run, struct imp_file *f, const struct imp_section *sec, struct sbuf *err)
{
	const struct imp_entry *e = imp_section_get(sec, "files");
	struct sv_state st = {.here = f->dir};
	struct sbuf v = {0};
	int rc = 0;

	if (!e) {
		sbuf_addf(err, "%s:%d: [include] has no files = GLOBS\n", f->path, sec->line);
		return -1;
	}
	if (++run->include_depth > MAX_INCLUDE_DEPTH) {
		sbuf_addf(err, "%s:%d: [include]s nested deeper than %d (a loop?)\n", f->path, e->line,
			  MAX_INCLUDE_DEPTH);
		rc = -1;
	}
	if (rc == 0 && expand(&st, e->value, &v, f->path, e->line, false, err) < 0)
		rc = -1;
	char *save = NULL;
	for (char *g = rc ? NULL : strtok_r(v.buf, " \t\n", &save); g && rc == 0; g = strtok_r(NULL, " \t\n", &save)) {
		char *joined = path_join(f->dir, g), *pattern = imp_abspath(joined);
		free(joined);
		glob_t gl;
		int grc = glob(pattern, 0, NULL, &gl);
		free(pattern);
		if (grc != 0 && grc != GLOB_NOMATCH) {
			sbuf_addf(err, "%s:%d: [include] files: cannot read %s\n", f->path, e->line, g);
			rc = -1;
		}
		for (size_t i = 0; grc == 0 && i < gl.gl_pathc && rc == 0; i++) {
			struct imp_file inc;
			strv_push(&run->sources, gl.gl_pathv[i]);
			rc = imp_read_kind(gl.gl_pathv[i], IMP_SUPERVISORD, &inc, err);
			if (rc == 0)
				rc = imp_supervisord(run, &inc, err);
			imp_file_free(&inc);
		}
		if (grc == 0)
			globfree(&gl);
	}
	run->include_depth--;
	sbuf_free(&v);
	return rc;
}

/* Sections of no service: each key a comment in [cohort]. */
static int daemon_section(struct imp_run *run, struct imp_file *f, const struct imp_section *sec)
{
	const struct imp_map *m = imp_lookup(W_SV_SECTION, sec->name);
	struct imp_ctx x = {.run = run, .file = f, .sec = sec};

	if (strcmp(sec->name, "supervisord") == 0) {
		for (size_t i = 0; i < sec->n; i++) {
			x.entry = &sec->e[i];
			imp_apply(&x, W_SUPERVISORD);
		}
		return 0;
	}
	if (sec->n == 0)
		imp_daemon_skip(run, sec->name, NULL, NULL, m->reason);
	for (size_t i = 0; i < sec->n; i++)
		imp_daemon_skip(run, sec->name, sec->e[i].key, sec->e[i].value, m->reason);
	return 0;
}

int imp_supervisord(struct imp_run *run, struct imp_file *f, struct sbuf *err)
{
	for (size_t i = 0; i < f->n; i++) {
		const struct imp_section *sec = &f->s[i];
		int rc;
		if (str_starts(sec->name, "program:"))
			rc = program(run, f, sec, err);
		else if (strcmp(sec->name, "include") == 0)
			rc = include(run, f, sec, err);
		else
			rc = daemon_section(run, f, sec);
		if (rc < 0)
			return -1;
	}
	return 0;
}
