/*
 * cli_import.c - `cohortctl import FILE...`: supervisord configs and
 * systemd units in, one cohort config out (stdout), a summary on stderr.
 * It works on files only and never talks to cohortd.  Each file's kind is
 * found by import_read.c; the mapping is import_table.c's table (printed by
 * --table, which is how doc/MIGRATING.md is held to it).
 */
#include "autoconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "import.h"

static const char *where_name(enum imp_where w)
{
	switch (w) {
	case W_PROGRAM: return "supervisord [program:x]";
	case W_SUPERVISORD: return "supervisord [supervisord]";
	case W_SV_SECTION: return "supervisord section";
	case W_UNIT: return "systemd [Unit]";
	case W_SERVICE: return "systemd [Service]";
	case W_INSTALL: return "systemd [Install]";
	case W_SD_SECTION: return "systemd section";
	}
	return "?";
}

/* The table as doc/MIGRATING.md holds it, one row a line: WHERE | KEY |
 * COHORT KEY | how, or why not. */
static void import_print_table(void)
{
	for (size_t i = 0; i < imp_table_len; i++) {
		const struct imp_map *m = &imp_table[i];
		const char *how = m->reason ? m->reason : "copied";
		if (m->cohort)
			printf("| %s | `%s` | `%s` | %s |\n", where_name(m->where), m->key, m->cohort, how);
		else if (m->conv)
			printf("| %s | `%s` | (see how) | %s |\n", where_name(m->where), m->key, how);
		else
			printf("| %s | `%s` | not imported | %s |\n", where_name(m->where), m->key, how);
	}
}

static int import_file(struct imp_run *run, const char *path, struct sbuf *err)
{
	struct imp_file f;
	int rc = imp_read_file(path, &f, err);

	if (rc == 0) {
		strv_push(&run->sources, path);
		rc = f.kind == IMP_SYSTEMD ? imp_systemd(run, &f, err) : imp_supervisord(run, &f, err);
	}
	imp_file_free(&f);
	return rc;
}

/* A command that cannot be written (imp_resolve took it out) fails the
 * import: the config would not run. */
static void check_commands(const struct imp_run *run, struct sbuf *err)
{
	for (size_t i = 0; i < run->n; i++) {
		const struct imp_svc *s = run->svc[i];
		if (imp_get(s, "command"))
			continue;
		const char *why = "";
		for (size_t k = 0; k < s->notes.n; k++)
			if (str_starts(s->notes.v[k], "not imported: command="))
				why = strrchr(s->notes.v[k], ':') + 1;
		sbuf_addf(err, "%s:%d: [service:%s]: its command cannot be written in a cohort config:%s\n",
			  s->file, s->line, s->name, why);
	}
}

static int cmd_import(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {{"table", no_argument, NULL, 't'}, {0}};
	struct imp_run run = {0};
	struct sbuf err = {0};
	bool table = false;
	int o;

	(void)c;
	optind = 1;
	while ((o = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		if (o != 't')
			die_usage("import: unknown option");
		table = true;
	}
	if (table) {
		import_print_table();
		return EXIT_OK;
	}
	if (optind >= argc)
		die_usage("import: name one or more supervisord configs or systemd units");
	for (int i = optind; i < argc; i++)
		if (import_file(&run, argv[i], &err) < 0)
			break;
	if (!err.len && run.n == 0)
		sbuf_addf(&err, "no service in %s%s: nothing to import (supervisord: a [program:NAME] section; "
			  "systemd: a .service unit)\n", argv[optind], argc - optind > 1 ? " and the rest" : "");
	if (!err.len) {
		imp_resolve(&run);
		check_commands(&run, &err);
	}
	if (!err.len) {
		imp_print(&run, stdout);
		fflush(stdout);
		size_t skipped = imp_skipped_total(&run);
		fprintf(stderr, "cohortctl import: %zu service%s, %zu setting%s not imported "
				"(see the \"; not imported:\" comments)\n",
			run.n, run.n == 1 ? "" : "s", skipped, skipped == 1 ? "" : "s");
	} else {
		fprintf(stderr, "cohortctl import: %s", err.buf);
	}
	int rc = err.len ? EXIT_FAILED : EXIT_OK;
	sbuf_free(&err);
	imp_run_free(&run);
	return rc;
}

static const struct option import_longopts[] = {{"table", no_argument, NULL, 't'}, {0}};

const struct command cmd_import_entry = {
	"import", "[--table] FILE...",
	"print a cohort config made from supervisord configs and systemd units",
	cmd_import, "+", import_longopts, false,
};
