/*
 * bus_http.c - plain HTTP pages on the bus listeners (GET /metrics,
 * /healthz, /api/status, the dashboard): same sockets, same libwebsockets
 * context, same loop as the WebSocket side.
 *
 * The bus knows no page itself: whoever runs it registers a page per path
 * with bus_http_page (cohortd does at start, src/metrics/), and a page is
 * a callback that writes a body.  The bus turns it into one HTTP/1.1
 * answer, "Connection: close", written from the writeable callback in
 * chunks (a /metrics of 500 services is some hundreds of KiB: more than a
 * socket takes at once), then closes.  A path nobody registered is 404; "/"
 * without a page says how to open the bus (426), as it always did.
 *
 * A reply in progress is kept by its wsi until lws destroys the wsi.
 */
#include "autoconfig.h"

#include <libwebsockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "log.h"

#define HTTP_CHUNK 65536	/* bytes per writeable callback */

struct http_reply {
	struct sbuf head;	/* status line and headers */
	struct sbuf body;	/* as the page wrote it (not copied) */
	size_t off;		/* of head then body, written so far */
	bool done;		/* all handed to lws: close once it is flushed */
};

static void reply_free(struct http_reply *r)
{
	sbuf_free(&r->head);
	sbuf_free(&r->body);
	free(r);
}

static const char *reason_phrase(unsigned status)
{
	switch (status) {
	case 200:
		return "OK";
	case 400:
		return "Bad Request";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 426:
		return "Upgrade Required";
	case 500:
		return "Internal Server Error";
	case 503:
		return "Service Unavailable";
	default:
		return "Unknown";
	}
}

int bus_http_page(struct bus *b, const char *path, bus_http_fn fn, void *arg)
{
	for (size_t i = 0; i < b->npages; i++)
		if (strcmp(b->pages[i].path, path) == 0) {
			b->pages[i].fn = fn;
			b->pages[i].arg = arg;
			return 0;
		}
	if (b->npages == ARRAY_LEN(b->pages))
		return -1;
	b->pages[b->npages++] = (struct bus_http_page){path, fn, arg};
	return 0;
}

static const struct bus_http_page *find_page(const struct bus *b, const char *path)
{
	for (size_t i = 0; i < b->npages; i++)
		if (strcmp(b->pages[i].path, path) == 0)
			return &b->pages[i];
	return NULL;
}

/* Writes what the socket takes of r, up to a chunk; 0 to go on, -1 when
 * the reply is out (lws closes the connection) or the socket failed. */
static int write_chunk(struct lws *wsi, struct http_reply *r)
{
	unsigned char buf[LWS_PRE + HTTP_CHUNK];

	if (r->done)
		return lws_partial_buffered(wsi) ? (lws_callback_on_writable(wsi), 0) : -1;
	size_t total = r->head.len + r->body.len, n = 0;
	while (n < HTTP_CHUNK && r->off + n < total) {	/* the end of head, then body */
		size_t at = r->off + n, k;
		const char *from = at < r->head.len ? r->head.buf + at : r->body.buf + (at - r->head.len);
		k = at < r->head.len ? r->head.len - at : total - at;
		if (k > HTTP_CHUNK - n)
			k = HTTP_CHUNK - n;
		memcpy(buf + LWS_PRE + n, from, k);
		n += k;
	}
	if (lws_write(wsi, buf + LWS_PRE, n, LWS_WRITE_HTTP) < (int)n)
		return -1;
	r->off += n;
	r->done = r->off == total;
	if (r->done && !lws_partial_buffered(wsi))
		return -1;
	lws_callback_on_writable(wsi);	/* the next chunk, or the tail lws keeps */
	return 0;
}

/* Starts the answer: status, headers and body (taken; not sent for HEAD),
 * written from the writeable callbacks that follow. */
static int reply(struct bus *b, struct lws *wsi, unsigned status, const char *type, struct sbuf *body)
{
	bool head = lws_hdr_total_length(wsi, WSI_TOKEN_HEAD_URI) > 0;
	struct http_reply *r = xcalloc(1, sizeof(*r));

	sbuf_addf(&r->head, "HTTP/1.1 %u %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
		  "Cache-Control: no-store\r\nConnection: close\r\n%s\r\n", status, reason_phrase(status), type,
		  body->len, status == 426 ? "Upgrade: websocket\r\nSec-WebSocket-Protocol: " BUS_PROTOCOL "\r\n" : "");
	if (!head)
		r->body = *body;
	else
		sbuf_free(body);
	*body = (struct sbuf){0};
	struct http_reply *old = intmap_put(&b->http_replies, (int64_t)(intptr_t)wsi, r);
	if (old)	/* a second request on the connection: the first is over */
		reply_free(old);
	return write_chunk(wsi, r);
}

int bus_http_serve(struct bus *b, struct lws *wsi, const char *path)
{
	struct sbuf body = {0};
	const char *type = "text/plain; charset=utf-8";
	unsigned status;
	char method[16] = "";

	if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0 && lws_hdr_total_length(wsi, WSI_TOKEN_HEAD_URI) <= 0)
		str_copy(method, sizeof(method), "not GET");
	const struct bus_http_page *p = path ? find_page(b, path) : NULL;
	if (p && method[0]) {
		status = 405;
		sbuf_adds(&body, "only GET and HEAD are served here\n");
	} else if (p) {
		status = p->fn(p->arg, path, &body, &type);
	} else if (path && strcmp(path, "/") == 0) {
		status = 426;
		sbuf_adds(&body, "this is the cohort bus: open a WebSocket with the subprotocol " BUS_PROTOCOL "\n");
	} else {
		status = 404;
		sbuf_adds(&body, "not found: this is the cohort bus, a WebSocket on / with the subprotocol "
			  BUS_PROTOCOL);
		for (size_t i = 0; i < b->npages; i++)
			sbuf_addf(&body, "%s %s", i ? "," : "; pages:", b->pages[i].path);
		sbuf_addc(&body, '\n');
	}
	return reply(b, wsi, status, type, &body);
}

int bus_http_writeable(struct bus *b, struct lws *wsi)
{
	struct http_reply *r = intmap_get(&b->http_replies, (int64_t)(intptr_t)wsi);

	return r ? write_chunk(wsi, r) : -1;
}

void bus_http_gone(struct bus *b, struct lws *wsi)
{
	struct http_reply *r = intmap_del(&b->http_replies, (int64_t)(intptr_t)wsi);

	if (r)
		reply_free(r);
}

void bus_http_free(struct bus *b)
{
	size_t it = 0;
	void *v;

	while (intmap_next(&b->http_replies, &it, NULL, &v))
		reply_free(v);
	intmap_free(&b->http_replies);
}
