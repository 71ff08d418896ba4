/*
 * sdnotify.h - cohortd as a service of systemd (Type=notify): when
 * $NOTIFY_SOCKET is set, cohortd tells its own supervisor READY=1 once the
 * stack is up, STATUS= "N of M services running" as that changes,
 * STOPPING=1 when it shuts down, and WATCHDOG=1 every half $WATCHDOG_USEC
 * while its loop turns.  (The other direction, services telling cohortd,
 * is notify.c.)
 */
#ifndef COHORT_SDNOTIFY_H
#define COHORT_SDNOTIFY_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

struct cohortd;

struct sdnotify {
	int fd;			/* datagram socket to $NOTIFY_SOCKET, -1 when none */
	struct sockaddr_un addr;	/* where to send (a leading NUL: abstract) */
	socklen_t addrlen;
	ev_prepare prepare_w;	/* before each wait: anything new to say? */
	ev_timer watchdog_w;	/* WATCHDOG=1, every half $WATCHDOG_USEC */
	bool ready_sent, stopping_sent;
	bool status_dirty;	/* a service changed state since the last STATUS= */
	size_t last_running;	/* the counts of the last STATUS= */
	size_t last_total;
	bool warned;		/* a failed send is logged once */
};

/* Reads and unsets $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID (the
 * services must not inherit them); before the first service starts. */
void sdn_open(struct cohortd *d);
/* At exit, once every service has stopped. */
void sdn_close(struct cohortd *d);
/* A service changed state: STATUS= is sent again if its count changed. */
void sdn_state_changed(struct cohortd *d);
/* The message that sdn sends for a state (a pure function, unit-tested):
 * "READY=1\nSTATUS=2 of 3 services running" and the like. */
int sdn_format(char *buf, size_t len, bool ready, bool stopping, size_t running, size_t total);
/* "/run/x" or "@abstract" -> a sockaddr; -1 when it cannot be one. */
int sdn_parse_address(const char *s, struct sockaddr_un *sa, socklen_t *len);

#endif
