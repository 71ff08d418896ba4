#!/usr/bin/python3
"""Scale: thousands of services (SCALE=1 make bench; issue 19, item 1).

For 1,000 / 5,000 / 10,000 services (SCALE_SERVICES=1000,5000,10000), each
tests/bench/marker (it reports the moment it is exec'd, then pauses), with
cohortd, runit (runsvdir + one runsv each) and s6 (s6-svscan + one
s6-supervise each), and supervisord with 1,000 (SCALE_SUPERVISORD), in the
same run:

  check      cohortd --check (config load + plan), best of 3
  start-up   launch -> every service exec'd
  status     the status of all: cohortctl status; sv status DIR...; one
             s6-svstat per service (s6 has no whole-scan status);
             supervisorctl status.  Median of 3
  reload     cohortd: one service's command changed, cohortctl reload ->
             its replacement exec'd; no other service may be restarted
  restart    SIGKILL of one service up > 2 s -> its replacement exec'd,
             while the others run (20 kills): p50 / p99
  idle       the supervisor processes' CPU over 10 s once all run (% of one
             core, from /proc/PID/stat), and their PSS; for cohortd the
             memory each service adds: (PSS(N) - PSS(first N)) / (N - first N)
  shutdown   SIGTERM (runit: HUP to runsvdir; s6: s6-svscanctl -t) ->
             every service process gone

The bench raises its descriptor limit to the hard one, and pid_max when
it is under what runit and s6 need (two processes a service).  It prints
one table and the ratios; it asserts nothing.
"""
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_supervise as bs  # noqa: E402
import scale_summary  # noqa: E402

COUNTS = [int(x) for x in os.environ.get("SCALE_SERVICES", "1000,5000,10000").split(",")]
SUPERVISORD_N = int(os.environ.get("SCALE_SUPERVISORD", "1000"))
COHORTCTL = os.path.abspath(os.path.join(bs.BUILD, "cohortctl"))
KILLS = 20
IDLE_SECONDS = float(os.environ.get("SCALE_IDLE_SECONDS", "10"))


def names(n):
    return [f"s{i:05d}" for i in range(n)]


def cpu_seconds(pids):
    """CPU time of the processes, every thread, in seconds, from
    /proc/PID/task/TID/schedstat (nanoseconds): /proc/PID/stat counts in
    clock ticks, and one tick in a 10 s window is already 0.1 %, the goal."""
    total = 0
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue
    return total / 1e9


def markers_alive():
    """Marker processes left on the machine (one scan of /proc)."""
    n = 0
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/comm") as f:
                    if f.read().strip() == "marker":
                        n += 1
            except OSError:
                pass
    return n


def timed(cmd, runs=3, **kw):
    best = []
    for _ in range(runs):
        t0 = time.monotonic()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, **kw)
        best.append((time.monotonic() - t0) * 1000)
    return sorted(best)[len(best) // 2]


class Cohortd(bs.Cohortd):
    def __init__(self, work, markers, n):
        super().__init__(work, markers, n)
        self.names = names(n)
        self.ini = os.path.join(work, "cohort.ini")

    def write(self, changed=None):
        with open(self.ini, "w") as f:
            f.write(f"[cohort]\nrun_dir = {self.work}/run\nlog_dir = {self.work}/log\n"
                    f"state_dir = {self.work}/state\n")
            for name in self.names:
                extra = " changed" if name == changed else ""
                f.write(f"[service:{name}]\ncommand = {bs.MARKER} {name}{extra}\nready = delay:0\n"
                        "backoff_initial = 0\nbackoff_jitter = 0\nbreaker_failures = 0\n"
                        "stdout = null\n")

    def launch(self):
        self.write()
        self.proc = subprocess.Popen([bs.COHORTD, "-q", "-c", self.ini], env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def status(self):
        return timed([COHORTCTL, "-s", f"{self.work}/run/control.sock", "status"])

    def shutdown(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(300)


class Runit(bs.Runit):
    def __init__(self, work, markers, n):
        super().__init__(work, markers, n)
        self.names = names(n)

    def status(self):
        dirs = [os.path.join(self.work, "sv", n) for n in self.names]
        return timed(["sv", "status"] + dirs)

    def shutdown(self):
        self.stop()


class S6(bs.S6):
    def __init__(self, work, markers, n):
        super().__init__(work, markers, n)
        self.names = names(n)

    def launch(self):
        self.scan = os.path.join(self.work, "scan")
        for name in self.names:
            os.makedirs(os.path.join(self.scan, name))
            os.symlink(bs.MARKER, os.path.join(self.scan, name, "run"))
        # -c: the most services s6-svscan keeps (its default is 1000)
        self.proc = subprocess.Popen(["s6-svscan", "-c", str(self.n + 100), self.scan], env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def status(self):
        script = f'for d in {self.scan}/*; do s6-svstat "$d"; done'
        return timed(["sh", "-c", script], runs=1)

    def shutdown(self):
        self.stop()


class Supervisord(bs.Supervisord):
    def __init__(self, work, markers, n):
        super().__init__(work, markers, n)
        self.names = names(n)
        self.conf = os.path.join(work, "supervisord.conf")

    def launch(self):
        with open(self.conf, "w") as f:
            f.write(f"[supervisord]\nnodaemon=true\nlogfile={self.work}/supervisord.log\n"
                    f"pidfile={self.work}/supervisord.pid\nloglevel=error\nminfds=1024\n"
                    f"[unix_http_server]\nfile={self.work}/supervisor.sock\n"
                    "[rpcinterface:supervisor]\n"
                    "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n"
                    f"[supervisorctl]\nserverurl=unix://{self.work}/supervisor.sock\n")
            for name in self.names:
                f.write(f"[program:{name}]\ncommand={bs.MARKER} {name}\nautorestart=true\n"
                        "startsecs=0\nstartretries=100000\nstdout_logfile=NONE\n"
                        "stderr_logfile=NONE\n")
        self.proc = subprocess.Popen(["supervisord", "-c", self.conf], env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def status(self):
        return timed(["supervisorctl", "-c", self.conf, "status"])

    def shutdown(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(600)


def measure(cls, n):
    work = tempfile.mkdtemp(prefix=f"cohort-scale-{cls.label}.")
    markers = bs.Markers(os.path.join(work, "m.sock"))
    markers.sock.setsockopt(bs.socket.SOL_SOCKET, bs.socket.SO_RCVBUF, 16 << 20)
    sup = cls(work, markers, n)
    r = {}
    try:
        t0 = time.monotonic()
        sup.launch()
        seen = bs.wait_hellos(markers, n, timeout=600)
        r["startup"] = (max(t for _, _, t in seen.values()) - t0) * 1000
        current = {name: (pid, t) for name, (_, pid, t) in seen.items()}

        time.sleep(1.0)		# the start burst's aftermath
        pids = sup.supervisor_pids()
        c0, w0 = cpu_seconds(pids), time.monotonic()
        time.sleep(IDLE_SECONDS)
        c1, w1 = cpu_seconds(sup.supervisor_pids()), time.monotonic()
        r["idle_cpu"] = (c1 - c0) / (w1 - w0) * 100
        r["pss"] = bs.pss_kib(sup.supervisor_pids())
        r["status"] = sup.status()

        lat = []
        for k in range(KILLS):
            name = sup.names[k % len(sup.names)]
            pid, born = current[name]
            age = time.monotonic() - born
            if age < bs.MIN_AGE:
                time.sleep(bs.MIN_AGE - age)
            t0 = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            while True:
                m = markers.recv(30)
                if m is None:
                    raise RuntimeError(f"{sup.label}: {name} was not restarted")
                if m[0] == name and m[1] != pid:
                    break
            lat.append((m[2] - t0) * 1000)
            current[name] = (m[1], m[2])
        r["restart"] = (bs.pct(lat, 50), bs.pct(lat, 99))

        if cls is Cohortd:
            victim = sup.names[n // 2]
            sup.write(changed=victim)
            markers.drain()
            t0 = time.monotonic()
            rc = subprocess.run([COHORTCTL, "-s", f"{work}/run/control.sock", "reload"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
            m = markers.recv(60)
            r["reload"] = (m[2] - t0) * 1000 if m and m[0] == victim and rc == 0 else None
            time.sleep(0.5)
            others = []
            while True:
                m2 = markers.recv(0.01)
                if m2 is None:
                    break
                others.append(m2[0])
            if m is None or m[0] != victim or others:
                print(f"  (reload: expected only {victim} restarted; got {m and m[0]} and {others[:5]})")
                r["reload"] = None

        t0 = time.monotonic()
        sup.shutdown()
        while markers_alive() and time.monotonic() - t0 < 300:
            time.sleep(0.01)
        r["shutdown"] = (time.monotonic() - t0) * 1000
    except Exception as e:  # a peer that cannot hold n services: said, not fatal
        r["error"] = str(e)
    finally:
        if sup.proc and sup.proc.poll() is None:
            try:
                sup.stop()
            except Exception:
                pass
        subprocess.run(["pkill", "-KILL", "-f", f"^{bs.MARKER}"], check=False)
        shutil.rmtree(work, ignore_errors=True)
    return r


def check_ms(n):
    f = tempfile.NamedTemporaryFile("w", suffix=".ini", delete=False)
    for name in names(n):
        f.write(f"[service:{name}]\ncommand = /bin/sleep 1000\n")
    f.close()
    ms = min(timed([bs.COHORTD, "--check", "-c", f.name], runs=1) for _ in range(3))
    os.unlink(f.name)
    return ms


def raise_limits(nmax):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        with open("/proc/sys/kernel/pid_max") as f:
            pid_max = int(f.read())
        if pid_max < 4 * nmax + 20000 and os.geteuid() == 0:
            with open("/proc/sys/kernel/pid_max", "w") as f:
                f.write(str(4 * nmax + 20000))
            print(f"  (kernel.pid_max raised from {pid_max} to {4 * nmax + 20000})")
    except OSError as e:
        print(f"  (kernel.pid_max left as it is: {e})")


def fmt(v, unit="ms", nd=1):
    if v is None:
        return "-"
    return f"{v:.{nd}f} {unit}"


def main():
    if not os.path.exists(bs.MARKER):
        sys.exit(f"build {bs.MARKER} first (make bench does)")
    print("scale: services (cohortd beside runit, s6 and supervisord, same run)")
    raise_limits(max(COUNTS))
    sups = [Cohortd]
    if os.environ.get("SCALE_PEERS", "1") == "1":
        sups += [c for c, exe in ((Runit, "runsvdir"), (S6, "s6-svscan")) if shutil.which(exe)]
    rows = []
    for n in COUNTS:
        rows.append(("cohortd --check", n, {"check": check_ms(n)}))
        for cls in sups:
            r = measure(cls, n)
            rows.append((cls.label, n, r))
            print(f"  {cls.label:12s} {n:6d}: {r}", flush=True)
    if shutil.which("supervisord") and SUPERVISORD_N and os.environ.get("SCALE_PEERS", "1") == "1":
        r = measure(Supervisord, SUPERVISORD_N)
        rows.append(("supervisord", SUPERVISORD_N, r))
        print(f"  {'supervisord':12s} {SUPERVISORD_N:6d}: {r}", flush=True)

    print("\n| supervisor | services | start-up | status | reload one | restart p50 / p99 | "
          "idle CPU | PSS | shutdown |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, n, r in rows:
        if "check" in r:
            print(f"| cohortd --check (load + plan) | {n} | {fmt(r['check'])} | | | | | | |")
            continue
        if "error" in r:
            print(f"| {label} | {n} | failed: {r['error']} | | | | | | |")
            continue
        rs = f"{r['restart'][0]:.2f} / {r['restart'][1]:.2f} ms"
        print(f"| {label} | {n} | {fmt(r['startup'])} | {fmt(r['status'])} | {fmt(r.get('reload'))} | "
              f"{rs} | {r['idle_cpu']:.3f} % | {r['pss'] / 1024:.1f} MiB | {fmt(r['shutdown'])} |")

    coh = {n: r for label, n, r in rows if label == "cohortd" and "error" not in r}
    if len(coh) >= 2:
        lo, hi = min(coh), max(coh)
        per = (coh[hi]["pss"] - coh[lo]["pss"]) / (hi - lo) * 1024
        print(f"\ncohortd memory per extra service ({lo} -> {hi}): {per:.0f} bytes (goal < 2048)")
        for key in ("startup", "status", "shutdown"):
            print(f"cohortd {key} per 1,000 services: " +
                  ", ".join(f"{n}: {coh[n][key] / n * 1000:.1f} ms" for n in sorted(coh)))
    for label in ("runit", "s6"):
        for n in COUNTS:
            peer = [r for lbl, m, r in rows if lbl == label and m == n and "error" not in r]
            if peer and n in coh:
                p = peer[0]
                print(f"cohortd/{label} at {n}: start-up x{coh[n]['startup'] / p['startup']:.2f}, "
                      f"shutdown x{coh[n]['shutdown'] / p['shutdown']:.2f}, "
                      f"status x{coh[n]['status'] / p['status']:.2f}, "
                      f"restart p50 x{coh[n]['restart'][0] / p['restart'][0]:.2f}")
    summarize(rows)


def summarize(rows):
    """The goals of item 1, for the one table of SCALE=1 (scale_summary.py)."""
    ok = {(label, n): r for label, n, r in rows if "error" not in r and "check" not in r}
    coh = {n: r for (label, n), r in ok.items() if label == "cohortd"}
    if not coh:
        scale_summary.add("services", "cohortd runs", "failed", goal="all measured", met=False)
        return
    counts = sorted(coh)
    hi = counts[-1]

    def peers_at(n, key):
        got = [(label, r[key]) for (label, m), r in ok.items() if m == n and label != "cohortd"]
        return got

    def text(pairs, unit="ms", nd=0):
        return ", ".join(f"{label} {v:.{nd}f} {unit}" for label, v in pairs)

    for key, what in (("startup", "start-up (launch -> all exec'd)"), ("shutdown", "shutdown (-> all gone)")):
        for n in counts:
            p = peers_at(n, key)
            scale_summary.add("services", f"{what}, {n:,}", f"{coh[n][key]:.0f} ms", text(p),
                              "faster than runit and s6", scale_summary.faster(coh[n][key], [v for _, v in p]))
        per = [coh[n][key] / n * 1000 for n in counts]
        scale_summary.add("services", f"{key} per 1,000 services at " + " / ".join(f"{n:,}" for n in counts),
                          " / ".join(f"{v:.0f}" for v in per) + " ms", "",
                          "linear or better (largest count within 1.5x of the smallest, per service)",
                          per[-1] <= 1.5 * per[0] if len(per) > 1 else None)
    st = [coh[n]["status"] / n * 1000 for n in counts]
    scale_summary.add("services", "status of all, per 1,000 at " + " / ".join(f"{n:,}" for n in counts),
                      " / ".join(f"{v:.1f}" for v in st) + " ms", text(peers_at(hi, "status"), "ms", 1) + f" (at {hi:,})",
                      "linear or better", st[-1] <= 1.5 * st[0] if len(st) > 1 else None)
    rl = [coh[n].get("reload") for n in counts]
    if all(v is not None for v in rl):
        scale_summary.add("services", "reload changing one, at " + " / ".join(f"{n:,}" for n in counts),
                          " / ".join(f"{v:.0f}" for v in rl) + " ms", "", "only that one restarted", True)
    r = coh[hi]["restart"]
    pr = [(label, v[0]) for label, v in peers_at(hi, "restart")]
    scale_summary.add("services", f"restart of one while {hi - 1:,} run, p50 / p99", f"{r[0]:.2f} / {r[1]:.2f} ms",
                      ", ".join(f"{label} p50 {v:.2f} ms" for label, v in pr))
    idle = max(coh[n]["idle_cpu"] for n in counts)
    scale_summary.add("services", "idle CPU, largest of " + " / ".join(f"{n:,}" for n in counts),
                      f"{idle:.3f} %", text(peers_at(hi, "idle_cpu"), "%", 3),
                      "< 0.1 % of a core", idle < 0.1)
    if len(counts) > 1:
        lo = counts[0]
        per = (coh[hi]["pss"] - coh[lo]["pss"]) / (hi - lo) * 1024
        pp = []
        for label in ("runit", "s6"):
            if (label, lo) in ok and (label, hi) in ok:
                pp.append((label, (ok[(label, hi)]["pss"] - ok[(label, lo)]["pss"]) / (hi - lo) * 1024))
        scale_summary.add("services", f"memory (PSS) per extra service, {lo:,} -> {hi:,}", f"{per:.0f} B",
                          text(pp, "B"), "< 2,048 B", per < 2048)


if __name__ == "__main__":
    main()
