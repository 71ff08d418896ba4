/*
 * wsserver.h - the far end for the client-side harnesses: a unix socket
 * in the scratch directory and a thread that takes one connection per
 * input, reads the client's upgrade request and answers with the
 * input's bytes, then ends its side so the client never waits.
 */
#ifndef COHORT_FUZZ_WSSERVER_H
#define COHORT_FUZZ_WSSERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* "unix:PATH" of the socket (made on the first call). */
const char *ws_url(void);
/* Serves the next connection in a thread:
 *   handshake true:  the input is the whole answer to the upgrade
 *                    request, each "@ACCEPT@" in it replaced by the
 *                    Sec-WebSocket-Accept that the request's key asks for;
 *   handshake false: a good 101 answer, a welcome, {"op":"ok","id":1}
 *                    (the answer to the first call), then the input. */
void ws_serve(const uint8_t *data, size_t size, bool handshake);
/* Waits for that thread (once the client has closed its end). */
void ws_done(void);

#endif
