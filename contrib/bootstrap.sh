#!/bin/sh
# bootstrap.sh: install what is missing (Debian 12, as root), then build
# cohort out of tree in ./build.  Safe to run again: it only does what is
# not done yet.  Options: --no-build (install packages only), --tests (also
# what only the tests and benchmarks use), --fuzz (and what the fuzzing build
# needs); contrib/test-all.sh passes both.
set -eu
cd "$(dirname "$0")/.."

PKGS="build-essential autoconf automake libtool pkg-config
      libev-dev libinih-dev libjansson-dev libwebsockets-dev libwebsockets-evlib-ev
      libcriterion-dev python3 python3-websockets procps util-linux
      libnats-dev"
# Only for the tests and benchmarks: valgrind for CI's valgrind run; strace
# counts a test's system calls;
# libmosquitto-dev lets the bus benchmark drive mosquitto beside cohortd;
# chromium lets test_bus_http.py open the bus from a page of another origin;
# systemd brings systemd-analyze, which checks contrib/systemd/cohortd.service;
# debhelper, dh-python, dpkg-dev and lintian build and check the Debian
# packages (make check-deb); prometheus gives test_metrics.py promtool and a
# real server to scrape cohortd; chromium-driver and python3-selenium drive
# the dashboard's browser tests; nats-server runs the three-node cluster of
# test_cluster.py (libnats-dev, above, builds the cluster mode); supervisor
# (echo_supervisord_conf) and the units of redis-server, mosquitto and nginx
# are what test_import.py imports, and it runs the daemons themselves in a
# temp dir (on their own ports, not as the system's services); nginx is also
# the real forking daemon test_pidfile.py supervises through its PID file.
TEST_PKGS="valgrind strace libmosquitto-dev chromium systemd debhelper dh-python dpkg-dev lintian prometheus chromium-driver python3-selenium nats-server
      supervisor redis-server mosquitto nginx"
# clang and its sanitizer runtime (compiler-rt, which clang only
# recommends) build the libFuzzer harnesses.
FUZZ_PKGS="clang libclang-rt-dev"

build=yes
tests=no
for arg in "$@"; do
	case "$arg" in
	--no-build) build=no ;;
	--tests) tests=yes; PKGS="$PKGS $TEST_PKGS" ;;
	--fuzz) PKGS="$PKGS $FUZZ_PKGS" ;;
	*) echo "bootstrap: unknown option $arg (--no-build, --tests, --fuzz)" >&2; exit 2 ;;
	esac
done

missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
# node runs test_bus_rfc.py's client with Node's ws, Debian's node-ws (no
# registry at test time).  node is looked for as a command: one from
# elsewhere (NodeSource) does as well, and node-ws installs beside it.
if [ "$tests" = yes ]; then
	command -v node >/dev/null 2>&1 || missing="$missing nodejs"
	dpkg-query -W -f='${Status}' node-ws 2>/dev/null | grep -q "ok installed" || missing="$missing node-ws"
fi
if [ -n "$missing" ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "bootstrap: missing packages:$missing" >&2
		echo "bootstrap: run as root, or: sudo apt-get install$missing" >&2
		exit 1
	fi
	echo "bootstrap: installing$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	# shellcheck disable=SC2086
	apt-get install -y -q --no-install-recommends $missing
fi
[ "$build" = no ] && exit 0

[ -x configure ] || autoreconf -fi
mkdir -p build
cd build
[ -f Makefile ] || ../configure --enable-werror
make -j"$(nproc)"
