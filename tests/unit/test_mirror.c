/* Unit tests of bus_mirror.c's naming: which file a retained topic is. */
#include "autoconfig.h"

#include <criterion/criterion.h>

#include "bus.h"

static void name_is(const char *pattern, const char *topic, const char *want)
{
	const char *got = bus_mirror_name(pattern, topic);

	if (!want)
		cr_assert_null(got, "%s %s: %s", pattern, topic, got);
	else
		cr_assert(got && strcmp(got, want) == 0, "%s %s: %s, not %s", pattern, topic,
			  got ? got : "NULL", want);
}

Test(mirror, names)
{
	name_is("jarvis.state.*", "jarvis.state.vbia_state", "vbia_state");
	name_is("jarvis.state.*", "jarvis.state.a.b", NULL);
	name_is("jarvis.state.*", "jarvis.other.x", NULL);
	name_is("jarvis.>", "jarvis.state.x", "state.x");
	name_is(">", "a.b", "a.b");
	name_is(">", "$sys.x", NULL);
	name_is("*.state", "prime.state", "prime.state");
	name_is("a.*.c", "a.b.c", "b.c");
	name_is("a.b.c", "a.b.c", "c");
	name_is("abc", "abc", "abc");
	name_is("abc", "abd", NULL);
}
