/*
 * jscan.h - the raw text of one member of a JSON object that jansson has
 * already accepted.  The bus passes a publisher's "data" on byte for byte:
 * taking it from the frame as it came is cheaper than dumping the value
 * jansson built, and a subscriber sees exactly what was published.
 */
#ifndef COHORT_JSCAN_H
#define COHORT_JSCAN_H

#include <stddef.h>

/*
 * The text of member KEY of the object TEXT (LEN bytes, valid JSON that a
 * parser has accepted: this only scans), without the white space around
 * it; *n is its length.  NULL when TEXT is not an object, has no such
 * member, or spells the key with escapes (the caller then dumps the
 * parsed value instead).
 */
const char *jscan_member(const char *text, size_t len, const char *key, size_t *n);

#endif
