/*
 * notify.h - the sd_notify socket: a unix datagram socket whose path every
 * service gets as $NOTIFY_SOCKET.  The sender's pid comes from the kernel
 * (SO_PASSCRED / SCM_CREDENTIALS), so a service cannot speak for another.
 */
#ifndef COHORT_NOTIFY_H
#define COHORT_NOTIFY_H

#include <ev.h>
#include <sys/types.h>

struct notify;
/* One datagram from pid, running as uid: "READY=1\nSTATUS=..." (NUL-terminated). */
typedef void (*notify_fn)(struct notify *n, pid_t pid, uid_t uid, char *msg);

struct notify {
	ev_io io;
	char *path;
	notify_fn on_msg;
};

/* Binds path with the given mode (0666: services may run as other users). */
int notify_open(struct notify *n, struct ev_loop *loop, const char *path, mode_t mode, notify_fn fn,
		char *err, size_t errlen);
void notify_close(struct notify *n, struct ev_loop *loop);
/* Drops the datagrams waiting: a new run of the service starts afresh. */
void notify_drain(struct notify *n);
/* The value of KEY= in a notify message, or NULL (points into msg, up to
 * the end of its line; *len receives the length). */
const char *notify_field(const char *msg, const char *key, size_t *len);

#endif
