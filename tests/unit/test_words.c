/* Unit tests of words.c: command lines split like a shell splits them. */
#include "autoconfig.h"

#include <criterion/criterion.h>
#include <string.h>

#include "words.h"

static void expect(const char *line, const char *const *want, size_t n)
{
	struct strv w;
	const char *why = NULL;

	cr_assert_eq(words_split(line, &w, &why), 0, "%s: %s", line, why);
	cr_assert_eq(w.n, n, "%s: %zu words", line, w.n);
	for (size_t i = 0; i < n; i++)
		cr_assert_str_eq(w.v[i], want[i], "%s: word %zu", line, i);
	if (n)
		cr_assert_null(w.v[n]);
	strv_free(&w);
}

Test(words, plain_and_blanks)
{
	const char *a[] = {"python3", "-m", "jarvis", "--port", "8010"};
	expect("python3 -m jarvis --port 8010", a, 5);
	expect("  python3\t-m  jarvis --port 8010  ", a, 5);
	expect("", NULL, 0);
}

Test(words, quotes)
{
	const char *a[] = {"echo", "hello world", "it's", "a\"b"};
	expect("echo 'hello world' \"it's\" 'a\"b'", a, 4);
	const char *b[] = {"x", "", "y"};
	expect("x '' y", b, 3);
	const char *c[] = {"x", ""};
	expect("x \"\"", c, 2);
	const char *d[] = {"ab c d"};
	expect("a'b c'\" d\"", d, 1);
}

Test(words, backslashes)
{
	const char *a[] = {"a b", "c\\d", "$HOME", "e\"f", "g\\h"};
	expect("a\\ b c\\\\d \\$HOME \"e\\\"f\" 'g\\h'", a, 5);
	const char *b[] = {"in\\xside"};
	expect("\"in\\xside\"", b, 1);
}

Test(words, no_expansion)
{
	const char *a[] = {"echo", "$HOME", "*", "~", "$(id)", "`id`", ";", "|"};
	expect("echo $HOME * ~ $(id) `id` ; |", a, 8);
}

Test(words, errors)
{
	struct strv w;
	const char *why;

	cr_assert_eq(words_split("echo 'open", &w, &why), -1);
	cr_assert_str_eq(why, "unterminated single quote");
	cr_assert_eq(words_split("echo \"open", &w, &why), -1);
	cr_assert_str_eq(why, "unterminated double quote");
	cr_assert_eq(words_split("echo \\", &w, &why), -1);
	cr_assert(strstr(why, "backslash"));
}

Test(words, quote_round_trip)
{
	const char *cases[] = {"plain", "two words", "it's", "", "a\"b", "$x", "back\\slash"};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *q = words_quote(cases[i]);
		struct strv w;
		const char *why;
		cr_assert_eq(words_split(q, &w, &why), 0);
		cr_assert_eq(w.n, 1, "%s", q);
		cr_assert_str_eq(w.v[0], cases[i]);
		strv_free(&w);
		free(q);
	}
}
