#!/bin/sh
# run.sh SRCDIR SECONDS NAME...: runs each libFuzzer harness
# tests/fuzz/fuzz_NAME of this (fuzzing) build for SECONDS, one after the
# other, and prints one line for each with its figures.  Exit 1 when one
# found a crash, a leak, undefined behaviour or a hang: the input that
# did it is kept as fuzz-crashes/NAME-crash-<sha1> (or -leak-, -timeout-,
# -oom-), its log as fuzz-logs/NAME.log.  What each run finds that covers
# new code is kept in fuzz-corpus/NAME and read again by the next run, with
# the seeds under SRCDIR/tests/fuzz/corpus/NAME.  See doc/HACKING.md.
set -u
srcdir=$1
seconds=$2
shift 2
mkdir -p fuzz-corpus fuzz-crashes fuzz-logs
# Stacks with function names and lines: Debian's clang keeps the
# symbolizer out of PATH.
symbolizer=$(command -v llvm-symbolizer || ls /usr/lib/llvm-*/bin/llvm-symbolizer 2>/dev/null | tail -n 1)
failed=0
for name; do
	seeds="$srcdir/tests/fuzz/corpus/$name"
	opts=""
	case $name in
	# The slow ones (a few hundred runs a second) may use their whole
	# max_len at once: libFuzzer would take most of a minute to get there.
	config) seeds="$seeds $srcdir/tests/fixtures/check $srcdir/etc"; opts="-max_len=16384 -len_control=0" ;;
	control) opts="-max_len=4096 -dict=$srcdir/tests/fuzz/json.dict" ;;
	bus) opts="-max_len=16384 -len_control=0 -dict=$srcdir/tests/fuzz/json.dict" ;;
	client) opts="-max_len=16384 -dict=$srcdir/tests/fuzz/json.dict" ;;
	journal) opts="-max_len=65536 -len_control=0" ;;
	handshake) opts="-max_len=8192" ;;
	esac
	mkdir -p "fuzz-corpus/$name"
	log="fuzz-logs/$name.log"
	# shellcheck disable=SC2086
	ASAN_SYMBOLIZER_PATH=${ASAN_SYMBOLIZER_PATH:-$symbolizer} \
	ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
	UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
		"./tests/fuzz/fuzz_$name" -max_total_time="$seconds" -timeout=30 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="fuzz-crashes/$name-" $opts \
		"fuzz-corpus/$name" $seeds >"$log" 2>&1
	rc=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	cov=$(grep -o 'cov: [0-9]* ft: [0-9]* corp: [0-9/]*[a-zA-Z]*' "$log" | tail -n 1)
	if [ "$rc" = 0 ]; then
		printf 'fuzz %-9s %ss, %s runs, %s: no crash\n' "$name" "$seconds" "${runs:-?}" "${cov:-?}"
	else
		failed=1
		crash=$(sed -n 's/.*Test unit written to //p' "$log" | tail -n 1)
		printf 'fuzz %-9s FAILED (exit %s) after %s runs: reproducer %s, log %s\n' "$name" "$rc" \
			"${runs:-?}" "${crash:-none written}" "$log"
		# What the harness or cohort said before the report (an abort()
		# names its reason there), the report, and the input itself: a
		# CI machine is gone afterwards, so the reproducer is printed.
		n=$(grep -n -m 1 -E '^==[0-9]+==ERROR|runtime error|^SUMMARY|deadly signal|ALARM' "$log" | cut -d: -f1)
		if [ -n "$n" ]; then
			start=$((n > 15 ? n - 15 : 1))
			sed -n "${start},$((n + 24))p" "$log" | grep -v '^#[0-9]*	\(NEW\|REDUCE\|pulse\)' | sed 's/^/    /'
		else
			tail -n 30 "$log" | sed 's/^/    /'
		fi
		if [ -n "$crash" ] && [ -f "$crash" ] && [ "$(wc -c <"$crash")" -le 65536 ]; then
			echo "    the input, base64 (base64 -d > repro; ./tests/fuzz/fuzz_$name repro):"
			base64 -w 76 "$crash" | sed 's/^/    /'
		fi
	fi
done
exit $failed
