/*
 * bus_live.c - when the bus closes a connection on its own, and how.
 *
 * libwebsockets' own validity policy (a PING after 300 s, a hang-up 10 s
 * later without its PONG) dropped subscribers that were only behind on
 * reading, with no Close frame and nothing logged; bus_server.c turns it
 * off.  The policy here instead:
 *
 *   - a connection that has not said hello within BUS_HELLO_TIMEOUT_MS is
 *     closed (4001);
 *   - one is closed for liveness (4001) only when it made no progress for
 *     bus_idle_timeout: it sent us nothing (a frame, a PONG) and read
 *     nothing of what we sent.  Reading is seen two ways: a writeable
 *     callback after the socket was full, and the socket's count of unread
 *     bytes (SIOCOUTQ) going down between two checks.  So a subscriber
 *     draining a backlog slowly is alive, and one stopped is not;
 *   - halfway through bus_idle_timeout without progress it is sent a
 *     PING, which a live client answers whatever it is doing.
 *
 * One ev_timer per connection, set to its next deadline; progress only
 * writes a timestamp (no timer is touched per message).
 *
 * A close we decide sends a Close frame, then lingers: the socket's write
 * side is shut and what the peer still sends is read and dropped until it
 * closes too, for BUS_LINGER_MS at most.  Closing a socket with unread
 * input makes the kernel send a RST, and a client that is writing then
 * sees its send fail before it reads our Close frame: 1006 instead of the
 * code (and a client taken over by another would come back for ever).
 */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <libwebsockets.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/sockios.h>

#include "bus.h"
#include "log.h"

struct bus_linger {
	struct bus *bus;
	int fd;
	ev_io io_w;
	ev_timer timer_w;
	LIST_ENTRY(bus_linger) link;	/* in bus->lingering */
};

void bus_live_progress(struct bus_conn *c)
{
	c->progress = ev_now(c->bus->loop);
	c->pinged = false;
}

/* Bytes written to the socket that the peer has not read (TCP: not
 * acknowledged), or -1. */
static int unread_bytes(struct bus_conn *c)
{
	int n;

	if (ioctl(lws_get_socket_fd(c->wsi), SIOCOUTQ, &n) < 0)
		return -1;
	return n;
}

/* The period of the checks while the socket is full: often enough that a
 * reader taking a little now and then is seen between two of them. */
static ev_tstamp check_period(const struct bus *b)
{
	return b->idle_timeout / 4;
}

static void live_schedule(struct bus_conn *c)
{
	struct bus *b = c->bus;
	ev_tstamp now = ev_now(b->loop), at = 0;

	if (c->closing)
		at = now + BUS_LINGER_MS / 1000.0;
	if (!c->closing && !c->session)
		at = c->opened + BUS_HELLO_TIMEOUT_MS / 1000.0;
	if (!c->closing && b->idle_timeout > 0) {
		ev_tstamp idle = c->pinged ? c->progress + b->idle_timeout :
			c->progress + b->idle_timeout / 2;
		if (c->choked && now + check_period(b) < idle)
			idle = now + check_period(b);
		if (!at || idle < at)
			at = idle;
	}
	ev_timer_stop(b->loop, &c->live_w);
	if (!at)
		return;
	ev_timer_set(&c->live_w, at > now ? at - now : 0, 0);
	ev_timer_start(b->loop, &c->live_w);
}

static void live_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct bus_conn *c = container_of(w, struct bus_conn, live_w);
	struct bus *b = c->bus;
	ev_tstamp now = ev_now(loop);
	(void)revents;

	if (c->closing) {
		/* Its Close frame could not go out (it reads nothing): drop it.
		 * The close itself was logged already. */
		log_debug(NULL, "bus: connection %llu: the Close frame was not taken within %d ms: dropped",
			 (unsigned long long)c->id, BUS_LINGER_MS);
		lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
		return;
	}
	if (!c->session && now - c->opened >= BUS_HELLO_TIMEOUT_MS / 1000.0 - 0.001) {
		bus_conn_close(c, BUS_CLOSE_TIMEOUT, "no hello within %d s", BUS_HELLO_TIMEOUT_MS / 1000);
		return;
	}
	if (b->idle_timeout > 0) {
		int outq = unread_bytes(c);
		if (outq >= 0 && outq < c->outq)
			bus_live_progress(c);	/* it read some of what waited */
		c->outq = outq;
		if (now - c->progress >= b->idle_timeout - 0.001) {
			bus_conn_close(c, BUS_CLOSE_TIMEOUT, "no progress reading or writing for %g s "
				       "(bus_idle_timeout)", b->idle_timeout);
			return;
		}
		if (!c->pinged && now - c->progress >= b->idle_timeout / 2 - 0.001) {
			c->pinged = true;
			c->ping_due = true;
			c->write_asked = true;
			lws_callback_on_writable(c->wsi);
		}
	}
	live_schedule(c);
}

void bus_live_start(struct bus_conn *c)
{
	c->opened = c->progress = ev_now(c->bus->loop);
	ev_init(&c->live_w, live_cb);
	live_schedule(c);
}

void bus_live_stop(struct bus_conn *c)
{
	ev_timer_stop(c->bus->loop, &c->live_w);
}

void bus_live_closing(struct bus_conn *c)
{
	live_schedule(c);
}

/* --- lingering after our Close frame ---------------------------------------------- */

static void linger_end(struct bus_linger *l)
{
	struct bus *b = l->bus;

	ev_io_stop(b->loop, &l->io_w);
	ev_timer_stop(b->loop, &l->timer_w);
	close(l->fd);
	b->nlingering--;
	LIST_REMOVE(l, link);
	free(l);
}

/* Reads and drops what came; true at the peer's end (or an error). */
static bool linger_drain(int fd)
{
	char buf[4096];

	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n > 0)
			continue;
		return n == 0 || (errno != EAGAIN && errno != EINTR);
	}
}

static void linger_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct bus_linger *l = container_of(w, struct bus_linger, io_w);
	(void)loop;
	(void)revents;

	if (linger_drain(l->fd))
		linger_end(l);
}

static void linger_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	linger_end(container_of(w, struct bus_linger, timer_w));
}

void bus_linger(struct bus *b, int fd)
{
	/* lws closes its descriptor next; the socket stays open on ours. */
	int mine = fcntl(fd, F_DUPFD_CLOEXEC, 0);

	if (mine < 0)
		return;		/* then lws closes it as it would have */
	(void)shutdown(mine, SHUT_WR);	/* the peer sees the end after our Close frame */
	struct bus_linger *l = xcalloc(1, sizeof(*l));
	l->bus = b;
	l->fd = mine;
	LIST_INSERT_HEAD(&b->lingering, l, link);
	b->nlingering++;
	ev_io_init(&l->io_w, linger_io_cb, mine, EV_READ);
	ev_io_start(b->loop, &l->io_w);
	ev_timer_init(&l->timer_w, linger_timer_cb, BUS_LINGER_MS / 1000.0, 0);
	ev_timer_start(b->loop, &l->timer_w);
}

void bus_linger_finish(struct bus *b)
{
	int64_t deadline = now_mono_ms() + BUS_LINGER_MS;

	while (!LIST_EMPTY(&b->lingering)) {
		struct pollfd p[64];
		nfds_t n = 0;
		for (struct bus_linger *l = LIST_FIRST(&b->lingering); l && n < ARRAY_LEN(p); l = LIST_NEXT(l, link))
			p[n++] = (struct pollfd){l->fd, POLLIN, 0};
		int left = (int)(deadline - now_mono_ms());
		if (left <= 0 || poll(p, n, left) < 0)
			break;
		for (nfds_t i = 0; i < n; i++) {
			if (!p[i].revents || !linger_drain(p[i].fd))
				continue;
			struct bus_linger *l;
			LIST_FOREACH(l, &b->lingering, link)
				if (l->fd == p[i].fd) {
					linger_end(l);
					break;
				}
		}
	}
	while (!LIST_EMPTY(&b->lingering))
		linger_end(LIST_FIRST(&b->lingering));
}
