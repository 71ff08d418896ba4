/*
 * fuzz_handshake.c - the WebSocket client's opening handshake (wsc_open
 * in src/wsc.c, which libcohort and cohortctl use): the input is what the
 * server answers to the upgrade request, over a real unix socket; each
 * "@ACCEPT@" in it becomes the Sec-WebSocket-Accept the request asks for,
 * so the fuzzer gets past the check.  After a handshake that succeeds,
 * what follows is read as frames (wsc_read, wsc_next) until the end.
 */
#include "autoconfig.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>

#include "fuzz.h"
#include "wsc.h"
#include "wsserver.h"

static volatile unsigned sum;	/* where the bytes read go */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct wsc w;

	ws_serve(data, size, true);
	if (wsc_open(&w, ws_url(), "cohort.v1", 2000) == 0) {
		for (int rounds = 0; rounds < 1000 && !w.closed; rounds++) {
			size_t len;
			const char *m;
			while ((m = wsc_next(&w, &len)))
				for (size_t i = 0; i < len; i++)	/* a reader reads every byte */
					sum += (unsigned char)m[i];
			struct pollfd p = {w.fd, POLLIN, 0};
			if (w.closed || poll(&p, 1, 2000) <= 0 || wsc_read(&w) < 0)
				break;
		}
	} else if (!w.err[0] || w.fd >= 0) {
		fprintf(stderr, "wsc_open failed without a reason, or left its socket open\n");
		abort();
	}
	wsc_close(&w);
	ws_done();
	return 0;
}
