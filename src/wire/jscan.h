/*
 * jscan.h - the raw text of one member of a JSON object that jansson has
 * already accepted, and JSON checked as text, numbers of any size.  The bus passes a publisher's "data" on byte for byte:
 * taking it from the frame as it came is cheaper than dumping the value
 * jansson built, and a subscriber sees exactly what was published.
 */
#ifndef COHORT_JSCAN_H
#define COHORT_JSCAN_H

#include <jansson.h>
#include <stddef.h>

/*
 * The text of member KEY of the object TEXT (LEN bytes, valid JSON that a
 * parser has accepted: this only scans), without the white space around
 * it; *n is its length.  NULL when TEXT is not an object, has no such
 * member, or spells the key with escapes (the caller then dumps the
 * parsed value instead).
 */
const char *jscan_member(const char *text, size_t len, const char *key, size_t *n);

/*
 * The next element of the array TEXT (LEN bytes, valid JSON), without the
 * white space around it: *AT is 0 for the first and is moved past each;
 * *n is its length.  NULL after the last, or when TEXT is not an array.
 */
const char *jscan_item(const char *text, size_t len, size_t *at, size_t *n);

/*
 * Copies the JSON text TEXT (N bytes, valid JSON) to OUT (room for N bytes)
 * without the white space between tokens; returns the length written.
 * Numbers and strings stay as written: 1.50 stays 1.50.
 */
size_t jscan_compact(char *out, const char *text, size_t n);

/*
 * JSON numbers have no limit of size or precision (RFC 8259); jansson
 * refuses integers beyond 64 bits and reals beyond a double.  The bus
 * passes data on as text, so it judges data by the grammar alone:
 *
 * jscan_check: 0 when TEXT (LEN bytes) is JSON that json_loadb(FLAGS)
 * accepts once every number in it is within jansson's range, with \u0000
 * in strings allowed as well (valid JSON); -1 and ERR (json_loadb's error,
 * its positions those of TEXT) otherwise.  With JSON_DISABLE_EOF_CHECK,
 * ERR->position is where the value ends, as with json_loadb.
 *
 * jscan_load_around: for an object TEXT that json_loadb(FLAGS) refused,
 * the object parsed with its top-level member MEMBER set to null, when
 * the rest is JSON that jansson holds and TEXT passes jscan_check: only
 * MEMBER may hold what jansson cannot (the caller takes its text from
 * TEXT with jscan_member).  NULL otherwise, with ERR saying why (of the
 * rest of the object first), or ERR left as it was when TEXT has no
 * MEMBER.
 */
int jscan_check(const char *text, size_t len, size_t flags, json_error_t *err);
json_t *jscan_load_around(const char *text, size_t len, const char *member, size_t flags, json_error_t *err);

#endif
