/*
 * import_out.c - the cohort services `cohortctl import` builds, and their
 * text.  A service is a list of cohort keys (set in the order the table
 * converts them, a later value replacing an earlier one) and of comment
 * lines: notes, and the settings not imported with their reasons.
 *
 * The text must read back through cohortd's own loader, which is inih
 * with lines of at most 199 characters and " ;" as an inline comment: a
 * long value is broken at single blanks into indented continuation lines
 * (cohortd joins them with one space, so nothing changes), never before
 * a ; # or [ that would read as a comment or a section.
 */
#include "autoconfig.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "import.h"

#define LINE_MAX_COHORT 199

bool imp_valid_name(const char *name)
{
	size_t n = strlen(name);

	return n >= 1 && n <= 64 &&
	       strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") == n;
}

struct imp_svc *imp_svc_add(struct imp_run *run, const char *name, const char *file, int line,
			    struct sbuf *err)
{
	if (!imp_valid_name(name)) {
		sbuf_addf(err, "%s:%d: \"%s\" cannot be a cohort service name (1 to 64 of A-Z a-z 0-9 _ . -)\n",
			  file, line, name);
		return NULL;
	}
	for (size_t i = 0; i < run->n; i++)
		if (strcmp(run->svc[i]->name, name) == 0) {
			sbuf_addf(err, "%s:%d: a service \"%s\" is imported already (from %s:%d)\n", file, line,
				  name, run->svc[i]->file, run->svc[i]->line);
			return NULL;
		}
	if (run->n == run->cap) {
		run->cap = run->cap ? 2 * run->cap : 8;
		run->svc = xrealloc(run->svc, run->cap * sizeof(*run->svc));
	}
	struct imp_svc *s = xcalloc(1, sizeof(*s));
	s->name = xstrdup(name);
	s->file = xstrdup(file);
	s->line = line;
	s->priority = 999;
	run->svc[run->n++] = s;
	return s;
}

void imp_set(struct imp_svc *s, const char *key, const char *value)
{
	for (size_t i = 0; i < s->nkv; i++)
		if (strcmp(s->kv[i].key, key) == 0) {
			free(s->kv[i].value);
			s->kv[i].value = xstrdup(value);
			return;
		}
	if (s->nkv == s->capkv) {
		s->capkv = s->capkv ? 2 * s->capkv : 16;
		s->kv = xrealloc(s->kv, s->capkv * sizeof(*s->kv));
	}
	s->kv[s->nkv++] = (struct imp_kv){xstrdup(key), xstrdup(value)};
}

const char *imp_get(const struct imp_svc *s, const char *key)
{
	for (size_t i = 0; i < s->nkv; i++)
		if (strcmp(s->kv[i].key, key) == 0)
			return s->kv[i].value;
	return NULL;
}

void imp_unset(struct imp_svc *s, const char *key)
{
	for (size_t i = 0; i < s->nkv; i++)
		if (strcmp(s->kv[i].key, key) == 0) {
			free(s->kv[i].key);
			free(s->kv[i].value);
			memmove(s->kv + i, s->kv + i + 1, (s->nkv - i - 1) * sizeof(*s->kv));
			s->nkv--;
			return;
		}
}

/* A secret read from the old config is not copied into the new one's
 * comments (supervisord's [inet_http_server] password=, a unit's
 * credentials): the key is shown, its value is not. */
static const char *shown(const char *key, const char *value)
{
	static const char *const secrets[] = {"password", "passwd", "secret", "token", "credential"};

	for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++)
		if (strcasestr(key, secrets[i]))
			return "(not shown)";
	return value;
}

void imp_skip(struct imp_svc *s, const char *key, const char *value, const char *why)
{
	value = shown(key, value);
	strv_push_owned(&s->notes, xasprintf("not imported: %s=%s: %s", key, value, why));
	s->skipped++;
}

void imp_note(struct imp_svc *s, const char *fmt, ...)
{
	struct sbuf b = {0};
	va_list ap;

	sbuf_adds(&b, "note: ");
	va_start(ap, fmt);
	sbuf_vaddf(&b, fmt, ap);
	va_end(ap);
	strv_push_owned(&s->notes, sbuf_steal(&b));
}

void imp_daemon_skip(struct imp_run *run, const char *section, const char *key, const char *value,
		     const char *why)
{
	if (key)
		strv_push_owned(&run->daemon_notes,
				xasprintf("not imported: [%s] %s=%s: %s", section, key, shown(key, value), why));
	else
		strv_push_owned(&run->daemon_notes, xasprintf("not imported: [%s]: %s", section, why));
	run->daemon_skipped++;
}

void imp_dep_add(struct imp_svc *s, const char *name, const char *written, bool required)
{
	if (s->ndeps == s->capdeps) {
		s->capdeps = s->capdeps ? 2 * s->capdeps : 4;
		s->deps = xrealloc(s->deps, s->capdeps * sizeof(*s->deps));
	}
	s->deps[s->ndeps++] = (struct imp_dep){xstrdup(name), xstrdup(written), required};
}

static struct imp_svc *find_svc(const struct imp_run *run, const char *name)
{
	for (size_t i = 0; i < run->n; i++)
		if (strcmp(run->svc[i]->name, name) == 0)
			return run->svc[i];
	return NULL;
}

/* requires/after from the dependencies on services imported here. */
static void resolve_deps(const struct imp_run *run, struct imp_svc *s)
{
	struct strv req = {0}, aft = {0};

	for (size_t i = 0; i < s->ndeps; i++) {
		struct imp_dep *d = &s->deps[i];
		struct strv *to = d->required ? &req : &aft;
		if (strcmp(d->name, s->name) == 0 || strv_contains(to, d->name))
			continue;
		if (find_svc(run, d->name))
			strv_push(to, d->name);
		else {	/* "KEY=UNIT" is the comment's "KEY=VALUE" */
			char *eq = strchr(d->written, '=');
			*eq = '\0';
			imp_skip(s, d->written, eq + 1, "not a unit imported with it (import it too)");
			*eq = '=';
		}
	}
	/* A required service is started first anyway: after adds nothing. */
	for (size_t i = 0; i < aft.n;)
		if (strv_contains(&req, aft.v[i])) {
			free(aft.v[i]);
			memmove(aft.v + i, aft.v + i + 1, (aft.n - i) * sizeof(char *));
			aft.n--;
		} else {
			i++;
		}
	if (req.n) {
		char *j = strv_join(&req, ", ");
		imp_set(s, "requires", j);
		free(j);
	}
	if (aft.n) {
		char *j = strv_join(&aft, ", ");
		imp_set(s, "after", j);
		free(j);
	}
	strv_free(&req);
	strv_free(&aft);
}

static int cmp_int(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;
	return (x > y) - (x < y);
}

/* supervisord starts lower priorities first: each distinct priority is a
 * phase, in order, when they are not all the same. */
static void priorities_to_phases(struct imp_run *run)
{
	int *p = xcalloc(run->n + 1, sizeof(int));
	size_t n = 0;

	for (size_t i = 0; i < run->n; i++)
		p[n++] = run->svc[i]->priority;
	qsort(p, n, sizeof(int), cmp_int);
	if (n > 1 && p[0] != p[n - 1])
		for (size_t i = 0; i < run->n; i++) {
			int rank = 1;
			for (size_t j = 1; j < n; j++)
				if (p[j] != p[j - 1] && p[j] <= run->svc[i]->priority)
					rank++;
			char buf[16];
			snprintf(buf, sizeof(buf), "%d", rank);
			imp_set(run->svc[i], "phase", buf);
		}
	free(p);
}

/* Where a line of TEXT longer than room may break: the last single blank
 * before room whose next character does not start a comment or section. */
static size_t break_at(const char *t, size_t room)
{
	for (size_t i = room; i > 1; i--)
		if (t[i] == ' ' && t[i - 1] != ' ' && t[i - 1] != '\t' && t[i + 1] && !strchr(" \t;#[", t[i + 1]))
			return i;
	return 0;
}

/* Can VALUE be written so that cohortd reads it back unchanged? */
static const char *unwritable(const char *key, const char *value)
{
	size_t room = LINE_MAX_COHORT - strlen(key) - 3;

	if (strpbrk(value, "\n\r"))
		return "it holds a line break, which a line of cohort's config cannot";
	for (const char *p = value; *p; p++)
		if ((*p == ';' || *p == '#') && p > value && (p[-1] == ' ' || p[-1] == '\t'))
			return "cohortd would read the blank and ; or # in it as the start of a comment";
	for (const char *t = value; strlen(t) > room; room = LINE_MAX_COHORT - 4) {
		size_t at = break_at(t, room);
		if (!at)
			return "too long for one line of cohort's config (199 characters) and "
			       "no blank to continue it on the next";
		t += at + 1;
	}
	return NULL;
}

static void check_values(struct imp_svc *s)
{
	for (size_t k = 0; k < s->nkv;) {
		const char *why = unwritable(s->kv[k].key, s->kv[k].value);
		if (why) {
			char *key = xstrdup(s->kv[k].key), *value = xstrdup(s->kv[k].value);
			imp_unset(s, key);
			imp_skip(s, key, value, why);
			free(key);
			free(value);
		} else {
			k++;
		}
	}
}

void imp_resolve(struct imp_run *run)
{
	for (size_t i = 0; i < run->n; i++)
		check_values(run->svc[i]);
	for (size_t i = 0; i < run->n; i++)
		resolve_deps(run, run->svc[i]);
	priorities_to_phases(run);
}

static void print_value(FILE *f, const char *key, const char *value)
{
	size_t room = LINE_MAX_COHORT - strlen(key) - 3;
	const char *t = value;

	fprintf(f, "%s = ", key);
	while (strlen(t) > room) {
		size_t at = break_at(t, room);
		if (!at)
			break;	/* imp_check_values took such a value out */
		fprintf(f, "%.*s\n    ", (int)at, t);
		t += at + 1;
		room = LINE_MAX_COHORT - 4;
	}
	fprintf(f, "%s\n", t);
}

/* Comments are free text, one line each; cohortd measures comment lines
 * too, so a long one is cut at the limit. */
static void print_comment(FILE *f, const char *text)
{
	size_t n = strlen(text);
	if (n > LINE_MAX_COHORT - 2)
		fprintf(f, "; %.*s...\n", LINE_MAX_COHORT - 5, text);
	else
		fprintf(f, "; %s\n", text);
}

void imp_print(const struct imp_run *run, FILE *f)
{
	fprintf(f, "; Made by cohortctl import from:\n");
	for (size_t i = 0; i < run->sources.n; i++)
		print_comment(f, run->sources.v[i]);
	fprintf(f, "; Check it with cohortd --check -c FILE; see cohort.ini(5).\n\n[cohort]\n");
	for (size_t i = 0; i < run->daemon_notes.n; i++)
		print_comment(f, run->daemon_notes.v[i]);
	for (size_t i = 0; i < run->n; i++) {
		const struct imp_svc *s = run->svc[i];
		fprintf(f, "\n[service:%s]\n", s->name);
		char *from = xasprintf("from %s:%d%s%s", s->file, s->line, s->title ? ": " : "",
				       s->title ? s->title : "");
		print_comment(f, from);
		free(from);
		/* What it runs first, then the rest in the order it was set. */
		const char *first[] = {"command", "shell"};
		for (size_t k = 0; k < ARRAY_LEN(first); k++)
			if (imp_get(s, first[k]))
				print_value(f, first[k], imp_get(s, first[k]));
		for (size_t k = 0; k < s->nkv; k++)
			if (strcmp(s->kv[k].key, "command") != 0 && strcmp(s->kv[k].key, "shell") != 0)
				print_value(f, s->kv[k].key, s->kv[k].value);
		for (size_t k = 0; k < s->notes.n; k++)
			print_comment(f, s->notes.v[k]);
	}
}

size_t imp_skipped_total(const struct imp_run *run)
{
	size_t n = run->daemon_skipped;
	for (size_t i = 0; i < run->n; i++)
		n += run->svc[i]->skipped;
	return n;
}

void imp_run_free(struct imp_run *run)
{
	for (size_t i = 0; i < run->n; i++) {
		struct imp_svc *s = run->svc[i];
		for (size_t k = 0; k < s->nkv; k++) {
			free(s->kv[k].key);
			free(s->kv[k].value);
		}
		for (size_t k = 0; k < s->ndeps; k++) {
			free(s->deps[k].name);
			free(s->deps[k].written);
		}
		free(s->kv);
		free(s->deps);
		strv_free(&s->notes);
		free(s->name);
		free(s->file);
		free(s->title);
		free(s);
	}
	free(run->svc);
	strv_free(&run->daemon_notes);
	strv_free(&run->sources);
	*run = (struct imp_run){0};
}
