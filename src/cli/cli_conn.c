/*
 * cli_conn.c - cohortctl's side of the control socket (see cli.h): one request
 * line, one answer line, and the helpers that print answers for humans.
 */
#include "autoconfig.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli.h"

void die_usage(const char *fmt, ...)
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
int try_connect(struct ctl *c)
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

void connect_daemon(struct ctl *c)
{
	if (try_connect(c) < 0) {
		int e = errno;
		fprintf(stderr, "cohortctl: cannot reach cohortd at %s: %s (%s)\n", c->socket, strerror(e),
			e == EACCES ? "cohortd's control_mode and control_group say who may use it"
				    : "is it running? try -s or -c");
		exit(EXIT_UNREACHABLE);
	}
}

void send_request(struct ctl *c, json_t *req)
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
char *read_line(struct ctl *c)
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
json_t *parse_answer(struct ctl *c, char *line, char **raw, bool keep_errors)
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

json_t *read_answer(struct ctl *c, char **raw, bool keep_errors)
{
	return parse_answer(c, read_line(c), raw, keep_errors);
}

json_t *call(struct ctl *c, json_t *req, char **raw)
{
	connect_daemon(c);
	send_request(c, req);
	return read_answer(c, raw, false);
}

/* One request and its answer on the open connection. */
json_t *roundtrip(struct ctl *c, json_t *req)
{
	send_request(c, req);
	char *line = read_line(c);
	if (!line)
		return NULL;
	json_t *resp = json_loads(line, 0, NULL);
	free(line);
	return resp;
}

/* --- output helpers -------------------------------------------------------- */

/* The colour of a state, as ctl_status.c paints the status table. */
const char *state_color(const char *state)
{
	if (!strcmp(state, "running") || !strcmp(state, "exited"))
		return "\033[32m";
	if (!strcmp(state, "failed"))
		return "\033[31m";
	if (!strcmp(state, "stopped"))
		return "";
	return "\033[33m";
}

const char *str_of(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s ? s : "";
}

/* Room for CAP rows of NCOLS cells, the first filled with HEAD. */
char ***table_new(const char *const *head, size_t ncols, size_t cap)
{
	char ***rows = xcalloc(cap, sizeof(char **));

	rows[0] = xcalloc(ncols, sizeof(char *));
	for (size_t k = 0; k < ncols; k++)
		rows[0][k] = xstrdup(head[k]);
	return rows;
}

/* Prints rows of cells in aligned columns (the last one free). */
void print_table(char ***rows, size_t nrows, size_t ncols)
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

void free_rows(char ***rows, size_t nrows, size_t ncols)
{
	for (size_t r = 0; r < nrows; r++) {
		for (size_t k = 0; k < ncols; k++)
			free(rows[r][k]);
		free(rows[r]);
	}
	free(rows);
}

/* --- for the runners ------------------------------------------------------- */

void no_args(const char *cmd, int argc)
{
	if (argc > 1)
		die_usage("%s takes no arguments", cmd);
}

