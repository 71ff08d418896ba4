/*
 * config.c - loads the main config file and its includes into a struct
 * cohort_config, reporting every problem as "FILE:LINE: message".
 *
 * inih does the INI syntax, but Debian's build of it gives the handler no
 * line number and silently cuts lines at 199 characters.  So we hand inih
 * our own line reader (config_read_line): it counts lines, vets each one
 * (over-long, NUL bytes, section headers, lines with no "="), reports what
 * is wrong with the line number, and passes inih only lines it can parse.
 * inih calls the handler for a line before it reads the next one, so the
 * handler knows the line number of every key from the reader.
 *
 * Values are collected raw per section (a key indented on the next line
 * continues the previous value, and the parts are joined with a space) and
 * parsed when the section ends, through the key table in config_keys.c.
 * A section with instances = N is parsed N times, as NAME@0 ... NAME@N-1,
 * each time with %i expanded (config_template.c).
 */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <ini.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_keys.h"
#include "words.h"

#define INI_LINE_MAX 199		/* Debian's inih: INI_MAX_LINE 200, less the NUL */
#define CONFIG_FILE_MAX (16u << 20)

enum sec_kind { SEC_NONE, SEC_DAEMON, SEC_SERVICE, SEC_BAD };

#define HEALTH_INTERVAL_MIN_MS 10	/* 0 would spawn probes back to back */

/* One section's keys as written, before parsing. */
struct raw_section {
	enum sec_kind kind;
	int line;
	struct sbuf *value;	/* per key index */
	int *key_line;
	bool *set;
	int last_key;		/* key a continuation line extends, or -1 */
	struct svc_config *svc;	/* SEC_SERVICE */
};

struct loader {
	struct cohort_config *cfg;
	struct diag *d;
	const char *file;	/* as shown in messages */
	char *dir;		/* absolute directory for relative paths */
	bool is_main;
	const char *data;	/* the file's bytes */
	size_t len, pos;
	int lineno;
	bool continuation;	/* current line continues the previous value */
	bool after_key;		/* a key line since the section header */
	size_t errors_here;	/* errors reported for this file */
	bool mute;		/* a template's later instances: their errors are the first's */
	uint64_t instances;	/* made by templates so far, all files */
	struct raw_section sec;
	struct raw_section daemon;	/* [cohort] may be split; kept to the end of the main file */
	bool daemon_seen;
};

static void lerr(struct loader *l, int line, const char *fmt, ...) PRINTF(3, 4);
static void lerr(struct loader *l, int line, const char *fmt, ...)
{
	struct sbuf b = {0};
	va_list ap;

	l->errors_here++;
	if (l->mute)
		return;
	va_start(ap, fmt);
	sbuf_vaddf(&b, fmt, ap);
	va_end(ap);
	diag_add(l->d, l->file, line, "%s", b.buf);
	sbuf_free(&b);
}

static const char *sec_label(struct loader *l, struct sbuf *b)
{
	b->len = 0;
	if (l->sec.kind == SEC_SERVICE)
		sbuf_addf(b, "[service:%s]", l->sec.svc->name);
	else
		sbuf_adds(b, "[cohort]");
	return b->buf;
}

static void raw_init(struct raw_section *r, enum sec_kind kind, int line)
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

static void raw_free(struct raw_section *r)
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
 * svc_config), with the default for keys not set; the line of each key set
 * into key_line when it is not NULL. */
static void parse_section(struct loader *l, struct raw_section *r, void *base,
			  enum key_section ks, const char *label, int *key_line)
{
	struct parse_ctx ctx = {.dir = l->dir};
	struct sbuf why = {0};

	for (size_t i = 0; i < config_nkeys; i++) {
		const struct key_def *k = &config_keys[i];
		void *field = (char *)base + k->offset;

		if (k->section != ks)
			continue;
		/* Defaults always parse first, so a bad value leaves a sane one. */
		if (key_parse(k, &ctx, k->def, field, &why) < 0) {
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

	if (s->health.kind != CHECK_NONE && s->health_interval_ms < HEALTH_INTERVAL_MIN_MS) {
		format_duration_ms(s->health_interval_ms, a, sizeof(a));
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
	size_t n = s->pidfile ? strlen(s->pidfile) : 0;

	if (!s->pidfile)
		return;
	if (s->pidfile[n - 1] == '/')
		lerr(l, line_of(r, "pidfile"), "%s: pidfile = %s: expected a file, not a directory", label,
		     s->pidfile);
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

/* The lines of the keys r sets, kept in s for the plan's messages. */
static void keep_key_lines(const struct raw_section *r, struct svc_config *s)
{
	size_t n = 0;

	for (size_t i = 0; i < config_nkeys; i++)
		n += r->set[i];
	s->key_lines = n ? xcalloc(n, sizeof(*s->key_lines)) : NULL;
	for (size_t i = 0; i < config_nkeys; i++)
		if (r->set[i])
			s->key_lines[s->nkey_lines++] = (struct key_line){(unsigned)i, r->key_line[i]};
}

/* Parses one service's keys (a template's: one instance's) into s. */
static void finish_one(struct loader *l, struct raw_section *r, struct svc_config *s)
{
	struct sbuf label = {0};
	const char *why;
	int ci = key_index(KS_SERVICE, "command");

	sbuf_addf(&label, "[service:%s]", s->name);
	parse_section(l, r, s, KS_SERVICE, label.buf, NULL);
	keep_key_lines(r, s);
	if (!s->directory)
		s->directory = xstrdup(l->dir);
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
	check_pidfile(l, r, s, label.buf);
	check_timing(l, r, s, label.buf);
	sbuf_free(&label);
}

static struct svc_config *add_service(struct loader *l, const char *name, int line)
{
	struct svc_config *s = xcalloc(1, sizeof(*s));
	struct cohort_config *c = l->cfg;

	s->name = xstrdup(name);
	s->file = xstrdup(l->file);
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
	char *base = first->name;
	bool was_mute = l->mute;

	map_del(&c->by_name, base);
	for (uint64_t k = 0; k < n; k++) {
		char name[SVC_NAME_MAX + 32];
		snprintf(name, sizeof(name), "%s@%llu", base, (unsigned long long)k);
		struct svc_config *s = k == 0 ? first : add_service(l, name, r->line);
		struct raw_section x;
		if (k == 0) {
			s->name = xstrdup(name);
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

static void finish_service(struct loader *l)
{
	uint64_t n = instances_of(l, &l->sec);

	if (n)
		make_instances(l, &l->sec, n);
	else
		finish_one(l, &l->sec, l->sec.svc);
}

static void finish_section(struct loader *l)
{
	if (l->sec.kind == SEC_SERVICE)
		finish_service(l);
	if (l->sec.kind != SEC_DAEMON)
		raw_free(&l->sec);
	l->sec = (struct raw_section){.kind = SEC_NONE, .last_key = -1};
}

static const char *find_origin(const struct svc_config *s, struct sbuf *b)
{
	b->len = 0;
	sbuf_addf(b, "%s:%d", s->file, s->line);
	return b->buf;
}

/* A section that is neither [cohort] nor [service:NAME]: what it may have
 * meant, or what to write for a supervisord or systemd one. */
static void unknown_section(struct loader *l, char *name)
{
	static const char *const cands[] = {"cohort", "service"};
	char *colon = strchr(name, ':');
	if (colon)
		*colon = '\0';
	const char *m = did_you_mean(name, cands, ARRAY_LEN(cands));
	const char *hint = section_hint(name);
	if (colon)
		*colon = ':';
	if (hint)
		lerr(l, l->lineno, "unknown section [%s] (%s)", name, hint);
	else if (m && strcmp(m, "service") == 0)
		lerr(l, l->lineno, "unknown section [%s] (did you mean [service:%s]?)", name,
		     colon ? colon + 1 : "NAME");
	else if (m)
		lerr(l, l->lineno, "unknown section [%s] (did you mean [cohort]?)", name);
	else
		lerr(l, l->lineno, "unknown section [%s] (expected [cohort] or [service:NAME])", name);
	l->sec.kind = SEC_BAD;
}

/* A "[...]" line: closes the current section and opens the next. */
static void open_section(struct loader *l, char *name)
{
	struct sbuf b = {0};

	finish_section(l);
	l->after_key = false;
	if (strcmp(name, "cohort") == 0) {
		if (!l->is_main) {
			lerr(l, l->lineno, "[cohort] belongs in the main config file only");
			l->sec.kind = SEC_BAD;
			return;
		}
		if (!l->daemon_seen) {
			raw_init(&l->daemon, SEC_DAEMON, l->lineno);
			l->daemon_seen = true;
		}
		/* Keys of a repeated [cohort] go to the same place, so a key set
		 * twice is still caught as a duplicate. */
		l->sec = l->daemon;
		l->sec.last_key = -1;
		return;
	}
	if (str_starts(name, "service:")) {
		const char *sname = name + 8;
		if (strchr(sname, '@')) {
			lerr(l, l->lineno, "[%s]: \"@\" is for the names of instances: write [service:%.*s] "
			     "with instances = N for %.*s@0 to %.*s@N-1", name, (int)strcspn(sname, "@"), sname,
			     (int)strcspn(sname, "@"), sname, (int)strcspn(sname, "@"), sname);
			l->sec.kind = SEC_BAD;
			return;
		}
		if (!svc_name_valid(sname)) {
			lerr(l, l->lineno, "[%s]: bad service name \"%s\" (use 1-64 of A-Z a-z 0-9 _ . -)",
			     name, sname);
			l->sec.kind = SEC_BAD;
			return;
		}
		const struct svc_config *prev = map_get(&l->cfg->by_name, sname);
		if (!prev)
			prev = config_template(l->cfg, sname);
		if (prev) {
			lerr(l, l->lineno, "duplicate service \"%s\" (first defined at %s)",
			     sname, find_origin(prev, &b));
			sbuf_free(&b);
			l->sec.kind = SEC_BAD;
			return;
		}
		raw_init(&l->sec, SEC_SERVICE, l->lineno);
		l->sec.svc = add_service(l, sname, l->lineno);
		return;
	}
	unknown_section(l, name);
}

static void section_line(struct loader *l, char *line)
{
	char *open = strchr(line, '[');
	char *close = strchr(open, ']');

	if (!close) {
		lerr(l, l->lineno, "section header is missing \"]\"");
		finish_section(l);
		l->sec.kind = SEC_BAD;
		return;
	}
	char *rest = str_trim(close + 1);
	if (*rest && *rest != ';' && *rest != '#') {
		lerr(l, l->lineno, "unexpected text \"%s\" after the section header", rest);
	}
	*close = '\0';
	open_section(l, str_trim(open + 1));
	*close = ']';
}

/* True when inih will find "=" or ":" before an inline comment. */
static bool has_separator(const char *t)
{
	for (const char *p = t; *p; p++) {
		if (*p == '=' || *p == ':')
			return true;
		if (*p == ';' && p > t && (p[-1] == ' ' || p[-1] == '\t'))
			return false;
	}
	return false;
}

/* The ini_reader: see the comment at the top. */
static char *config_read_line(char *str, int num, void *stream)
{
	struct loader *l = stream;

	if (l->pos >= l->len)
		return NULL;
	const char *start = l->data + l->pos;
	const char *nl = memchr(start, '\n', l->len - l->pos);
	size_t n = nl ? (size_t)(nl - start) : l->len - l->pos;
	l->pos += n + (nl ? 1 : 0);
	l->lineno++;

	if (l->lineno == 1 && n >= 3 && memcmp(start, "\xEF\xBB\xBF", 3) == 0) {
		start += 3;	/* UTF-8 byte order mark */
		n -= 3;
	}
	if (n && start[n - 1] == '\r')
		n--;
	str[0] = '\0';	/* what inih gets for a line we reject */
	l->continuation = false;
	if (memchr(start, '\0', n)) {
		lerr(l, l->lineno, "line contains a NUL byte (is this a text file?)");
		return str;
	}
	if (n > INI_LINE_MAX || n + 1 > (size_t)num) {
		lerr(l, l->lineno, "line longer than %d characters; continue the value on an indented next line",
		     INI_LINE_MAX);
		return str;
	}
	char line[INI_LINE_MAX + 1];
	memcpy(line, start, n);
	line[n] = '\0';
	bool indented = n && (line[0] == ' ' || line[0] == '\t');
	char *t = str_trim(line);

	if (*t == '\0' || *t == ';' || *t == '#') {
		/* blank or comment: inih ignores it too */
	} else if (*t == '[') {
		section_line(l, line);
	} else if (indented && l->after_key) {
		l->continuation = true;
	} else if (!has_separator(t)) {
		lerr(l, l->lineno, "expected KEY = VALUE, a [section] or a comment, got \"%.40s%s\"",
		     t, strlen(t) > 40 ? "..." : "");
		return str;
	} else {
		l->after_key = true;
	}
	memcpy(str, start, n);
	str[n] = '\0';
	return str;
}

static int config_handler(void *user, const char *section, const char *name, const char *value)
{
	struct loader *l = user;
	struct raw_section *r = &l->sec;
	struct sbuf label = {0};
	(void)section;

	if (!value)
		value = "";
	if (l->continuation) {	/* join the parts of a multi-line value */
		if (r->last_key >= 0) {
			struct sbuf *v = &r->value[r->last_key];
			if (v->len && *value)
				sbuf_addc(v, ' ');
			sbuf_adds(v, value);
		}
		return 1;
	}
	if (r->kind == SEC_BAD)
		return 1;	/* the section header was reported already */
	if (r->kind == SEC_NONE) {
		lerr(l, l->lineno, "key \"%s\" outside any section (put it under [cohort] or [service:NAME])",
		     name);
		return 1;
	}
	if (!*name) {
		lerr(l, l->lineno, "%s: missing key name before \"=\"", sec_label(l, &label));
		goto out;
	}
	enum key_section ks = r->kind == SEC_DAEMON ? KS_DAEMON : KS_SERVICE;
	int i = key_index(ks, name);
	if (i < 0) {
		/* A supervisord or systemd key says what to use instead; that
		 * beats a near spelling ("User" is not a typo of "user"). */
		const char *hint = ks == KS_SERVICE ? key_hint(name) : NULL;
		const char *m = key_suggest(ks, name);
		enum key_section other = ks == KS_DAEMON ? KS_SERVICE : KS_DAEMON;
		if (hint)
			lerr(l, l->lineno, "%s: unknown key \"%s\" (%s)", sec_label(l, &label), name, hint);
		else if (m)
			lerr(l, l->lineno, "%s: unknown key \"%s\" (did you mean \"%s\"?)",
			     sec_label(l, &label), name, m);
		else if (key_index(other, name) >= 0)
			lerr(l, l->lineno, "%s: unknown key \"%s\" (it belongs in %s)",
			     sec_label(l, &label), name,
			     other == KS_DAEMON ? "[cohort]" : "a [service:NAME] section");
		else
			lerr(l, l->lineno, "%s: unknown key \"%s\"", sec_label(l, &label), name);
		r->last_key = -1;
		goto out;
	}
	if (r->set[i]) {
		lerr(l, l->lineno, "%s: duplicate key \"%s\" (first set on line %d)",
		     sec_label(l, &label), name, r->key_line[i]);
		r->last_key = -1;
		goto out;
	}
	r->set[i] = true;
	r->key_line[i] = l->lineno;
	r->last_key = i;
	sbuf_adds(&r->value[i], value);
	if (r->kind == SEC_DAEMON)
		l->daemon = *r;	/* keep the shared copy in step */
out:
	sbuf_free(&label);
	return 1;
}

static char *read_file(struct loader *l, const char *path, size_t *len, struct stat *st)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	char *buf = NULL;

	if (fd < 0) {
		lerr(l, 0, "cannot open: %s", strerror(errno));
		return NULL;
	}
	if (fstat(fd, st) < 0) {
		lerr(l, 0, "cannot stat: %s", strerror(errno));
		goto out;
	}
	if (S_ISDIR(st->st_mode)) {
		lerr(l, 0, "is a directory, not a config file");
		goto out;
	}
	if (!S_ISREG(st->st_mode)) {
		lerr(l, 0, "not a regular file");
		goto out;
	}
	if ((uint64_t)st->st_size > CONFIG_FILE_MAX) {
		lerr(l, 0, "file is larger than %u MiB; is this a config file?", CONFIG_FILE_MAX >> 20);
		goto out;
	}
	buf = xmalloc((size_t)st->st_size + 1);
	size_t got = 0;
	while (got < (size_t)st->st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st->st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			lerr(l, 0, "read error: %s", strerror(errno));
			free(buf);
			buf = NULL;
			goto out;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	buf[got] = '\0';
	*len = got;
out:
	close(fd);
	return buf;
}

static char *abs_dir_of(const char *path)
{
	char *dir = path_dirname(path);
	char real[PATH_MAX];

	if (realpath(dir, real)) {
		free(dir);
		return xstrdup(real);
	}
	return dir;
}

/* Reads and parses one file; st receives its identity.  -1: unreadable. */
static int load_file(struct loader *l, const char *path, bool is_main, struct stat *st)
{
	size_t len = 0;
	char *data;

	l->file = path;
	l->is_main = is_main;
	l->errors_here = 0;
	data = read_file(l, path, &len, st);
	if (!data)
		return -1;
	l->dir = abs_dir_of(path);
	l->data = data;
	l->len = len;
	l->pos = 0;
	l->lineno = 0;
	l->after_key = false;
	l->sec = (struct raw_section){.kind = SEC_NONE, .last_key = -1};

	int rc = ini_parse_stream(config_read_line, l, config_handler, l);
	if (rc > 0 && l->errors_here == 0)
		lerr(l, rc, "syntax error");
	if (is_main && l->sec.kind == SEC_DAEMON)
		l->daemon = l->sec;
	finish_section(l);
	if (is_main) {
		if (!l->daemon_seen)
			raw_init(&l->daemon, SEC_DAEMON, 0);
		l->sec = l->daemon;
		parse_section(l, &l->daemon, l->cfg, KS_DAEMON, "[cohort]", l->cfg->key_line);
		raw_free(&l->daemon);
		l->sec = (struct raw_section){.kind = SEC_NONE, .last_key = -1};
	}
	free(data);
	free(l->dir);
	l->dir = NULL;
	return 0;
}

/* glob() error callback: a missing directory is nothing to include, any
 * other error (a directory we may not read) is worth saying. */
static int glob_errno;
static int include_glob_error(const char *path, int err)
{
	(void)path;
	if (err != ENOENT && err != ENOTDIR && !glob_errno)
		glob_errno = err;
	return 0;
}

static void load_includes(struct loader *l, const struct stat *main_st)
{
	struct cohort_config *c = l->cfg;
	/* Relative to the main file as it was named, so messages show the
	 * paths a user would type. */
	char *dir = path_dirname(c->file);
	int line = c->key_line[key_index(KS_DAEMON, "include")];
	struct intmap seen = {0};	/* inode -> 1, so a file is read once */

	for (size_t i = 0; i < c->include.n; i++) {
		char *pat = path_join(dir, c->include.v[i]);
		glob_t g;
		glob_errno = 0;
		int rc = glob(pat, 0, include_glob_error, &g);

		if (glob_errno)
			diag_add(l->d, c->file, line, "[cohort]: include \"%s\": cannot read: %s",
				 c->include.v[i], strerror(glob_errno));
		if (rc != 0) {	/* GLOB_NOMATCH: nothing to include is fine */
			if (rc != GLOB_NOMATCH)
				globfree(&g);
			free(pat);
			continue;
		}
		for (size_t j = 0; j < g.gl_pathc; j++) {
			struct stat st;
			const char *p = g.gl_pathv[j];
			if (stat(p, &st) == 0 && st.st_dev == main_st->st_dev &&
			    st.st_ino == main_st->st_ino) {
				diag_add(l->d, c->file, line,
					 "[cohort]: include \"%s\" matches the main config file itself",
					 c->include.v[i]);
				continue;
			}
			if (stat(p, &st) == 0 && intmap_get(&seen, (int64_t)st.st_ino))
				continue;
			load_file(l, p, false, &st);
			intmap_put(&seen, (int64_t)st.st_ino, (void *)1);
		}
		globfree(&g);
		free(pat);
	}
	intmap_free(&seen);
	free(dir);
}

struct cohort_config *config_load(const char *path, struct diag *d)
{
	struct cohort_config *c = xcalloc(1, sizeof(*c));
	struct loader l = {.cfg = c, .d = d};
	struct stat st;
	size_t before = d->count;

	c->file = xstrdup(path);
	c->refs = 1;
	c->key_line = xcalloc(config_nkeys, sizeof(int));
	if (load_file(&l, c->file, true, &st) < 0) {
		config_free(c);
		return NULL;
	}
	load_includes(&l, &st);
	if (c->nservices == 0 && d->count == before)
		diag_add(d, c->file, 0, "no [service:NAME] sections: nothing to supervise");
	return c;
}

void config_free(struct cohort_config *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->nservices; i++) {
		struct svc_config *s = c->services[i];
		for (size_t k = 0; k < config_nkeys; k++)
			if (config_keys[k].section == KS_SERVICE)
				key_free(&config_keys[k], (char *)s + config_keys[k].offset);
		strv_free(&s->argv);
		free(s->template_name);
		free(s->name);
		free(s->file);
		free(s->key_lines);
		free(s);
	}
	for (size_t k = 0; k < config_nkeys; k++)
		if (config_keys[k].section == KS_DAEMON)
			key_free(&config_keys[k], (char *)c + config_keys[k].offset);
	free(c->services);
	map_free(&c->by_name);
	map_free(&c->templates);
	free(c->key_line);
	free(c->file);
	free(c);
}

struct cohort_config *config_ref(struct cohort_config *c)
{
	c->refs++;
	return c;
}

void config_unref(struct cohort_config *c)
{
	if (c && --c->refs == 0)
		config_free(c);
}

struct svc_config *config_find(const struct cohort_config *c, const char *name)
{
	return map_get(&c->by_name, name);
}
