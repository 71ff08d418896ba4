/*
 * probe.h - readiness and health probes that never block the loop:
 * tcp: (a non-blocking connect), http:// (connect, GET, a 2xx status line)
 * and exec: (a child that must exit 0).  One attempt at a time; the
 * caller decides how often to try.
 */
#ifndef COHORT_PROBE_H
#define COHORT_PROBE_H

#include <ev.h>
#include <stdbool.h>
#include <sys/types.h>

#include "config.h"

struct probe;
/* ok or not, and why ("connected", "GET /health answered 503", ...). */
typedef void (*probe_done_fn)(struct probe *p, bool ok, const char *why);
/* Starts the exec: command for p; returns its pid or -1 with err. */
typedef pid_t (*probe_spawn_fn)(struct probe *p, char *err, size_t errlen);

struct probe {
	struct ev_loop *loop;
	void *owner;		/* the caller's, for its callbacks */
	const struct check *check;
	probe_done_fn done;
	probe_spawn_fn spawn;
	bool active;		/* an attempt is under way */
	ev_io io;
	ev_timer timeout;
	int fd;
	pid_t pid;		/* exec: child */
	bool sent;		/* http: request written */
	struct sbuf io_buf;	/* http: request out, then answer in */
	size_t io_off;
	void *addrs;		/* resolved address list (struct addrinfo *), kept */
};

void probe_init(struct probe *p, struct ev_loop *loop, probe_done_fn done, probe_spawn_fn spawn,
		void *owner);
/* Starts one attempt of check c that fails after timeout_ms. */
void probe_start(struct probe *p, const struct check *c, int64_t timeout_ms);
/* Stops an attempt without calling done; kills an exec child. */
void probe_cancel(struct probe *p);
/* Frees the cached addresses (call when the check may change). */
void probe_reset(struct probe *p);
/* An exec child of p ended with status (from waitpid); children of
 * cancelled attempts are ignored. */
void probe_child_exited(struct probe *p, pid_t pid, int status);

#endif
