#!/bin/sh
# test-all.sh: install what is missing, build, and run every test:
#   1. make check (warnings are errors)
#   2. make check built with AddressSanitizer + UndefinedBehaviorSanitizer
#   3. make check with every cohortd, cohortctl and test binary under valgrind
#   4. each libFuzzer harness for 60 s under ASan + UBSan (make fuzz)
#   5. make distcheck (the release tarball builds and passes)
#   6. make torture, short (kill -9, journal corruption, restarts, full disk)
#   7. make check-deb: the Debian packages built, lintian, installed into a
#      scratch root with dpkg and run from there (about 3 minutes)
# This is the README's test command and what CI runs (.ci/run).
set -eu
cd "$(dirname "$0")/.."
top=$(pwd)
jobs=$(nproc)

sh contrib/bootstrap.sh --no-build --tests --fuzz
autoreconf -fi

step() { printf '\n=== %s\n' "$*"; }

step "build + make check (build/)"
mkdir -p build && cd build
[ -f Makefile ] || ../configure --enable-werror
make -j"$jobs"
make -j"$jobs" check || { cat test-suite.log; exit 1; }
cd "$top"

step "make check under ASan + UBSan (build-asan/)"
mkdir -p build-asan && cd build-asan
[ -f Makefile ] || ../configure --enable-werror --enable-sanitizers
make -j"$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	make -j"$jobs" check || { cat test-suite.log; exit 1; }
cd "$top"

# Its own build: valgrind cannot follow malloc in the static cohortctl of
# build/, so this one links cohortctl dynamically.
step "make check under valgrind (build-vg/)"
mkdir -p build-vg && cd build-vg
[ -f Makefile ] || ../configure --enable-werror --disable-static-ctl
make -j"$jobs"
VG="valgrind -q --vgdb=no --trace-children=yes --trace-children-skip=/usr/*,/bin/*,/sbin/* --leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect --error-exitcode=99"
COHORT_VALGRIND="$VG" make -j"$jobs" check LOG_COMPILER="$top/tests/valgrind-wrap.sh" \
	|| { cat test-suite.log; exit 1; }
cd "$top"

# Its own build: clang, every object instrumented for libFuzzer.  About
# six minutes; FUZZ_SECONDS=N for longer (doc/HACKING.md).
step "fuzzing, ${FUZZ_SECONDS:-60} s per harness under ASan + UBSan (build-fuzz/)"
mkdir -p build-fuzz && cd build-fuzz
[ -f Makefile ] || ../configure --enable-werror --enable-fuzzing CC=clang
make -j"$jobs" fuzz FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
cd "$top"

step "make distcheck"
cd build
make -j"$jobs" distcheck DISTCHECK_CONFIGURE_FLAGS=--enable-werror || {
	cat cohort-*/_build/sub/test-suite.log 2>/dev/null
	exit 1
}
cd "$top"
step "make torture TORTURE_ROUNDS=small (build/)"
cd build
make torture TORTURE_ROUNDS=small
cd "$top"
step "make check-deb (build/)"
cd build
make check-deb
cd "$top"
step "all tests passed"
