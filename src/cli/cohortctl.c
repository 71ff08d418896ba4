/*
 * cohortctl.c - the command-line client of cohortd's control socket.
 *
 * One table of commands (name, usage, summary, runner) gives the help,
 * the per-command --help and the list the shell completion reads.  Each
 * runner builds one JSON request, sends it, and prints the answer for
 * humans (or as the daemon wrote it, with --json).
 *
 * Exit status: 0 success; 1 the operation failed (a start target ended
 * failed, the daemon refused the request); 2 usage error; 3 cohortd
 * cannot be reached.
 */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cohort.h"
#include "config.h"
#include "jscan.h"
#include "jstr.h"
#include "lock.h"
#include "util.h"

#define DEFAULT_CONFIG "/etc/cohort/cohort.ini"
#define DEFAULT_SOCKET "/run/cohort/control.sock"

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2, EXIT_UNREACHABLE = 3 };

struct ctl {
	const char *socket;
	bool json;
	bool color;
	int fd;
	struct sbuf in;
};

struct command {
	const char *name;
	const char *usage;	/* arguments after the name */
	const char *summary;
	int (*run)(struct ctl *c, int argc, char **argv);
	/* Its options, for getopt_long ("+": the runner's getopt stops at the
	 * operands), or NULL: it takes none but --json and --help. */
	const char *shortopts;
	const struct option *longopts;
	bool then_command;	/* NAME [--] CMD...: nothing in CMD is an option */
};

static const struct command commands[];

static void die_usage(const char *fmt, ...) PRINTF(1, 2);
static void die_usage(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "cohortctl: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (see cohortctl --help)\n");
	exit(EXIT_USAGE);
}

/* --- the socket ------------------------------------------------------------ */

/* 0, or -1 with errno. */
static int try_connect(struct ctl *c)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};

	if (strlen(c->socket) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "cohortctl: socket path too long: %s\n", c->socket);
		exit(EXIT_USAGE);
	}
	strcpy(sa.sun_path, c->socket);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		if (c->fd >= 0)
			close(c->fd);
		c->fd = -1;
		errno = e;
		return -1;
	}
	return 0;
}

static void connect_daemon(struct ctl *c)
{
	if (try_connect(c) < 0) {
		int e = errno;
		fprintf(stderr, "cohortctl: cannot reach cohortd at %s: %s (%s)\n", c->socket, strerror(e),
			e == EACCES ? "cohortd's control_mode and control_group say who may use it"
				    : "is it running? try -s or -c");
		exit(EXIT_UNREACHABLE);
	}
}

static void send_request(struct ctl *c, json_t *req)
{
	char *text = json_dumps(req, JSON_COMPACT);
	size_t len = strlen(text);

	json_decref(req);
	text = xrealloc(text, len + 2);
	text[len++] = '\n';
	for (size_t off = 0; off < len;) {
		ssize_t n = send(c->fd, text + off, len - off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			/* cohortd may have said why before it closed (a refusal):
			 * the answer is read next either way. */
			break;
		}
		off += (size_t)n;
	}
	free(text);
}

/* The next line from the daemon, or NULL at end of stream. */
static char *read_line(struct ctl *c)
{
	size_t scanned = 0;

	for (;;) {
		char *nl = c->in.len > scanned ? memchr(c->in.buf + scanned, '\n', c->in.len - scanned) : NULL;
		if (nl) {
			size_t len = (size_t)(nl - c->in.buf);
			if (len + 1 == c->in.len && len >= 4096) {	/* a big answer: no copy */
				*nl = '\0';
				return sbuf_steal(&c->in);
			}
			char *line = xstrndup(c->in.buf, len);
			sbuf_consume(&c->in, len + 1);
			return line;
		}
		scanned = c->in.len;
		char *w = sbuf_reserve(&c->in, 65536);
		ssize_t n = recv(c->fd, w, 65536, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return NULL;
		sbuf_commit(&c->in, w + n);
	}
}

/* One answer; exits 3 if the daemon went away, 1 if it said no (after
 * printing its error), unless keep_errors. */
static json_t *parse_answer(struct ctl *c, char *line, char **raw, bool keep_errors)
{
	json_error_t err;

	if (!line) {
		fprintf(stderr, "cohortctl: cohortd at %s closed the connection without an answer\n",
			c->socket);
		exit(EXIT_UNREACHABLE);
	}
	json_t *resp = json_loads(line, 0, &err);
	/* Both exits free what they hold: valgrind calls a block only the
	 * optimised-away stack pointed to "definitely lost". */
	if (!resp || !json_is_object(resp)) {
		fprintf(stderr, "cohortctl: cohortd sent something that is not JSON: %.80s\n", line);
		json_decref(resp);
		free(line);
		exit(EXIT_FAILED);
	}
	if (!json_is_true(json_object_get(resp, "ok")) && !keep_errors) {
		if (c->json)
			printf("%s\n", line);
		else
			fprintf(stderr, "cohortctl: %s\n", json_string_value(json_object_get(resp, "error"))
				? json_string_value(json_object_get(resp, "error")) : line);
		json_decref(resp);
		free(line);
		exit(EXIT_FAILED);
	}
	if (raw)
		*raw = line;
	else
		free(line);
	return resp;
}

static json_t *read_answer(struct ctl *c, char **raw, bool keep_errors)
{
	return parse_answer(c, read_line(c), raw, keep_errors);
}

static json_t *call(struct ctl *c, json_t *req, char **raw)
{
	connect_daemon(c);
	send_request(c, req);
	return read_answer(c, raw, false);
}

/* --- output helpers -------------------------------------------------------- */

/* The colour of a state, as ctl_status.c paints the status table. */
static const char *state_color(const char *state)
{
	if (!strcmp(state, "running") || !strcmp(state, "exited"))
		return "\033[32m";
	if (!strcmp(state, "failed"))
		return "\033[31m";
	if (!strcmp(state, "stopped"))
		return "";
	return "\033[33m";
}

static const char *str_of(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s ? s : "";
}

/* Room for CAP rows of NCOLS cells, the first filled with HEAD. */
static char ***table_new(const char *const *head, size_t ncols, size_t cap)
{
	char ***rows = xcalloc(cap, sizeof(char **));

	rows[0] = xcalloc(ncols, sizeof(char *));
	for (size_t k = 0; k < ncols; k++)
		rows[0][k] = xstrdup(head[k]);
	return rows;
}

/* Prints rows of cells in aligned columns (the last one free). */
static void print_table(char ***rows, size_t nrows, size_t ncols)
{
	size_t width[16] = {0};

	for (size_t r = 0; r < nrows; r++)
		for (size_t k = 0; k + 1 < ncols; k++)
			if (strlen(rows[r][k]) > width[k])
				width[k] = strlen(rows[r][k]);
	for (size_t r = 0; r < nrows; r++) {
		for (size_t k = 0; k < ncols; k++) {
			const char *cell = rows[r][k];
			if (k + 1 < ncols)
				printf("%-*s", (int)width[k], cell);
			else
				printf("%s", cell);
			if (k + 1 < ncols)
				printf("  ");
		}
		printf("\n");
	}
}

static void free_rows(char ***rows, size_t nrows, size_t ncols)
{
	for (size_t r = 0; r < nrows; r++) {
		for (size_t k = 0; k < ncols; k++)
			free(rows[r][k]);
		free(rows[r]);
	}
	free(rows);
}

/* --- commands -------------------------------------------------------------- */

static void no_args(const char *cmd, int argc)
{
	if (argc > 1)
		die_usage("%s takes no arguments", cmd);
}

/* The table cohortd rendered ({"ok":true,"table":"..."}), read without
 * building the answer's JSON: false (LINE untouched) for any other
 * answer, which the parser judges (an error, or a cut line). */
static bool print_rendered(char *line)
{
	size_t len = strlen(line), n;
	const char *v = jscan_member(line, len, "ok", &n);
	char *end;

	if (!v || n != 4 || memcmp(v, "true", 4) != 0 || !(v = jscan_member(line, len, "table", &n)))
		return false;
	/* cohortd writes {"ok":true,"table":"..."}: anything after the table
	 * (a cut line, say) goes through the parser, which says what is wrong */
	if (v + n != line + len - 1 || line[len - 1] != '}')
		return false;
	if (!(end = jstr_unescape(line, v, n))) {	/* decoded in place: line is spoilt */
		fprintf(stderr, "cohortctl: cohortd sent a table that is not a JSON string\n");
		exit(EXIT_FAILED);
	}
	fwrite(line, 1, (size_t)(end - line), stdout);
	return true;
}

static int run_status(struct ctl *c, int argc, char **argv)
{
	json_t *req = json_pack("{s:s}", "cmd", "status");
	char *raw;

	if (argc > 1) {
		json_t *names = json_array();
		for (int i = 1; i < argc; i++)
			json_array_append_new(names, json_string(argv[i]));
		json_object_set_new(req, "services", names);
	}
	if (c->json) {
		json_decref(call(c, req, &raw));
		printf("%s\n", raw);
		free(raw);
		return EXIT_OK;
	}
	/* cohortd renders the human table (ctl_status.c, its one renderer: the
	 * two ship together); the JSON of 500 services took longer to parse
	 * here than all the rest of the command. */
	json_object_update_new(req, json_pack("{s:s,s:b}", "format", "table", "color", c->color));
	connect_daemon(c);
	send_request(c, req);
	char *line = read_line(c);
	if (line && print_rendered(line)) {
		free(line);
		return EXIT_OK;
	}
	json_decref(parse_answer(c, line, NULL, false));	/* exits on an error */
	fprintf(stderr, "cohortctl: cohortd answered status without its table\n");
	return EXIT_FAILED;
}

/* --wait is the default, accepted so that a script can say so. */
static const struct option change_opts[] = {
	{"wait", no_argument, NULL, 'w'},
	{"no-wait", no_argument, NULL, 'n'},
	{"timeout", required_argument, NULL, 't'},
	{0},
};

static int run_change(struct ctl *c, int argc, char **argv)
{
	bool wait = true;
	int64_t timeout = 0;
	const char *why;
	int o;

	optind = 1;
	while ((o = getopt_long(argc, argv, "+", change_opts, NULL)) != -1) {
		if (o == 'n' || o == 'w')
			wait = o == 'w';
		else if (o == 't' && parse_duration_ms(optarg, &timeout, &why) < 0)
			die_usage("--timeout: expected %s", why);
		else if (o != 't')
			die_usage("%s: unknown option", argv[0]);
	}
	if (optind >= argc)
		die_usage("%s needs at least one target (a name, @PHASE or all)", argv[0]);
	json_t *targets = json_array();
	for (int i = optind; i < argc; i++)
		json_array_append_new(targets, json_string(argv[i]));
	json_t *req = json_pack("{s:s,s:o,s:b}", "cmd", argv[0], "targets", targets, "wait", wait);
	if (timeout > 0)
		json_object_set_new(req, "timeout_ms", json_integer(timeout));
	connect_daemon(c);
	send_request(c, req);
	char *raw;
	json_t *resp = read_answer(c, &raw, true);
	bool ok = json_is_true(json_object_get(resp, "ok"));
	size_t nfailed = json_array_size(json_object_get(resp, "failed"));
	if (c->json) {
		printf("%s\n", raw);
	} else {
		size_t i;
		json_t *s;
		json_array_foreach(json_object_get(resp, "services"), i, s) {
			const char *state = str_of(s, "state");
			printf("%s: %s%s%s%s%s\n", str_of(s, "name"), c->color ? state_color(state) : "", state,
			       c->color && *state_color(state) ? "\033[0m" : "",
			       *str_of(s, "reason") ? " - " : "", str_of(s, "reason"));
		}
		if (!ok)
			fprintf(stderr, "cohortctl: %s\n", str_of(resp, "error"));
	}
	free(raw);
	json_decref(resp);
	return ok && nfailed == 0 ? EXIT_OK : EXIT_FAILED;
}

static int run_signal(struct ctl *c, int argc, char **argv)
{
	if (argc != 3)
		die_usage("usage: cohortctl signal SIGNAL NAME");
	char *raw;
	json_t *resp = call(c, json_pack("{s:s,s:s,s:s}", "cmd", "signal", "signal", argv[1], "service",
					 argv[2]), &raw);
	if (c->json)
		printf("%s\n", raw);
	else
		printf("sent SIG%s to %s (process group %lld)\n", str_of(resp, "signal"), argv[2],
		       json_integer_value(json_object_get(resp, "pid")));
	free(raw);
	json_decref(resp);
	return EXIT_OK;
}

static void print_names(const char *label, json_t *list)
{
	size_t i;
	json_t *v;

	if (!json_array_size(list))
		return;
	printf("%s:", label);
	json_array_foreach(list, i, v)
		printf(" %s", json_string_value(v));
	printf("\n");
}

enum changes { CHANGES_RESTARTED, CHANGES_UPDATED, CHANGES_OTHER };

static bool listed(json_t *list, const char *name)
{
	size_t i;
	json_t *v;

	json_array_foreach(list, i, v)
		if (strcmp(json_string_value(v), name) == 0)
			return true;
	return false;
}

/* "LABEL: NAME (key, key) NAME (key)": the changed services of one kind
 * (restarted, updated in place, or neither: not running now). */
static void print_changes(json_t *resp, const char *label, enum changes which)
{
	json_t *restarted = json_object_get(resp, "restarted");
	json_t *updated = json_object_get(resp, "updated");
	json_t *keys = json_object_get(resp, "keys");
	bool any = false;
	size_t i, k;
	json_t *v, *key;

	json_array_foreach(json_object_get(resp, "changed"), i, v) {
		const char *name = json_string_value(v);
		enum changes is = listed(restarted, name) ? CHANGES_RESTARTED
				  : listed(updated, name) ? CHANGES_UPDATED : CHANGES_OTHER;
		if (is != which)
			continue;
		if (!any)
			printf("%s:", label);
		printf(" %s (", name);
		json_array_foreach(json_object_get(keys, name), k, key)
			printf("%s%s", k ? ", " : "", json_string_value(key));
		printf(")");
		any = true;
	}
	if (any)
		printf("\n");
}

static int run_reload(struct ctl *c, int argc, char **argv)
{
	no_args(argv[0], argc);
	connect_daemon(c);
	send_request(c, json_pack("{s:s}", "cmd", "reload"));
	char *raw;
	json_t *resp = read_answer(c, &raw, true);
	bool ok = json_is_true(json_object_get(resp, "ok"));
	if (c->json) {
		printf("%s\n", raw);
	} else if (ok) {
		print_names("added", json_object_get(resp, "added"));
		print_names("removed", json_object_get(resp, "removed"));
		print_changes(resp, "restarted", CHANGES_RESTARTED);
		print_changes(resp, "updated", CHANGES_UPDATED);
		print_changes(resp, "changed", CHANGES_OTHER);
		print_names("applied", json_object_get(resp, "applied"));
		print_names("takes effect when cohortd restarts", json_object_get(resp, "needs_restart"));
		if (!json_array_size(json_object_get(resp, "added")) &&
		    !json_array_size(json_object_get(resp, "removed")) &&
		    !json_array_size(json_object_get(resp, "changed")) &&
		    !json_array_size(json_object_get(resp, "applied")) &&
		    !json_array_size(json_object_get(resp, "needs_restart")))
			printf("reloaded: nothing changed\n");
	} else {
		size_t i;
		json_t *v;
		fprintf(stderr, "cohortctl: %s\n", str_of(resp, "error"));
		json_array_foreach(json_object_get(resp, "errors"), i, v)
			fprintf(stderr, "%s\n", json_string_value(v));
	}
	free(raw);
	json_decref(resp);
	return ok ? EXIT_OK : EXIT_FAILED;
}

static int run_shutdown(struct ctl *c, int argc, char **argv)
{
	no_args(argv[0], argc);
	char *raw;
	json_t *resp = call(c, json_pack("{s:s}", "cmd", "shutdown"), &raw);
	if (c->json)
		printf("%s\n", raw);
	else
		printf("cohortd is shutting down\n");
	free(raw);
	json_decref(resp);
	return EXIT_OK;
}

static int run_plan(struct ctl *c, int argc, char **argv)
{
	no_args(argv[0], argc);
	char *raw;
	json_t *resp = call(c, json_pack("{s:s}", "cmd", "plan"), &raw);
	if (c->json) {
		printf("%s\n", raw);
	} else {
		size_t i, j;
		json_t *phase, *name;
		json_array_foreach(json_object_get(resp, "phases"), i, phase) {
			if (!json_array_size(phase))
				continue;
			printf("phase %zu:", i + 1);
			json_array_foreach(phase, j, name)
				printf(" %s", json_string_value(name));
			printf("\n");
		}
	}
	free(raw);
	json_decref(resp);
	return EXIT_OK;
}

static const char log_shortopts[] = "+n:f";

/* One log line; with several services, the service's name after the time
 * stamp (before the line when it has none), as journalctl puts the unit. */
static void print_log_line(const char *line, const char *service)
{
	size_t n = strlen(line);

	if (!service)
		printf("%s\n", line);
	else if (n > 24 && line[10] == 'T' && line[23] == 'Z' && line[24] == ' ')
		printf("%.25s%s: %s\n", line, service, line + 25);
	else
		printf("%s: %s\n", service, line);
}

static int run_log(struct ctl *c, int argc, char **argv)
{
	static const char usage[] = "usage: cohortctl log [-n N] [-f] NAME...";
	long long lines = 50;
	bool follow = false;
	uint64_t v;
	const char *why;
	int o;

	optind = 1;
	while ((o = getopt(argc, argv, log_shortopts)) != -1) {
		if (o == 'n') {
			if (parse_uint(optarg, 100000, &v, &why) < 0)
				die_usage("-n: expected a number of lines from 0 to 100000");
			lines = (long long)v;
		} else if (o == 'f') {
			follow = true;
		} else {
			die_usage("%s", usage);
		}
	}
	if (optind >= argc)
		die_usage("%s", usage);
	bool several = argc - optind > 1;
	json_t *req = json_pack("{s:s,s:I,s:b}", "cmd", "log", "lines", (json_int_t)lines, "follow", follow);
	if (several) {
		json_t *names = json_array();
		for (int i = optind; i < argc; i++)
			json_array_append_new(names, json_string(argv[i]));
		json_object_set_new(req, "services", names);
	} else {
		json_object_set_new(req, "service", json_string(argv[optind]));
	}
	connect_daemon(c);
	send_request(c, req);
	char *raw;
	json_t *resp = read_answer(c, &raw, false);
	json_t *whose = json_object_get(resp, "services"), *l;
	size_t i;
	if (c->json)
		printf("%s\n", raw);
	else
		json_array_foreach(json_object_get(resp, "lines"), i, l)
			print_log_line(json_string_value(l), several ? json_string_value(json_array_get(whose, i))
								     : NULL);
	free(raw);
	json_decref(resp);
	fflush(stdout);
	while (follow) {
		char *line = read_line(c);
		if (!line)
			break;
		json_t *o2 = json_loads(line, 0, NULL);
		if (c->json)
			printf("%s\n", line);
		else if (json_string_value(json_object_get(o2, "line")))
			print_log_line(json_string_value(json_object_get(o2, "line")),
				       several ? str_of(o2, "service") : NULL);
		else if (json_string_value(json_object_get(o2, "error")))
			fprintf(stderr, "cohortctl: %s%s%s\n", str_of(o2, "service"), *str_of(o2, "service") ? ": " : "",
				json_string_value(json_object_get(o2, "error")));
		fflush(stdout);
		json_decref(o2);
		free(line);
	}
	return EXIT_OK;
}

static int run_events(struct ctl *c, int argc, char **argv)
{
	no_args(argv[0], argc);
	connect_daemon(c);
	send_request(c, json_pack("{s:s}", "cmd", "events"));
	json_decref(read_answer(c, NULL, false));
	for (;;) {
		char *line = read_line(c);
		if (!line)
			break;
		json_t *e = json_loads(line, 0, NULL);
		if (c->json || !e) {
			printf("%s\n", line);
		} else if (json_object_get(e, "error")) {
			fprintf(stderr, "cohortctl: %s\n", str_of(e, "error"));
		} else {
			char ts[40];
			format_wall_ms(json_integer_value(json_object_get(e, "ts_ms")), ts, sizeof(ts));
			printf("%s %s: %s -> %s%s%s\n", ts, str_of(e, "service"), str_of(e, "from"),
			       str_of(e, "to"), *str_of(e, "reason") ? ": " : "", str_of(e, "reason"));
		}
		fflush(stdout);
		json_decref(e);
		free(line);
	}
	return EXIT_OK;
}

static int run_locks(struct ctl *c, int argc, char **argv)
{
	no_args(argv[0], argc);
	char *raw;
	json_t *resp = call(c, json_pack("{s:s}", "cmd", "locks"), &raw);
	if (c->json) {
		printf("%s\n", raw);
	} else {
		static const char *const head[] = {"NAME", "MODE", "HOLDER", "TOKEN", "EXPIRES", "WAITERS"};
		int64_t now = json_integer_value(json_object_get(resp, "now_ms"));
		size_t n = 1, cap = 16, i, k;
		char ***rows = table_new(head, 6, cap);
		json_t *l, *h;
		json_array_foreach(json_object_get(resp, "locks"), i, l) {
			json_t *holders = json_object_get(l, "holders");
			size_t nw = json_array_size(json_object_get(l, "waiters"));
			size_t nh = json_array_size(holders);
			for (k = 0; k < (nh ? nh : 1); k++) {
				if (n + 1 >= cap)
					rows = xrealloc(rows, (cap *= 2) * sizeof(char **));
				char **row = rows[n++] = xcalloc(6, sizeof(char *));
				h = json_array_get(holders, k);
				char left[32] = "-";
				if (h)
					format_duration_ms(json_integer_value(json_object_get(h, "expires_ms")) - now,
							   left, sizeof(left));
				row[0] = xstrdup(str_of(l, "name"));
				row[1] = xstrdup(str_of(l, "mode"));
				row[2] = xstrdup(h ? str_of(h, "owner") : "-");
				row[3] = h ? xasprintf("%lld", json_integer_value(json_object_get(h, "token")))
					   : xstrdup("-");
				row[4] = !h ? xstrdup("-") : json_is_true(json_object_get(h, "stopping"))
					 ? xstrdup("stopping") : xasprintf("in %s", left);
				row[5] = xasprintf("%zu", nw);
			}
		}
		if (n > 1)
			print_table(rows, n, 6);
		else
			printf("no locks are held or awaited\n");
		free_rows(rows, n, 6);
	}
	free(raw);
	json_decref(resp);
	return EXIT_OK;
}


/* --- the bus: pub, sub, get, bus ------------------------------------------------- */

/* $COHORT_BUS, else bus.sock beside the control socket. */
static const char *bus_address(struct ctl *c)
{
	static char addr[4200];
	const char *env = getenv("COHORT_BUS");

	if (env && *env) {
		if (strncmp(env, "unix:", 5) != 0 && strncmp(env, "ws://", 5) != 0)
			die_usage("COHORT_BUS=%s: expected unix:PATH or ws://HOST:PORT/", env);
		return env;
	}
	char *dir = path_dirname(c->socket);
	snprintf(addr, sizeof(addr), "unix:%s/bus.sock", dir);
	free(dir);
	return addr;
}

/* The bus refused a request: on standard error, or with --json as an
 * answer on standard output, like the control commands' errors. */
static void bus_failed(const struct ctl *c, const char *what, const char *arg, const char *why)
{
	if (!c->json) {
		fprintf(stderr, "cohortctl: %s%s%s: %s\n", what, arg ? " " : "", arg ? arg : "", why);
		return;
	}
	json_t *o = json_pack("{s:b,s:s}", "ok", 0, "error", why);
	char *text = json_dumps(o, JSON_COMPACT);
	printf("%s\n", text);
	free(text);
	json_decref(o);
}

/* libcohort stopped for good: the command says why (cohort_error), once. */
static void bus_closed(cohort_t *b, int code, const char *reason, void *arg)
{
	(void)b;
	(void)code;
	(void)reason;
	(void)arg;
}

static cohort_t *bus_connect(struct ctl *c, const char *session, bool clean, bool reconnect)
{
	struct cohort_options o = {.bus = bus_address(c), .session = session, .clean = clean,
				   .no_reconnect = !reconnect};
	cohort_t *b = cohort_new(&o);
	cohort_on_closed(b, bus_closed, NULL);

	if (cohort_connect(b) < 0) {
		fprintf(stderr, "cohortctl: %s\n", cohort_error(b));
		bool refused = strstr(cohort_error(b), "refused hello") != NULL;
		cohort_free(b);
		exit(refused ? EXIT_FAILED : EXIT_UNREACHABLE);
	}
	return b;
}

/*
 * DATA as JSON text: as given when it is JSON (subscribers get it as it
 * was written), a JSON string when it is plain text; NULL, with why, when
 * it starts as an object, array or string would but is not one: a typo
 * must not go out as a string.
 */
static char *as_json(const char *data, char *why, size_t whylen)
{
	json_error_t err;
	json_t *j;

	/* as cohortd judges data: numbers of any size are JSON */
	if (jscan_check(data, strlen(data), JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &err) == 0)
		return xstrdup(data);
	const char *p = data + strspn(data, " \t\r\n");
	if (*p == '{' || *p == '[' || *p == '"') {
		snprintf(why, whylen, "DATA is not JSON: %s (at column %d); quote it as a JSON string "
			 "to send text", err.text, err.column);
		return NULL;
	}
	j = json_string(data);
	if (!j) {
		snprintf(why, whylen, "DATA is neither JSON nor UTF-8 text");
		return NULL;
	}
	char *text = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
	json_decref(j);
	return text;
}

static const struct option pub_opts[] = {
	{"qos", required_argument, NULL, 'q'},
	{"retain", no_argument, NULL, 'r'},
	{0},
};

static int run_pub(struct ctl *c, int argc, char **argv)
{
	int qos = 0, o;
	bool retain = false;

	optind = 1;
	while ((o = getopt_long(argc, argv, "+", pub_opts, NULL)) != -1) {
		if (o == 'q' && (strcmp(optarg, "0") == 0 || strcmp(optarg, "1") == 0))
			qos = atoi(optarg);
		else if (o == 'r')
			retain = true;
		else
			die_usage("usage: cohortctl pub [--qos 0|1] [--retain] TOPIC DATA");
	}
	if (argc - optind != 2)
		die_usage("usage: cohortctl pub [--qos 0|1] [--retain] TOPIC DATA");
	char why[300];
	char *data = as_json(argv[optind + 1], why, sizeof(why));
	if (!data)
		die_usage("pub: %s", why);
	cohort_t *b = bus_connect(c, NULL, false, false);
	uint64_t seq = 0;
	int rc = cohort_publish(b, argv[optind], data, qos, retain, &seq);
	if (rc == 0 && qos == 0)	/* no answer of its own: a ping says if it was refused */
		rc = cohort_ping(b);
	if (rc < 0)
		bus_failed(c, "pub", argv[optind], cohort_error(b));
	else if (c->json)
		printf("{\"ok\":true,\"seq\":%llu}\n", (unsigned long long)seq);
	else if (qos == 1)
		printf("stored as seq %llu\n", (unsigned long long)seq);
	free(data);
	cohort_free(b);
	return rc < 0 ? EXIT_FAILED : EXIT_OK;
}

struct sub_state {
	struct ctl *c;
	long left;	/* messages still to print, -1: no end */
	bool printed;
	uint64_t last_seq;	/* of the last message printed */
};

static void print_msg(cohort_t *b, const struct cohort_msg *m, void *arg)
{
	struct sub_state *st = arg;

	if (st->printed && m->seq == st->last_seq)
		return;	/* the same message again, through a second matching pattern */
	if (st->left == 0) {	/* -n COUNT is done: not printed, so not acked */
		cohort_keep(b);
		return;
	}
	if (st->c->json)
		printf("{\"topic\":\"%s\",\"data\":%.*s,\"seq\":%llu,\"qos\":%d,\"ts_ms\":%lld,"
		       "\"retained\":%s,\"redelivered\":%s}\n", m->topic, (int)m->data_len, m->data,
		       (unsigned long long)m->seq, m->qos, (long long)m->ts_ms, m->retained ? "true" : "false",
		       m->redelivered ? "true" : "false");
	else
		printf("%s %.*s%s%s\n", m->topic, (int)m->data_len, m->data, m->retained ? " (retained)" : "",
		       m->redelivered ? " (redelivered)" : "");
	fflush(stdout);
	st->printed = true;
	st->last_seq = m->seq;
	if (st->left > 0)
		st->left--;
}

static const char sub_shortopts[] = "+n:";
static const struct option sub_opts[] = {
	{"qos", required_argument, NULL, 'q'},
	{"durable", required_argument, NULL, 'd'},
	{"clean", no_argument, NULL, 'C'},
	{0},
};

static int run_sub(struct ctl *c, int argc, char **argv)
{
	const char *usage = "usage: cohortctl sub [--qos 0|1] [--durable SESSION [--clean]] [-n COUNT] PATTERN...";
	bool clean = false;
	struct sub_state st = {.c = c, .left = -1};
	const char *session = NULL, *why;
	uint64_t n;
	int qos = 0, o;

	optind = 1;
	while ((o = getopt_long(argc, argv, sub_shortopts, sub_opts, NULL)) != -1) {
		if (o == 'q' && (strcmp(optarg, "0") == 0 || strcmp(optarg, "1") == 0))
			qos = atoi(optarg);
		else if (o == 'd')
			session = optarg;
		else if (o == 'C')
			clean = true;
		else if (o == 'n' && parse_uint(optarg, 1u << 30, &n, &why) == 0)
			st.left = (long)n;
		else
			die_usage("%s", usage);
	}
	if (optind >= argc || (clean && !session))
		die_usage("%s", usage);
	cohort_t *b = bus_connect(c, session, clean, true);
	for (int i = optind; i < argc; i++) {
		if (cohort_subscribe(b, argv[i], qos, print_msg, &st) < 0) {
			bus_failed(c, "sub", argv[i], cohort_error(b));
			cohort_free(b);
			return EXIT_FAILED;
		}
	}
	while (st.left != 0)
		if (cohort_step(b, 1000) < 0) {	/* for good: say why */
			bus_failed(c, "sub", NULL, cohort_error(b));
			cohort_free(b);
			return EXIT_FAILED;
		}
	cohort_flush(b, 2000);	/* the last acks */
	cohort_free(b);
	return EXIT_OK;
}

static int run_get(struct ctl *c, int argc, char **argv)
{
	if (argc != 2)
		die_usage("usage: cohortctl get PATTERN");
	cohort_t *b = bus_connect(c, NULL, false, false);
	char *text = NULL;
	if (cohort_get(b, argv[1], &text) < 0) {
		bus_failed(c, "get", argv[1], cohort_error(b));
		cohort_free(b);
		return EXIT_FAILED;
	}
	if (c->json) {
		printf("%s\n", text);
	} else {
		/* each value as it was published: taken from the text, not parsed
		 * and printed again (1.50 stays 1.50, a 30-digit number whole) */
		size_t len = strlen(text), at = 0, n, tn, dn;
		const char *m;
		while ((m = jscan_item(text, len, &at, &n))) {
			const char *t = jscan_member(m, n, "topic", &tn), *d = jscan_member(m, n, "data", &dn);
			if (t && d && tn >= 2)	/* topics need no unescaping: [A-Za-z0-9_.-] */
				printf("%.*s %.*s\n", (int)tn - 2, t + 1, (int)dn, d);
		}
	}
	free(text);
	cohort_free(b);
	return EXIT_OK;
}

static int run_bus(struct ctl *c, int argc, char **argv)
{
	no_args(argv[0], argc);
	char *raw;
	json_t *resp = call(c, json_pack("{s:s,s:[]}", "cmd", "status", "services"), &raw);
	json_t *bus = json_object_get(resp, "bus");
	if (c->json) {
		char *t = json_dumps(bus, JSON_COMPACT);
		printf("%s\n", t);
		free(t);
	} else {
		static const char *const head[] = {"CONN", "IDENTITY", "SESSION", "VIA", "SUBS", "QUEUED",
						   "INFLIGHT", "DROPPED"};
		json_t *conns = json_object_get(bus, "conns"), *x;
		size_t n = json_array_size(conns), i;
		char ***rows = table_new(head, 8, n + 1);
		json_array_foreach(conns, i, x) {
			char **r = rows[i + 1] = xcalloc(8, sizeof(char *));
			r[0] = xasprintf("%lld", json_integer_value(json_object_get(x, "id")));
			r[1] = xstrdup(str_of(x, "identity"));
			r[2] = xstrdup(*str_of(x, "session") ? str_of(x, "session") : "-");
			r[3] = xstrdup(str_of(x, "transport"));
			r[4] = xasprintf("%lld", json_integer_value(json_object_get(x, "subscriptions")));
			r[5] = xasprintf("%lld", json_integer_value(json_object_get(x, "queued")));
			r[6] = xasprintf("%lld", json_integer_value(json_object_get(x, "inflight")));
			r[7] = xasprintf("%lld", json_integer_value(json_object_get(x, "dropped_qos0")));
		}
		if (n)
			print_table(rows, n + 1, 8);
		free_rows(rows, n + 1, 8);
		json_array_foreach(json_object_get(bus, "sessions"), i, x)
			if (!json_is_true(json_object_get(x, "connected")))
				printf("away: session %s, %lld queued, %lld dropped\n", str_of(x, "session"),
				       json_integer_value(json_object_get(x, "queued")),
				       json_integer_value(json_object_get(x, "dropped")));
		printf("%lld connection%s, %lld subscription%s, %lld retained, %lld published, "
		       "%lld qos-0 dropped, %lld queue drops, %lld dead letters, journal %lld bytes\n",
		       json_integer_value(json_object_get(bus, "connections")),
		       json_integer_value(json_object_get(bus, "connections")) == 1 ? "" : "s",
		       json_integer_value(json_object_get(bus, "subscriptions")),
		       json_integer_value(json_object_get(bus, "subscriptions")) == 1 ? "" : "s",
		       json_integer_value(json_object_get(bus, "retained")),
		       json_integer_value(json_object_get(bus, "published")),
		       json_integer_value(json_object_get(bus, "dropped_qos0")),
		       json_integer_value(json_object_get(bus, "dropped_queue")),
		       json_integer_value(json_object_get(bus, "dead_lettered")),
		       json_integer_value(json_object_get(bus, "journal_bytes")));
	}
	free(raw);
	json_decref(resp);
	return EXIT_OK;
}

/* --- cohortctl lock NAME -- CMD ---------------------------------------------- */

/*
 * CMD runs in a process group of its own, which the lease names: when the
 * lease is lost without us (we were killed, the TTL ran out), cohortd stops
 * that whole group before the next holder starts.  The group must exist
 * when the lease is asked for, so CMD's process is forked first and waits
 * on a pipe: it gets the token there once the lease is granted, or EOF
 * (it exits) if it is not.
 *
 * On a terminal, a group of its own would leave CMD in the background:
 * whenever we are in the terminal's foreground, we hand it to CMD's group,
 * and take it back when CMD ends; a stop for the terminal (Ctrl-Z, or CMD
 * reading it from the background) stops us too, as a shell expects of its
 * job (the way sudo relays it), and once continued in the foreground
 * (fg), CMD gets the terminal.
 */
struct job {
	pid_t pid;	/* CMD, and its process group */
	int go;		/* writes the token to it; -1 once written */
	int tty;	/* our controlling terminal, or -1 */
	bool had_tty;	/* CMD ended with the terminal's foreground */
};

static int sig_pipe[2] = {-1, -1};
static volatile sig_atomic_t forward_sig;

/*
 * TERM, INT and HUP sent to cohortctl go on to the command's group; the
 * terminal's Ctrl-C too, as it reaches us only when our group, not the
 * command's, is the terminal's foreground.  A hangup the kernel sends
 * reaches only the session leader, so it goes on as well.  CONT only
 * wakes the loop: we may be in the foreground again (fg).
 */
static void on_signal(int sig, siginfo_t *si, void *ctx)
{
	int saved = errno;
	char b = (char)sig;

	(void)si;
	(void)ctx;
	if (sig != SIGCHLD && sig != SIGCONT)
		forward_sig = sig;
	(void)!write(sig_pipe[1], &b, 1);
	errno = saved;
}

/* One request and its answer on the open connection. */
static json_t *roundtrip(struct ctl *c, json_t *req)
{
	send_request(c, req);
	char *line = read_line(c);
	if (!line)
		return NULL;
	json_t *resp = json_loads(line, 0, NULL);
	free(line);
	return resp;
}

static int child_status(int st)
{
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Makes pgrp the terminal's foreground group.  From the background that
 * would stop us with TTOU: it is blocked meanwhile. */
static void tty_give(int tty, pid_t pgrp)
{
	sigset_t ttou, old;

	sigemptyset(&ttou);
	sigaddset(&ttou, SIGTTOU);
	sigprocmask(SIG_BLOCK, &ttou, &old);
	(void)tcsetpgrp(tty, pgrp);
	sigprocmask(SIG_SETMASK, &old, NULL);
}

/* If the terminal's foreground is FROM's, it becomes TO's. */
static void tty_pass(int tty, pid_t from, pid_t to)
{
	if (tty >= 0 && tcgetpgrp(tty) == from)
		tty_give(tty, to);
}

/* CMD's process, waiting in its own group for the token. */
static int job_fork(struct job *job, char **cmd, const char *name)
{
	int go[2];

	*job = (struct job){.pid = -1, .go = -1, .tty = -1};
	if (pipe2(go, O_CLOEXEC) < 0)
		return -1;
	pid_t parent = getpid();
	pid_t child = fork();
	if (child < 0) {
		close(go[0]);
		close(go[1]);
		return -1;
	}
	if (child == 0) {
		char tok[32];
		size_t n = 0;
		ssize_t r;
		close(go[1]);
		setpgid(0, 0);
		signal(SIGPIPE, SIG_DFL);	/* ours is ignored: CMD's must not be */
		/* The lease is ours, not CMD's: it ends when we do (kill -9
		 * included), and then CMD gets TERM as on any lost lease. */
		if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != parent)
			_exit(1);
		while (n < sizeof(tok) - 1 && (r = read(go[0], tok + n, sizeof(tok) - 1 - n)) != 0)
			if (r > 0)
				n += (size_t)r;
			else if (errno != EINTR)
				_exit(1);
		if (n == 0)
			_exit(0);	/* no lease: CMD does not run */
		tok[n] = '\0';
		setenv("COHORT_LOCK_TOKEN", tok, 1);
		setenv("COHORT_LOCK_NAME", name, 1);
		execvp(cmd[0], cmd);
		fprintf(stderr, "cohortctl: %s: %s\n", cmd[0], strerror(errno));
		_exit(127);
	}
	setpgid(child, child);	/* as the child does: whichever runs first */
	close(go[0]);
	job->pid = child;
	job->go = go[1];
	job->tty = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
	return 0;
}

/* No lease: CMD's process goes without running CMD. */
static void job_abandon(struct job *job)
{
	close(job->go);
	while (waitpid(job->pid, NULL, 0) < 0 && errno == EINTR)
		;
	if (job->tty >= 0)
		close(job->tty);
}

/* The lease is granted: CMD runs, with the terminal if we have it. */
static void job_start(struct job *job, uint64_t token)
{
	struct sigaction sa = {.sa_sigaction = on_signal};
	int sigs[] = {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGCONT};
	char tok[32];

	if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
		perror("cohortctl: pipe");
		exit(EXIT_FAILED);
	}
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART | SA_SIGINFO;
	for (size_t i = 0; i < ARRAY_LEN(sigs); i++)
		sigaction(sigs[i], &sa, NULL);
	tty_pass(job->tty, getpgrp(), job->pid);
	int n = snprintf(tok, sizeof(tok), "%llu", (unsigned long long)token);
	(void)!write(job->go, tok, (size_t)n);
	close(job->go);
	job->go = -1;
	/* A look at it first thing: if it died while it waited, its SIGCHLD
	 * came before our handler did. */
	(void)!write(sig_pipe[1], "", 1);
}

/* CMD's leader ended: the terminal comes back to us. */
static void job_ended(struct job *job)
{
	if (job->tty >= 0) {
		job->had_tty = tcgetpgrp(job->tty) == job->pid;
		tty_pass(job->tty, job->pid, getpgrp());
		close(job->tty);
		job->tty = -1;
	}
}

/* CMD's status as ours, once the lock is released.  Ended by INT or QUIT
 * while it had the terminal (Ctrl-C, Ctrl-\), our group gets the signal
 * too, as it would have with CMD in it: a shell script that ran us stops,
 * as the user meant, rather than go on to its next command. */
static int job_status(const struct job *job, int st)
{
	int sig = WIFSIGNALED(st) ? WTERMSIG(st) : 0;

	if (job->had_tty && (sig == SIGINT || sig == SIGQUIT)) {
		signal(sig, SIG_DFL);
		killpg(getpgrp(), sig);
	}
	return child_status(st);
}

/* CMD stopped for the terminal (Ctrl-Z, or it read or wrote it from the
 * background): our group stops too, as it would have with CMD in it, so
 * that the shell sees its job stopped (a script that ran us included) and
 * takes the terminal; once continued, CMD is continued too. */
static void job_suspend(struct job *job, int sig)
{
	tty_pass(job->tty, job->pid, getpgrp());
	killpg(getpgrp(), sig);
	tty_pass(job->tty, getpgrp(), job->pid);
	killpg(job->pid, SIGCONT);
}

static int lost_lease(struct job *job, const char *name, const char *why)
{
	int st;

	fprintf(stderr, "cohortctl: lock %s lost (%s): stopping the command\n", name, why);
	/* What CMD started must not go on without the lock either: its whole
	 * group is stopped (cohortd does the same when it sees the loss). */
	killpg(job->pid, SIGTERM);
	killpg(job->pid, SIGCONT);
	while (waitpid(job->pid, &st, 0) < 0 && errno == EINTR)
		;
	job_ended(job);
	return EXIT_FAILED;
}

/* After a signal: forwards TERM/INT/HUP to the command's group, relays a
 * stop; its status if it ended. */
static bool command_ended(struct job *job, int *status)
{
	char b[64];

	while (read(sig_pipe[0], b, sizeof(b)) > 0)
		;
	tty_pass(job->tty, getpgrp(), job->pid);	/* continued in the foreground */
	if (forward_sig) {
		killpg(job->pid, forward_sig);
		forward_sig = 0;
	}
	if (waitpid(job->pid, status, WNOHANG | WUNTRACED) != job->pid)
		return false;
	if (WIFSTOPPED(*status)) {
		int sig = WSTOPSIG(*status);
		/* Without a terminal, whoever stopped it meant it alone. */
		if (job->tty >= 0 && (sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU))
			job_suspend(job, sig);
		return false;
	}
	job_ended(job);
	return true;
}

/* lock NAME -- CMD through the bus, with $COHORT_TOKEN, and CMD's group as
 * on the control socket; over TCP cohortd has no uid to check a group with,
 * and only we stop it. */
static int lock_over_bus(struct ctl *c, const char *name, int64_t ttl, int64_t wait, bool shared,
			 int64_t stop, char **cmd)
{
	cohort_t *b = bus_connect(c, NULL, false, false);
	struct job job;
	uint64_t token;
	int64_t exp;
	int st;

	if (job_fork(&job, cmd, name) < 0) {
		perror("cohortctl: starting the command");
		cohort_free(b);
		return EXIT_FAILED;
	}
	int pgid = strncmp(bus_address(c), "unix:", 5) == 0 ? job.pid : 0;
	if (cohort_lock_acquire_group(b, name, ttl, wait, shared, pgid, stop, &token, &exp) < 0) {
		char dur[32];
		format_duration_ms(wait, dur, sizeof(dur));
		if (strcmp(cohort_error(b), "timeout") == 0)
			fprintf(stderr, "cohortctl: lock %s not had within %s\n", name, dur);
		else
			fprintf(stderr, "cohortctl: lock %s: %s\n", name, cohort_error(b));
		job_abandon(&job);
		cohort_free(b);
		return EXIT_FAILED;
	}
	job_start(&job, token);
	int64_t every = ttl / 3, next = now_mono_ms() + every;
	for (;;) {
		struct pollfd p[2] = {{sig_pipe[0], POLLIN, 0}, {cohort_fd(b), POLLIN, 0}};
		int64_t left = next - now_mono_ms();
		poll(p, 2, left > 0 ? (int)left : 0);
		if ((p[0].revents & POLLIN) && command_ended(&job, &st)) {
			cohort_lock_release(b, name, token);
			cohort_free(b);
			return job_status(&job, st);
		}
		if ((p[1].revents & (POLLIN | POLLHUP | POLLERR)) && (cohort_step(b, 0) < 0 || !cohort_connected(b))) {
			cohort_free(b);
			return lost_lease(&job, name, "the bus connection ended");
		}
		if (now_mono_ms() >= next) {
			if (cohort_lock_renew(b, name, token, ttl, &exp) < 0) {
				char why[300];
				snprintf(why, sizeof(why), "renew refused: %s", cohort_error(b));
				cohort_free(b);
				return lost_lease(&job, name, why);
			}
			next = now_mono_ms() + every;
		}
	}
}

static const struct option lock_opts[] = {
	{"ttl", required_argument, NULL, 't'},
	{"wait", required_argument, NULL, 'w'},
	{"shared", no_argument, NULL, 's'},
	{"stop-timeout", required_argument, NULL, 'k'},
	{0},
};

static int run_lock(struct ctl *c, int argc, char **argv)
{
	static const char usage[] = "usage: cohortctl lock [--ttl DUR] [--wait DUR] [--shared] "
				    "[--stop-timeout DUR] NAME -- CMD [ARG...]";
	int64_t ttl = 30000, wait = 7 * 86400000LL, stop = LOCK_STOP_TIMEOUT_MS;
	bool shared = false;
	const char *why;
	int o;

	optind = 1;
	while ((o = getopt_long(argc, argv, "+", lock_opts, NULL)) != -1) {
		/* cohortd's bounds, checked here so that a bad value is a usage
		 * error (exit 2) like any other, before anything runs.  Under
		 * 100ms a lease would be renewed faster than a loaded machine
		 * answers. */
		if (o == 't' && parse_duration_ms(optarg, &ttl, &why) < 0)
			die_usage("--ttl: expected %s", why);
		else if (o == 't' && (ttl < 100 || ttl > LOCK_TTL_MAX_MS))
			die_usage("--ttl: expected a duration from 100ms to 1d, got %s", optarg);
		else if (o == 'w' && parse_duration_ms(optarg, &wait, &why) < 0)
			die_usage("--wait: expected %s", why);
		else if (o == 'w' && wait > LOCK_WAIT_MAX_MS)
			die_usage("--wait: expected a duration of at most 7d, got %s", optarg);
		else if (o == 'k' && parse_duration_ms(optarg, &stop, &why) < 0)
			die_usage("--stop-timeout: expected %s", why);
		else if (o == 'k' && stop > LOCK_STOP_TIMEOUT_MAX_MS)
			die_usage("--stop-timeout: expected a duration of at most 1h, got %s", optarg);
		else if (o == 's')
			shared = true;
		else if (o != 't' && o != 'w' && o != 'k')
			die_usage("%s", usage);
	}
	if (optind >= argc)
		die_usage("lock needs a NAME and a command: cohortctl lock NAME -- CMD [ARG...]");
	const char *name = argv[optind++];
	if (optind < argc && strcmp(argv[optind], "--") == 0)
		optind++;
	if (optind >= argc)
		die_usage("lock needs a command to run: cohortctl lock %s -- CMD [ARG...]", name);
	char **cmd = argv + optind;

	/* The control socket when we may use it, else the bus with our token
	 * (a service running as another user). */
	const char *bus_token = getenv("COHORT_TOKEN");
	if (try_connect(c) < 0) {
		if (errno == EACCES && bus_token && *bus_token)
			return lock_over_bus(c, name, ttl, wait, shared, stop, cmd);
		connect_daemon(c);
	}
	struct job job;
	if (job_fork(&job, cmd, name) < 0) {
		perror("cohortctl: starting the command");
		return EXIT_FAILED;
	}
	json_t *resp = roundtrip(c, json_pack("{s:s,s:s,s:I,s:I,s:s,s:i,s:I}", "cmd", "lock.acquire",
					      "name", name, "ttl_ms", (json_int_t)ttl, "wait_ms",
					      (json_int_t)wait, "mode", shared ? "shared" : "exclusive",
					      "pgid", (int)job.pid, "stop_timeout_ms", (json_int_t)stop));
	if (!resp || !json_is_true(json_object_get(resp, "ok")))
		job_abandon(&job);
	if (!resp) {
		fprintf(stderr, "cohortctl: cohortd at %s went away\n", c->socket);
		return EXIT_UNREACHABLE;
	}
	if (strstr(str_of(resp, "error"), "permission denied") && bus_token && *bus_token) {
		json_decref(resp);
		close(c->fd);
		c->fd = -1;
		return lock_over_bus(c, name, ttl, wait, shared, stop, cmd);
	}
	if (!json_is_true(json_object_get(resp, "ok"))) {
		const char *err = str_of(resp, "error");
		if (strcmp(err, "timeout") == 0) {
			char dur[32];
			format_duration_ms(wait, dur, sizeof(dur));
			fprintf(stderr, "cohortctl: lock %s not had within %s\n", name, dur);
		} else {
			fprintf(stderr, "cohortctl: lock %s: %s\n", name, err);
		}
		json_decref(resp);
		return EXIT_FAILED;
	}
	uint64_t token = (uint64_t)json_integer_value(json_object_get(resp, "token"));
	json_decref(resp);

	job_start(&job, token);
	/* Hold the lease while the command runs: renew every ttl/3. */
	int64_t every = ttl / 3, next = now_mono_ms() + every;
	for (;;) {
		struct pollfd p[2] = {{sig_pipe[0], POLLIN, 0}, {c->fd, POLLIN, 0}};
		int64_t left = next - now_mono_ms();
		int n = poll(p, 2, left > 0 ? (int)left : 0);
		if (n < 0 && errno != EINTR)
			return lost_lease(&job, name, strerror(errno));
		int st;
		if (p[0].revents & POLLIN) {
			if (command_ended(&job, &st)) {
				json_t *rel = roundtrip(c, json_pack("{s:s,s:s,s:I}", "cmd", "lock.release", "name",
								     name, "token", (json_int_t)token));
				json_decref(rel);
				return job_status(&job, st);
			}
		}
		if (p[1].revents & (POLLIN | POLLHUP | POLLERR))
			return lost_lease(&job, name, "cohortd closed the connection");
		if (now_mono_ms() >= next) {
			json_t *r = roundtrip(c, json_pack("{s:s,s:s,s:I,s:I}", "cmd", "lock.renew", "name", name,
							   "token", (json_int_t)token, "ttl_ms", (json_int_t)ttl));
			if (!r)
				return lost_lease(&job, name, "cohortd went away");
			if (!json_is_true(json_object_get(r, "ok"))) {
				char why2[200];
				snprintf(why2, sizeof(why2), "renew refused: %s", str_of(r, "error"));
				json_decref(r);
				return lost_lease(&job, name, why2);
			}
			json_decref(r);
			next = now_mono_ms() + every;
		}
	}
}

static int run_help(struct ctl *c, int argc, char **argv);

static const struct command commands[] = {
	{"status", "[NAME...]", "the services: state, pid, phase, uptime, restarts, reason", run_status,
	 NULL, NULL, false},
	{"start", "[--wait|--no-wait] [--timeout DUR] TARGET...", "start services (NAME, @PHASE or all); waits until running or failed", run_change,
	 "+", change_opts, false},
	{"stop", "[--wait|--no-wait] [--timeout DUR] TARGET...", "stop services, dependents first; waits until stopped", run_change,
	 "+", change_opts, false},
	{"restart", "[--wait|--no-wait] [--timeout DUR] TARGET...", "stop, then start again; waits until running or failed", run_change,
	 "+", change_opts, false},
	{"signal", "SIGNAL NAME", "send a signal (TERM, HUP, USR1, ...) to a service's process group", run_signal,
	 NULL, NULL, false},
	{"reload", "", "re-read the config: start added, stop removed, apply or restart changed services", run_reload,
	 NULL, NULL, false},
	{"shutdown", "", "stop the whole stack and cohortd", run_shutdown,
	 NULL, NULL, false},
	{"plan", "", "the start-up phases", run_plan,
	 NULL, NULL, false},
	{"log", "[-n N] [-f] NAME...", "the last N lines (default 50) of services' logs, interleaved by time; -f follows", run_log,
	 log_shortopts, NULL, false},
	{"events", "", "every state change as it happens", run_events,
	 NULL, NULL, false},
	{"locks", "", "every lock: name, mode, holder, token, expiry, waiters", run_locks,
	 NULL, NULL, false},
	{"pub", "[--qos 0|1] [--retain] TOPIC DATA", "publish DATA (JSON, or taken as a string) on the bus", run_pub,
	 "+", pub_opts, false},
	{"sub", "[--qos 0|1] [--durable SESSION [--clean]] [-n COUNT] PATTERN...", "print the bus messages matching the patterns", run_sub,
	 sub_shortopts, sub_opts, false},
	{"get", "PATTERN", "print the retained values matching PATTERN", run_get,
	 NULL, NULL, false},
	{"bus", "", "the bus: connections, sessions, queues, drops, journal size", run_bus,
	 NULL, NULL, false},
	{"lock", "[--ttl DUR] [--wait DUR] [--shared] [--stop-timeout DUR] NAME -- CMD [ARG...]", "run CMD holding the lock NAME (like flock(1)), renewing it; exits with CMD's status", run_lock,
	 "+", lock_opts, true},
	{"help", "[COMMAND]", "this help, or one command's", run_help,
	 NULL, NULL, false},
	{NULL, NULL, NULL, NULL, NULL, NULL, false},
};

static const struct command *find(const char *name)
{
	for (const struct command *cmd = commands; cmd->name; cmd++)
		if (strcmp(cmd->name, name) == 0)
			return cmd;
	return NULL;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: cohortctl [-s SOCKET] [-c CONFIG] [--json] COMMAND [ARGS...]\n\n"
		   "Drive cohortd through its control socket.\n\ncommands:\n");
	for (const struct command *cmd = commands; cmd->name; cmd++)
		fprintf(f, "  %-9s %s\n", cmd->name, cmd->summary);
	fprintf(f, "\noptions:\n"
		   "  -s, --socket SOCKET  the control socket (default: $COHORT_SOCKET, else the\n"
		   "                       run_dir of -c / $COHORT_CONFIG, else %s)\n"
		   "  -c, --config CONFIG  find the socket through this config file\n"
		   "      --json           print cohortd's JSON answers as they are\n"
		   "  -h, --help           this help; cohortctl COMMAND --help for one command\n"
		   "      --version        print the version\n\n"
		   "exit status: 0 success, 1 the operation failed, 2 usage error, 3 cohortd unreachable\n",
		DEFAULT_SOCKET);
}

static void command_help(const struct command *cmd)
{
	printf("usage: cohortctl %s%s%s\n\n%s\n", cmd->name, *cmd->usage ? " " : "", cmd->usage,
	       cmd->summary);
}

static int run_help(struct ctl *c, int argc, char **argv)
{
	(void)c;
	if (argc > 1) {
		const struct command *cmd = find(argv[1]);
		if (!cmd)
			die_usage("unknown command \"%s\"", argv[1]);
		command_help(cmd);
	} else {
		usage(stdout);
	}
	return EXIT_OK;
}

/* An operand: a word that is not an option, or "-", or a negative number
 * (pub's DATA may be one). */
static bool is_operand(const char *w)
{
	return w[0] != '-' || w[1] == '\0' || (w[1] >= '0' && w[1] <= '9') ||
	       (w[1] == '.' && w[2] >= '0' && w[2] <= '9');
}

/* Does option word W of CMD take the next word as its argument? */
static bool takes_next(const struct command *cmd, const char *w)
{
	if (w[1] == '-') {
		size_t n = strcspn(w + 2, "=");
		if (w[2 + n] == '=' || !cmd->longopts)
			return false;
		for (const struct option *o = cmd->longopts; o->name; o++)	/* getopt takes prefixes */
			if (strncmp(o->name, w + 2, n) == 0)
				return o->has_arg == required_argument;
		return false;
	}
	for (const char *p = w + 1; *p && cmd->shortopts; p++) {
		const char *def = *p == '+' || *p == ':' ? NULL : strchr(cmd->shortopts, *p);
		if (!def)
			return false;
		if (def[1] == ':')
			return p[1] == '\0';	/* -n5 holds its argument, -n takes the next word */
	}
	return false;
}

/*
 * Options may come after the operands, as in most CLIs (log NAME -n 5):
 * returns CMD's words with its options first, then "--" when CMD has
 * options (the runner's getopt stops there, so an operand such as -5 is
 * not read as one), then the operands, in their order; *nopts is the
 * number of option words.  "--" ends the options; so does, for lock, the
 * word after NAME: CMD and its arguments are never ours.
 */
static char **args_hoist(const struct command *cmd, int argc, char **argv, int *newargc, int *nopts)
{
	char **out = xcalloc((size_t)argc + 2, sizeof(char *));
	char **operands = xcalloc((size_t)argc + 1, sizeof(char *));
	int no = 0, nop = 0, i;

	for (i = 1; i < argc; i++) {
		const char *w = argv[i];
		if (strcmp(w, "--") == 0) {
			i++;
			break;
		}
		if (is_operand(w)) {
			if (cmd->then_command && nop == 1)
				break;
			operands[nop++] = argv[i];
			continue;
		}
		out[1 + no++] = argv[i];
		if (takes_next(cmd, w) && i + 1 < argc)
			out[1 + no++] = argv[++i];
	}
	while (i < argc)
		operands[nop++] = argv[i++];
	out[0] = argv[0];
	*nopts = no;
	int n = 1 + no;
	if (cmd->shortopts || cmd->longopts)
		out[n++] = (char *)"--";
	memcpy(out + n, operands, (size_t)nop * sizeof(char *));
	free(operands);
	*newargc = n + nop;
	return out;
}

/* -s, else $COHORT_SOCKET, else run_dir of -c / $COHORT_CONFIG, else the default. */
static const char *find_socket(const char *opt_socket, const char *opt_config)
{
	static char path[4096];
	const char *env = getenv("COHORT_SOCKET");
	const char *config = opt_config ? opt_config : getenv("COHORT_CONFIG");

	if (opt_socket)
		return opt_socket;
	if (env && *env)
		return env;
	if (config && *config) {
		struct diag d = {0};
		struct cohort_config *cfg = config_load(config, &d);
		if (!cfg) {
			fprintf(stderr, "cohortctl: cannot read %s:\n", config);
			diag_print(&d, stderr);
			exit(EXIT_USAGE);
		}
		snprintf(path, sizeof(path), "%s/control.sock", cfg->run_dir);
		config_free(cfg);
		diag_free(&d);
		return path;
	}
	/* cohortd's own default config may move run_dir; use it when it reads. */
	struct diag d = {0};
	struct cohort_config *cfg = access(DEFAULT_CONFIG, R_OK) == 0 ? config_load(DEFAULT_CONFIG, &d) : NULL;
	diag_free(&d);
	if (cfg) {
		snprintf(path, sizeof(path), "%s/control.sock", cfg->run_dir);
		config_free(cfg);
		return path;
	}
	return DEFAULT_SOCKET;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"socket", required_argument, NULL, 's'},
		{"config", required_argument, NULL, 'c'},
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{"commands", no_argument, NULL, 'L'},
		{0},
	};
	struct ctl c = {.fd = -1};
	const char *opt_socket = NULL, *opt_config = NULL;
	int o;

	signal(SIGPIPE, SIG_IGN);
	while ((o = getopt_long(argc, argv, "+s:c:h", opts, NULL)) != -1) {
		switch (o) {
		case 's':
			opt_socket = optarg;
			break;
		case 'c':
			opt_config = optarg;
			break;
		case 'j':
			c.json = true;
			break;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		case 'V':
			printf("cohortctl %s\n", PACKAGE_VERSION);
			return EXIT_OK;
		case 'L':	/* for shell completion */
			for (const struct command *cmd = commands; cmd->name; cmd++)
				printf("%s\n", cmd->name);
			return EXIT_OK;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	const struct command *cmd = find(argv[optind]);
	if (!cmd)
		die_usage("unknown command \"%s\"", argv[optind]);
	int cargc, nopts;
	char **cargv = args_hoist(cmd, argc - optind, argv + optind, &cargc, &nopts);
	for (int i = 1; i <= nopts; i++) {
		if (strcmp(cargv[i], "--help") == 0 || strcmp(cargv[i], "-h") == 0) {
			command_help(cmd);
			free(cargv);
			return EXIT_OK;
		}
		if (strcmp(cargv[i], "--json") == 0) {	/* after the command too, as people type it */
			c.json = true;
			memmove(cargv + i, cargv + i + 1, (size_t)(cargc - i) * sizeof(*cargv));
			cargc--;
			nopts--;
			i--;
		} else if (!cmd->shortopts && !cmd->longopts) {
			die_usage("%s: unknown option %s", cmd->name, cargv[i]);
		}
	}
	c.color = isatty(STDOUT_FILENO) && !getenv("NO_COLOR");
	if (cmd->run != run_help)
		c.socket = find_socket(opt_socket, opt_config);
	int rc = cmd->run(&c, cargc, cargv);
	free(cargv);
	if (c.fd >= 0)
		close(c.fd);
	sbuf_free(&c.in);
	return rc;
}
