#!/usr/bin/env bash
# make bench: runs every benchmark under tests/bench and prints its figures.
# Benchmarks are not tests: they assert nothing, they measure.
set -eu
B=${COHORT_BUILDDIR:-.}
S=${COHORT_SRCDIR:-.}
export COHORT_BUILDDIR=$B COHORT_SRCDIR=$S

# The peers cohort is measured against, from Debian, installed when missing
# (and when we may: as root with apt-get); etcd's lock is the cluster
# locks' peer (bench_cluster.py, with nats-server from bootstrap.sh --tests).
peers="runit s6 supervisor redis-server mosquitto etcd-server etcd-client"
missing=""
for p in $peers; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		echo "installing benchmark peers:$missing"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >/dev/null ||
			echo "could not install$missing: those peers are skipped"
	else
		echo "peers not installed:$missing (run as root to install them): skipped"
	fi
fi

echo "== cohort benchmarks ($(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, $(uname -r))"
echo
"$B/tests/bench/bench_config"
echo
echo "cohortd --check wall time (whole process, best of 5):"
for n in 1000 10000; do
	f=$(mktemp /tmp/cohort-bench-XXXXXX.ini)
	for ((i = 0; i < n; i++)); do
		printf '[service:s%d]\ncommand = /bin/sleep 1000\n' "$i"
	done > "$f"
	best=
	for _ in 1 2 3 4 5; do
		t0=$(date +%s%N)
		"$B/cohortd" --check -c "$f" > /dev/null
		t1=$(date +%s%N)
		ms=$(( (t1 - t0) / 1000 ))
		if [ -z "$best" ] || [ "$ms" -lt "$best" ]; then best=$ms; fi
	done
	printf '  %6d services: %d.%03d ms\n' "$n" $((best / 1000)) $((best % 1000))
	rm -f "$f"
done
echo
/usr/bin/python3 "$S/tests/bench/bench_supervise.py"
echo
/usr/bin/python3 "$S/tests/bench/bench_control.py"
echo
/usr/bin/python3 "$S/tests/bench/bench_locks.py"
echo
/usr/bin/python3 "$S/tests/bench/bench_cluster.py"
echo
/usr/bin/python3 "$S/tests/bench/bench_bus.py"
echo
/usr/bin/python3 "$S/tests/bench/bench_backlog.py"
echo
/usr/bin/python3 "$S/tests/bench/bench_metrics.py"
# SCALE=1: thousands of services, connections, leases and a large journal
# (issue 19; minutes, and heavy: not in the default run).
if [ "${SCALE:-0}" = 1 ]; then
	# Each adds the rows of its goals to one table, printed last.
	SCALE_SUMMARY=$(mktemp /tmp/cohort-scale-summary.XXXXXX)
	export SCALE_SUMMARY
	trap 'rm -f "$SCALE_SUMMARY"' EXIT	# also when a scale run fails (set -e)
	echo
	/usr/bin/python3 "$S/tests/bench/bench_scale_services.py"
	echo
	/usr/bin/python3 "$S/tests/bench/bench_scale_locks.py"
	echo
	# a gigabyte of journal (SCALE_JOURNAL_MB=50 for a short run)
	/usr/bin/python3 "$S/tests/bench/bench_scale_journal.py"
	echo
	/usr/bin/python3 "$S/tests/bench/bench_scale_bus.py"
	echo
	/usr/bin/python3 "$S/tests/bench/scale_summary.py" "$SCALE_SUMMARY"
fi
for extra in "$S"/tests/bench/bench_*.sh; do
	[ -e "$extra" ] || continue
	echo
	bash "$extra"
done
