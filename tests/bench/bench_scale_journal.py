#!/usr/bin/python3
"""A gigabyte of journal (issue 19, item 3): cohortd beside redis and mosquitto.

cohortd: 1,000 durable sessions, each subscribed with qos 1 to its own
topic, are away while M qos-1 messages (10 million at full size, a data of
40 bytes each, round robin over the sessions) and R retained values
(100,000) are published through libcohort (tests/bench/journal_fill, at
most 1,000 unacknowledged): the journal holds only live records, 1 GiB.
Then cohortd is killed (SIGKILL) and started again: the recovery time
(launch -> a hello answered on bus.sock) and the CPU time cohortd used
until then (on a shared machine the steadier figure), its RSS once
recovered and its peak (VmHWM), beside the journal's size.  Then, while a
probe publishes qos-1 messages at 500 a second (each publish's time to its
ok is a sample), 80 % of the sessions come back with clean:true, which
drops their queues: the journal is then over 4x its live data, and a
compaction of it is written (snapshot.new exists in the journal directory,
looked at every 2 ms); then the other sessions come back and read (ack)
everything.  The samples before, while cleaning, while compacting, while
draining and after: their p50, p99 and the longest.

redis: an AOF with the same entries (RPUSH sI <data> per message, SET rK
<data> per retained value), loaded by redis-server (appendonly yes): launch
-> PING answered (not -LOADING), RSS after.

mosquitto: the same 1,000 sessions (clean_session false, qos 1), the same
messages and retained values, persistence on; stopped (SIGTERM: it writes
its database), started again: launch -> CONNACK, RSS after.  mosquitto
writes its persistence file only at shutdown or autosave, so it is not
killed.

The page cache is not dropped (the machine is shared): every server reads
its file warm, synced to disk first (a server's first fsync would
otherwise wait for the writeback of the file it is reading).  The journal, the AOF and the database are removed after
each run.

Environment: COHORT_BUILDDIR, BENCH_COHORTD (another cohortd, for a
before/after), SCALE_JOURNAL_MB (1024: the size the message count is
scaled to; 50 for a development run), SCALE_JOURNAL_SESSIONS (1000),
SCALE_JOURNAL_DATA (40: bytes of each data), SCALE_JOURNAL_PEERS (1; 0:
cohortd alone), SCALE_JOURNAL_DRAIN (1; 0: no compaction figure),
SCALE_JOURNAL_CLEAN (0.8: the share of the sessions cleaned before the
drain), SCALE_JOURNAL_DRAIN_S (420: the drain is stopped after this long),
SCALE_JOURNAL_COMPACT_WAIT (150: after the cleaning, how long the probe
waits for a compaction; one waits for the mids of the last two minutes to
age out, as a snapshot keeps them).
"""
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scale_summary  # noqa: E402

BUILD = os.environ.get("COHORT_BUILDDIR", ".")
COHORTD = os.path.abspath(os.environ.get("BENCH_COHORTD") or os.path.join(BUILD, "cohortd"))
FILL = os.path.abspath(os.path.join(BUILD, "tests", "bench", "journal_fill"))
MB = float(os.environ.get("SCALE_JOURNAL_MB", "1024"))
SESSIONS = int(os.environ.get("SCALE_JOURNAL_SESSIONS", "1000"))
DATA = int(os.environ.get("SCALE_JOURNAL_DATA", "40"))
PEERS = os.environ.get("SCALE_JOURNAL_PEERS", "1") == "1"
DRAIN = os.environ.get("SCALE_JOURNAL_DRAIN", "1") == "1"
MSGS = int(10_000_000 * MB / 1024) // SESSIONS * SESSIONS
RETAINED = int(100_000 * MB / 1024)
DRAIN_MAX = float(os.environ.get("SCALE_JOURNAL_DRAIN_S", "420"))
CLEAN = float(os.environ.get("SCALE_JOURNAL_CLEAN", "0.8"))
COMPACT_WAIT = float(os.environ.get("SCALE_JOURNAL_COMPACT_WAIT", "150"))
PROBE_RATE = 500
procs = []


def rss_mb(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_s(pid):
    """CPU time the process used so far (all its threads): on a shared
    machine, steadier than the wall time."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def dir_bytes(d):
    total = 0
    for root, _, files in os.walk(d):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def wait_for(check, what, proc, timeout=900, step=0.005):
    end = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except OSError:
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: the server exited ({proc.returncode})")
        if time.monotonic() > end:
            raise RuntimeError(f"{what}: not within {timeout} s")
        time.sleep(step)


def sync_files(d):
    """Every file under d on disk: a server's first fsync after a start
    would otherwise wait for the writeback of what the last one left
    dirty (seconds for a gigabyte), and that is not its recovery."""
    for root, _, files in os.walk(d):
        for f in files:
            try:
                fd = os.open(os.path.join(root, f), os.O_RDONLY)
            except OSError:
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def run_fill(*args, timeout=7200):
    out = subprocess.run([FILL, *map(str, args)], capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"journal_fill {' '.join(map(str, args))}: {out.stderr.strip()}")
    last = out.stdout.strip().splitlines()[-1]
    if last.startswith("unsupported"):
        return None
    return float(last.split()[1].split("=")[1])


def spawn(argv, log):
    p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    procs.append(p)
    return p


def kill(p, sig=signal.SIGKILL):
    if p.poll() is None:
        p.send_signal(sig)
        p.wait(600)


# --- cohortd ---------------------------------------------------------------------------------

def hello(kind, sock):
    """A hello answered (cohortd: the bus is open, the journal read; mosquitto: a CONNACK)."""
    fill = subprocess.run([FILL, kind, f"unix:{sock}", "hello"], capture_output=True, timeout=60)
    return fill.returncode == 0


def cohort_launch(w, log):
    p = spawn([COHORTD, "-c", os.path.join(w, "cohort.ini")], log)
    return p


class Compactions:
    """When snapshot.new exists in the journal's directory (a compaction
    being written: by the loop, then synced and renamed by the writer)."""

    def __init__(self, d):
        self.path, self.spans, self.stop, self.since = os.path.join(d, "snapshot.new"), [], False, None
        self.t = threading.Thread(target=self.watch, daemon=True)
        self.t.start()

    def watch(self):
        while not self.stop:
            there = os.path.exists(self.path)
            now = time.monotonic()
            if there and self.since is None:
                self.since = now
            elif not there and self.since is not None:
                self.spans.append((self.since, now))
                self.since = None
            time.sleep(0.002)
        if self.since is not None:
            self.spans.append((self.since, time.monotonic()))

    def during(self, t):
        # from 50 ms before the file appears: the fork that starts a
        # compaction comes just before its child makes snapshot.new
        return any(a - 0.05 <= t <= b + 0.005 for a, b in self.spans)


def pct(v, p):
    if not v:
        return float("nan")
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p / 100))]


def places_found(w):
    """Has cohortd noted the place of every spilled delivery?"""
    out = subprocess.run([os.path.join(BUILD, "cohortctl"), "-c", os.path.join(w, "cohort.ini"), "--json",
                          "status"], capture_output=True, text=True, timeout=60)
    sessions = json.loads(out.stdout.splitlines()[-1])["bus"]["sessions"]
    return all(s["spill_places"] == s["spilled"] for s in sessions)


def cohortd_run():
    w = tempfile.mkdtemp(prefix="cohort-sj-", dir="/tmp")
    r = {}
    try:
        with open(os.path.join(w, "cohort.ini"), "w") as f:
            f.write(f"[cohort]\nrun_dir = {w}/run\nstate_dir = {w}/state\nlog_dir = {w}/log\n"
                    "bus_fsync = never\n"
                    "[service:idle]\ncommand = /bin/sleep 100000\nready = delay:0\nstdout = null\n")
        log = open(os.path.join(w, "cohortd.log"), "w")
        sock, jdir = f"{w}/run/bus.sock", f"{w}/state/bus"
        p = cohort_launch(w, log)
        wait_for(lambda: os.path.exists(sock), "bus.sock", p)
        run_fill("cohort", f"unix:{sock}", "sessions", SESSIONS)
        t = run_fill("cohort", f"unix:{sock}", "fill", MSGS, SESSIONS, RETAINED, DATA)
        r["fill_s"] = t
        r["live_rss"] = rss_mb(p.pid)
        time.sleep(1)
        kill(p)
        r["journal"] = dir_bytes(jdir)
        sync_files(jdir)
        t0 = time.monotonic()
        p = cohort_launch(w, log)
        wait_for(lambda: os.path.exists(sock) and hello("cohort", sock), "recovery", p, step=0.01)
        r["recovery_s"] = time.monotonic() - t0
        r["cpu_s"] = cpu_s(p.pid)
        r["rss"], r["hwm"] = rss_mb(p.pid), rss_mb(p.pid, "VmHWM")
        time.sleep(2)
        r["rss_settled"] = rss_mb(p.pid)
        # the index of spilled deliveries (8 bytes each) is built after
        # recovery, by a scan of the journal a little each loop iteration
        t0 = time.monotonic()
        wait_for(lambda: places_found(w), "the places of the spilled deliveries", p, timeout=300, step=0.2)
        r["places_s"], r["rss_places"] = time.monotonic() - t0 + 2, rss_mb(p.pid)
        if DRAIN:
            r.update(drain(w, p, sock, jdir))
        kill(p, signal.SIGTERM)
        log.close()
        with open(os.path.join(w, "cohortd.log")) as f:
            r["log"] = [ln.strip() for ln in f if "recovered" in ln or "compacting" in ln]
    finally:
        kill_all()
        shutil.rmtree(w, ignore_errors=True)
    return r


def drain(w, p, sock, jdir):
    """Under the probe: most sessions cleaned, a compaction, the rest
    back, reading everything."""
    per = MSGS // SESSIONS
    keep = SESSIONS - int(SESSIONS * CLEAN)
    watch = Compactions(jdir)
    before = 3.0
    seconds = 3600
    # To a file: a pipe nobody reads until the end would stop the probe once full.
    out = open(os.path.join(w, "probe.txt"), "w+")
    probe = subprocess.Popen([FILL, "cohort", f"unix:{sock}", "probe", str(PROBE_RATE), str(seconds)],
                             stdout=out, text=True)
    procs.append(probe)
    time.sleep(before)
    t_clean = time.monotonic()
    if keep < SESSIONS:
        run_fill("cohort", f"unix:{sock}", "clean", keep, SESSIONS)
    t_cleaned = time.monotonic()
    # A compaction waits for the mids of the last two minutes to age out
    # (it keeps them): the probe goes on until one has been written.
    end = time.monotonic() + COMPACT_WAIT
    while (not watch.spans or watch.since) and time.monotonic() < end:
        time.sleep(0.1)
    time.sleep(1)
    t_drain = time.monotonic()
    dr = subprocess.Popen([FILL, "cohort", f"unix:{sock}", "drain", "0", str(keep), str(per)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    procs.append(dr)
    try:
        _, err = dr.communicate(timeout=DRAIN_MAX)
        drained = dr.returncode == 0
    except subprocess.TimeoutExpired:
        kill(dr)
        err, drained = "", False
    t_end = time.monotonic()
    if dr.returncode not in (0, -signal.SIGKILL):
        raise RuntimeError(f"drain: {err.strip()}")
    time.sleep(3)
    t_stop = time.monotonic()
    watch.stop = True
    watch.t.join()
    kill(probe, signal.SIGKILL)
    out.seek(0)
    samples = [tuple(map(float, ln.split())) for ln in out.read().splitlines() if ln and ln[0].isdigit()]
    out.close()

    def between(a, b):
        return [lat for t, lat in samples if a <= t / 1e3 < b and not watch.during(t / 1e3)]
    return {"drain_s": t_end - t_drain, "drained": drained, "clean_s": t_cleaned - t_clean, "kept": keep,
            "idle": between(0, t_clean), "cleaning": between(t_clean, t_cleaned),
            "waiting": between(t_cleaned, t_drain), "busy": between(t_drain, t_end),
            "quiet": between(t_end, t_stop),
            "comp": [lat for t, lat in samples if watch.during(t / 1e3)],
            "spans": [(a - t_clean, b - a) for a, b in watch.spans],
            "max_all": max((lat for _, lat in samples), default=0), "after_drain": dir_bytes(jdir),
            "slowest": sorted(((lat, t / 1e3 - t_clean) for t, lat in samples), reverse=True)[:5],
            "slowest_comp": sorted(((lat, t / 1e3 - t_clean) for t, lat in samples if watch.during(t / 1e3)),
                                   reverse=True)[:5],
            "t_drain": t_drain - t_clean}


# --- redis -----------------------------------------------------------------------------------

def redis_ping(sock):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(5)
        s.connect(sock)
        s.sendall(b"PING\r\n")
        return s.recv(64).startswith(b"+PONG")
    finally:
        s.close()


def redis_cmd(sock, *words):
    """One command over RESP; the reply's first line and body, as text."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(10)
        s.connect(sock)
        s.sendall(f"*{len(words)}\r\n".encode() +
                  b"".join(f"${len(w)}\r\n{w}\r\n".encode() for w in words))
        data = b""
        while True:
            chunk = s.recv(65536)
            data += chunk
            head, _, rest = data.partition(b"\r\n")
            if not chunk or (head[:1] != b"$" and _) or (head[:1] == b"$" and len(rest) >= int(head[1:]) + 2):
                return data.decode(errors="replace")
    finally:
        s.close()


def redis_fork_ms(sock, p):
    """redis rewriting its AOF (BGREWRITEAOF, a fork as cohortd's
    compaction): how long its fork held it (INFO latest_fork_usec)."""
    redis_cmd(sock, "BGREWRITEAOF")

    def info():
        return dict(ln.split(":", 1) for ln in redis_cmd(sock, "INFO", "persistence").splitlines()
                    if ":" in ln)
    wait_for(lambda: info().get("aof_rewrite_in_progress") == "0" and
             info().get("aof_rewrite_scheduled") == "0", "redis's AOF rewrite", p, step=0.1)
    return int(redis_cmd(sock, "INFO", "stats").split("latest_fork_usec:")[1].split()[0]) / 1e3


def redis_run():
    w = tempfile.mkdtemp(prefix="cohort-sj-redis-", dir="/tmp")
    r = {}
    try:
        aof = os.path.join(w, "appendonly.aof")
        run_fill("redis-aof", aof, MSGS, SESSIONS, RETAINED, DATA)
        r["file"] = os.path.getsize(aof)
        sync_files(w)
        sock = os.path.join(w, "redis.sock")
        log = open(os.path.join(w, "redis.log"), "w")
        t0 = time.monotonic()
        p = spawn(["redis-server", "--port", "0", "--unixsocket", sock, "--dir", w, "--appendonly", "yes",
                   "--appendfilename", "appendonly.aof", "--save", ""], log)
        wait_for(lambda: os.path.exists(sock) and redis_ping(sock), "redis loading its AOF", p, step=0.01)
        r["recovery_s"] = time.monotonic() - t0
        r["cpu_s"] = cpu_s(p.pid)
        r["rss"], r["hwm"] = rss_mb(p.pid), rss_mb(p.pid, "VmHWM")
        r["fork_ms"] = redis_fork_ms(sock, p)
        kill(p)
    finally:
        kill_all()
        shutil.rmtree(w, ignore_errors=True)
    return r


# --- mosquitto ---------------------------------------------------------------------------------

def mosquitto_run():
    w = tempfile.mkdtemp(prefix="cohort-sj-mosq-", dir="/tmp")
    r = {}
    try:
        sock = os.path.join(w, "mosquitto.sock")
        conf = os.path.join(w, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write(f"listener 0 {sock}\nallow_anonymous true\npersistence true\npersistence_location {w}/\n"
                    "autosave_interval 0\nlog_dest stderr\nmax_inflight_messages 1000\n"
                    "max_queued_messages 0\nmax_queued_bytes 0\n")
            if os.geteuid() == 0:
                f.write("user root\n")
        log = open(os.path.join(w, "mosquitto.log"), "w")
        p = spawn(["mosquitto", "-c", conf], log)
        wait_for(lambda: os.path.exists(sock), "mosquitto's socket", p)
        if run_fill("mosquitto", f"unix:{sock}", "sessions", SESSIONS) is None:
            print("  journal_fill was built without libmosquitto: mosquitto skipped")
            return None
        r["fill_s"] = run_fill("mosquitto", f"unix:{sock}", "fill", MSGS, SESSIONS, RETAINED, DATA)
        r["live_rss"] = rss_mb(p.pid)
        t0 = time.monotonic()
        kill(p, signal.SIGTERM)
        r["save_s"] = time.monotonic() - t0
        r["file"] = os.path.getsize(os.path.join(w, "mosquitto.db"))
        os.unlink(sock) if os.path.exists(sock) else None
        sync_files(w)
        t0 = time.monotonic()
        p = spawn(["mosquitto", "-c", conf], log)
        wait_for(lambda: os.path.exists(sock) and hello("mosquitto", sock),
                 "mosquitto loading its database", p, step=0.01)
        r["recovery_s"] = time.monotonic() - t0
        r["cpu_s"] = cpu_s(p.pid)
        r["rss"], r["hwm"] = rss_mb(p.pid), rss_mb(p.pid, "VmHWM")
        kill(p)
    finally:
        kill_all()
        shutil.rmtree(w, ignore_errors=True)
    return r


def main():
    entries = MSGS + RETAINED
    print(f"journal at scale: {SESSIONS} durable sessions away, {MSGS:,} queued qos-1 messages and "
          f"{RETAINED:,} retained values (data {DATA} bytes), recovery after a restart")
    print("  (a shared machine: the ratios to the peers, measured in the same run, are the figures)")
    res = {"cohortd": cohortd_run()}
    if PEERS and shutil.which("redis-server"):
        res["redis"] = redis_run()
    if PEERS and shutil.which("mosquitto"):
        m = mosquitto_run()
        if m:
            res["mosquitto"] = m
    print(f"  {'server':10} {'file MiB':>9} {'fill s':>7} {'recover s':>10} {'CPU s':>7} {'CPU s/GiB':>10} "
          f"{'CPU us/entry':>13} {'RSS MiB':>8} {'peak MiB':>9} {'RSS/file':>9}")
    for name, r in res.items():
        f = r.get("journal", r.get("file"))
        gib = f / (1 << 30)
        print(f"  {name:10} {f / 1048576:9.1f} {r.get('fill_s') or 0:7.1f} {r['recovery_s']:10.2f} "
              f"{r['cpu_s']:7.2f} {r['cpu_s'] / gib:10.2f} {r['cpu_s'] * 1e6 / entries:13.2f} {r['rss']:8.1f} "
              f"{r['hwm']:9.1f} {r['rss'] * 1048576 / f:9.2f}", flush=True)
    c = res["cohortd"]
    if "rss_places" in c:
        print(f"  cohortd: the places of its spilled deliveries noted {c['places_s']:.1f} s after recovery; "
              f"RSS then {c['rss_places']:.1f} MiB ({c['rss_places'] * 1048576 / c['journal']:.2f} of the journal)")
    for line in c.get("log", []):
        print("  cohortd: " + line.split("] ", 1)[-1][:200])
    if "idle" in c:
        state = "all read" if c["drained"] else f"stopped after {DRAIN_MAX:.0f} s, not all read"
        print(f"  qos-1 publish -> ok at {PROBE_RATE}/s: {SESSIONS - c['kept']} sessions cleaned "
              f"({c['clean_s']:.1f} s), then {c['kept']} drain ({c['drain_s']:.1f} s, {state}); "
              "p50 / p99 / max, ms:")
        for label, v in (("idle, before", c["idle"]), ("cleaning", c["cleaning"]),
                         ("waiting for compaction", c["waiting"]), ("while compacting", c["comp"]),
                         ("draining", c["busy"]), ("after", c["quiet"])):
            if v:
                print(f"    {label:24} n={len(v):6d} {statistics.median(v) / 1e3:7.2f} {pct(v, 99) / 1e3:8.2f} "
                      f"{max(v) / 1e3:8.2f}")
            else:
                print(f"    {label:24} n=     0")
        print("    the slowest publishes (ms at s after the cleaning began; the drain began at "
              f"{c['t_drain']:.1f} s): " + ", ".join(f"{lat / 1e3:.1f} at {t:.2f}" for lat, t in c["slowest"]))
        print("    ... while compacting: " + ", ".join(f"{lat / 1e3:.1f} at {t:.2f}" for lat, t in c["slowest_comp"]))
        print("    compactions (start after the cleaning began, s: length s): "
              + ", ".join(f"{a:.1f}: {b:.2f}" for a, b in c["spans"]) + 
              f"; longest publish of the run {c['max_all'] / 1e3:.1f} ms; journal after {c['after_drain'] / 1048576:.1f} MiB")
    if "fork_ms" in res.get("redis", {}):
        print(f"  redis rewriting its AOF (BGREWRITEAOF): its fork held it {res['redis']['fork_ms']:.1f} ms "
              f"(cohortd's compactions: {', '.join(f'{f:.1f}' for f in fork_ms(c)) or 'none'} ms)")
    for peer in ("redis", "mosquitto"):
        if peer in res:
            p = res[peer]
            print(f"  cohortd / {peer}: recovery per GiB of its file x{(c['recovery_s'] / c['journal']) / (p['recovery_s'] / p['file']):.2f} "
                  f"(CPU x{(c['cpu_s'] / c['journal']) / (p['cpu_s'] / p['file']):.2f}), "
                  f"for the same entries x{c['recovery_s'] / p['recovery_s']:.2f} (CPU x{c['cpu_s'] / p['cpu_s']:.2f}), "
                  f"RSS after x{c['rss'] / p['rss']:.2f}")
    summarize(res)


def fork_ms(c):
    """How long each compaction's fork held cohortd's loop, from its log."""
    return [float(ln.split("paused ")[1].split(" ms")[0]) for ln in c.get("log", []) if "ms to fork it" in ln]


def summarize(res):
    """The goals of item 3, for the one table of SCALE=1 (scale_summary.py)."""
    c = res["cohortd"]
    gib = c["journal"] / (1 << 30)
    peers = {name: r for name, r in res.items() if name != "cohortd"}

    def per_gib(r):
        return r["recovery_s"] / (r.get("journal", r.get("file")) / (1 << 30))
    scale_summary.add("journal", f"recovery after kill -9, {c['journal'] / 1048576:,.0f} MiB: s per GiB (CPU s per GiB)",
                      f"{per_gib(c):.2f} ({c['cpu_s'] / gib:.2f})",
                      ", ".join(f"{name} {per_gib(r):.2f} ({r['cpu_s'] / (r.get('journal', r.get('file')) / (1 << 30)):.2f})"
                                for name, r in peers.items()),
                      "faster than redis and mosquitto per GiB",
                      scale_summary.faster(per_gib(c), [per_gib(r) for r in peers.values()]))
    rss = c.get("rss_places", c["rss"])   # with the index of spilled deliveries, once built
    scale_summary.add("journal", "memory after recovery (RSS, with the index once built) / the journal's size",
                      f"{rss * 1048576 / c['journal']:.2f}",
                      ", ".join(f"{name} {r['rss'] * 1048576 / r.get('journal', r.get('file')):.2f}"
                                for name, r in peers.items()),
                      "not above the live data plus an index (<= 1.0)", rss * 1048576 <= c["journal"])
    if c.get("comp"):
        comp = c["comp"]
        worst = max(comp) / 1e3
        idle = f"; idle p99 {pct(c['idle'], 99) / 1e3:.2f} ms" if c.get("idle") else ""
        forks = fork_ms(c)
        fork = f"; the fork {', '.join(f'{f:.1f}' for f in forks)} ms" if forks else ""
        peer = f"redis's fork (BGREWRITEAOF) {res['redis']['fork_ms']:.1f} ms" if "fork_ms" in res.get("redis", {}) else ""
        scale_summary.add("journal", "qos-1 publish while compacting: p99 / max",
                          f"{pct(comp, 99) / 1e3:.2f} / {worst:.2f} ms{idle}{fork}", peer,
                          "no publish pause above 10 ms", worst <= 10)
    elif "idle" in c:
        scale_summary.add("journal", "qos-1 publish while compacting", "no compaction ran while measured", "",
                          "no publish pause above 10 ms", None)


def kill_all():
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def on_signal(signum, frame):
    kill_all()
    sys.exit(1)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        main()
    except BaseException:
        kill_all()
        raise
