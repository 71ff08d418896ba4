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
 * parsed when the section ends (config_section.c), through the key table
 * in config_keys.c.  A section with instances = N is parsed N times, as
 * NAME@0 ... NAME@N-1, each time with %i expanded (config_template.c).
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

#include "config_loader.h"
#include "words.h"

#define INI_LINE_MAX 199		/* Debian's inih: INI_MAX_LINE 200, less the NUL */
#define CONFIG_FILE_MAX (16u << 20)

void lerr(struct loader *l, int line, const char *fmt, ...)
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

	strv_push(&l->cfg->files, path);
	l->file = l->cfg->files.v[l->cfg->files.n - 1];
	l->is_main = is_main;
	l->errors_here = 0;
	data = read_file(l, path, &len, st);
	if (!data)
		return -1;
	strv_push_owned(&l->cfg->dirs, abs_dir_of(path));
	l->dir = l->cfg->dirs.v[l->cfg->dirs.n - 1];
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
		parse_section(l, &l->daemon, l->cfg, NULL, KS_DAEMON, "[cohort]", l->cfg->key_line);
		raw_free(&l->daemon);
		l->sec = (struct raw_section){.kind = SEC_NONE, .last_key = -1};
	}
	free(data);
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
		if (s->directory_of_file)
			s->directory = NULL;	/* c->dirs' */
		for (size_t k = 0; k < config_nkeys; k++)
			if (config_keys[k].section == KS_SERVICE && !config_keys[k].rare)
				key_free(&config_keys[k], (char *)s + config_keys[k].offset);
		svc_rare_free(s->rare);
		free(s->argv.v);	/* packed */
		free(s->template_name);
		free(s->key_lines);
		free(s);
	}
	for (size_t k = 0; k < config_nkeys; k++)
		if (config_keys[k].section == KS_DAEMON)
			key_free(&config_keys[k], (char *)c + config_keys[k].offset);
	free(c->services);
	strv_free(&c->files);
	strv_free(&c->dirs);
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
