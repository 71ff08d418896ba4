/* Regression tests for what the fuzzers of tests/fuzz found, each with
 * the input that did it (see doc/HACKING.md). */
#include "autoconfig.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "control.h"
#include "wsc.h"

/* fuzz_control: bad JSON with a backslash before a character of more
 * than one byte.  jansson's message quotes the first byte of that
 * character only (invalid escape near '"cigrat\' and 0xC3), json_string
 * refused the message as not UTF-8, and the client was answered
 * {"ok":false} with no error at all.
 * The request itself may be valid UTF-8 (the first) or not (as found). */
Test(fuzzfound, bad_json_quoted_by_halves_gets_its_error)
{
	static const char *const lines[] = {"{\"cigrat\\\xc3\xa9\"}", "{\"cigrat\\\xde\x9e"};

	for (size_t i = 0; i < 2; i++) {
		const struct ctl_command *cmd;
		json_t *resp = json_object();
		json_object_set_new(resp, "ok", json_true());
		cr_assert_null(ctl_parse_request(lines[i], strlen(lines[i]), resp, &cmd));
		cr_assert(json_is_false(json_object_get(resp, "ok")));
		const char *err = json_string_value(json_object_get(resp, "error"));
		cr_assert_not_null(err, "%s: no error in the answer", lines[i]);
		cr_assert(strstr(err, "bad JSON: invalid escape"), "%s", err);
		char *text = json_dumps(resp, JSON_COMPACT | JSON_ENSURE_ASCII);
		cr_assert_not_null(text, "the answer cannot be written");
		free(text);
		json_decref(resp);
	}
}

/* A wsc reading BYTES as if the bus had sent them. */
static void wsc_fed(struct wsc *w, int sv[2], const void *bytes, size_t n)
{
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	*w = (struct wsc){.fd = sv[0]};
	sbuf_add(&w->in, bytes, n);
}

/* fuzz_client, fuzz_handshake: a frame whose 64-bit length makes h + plen
 * wrap.  wsc_next took it as whole and returned a message of 2^64 - 10
 * bytes (masked, it XORed them: a heap overflow). */
Test(fuzzfound, a_frame_length_that_wraps_is_refused)
{
	static const unsigned char frames[][14] = {
		{0x81, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xf6, 'a', 'b'},
		{0x81, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xf2, 1, 2, 3, 4},
	};
	for (size_t i = 0; i < 2; i++) {
		struct wsc w;
		int sv[2];
		size_t len = 0;
		wsc_fed(&w, sv, frames[i], sizeof(frames[i]));
		const char *m = wsc_next(&w, &len);
		cr_assert_null(m, "frame %zu: a message of %zu bytes", i, len);
		cr_assert(w.closed, "frame %zu: the connection goes on", i);
		cr_assert(strstr(w.err, "not a cohort.v1 frame"), "%s", w.err);
		wsc_close(&w);
		close(sv[1]);
	}
}

/* The other side of the limit: a frame that is only incomplete waits. */
Test(fuzzfound, an_incomplete_frame_waits)
{
	static const unsigned char frame[] = {0x81, 0x7e, 0x01, 0x00, 'x'};
	struct wsc w;
	int sv[2];
	size_t len;

	wsc_fed(&w, sv, frame, sizeof(frame));
	cr_assert_null(wsc_next(&w, &len));
	cr_assert(!w.closed);
	wsc_close(&w);
	close(sv[1]);
}
