/*
 * relay.c - the floor of the bus benchmarks: the least a pub/sub server
 * can do for bench_bus's pattern.  It speaks the two redis commands
 * bench_bus's redis client sends (SUBSCRIBE channel, PUBLISH channel
 * message) on one epoll loop, keeps no state but who subscribed to what,
 * and writes each delivery with one send().  Measured beside cohortd,
 * mosquitto and redis, its latency is what the machine and the clients
 * cost; what a server adds above it is the server's own.
 *
 *   relay unix:PATH | HOST:PORT
 *
 * It is a benchmark tool, not a server: no authentication, no limits but
 * a per-connection input buffer (a connection past it is closed), and a
 * subscriber whose socket is full loses the message (as redis pub/sub's
 * client output limit would drop the client).
 */
#include "autoconfig.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_CONNS 1024
#define IN_CAP (1 << 20)

struct conn {
	int fd;
	char *in;
	size_t len;
	char *channel;		/* subscribed to, or NULL */
};

static struct conn *conns[MAX_CONNS];

static void fail(const char *what)
{
	fprintf(stderr, "relay: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int listen_on(const char *addr)
{
	int fd;

	if (strncmp(addr, "unix:", 5) == 0) {
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		if (strlen(addr + 5) >= sizeof(sa.sun_path)) {
			fprintf(stderr, "relay: path too long: %s\n", addr + 5);
			exit(2);
		}
		strcpy(sa.sun_path, addr + 5);
		unlink(sa.sun_path);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
			fail(addr);
	} else {
		const char *colon = strrchr(addr, ':');
		struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		int one = 1;
		if (!colon) {
			fprintf(stderr, "relay: address is unix:PATH or HOST:PORT, not %s\n", addr);
			exit(2);
		}
		sa.sin_port = htons((unsigned short)atoi(colon + 1));
		fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			fail("socket");
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
			fail(addr);
	}
	if (listen(fd, 512) < 0)
		fail("listen");
	return fd;
}

static void conn_close(int ep, struct conn *c)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	conns[c->fd] = NULL;
	free(c->channel);
	free(c->in);
	free(c);
}

static void send_all(struct conn *c, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(c->fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;	/* full or gone: this delivery is lost */
		p += w;
		n -= (size_t)w;
	}
}

/*
 * One RESP array of bulk strings at p (len bytes): its elements in
 * el[] / el_len[] (at most 3), the bytes it takes, 0 if incomplete, -1 if
 * it is not one.
 */
static long parse_cmd(char *p, size_t len, char **el, size_t *el_len, int *n)
{
	char *end = p + len, *q = p, *nl;
	long count;

	if (!(nl = memchr(q, '\n', len)))
		return 0;
	if (q[0] != '*' || (count = strtol(q + 1, NULL, 10)) < 1 || count > 3)
		return -1;
	q = nl + 1;
	for (long k = 0; k < count; k++) {
		if (q >= end || !(nl = memchr(q, '\n', (size_t)(end - q))))
			return 0;
		long bl = q[0] == '$' ? strtol(q + 1, NULL, 10) : -1;
		if (bl < 0 || bl > IN_CAP)
			return -1;
		if (end - (nl + 1) < bl + 2)
			return 0;
		el[k] = nl + 1;
		el_len[k] = (size_t)bl;
		q = nl + 1 + bl + 2;
	}
	*n = (int)count;
	return q - p;
}

static void publish(struct conn *from, const char *ch, size_t chl, const char *msg, size_t ml)
{
	char head[256], reply[32];
	int hl = snprintf(head, sizeof(head), "*3\r\n$7\r\nmessage\r\n$%zu\r\n%.*s\r\n$%zu\r\n",
			  chl, (int)chl, ch, ml);
	char *frame = malloc((size_t)hl + ml + 2);
	long receivers = 0;

	memcpy(frame, head, (size_t)hl);
	memcpy(frame + hl, msg, ml);
	memcpy(frame + hl + ml, "\r\n", 2);
	for (int fd = 0; fd < MAX_CONNS; fd++) {
		struct conn *c = conns[fd];
		if (c && c->channel && strlen(c->channel) == chl && memcmp(c->channel, ch, chl) == 0) {
			send_all(c, frame, (size_t)hl + ml + 2);
			receivers++;
		}
	}
	free(frame);
	send_all(from, reply, (size_t)snprintf(reply, sizeof(reply), ":%ld\r\n", receivers));
}

/* Reads and serves what c sent; false when c is to be closed. */
static bool serve(struct conn *c)
{
	for (;;) {
		ssize_t r = recv(c->fd, c->in + c->len, IN_CAP - c->len, MSG_DONTWAIT);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (r <= 0)
			return false;
		c->len += (size_t)r;
		if (c->len == IN_CAP)
			break;
	}
	size_t off = 0;
	for (;;) {
		char *el[3];
		size_t el_len[3];
		int n = 0;
		long used = parse_cmd(c->in + off, c->len - off, el, el_len, &n);
		if (used < 0)
			return false;
		if (used == 0)
			break;
		off += (size_t)used;
		if (n == 2 && el_len[0] == 9 && strncasecmp(el[0], "subscribe", 9) == 0) {
			char reply[300];
			free(c->channel);
			c->channel = strndup(el[1], el_len[1]);
			send_all(c, reply, (size_t)snprintf(reply, sizeof(reply),
				"*3\r\n$9\r\nsubscribe\r\n$%zu\r\n%s\r\n:1\r\n", el_len[1], c->channel));
		} else if (n == 3 && el_len[0] == 7 && strncasecmp(el[0], "publish", 7) == 0) {
			publish(c, el[1], el_len[1], el[2], el_len[2]);
		} else {
			send_all(c, "-ERR relay knows SUBSCRIBE and PUBLISH\r\n", 40);
		}
	}
	memmove(c->in, c->in + off, c->len - off);
	c->len -= off;
	return c->len < IN_CAP;	/* a full buffer without one whole command */
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: relay unix:PATH | HOST:PORT\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	int lfd = listen_on(argv[1]);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0)
		fail("epoll");
	for (;;) {
		struct epoll_event evs[64];
		int n = epoll_wait(ep, evs, 64, -1);
		if (n < 0 && errno != EINTR)
			fail("epoll_wait");
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			if (fd == lfd) {
				int cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
				int one = 1;
				if (cfd < 0)
					continue;
				if (cfd >= MAX_CONNS) {
					close(cfd);
					continue;
				}
				setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
				struct conn *c = calloc(1, sizeof(*c));
				c->fd = cfd;
				c->in = malloc(IN_CAP);
				conns[cfd] = c;
				struct epoll_event cev = {.events = EPOLLIN, .data.fd = cfd};
				epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &cev);
			} else if (conns[fd] && !serve(conns[fd])) {
				conn_close(ep, conns[fd]);
			}
		}
	}
}
