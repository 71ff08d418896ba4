/*
 * wire_fields.c - a request's fields checked against its declaration
 * (wire.h), once, before its handler runs: the control socket's commands
 * and the lock requests of both transports are declared this way, so a
 * mistake gets the same words wherever it is made.
 */
#include "autoconfig.h"

#include <stdio.h>
#include <string.h>

#include "util.h"
#include "wire.h"

/* What FIELD must be, in words: "an integer from 0 to 100000". */
static void describe(const struct wire_field *f, char *out, size_t len)
{
	if (f->what) {
		snprintf(out, len, "%s", f->what);
	} else if (f->choices) {
		size_t at = 0;
		for (size_t i = 0; f->choices[i] && at < len; i++)
			at += (size_t)snprintf(out + at, len - at, "%s\"%s\"",
					       i == 0 ? "" : f->choices[i + 1] ? ", " : " or ", f->choices[i]);
	} else if (f->type == WIRE_INT && f->min < f->max) {
		snprintf(out, len, "an integer from %lld to %lld", f->min, f->max);
	} else {
		static const char *const by_type[] = {
			[WIRE_STRING] = "a string", [WIRE_INT] = "an integer",
			[WIRE_BOOL] = "true or false", [WIRE_LIST] = "a list",
		};
		snprintf(out, len, "%s", by_type[f->type]);
	}
}

static bool one_of(const char *const *choices, const char *s)
{
	for (size_t i = 0; choices[i]; i++)
		if (strcmp(choices[i], s) == 0)
			return true;
	return false;
}

static bool fits(const struct wire_field *f, json_t *v)
{
	switch (f->type) {
	case WIRE_STRING:
		return json_is_string(v) && (!f->choices || one_of(f->choices, json_string_value(v)));
	case WIRE_INT:
		return json_is_integer(v) &&
		       (f->min >= f->max || (json_integer_value(v) >= f->min && json_integer_value(v) <= f->max));
	case WIRE_BOOL:
		return json_is_boolean(v);
	case WIRE_LIST:
		return json_is_array(v);
	}
	return false;
}

/* A member of REQ that FIELDS does not declare: its error, naming the
 * declared field it is nearest to. */
static void unknown_field(const char *key, const struct wire_field *fields, char *err, size_t errlen)
{
	const char *names[32];
	size_t n = 0;

	for (const struct wire_field *f = fields; f->name && n < ARRAY_LEN(names); f++)
		names[n++] = f->name;
	const char *m = did_you_mean(key, names, n);
	if (m) {
		snprintf(err, errlen, "unknown field \"%s\" (did you mean \"%s\"?)", key, m);
	} else if (n) {
		size_t at = (size_t)snprintf(err, errlen, "unknown field \"%s\" (known: ", key);
		for (size_t i = 0; i < n && at < errlen; i++)
			at += (size_t)snprintf(err + at, errlen - at, "%s%s", i ? ", " : "", names[i]);
		if (at < errlen)
			snprintf(err + at, errlen - at, ")");
	} else {
		snprintf(err, errlen, "unknown field \"%s\" (this request takes none)", key);
	}
}

/* The declaration of KEY in FIELDS, or NULL. */
static const struct wire_field *declared(const struct wire_field *fields, const char *key)
{
	for (const struct wire_field *f = fields; f->name; f++)
		if (strcmp(f->name, key) == 0)
			return f;
	return NULL;
}

/*
 * One pass over the members the request has (a few), not one lookup per
 * field it may have: the control socket checks every request, and the
 * lock requests are its hot path.  Then the required ones it lacks.
 */
int wire_check_fields(json_t *req, const struct wire_field *fields, bool strict, const char *envelope,
		      char *err, size_t errlen)
{
	char what[160];
	size_t required = 0;
	const char *key;
	json_t *v;

	json_object_foreach(req, key, v) {
		const struct wire_field *f = declared(fields, key);
		if (!f) {
			if (strict && !(envelope && strcmp(key, envelope) == 0)) {
				unknown_field(key, fields, err, errlen);
				return -1;
			}
			continue;
		}
		if (!fits(f, v)) {
			describe(f, what, sizeof(what));
			snprintf(err, errlen, "field \"%s\" must be %s", f->name, what);
			return -1;
		}
		required += f->required;
	}
	for (const struct wire_field *f = fields; f->name; f++)
		if (f->required && required-- == 0) {
			/* fewer required fields than declared: name the first missing */
			for (f = fields; f->name; f++)
				if (f->required && !json_object_get(req, f->name))
					break;
			describe(f, what, sizeof(what));
			snprintf(err, errlen, "missing field \"%s\" (%s)", f->name, what);
			return -1;
		}
	return 0;
}
