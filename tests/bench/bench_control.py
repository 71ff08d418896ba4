#!/usr/bin/python3
"""Control-path benchmarks: the wall time of a whole `cohortctl status`
process with 50 and 500 services, and of `cohortctl restart` (with wait)
of one fast service, beside `supervisorctl status` (50 programs),
`sv status` over 50 runit service dirs and an `s6-svstat` loop over 50
s6 service dirs, all measured in the same run.

Every supervisor runs at once, and the commands take turns run by run, so
that the load of this shared machine falls on all of them alike. Each
figure is the median (and p90) of the whole command as a user or a script
runs it.
"""
import os
import random
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
RUNS = int(os.environ.get("BENCH_RUNS", "200"))
SLOW_RUNS = int(os.environ.get("BENCH_SLOW_RUNS", "20"))


def run_once(cmd, shell=False):
    t0 = time.perf_counter()
    p = subprocess.run(cmd, shell=shell, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = (time.perf_counter() - t0) * 1000
    if p.returncode != 0:
        raise RuntimeError(f"{cmd}: exit {p.returncode}: {p.stderr.decode()[:200]}")
    return elapsed


def interleaved(cmds, runs):
    """{label: (median, p90)}: the commands run in a fresh random order
    each round, one run each per round."""
    times = {label: [] for label in cmds}
    labels = list(cmds)
    for _ in range(runs):
        random.shuffle(labels)
        for label in labels:
            cmd, shell = cmds[label]
            times[label].append(run_once(cmd, shell))
    out = {}
    for label, t in times.items():
        t.sort()
        out[label] = (statistics.median(t), t[max(0, int(len(t) * 0.9) - 1)])
    return out


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
            # A state_dir of its own: two run at once, and one cohortd per
            # state_dir may run (the default is /var/lib/cohort).
            f.write(f"[cohort]\nrun_dir = {self.dir}/run\nlog_dir = {self.dir}/log\nstate_dir = {self.dir}/state\n")
            for i in range(n):
                f.write(f"[service:s{i:03d}]\ncommand = /bin/sleep 100000\nready = delay:0\n"
                        "stdout = null\nbackoff_initial = 0\n")
        self.sock = f"{self.dir}/run/control.sock"
        self.err = open(os.path.join(self.dir, "cohortd.err"), "w+")
        self.proc = subprocess.Popen([COHORTD, "-q", "-c", ini], stderr=self.err)
        try:
            wait_for(lambda: self.proc.poll() is None and
                     subprocess.run([COHORTCTL, "-s", self.sock, "--json", "status"],
                                    capture_output=True, text=True).stdout.count('"running"') == n)
        except RuntimeError:
            self.proc.kill()
            self.proc.wait()
            self.err.seek(0)
            raise RuntimeError(f"cohortd with {n} services did not come up: {self.err.read()[-500:]}")

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


class Runit:
    def __init__(self, n):
        self.work = tempfile.mkdtemp(prefix="cohort-bctl-runit.")
        self.dirs = make_dirs(self.work, n, "#!/bin/sh\nexec sleep 100000\n")
        self.proc = subprocess.Popen(["runsvdir", self.work], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_for(lambda: all(os.path.exists(os.path.join(d, "supervise", "stat")) and
                             open(os.path.join(d, "supervise", "stat")).read().strip() == "run"
                             for d in self.dirs))

    def stop(self):
        # Each runsv stops its service and exits; then runsvdir. Removing
        # the dirs under a runsv that is still stopping left it behind.
        subprocess.run(["sv", "-w", "10", "exit", *self.dirs], capture_output=True)
        self.proc.send_signal(signal.SIGHUP)
        self.proc.wait(30)
        shutil.rmtree(self.work, ignore_errors=True)


class S6:
    def __init__(self, n):
        self.work = tempfile.mkdtemp(prefix="cohort-bctl-s6.")
        self.dirs = make_dirs(self.work, n, "#!/bin/sh\nexec sleep 100000\n")
        self.proc = subprocess.Popen(["s6-svscan", self.work], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_for(lambda: all(subprocess.run(["s6-svstat", "-u", d], capture_output=True,
                                            text=True).stdout.strip() == "true" for d in self.dirs))

    def stop(self):
        subprocess.run(["s6-svscanctl", "-t", self.work])
        self.proc.wait(30)
        shutil.rmtree(self.work, ignore_errors=True)


class Supervisor:
    def __init__(self, n):
        self.work = tempfile.mkdtemp(prefix="cohort-bctl-sup.")
        self.conf = os.path.join(self.work, "s.conf")
        with open(self.conf, "w") as f:
            f.write(f"[supervisord]\nnodaemon=true\nlogfile={self.work}/s.log\npidfile={self.work}/s.pid\n"
                    f"[unix_http_server]\nfile={self.work}/s.sock\n[supervisorctl]\n"
                    f"serverurl=unix://{self.work}/s.sock\n"
                    "[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = "
                    "supervisor.rpcinterface:make_main_rpcinterface\n")
            for i in range(n):
                f.write(f"[program:s{i:03d}]\ncommand=sleep 100000\nstartsecs=0\n")
        self.proc = subprocess.Popen(["supervisord", "-c", self.conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_for(lambda: subprocess.run(["supervisorctl", "-c", self.conf, "status"], capture_output=True,
                                        text=True).stdout.count("RUNNING") == n)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        shutil.rmtree(self.work, ignore_errors=True)


def main():
    print(f"control path: whole-command wall time, median / p90; every supervisor up at once,\n"
          f"commands taking turns ({RUNS} runs each, {SLOW_RUNS} for the slow peers)")
    started = []
    try:
        c50, c500 = Cohort(50), Cohort(500)
        started += [c50, c500]
        fast = {
            "cohortctl status, 50 services": ([COHORTCTL, "-s", c50.sock, "status"], False),
            "cohortctl status, 500 services": ([COHORTCTL, "-s", c500.sock, "status"], False),
            "cohortctl restart (wait), 1 fast": ([COHORTCTL, "-s", c50.sock, "restart", "s000"], False),
        }
        slow = {}
        if shutil.which("runsvdir") and shutil.which("sv"):
            r = Runit(50)
            started.append(r)
            fast["sv status, 50 dirs (one call)"] = (["sv", "status", *r.dirs], False)
        else:
            print("  (runit not installed: sv skipped)")
        if shutil.which("s6-svscan") and shutil.which("s6-svstat"):
            s = S6(50)
            started.append(s)
            slow["s6-svstat loop over 50 dirs"] = ("for d in " + " ".join(s.dirs) + "; do s6-svstat $d; done",
                                                   True)
        else:
            print("  (s6 not installed: s6-svstat skipped)")
        if shutil.which("supervisord"):
            sup = Supervisor(50)
            started.append(sup)
            slow["supervisorctl status, 50 programs"] = (["supervisorctl", "-c", sup.conf, "status"], False)
        else:
            print("  (supervisor not installed: supervisorctl skipped)")
        res = interleaved(fast, RUNS)
        res.update(interleaved(slow, SLOW_RUNS) if slow else {})
    finally:
        for x in reversed(started):
            x.stop()
    mine = res["cohortctl status, 500 services"][0]
    for label, (med, p90) in res.items():
        ratio = "" if label.startswith("cohortctl") else f"   cohortctl status 500 / this: x{mine / med:.3g}"
        print(f"  {label:34s} {med:7.2f} ms  / {p90:7.2f} ms{ratio}")
    sv = res.get("sv status, 50 dirs (one call)")
    if sv:
        verdict = "faster" if mine < sv[0] else "NOT faster"
        print(f"  goal: cohortctl status for 500 services {verdict} than sv status for 50 "
              f"({mine:.2f} ms vs {sv[0]:.2f} ms)")


if __name__ == "__main__":
    sys.exit(main())
