/*
 * util.h - small helpers every part of cohort shares: allocation that cannot
 * fail silently, growable strings and string vectors, time, and the parsers
 * for the value kinds the config and the wire formats use (durations, sizes,
 * booleans).  Nothing here knows about services or sockets.
 */
#ifndef COHORT_UTIL_H
#define COHORT_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>

#define UNUSED __attribute__((unused))
#define PRINTF(f, a) __attribute__((format(printf, f, a)))
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define container_of(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* Allocation failure is not a condition cohort can recover from in a
 * meaningful way: these abort with a message instead of returning NULL. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) PRINTF(1, 2);

/* A growable byte/string buffer; always NUL-terminated when len > 0. */
struct sbuf {
	char *buf;
	size_t len;
	size_t cap;
};
/* Room for N more bytes at the end, written through the pointer; then
 * sbuf_commit with the end of what was written. No other call between. */
char *sbuf_reserve(struct sbuf *b, size_t n);
void sbuf_commit(struct sbuf *b, char *end);
void sbuf_add(struct sbuf *b, const void *data, size_t n);
void sbuf_adds(struct sbuf *b, const char *s);
void sbuf_addc(struct sbuf *b, char c);
void sbuf_addf(struct sbuf *b, const char *fmt, ...) PRINTF(2, 3);
void sbuf_vaddf(struct sbuf *b, const char *fmt, va_list ap);
void sbuf_consume(struct sbuf *b, size_t n);
char *sbuf_steal(struct sbuf *b);
void sbuf_free(struct sbuf *b);

/* A NULL-terminated vector of owned strings (argv, lists). */
struct strv {
	char **v;
	size_t n;
	size_t cap;
};
void strv_push(struct strv *sv, const char *s);
void strv_push_owned(struct strv *sv, char *s);
void strv_free(struct strv *sv);
void strv_copy(struct strv *dst, const struct strv *src);
/* Moves sv's array and strings into one block, for a list kept long and
 * never changed again: one allocation, not one per string.  Free it with
 * free(sv->v), not strv_free. */
void strv_pack(struct strv *sv);
bool strv_equal(const struct strv *a, const struct strv *b);
bool strv_contains(const struct strv *sv, const char *s);
/* Joins with sep into a new string. */
char *strv_join(const struct strv *sv, const char *sep);

/* Milliseconds on the monotonic clock and on the wall clock. */
int64_t now_mono_ms(void);
int64_t now_wall_ms(void);
/* "2026-11-26T10:02:00.123Z" into buf (at least 32 bytes). */
void format_wall_ms(int64_t ms, char *buf, size_t len);

/* Value parsers: 0 on success, -1 with *why (a static string) saying what
 * was expected. */
int parse_duration_ms(const char *s, int64_t *out, const char **why);
int parse_size(const char *s, uint64_t *out, const char **why);
int parse_bool(const char *s, bool *out, const char **why);
int parse_uint(const char *s, uint64_t max, uint64_t *out, const char **why);
/* The decimal digits of v at w (at most 20, no NUL); returns the end.
 * Without printf, for the hot paths that write numbers. */
char *put_decimal(char *w, uint64_t v);
/* "2m10s", "3d4h", "250ms": the two largest units, for humans. */
void format_duration_ms(int64_t ms, char *buf, size_t len);
/* The same, with the milliseconds of a duration under a minute: "1s963ms". */
void format_delay_ms(int64_t ms, char *buf, size_t len);

/* Levenshtein distance, capped: returns cap+1 when larger (cheap reject). */
size_t edit_distance(const char *a, const char *b, size_t cap);
/* Among cands[0..n), the closest to word within a sensible distance, or NULL. */
const char *did_you_mean(const char *word, const char *const *cands, size_t n);

/* Copies src into dst[len], cutting it short if it must (log text), never
 * in the middle of a UTF-8 character. */
void str_copy(char *dst, size_t len, const char *src);
/* *dst becomes a heap copy of src, or NULL when src is NULL or empty (the
 * old one freed; src may be *dst itself).  For texts most holders leave
 * empty: a NULL costs nothing, a fixed array its whole size. */
void str_set(char **dst, const char *src);
/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid. */
size_t utf8_seq(const unsigned char *s, size_t n);
/* Is s[0..n) all UTF-8 (NUL included: WebSocket text may hold it)? */
bool utf8_valid(const void *s, size_t n);
/* Replaces every byte that is not valid UTF-8 (and NUL) with '?', in place. */
void utf8_fix(char *s, size_t n);
/* A NUL-terminated copy of s[0..n) with bad bytes as U+FFFD. */
char *utf8_clean(const char *s, size_t n);
/* Trims ASCII whitespace in place; returns s advanced past leading space. */
char *str_trim(char *s);
bool str_starts(const char *s, const char *prefix);
/* fnmatch()-style glob for names: '*' and '?' only (no '/'-specialness). */
bool glob_match(const char *pattern, const char *name);

/* Makes a directory and its parents, mode for the new ones. */
int mkdir_p(const char *path, unsigned mode);
/* Writes data to path.new, fsyncs, renames over path, fsyncs the dir. */
int write_file_atomic(const char *path, const void *data, size_t len);
/* Directory part of path ("." if none), newly allocated. */
char *path_dirname(const char *path);
/* path if absolute, else dir/path; newly allocated. */
char *path_join(const char *dir, const char *path);

int set_nonblock(int fd);
int set_cloexec(int fd);

#endif
