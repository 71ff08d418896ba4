/*
 * wsscan.h - the headers of the frames a WebSocket client sends, followed
 * through the byte stream (payloads skipped, not read), for the two faults
 * libwebsockets 4.1 lets through or drops without a Close frame: a frame
 * that is not masked (RFC 6455 5.1) and a control frame announcing more
 * than 125 bytes (5.5).  Both show in a frame's second byte.
 */
#ifndef COHORT_WSSCAN_H
#define COHORT_WSSCAN_H

#include <stddef.h>
#include <stdint.h>

enum ws_fault {
	WS_FAULT_NONE,
	WS_FAULT_UNMASKED,	/* a client frame without a mask */
	WS_FAULT_CONTROL_SIZE,	/* a Close, PING or PONG of more than 125 bytes */
};

enum ws_scan_state {
	WS_SCAN_OPCODE,		/* the first byte of a header */
	WS_SCAN_LENGTH,		/* the second: mask bit and length */
	WS_SCAN_EXTENDED,	/* 2 or 8 bytes of length */
	WS_SCAN_KEY,		/* 4 bytes of mask */
	WS_SCAN_PAYLOAD,	/* skipped */
};

struct ws_scan {
	enum ws_scan_state state;
	uint8_t opcode;
	unsigned need;		/* bytes still to come in EXTENDED or KEY */
	uint64_t left;		/* bytes of payload still to skip */
};

/*
 * Follows n more bytes of the stream.  Returns how many of them come
 * before the first frame with a fault (n if none), and the fault; after a
 * fault the scan is over (the connection must be failed).
 */
size_t ws_scan(struct ws_scan *s, const unsigned char *p, size_t n, enum ws_fault *fault);

/* A fault in a few words, for the reason of a Close frame. */
const char *ws_fault_text(enum ws_fault fault);

#endif
