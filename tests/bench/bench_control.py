#!/usr/bin/python3
"""Control-path benchmarks: the wall time of a whole `cohortctl status`
process with 50 and 500 services, and of `cohortctl restart` (with wait)
of one fast service, beside `supervisorctl status` (50 programs),
`sv status` over 50 runit service dirs and an `s6-svstat` loop over 50
s6 service dirs, all measured in the same run.

Each figure is the median (and p90) of RUNS runs of the whole command, as
a user or a script would run it.
"""
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

BUILD = os.environ.get("COHORT_BUILDDIR", ".")
COHORTD = os.path.abspath(os.path.join(BUILD, "cohortd"))
COHORTCTL = os.path.abspath(os.path.join(BUILD, "cohortctl"))
RUNS = int(os.environ.get("BENCH_RUNS", "30"))


def timed(cmd, runs=RUNS, shell=False):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        p = subprocess.run(cmd, shell=shell, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        times.append((time.perf_counter() - t0) * 1000)
        if p.returncode not in (0, 3) or (p.returncode == 3 and "sv" not in str(cmd)):
            raise RuntimeError(f"{cmd}: exit {p.returncode}: {p.stderr.decode()[:200]}")
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.9) - 1]


def wait_for(pred, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise RuntimeError("timed out")


class Cohort:
    def __init__(self, n):
        self.dir = tempfile.mkdtemp(prefix="cohort-bctl.")
        ini = os.path.join(self.dir, "c.ini")
        with open(ini, "w") as f:
            f.write(f"[cohort]\nrun_dir = {self.dir}/run\nlog_dir = {self.dir}/log\n")
            for i in range(n):
                f.write(f"[service:s{i:03d}]\ncommand = /bin/sleep 100000\nready = delay:0\n"
                        "stdout = null\nbackoff_initial = 0\n")
        self.sock = f"{self.dir}/run/control.sock"
        self.proc = subprocess.Popen([COHORTD, "-q", "-c", ini], stderr=subprocess.DEVNULL)
        wait_for(lambda: subprocess.run([COHORTCTL, "-s", self.sock, "--json", "status"],
                                        capture_output=True, text=True).stdout.count('"running"') == n)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        shutil.rmtree(self.dir, ignore_errors=True)


def make_dirs(root, n, run):
    for i in range(n):
        d = os.path.join(root, f"s{i:03d}")
        os.makedirs(d)
        with open(os.path.join(d, "run"), "w") as f:
            f.write(run)
        os.chmod(os.path.join(d, "run"), 0o755)
    return [os.path.join(root, f"s{i:03d}") for i in range(n)]


def main():
    print(f"control path: whole-command wall time, median / p90 of {RUNS} runs")
    res = {}
    for n in (50, 500):
        c = Cohort(n)
        res[f"status{n}"] = timed([COHORTCTL, "-s", c.sock, "status"])
        if n == 50:
            res["restart"] = timed([COHORTCTL, "-s", c.sock, "restart", "s000"])
        c.stop()
    print(f"  cohortctl status, 50 services      {res['status50'][0]:7.2f} ms  / {res['status50'][1]:7.2f} ms")
    print(f"  cohortctl status, 500 services     {res['status500'][0]:7.2f} ms  / {res['status500'][1]:7.2f} ms")
    print(f"  cohortctl restart (wait), 1 fast   {res['restart'][0]:7.2f} ms  / {res['restart'][1]:7.2f} ms")

    peers = {}
    if shutil.which("runsvdir") and shutil.which("sv"):
        work = tempfile.mkdtemp(prefix="cohort-bctl-runit.")
        dirs = make_dirs(work, 50, "#!/bin/sh\nexec sleep 100000\n")
        p = subprocess.Popen(["runsvdir", work], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: all(os.path.exists(os.path.join(d, "supervise", "stat")) and
                             open(os.path.join(d, "supervise", "stat")).read().strip() == "run"
                             for d in dirs))
        peers["sv status, 50 dirs (one call)"] = timed(["sv", "status", *dirs])
        p.send_signal(signal.SIGHUP)
        p.wait(30)
        time.sleep(0.5)
        shutil.rmtree(work, ignore_errors=True)
    else:
        print("  (runit not installed: sv skipped)")
    if shutil.which("s6-svscan") and shutil.which("s6-svstat"):
        work = tempfile.mkdtemp(prefix="cohort-bctl-s6.")
        dirs = make_dirs(work, 50, "#!/bin/sh\nexec sleep 100000\n")
        p = subprocess.Popen(["s6-svscan", work], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: all(subprocess.run(["s6-svstat", "-u", d], capture_output=True,
                                            text=True).stdout.strip() == "true" for d in dirs))
        loop = "for d in " + " ".join(dirs) + "; do s6-svstat $d; done"
        peers["s6-svstat loop over 50 dirs"] = timed(loop, shell=True)
        subprocess.run(["s6-svscanctl", "-t", work])
        p.wait(30)
        shutil.rmtree(work, ignore_errors=True)
    else:
        print("  (s6 not installed: s6-svstat skipped)")
    if shutil.which("supervisord"):
        work = tempfile.mkdtemp(prefix="cohort-bctl-sup.")
        conf = os.path.join(work, "s.conf")
        with open(conf, "w") as f:
            f.write(f"[supervisord]\nnodaemon=true\nlogfile={work}/s.log\npidfile={work}/s.pid\n"
                    f"[unix_http_server]\nfile={work}/s.sock\n[supervisorctl]\nserverurl=unix://{work}/s.sock\n"
                    "[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = "
                    "supervisor.rpcinterface:make_main_rpcinterface\n")
            for i in range(50):
                f.write(f"[program:s{i:03d}]\ncommand=sleep 100000\nstartsecs=0\n")
        p = subprocess.Popen(["supervisord", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: subprocess.run(["supervisorctl", "-c", conf, "status"], capture_output=True,
                                        text=True).stdout.count("RUNNING") == 50)
        peers["supervisorctl status, 50 programs"] = timed(["supervisorctl", "-c", conf, "status"])
        p.send_signal(signal.SIGTERM)
        p.wait(60)
        shutil.rmtree(work, ignore_errors=True)
    else:
        print("  (supervisor not installed: supervisorctl skipped)")
    for label, (med, p90) in peers.items():
        print(f"  {label:34s} {med:7.2f} ms  / {p90:7.2f} ms   cohortctl status 500 / this: "
              f"x{res['status500'][0] / med:.3g}")
    sv = peers.get("sv status, 50 dirs (one call)")
    if sv:
        verdict = "faster" if res["status500"][0] < sv[0] else "NOT faster"
        print(f"  goal: cohortctl status for 500 services {verdict} than sv status for 50 "
              f"({res['status500'][0]:.2f} ms vs {sv[0]:.2f} ms)")


if __name__ == "__main__":
    sys.exit(main())
