/*
 * sdnotify.c - see sdnotify.h.  The protocol is sd_notify(3)'s: one
 * datagram of NAME=VALUE lines to the unix socket named by $NOTIFY_SOCKET
 * (a path, or "@name" in the abstract namespace).  We speak without
 * libsystemd: the messages are a few lines, and cohortd must also run
 * where systemd is not installed.
 *
 * What to say is decided in a prepare watcher, once per loop iteration,
 * not in the places that change the state: the stack is only "up" after
 * stack.c has opened its last phase, which follows the state change that
 * made it so, and a burst of changes makes one STATUS=, not many.
 */
#include "autoconfig.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"
#include "log.h"

int sdn_parse_address(const char *s, struct sockaddr_un *sa, socklen_t *len)
{
	size_t n = s ? strlen(s) : 0;

	if (n < 2 || (s[0] != '/' && s[0] != '@') || n >= sizeof(sa->sun_path))
		return -1;
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	memcpy(sa->sun_path, s, n);
	if (s[0] == '@') {
		sa->sun_path[0] = '\0';	/* abstract: the length ends the name */
		*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
	} else {
		*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
	}
	return 0;
}

int sdn_format(char *buf, size_t len, bool ready, bool stopping, size_t running, size_t total)
{
	return snprintf(buf, len, "%s%sSTATUS=%s%zu of %zu service%s running", ready ? "READY=1\n" : "",
			stopping ? "STOPPING=1\n" : "", stopping ? "stopping: " : "", running, total,
			total == 1 ? "" : "s");
}

/* 0 sent; -1 not (logged once). */
static int sdn_send(struct sdnotify *sd, const char *msg)
{
	if (sd->fd < 0)
		return -1;
	if (sendto(sd->fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sd->addr, sd->addrlen) >= 0)
		return 0;
	if (!sd->warned) {
		sd->warned = true;
		log_warn(NULL, "cannot tell systemd (NOTIFY_SOCKET): %s; trying again at each change, "
			 "not warning again", strerror(errno));
	}
	return -1;
}

static void sdn_prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	struct cohortd *d = container_of(w, struct cohortd, sd.prepare_w);
	struct sdnotify *sd = &d->sd;
	(void)loop;
	(void)revents;

	bool ready = d->sup.stack_up && !sd->ready_sent;
	bool stopping = d->sup.shutting_down && !sd->stopping_sent;
	if (!ready && !stopping && !sd->status_dirty)
		return;
	sd->status_dirty = false;
	size_t running = d->sup.nstate[SVC_RUNNING], total = d->sup.plan->n;	/* no pass over them all */
	if (!ready && !stopping && running == sd->last_running && total == sd->last_total)
		return;
	char msg[160];
	sdn_format(msg, sizeof(msg), ready, stopping, running, total);
	if (sdn_send(sd, msg) < 0) {
		/* Its queue is full (a busy or stuck reader): said again at the
		 * next turn of the loop, not lost. */
		sd->status_dirty = true;
		return;
	}
	sd->ready_sent |= ready;
	sd->stopping_sent |= stopping;
	sd->last_running = running;
	sd->last_total = total;
}

/* A service changed state: the count in STATUS= may have changed
 * (daemon_supervise.c calls this from the supervise hook). */
void sdn_state_changed(struct cohortd *d)
{
	d->sd.status_dirty = true;
}

static void sdn_watchdog_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct sdnotify *sd = container_of(w, struct sdnotify, watchdog_w);
	(void)loop;
	(void)revents;

	(void)sdn_send(sd, "WATCHDOG=1");	/* a lost ping: the next one follows */
}

/* $WATCHDOG_USEC in µs, 0 when unset, invalid or meant for another pid. */
static double watchdog_seconds(void)
{
	const char *usec = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
	uint64_t v = 0;
	const char *why;

	if (!usec)
		return 0;
	if (parse_uint(usec, UINT64_MAX, &v, &why) < 0 || v == 0) {
		log_warn(NULL, "WATCHDOG_USEC=%s is not a number of microseconds: no watchdog pings", usec);
		return 0;
	}
	uint64_t p = 0;
	if (pid && (parse_uint(pid, UINT32_MAX, &p, &why) < 0 || p != (uint64_t)getpid()))
		return 0;	/* for the process that started us, not for us */
	return (double)v / 1e6;
}

void sdn_open(struct cohortd *d)
{
	struct sdnotify *sd = &d->sd;
	const char *path = getenv("NOTIFY_SOCKET");

	sd->fd = -1;
	ev_prepare_init(&sd->prepare_w, sdn_prepare_cb);
	ev_init(&sd->watchdog_w, sdn_watchdog_cb);
	if (!path)
		return;
	double wd = watchdog_seconds();
	if (sdn_parse_address(path, &sd->addr, &sd->addrlen) < 0) {
		log_warn(NULL, "NOTIFY_SOCKET=%s is not a socket path or @name: not telling systemd", path);
	} else if ((sd->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0) {
		log_warn(NULL, "cannot make a socket for NOTIFY_SOCKET: %s", strerror(errno));
	} else {
		log_debug(NULL, "telling systemd through %s%s", path, wd > 0 ? ", with watchdog pings" : "");
		ev_prepare_start(d->loop, &sd->prepare_w);
		ev_unref(d->loop);	/* it must not keep the loop running */
		if (wd > 0) {
			sdn_send(sd, "WATCHDOG=1");
			ev_timer_set(&sd->watchdog_w, wd / 2, wd / 2);
			ev_timer_start(d->loop, &sd->watchdog_w);
			ev_unref(d->loop);
		}
	}
	/* Ours alone: a service's own supervisor is cohortd (notify.c). */
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
}

void sdn_close(struct cohortd *d)
{
	struct sdnotify *sd = &d->sd;

	if (sd->fd < 0)
		return;
	ev_ref(d->loop);
	ev_prepare_stop(d->loop, &sd->prepare_w);
	if (ev_is_active(&sd->watchdog_w)) {
		ev_ref(d->loop);
		ev_timer_stop(d->loop, &sd->watchdog_w);
	}
	if (!sd->stopping_sent)
		sdn_send(sd, "STOPPING=1");
	close(sd->fd);
	sd->fd = -1;
}
