#!/bin/sh
# check-deb.sh DISTDIR WORKDIR: builds cohort's Debian packages from the
# distribution tree DISTDIR (dpkg-buildpackage -us -uc -b), checks them with
# lintian (no errors), installs them with dpkg into a scratch root (no
# container: dpkg --root with the maintainer scripts run outside a chroot,
# DPKG_ROOT set, as the scripts support), then runs the installed
# cohortd --check on the installed /etc/cohort/cohort.ini and a small stack
# from the installed paths: a C service built against the installed
# libcohort-dev, a Python one on the installed python3-cohort, cohortctl.
# `make check-deb` runs it; contrib/test-all.sh runs that.
set -eu
dist=$1
work=$2
fail() { echo "check-deb: FAIL: $*" >&2; exit 1; }
step() { echo "check-deb: $*"; }

rm -rf "$work"
mkdir -p "$work"
src="$work/$(basename "$dist")"
cp -a "$dist" "$src"
chmod -R u+w "$src"

step "dpkg-buildpackage -us -uc -b (log: $work/build.log)"
(cd "$src" && dpkg-buildpackage -us -uc -b) >"$work/build.log" 2>&1 || { tail -50 "$work/build.log"; fail "the build failed"; }
changes=$(ls "$work"/*.changes)
for p in cohort libcohort0 libcohort-dev python3-cohort; do
	ls "$work/${p}"_*.deb >/dev/null 2>&1 || fail "no package $p was built"
done

step "lintian"
lintian --fail-on error --tag-display-limit 0 "$changes" 2>&1 | tee "$work/lintian.log" \
	| grep -v '^running with root' || true
lintian --fail-on error --tag-display-limit 0 "$changes" >/dev/null 2>&1 || fail "lintian reports errors"

root="$work/root"
step "dpkg --root $root"
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates"
: >"$root/var/lib/dpkg/status"
dpkgr() {
	# The root holds only these packages: their dependencies are the
	# host's.  The scripts run outside a chroot (the root has no shell),
	# told where the root is by DPKG_ROOT.
	dpkg --root="$root" --force-not-root --force-depends --force-script-chrootless "$@"
}
debs=$(ls "$work"/*.deb | grep -v -- -dbgsym_)
# shellcheck disable=SC2086
dpkgr --unpack $debs >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log"; fail "dpkg --unpack"; }
# python3-cohort stays unpacked: its postinst byte-compiles through
# py3compile, which reads the host's dpkg database, not the root's.
dpkgr --configure cohort libcohort0 libcohort-dev >>"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log"; fail "dpkg --configure"; }
for p in cohort libcohort0 libcohort-dev; do
	dpkg --root="$root" -s "$p" | grep -qx 'Status: install ok installed' || fail "$p is not installed"
done
dpkg --root="$root" -s python3-cohort | grep -qx 'Status: install ok unpacked' || fail "python3-cohort is not unpacked"
for f in /usr/sbin/cohortd /usr/bin/cohortctl /etc/cohort/cohort.ini /lib/systemd/system/cohortd.service \
	/usr/lib/tmpfiles.d/cohort.conf /usr/share/man/man8/cohortd.8.gz /usr/share/man/man5/cohort.ini.5.gz \
	/usr/share/man/man1/cohortctl.1.gz /usr/share/bash-completion/completions/cohortctl \
	/usr/include/cohort.h /usr/lib/python3/dist-packages/cohort_client.py \
	/usr/lib/python3/dist-packages/cohort_compat.py; do
	[ -e "$root$f" ] || fail "$f is not installed"
done
dpkg --root="$root" -L libcohort-dev | grep -q '/pkgconfig/cohort.pc$' || fail "no cohort.pc"
dpkg --root="$root" -s cohort | grep -q '^Conffiles:' || fail "/etc/cohort/cohort.ini is no conffile"
if command -v systemd-tmpfiles >/dev/null; then
	[ -d "$root/run/cohort" ] || fail "the postinst (systemd-tmpfiles) did not make /run/cohort"
fi
grep -qx 'ExecStart=/usr/sbin/cohortd -c /etc/cohort/cohort.ini' "$root/lib/systemd/system/cohortd.service" \
	|| fail "the unit does not start /usr/sbin/cohortd"

step "the installed cohortd --check"
"$root/usr/sbin/cohortd" --version
"$root/usr/sbin/cohortd" --check -c "$root/etc/cohort/cohort.ini" || fail "cohortd --check on the installed config"

step "a small stack from the installed paths"
t="$work/stack"
mkdir -p "$t"
libdir=$(dirname "$(dpkg --root="$root" -L libcohort0 | grep 'libcohort\.so\.0$')")
cat >"$t/pub.c" <<'CEOF'
#include <cohort.h>
#include <stdio.h>
#include <unistd.h>
int main(void)
{
	cohort_t *c = cohort_new(NULL);
	if (!c || cohort_connect(c) < 0 || cohort_publish(c, "pkg.c", "{\"from\":\"c\"}", 1, true, NULL) < 0) {
		fprintf(stderr, "pub: %s\n", c ? cohort_error(c) : "cohort_new");
		return 1;
	}
	pause();
	return 0;
}
CEOF
pcdir="$root$libdir/pkgconfig"
flags=$(PKG_CONFIG_SYSROOT_DIR="$root" PKG_CONFIG_LIBDIR="$pcdir" pkg-config --cflags --libs cohort) \
	|| fail "pkg-config cohort"
# shellcheck disable=SC2086
cc -o "$t/pub" "$t/pub.c" $flags || fail "cannot build against the installed libcohort-dev"
cat >"$t/pub.py" <<'PEOF'
import asyncio, time
from cohort_compat import update_state
asyncio.run(update_state("py", {"from": "py"}))
time.sleep(1000)
PEOF
cat >"$t/stack.ini" <<IEOF
[cohort]
run_dir = $t/run
state_dir = $t/state
log_dir = $t/log
state_mirror_dir = $t/mirror
state_mirror_topics = pkg.*, jarvis.state.*
shutdown_timeout = 20s

[service:c]
command = $t/pub
environment = LD_LIBRARY_PATH=$root$libdir
ready = delay:0

[service:py]
command = /usr/bin/python3 $t/pub.py
environment = PYTHONPATH=$root/usr/lib/python3/dist-packages
requires = c
ready = delay:0
IEOF
"$root/usr/sbin/cohortd" --check -c "$t/stack.ini" >/dev/null || fail "cohortd --check on the stack"
"$root/usr/sbin/cohortd" -c "$t/stack.ini" >"$t/cohortd.log" 2>&1 &
pid=$!
ok=no
i=0
while [ $i -lt 600 ]; do	# 60 s
	if [ -f "$t/mirror/c.json" ] && [ -f "$t/mirror/py.json" ]; then
		ok=yes
		break
	fi
	kill -0 $pid 2>/dev/null || break
	sleep 0.1
	i=$((i + 1))
done
ctl="$root/usr/bin/cohortctl -s $t/run/control.sock"
status=$($ctl status 2>&1 || true)
kill -TERM $pid 2>/dev/null || true
rc=0
wait $pid || rc=$?
if [ $ok != yes ]; then
	echo "$status"
	cat "$t/cohortd.log"
	fail "the stack's services did not publish (mirror: $(ls "$t/mirror" 2>/dev/null))"
fi
echo "$status"
echo "$status" | grep -q 'running' || fail "cohortctl status shows nothing running"
grep -q '"from":"c"' "$t/mirror/c.json" || fail "c.json: $(cat "$t/mirror/c.json")"
grep -q '"from": "py"' "$t/mirror/py.json" || fail "py.json: $(cat "$t/mirror/py.json")"
[ $rc = 0 ] || { cat "$t/cohortd.log"; fail "cohortd exited $rc after TERM"; }
step "ok: $(ls "$work"/*.deb | grep -vc -- -dbgsym_) packages built, lintian clean of errors, installed and run"
