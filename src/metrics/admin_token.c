/*
 * admin_token.c - the bus's admin token (admin_token_file): read at start,
 * or made then (32 random bytes in hex, mode 0600) when the file is absent.
 * A client that says hello with it is an admin, over TCP too: the dashboard
 * in a browser, which cannot present SO_PEERCRED.
 */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon.h"
#include "log.h"
#include "metrics.h"

#define TOKEN_BYTES 32

static int make_token(const char *path, char *hex)
{
	unsigned char raw[TOKEN_BYTES];

	if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
		return -1;
	for (size_t i = 0; i < sizeof(raw); i++)
		snprintf(hex + 2 * i, 3, "%02x", raw[i]);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	char line[2 * TOKEN_BYTES + 2];
	int n = snprintf(line, sizeof(line), "%s\n", hex);
	if (write(fd, line, (size_t)n) != n || fsync(fd) < 0) {
		int e = errno;
		close(fd);
		unlink(path);
		errno = e;
		return -1;
	}
	return close(fd);
}

/* The token in path: its first line, at least 16 characters. */
static int read_token(const char *path, char *out, size_t len, char *err, size_t errlen)
{
	char buf[512];
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	if (fstat(fd, &st) == 0 && (st.st_mode & 077))
		log_warn(NULL, "%s is readable by others than its owner (mode %04o): whoever reads it is an "
			 "admin of the bus; chmod 600 it", path, (unsigned)(st.st_mode & 07777));
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	if (strlen(buf) < 16 || strlen(buf) >= len || strcspn(buf, " \t") != strlen(buf)) {
		snprintf(err, errlen, "%s: the admin token is its first line, 16 to %zu characters without "
			 "spaces", path, len - 1);
		errno = EINVAL;
		return -2;
	}
	strcpy(out, buf);
	return 0;
}

int admin_token_load(struct cohortd *d, char *err, size_t errlen)
{
	const struct cohort_config *cfg = d->cfg;
	char *path = cfg->admin_token_file ? xstrdup(cfg->admin_token_file)
					   : xasprintf("%s/admin.token", cfg->state_dir);
	char token[128];
	int rc = read_token(path, token, sizeof(token), err, errlen);

	if (rc == -1 && errno == ENOENT) {
		rc = make_token(path, token);
		if (rc == 0)
			log_info(NULL, "made the admin token %s (cohortctl dashboard prints the URL with it)", path);
	}
	if (rc == -1)
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
	if (rc == 0) {
		d->metrics->admin_token = xstrdup(token);
		d->metrics->admin_token_path = path;
		bus_set_admin_token(&d->bus, token);
		return 0;
	}
	free(path);
	return -1;
}
