/*
 * hugepages.c - cohortd's heap on transparent huge pages.
 *
 * A compaction of the bus journal forks (journal_fork.c), and the loop
 * waits while the kernel copies the page tables: 10 ms for cohortd's 400
 * MiB with a gigabyte queued, every publish held meanwhile.  On 2 MiB
 * pages there are 512 times fewer entries to copy: 0.8 ms.  glibc puts
 * malloc's memory on them when its tunable glibc.malloc.hugetlb is 1 (the
 * kernel's THP setting "madvise" or "always"), read only when a program
 * starts: so cohortd starts itself again, once, with it set, and then takes
 * it out of the environment its services inherit.  (Since Linux 5.8 a
 * write after a fork copies 4 KiB of a huge page, not all of it.)
 *
 * Not when the tunable was set by whoever started cohortd (their choice),
 * when the kernel has THP off, under valgrind or a sanitizer (their own
 * allocators), or when /proc/self/exe cannot be read: cohortd then goes
 * on as it is.
 */
#include "autoconfig.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"
#include "util.h"

#define TUNABLE "glibc.malloc.hugetlb=1"
/* Set across the exec: what GLIBC_TUNABLES was before ("-" if unset). */
#define MARK "COHORTD_TUNABLES_WERE"

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif

#ifndef SANITIZED
static bool thp_available(void)
{
	char buf[128] = "";
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "re");

	if (!f)
		return false;
	bool ok = fgets(buf, sizeof(buf), f) && !strstr(buf, "[never]");
	fclose(f);
	return ok;
}
#endif

void hugepages_start(char **argv)
{
	const char *was = getenv(MARK);

	if (was) {	/* started again: the environment as it was */
		if (strcmp(was, "-") == 0)
			unsetenv("GLIBC_TUNABLES");
		else
			setenv("GLIBC_TUNABLES", was, 1);
		unsetenv(MARK);
		return;
	}
#ifdef SANITIZED
	(void)argv;
#else
	char *tunables = getenv("GLIBC_TUNABLES") ? xstrdup(getenv("GLIBC_TUNABLES")) : NULL;
	const char *preload = getenv("LD_PRELOAD");
	char exe[PATH_MAX];

	ssize_t n = -1;
	if (!(tunables && strstr(tunables, "glibc.malloc.hugetlb")) && !(preload && strstr(preload, "vgpreload")) &&
	    thp_available())
		n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0) {
		free(tunables);
		return;
	}
	exe[n] = '\0';
	char *value = tunables && *tunables ? xasprintf("%s:%s", tunables, TUNABLE) : xstrdup(TUNABLE);
	setenv(MARK, tunables ? tunables : "-", 1);
	setenv("GLIBC_TUNABLES", value, 1);
	free(value);
	execv(exe, argv);
	/* Not started again: on as it is. */
	if (tunables)
		setenv("GLIBC_TUNABLES", tunables, 1);
	else
		unsetenv("GLIBC_TUNABLES");
	unsetenv(MARK);
	free(tunables);
#endif
}
