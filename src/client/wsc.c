/*
 * wsc.c - see wsc.h.  SHA-1 and base64 are here only to check the
 * server's Sec-WebSocket-Accept, as the protocol asks.
 */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "hostport.h"
#include "wsc.h"

#define WSC_FRAME_MAX (64ull << 20)	/* a frame longer than this is not cohortd's */

/* --- SHA-1 and base64 ---------------------------------------------------------- */

static uint32_t rol(uint32_t v, int n)
{
	return (v << n) | (v >> (32 - n));
}

static void sha1(const unsigned char *data, size_t len, unsigned char out[20])
{
	uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
	size_t total = ((len + 8) / 64 + 1) * 64;
	unsigned char *m = xcalloc(total, 1);

	memcpy(m, data, len);
	m[len] = 0x80;
	uint64_t bits = (uint64_t)len * 8;
	for (int i = 0; i < 8; i++)
		m[total - 1 - i] = (unsigned char)(bits >> (8 * i));
	for (size_t off = 0; off < total; off += 64) {
		uint32_t w[80];
		for (int i = 0; i < 16; i++)
			w[i] = (uint32_t)m[off + 4 * i] << 24 | (uint32_t)m[off + 4 * i + 1] << 16 |
			       (uint32_t)m[off + 4 * i + 2] << 8 | m[off + 4 * i + 3];
		for (int i = 16; i < 80; i++)
			w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
		uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
		for (int i = 0; i < 80; i++) {
			uint32_t f, k;
			if (i < 20) {
				f = (b & c) | (~b & d);
				k = 0x5A827999;
			} else if (i < 40) {
				f = b ^ c ^ d;
				k = 0x6ED9EBA1;
			} else if (i < 60) {
				f = (b & c) | (b & d) | (c & d);
				k = 0x8F1BBCDC;
			} else {
				f = b ^ c ^ d;
				k = 0xCA62C1D6;
			}
			uint32_t t = rol(a, 5) + f + e + k + w[i];
			e = d;
			d = c;
			c = rol(b, 30);
			b = a;
			a = t;
		}
		h[0] += a;
		h[1] += b;
		h[2] += c;
		h[3] += d;
		h[4] += e;
	}
	free(m);
	for (int i = 0; i < 5; i++)
		for (int k = 0; k < 4; k++)
			out[4 * i + k] = (unsigned char)(h[i] >> (24 - 8 * k));
}

static void base64(const unsigned char *in, size_t len, char *out)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t o = 0;

	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0) |
			     (i + 2 < len ? in[i + 2] : 0);
		out[o++] = tab[(v >> 18) & 63];
		out[o++] = tab[(v >> 12) & 63];
		out[o++] = i + 1 < len ? tab[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < len ? tab[v & 63] : '=';
	}
	out[o] = '\0';
}

/* --- connecting ----------------------------------------------------------------- */

static int fail(struct wsc *w, const char *fmt, const char *a)
{
	snprintf(w->err, sizeof(w->err), fmt, a, strerror(errno));
	if (w->fd >= 0)
		close(w->fd);
	w->fd = -1;
	return -1;
}

/*
 * Weak: a cohortctl linked statically has no getaddrinfo (glibc's static
 * one would load the NSS modules of the glibc it was built with, and the
 * linker warns so). It then takes numeric addresses and localhost only.
 * libcohort and a dynamic cohortctl have the real one.
 */
#pragma weak getaddrinfo
#pragma weak freeaddrinfo

enum { MAX_ADDRS = 4 };

/* HOST:PORT as up to MAX_ADDRS socket addresses, to try in turn: their
 * count, or -1 with errno. */
static int resolve(const char *host, const char *port, struct sockaddr_storage *ss, socklen_t *len)
{
	char *end;
	unsigned long pn = strtoul(port, &end, 10);
	int n = 0;

	memset(ss, 0, MAX_ADDRS * sizeof(*ss));
	if (*port && !*end && pn <= 65535) {
		/* localhost is the loopback without a lookup (RFC 6761, as curl
		 * does): a system without /etc/hosts cannot resolve it. */
		bool local = strcmp(host, "localhost") == 0;
		const char *numeric[] = {local ? "127.0.0.1" : host, local ? "::1" : host};
		struct sockaddr_in *in = (struct sockaddr_in *)&ss[n];
		if (inet_pton(AF_INET, numeric[0], &in->sin_addr) == 1) {
			in->sin_family = AF_INET;
			in->sin_port = htons((uint16_t)pn);
			len[n++] = sizeof(*in);
		}
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss[n];
		if (inet_pton(AF_INET6, numeric[1], &in6->sin6_addr) == 1) {
			in6->sin6_family = AF_INET6;
			in6->sin6_port = htons((uint16_t)pn);
			len[n++] = sizeof(*in6);
		}
		if (n)
			return n;
	}
	if (!getaddrinfo) {
		errno = EAFNOSUPPORT;
		return -1;
	}
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
	if (getaddrinfo(host, port, &hints, &res) != 0 || !res) {
		errno = EHOSTUNREACH;
		return -1;
	}
	for (struct addrinfo *r = res; r && n < MAX_ADDRS; r = r->ai_next) {
		if (r->ai_addrlen > sizeof(*ss))
			continue;
		memcpy(&ss[n], r->ai_addr, r->ai_addrlen);
		len[n++] = r->ai_addrlen;
	}
	freeaddrinfo(res);
	if (!n)
		errno = EHOSTUNREACH;
	return n ? n : -1;
}

/* Connects w->fd to ADDR within timeout_ms; -1 with errno. */
static int connect_to(struct wsc *w, const struct sockaddr_storage *addr, socklen_t len, int timeout_ms)
{
	w->fd = socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (w->fd < 0)
		return -1;
	int rc = connect(w->fd, (const struct sockaddr *)addr, len);
	if (rc < 0 && errno == EINPROGRESS) {
		struct pollfd p = {w->fd, POLLOUT, 0};
		int err = 0;
		socklen_t el = sizeof(err);
		if (poll(&p, 1, timeout_ms) <= 0)
			errno = ETIMEDOUT;
		else if (getsockopt(w->fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err == 0)
			rc = 0;
		else
			errno = err ? err : EIO;
	}
	if (rc < 0) {
		int e = errno;
		close(w->fd);
		w->fd = -1;
		errno = e;
	}
	return rc;
}

static int connect_url(struct wsc *w, const char *url, char *host, size_t hostlen, char *path,
		       size_t pathlen, int timeout_ms)
{
	if (strncmp(url, "unix:", 5) == 0) {
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		if (strlen(url + 5) >= sizeof(sa.sun_path)) {
			errno = ENAMETOOLONG;
			return fail(w, "%s: %s", url);
		}
		strcpy(sa.sun_path, url + 5);
		w->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (w->fd < 0 || connect(w->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
			return fail(w, "cannot reach the bus at %s: %s", url);
		snprintf(host, hostlen, "localhost");
		snprintf(path, pathlen, "/");
		return 0;
	}
	if (strncmp(url, "ws://", 5) != 0) {
		errno = EINVAL;
		return fail(w, "bus address %s: expected unix:PATH or ws://HOST:PORT/ (%s)", url);
	}
	const char *hp = url + 5, *slash = strchr(hp, '/');
	char hostport[300], *h2, *port;
	snprintf(hostport, sizeof(hostport), "%.*s", (int)(slash ? (size_t)(slash - hp) : strlen(hp)), hp);
	snprintf(path, pathlen, "%s", slash ? slash : "/");
	if (hostport_split(hostport, "80", &h2, &port) < 0) {
		errno = EINVAL;
		return fail(w, "bus address %s: expected unix:PATH or ws://HOST:PORT/ (%s)", url);
	}
	/* The Host header: an IPv6 address in its brackets again. */
	snprintf(host, hostlen, strchr(h2, ':') ? "[%s]" : "%s", h2);
	struct sockaddr_storage ss[MAX_ADDRS];
	socklen_t sslen[MAX_ADDRS];
	int naddr = resolve(h2, port, ss, sslen), e = errno;
	free(port);
	errno = e;
	if (naddr < 0) {
		fail(w, getaddrinfo ? "cannot resolve %s: %s"
				    : "cannot resolve %s: this program is linked statically and takes "
				      "numeric addresses and localhost only",
		     h2);
		free(h2);
		return -1;
	}
	free(h2);
	/* One deadline for them all, not timeout_ms each. */
	int64_t deadline = now_mono_ms() + timeout_ms;
	int rc = -1;
	for (int i = 0; i < naddr && rc < 0; i++) {
		int64_t left = deadline - now_mono_ms();
		rc = connect_to(w, &ss[i], sslen[i], left > 0 ? (int)left : 0);
	}
	if (rc < 0)
		return fail(w, "cannot reach the bus at %s: %s", url);
	int fl = fcntl(w->fd, F_GETFL), one = 1;
	fcntl(w->fd, F_SETFL, fl & ~O_NONBLOCK);
	/* Each frame is a whole message someone waits for: no Nagle delay. */
	setsockopt(w->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return 0;
}

/* Blocking write/read of the handshake, within the deadline. */
static int io_all(struct wsc *w, bool writing, char *buf, size_t len, size_t *got, int64_t deadline)
{
	size_t done = 0;

	while (done < len) {
		int left = (int)(deadline - now_mono_ms());
		struct pollfd p = {w->fd, writing ? POLLOUT : POLLIN, 0};
		if (left <= 0 || poll(&p, 1, left) <= 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		ssize_t n = writing ? write(w->fd, buf + done, len - done) : read(w->fd, buf + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = ECONNRESET;
			return -1;
		}
		done += (size_t)n;
		if (!writing) {
			/* Reading the answer: stop at its blank line. */
			buf[done] = '\0';
			if (strstr(buf, "\r\n\r\n"))
				break;
		}
	}
	if (got)
		*got = done;
	return 0;
}

int wsc_open(struct wsc *w, const char *url, const char *protocol, int timeout_ms)
{
	char host[300], path[512], key[32], expect[64], req[1200], resp[4097];
	unsigned char nonce[16], digest[20];
	int64_t deadline = now_mono_ms() + timeout_ms;
	size_t got;

	*w = (struct wsc){.fd = -1};
	if (connect_url(w, url, host, sizeof(host), path, sizeof(path), timeout_ms) < 0)
		return -1;
	if (getrandom(nonce, sizeof(nonce), GRND_NONBLOCK) != (ssize_t)sizeof(nonce))
		for (size_t i = 0; i < sizeof(nonce); i++)
			nonce[i] = (unsigned char)random();
	base64(nonce, sizeof(nonce), key);
	int n = snprintf(req, sizeof(req),
			 "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
			 "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
			 "Sec-WebSocket-Protocol: %s\r\n\r\n", path, host, key, protocol);
	if (io_all(w, true, req, (size_t)n, NULL, deadline) < 0)
		return fail(w, "handshake with %s: %s", url);
	if (io_all(w, false, resp, sizeof(resp) - 1, &got, deadline) < 0)
		return fail(w, "handshake with %s: %s", url);
	resp[got] = '\0';
	char *end = strstr(resp, "\r\n\r\n");
	if (!end || strncmp(resp, "HTTP/1.1 101", 12) != 0) {
		errno = EPROTO;
		return fail(w, "%s refused the WebSocket upgrade (%s)", url);
	}
	/* Check the accept key the protocol defines. */
	char joined[128];
	snprintf(joined, sizeof(joined), "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
	sha1((unsigned char *)joined, strlen(joined), digest);
	base64(digest, sizeof(digest), expect);
	if (!strcasestr(resp, expect)) {
		errno = EPROTO;
		return fail(w, "%s answered with a wrong Sec-WebSocket-Accept (%s)", url);
	}
	/* Bytes after the handshake are the first frames. */
	end += 4;
	sbuf_add(&w->in, end, (size_t)(resp + got - end));
	fcntl(w->fd, F_SETFL, fcntl(w->fd, F_GETFL) | O_NONBLOCK);
	return 0;
}

void wsc_close(struct wsc *w)
{
	if (w->fd >= 0)
		close(w->fd);
	w->fd = -1;
	sbuf_free(&w->in);
	sbuf_free(&w->out);
	sbuf_free(&w->msg);
	w->in_off = 0;
}

/* --- frames ------------------------------------------------------------------------ */

static void put_frame(struct wsc *w, int opcode, const char *data, size_t len)
{
	unsigned char head[14];
	size_t h = 0;
	uint32_t mask;

	head[h++] = (unsigned char)(0x80 | opcode);
	if (len < 126) {
		head[h++] = (unsigned char)(0x80 | len);
	} else if (len < 65536) {
		head[h++] = 0x80 | 126;
		head[h++] = (unsigned char)(len >> 8);
		head[h++] = (unsigned char)len;
	} else {
		head[h++] = 0x80 | 127;
		for (int i = 7; i >= 0; i--)
			head[h++] = (unsigned char)((uint64_t)len >> (8 * i));
	}
	mask = (uint32_t)random();
	memcpy(head + h, &mask, 4);
	h += 4;
	sbuf_add(&w->out, head, h);
	size_t start = w->out.len;
	sbuf_add(&w->out, data, len);
	unsigned char *p = (unsigned char *)w->out.buf + start, *m = (unsigned char *)&mask;
	for (size_t i = 0; i < len; i++)
		p[i] ^= m[i & 3];
}

int wsc_flush(struct wsc *w)
{
	size_t done = 0;

	while (done < w->out.len) {
		ssize_t n = send(w->fd, w->out.buf + done, w->out.len - done, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			snprintf(w->err, sizeof(w->err), "lost the bus: %s", strerror(errno));
			w->closed = true;
			return -1;
		}
		done += (size_t)n;
	}
	sbuf_consume(&w->out, done);
	return 0;
}

void wsc_bye(struct wsc *w)
{
	if (w->fd < 0 || w->closed)
		return;
	put_frame(w, 0x8, "\x03\xe8", 2);	/* 1000: normal closure */
	wsc_flush(w);
}

int wsc_send(struct wsc *w, const char *text, size_t len)
{
	if (w->closed || w->fd < 0)
		return -1;
	put_frame(w, 1, text, len);
	return wsc_flush(w);
}

int wsc_read(struct wsc *w)
{
	char buf[65536];

	if (w->fd < 0)
		return -1;
	for (int i = 0; i < 16; i++) {
		ssize_t n = recv(w->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n <= 0) {
			snprintf(w->err, sizeof(w->err), "the bus closed the connection%s%s",
				 n < 0 ? ": " : "", n < 0 ? strerror(errno) : "");
			w->closed = true;
			return -1;
		}
		if (w->in_off && w->in_off == w->in.len) {	/* all taken: start over */
			w->in.len = 0;
			w->in_off = 0;
		}
		sbuf_add(&w->in, buf, (size_t)n);
		if ((size_t)n < sizeof(buf))
			return 0;
	}
	return 0;
}

const char *wsc_next(struct wsc *w, size_t *len)
{
	/* Keep the buffer small: drop what was taken, now and then. */
	if (w->in_off > (1u << 20) && w->in_off * 2 > w->in.len) {
		sbuf_consume(&w->in, w->in_off);
		w->in_off = 0;
	}
	for (;;) {
		const unsigned char *p = (const unsigned char *)w->in.buf + w->in_off;
		size_t avail = w->in.len - w->in_off, h = 2;
		if (avail < 2)
			return NULL;
		bool fin = p[0] & 0x80, masked = p[1] & 0x80;
		int op = p[0] & 0x0F;
		uint64_t plen = p[1] & 0x7F;
		if (plen == 126) {
			if (avail < 4)
				return NULL;
			plen = (uint64_t)p[2] << 8 | p[3];
			h = 4;
		} else if (plen == 127) {
			if (avail < 10)
				return NULL;
			plen = 0;
			for (int i = 0; i < 8; i++)
				plen = plen << 8 | p[2 + i];
			h = 10;
		}
		if (masked)
			h += 4;
		if (plen > WSC_FRAME_MAX) {
			/* cohortd sends no such frame (bus_max_message is at most
			 * 16 MiB); waiting for it would take memory without end,
			 * and h + plen could wrap */
			snprintf(w->err, sizeof(w->err), "the bus sent a frame of %llu bytes: not a cohort.v1 "
				 "frame, closing", (unsigned long long)plen);
			w->closed = true;
			return NULL;
		}
		if (avail < h + plen)
			return NULL;
		unsigned char *data = (unsigned char *)w->in.buf + w->in_off + h;
		if (masked)
			for (uint64_t i = 0; i < plen; i++)
				data[i] ^= p[h - 4 + (i & 3)];
		w->in_off += h + plen;
		switch (op) {
		case 0x8:	/* close: answer it, then we are done */
			if (!w->closed)
				put_frame(w, 0x8, "", 0);
			wsc_flush(w);
			w->closed = true;
			if (plen >= 2) {
				w->close_code = data[0] << 8 | data[1];
				snprintf(w->err, sizeof(w->err), "the bus closed the connection: %.*s (%d)",
					 (int)(plen - 2 > 200 ? 200 : plen - 2), (const char *)data + 2, w->close_code);
			} else {
				snprintf(w->err, sizeof(w->err), "the bus closed the connection");
			}
			return NULL;
		case 0x9:	/* ping */
			put_frame(w, 0xA, (const char *)data, plen);
			wsc_flush(w);
			continue;
		case 0xA:	/* pong */
			continue;
		default:
			break;
		}
		if (op == 0x0 || !fin || w->msg.len) {	/* a fragmented message */
			sbuf_add(&w->msg, data, plen);
			if (!fin)
				continue;
			*len = w->msg.len;
			w->msg.len = 0;	/* the bytes stay until the next fragment */
			return w->msg.buf;
		}
		*len = plen;
		return (const char *)data;
	}
}
