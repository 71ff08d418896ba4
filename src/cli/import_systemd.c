/*
 * import_systemd.c - a systemd .service unit into one cohort service named
 * after the file (NAME.service is NAME).  The table's converters store the
 * Exec lines, Type, PIDFile and the environment here; finish() writes the
 * command once the whole unit is read, because it depends on them all:
 *
 *  - Exec lines are split with systemd's quoting (quotes around a whole
 *    word, C escapes), then quoted again for cohort, whose command is split
 *    as a POSIX shell splits.
 *  - systemd expands $NAME (a whole word, split) and ${NAME} (one word)
 *    from the environment; cohort expands nothing, so such a command runs
 *    under shell = yes, where /bin/sh does the same.
 *  - ExecStartPre= has no cohort key: the commands are joined before the
 *    main one, "pre1 && pre2 && exec main", with shell = yes (that is sh -c
 *    with one level of quoting fewer), when every one can run as systemd
 *    would run it.  A prefix cohort cannot honour (@ + !) leaves them all
 *    out, as comments: running some of them would be worse.
 *  - Specifiers: %n %N %p %i %I %t %S %C %L %E %T %V %H %% are expanded.
 */
#include "autoconfig.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "import.h"

#define SAFE_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./:=,+@%"

/* One command of an Exec line. */
struct sd_cmd {
	struct strv argv;
	bool ignore_failure;	/* the - prefix */
	bool expand;		/* no : prefix: $NAME and ${NAME} are expanded */
	bool honoured;		/* no prefix cohort cannot honour */
	char *line;		/* the Exec line it came from */
};

struct sd_state {
	const char *unit;	/* the file's name: NAME.service */
	struct sd_cmd *start, *pre;
	size_t nstart, npre;
	bool notify, forking, oneshot;
	char *pidfile;
	struct sbuf env;
	struct strv env_files;
	int start_line;
};

static void cmds_free(struct sd_cmd *c, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		strv_free(&c[i].argv);
		free(c[i].line);
	}
	free(c);
}

/* --- systemd's syntax ------------------------------------------------------ */

/* A C escape after a backslash at *p; advances *p. */
static void unescape(const char **p, struct sbuf *w)
{
	static const char from[] = "abfnrtvs\\\"'", to[] = "\a\b\f\n\r\t\v \\\"'";
	char c = **p;
	const char *at = c ? strchr(from, c) : NULL;

	if (at) {
		sbuf_addc(w, to[at - from]);
		(*p)++;
	} else if (c == 'x' && isxdigit((unsigned char)(*p)[1]) && isxdigit((unsigned char)(*p)[2])) {
		char hex[3] = {(*p)[1], (*p)[2], 0};
		sbuf_addc(w, (char)strtol(hex, NULL, 16));
		*p += 3;
	} else {
		sbuf_addc(w, '\\');	/* systemd's "relaxed" mode keeps it */
		if (c) {
			sbuf_addc(w, c);
			(*p)++;
		}
	}
}

/* Splits V into words as systemd does: blanks separate them, quotes keep
 * blanks (anywhere in a word), C escapes.  -1 on an unterminated quote. */
static int sd_split(const char *v, struct strv *out)
{
	const char *p = v;

	*out = (struct strv){0};
	while (*(p += strspn(p, " \t"))) {
		struct sbuf w = {0};
		char quote = 0;
		while (*p && (quote || (*p != ' ' && *p != '\t'))) {
			char c = *p++;
			if (c == '\\')
				unescape(&p, &w);
			else if (!quote && (c == '"' || c == '\''))
				quote = c;
			else if (c == quote)
				quote = 0;
			else
				sbuf_addc(&w, c);
		}
		if (quote) {
			sbuf_free(&w);
			strv_free(out);
			return -1;
		}
		sbuf_add(&w, "", 0);
		strv_push_owned(out, sbuf_steal(&w));
	}
	return 0;
}

static bool is_var_name(const char *s, size_t n)
{
	if (n == 0 || isdigit((unsigned char)s[0]))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '_')
			return false;
	return true;
}

static bool bare_var(const char *w)
{
	return w[0] == '$' && is_var_name(w + 1, strlen(w + 1));
}

/* Does W use ${NAME} (or is it $NAME)? */
static bool has_vars(const char *w)
{
	if (bare_var(w))
		return true;
	for (const char *p = w; (p = strchr(p, '$')); p++) {
		if (p[1] == '$') {
			p++;
			continue;
		}
		const char *end = p[1] == '{' ? strchr(p, '}') : NULL;
		if (end && is_var_name(p + 2, (size_t)(end - p - 2)))
			return true;
	}
	return false;
}

/* A ; or # after a blank would start a cohort comment: out of the quotes. */
static bool comment_char_at(const char *w, const char *p)
{
	return (*p == ';' || *p == '#') && p > w && (p[-1] == ' ' || p[-1] == '\t');
}

/* W as one word of cohort's command (and of sh): single quotes; $$ is $
 * when the command's $ are systemd's. */
static void quote_plain(struct sbuf *out, const char *w, bool dollars)
{
	struct sbuf lit = {0};

	for (const char *p = w; *p; p++) {
		sbuf_addc(&lit, *p);
		if (dollars && p[0] == '$' && p[1] == '$')
			p++;
	}
	sbuf_add(&lit, "", 0);
	const char *s = lit.buf;
	if (*s && strspn(s, SAFE_CHARS) == strlen(s)) {
		sbuf_adds(out, s);
	} else {
		sbuf_addc(out, '\'');
		for (const char *p = s; *p; p++) {
			if (*p == '\'')
				sbuf_adds(out, "'\\''");
			else if (comment_char_at(s, p))
				sbuf_addf(out, "'\\%c'", *p);
			else
				sbuf_addc(out, *p);
		}
		sbuf_addc(out, '\'');
	}
	sbuf_free(&lit);
}

/* W with its ${NAME} (or a whole $NAME) left to /bin/sh, as systemd
 * expands them: "${NAME}" is one word, $NAME is split at blanks. */
static void quote_vars(struct sbuf *out, const char *w)
{
	if (bare_var(w)) {
		sbuf_adds(out, w);
		return;
	}
	sbuf_addc(out, '"');
	for (const char *p = w; *p; p++) {
		const char *end = p[0] == '$' && p[1] == '{' ? strchr(p, '}') : NULL;
		if (p[0] == '$' && p[1] == '$') {
			sbuf_adds(out, "\\$");
			p++;
		} else if (end && is_var_name(p + 2, (size_t)(end - p - 2))) {
			sbuf_add(out, p, (size_t)(end - p + 1));
			p = end;
		} else if (strchr("\"\\`$", *p)) {
			sbuf_addc(out, '\\');
			sbuf_addc(out, *p);
		} else if (comment_char_at(w, p)) {
			sbuf_addf(out, "\"\\%c\"", *p);
		} else {
			sbuf_addc(out, *p);
		}
	}
	sbuf_addc(out, '"');
}

static bool cmd_has_vars(const struct sd_cmd *c)
{
	for (size_t i = 0; c->expand && i < c->argv.n; i++)
		if (has_vars(c->argv.v[i]))
			return true;
	return false;
}

static void quote_cmd(struct sbuf *out, const struct sd_cmd *c, bool shell)
{
	for (size_t i = 0; i < c->argv.n; i++) {
		if (i)
			sbuf_addc(out, ' ');
		if (shell && c->expand && has_vars(c->argv.v[i]))
			quote_vars(out, c->argv.v[i]);
		else
			quote_plain(out, c->argv.v[i], c->expand);
	}
}

/* --- Exec lines ------------------------------------------------------------ */

/* The prefixes of an Exec line: what cohort cannot honour goes to ctx as a
 * comment; returns the rest of the line. */
static const char *exec_prefixes(struct imp_ctx *x, const char *v, struct sd_cmd *c, bool *drop_argv0)
{
	c->expand = true;
	c->honoured = true;
	for (;; v++) {
		if (*v == '-')
			c->ignore_failure = true;
		else if (*v == ':')
			c->expand = false;
		else if (*v == '@')
			*drop_argv0 = true;
		else if (*v == '+' || *v == '!')
			c->honoured = false;
		else
			break;
	}
	if (*drop_argv0 || !c->honoured) {
		c->honoured = false;
		imp_skip(x->svc, x->entry->key, x->entry->value,
			 *drop_argv0 ? "the @ prefix: cohort runs a program with its own path as argv[0]"
				     : "the + and ! prefixes: cohort runs every command with the service's "
				       "user, group and rights");
	}
	return v;
}

/* Parses one Exec line into commands (a lone ; separates them) added to
 * *cmds; -1 after a fatal error. */
static int parse_exec(struct imp_ctx *x, const char *v, struct sd_cmd **cmds, size_t *n)
{
	struct strv words;

	if (!*v) {	/* an empty assignment resets the list */
		cmds_free(*cmds, *n);
		*cmds = NULL;
		*n = 0;
		return 0;
	}
	if (sd_split(v, &words) < 0) {
		sbuf_addf(x->err, "%s:%d: %s: unterminated quote\n", x->file->path, x->entry->line, x->entry->key);
		return -1;
	}
	for (size_t i = 0; i < words.n;) {
		struct sd_cmd c = {0};
		bool drop = false;
		const char *first = exec_prefixes(x, words.v[i], &c, &drop);
		if (*first)
			strv_push(&c.argv, first);
		for (i++; i < words.n && strcmp(words.v[i], ";") != 0; i++) {
			if (drop && c.argv.n == 1) {
				drop = false;	/* @: this word was argv[0] */
				continue;
			}
			strv_push(&c.argv, strcmp(words.v[i], "\\;") == 0 ? ";" : words.v[i]);
		}
		i++;
		if (c.argv.n == 0) {
			sbuf_addf(x->err, "%s:%d: %s: no program to run\n", x->file->path, x->entry->line,
				  x->entry->key);
			strv_free(&c.argv);
			strv_free(&words);
			return -1;
		}
		c.line = xstrdup(v);
		*cmds = xrealloc(*cmds, (*n + 1) * sizeof(**cmds));
		(*cmds)[(*n)++] = c;
	}
	strv_free(&words);
	return 0;
}

const char *sd_exec_start(struct imp_ctx *x, const char *k, const char *v)
{
	struct sd_state *st = x->kind_state;
	size_t before = st->nstart;

	(void)k;
	st->start_line = x->entry->line;
	if (parse_exec(x, v, &st->start, &st->nstart) < 0)
		return IMP_FATAL;
	for (size_t i = before; i < st->nstart; i++)
		if (st->start[i].ignore_failure)
			imp_skip(x->svc, x->entry->key, v,
				 "the - prefix: cohort counts an exit with a code not in success_exit as a failure");
	return NULL;
}

const char *sd_exec_start_pre(struct imp_ctx *x, const char *k, const char *v)
{
	struct sd_state *st = x->kind_state;

	(void)k;
	return parse_exec(x, v, &st->pre, &st->npre) < 0 ? IMP_FATAL : NULL;
}

const char *sd_type(struct imp_ctx *x, const char *k, const char *v)
{
	struct sd_state *st = x->kind_state;

	(void)k;
	st->notify = strcmp(v, "notify") == 0;
	st->forking = strcmp(v, "forking") == 0;
	st->oneshot = strcmp(v, "oneshot") == 0;
	if (st->notify)
		imp_set(x->svc, "ready", "notify");
	else
		imp_unset(x->svc, "ready");
	if (strcmp(v, "simple") == 0 || strcmp(v, "exec") == 0 || st->notify || st->forking || st->oneshot)
		return NULL;
	return "cohort knows simple, exec, notify, forking (with PIDFile=) and oneshot services";
}

const char *sd_pidfile(struct imp_ctx *x, const char *k, const char *v)
{
	struct sd_state *st = x->kind_state;

	(void)k;
	(void)x;
	free(st->pidfile);
	st->pidfile = xstrdup(v);
	return NULL;
}

/* --- the environment ----------------------------------------------------- */

/* Each NAME=VALUE of an Environment= line, as cohort's quoted items. */
const char *sd_environment(struct imp_ctx *x, const char *k, const char *v)
{
	struct sd_state *st = x->kind_state;
	struct strv words;
	struct sbuf items = {0};

	(void)k;
	if (!*v) {	/* an empty assignment resets the list */
		sbuf_free(&st->env);
		return NULL;
	}
	if (sd_split(v, &words) < 0)
		return "an unterminated quote";
	for (size_t i = 0; i < words.n; i++) {
		const char *eq = strchr(words.v[i], '=');
		if (!eq || !is_var_name(words.v[i], (size_t)(eq - words.v[i]))) {
			strv_free(&words);
			sbuf_free(&items);
			return "not NAME=VALUE items";
		}
		sbuf_addf(&items, "%s%.*s=\"", items.len ? ", " : "", (int)(eq - words.v[i] + 0), words.v[i]);
		for (const char *p = eq + 1; *p; p++) {
			if (*p == '"' || *p == '\\')
				sbuf_addc(&items, '\\');
			sbuf_addc(&items, *p);
		}
		sbuf_addc(&items, '"');
	}
	strv_free(&words);
	if (items.len)
		sbuf_addf(&st->env, "%s%s", st->env.len ? ", " : "", items.buf);
	sbuf_free(&items);
	return NULL;
}

const char *sd_environment_file(struct imp_ctx *x, const char *k, const char *v)
{
	struct sd_state *st = x->kind_state;

	(void)k;
	if (!*v) {
		strv_free(&st->env_files);
		return NULL;
	}
	if (strchr(v, ','))
		return "cohort's environment_file is a comma-separated list: no comma in a path";
	strv_push(&st->env_files, v);
	return NULL;
}

const char *sd_directory(struct imp_ctx *x, const char *k, const char *v)
{
	if (*v == '-') {
		v++;
		imp_note(x->svc, "WorkingDirectory=-%s: a missing directory fails the start in cohort", v);
	}
	if (*v != '/')
		return "cohort needs the directory written out (no ~ for the user's home)";
	imp_set(x->svc, k, v);
	return NULL;
}

/* --- [Unit] ------------------------------------------------------------------ */

const char *sd_deps(struct imp_ctx *x, const char *k, const char *v)
{
	struct strv units;

	if (sd_split(v, &units) < 0)
		return "an unterminated quote";
	for (size_t i = 0; i < units.n; i++) {
		const char *u = units.v[i];
		size_t n = strlen(u);
		if (n > 8 && strcmp(u + n - 8, ".service") == 0) {
			char *name = xstrndup(u, n - 8), *unit = xasprintf("%s=%s", x->entry->key, u);
			imp_dep_add(x->svc, name, unit, strcmp(k, "requires") == 0);
			free(name);
			free(unit);
		} else {
			imp_skip(x->svc, x->entry->key, u, "cohort orders services only (no targets, sockets or mounts)");
		}
	}
	strv_free(&units);
	return NULL;
}

const char *sd_description(struct imp_ctx *x, const char *k, const char *v)
{
	(void)k;
	free(x->svc->title);
	x->svc->title = xstrdup(v);
	return NULL;
}

/* --- the unit --------------------------------------------------------------- */

/* The value of specifier C, or NULL when cohort cannot know it. */
static const char *specifier(const struct sd_state *st, char c, char *buf, size_t len)
{
	const char *dot = strrchr(st->unit, '.'), *at = strchr(st->unit, '@');
	size_t base = dot ? (size_t)(dot - st->unit) : strlen(st->unit);
	size_t prefix = at && at < st->unit + base ? (size_t)(at - st->unit) : base;	/* before the @ */

	switch (c) {
	case 'n': snprintf(buf, len, "%s", st->unit); return buf;
	case 'N': snprintf(buf, len, "%.*s", (int)base, st->unit); return buf;
	case 'p': snprintf(buf, len, "%.*s", (int)prefix, st->unit); return buf;
	case 'i': case 'I': return "%i";	/* a template's instance: cohort's %i */
	case 't': return "/run";
	case 'S': return "/var/lib";
	case 'C': return "/var/cache";
	case 'L': return "/var/log";
	case 'E': return "/etc";
	case 'T': return "/tmp";
	case 'V': return "/var/tmp";
	case 'H': return gethostname(buf, len) == 0 ? buf : NULL;
	case '%': return "%";
	default: return NULL;
	}
}

static int expand_specifiers(const struct sd_state *st, const char *file, const struct imp_entry *e,
			     struct sbuf *out, struct sbuf *err)
{
	char buf[256];

	for (const char *p = e->value; *p; p++) {
		if (*p != '%') {
			sbuf_addc(out, *p);
			continue;
		}
		const char *val = p[1] ? specifier(st, p[1], buf, sizeof(buf)) : NULL;
		if (!val) {
			sbuf_addf(err, "%s:%d: %s: the specifier %%%c is not one cohortctl import knows "
				  "(%%n %%N %%p %%i %%I %%t %%S %%C %%L %%E %%T %%V %%H %%%%)\n",
				  file, e->line, e->key, p[1] ? p[1] : ' ');
			return -1;
		}
		sbuf_adds(out, val);
		p++;
	}
	sbuf_add(out, "", 0);
	return 0;
}

/* The command from ExecStartPre= and ExecStart=. */
static void write_command(struct imp_svc *svc, struct sd_state *st)
{
	bool pre_ok = st->npre > 0, shell = false;
	struct sbuf cmd = {0};

	for (size_t i = 0; i < st->npre; i++)
		pre_ok = pre_ok && st->pre[i].honoured;
	for (size_t i = 0; !pre_ok && i < st->npre; i++)
		if (st->pre[i].honoured)
			imp_skip(svc, "ExecStartPre", st->pre[i].line,
				 "left out with the ExecStartPre= cohort cannot honour (all or none run)");
	for (size_t i = 0; i < st->nstart; i++)
		shell = shell || cmd_has_vars(&st->start[i]);
	shell = shell || pre_ok || st->nstart > 1;
	for (size_t i = 0; pre_ok && i < st->npre; i++) {
		shell = shell || cmd_has_vars(&st->pre[i]);
		if (st->pre[i].ignore_failure)
			sbuf_adds(&cmd, "{ ");
		quote_cmd(&cmd, &st->pre[i], true);
		sbuf_adds(&cmd, st->pre[i].ignore_failure ? " || true; } && " : " && ");
	}
	for (size_t i = 0; i < st->nstart; i++) {
		if (shell && i + 1 == st->nstart)
			sbuf_adds(&cmd, "exec ");
		quote_cmd(&cmd, &st->start[i], shell);
		if (i + 1 < st->nstart)
			sbuf_adds(&cmd, " && ");
	}
	imp_set(svc, "command", cmd.buf);
	if (shell)
		imp_set(svc, "shell", "yes");
	if (pre_ok)
		imp_note(svc, "ExecStartPre= runs before the command, in the same shell (&& stops at a failure)");
	sbuf_free(&cmd);
}

/* What needs the whole unit read: the command, the environment, Type. */
static int finish(struct imp_svc *svc, struct sd_state *st, const struct imp_file *f, struct sbuf *err)
{
	if (st->nstart == 0) {
		const struct imp_section *s = NULL;
		for (size_t i = 0; i < f->n; i++)
			if (strcmp(f->s[i].name, "Service") == 0)
				s = &f->s[i];
		sbuf_addf(err, "%s:%d: [Service]: no ExecStart= (what to run)\n", f->path, s ? s->line : 1);
		return -1;
	}
	write_command(svc, st);
	if (st->env.len)
		imp_set(svc, "environment", st->env.buf);
	if (st->env_files.n) {
		char *j = strv_join(&st->env_files, ", ");
		imp_set(svc, "environment_file", j);
		free(j);
	}
	if (!imp_get(svc, "restart"))
		imp_set(svc, "restart", "never");	/* systemd's default, Restart=no */
	if (st->forking && st->pidfile)
		imp_set(svc, "pidfile", st->pidfile);
	else if (st->forking)
		imp_skip(svc, "Type", "forking",
			 "without PIDFile=, cohort cannot follow the daemon once it forks: run it in the foreground");
	else if (st->pidfile)
		imp_skip(svc, "PIDFile", st->pidfile, "cohort supervises the process it started; "
			 "a pidfile is read for Type=forking only");
	return 0;
}

static enum imp_where where_of(const char *section)
{
	if (strcmp(section, "Unit") == 0)
		return W_UNIT;
	if (strcmp(section, "Service") == 0)
		return W_SERVICE;
	if (strcmp(section, "Install") == 0)
		return W_INSTALL;
	return W_SD_SECTION;
}

static int convert_unit(struct imp_ctx *x, struct sd_state *st, const struct imp_file *f)
{
	for (size_t i = 0; i < f->n; i++) {
		const struct imp_section *sec = &f->s[i];
		enum imp_where w = where_of(sec->name);
		x->sec = sec;
		if (w == W_SD_SECTION) {
			imp_skip(x->svc, sec->name, "...", imp_lookup(W_SD_SECTION, sec->name)->reason);
			continue;
		}
		for (size_t j = 0; j < sec->n; j++) {
			struct sbuf v = {0};
			if (expand_specifiers(st, f->path, &sec->e[j], &v, x->err) < 0)
				return -1;
			struct imp_entry e = {.key = sec->e[j].key, .value = v.buf, .line = sec->e[j].line};
			x->entry = &e;
			x->written = sec->e[j].value;
			int rc = imp_apply(x, w);
			sbuf_free(&v);
			if (rc < 0)
				return -1;
		}
	}
	return 0;
}

int imp_systemd(struct imp_run *run, struct imp_file *f, struct sbuf *err)
{
	const char *base = strrchr(f->path, '/') ? strrchr(f->path, '/') + 1 : f->path;
	struct sd_state st = {.unit = base};
	size_t n = strlen(base);
	char *name = n > 8 && strcmp(base + n - 8, ".service") == 0 ? xstrndup(base, n - 8) : xstrdup(base);
	int rc = -1;

	if (name[0] && name[strlen(name) - 1] == '@')
		name[strlen(name) - 1] = '\0';	/* NAME@.service: a template */
	struct imp_svc *svc = imp_svc_add(run, name, f->path, f->n ? f->s[0].line : 1, err);
	if (svc) {
		struct imp_ctx x = {.run = run, .svc = svc, .file = f, .err = err, .kind_state = &st};
		if (strchr(base, '@'))
			imp_skip(svc, "template", base, "cohort's instances = N needs the number: add it");
		rc = convert_unit(&x, &st, f);
		if (rc == 0)
			rc = finish(svc, &st, f, err);
	}
	free(name);
	cmds_free(st.start, st.nstart);
	cmds_free(st.pre, st.npre);
	free(st.pidfile);
	sbuf_free(&st.env);
	strv_free(&st.env_files);
	return rc;
}
