#!/bin/sh
# bootstrap.sh: install what is missing (Debian 12, as root), then build
# cohort out of tree in ./build.  Safe to run again: it only does what is
# not done yet.  Options: --no-build (install packages only), --fuzz (and
# what the fuzzing build needs).
set -eu
cd "$(dirname "$0")/.."

# libmosquitto-dev only lets the bus benchmark drive mosquitto beside cohortd.
PKGS="build-essential autoconf automake libtool pkg-config
      libev-dev libinih-dev libjansson-dev libwebsockets-dev libwebsockets-evlib-ev
      libcriterion-dev python3 python3-websockets valgrind procps util-linux
      libmosquitto-dev"
# clang and its sanitizer runtime (compiler-rt, which clang only
# recommends) build the libFuzzer harnesses: test-all.sh asks with --fuzz.
for a; do [ "$a" = --fuzz ] && PKGS="$PKGS clang libclang-rt-dev"; done

missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
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
[ "${1:-}" = "--no-build" ] && exit 0

[ -x configure ] || autoreconf -fi
mkdir -p build
cd build
[ -f Makefile ] || ../configure --enable-werror
make -j"$(nproc)"
