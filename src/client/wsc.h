/*
 * wsc.h - a small WebSocket client transport (RFC 6455) for libcohort:
 * one non-blocking socket (unix or TCP), the opening handshake with the
 * cohort.v1 subprotocol, masked text frames out, frames in (fragments
 * joined, pings answered, close honoured).  No threads, no event loop of
 * its own: the caller polls wsc_fd().
 */
#ifndef COHORT_WSC_H
#define COHORT_WSC_H

#include <stdbool.h>
#include <stddef.h>

#include "util.h"

struct wsc {
	int fd;
	struct sbuf in;		/* bytes read; in.buf[in_off..] not yet taken */
	size_t in_off;
	struct sbuf out;	/* bytes to write */
	struct sbuf msg;	/* fragments of the message being received */
	bool closed;
	int close_code;		/* of the bus's close frame (0: none, or none said) */
	char err[256];
};

/* Connects to "unix:PATH" or "ws://HOST:PORT/PATH" and does the handshake,
 * blocking up to timeout_ms.  -1 with w->err. */
int wsc_open(struct wsc *w, const char *url, const char *protocol, int timeout_ms);
void wsc_close(struct wsc *w);
/* A close frame (1000), best effort, before a client goes for good. */
void wsc_bye(struct wsc *w);
/* Queues one text message and writes what the socket takes now. */
int wsc_send(struct wsc *w, const char *text, size_t len);
/* Writes queued bytes; -1 when the connection is gone. */
int wsc_flush(struct wsc *w);
/* Reads what is there (non-blocking); -1 when the connection is gone. */
int wsc_read(struct wsc *w);
/* The next whole text message, or NULL.  *len set; valid until the next call. */
const char *wsc_next(struct wsc *w, size_t *len);

#endif
