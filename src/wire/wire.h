/*
 * wire.h - cohort's JSON, read and written by hand where jansson would
 * cost too much, and the fields a request may carry, declared.  Every
 * hand-written reader and writer of the control and bus protocols is here
 * (and nowhere else), and tests/unit/test_wire.c runs the same inputs
 * through each of them and through jansson and checks that they agree.
 *
 *   wire_fields.c   a request's fields checked against a table
 */
#ifndef COHORT_WIRE_H
#define COHORT_WIRE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* --- a request's fields, declared (wire_fields.c) ---------------------------- */

enum wire_type {
	WIRE_STRING = 1,
	WIRE_INT,
	WIRE_BOOL,
	WIRE_LIST,	/* an array; its items are the handler's to check */
};

struct wire_field {
	const char *name;
	enum wire_type type;
	bool required;
	long long min, max;		/* WIRE_INT: its range, when min < max */
	const char *what;		/* what it must be, for errors; else by type */
	const char *const *choices;	/* WIRE_STRING: its only values, NULL-ended */
};

/*
 * Checks the object REQ against FIELDS (ended by a NULL name): a required
 * field missing, or one of the wrong type, out of range or not one of its
 * choices, gives -1 and ERR naming it (`field "lines" must be an integer
 * from 0 to 100000`).  With STRICT, so does a member that is neither
 * declared nor ENVELOPE (the member naming the request, as "cmd"): `unknown
 * field "line" (did you mean "lines"?)`, as the config loader says it.
 */
int wire_check_fields(json_t *req, const struct wire_field *fields, bool strict, const char *envelope,
		      char *err, size_t errlen);

#endif
