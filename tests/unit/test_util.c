/* Unit tests of util.c and map.c: value parsers, formatting, the maps. */
#include "autoconfig.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "map.h"
#include "util.h"

Test(duration, units_and_bare_seconds)
{
	int64_t ms;
	const char *why;
	struct {
		const char *in;
		int64_t ms;
	} ok[] = {
		{"250ms", 250}, {"10s", 10000}, {"2m", 120000}, {"1h", 3600000},
		{"5", 5000}, {"0", 0}, {"1.5s", 1500}, {" 3s ", 3000}, {"1d", 86400000},
		{"100d", 8640000000LL}, {"0.25", 250}, {"2 min", 120000},
	};
	for (size_t i = 0; i < ARRAY_LEN(ok); i++) {
		cr_assert_eq(parse_duration_ms(ok[i].in, &ms, &why), 0, "%s", ok[i].in);
		cr_assert_eq(ms, ok[i].ms, "%s -> %lld", ok[i].in, (long long)ms);
	}
}

Test(duration, rejects_garbage)
{
	int64_t ms;
	const char *why = NULL;
	const char *bad[] = {"", "s", "-1s", "10x", "1e3", "0x10", "10 s s", "101d", "nan", "inf", "1..2s"};

	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		cr_assert_eq(parse_duration_ms(bad[i], &ms, &why), -1, "%s", bad[i]);
		cr_assert(strstr(why, "duration"), "%s", why);
	}
}

Test(size, units)
{
	uint64_t v;
	const char *why;

	cr_assert_eq(parse_size("512K", &v, &why), 0);
	cr_assert_eq(v, 512 * 1024);
	cr_assert_eq(parse_size("10M", &v, &why), 0);
	cr_assert_eq(v, 10 * 1048576);
	cr_assert_eq(parse_size("1G", &v, &why), 0);
	cr_assert_eq(v, 1073741824ULL);
	cr_assert_eq(parse_size("100", &v, &why), 0);
	cr_assert_eq(v, 100);
	cr_assert_eq(parse_size("1.5K", &v, &why), 0);
	cr_assert_eq(v, 1536);
	cr_assert_eq(parse_size("10X", &v, &why), -1);
	cr_assert_eq(parse_size("-1", &v, &why), -1);
	cr_assert_eq(parse_size("2048G", &v, &why), -1);
}

Test(bool, every_spelling)
{
	bool b;
	const char *why;
	const char *yes[] = {"yes", "true", "on", "1", "YES", "True"};
	const char *no[] = {"no", "false", "off", "0", "No"};

	for (size_t i = 0; i < ARRAY_LEN(yes); i++) {
		b = false;
		cr_assert_eq(parse_bool(yes[i], &b, &why), 0);
		cr_assert(b, "%s", yes[i]);
	}
	for (size_t i = 0; i < ARRAY_LEN(no); i++) {
		b = true;
		cr_assert_eq(parse_bool(no[i], &b, &why), 0);
		cr_assert(!b, "%s", no[i]);
	}
	cr_assert_eq(parse_bool("maybe", &b, &why), -1);
	cr_assert(strstr(why, "yes/no"));
}

Test(format, durations_for_humans)
{
	char buf[32];
	struct {
		int64_t ms;
		const char *s;
	} cases[] = {
		{250, "250ms"}, {1000, "1s"}, {130000, "2m10s"}, {3 * 86400000LL + 4 * 3600000LL, "3d4h"},
		{3600000, "1h"}, {59999, "59s"}, {1963, "1s"}, {-5, "0ms"}, {0, "0ms"}, {999, "999ms"},
		{86399999, "23h59m"}, {90061000, "1d1h"}, {400 * 86400000LL, "400d"},
		{INT64_MAX, "106751991167d7h"},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		format_duration_ms(cases[i].ms, buf, sizeof(buf));
		cr_assert_str_eq(buf, cases[i].s);
	}
	format_delay_ms(1963, buf, sizeof(buf));
	cr_assert_str_eq(buf, "1s963ms", "a delay under a minute keeps its milliseconds");
	format_delay_ms(10050, buf, sizeof(buf));
	cr_assert_str_eq(buf, "10s50ms");
	format_delay_ms(3000, buf, sizeof(buf));
	cr_assert_str_eq(buf, "3s");
	format_delay_ms(130500, buf, sizeof(buf));
	cr_assert_str_eq(buf, "2m10s");
	char small[4];
	format_duration_ms(130000, small, sizeof(small));
	cr_assert_str_eq(small, "2m1", "cut to the buffer, still terminated");
}

Test(suggest, edit_distance_and_did_you_mean)
{
	const char *keys[] = {"command", "directory", "restart", "ready", "requires"};

	cr_assert_eq(edit_distance("comand", "command", 3), 1);
	cr_assert_eq(edit_distance("kitten", "sitting", 5), 3);
	cr_assert_eq(edit_distance("abc", "abcdefgh", 2), 3);	/* capped */
	cr_assert_str_eq(did_you_mean("comand", keys, 5), "command");
	cr_assert_str_eq(did_you_mean("requirs", keys, 5), "requires");
	cr_assert_str_eq(did_you_mean("Restart", keys, 5), "restart");
	cr_assert_null(did_you_mean("zzzzzzzz", keys, 5));
}

Test(glob, star_and_question)
{
	cr_assert(glob_match("*", "anything"));
	cr_assert(glob_match("db.*", "db.users"));
	cr_assert(glob_match("a?c", "abc"));
	cr_assert(glob_match("*x*y", "axxby"));
	cr_assert(!glob_match("db.*", "cache.x"));
	cr_assert(!glob_match("a?c", "ac"));
	cr_assert(glob_match("", ""));
	cr_assert(!glob_match("", "a"));
}

Test(map, put_get_delete_grow)
{
	struct map m = {0};
	char keys[2000][16];

	for (int i = 0; i < 2000; i++) {
		snprintf(keys[i], sizeof(keys[i]), "k%d", i);
		cr_assert_null(map_put(&m, keys[i], (void *)(intptr_t)(i + 1)));
	}
	cr_assert_eq(m.len, 2000);
	for (int i = 0; i < 2000; i++)
		cr_assert_eq((intptr_t)map_get(&m, keys[i]), i + 1);
	for (int i = 0; i < 2000; i += 2)
		cr_assert_eq((intptr_t)map_del(&m, keys[i]), i + 1);
	cr_assert_eq(m.len, 1000);
	for (int i = 0; i < 2000; i++)
		cr_assert_eq((intptr_t)map_get(&m, keys[i]), i % 2 ? i + 1 : 0);
	size_t it = 0, seen = 0;
	const char *k;
	while (map_next(&m, &it, &k, NULL))
		seen++;
	cr_assert_eq(seen, 1000);
	map_free(&m);
}

Test(intmap, put_get_delete_churn)
{
	struct intmap m = {0};

	/* Churn: many inserts and deletes must not fill the table with
	 * tombstones forever. */
	for (int64_t i = 0; i < 100000; i++) {
		intmap_put(&m, i, (void *)(intptr_t)(i + 1));
		if (i >= 10)
			cr_assert_eq((intptr_t)intmap_del(&m, i - 10), i - 9);
	}
	cr_assert_eq(m.len, 10);
	cr_assert_leq(m.cap, 64);
	cr_assert_eq((intptr_t)intmap_get(&m, 99999), 100000);
	cr_assert_null(intmap_get(&m, 5));
	intmap_free(&m);
}

Test(paths, join_and_dirname)
{
	char *s;

	s = path_join("/etc/cohort", "conf.d/*.ini");
	cr_assert_str_eq(s, "/etc/cohort/conf.d/*.ini");
	free(s);
	s = path_join("/etc/cohort", "/abs");
	cr_assert_str_eq(s, "/abs");
	free(s);
	s = path_dirname("/etc/cohort/cohort.ini");
	cr_assert_str_eq(s, "/etc/cohort");
	free(s);
	s = path_dirname("cohort.ini");
	cr_assert_str_eq(s, ".");
	free(s);
	s = path_dirname("/x");
	cr_assert_str_eq(s, "/");
	free(s);
}

Test(utf8, whole_texts)
{
	cr_assert(utf8_valid("", 0));
	cr_assert(utf8_valid("a\0b", 3));	/* NUL is a character */
	cr_assert(utf8_valid("caf\xC3\xA9 \xF0\x9F\x98\x80", 10));
	cr_assert_not(utf8_valid("caf\xC3", 4));	/* ends inside a character */
	cr_assert_not(utf8_valid("\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5\xED\xA0\x80edited", 18));
	cr_assert_not(utf8_valid("\xF4\x90\x80\x80", 4));	/* over U+10FFFF */
	cr_assert_not(utf8_valid("ok\xFE", 3));
}

/* The ASCII runs are read eight bytes at a time: a bad or a good sequence
 * anywhere in or across those words is found all the same. */
Test(utf8, every_position_in_long_texts)
{
	char buf[41];

	for (size_t k = 0; k < sizeof(buf); k++) {
		memset(buf, 'a', sizeof(buf));
		buf[k] = '\xFF';
		cr_assert_not(utf8_valid(buf, sizeof(buf)), "0xFF at %zu", k);
		memset(buf, 'a', sizeof(buf));
		buf[k] = '\0';
		cr_assert(utf8_valid(buf, sizeof(buf)), "NUL at %zu", k);
		if (k + 1 < sizeof(buf)) {
			buf[k] = '\xC3';
			buf[k + 1] = '\xA9';
			cr_assert(utf8_valid(buf, sizeof(buf)), "e acute at %zu", k);
			cr_assert_not(utf8_valid(buf, k + 1), "cut after its first byte at %zu", k);
			buf[k + 1] = 'a';
			cr_assert_not(utf8_valid(buf, sizeof(buf)), "a lone lead byte at %zu", k);
		}
	}
}

Test(utf8, sequences_and_cleaning)
{
	const unsigned char ok[] = "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80";
	cr_assert_eq(utf8_seq(ok, 1), 1);
	cr_assert_eq(utf8_seq(ok + 1, 2), 2);
	cr_assert_eq(utf8_seq(ok + 3, 3), 3);
	cr_assert_eq(utf8_seq(ok + 6, 4), 4);
	cr_assert_eq(utf8_seq((const unsigned char *)"\xC3", 1), 0);	/* cut short */
	cr_assert_eq(utf8_seq((const unsigned char *)"\xC0\xAF", 2), 0);	/* overlong */
	cr_assert_eq(utf8_seq((const unsigned char *)"\xED\xA0\x80", 3), 0);	/* surrogate */
	cr_assert_eq(utf8_seq((const unsigned char *)"\xFF", 1), 0);
	cr_assert_eq(utf8_seq((const unsigned char *)"\0", 1), 0);

	char bad[] = "ok\xFF\xC3x";
	utf8_fix(bad, strlen(bad));
	cr_assert_str_eq(bad, "ok??x");
	char *c = utf8_clean("a\xFE" "b", 3);
	cr_assert_str_eq(c, "a\xEF\xBF\xBD" "b");
	free(c);

	char dst[4];
	str_copy(dst, sizeof(dst), "ab\xC3\xA9");	/* would cut the e-acute */
	cr_assert_str_eq(dst, "ab");
}
