/*
 * config_section.c - turns one [service:NAME] section, its keys as
 * written, into a struct svc_config: every key parsed through the key
 * table, the values that cannot work together reported, and a template
 * (instances = N) made into NAME@0 ... NAME@N-1 with %i expanded.  The
 * rare keys (struct svc_rare) go to a copy of the service's own only when
 * its section sets one; else it shares svc_rare_default, made here.
 */
#include "autoconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_loader.h"
#include "words.h"

#define HEALTH_INTERVAL_MIN_MS 10	/* 0 would spawn probes back to back */

void raw_init(struct raw_section *r, enum sec_kind kind, int line)
{
	*r = (struct raw_section){
		.kind = kind,
		.line = line,
		.value = xcalloc(config_nkeys, sizeof(struct sbuf)),
		.key_line = xcalloc(config_nkeys, sizeof(int)),
		.set = xcalloc(config_nkeys, sizeof(bool)),
		.last_key = -1,
	};
}

void raw_free(struct raw_section *r)
{
	if (r->value)
		for (size_t i = 0; i < config_nkeys; i++)
			sbuf_free(&r->value[i]);
	free(r->value);
	free(r->key_line);
	free(r->set);
	*r = (struct raw_section){0};
}

/* Parses every key of a finished section into base (a cohort_config or a
 * svc_config) and a service's rare keys into rare, with the default for
 * keys not set; rare NULL: they are left to the shared default.  The line
 * of each key set into key_line when it is not NULL. */
void parse_section(struct loader *l, struct raw_section *r, void *base, struct svc_rare *rare,
		   enum key_section ks, const char *label, int *key_line)
{
	struct parse_ctx ctx = {.dir = l->dir};
	struct sbuf why = {0};

	for (size_t i = 0; i < config_nkeys; i++) {
		const struct key_def *k = &config_keys[i];

		if (k->section != ks || (k->rare && !rare))
			continue;
		void *field = (char *)(k->rare ? (void *)rare : base) + k->offset;
		/* Defaults always parse first, so a bad value leaves a sane one. */
		if (key_parse_default(k, i, &ctx, field, &why) < 0) {
			fprintf(stderr, "cohort: bug: default of %s: %s\n", k->name, why.buf);
			abort();
		}
		if (!r->set[i])
			continue;
		if (key_line)
			key_line[i] = r->key_line[i];
		const char *v = r->value[i].buf ? r->value[i].buf : "";
		why.len = 0;
		if (key_parse(k, &ctx, v, field, &why) < 0)
			lerr(l, r->key_line[i], "%s: %s = \"%s\": %s", label, k->name, v, why.buf);
	}
	sbuf_free(&why);
}

/* Built at its first use, from the table's defaults, and never freed:
 * services point to it, and configs come and go. */
static struct svc_rare rare_default;
static bool rare_default_made;

const struct svc_rare *svc_rare_default(void)
{
	struct parse_ctx ctx = {.dir = "/"};	/* no rare key's default is a path */
	struct sbuf why = {0};

	if (rare_default_made)
		return &rare_default;
	for (size_t i = 0; i < config_nkeys; i++) {
		const struct key_def *k = &config_keys[i];
		if (k->rare && key_parse_default(k, i, &ctx, (char *)&rare_default + k->offset, &why) < 0) {
			fprintf(stderr, "cohort: bug: default of %s: %s\n", k->name, why.buf);
			abort();
		}
	}
	rare_default_made = true;
	sbuf_free(&why);
	return &rare_default;
}

void svc_rare_free(const struct svc_rare *rare)
{
	if (!rare || rare == &rare_default)
		return;
	for (size_t k = 0; k < config_nkeys; k++)
		if (config_keys[k].rare)
			key_free(&config_keys[k], (char *)rare + config_keys[k].offset);
	free((void *)rare);
}

/* Whether the section sets a rare key: then the service needs its own. */
static bool sets_rare(const struct raw_section *r)
{
	for (size_t i = 0; i < config_nkeys; i++)
		if (r->set[i] && config_keys[i].rare)
			return true;
	return false;
}

/* The line of key in the section, else the section's own. */
static int line_of(const struct raw_section *r, const char *key)
{
	int i = key_index(KS_SERVICE, key);
	return i >= 0 && r->key_line[i] ? r->key_line[i] : r->line;
}

/* Values each valid alone that together cannot work. */
static void check_timing(struct loader *l, const struct raw_section *r, const struct svc_config *s,
			 const char *label)
{
	char a[32], b[32];

	if (s->rare->health.kind != CHECK_NONE && s->rare->health_interval_ms < HEALTH_INTERVAL_MIN_MS) {
		format_duration_ms(s->rare->health_interval_ms, a, sizeof(a));
		lerr(l, line_of(r, "health_interval"), "%s: health_interval = %s: probes would run without "
		     "a pause; give at least %dms", label, a, HEALTH_INTERVAL_MIN_MS);
	}
	if (s->ready.kind == CHECK_DELAY && s->ready.delay_ms > 0 && s->ready.delay_ms >= s->ready_timeout_ms) {
		format_duration_ms(s->ready.delay_ms, a, sizeof(a));
		format_duration_ms(s->ready_timeout_ms, b, sizeof(b));
		lerr(l, line_of(r, "ready"), "%s: ready = delay:%s is not shorter than ready_timeout (%s): "
		     "it could never be ready", label, a, b);
	}
}

/* pidfile = PATH: a file, and readiness that can work with a process that
 * exits.  ready not set means ready once the pid is adopted (delay:0). */
static void check_pidfile(struct loader *l, const struct raw_section *r, struct svc_config *s,
			  const char *label)
{
	int ri = key_index(KS_SERVICE, "ready");
	const char *pidfile = s->rare->pidfile;
	size_t n = pidfile ? strlen(pidfile) : 0;

	if (!pidfile)
		return;
	if (pidfile[n - 1] == '/')
		lerr(l, line_of(r, "pidfile"), "%s: pidfile = %s: expected a file, not a directory", label,
		     pidfile);
	if (s->ready.kind == CHECK_NOTIFY)
		lerr(l, line_of(r, "ready"), "%s: ready = notify cannot be used with pidfile: the process "
		     "cohortd started exits; use a probe (tcp:, http://, exec:) or no ready", label);
	if (!r->set[ri]) {
		struct parse_ctx ctx = {.dir = l->dir};
		struct sbuf why = {0};
		key_parse(&config_keys[ri], &ctx, "delay:0", &s->ready, &why);
		sbuf_free(&why);
	}
}

/* Whether the line of key i is kept after the load: only those the
 * plan's messages name (plan.c).  The others are reported while the
 * section is parsed, and 10,000 services kept ~50 bytes each of their
 * lines that no one read again. */
static bool line_kept(size_t i)
{
	static const char *const kept[] = {"requires", "after", "phase"};

	for (size_t k = 0; k < ARRAY_LEN(kept); k++)
		if (strcmp(config_keys[i].name, kept[k]) == 0)
			return config_keys[i].section == KS_SERVICE;
	return false;
}

/* The lines of those keys r sets, kept in s for the plan's messages. */
static void keep_key_lines(const struct raw_section *r, struct svc_config *s)
{
	size_t n = 0;

	for (size_t i = 0; i < config_nkeys; i++)
		n += r->set[i] && line_kept(i);
	s->key_lines = n ? xcalloc(n, sizeof(*s->key_lines)) : NULL;
	for (size_t i = 0; i < config_nkeys; i++)
		if (r->set[i] && line_kept(i))
			s->key_lines[s->nkey_lines++] = (struct key_line){(unsigned)i, r->key_line[i]};
}

/* Parses one service's keys (a template's: one instance's) into s. */
static void finish_one(struct loader *l, struct raw_section *r, struct svc_config *s)
{
	struct sbuf label = {0};
	const char *why;
	int ci = key_index(KS_SERVICE, "command");

	sbuf_addf(&label, "[service:%s]", s->name);
	struct svc_rare *own = sets_rare(r) ? xcalloc(1, sizeof(*own)) : NULL;
	s->rare = own ? own : svc_rare_default();
	parse_section(l, r, s, own, KS_SERVICE, label.buf, NULL);
	keep_key_lines(r, s);
	if (!s->directory) {
		s->directory = (char *)l->dir;
		s->directory_of_file = true;
	}
	if (!r->set[ci]) {
		lerr(l, r->line, "%s: missing \"command\" (what to run)", label.buf);
	} else if (!s->command) {
		lerr(l, r->key_line[ci], "%s: command is empty (what to run?)", label.buf);
	} else if (s->command && s->shell) {
		strv_push(&s->argv, "/bin/sh");
		strv_push(&s->argv, "-c");
		strv_push(&s->argv, s->command);
	} else if (s->command) {
		if (words_split(s->command, &s->argv, &why) < 0)
			lerr(l, r->key_line[ci], "%s: command: %s", label.buf, why);
		else if (s->argv.n == 0 || !s->argv.v[0][0])
			lerr(l, r->key_line[ci], "%s: command: no program to run", label.buf);
	}
	strv_pack(&s->argv);	/* kept as long as the config */
	check_pidfile(l, r, s, label.buf);
	check_timing(l, r, s, label.buf);
	sbuf_free(&label);
}

struct svc_config *add_service(struct loader *l, const char *name, int line)
{
	size_t n = strlen(name) + 1;
	struct svc_config *s = xcalloc(1, sizeof(*s) + n + 2);
	struct cohort_config *c = l->cfg;

	memcpy(s->name, name, n);
	s->file = l->file;
	s->line = line;
	if ((c->nservices & (c->nservices - 1)) == 0)
		c->services = xrealloc(c->services, (c->nservices ? c->nservices * 2 : 1) * sizeof(*c->services));
	s->index = c->nservices;
	c->services[c->nservices++] = s;
	map_put(&c->by_name, s->name, s);
	return s;
}

/* The number of instances of the section, 0 when it is no template.  A
 * bad one is reported here, and the section checked as one instance. */
static uint64_t instances_of(struct loader *l, struct raw_section *r)
{
	int ii = key_index(KS_SERVICE, "instances");
	const char *v = r->value[ii].buf ? r->value[ii].buf : "";
	struct sbuf why = {0};
	uint64_t n = 0;

	if (r->set[ii] && tmpl_instances(r->svc->name, v, &n, &why) < 0) {
		lerr(l, r->key_line[ii], "[service:%s]: instances = \"%s\": %s", r->svc->name, v, why.buf);
		r->set[ii] = false;
	} else if (l->instances + n > TMPL_INSTANCES_MAX) {
		/* a bound on the whole file too: a few lines must not make a
		 * million services */
		lerr(l, r->key_line[ii], "[service:%s]: instances = %s: more than %d instances in all the "
		     "templates (%llu before this one)", r->svc->name, v, TMPL_INSTANCES_MAX,
		     (unsigned long long)l->instances);
		n = 1;
	}
	l->instances += n;
	sbuf_free(&why);
	return n;
}

/* The raw section of instance k: the keys that differ per instance
 * expanded (config_template.c).  A key with a bad "%" is reported and
 * left out (command keeps its text, so that it is not also "missing"). */
static void instance_raw(struct loader *l, const struct raw_section *r, uint64_t k, struct raw_section *x)
{
	struct sbuf why = {0};

	raw_init(x, SEC_SERVICE, r->line);
	x->svc = r->svc;
	for (size_t i = 0; i < config_nkeys; i++) {
		const char *v = r->value[i].buf ? r->value[i].buf : "";
		x->set[i] = r->set[i];
		x->key_line[i] = r->key_line[i];
		if (!r->set[i] || config_keys[i].section != KS_SERVICE || !tmpl_key_expands(config_keys[i].name)) {
			sbuf_adds(&x->value[i], v);
			continue;
		}
		why.len = 0;
		if (tmpl_expand(v, k, &x->value[i], &why) == 0)
			continue;
		lerr(l, r->key_line[i], "[service:%s]: %s = \"%s\": %s", r->svc->template_name,
		     config_keys[i].name, v, why.buf);
		x->value[i].len = 0;
		sbuf_adds(&x->value[i], v);
		x->set[i] = strcmp(config_keys[i].name, "command") == 0;
	}
	sbuf_free(&why);
}

/* A template: its section (r->svc, named NAME) becomes NAME@0, then
 * NAME@1 ... are added after it, so that the instances are in a row. */
static void make_instances(struct loader *l, struct raw_section *r, uint64_t n)
{
	struct cohort_config *c = l->cfg;
	struct svc_config *first = r->svc;
	char *base = xstrdup(first->name);
	bool was_mute = l->mute;

	map_del(&c->by_name, first->name);
	for (uint64_t k = 0; k < n; k++) {
		char name[SVC_NAME_MAX + 32];
		snprintf(name, sizeof(name), "%s@%llu", base, (unsigned long long)k);
		struct svc_config *s = k == 0 ? first : add_service(l, name, r->line);
		struct raw_section x;
		if (k == 0) {
			strcpy(s->name, name);	/* NAME@0: add_service left room for it */
			map_put(&c->by_name, s->name, s);
		}
		s->template_name = xstrdup(base);
		s->instance = k;
		size_t before = l->errors_here;
		instance_raw(l, r, k, &x);
		finish_one(l, &x, s);
		raw_free(&x);
		s->instances = n;	/* also when instances = was bad */
		/* The instances differ only where %i is: the first one's errors
		 * say it, not another N-1 times. */
		if (l->errors_here > before)
			l->mute = true;
	}
	l->mute = was_mute;
	map_put(&c->templates, first->template_name, first);
	free(base);
}

void finish_service(struct loader *l)
{
	uint64_t n = instances_of(l, &l->sec);

	if (n)
		make_instances(l, &l->sec, n);
	else
		finish_one(l, &l->sec, l->sec.svc);
}
