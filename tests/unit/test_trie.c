/* Unit tests of the topic trie and pattern matching (bus_trie.c). */
#include "autoconfig.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "bus_trie.h"

static char got[64][32];
static int ngot;

static void collect(void *sub, void *arg)
{
	(void)arg;
	snprintf(got[ngot++], sizeof(got[0]), "%s", (const char *)sub);
}

static bool has(const char *name)
{
	for (int i = 0; i < ngot; i++)
		if (strcmp(got[i], name) == 0)
			return true;
	return false;
}

static void match(struct trie *t, const char *topic)
{
	ngot = 0;
	trie_match(t, topic, collect, NULL);
}

Test(trie, literals_stars_and_rest)
{
	struct trie t = {0};
	const char *pats[] = {"a.b.c", "a.*.c", "a.>", "*.b.*", ">", "a.b", "x.y", "$dead.>", "*"};

	for (size_t i = 0; i < sizeof(pats) / sizeof(pats[0]); i++)
		trie_add(&t, pats[i], (void *)pats[i]);
	match(&t, "a.b.c");
	cr_assert_eq(ngot, 5);
	cr_assert(has("a.b.c") && has("a.*.c") && has("a.>") && has("*.b.*") && has(">"));
	match(&t, "a.b");
	cr_assert_eq(ngot, 3);
	cr_assert(has("a.b") && has("a.>") && has(">"));
	match(&t, "a");
	cr_assert_eq(ngot, 2);	/* ">" and "*", but not "a.>" (needs one more) */
	cr_assert(has(">") && has("*"));
	match(&t, "q.b.z");
	cr_assert_eq(ngot, 2);
	cr_assert(has("*.b.*") && has(">"));
	match(&t, "$dead.a.b");
	cr_assert_eq(ngot, 1);	/* wildcards do not reach the daemon's topics */
	cr_assert(has("$dead.>"));
	trie_free(&t);
}

Test(trie, remove_prunes)
{
	struct trie t = {0};
	char *a = "A", *b = "B";

	trie_add(&t, "x.y.z", a);
	trie_add(&t, "x.y.z", b);
	trie_add(&t, "x.*", a);
	cr_assert(trie_remove(&t, "x.y.z", a));
	cr_assert(!trie_remove(&t, "x.y.z", a));
	cr_assert(!trie_remove(&t, "no.such", a));
	match(&t, "x.y.z");
	cr_assert_eq(ngot, 1);
	cr_assert(trie_remove(&t, "x.y.z", b));
	cr_assert(trie_remove(&t, "x.*", a));
	cr_assert_eq(t.nsubs, 0);
	cr_assert_eq(t.root.below, 0);
	cr_assert_eq(t.root.children.len, 0);	/* every node pruned */
	match(&t, "x.y");
	cr_assert_eq(ngot, 0);
	trie_free(&t);
}

Test(trie, many_subscriptions_only_matching_visited)
{
	struct trie t = {0};
	static char names[10000][16];

	for (int i = 0; i < 10000; i++) {
		snprintf(names[i], sizeof(names[i]), "svc%d.events", i);
		trie_add(&t, names[i], names[i]);
	}
	match(&t, "svc1234.events");
	cr_assert_eq(ngot, 1);
	cr_assert_str_eq(got[0], "svc1234.events");
	for (int i = 0; i < 10000; i++)
		cr_assert(trie_remove(&t, names[i], names[i]));
	cr_assert_eq(t.root.below, 0);
	trie_free(&t);
}

Test(trie, topic_matches)
{
	cr_assert(topic_matches("a.>", "a.b.c"));
	cr_assert(!topic_matches("a.>", "a"));
	cr_assert(topic_matches("a.*", "a.b"));
	cr_assert(!topic_matches("a.*", "a.b.c"));
	cr_assert(topic_matches("*.*", "x.y"));
	cr_assert(!topic_matches("a.b", "a.bc"));
	cr_assert(topic_matches("a.b", "a.b"));
	cr_assert(!topic_matches(">", "$dead.x"));
	cr_assert(!topic_matches("*.x", "$dead.x"));
	cr_assert(topic_matches("$dead.>", "$dead.x"));
}

Test(trie, pattern_within)
{
	cr_assert(pattern_within("a.b", ">"));
	cr_assert(pattern_within("a.*", "a.>"));
	cr_assert(pattern_within("a.*.c", "a.*.*"));
	cr_assert(pattern_within("a.b.c", "a.*.c"));
	cr_assert(!pattern_within("a.*", "a.b"));
	cr_assert(!pattern_within("a.>", "a.*"));
	cr_assert(pattern_within("a.>", "a.>"));
	cr_assert(pattern_within("a.>", ">"));
	cr_assert(!pattern_within(">", "a.>"));
	cr_assert(!pattern_within("$dead.>", ">"));
	cr_assert(pattern_within("$dead.>", "$dead.>"));
	cr_assert(!pattern_within("a.b", "a.b.c"));
}

/* The rule as it was first written, segment by segment with strspn: the
 * one-pass topic_pattern_valid must agree with it on every string. */
static bool reference_valid(const char *pat, bool wild)
{
	const char *seg = pat;

	if (!*pat || strlen(pat) > 1024)
		return false;
	for (;;) {
		size_t len = strcspn(seg, ".");
		bool last = seg[len] == '\0';
		const char *body = seg;
		size_t blen = len;

		if (seg == pat && *seg == '$') {
			body++;
			blen--;
		}
		if (len == 0)
			return false;
		if (wild && len == 1 && (*seg == '*' || (*seg == '>' && last))) {
			/* a wildcard segment */
		} else if (blen == 0 || strspn(body, "abcdefghijklmnopqrstuvwxyz"
					"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") < blen) {
			return false;
		}
		if (last)
			return true;
		seg += len + 1;
	}
}

Test(trie, pattern_validity_agrees_with_the_reference_on_every_short_string)
{
	static const char alphabet[] = "aZ9_-.*>$ \xc3";
	const size_t k = sizeof(alphabet) - 1;
	char s[8];
	size_t checked = 0;

	for (size_t len = 0; len <= 6; len++) {
		size_t total = 1;
		for (size_t i = 0; i < len; i++)
			total *= k;
		for (size_t n = 0; n < total; n++) {
			size_t v = n;
			for (size_t i = 0; i < len; i++, v /= k)
				s[i] = alphabet[v % k];
			s[len] = '\0';
			for (int wild = 0; wild < 2; wild++)
				cr_assert_eq(topic_pattern_valid(s, wild), reference_valid(s, wild),
					     "\"%s\" (wild %d)", s, wild);
			checked++;
		}
	}
	cr_assert_gt(checked, 1900000);	/* 11^6 + 11^5 + ... */
}

Test(trie, pattern_length_limit)
{
	char s[1100];

	memset(s, 'a', sizeof(s) - 1);
	s[sizeof(s) - 1] = '\0';
	s[1024] = '\0';
	cr_assert(topic_pattern_valid(s, false));
	s[1024] = 'a';
	s[1025] = '\0';
	cr_assert_not(topic_pattern_valid(s, false));
	s[1023] = '.';
	cr_assert_not(topic_pattern_valid(s, true));
}
