#!/usr/bin/env bash
# compare.sh BEFORE_BUILDDIR AFTER_BUILDDIR [ROUNDS [OUTDIR]]: the hot-path
# benchmarks of make bench (config load, cohortd --check, bench_supervise,
# bench_control, bench_locks, bench_bus) against two builds in turns, for a
# before/after comparison of a change (doc/BENCHMARKS.md, issue 15).  Each
# build's own daemon, client library and bench programs (make bench
# builds them: `make tests/bench/bench_config tests/bench/marker
# tests/bench/bench_lock tests/bench/bench_bus tests/bench/relay` in each),
# the scripts of this tree, the peers hidden from PATH (only cohortd is
# compared).  One log per run in OUTDIR (default ./compare).
set -u
[ $# -ge 2 ] || { echo "usage: compare.sh BEFORE_BUILDDIR AFTER_BUILDDIR [ROUNDS [OUTDIR]]" >&2; exit 2; }
before=$(cd "$1" && pwd) after=$(cd "$2" && pwd)
rounds=${3:-2} out=${4:-compare}
S=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$out"
# A PATH without the peers: the scripts skip what they do not find.
nopeers=$(mktemp -d /tmp/cohort-nopeers.XXXXXX)
trap 'rm -rf "$nopeers"' EXIT
IFS=: read -ra dirs <<< "$PATH"
for d in "${dirs[@]}"; do
	for f in "$d"/*; do
		b=$(basename "$f")
		case $b in runsvdir | runsv | sv | s6-* | supervisor* | redis-* | mosquitto* | etcd*) continue ;; esac
		[ -e "$nopeers/$b" ] || ln -s "$f" "$nopeers/$b"
	done
done
for ((round = 1; round <= rounds; round++)); do
	if ((round % 2)); then order="before after"; else order="after before"; fi
	for t in $order; do
		if [ "$t" = before ]; then B=$before; else B=$after; fi
		log=$out/$t-$round.log
		echo "round $round: $t ($B) -> $log"
		(
			export PATH=$nopeers COHORT_BUILDDIR=$B COHORT_SRCDIR=$S
			echo "== $t round $round $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
			"$B/tests/bench/bench_config"
			for n in 1000 10000; do
				f=$(mktemp /tmp/cohort-bench-XXXXXX.ini)
				for ((i = 0; i < n; i++)); do printf '[service:s%d]\ncommand = /bin/sleep 1000\n' "$i"; done > "$f"
				best=
				for _ in 1 2 3 4 5; do
					t0=$(date +%s%N)
					"$B/cohortd" --check -c "$f" > /dev/null
					us=$((($(date +%s%N) - t0) / 1000))
					if [ -z "$best" ] || [ "$us" -lt "$best" ]; then best=$us; fi
				done
				echo "cohortd --check $n services: $best us"
				rm -f "$f"
			done
			for b in bench_supervise bench_control bench_locks bench_bus; do
				echo
				echo "== $b $(date -u +%H:%M:%S)"
				/usr/bin/python3 "$S/tests/bench/$b.py"
			done
			echo "== end $(date -u +%H:%M:%S)"
		) > "$log" 2>&1
	done
done
