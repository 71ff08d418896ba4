/*
 * fuzz_control.c - the control socket's request reader: one request line
 * through ctl_parse_request, as control.c reads every line (the flat fast
 * path of jflat.c, else jansson, then the command table).  Also holds
 * jflat to its promise: whatever it accepts, jansson reads as the same
 * object, so the fast path can never change a request's meaning.
 */
#include "autoconfig.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"
#include "fuzz.h"
#include "wire.h"

static void check_jflat(const char *text, size_t len)
{
	json_t *flat = jflat_load(text, len);
	json_error_t err;

	if (!flat)
		return;	/* "ask jansson": nothing promised */
	json_t *ref = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
	if (!ref || !json_equal(flat, ref)) {
		char *a = json_dumps(flat, JSON_COMPACT | JSON_ENCODE_ANY);
		fprintf(stderr, "jflat read %.*s as %s, jansson %s%s\n", (int)len, text, a,
			ref ? "differs" : "refuses it: ", ref ? "" : err.text);
		abort();
	}
	json_decref(ref);
	json_decref(flat);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* A line as control.c hands it over: without its newline, and
	 * copied (handle_lines gives the parser a string of its own). */
	if (size > CTL_REQUEST_MAX)
		return 0;
	char *line = malloc(size + 1);
	memcpy(line, data, size);
	line[size] = '\0';

	json_t *resp = json_object();
	const struct ctl_command *cmd;
	json_object_set_new(resp, "ok", json_true());
	json_t *req = ctl_parse_request(line, size, resp, &cmd);
	if (!req == !json_is_false(json_object_get(resp, "ok")) || (req && !cmd) ||
	    (!req && !json_is_string(json_object_get(resp, "error")))) {
		fprintf(stderr, "ctl_parse_request: a request and no command, or neither and no error\n");
		abort();
	}
	/* The answer must be writable as the line cohortd sends. */
	char *out = json_dumps(resp, JSON_COMPACT | JSON_ENSURE_ASCII);
	if (!out)
		abort();
	free(out);
	json_decref(req);
	json_decref(resp);
	check_jflat(line, size);
	free(line);
	return 0;
}
