#!/usr/bin/python3
"""Lock benchmarks: tests/bench/bench_lock against cohortd's control socket
and against redis-server (SET NX PX + compare-and-delete script) over a
unix socket, same client pattern, same run; then the ratios."""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

BUILD = os.environ.get("COHORT_BUILDDIR", ".")
COHORTD = os.path.join(BUILD, "cohortd")
BENCH = os.path.join(BUILD, "tests", "bench", "bench_lock")
SECONDS = os.environ.get("BENCH_SECONDS", "2")


def wait_path(p, timeout=20):
    end = time.monotonic() + timeout
    while not os.path.exists(p):
        if time.monotonic() > end:
            raise RuntimeError(f"{p} did not appear")
        time.sleep(0.02)


def run(kind, sock):
    out = subprocess.run([BENCH, kind, sock, SECONDS], capture_output=True, text=True, check=True).stdout
    figures = {}
    for line in out.splitlines():
        m = re.match(r"^uncontended\s+(\d+) clients?\s*: .*p50\s+([\d.]+) us\s+p99\s+([\d.]+) us\s+(\d+) pairs/s", line)
        if m:
            figures[f"u{m.group(1)}"] = (float(m.group(2)), float(m.group(3)), float(m.group(4)))
        m = re.match(r"^contended .*p50\s+([\d.]+) us\s+p99\s+([\d.]+) us", line)
        if m:
            figures["handover"] = (float(m.group(1)), float(m.group(2)), 0)
    return out, figures


def main():
    work = tempfile.mkdtemp(prefix="cohort-block.")
    print("locks: cohortd (control socket, JSON) beside redis-server (unix socket, RESP)")
    ini = os.path.join(work, "c.ini")
    with open(ini, "w") as f:
        f.write(f"[cohort]\nrun_dir = {work}/run\nstate_dir = {work}/state\nlog_dir = {work}/log\n"
                "[service:idle]\ncommand = /bin/sleep 100000\nready = delay:0\nstdout = null\n")
    d = subprocess.Popen([COHORTD, "-q", "-c", ini], stderr=subprocess.DEVNULL)
    wait_path(f"{work}/run/control.sock")
    out, mine = run("cohort", f"{work}/run/control.sock")
    d.send_signal(signal.SIGTERM)
    d.wait(30)
    print("  cohortd:")
    print("".join("    " + l + "\n" for l in out.splitlines()), end="")
    if not shutil.which("redis-server"):
        print("  (redis-server not installed: no comparison)")
        return
    rsock = f"{work}/redis.sock"
    r = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", rsock, "--save", "",
                          "--appendonly", "no", "--daemonize", "no", "--dir", work],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_path(rsock)
    out, theirs = run("redis", rsock)
    r.send_signal(signal.SIGTERM)
    r.wait(30)
    print("  redis-server " + subprocess.run(["redis-server", "--version"], capture_output=True,
                                              text=True).stdout.split()[2] + ":")
    print("".join("    " + l + "\n" for l in out.splitlines()), end="")
    print("  cohortd / redis:")
    for key, label in (("u1", "1 client"), ("u16", "16 clients")):
        a, b = mine[key], theirs[key]
        print(f"    {label:11s} pairs/s x{a[2] / b[2]:.2f}   p99 x{a[1] / b[1]:.2f}   "
              f"({'goal met' if a[2] >= b[2] and a[1] <= b[1] else 'goal not met'}: "
              "at least redis's ops/s, at most its p99)")
    a, b = mine["handover"], theirs["handover"]
    print(f"    hand-over   p50 x{a[0] / b[0]:.2f}   p99 x{a[1] / b[1]:.2f}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
