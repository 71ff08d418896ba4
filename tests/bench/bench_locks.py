#!/usr/bin/python3
"""Lock benchmarks: tests/bench/bench_lock against cohortd's control socket
and against redis-server (SET NX PX + compare-and-delete script) over a
unix socket, same client pattern, same run; then the ratios.

Both servers run at once and take turns, round by round (BENCH_ROUNDS,
default 3), so that the load of this shared machine falls on both alike;
each figure is the median of the rounds, and every round's value is
printed beside the goals."""
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

BUILD = os.environ.get("COHORT_BUILDDIR", ".")
COHORTD = os.path.join(BUILD, "cohortd")
BENCH = os.path.join(BUILD, "tests", "bench", "bench_lock")
SECONDS = os.environ.get("BENCH_SECONDS", "2")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
KEYS = (("u1", "uncontended  1 client  (acquire+release)"),
        ("u16", "uncontended 16 clients (acquire+release)"),
        ("handover", "contended hand-over (release -> grant)"))


def wait_path(p, timeout=20):
    end = time.monotonic() + timeout
    while not os.path.exists(p):
        if time.monotonic() > end:
            raise RuntimeError(f"{p} did not appear")
        time.sleep(0.02)


def run(kind, sock):
    """{key: (p50 us, p99 us, pairs/s)} of one bench_lock run."""
    out = subprocess.run([BENCH, kind, sock, SECONDS], capture_output=True, text=True, check=True).stdout
    figures = {}
    for line in out.splitlines():
        m = re.match(r"^uncontended\s+(\d+) clients?\s*: .*p50\s+([\d.]+) us\s+p99\s+([\d.]+) us\s+(\d+) pairs/s", line)
        if m:
            figures[f"u{m.group(1)}"] = (float(m.group(2)), float(m.group(3)), float(m.group(4)))
        m = re.match(r"^contended .*p50\s+([\d.]+) us\s+p99\s+([\d.]+) us", line)
        if m:
            figures["handover"] = (float(m.group(1)), float(m.group(2)), 0)
    if set(figures) != {k for k, _ in KEYS}:
        raise RuntimeError(f"bench_lock {kind}: unexpected output:\n{out}")
    return figures


def median_of(rounds, key, i):
    return statistics.median(r[key][i] for r in rounds)


def main():
    work = tempfile.mkdtemp(prefix="cohort-block.")
    print(f"locks: cohortd (control socket, JSON) beside redis-server (unix socket, RESP);\n"
          f"both up at once, taking turns over {ROUNDS} rounds of {SECONDS} s per figure; medians")
    ini = os.path.join(work, "c.ini")
    with open(ini, "w") as f:
        f.write(f"[cohort]\nrun_dir = {work}/run\nstate_dir = {work}/state\nlog_dir = {work}/log\n"
                "[service:idle]\ncommand = /bin/sleep 100000\nready = delay:0\nstdout = null\n")
    servers = {"cohortd": ("cohort", f"{work}/run/control.sock")}
    procs = [subprocess.Popen([COHORTD, "-q", "-c", ini], stderr=subprocess.DEVNULL)]
    if shutil.which("redis-server"):
        rsock = f"{work}/redis.sock"
        procs.append(subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", rsock, "--save", "",
                                       "--appendonly", "no", "--daemonize", "no", "--dir", work],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        version = subprocess.run(["redis-server", "--version"], capture_output=True,
                                 text=True).stdout.split()[2]
        servers[f"redis-server {version.removeprefix('v=')}"] = ("redis", rsock)
    else:
        print("  (redis-server not installed: no comparison)")
    rounds = {name: [] for name in servers}
    try:
        for _, sock in servers.values():
            wait_path(sock)
        names = list(servers)
        for i in range(ROUNDS):
            for name in (names if i % 2 == 0 else names[::-1]):
                rounds[name].append(run(*servers[name]))
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
            p.wait(30)
        shutil.rmtree(work, ignore_errors=True)

    print(f"  {'':42s} {'p50 us':>8s} {'p99 us':>8s} {'pairs/s':>9s}")
    for name in servers:
        print(f"  {name}:")
        for key, label in KEYS:
            rate = "" if key == "handover" else f"{median_of(rounds[name], key, 2):9.0f}"
            print(f"    {label:40s} {median_of(rounds[name], key, 0):8.1f} {median_of(rounds[name], key, 1):8.1f} "
                  f"{rate}")
    if len(servers) < 2:
        return
    mine, theirs = rounds["cohortd"], rounds[names[1]]
    print("  cohortd / redis (pairs/s: above 1 is better; latency: below 1 is better):")
    for key, label in (("u1", "1 client"), ("u16", "16 clients")):
        ops = median_of(mine, key, 2) / median_of(theirs, key, 2)
        p99 = median_of(mine, key, 1) / median_of(theirs, key, 1)
        met = "goal met" if ops >= 1 and p99 <= 1 else "goal NOT met"
        print(f"    {label:11s} pairs/s x{ops:.2f}   p99 x{p99:.2f}   ({met}: at least redis's ops/s, "
              "at most its p99)")
        for i, what in ((2, "pairs/s"), (1, "p99 us")):
            print(f"      rounds, sorted, {what}: "
                  f"{'/'.join(f'{v:.0f}' for v in sorted(r[key][i] for r in mine))} vs "
                  f"{'/'.join(f'{v:.0f}' for v in sorted(r[key][i] for r in theirs))}")
    print(f"    hand-over   p50 x{median_of(mine, 'handover', 0) / median_of(theirs, 'handover', 0):.2f}   "
          f"p99 x{median_of(mine, 'handover', 1) / median_of(theirs, 'handover', 1):.2f}   "
          "(cohortd wakes a queued waiter; the redis waiter spins on SET NX)")


if __name__ == "__main__":
    sys.exit(main())
