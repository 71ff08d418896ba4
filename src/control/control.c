/*
 * control.c - the control socket's listener and clients (see control.h):
 * accepting, SO_PEERCRED authorisation (peer.c's rule), line framing with
 * the 64 KiB limit, JSON decoding, dispatch through one command table, and
 * the bounded, non-blocking output side.  Client errors are answered to
 * the client and not logged.
 */
#include "autoconfig.h"

#include <errno.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "control.h"
#include "evtimer.h"
#include "lock.h"
#include "log.h"
#include "wire.h"
#include "peer.h"

#define ACCEPT_BURST 64		/* clients accepted per wake-up */
#define ACCEPT_PAUSE_MS 100	/* out of descriptors: try again after this */
#define CTL_OUT_KEEP 65536	/* a client's output buffer kept once written */
/* malloc_trim walks the whole heap: 30-100 ms for 500 MB of small blocks
 * (a bus with a big journal).  At most one per this many seconds, so that
 * a client asking for big answers over and over cannot stall the loop. */
#define CTL_TRIM_EVERY_S 10.0
#define READ_CHUNK 16384

static const struct ctl_command *const families[] = {
	ctl_status_commands, ctl_service_commands, ctl_daemon_commands, ctl_log_commands,
	ctl_lock_commands, ctl_dashboard_commands,
};

static const struct ctl_command *find_command(const char *name)
{
	for (size_t f = 0; f < ARRAY_LEN(families); f++)
		for (const struct ctl_command *c = families[f]; c->name; c++)
			if (strcmp(c->name, name) == 0)
				return c;
	return NULL;
}

static void client_io_cb(struct ev_loop *loop, ev_io *w, int revents);

static void client_update(struct ctl_client *c)
{
	struct ev_loop *loop = c->ctl->loop;
	int want = 0;

	/* Busy clients are still read, so one that leaves is noticed (and its
	 * lock wait dropped) at once; what they send meanwhile waits its turn,
	 * up to one request's worth.  So do clients that do not read their
	 * answers: their requests wait until the answers drain. */
	bool held = c->busy || c->out.len > CTL_OUT_MAX;
	if (!c->closing && !c->eof && (!held || c->streaming || c->in.len <= CTL_REQUEST_MAX))
		want |= EV_READ;
	/* A closing client is closed from its write callback, never under a
	 * caller that still holds it. */
	if ((c->out.len && !c->flush_queued) || c->closing)
		want |= EV_WRITE;
	if (want == (c->io.events & (EV_READ | EV_WRITE)) && ev_is_active(&c->io))
		return;
	ev_io_stop(loop, &c->io);
	ev_io_set(&c->io, c->io.fd, want);
	if (want)
		ev_io_start(loop, &c->io);
}

void ctl_client_close(struct ctl_client *c)
{
	struct control *ctl = c->ctl;

	ctl_wait_cancel(c);
	ctl_stream_stop(c);
	lock_session_close(c->locks);	/* a client that leaves lets go */
	if (c->flush_queued)
		STAILQ_REMOVE(&ctl->flush, c, ctl_client, flush_link);
	ev_io_stop(ctl->loop, &c->io);
	close(c->io.fd);
	LIST_REMOVE(c, link);
	ctl->nclients--;
	sbuf_free(&c->in);
	sbuf_free(&c->out);
	free(c);
}

/* Writes what it can now; 0, or -1 when the client is gone. */
static void trim_heap(struct control *ctl)
{
	if (ev_is_active(&ctl->trim_w)) {
		ctl->trim_wanted = true;
		return;
	}
	malloc_trim(0);
	ctl->trim_wanted = false;
	ev_timer_set(&ctl->trim_w, CTL_TRIM_EVERY_S, 0);
	ev_timer_start(ctl->loop, &ctl->trim_w);
}

static void trim_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct control *ctl = container_of(w, struct control, trim_w);
	(void)loop;
	(void)revents;

	if (ctl->trim_wanted)
		trim_heap(ctl);
}

static int client_flush(struct ctl_client *c)
{
	while (c->out.len) {
		ssize_t n = send(c->io.fd, c->out.buf, c->out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0)
			return -1;
		sbuf_consume(&c->out, (size_t)n);
	}
	if (!c->out.len && c->out.cap > CTL_OUT_KEEP) {
		/* A big answer (status --json of 5,000 services: 2 MB, and
		 * 7 MB of objects to make it) left that much heap behind,
		 * kept by free() for good: given back. */
		sbuf_free(&c->out);
		trim_heap(c->ctl);
	}
	if (!c->out.len && c->closing)
		return -1;
	return 0;
}

static int append_cb(const char *buf, size_t size, void *data)
{
	sbuf_add(data, buf, size);
	return 0;
}

void ctl_send(struct ctl_client *c, json_t *obj)
{
	size_t before = c->out.len;

	/* Straight into the output buffer: no string to allocate and copy. */
	int rc = json_dump_callback(obj, append_cb, &c->out, JSON_COMPACT | JSON_ENSURE_ASCII);
	json_decref(obj);
	if (rc < 0) {	/* cannot happen with what we build; leave no half */
		c->out.len = before;
		if (c->out.buf)
			c->out.buf[before] = '\0';
		return;
	}
	ctl_send_line(c, "\n", 1);
}

void ctl_send_line(struct ctl_client *c, const char *line, size_t len)
{
	sbuf_add(&c->out, line, len);
	if (c->flush_queued || (c->io.events & EV_WRITE))
		return;	/* written by control_flush or by the write watcher */
	/* In the order answered: a lock's next holder, granted by a release,
	 * hears before the releaser hears "ok". */
	c->flush_queued = true;
	STAILQ_INSERT_TAIL(&c->ctl->flush, c, flush_link);
}

static void handle_input(struct ctl_client *c);

/* Answers were written: requests held back while they piled up go on. */
static void resume_input(struct ctl_client *c)
{
	if (c->in.len && !c->busy && !c->streaming && !c->closing && c->out.len <= CTL_OUT_MAX &&
	    !c->ctl->draining)
		handle_input(c);
}

/* Writes what the socket takes now; the watcher does the rest, and
 * closes a client that is gone. */
void control_flush(struct control *ctl)
{
	while (!STAILQ_EMPTY(&ctl->flush)) {
		struct ctl_client *c = STAILQ_FIRST(&ctl->flush);
		STAILQ_REMOVE_HEAD(&ctl->flush, flush_link);
		c->flush_queued = false;
		if (client_flush(c) < 0)
			c->closing = true;
		else
			resume_input(c);
		client_update(c);
	}
}

/* Before the loop waits. */
static void flush_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	(void)loop;
	(void)revents;
	control_flush(container_of(w, struct control, flush_w));
}

bool ctl_stream_ok(struct ctl_client *c)
{
	if (c->closing)
		return false;
	if (c->out.len <= CTL_STREAM_MAX)
		return true;
	/* Fell behind: say so once, then close when that is written. */
	sbuf_free(&c->out);
	json_t *e = json_pack("{s:b,s:s}", "ok", 0, "error",
			      "client too slow: output buffer over 1 MiB; closing");
	c->events = false;
	ctl_stream_stop(c);
	c->closing = true;
	ctl_send(c, e);
	return false;
}

enum ctl_result ctl_error(json_t *resp, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	/* It may quote the request (jansson's "near '...'"), which need not
	 * be UTF-8: a JSON string must be, or the error would go unsaid. */
	utf8_fix(buf, strlen(buf));
	json_object_set_new(resp, "ok", json_false());
	json_object_set_new(resp, "error", json_string(buf));
	return CTL_ERROR;
}

const char *ctl_str(json_t *req, const char *field)
{
	return json_string_value(json_object_get(req, field));
}

long long ctl_int(json_t *req, const char *field, long long dflt)
{
	json_t *v = json_object_get(req, field);
	return v ? json_integer_value(v) : dflt;
}

bool ctl_bool(json_t *req, const char *field, bool dflt)
{
	json_t *v = json_object_get(req, field);
	return v ? json_is_true(v) : dflt;
}

static void read_again(struct ctl_client *c)
{
	client_update(c);
	/* Requests that came meanwhile: handled from the watcher, not under
	 * whoever answered this one. */
	if (c->in.len && !c->closing)
		ev_feed_event(c->ctl->loop, &c->io, EV_READ);
}

void ctl_reply_later(struct ctl_client *c, json_t *resp)
{
	c->busy = false;
	ctl_send(c, resp);
	read_again(c);
}

void ctl_reply_later_line(struct ctl_client *c, const char *line, size_t len)
{
	c->busy = false;
	ctl_send_line(c, line, len);
	read_again(c);
}

static const struct wire_field no_fields[] = {{NULL, 0, false, 0, 0, NULL, NULL}};

json_t *ctl_parse_request(const char *line, size_t len, json_t *resp, const struct ctl_command **cmd)
{
	json_error_t jerr;
	json_t *req = jflat_load(line, len);
	json_t *name;
	char why[300];

	*cmd = NULL;
	if (!req)
		req = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!req) {
		ctl_error(resp, "bad JSON: %s (at column %d)", jerr.text, jerr.column);
		return NULL;
	}
	if (!json_is_object(req)) {
		ctl_error(resp, "a request is a JSON object such as {\"cmd\":\"status\"}");
	} else if (!(name = json_object_get(req, "cmd"))) {
		ctl_error(resp, "missing field \"cmd\" (a string)");
	} else if (!json_is_string(name)) {
		ctl_error(resp, "field \"cmd\" must be a string");
	} else if (!(*cmd = find_command(json_string_value(name)))) {
		ctl_error(resp, "unknown command \"%s\"", json_string_value(name));
	} else if (wire_check_fields(req, (*cmd)->fields ? (*cmd)->fields : no_fields, true, "cmd", why,
				     sizeof(why)) < 0) {
		ctl_error(resp, "%s", why);
		*cmd = NULL;
	} else {
		return req;
	}
	json_decref(req);
	return NULL;
}

static void handle_line(struct ctl_client *c, const char *line, size_t len)
{
	json_t *resp = json_object();
	const struct ctl_command *cmd;

	json_object_set_new(resp, "ok", json_true());	/* first key; errors flip it */
	json_t *req = ctl_parse_request(line, len, resp, &cmd);
	if (!req) {
		ctl_stats_count(c->ctl, NULL, true);
		ctl_send(c, resp);
		return;
	}
	enum ctl_result r = cmd->handler(c, req, resp);
	ctl_stats_count(c->ctl, cmd, r == CTL_ERROR);
	if (r == CTL_SENT) {
		json_decref(resp);
		json_decref(req);
		return;
	}
	if (r == CTL_LATER) {
		c->busy = true;
		json_decref(resp);
		json_decref(req);
		client_update(c);
		ctl_wait_event(c);	/* maybe settled already */
		return;
	}
	/* The most common answer (a lock release, a stop without wait), as text */
	if (json_object_size(resp) == 1 && json_is_true(json_object_get(resp, "ok"))) {
		static const char ok[] = "{\"ok\":true}\n";
		json_decref(resp);
		ctl_send_line(c, ok, sizeof(ok) - 1);
	} else {
		ctl_send(c, resp);
	}
	json_decref(req);
}

/* Splits what was read into lines and handles each complete one. */
static void handle_lines(struct ctl_client *c)
{
	while (c->in.len && !c->busy && !c->closing && c->out.len <= CTL_OUT_MAX) {
		char *nl = memchr(c->in.buf, '\n', c->in.len);
		if (c->skipping) {
			if (!nl) {
				sbuf_consume(&c->in, c->in.len);
				return;
			}
			sbuf_consume(&c->in, (size_t)(nl - c->in.buf) + 1);
			c->skipping = false;
			continue;
		}
		if (!nl) {
			if (c->in.len > CTL_REQUEST_MAX) {
				json_t *r = json_object();
				ctl_error(r, "request over %u KiB: refused", CTL_REQUEST_MAX >> 10);
				ctl_send(c, r);
				sbuf_consume(&c->in, c->in.len);
				c->skipping = true;
			}
			return;
		}
		size_t len = (size_t)(nl - c->in.buf);
		if (len > CTL_REQUEST_MAX) {
			json_t *r = json_object();
			ctl_error(r, "request over %u KiB: refused", CTL_REQUEST_MAX >> 10);
			ctl_send(c, r);
		} else if (len && !(len == 1 && c->in.buf[0] == '\r')) {
			char *line = xstrndup(c->in.buf, len);
			sbuf_consume(&c->in, len + 1);
			handle_line(c, line, len);
			free(line);
			continue;
		}
		sbuf_consume(&c->in, len + 1);
	}
}

static void handle_input(struct ctl_client *c)
{
	handle_lines(c);
	/* Shut and every whole line answered: close once that is written. */
	if (c->eof && !c->busy && !c->closing && !memchr(c->in.buf ? c->in.buf : "", '\n', c->in.len))
		c->closing = true;
}

static void client_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct ctl_client *c = container_of(w, struct ctl_client, io);
	(void)loop;

	if (revents & EV_WRITE) {
		if (client_flush(c) < 0) {
			ctl_client_close(c);
			return;
		}
		resume_input(c);
	}
	if ((revents & EV_READ) && !c->closing) {
		char buf[READ_CHUNK];
		ssize_t n = c->eof ? -1 : recv(c->io.fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n == 0 && !c->busy && !c->streaming) {
			/* The end of its side (shutdown, or gone): what it sent
			 * is still answered, and what waits is written. */
			c->eof = true;
		} else if (!c->eof && (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))) {
			/* Half a line, or a request in progress, and gone. */
			ctl_client_close(c);
			return;
		}
		if (n > 0 && !c->streaming)	/* a stream takes no more requests */
			sbuf_add(&c->in, buf, (size_t)n);
		if (!c->busy)
			handle_input(c);
	}
	if (c->closing && !c->out.len) {
		ctl_client_close(c);
		return;
	}
	client_update(c);
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct control *ctl = container_of(w, struct control, listen_io);
	(void)revents;

	for (int i = 0; i < ACCEPT_BURST; i++) {
		int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0 && (errno == EMFILE || errno == ENFILE)) {
			/* The client stays queued and the socket readable: accepting
			 * again at once would spin.  Wait for a descriptor to free. */
			if (!ctl->fd_warned)
				log_warn(NULL, "control socket: accept: %s: new clients wait until "
					 "descriptors free up", strerror(errno));
			ctl->fd_warned = true;
			ev_io_stop(loop, w);
			evtimer_start_ms(loop, &ctl->accept_pause, ACCEPT_PAUSE_MS);
			return;
		}
		if (fd < 0) {
			/* The wait ends when every waiting client is in: while
			 * they come in as descriptors free up, the limit may be
			 * met again, and that is the same wait, not a new one.
			 * (A burst that took the last of them says so at the
			 * next wake-up.) */
			if (errno == EAGAIN && ctl->fd_warned) {
				log_info(NULL, "control socket: accepting clients again");
				ctl->fd_warned = false;
			} else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
				log_warn(NULL, "control socket: accept: %s", strerror(errno));
			}
			return;
		}
		struct ucred cr;
		socklen_t len = sizeof(cr);
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0 || !peer_allowed(ctl->auth, cr.uid, cr.gid)) {
			char msg[200];
			int n = snprintf(msg, sizeof(msg),
					 "{\"ok\":false,\"error\":\"permission denied: uid %u may not use "
					 "this control socket\"}\n", (unsigned)cr.uid);
			(void)!send(fd, msg, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
			close(fd);
			continue;
		}
		struct ctl_client *c = xcalloc(1, sizeof(*c));
		c->ctl = ctl;
		c->id = ++ctl->next_id;
		c->uid = cr.uid;
		c->pid = cr.pid;
		ev_io_init(&c->io, client_io_cb, fd, EV_READ);
		ev_io_start(loop, &c->io);
		LIST_INSERT_HEAD(&ctl->clients, c, link);
		ctl->nclients++;
	}
}

static void accept_again_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct control *ctl = container_of(w, struct control, accept_pause);
	(void)revents;

	ev_io_start(loop, &ctl->listen_io);
}

/* A socket file left by a cohortd that died is replaced; one that answers
 * belongs to a cohortd that runs, and we must not steal it. */
static int claim_path(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct stat st;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : (snprintf(err, errlen, "%s: %s", path, strerror(errno)), -1);
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen, "%s exists and is not a socket", path);
		return -1;
	}
	strcpy(sa.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	int rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	close(fd);
	if (rc == 0) {
		snprintf(err, errlen, "another cohortd is running: %s answers (stop it, or use another run_dir)",
			 path);
		return -1;
	}
	if (unlink(path) < 0 && errno != ENOENT) {
		snprintf(err, errlen, "removing stale %s: %s", path, strerror(errno));
		return -1;
	}
	log_info(NULL, "replaced the stale control socket %s", path);
	return 0;
}

int control_open(struct control *ctl, struct ev_loop *loop, const char *run_dir, unsigned mode,
		 struct peer_auth *auth, const struct ctl_env *env, char *err, size_t errlen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd;

	*ctl = (struct control){.env = *env, .loop = loop, .auth = auth};
	ctl->path = xasprintf("%s/control.sock", run_dir);
	if (strlen(ctl->path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "%s: path too long for a unix socket", ctl->path);
		goto fail;
	}
	if (claim_path(ctl->path, err, errlen) < 0)
		goto fail;
	strcpy(sa.sun_path, ctl->path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		goto fail;
	}
	/* Bind under a umask that lets nobody in before the chmod. */
	mode_t old = umask(0177);
	int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (rc < 0 || listen(fd, 1024) < 0) {
		snprintf(err, errlen, "%s: %s", ctl->path, strerror(errno));
		close(fd);
		goto fail;
	}
	if ((auth->has_group && chown(ctl->path, (uid_t)-1, auth->group) < 0) ||
	    chmod(ctl->path, (mode_t)mode) < 0) {
		snprintf(err, errlen, "%s: setting owner and mode: %s", ctl->path, strerror(errno));
		close(fd);
		unlink(ctl->path);
		goto fail;
	}
	ev_io_init(&ctl->listen_io, accept_cb, fd, EV_READ);
	ev_io_start(loop, &ctl->listen_io);
	ev_init(&ctl->accept_pause, accept_again_cb);
	ev_init(&ctl->trim_w, trim_cb);
	STAILQ_INIT(&ctl->flush);
	ev_prepare_init(&ctl->flush_w, flush_cb);
	ev_prepare_start(loop, &ctl->flush_w);
	return 0;
fail:
	free(ctl->path);
	ctl->path = NULL;
	return -1;
}

void control_close(struct control *ctl)
{
	if (!ctl->path)
		return;
	while (!LIST_EMPTY(&ctl->clients)) {
		struct ctl_client *c = LIST_FIRST(&ctl->clients);
		(void)client_flush(c);
		ctl_client_close(c);
	}
	ev_io_stop(ctl->loop, &ctl->listen_io);
	ev_timer_stop(ctl->loop, &ctl->accept_pause);
	ev_timer_stop(ctl->loop, &ctl->trim_w);
	ev_prepare_stop(ctl->loop, &ctl->flush_w);
	close(ctl->listen_io.fd);
	unlink(ctl->path);
	free(ctl->path);
	ctl->path = NULL;
}
