#!/usr/bin/python3
"""Supervision benchmarks: cohortd beside runit (runsvdir + runsv), s6
(s6-svscan + s6-supervise) and supervisord, measured in the same run.

  restart latency  SIGKILL of a service that has run > 2 s, to its
                   replacement exec'd (the marker program reports the
                   moment itself); backoff 0; 200 kills spread over 20
                   services so each victim has run > 2 s (runsv and
                   s6-supervise wait a second before restarting a service
                   that died young, so younger victims would be unfair)
  memory           PSS of the supervisor processes (not the services) with
                   50 and 500 services
  start-up         launch to 200 services exec'd

Every service is tests/bench/marker: it sends "NAME PID SEC NSEC"
(CLOCK_MONOTONIC) to our datagram socket the moment it starts.
Peers missing from the machine are skipped with a note.
"""
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

BUILD = os.environ.get("COHORT_BUILDDIR", ".")
MARKER = os.path.abspath(os.path.join(BUILD, "tests", "bench", "marker"))
COHORTD = os.path.abspath(os.path.join(BUILD, "cohortd"))
KILLS = int(os.environ.get("BENCH_KILLS", "200"))
VICTIMS = 20
MIN_AGE = 2.05


class Markers:
    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)

    def recv(self, timeout):
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(512).decode()
        except socket.timeout:
            return None
        name, pid, sec, nsec = data.split()
        return name, int(pid), int(sec) + int(nsec) / 1e9

    def drain(self):
        while self.recv(0.0001):
            pass


def pss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def children(pid, name=None):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        comm = s[s.index("(") + 1:s.rindex(")")]
        ppid = int(s[s.rindex(")") + 2:].split()[1])
        if ppid == pid and (name is None or comm == name):
            out.append(int(d))
    return out


class Supervisor:
    label = "?"

    def __init__(self, work, markers, n):
        self.work = work
        self.markers = markers
        self.n = n
        self.names = [f"s{i:03d}" for i in range(n)]
        self.env = dict(os.environ, MARKER_SOCK=markers.path)
        self.proc = None

    def launch(self):
        raise NotImplementedError

    def supervisor_pids(self):
        return [self.proc.pid]

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Cohortd(Supervisor):
    label = "cohortd"

    def launch(self):
        ini = os.path.join(self.work, "cohort.ini")
        with open(ini, "w") as f:
            f.write(f"[cohort]\nrun_dir = {self.work}/run\nlog_dir = {self.work}/log\n"
                    f"state_dir = {self.work}/state\n")
            for name in self.names:
                f.write(f"[service:{name}]\ncommand = {MARKER} {name}\nready = delay:0\n"
                        "backoff_initial = 0\nbackoff_jitter = 0\nbreaker_failures = 0\n"
                        "stdout = null\n")
        self.proc = subprocess.Popen([COHORTD, "-q", "-c", ini], env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class Runit(Supervisor):
    label = "runit"

    def launch(self):
        scan = os.path.join(self.work, "sv")
        for name in self.names:
            os.makedirs(os.path.join(scan, name))
            os.symlink(MARKER, os.path.join(scan, name, "run"))
        self.proc = subprocess.Popen(["runsvdir", scan], env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def supervisor_pids(self):
        return [self.proc.pid] + children(self.proc.pid, "runsv")

    def stop(self):
        # runsvdir sends TERM to every runsv on HUP; each runsv takes its
        # service down and exits.
        runsvs = children(self.proc.pid, "runsv")
        self.proc.send_signal(signal.SIGHUP)
        self.proc.wait(30)
        deadline = time.monotonic() + 30
        while any(os.path.exists(f"/proc/{p}") for p in runsvs) and time.monotonic() < deadline:
            time.sleep(0.01)


class S6(Supervisor):
    label = "s6"

    def launch(self):
        self.scan = os.path.join(self.work, "scan")
        for name in self.names:
            os.makedirs(os.path.join(self.scan, name))
            os.symlink(MARKER, os.path.join(self.scan, name, "run"))
        self.proc = subprocess.Popen(["s6-svscan", self.scan], env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def supervisor_pids(self):
        return [self.proc.pid] + children(self.proc.pid, "s6-supervise")

    def stop(self):
        subprocess.run(["s6-svscanctl", "-t", self.scan], check=False)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Supervisord(Supervisor):
    label = "supervisord"

    def launch(self):
        conf = os.path.join(self.work, "supervisord.conf")
        with open(conf, "w") as f:
            f.write(f"[supervisord]\nnodaemon=true\nlogfile={self.work}/supervisord.log\n"
                    f"pidfile={self.work}/supervisord.pid\nloglevel=error\nminfds=1024\n")
            for name in self.names:
                f.write(f"[program:{name}]\ncommand={MARKER} {name}\nautorestart=true\n"
                        "startsecs=0\nstartretries=100000\nstdout_logfile=NONE\n"
                        "stderr_logfile=NONE\n")
        self.proc = subprocess.Popen(["supervisord", "-c", conf], env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


PEERS = [(Cohortd, COHORTD), (Runit, "runsvdir"), (S6, "s6-svscan"), (Supervisord, "supervisord")]


def available():
    out = []
    for cls, exe in PEERS:
        if cls is Cohortd or shutil.which(exe):
            out.append(cls)
        else:
            print(f"  ({cls.label}: {exe} not installed, skipped)")
    return out


def wait_hellos(markers, n, timeout=60):
    seen = {}
    deadline = time.monotonic() + timeout
    while len(seen) < n:
        m = markers.recv(max(0.001, deadline - time.monotonic()))
        if m is None:
            raise RuntimeError(f"only {len(seen)} of {n} services started")
        seen[m[0]] = m
    return seen


def run(cls, n, body):
    work = tempfile.mkdtemp(prefix=f"cohort-bench-{cls.label}.")
    markers = Markers(os.path.join(work, "m.sock"))
    sup = cls(work, markers, n)
    try:
        return body(sup, markers)
    finally:
        sup.stop()
        # the services themselves, whatever the supervisor left
        subprocess.run(["pkill", "-KILL", "-f", f"^{MARKER}"], check=False)
        shutil.rmtree(work, ignore_errors=True)


def restart_latency(sup, markers):
    sup.launch()
    current = {name: (pid, t) for name, (_, pid, t) in wait_hellos(markers, sup.n).items()}
    lat = []
    while len(lat) < KILLS:
        name = min(current, key=lambda k: current[k][1])
        pid, born = current[name]
        age = time.monotonic() - born
        if age < MIN_AGE:
            time.sleep(MIN_AGE - age)
        t0 = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        while True:
            m = markers.recv(10)
            if m is None:
                raise RuntimeError(f"{sup.label}: {name} was not restarted")
            if m[0] == name and m[1] != pid:
                break
        lat.append((m[2] - t0) * 1000)
        current[name] = (m[1], m[2])
    return lat


def memory(sup, markers):
    sup.launch()
    wait_hellos(markers, sup.n)
    time.sleep(0.5)  # let the supervisors settle after the start burst
    return pss_kib(sup.supervisor_pids())


def startup(sup, markers):
    t0 = time.monotonic()
    sup.launch()
    seen = wait_hellos(markers, sup.n)
    return (max(t for _, _, t in seen.values()) - t0) * 1000


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def main():
    if not os.path.exists(MARKER):
        sys.exit(f"build {MARKER} first (make bench does)")
    print("supervision benchmarks (cohortd beside the peers, same run)")
    sups = available()

    print(f"\nrestart latency: SIGKILL of a service up > 2 s -> replacement exec'd, "
          f"{KILLS} kills over {VICTIMS} services, backoff 0")
    res = {}
    for cls in sups:
        lat = run(cls, VICTIMS, restart_latency)
        res[cls.label] = lat
        print(f"  {cls.label:12s} p50 {pct(lat, 50):8.3f} ms   p99 {pct(lat, 99):8.3f} ms   "
              f"mean {statistics.mean(lat):8.3f} ms")
    base = res["cohortd"]
    for label, lat in res.items():
        if label != "cohortd":
            print(f"  cohortd/{label}: p50 x{pct(base, 50) / pct(lat, 50):.3g}, "
                  f"p99 x{pct(base, 99) / pct(lat, 99):.3g}")

    print("\nmemory: PSS of the supervisor processes (services not counted)")
    for n in (50, 500):
        row = {cls.label: run(cls, n, memory) for cls in sups}
        cells = "  ".join(f"{k} {v / 1024:7.2f} MiB" for k, v in row.items())
        print(f"  {n:4d} services: {cells}")
        for label, kib in row.items():
            if label != "cohortd":
                print(f"       cohortd/{label}: x{row['cohortd'] / kib:.3f}")

    print("\nstart-up: launch -> 200 services exec'd")
    row = {cls.label: run(cls, 200, startup) for cls in sups}
    for label, ms in row.items():
        extra = f"   cohortd/{label}: x{row['cohortd'] / ms:.2f}" if label != "cohortd" else ""
        print(f"  {label:12s} {ms:9.1f} ms{extra}")


if __name__ == "__main__":
    main()
