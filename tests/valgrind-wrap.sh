#!/bin/sh
# Runs a test program under valgrind ($COHORT_VALGRIND holds the command).
# Criterion runs each test in a child process and ignores how that child
# exits once the test passed, so an --error-exitcode is not enough: every
# process writes its own valgrind log, and any log with an error in it
# fails the test program.
logs=$(mktemp -d "${TMPDIR:-/tmp}/cohort-vg.XXXXXX")
$COHORT_VALGRIND --log-file="$logs/vg.%p" "$@"
rc=$?
bad=0
for f in "$logs"/vg.*; do
	[ -s "$f" ] || continue
	echo "valgrind found errors in a child of $*:" >&2
	cat "$f" >&2
	bad=1
done
rm -rf "$logs"
[ $bad -eq 0 ] || exit 1
exit $rc
