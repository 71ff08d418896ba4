/* Unit tests of ws_scan (wsscan.c): frame headers followed through a
 * client's byte stream, fed whole or a byte at a time. */
#include "autoconfig.h"

#include <criterion/criterion.h>
#include <string.h>

#include "wsscan.h"

/* A masked client frame (key 1 2 3 4) with len bytes of payload at out. */
static size_t frame(unsigned char *out, unsigned char first, size_t len)
{
	size_t h = 0;

	out[h++] = first;
	if (len < 126) {
		out[h++] = 0x80 | (unsigned char)len;
	} else if (len < 65536) {
		out[h++] = 0x80 | 126;
		out[h++] = (unsigned char)(len >> 8);
		out[h++] = (unsigned char)len;
	} else {
		out[h++] = 0x80 | 127;
		for (int i = 7; i >= 0; i--)
			out[h++] = (unsigned char)(len >> (8 * i));
	}
	memcpy(out + h, "\1\2\3\4", 4);
	h += 4;
	memset(out + h, 'x', len);
	return h + len;
}

static unsigned char buf[200000];

/* Scans n bytes at once, then the same a byte at a time: both must agree. */
static size_t scan_both(size_t n, enum ws_fault *fault)
{
	struct ws_scan whole = {0}, bytes = {0};
	size_t at = ws_scan(&whole, buf, n, fault);
	enum ws_fault f = WS_FAULT_NONE;
	size_t i = 0;

	for (; i < n; i++) {
		size_t k = ws_scan(&bytes, buf + i, 1, &f);
		if (f) {
			cr_assert_eq(k, 0);
			break;
		}
	}
	cr_assert_eq(f, *fault);
	if (*fault) {
		/* byte-wise, the fault shows at the frame's second byte */
		cr_assert_eq(i, at + 1);
	}
	return at;
}

Test(wsscan, good_frames_of_every_length_pass)
{
	size_t n = 0;
	enum ws_fault fault;

	n += frame(buf + n, 0x81, 0);
	n += frame(buf + n, 0x01, 125);		/* a fragmented text message */
	n += frame(buf + n, 0x89, 125);		/* a PING between fragments */
	n += frame(buf + n, 0x00, 126);
	n += frame(buf + n, 0x80, 65536);	/* 8-byte length */
	n += frame(buf + n, 0x88, 2);		/* Close */
	cr_assert_eq(scan_both(n, &fault), n);
	cr_assert_eq(fault, WS_FAULT_NONE);
}

Test(wsscan, an_unmasked_frame_is_caught_at_its_start)
{
	size_t n = frame(buf, 0x81, 300);
	size_t bad = n;
	enum ws_fault fault;

	buf[n++] = 0x81;
	buf[n++] = 5;			/* no mask bit */
	memcpy(buf + n, "hello", 5);
	n += 5;
	cr_assert_eq(scan_both(n, &fault), bad);
	cr_assert_eq(fault, WS_FAULT_UNMASKED);
	cr_assert_str_eq(ws_fault_text(fault), "a frame from the client that is not masked");
}

Test(wsscan, a_control_frame_over_125_bytes_is_caught)
{
	size_t n = frame(buf, 0x81, 10);
	size_t bad = n;
	enum ws_fault fault;

	n += frame(buf + n, 0x89, 126);		/* a PING of 126 bytes */
	cr_assert_eq(scan_both(n, &fault), bad);
	cr_assert_eq(fault, WS_FAULT_CONTROL_SIZE);
	n = frame(buf, 0x88, 200);		/* a Close of 200 */
	cr_assert_eq(scan_both(n, &fault), 0);
	cr_assert_eq(fault, WS_FAULT_CONTROL_SIZE);
}
