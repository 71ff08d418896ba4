/*
 * notify.c - see notify.h.
 */
#include "autoconfig.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "notify.h"
#include "util.h"

static void notify_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct notify *n = container_of(w, struct notify, io);
	(void)loop;
	(void)revents;

	/* Drain a bounded number per wake-up so a chatty sender cannot hold
	 * the loop. */
	for (int i = 0; i < 64; i++) {
		char buf[4097];
		union {
			struct cmsghdr h;
			char space[CMSG_SPACE(sizeof(struct ucred))];
		} ctl;
		struct iovec iov = {buf, sizeof(buf) - 1};
		struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1,
				    .msg_control = &ctl, .msg_controllen = sizeof(ctl)};
		ssize_t len = recvmsg(w->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC | MSG_TRUNC);
		if (len < 0)
			return;
		if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))
			continue;	/* too big to be a notification */
		buf[len] = '\0';
		pid_t pid = 0;
		uid_t uid = (uid_t)-1;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
			if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
				struct ucred uc;
				memcpy(&uc, CMSG_DATA(c), sizeof(uc));
				pid = uc.pid;
				uid = uc.uid;
			} else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
				/* fd store is not supported: close what we were sent */
				int *fds = (int *)(void *)CMSG_DATA(c);
				size_t nfds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
				for (size_t k = 0; k < nfds; k++)
					close(fds[k]);
			}
		}
		if (pid > 0)
			n->on_msg(n, pid, uid, buf);
	}
}

int notify_open(struct notify *n, struct ev_loop *loop, const char *path, mode_t mode, notify_fn fn,
		char *err, size_t errlen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int one = 1;
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "%s: path too long for a unix socket", path);
		return -1;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	unlink(path);	/* a datagram socket file left by an earlier run */
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	chmod(path, mode);
	int size = 1 << 20;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	n->path = xstrdup(path);
	n->on_msg = fn;
	ev_io_init(&n->io, notify_cb, fd, EV_READ);
	ev_io_start(loop, &n->io);
	return 0;
}

void notify_close(struct notify *n, struct ev_loop *loop)
{
	if (!n->path)
		return;
	ev_io_stop(loop, &n->io);
	close(n->io.fd);
	unlink(n->path);
	free(n->path);
	n->path = NULL;
}

void notify_drain(struct notify *n)
{
	char buf[64];

	if (!n->path)
		return;
	while (recv(n->io.fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_TRUNC) >= 0)
		;
}

const char *notify_field(const char *msg, const char *key, size_t *len)
{
	size_t kl = strlen(key);

	for (const char *line = msg; line && *line;) {
		const char *end = strchr(line, '\n');
		size_t ll = end ? (size_t)(end - line) : strlen(line);
		if (ll > kl && strncmp(line, key, kl) == 0 && line[kl] == '=') {
			*len = ll - kl - 1;
			return line + kl + 1;
		}
		line = end ? end + 1 : NULL;
	}
	return NULL;
}
