/*
 * probe.c - see probe.h.
 *
 * Host names are resolved once per check (getaddrinfo; numeric addresses
 * and /etc/hosts names answer at once, which is what probes of local
 * services use) and the addresses kept until probe_reset().
 */
#include "autoconfig.h"

#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config_keys.h"
#include "probe.h"

static void probe_finish(struct probe *p, bool ok, const char *why)
{
	char copy[256];

	snprintf(copy, sizeof(copy), "%s", why);
	probe_cancel(p);
	p->done(p, ok, copy);
}

static void timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct probe *p = container_of(w, struct probe, timeout);
	char why[64];
	(void)loop;
	(void)revents;

	snprintf(why, sizeof(why), "timed out after %.0f ms", w->repeat * 1000.0);
	probe_finish(p, false, why);
}

void probe_init(struct probe *p, struct ev_loop *loop, probe_done_fn done, probe_spawn_fn spawn,
		void *owner)
{
	*p = (struct probe){.loop = loop, .owner = owner, .done = done, .spawn = spawn, .fd = -1};
	ev_init(&p->timeout, timeout_cb);
}

void probe_reset(struct probe *p)
{
	probe_cancel(p);
	if (p->addrs)
		freeaddrinfo(p->addrs);
	p->addrs = NULL;
}

void probe_cancel(struct probe *p)
{
	ev_timer_stop(p->loop, &p->timeout);
	if (p->fd >= 0) {
		ev_io_stop(p->loop, &p->io);
		close(p->fd);
		p->fd = -1;
	}
	if (p->pid > 0)
		kill(-p->pid, SIGKILL);	/* reaped through the child watcher */
	p->pid = 0;
	sbuf_free(&p->io_buf);
	p->io_off = 0;
	p->sent = false;
	p->active = false;
}

static int resolve(struct probe *p, char *why, size_t len)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	int rc;

	if (p->addrs)
		return 0;
	hints.ai_flags |= AI_NUMERICHOST;
	rc = getaddrinfo(p->check->to->host, p->check->to->port, &hints, &res);
	if (rc == EAI_NONAME) {
		hints.ai_flags &= ~AI_NUMERICHOST;
		rc = getaddrinfo(p->check->to->host, p->check->to->port, &hints, &res);
	}
	if (rc != 0) {
		snprintf(why, len, "cannot resolve %s: %s", p->check->to->host, gai_strerror(rc));
		return -1;
	}
	p->addrs = res;
	return 0;
}

static void http_read(struct probe *p)
{
	char buf[512];
	ssize_t n = read(p->fd, buf, sizeof(buf));

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n > 0)
		sbuf_add(&p->io_buf, buf, (size_t)n);
	char *eol = p->io_buf.buf ? strstr(p->io_buf.buf, "\r\n") : NULL;
	if (!eol && n > 0 && p->io_buf.len < 4096)
		return;
	if (!eol) {
		probe_finish(p, false, n < 0 ? strerror(errno) : "connection closed before an HTTP status line");
		return;
	}
	int status = 0;
	char why[128];
	if (sscanf(p->io_buf.buf, "HTTP/%*d.%*d %d", &status) != 1) {
		probe_finish(p, false, "answer is not HTTP");
		return;
	}
	snprintf(why, sizeof(why), "GET %s answered %d", p->check->to->path, status);
	probe_finish(p, status >= 200 && status < 300, why);
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct probe *p = container_of(w, struct probe, io);
	int err = 0;
	socklen_t len = sizeof(err);
	(void)revents;

	if (!p->sent) {
		if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err) {
			char why[128];
			snprintf(why, sizeof(why), "connect %s:%s: %s", p->check->to->host, p->check->to->port,
				 strerror(err));
			probe_finish(p, false, why);
			return;
		}
		if (p->check->kind == CHECK_TCP) {
			probe_finish(p, true, "connected");
			return;
		}
		ssize_t n = write(p->fd, p->io_buf.buf + p->io_off, p->io_buf.len - p->io_off);
		if (n < 0 && errno != EAGAIN && errno != EINTR) {
			probe_finish(p, false, strerror(errno));
			return;
		}
		if (n > 0)
			p->io_off += (size_t)n;
		if (p->io_off < p->io_buf.len)
			return;
		p->sent = true;
		sbuf_free(&p->io_buf);
		ev_io_stop(loop, w);
		ev_io_set(w, p->fd, EV_READ);
		ev_io_start(loop, w);
		return;
	}
	http_read(p);
}

static void start_connect(struct probe *p)
{
	char why[160];
	struct addrinfo *ai;
	int fd = -1;

	if (resolve(p, why, sizeof(why)) < 0) {
		probe_finish(p, false, why);
		return;
	}
	for (ai = p->addrs; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0)
			continue;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 || errno == EINPROGRESS)
			break;
		snprintf(why, sizeof(why), "connect %s:%s: %s", p->check->to->host, p->check->to->port,
			 strerror(errno));
		close(fd);
		fd = -1;
	}
	if (fd < 0) {
		probe_finish(p, false, why);
		return;
	}
	p->fd = fd;
	const struct check_target *to = p->check->to;
	if (p->check->kind == CHECK_HTTP)
		sbuf_addf(&p->io_buf, "GET %s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: cohort-probe\r\n"
			  "Connection: close\r\n\r\n", to->path, to->host, to->port);
	ev_io_init(&p->io, io_cb, fd, EV_WRITE);
	ev_io_start(p->loop, &p->io);
}

void probe_start(struct probe *p, const struct check *c, int64_t timeout_ms)
{
	if (p->active)
		probe_cancel(p);
	if (p->check != c && p->addrs) {
		freeaddrinfo(p->addrs);
		p->addrs = NULL;
	}
	p->check = c;
	p->active = true;
	ev_timer_set(&p->timeout, (double)timeout_ms / 1000.0, (double)timeout_ms / 1000.0);
	ev_timer_start(p->loop, &p->timeout);
	if (c->kind == CHECK_EXEC) {
		char err[200];
		p->pid = p->spawn(p, err, sizeof(err));
		if (p->pid < 0) {
			p->pid = 0;
			probe_finish(p, false, err);
		}
		return;
	}
	start_connect(p);
}

void probe_child_exited(struct probe *p, pid_t pid, int status)
{
	char why[128];

	if (pid != p->pid)
		return;	/* an earlier attempt's child, killed on cancel */
	p->pid = 0;
	if (!p->active)
		return;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		probe_finish(p, true, "exited 0");
		return;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
		snprintf(why, sizeof(why), "%s exited 127 (could not be run?)", p->check->to->argv.v[0]);
	else if (WIFEXITED(status))
		snprintf(why, sizeof(why), "%s exited %d", p->check->to->argv.v[0], WEXITSTATUS(status));
	else
		snprintf(why, sizeof(why), "%s killed by SIG%s", p->check->to->argv.v[0],
			 signal_name(WTERMSIG(status)));
	probe_finish(p, false, why);
}
