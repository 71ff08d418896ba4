#!/usr/bin/python3
"""Scale: locks (SCALE=1 make bench; issue 19, item 4).

cohortd (its control socket, JSON lines) beside redis-server (a unix
socket, RESP), both up at once, measured in turns in the same run:

  leases     SCALE_LEASES (100,000) leases held, one per name, taken over
             one connection (pipelined lock.acquire; redis: SET name token
             NX PX ttl), ttl 10 min: the server's PSS after minus before,
             per lease, and the acquire rate.  cohortd: then that
             connection closes (its session ends, letting go of every
             lease), timed with the probe below (redis has no lease that
             belongs to a connection: not compared)
  storm      the same count again, each lease's TTL set so that all fall
             due at the same instant D (cohortd: ttl_ms = D - now per
             request; redis: PX the same), nobody renewing.  A probe
             process sends a cheap request (cohortd: plan; redis: PING)
             every 2 ms from D - 0.5 s until every lease is gone; its round
             trips during the storm (D -> the last lease gone) are the
             loop's stall: p99 and max, beside how long the expiry took
             and the server's CPU time for it.  SCALE_STORM_ROUNDS (3)
             storms, medians (the max of each round printed too)
  waiters    SCALE_WAITERS (10,000) clients, one connection each, first
             sending a cheap request (the connection's own cost), then
             each waiting on one name a holder keeps (cohortd: lock.acquire
             wait_ms 10 min; redis has no lock queue: its FIFO of blocked
             clients is the nearest, each waiter in BLPOP on a list the
             holder pushes to when it lets go).  PSS per connection and
             per waiter.  Then SCALE_HANDOVERS (200) hand-overs at the head
             of that queue: the holder releases, the head waiter is
             granted and becomes the holder (redis: the release is a
             script deleting the key and pushing to the list, and the
             waiter, out of BLPOP, takes the key with SET NX PX).  Latency
             from the release sent to the next holder holding: p50 / p99

It prints one table and the ratios; it asserts nothing.
"""
import json
import os
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scale_summary  # noqa: E402

BUILD = os.environ.get("COHORT_BUILDDIR", ".")
COHORTD = os.path.join(BUILD, "cohortd")
LEASES = int(os.environ.get("SCALE_LEASES", "100000"))
WAITERS = int(os.environ.get("SCALE_WAITERS", "10000"))
HANDOVERS = int(os.environ.get("SCALE_HANDOVERS", "200"))
STORM_ROUNDS = int(os.environ.get("SCALE_STORM_ROUNDS", "3"))
LONG_TTL_MS = 600000
BATCH = 1000		# requests written before their answers are read
PROBE_EVERY = 0.002


def pss_kib(pid):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


HZ = os.sysconf("SC_CLK_TCK")


def cpu_ms(pid):
    """The process's user + system CPU time so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / HZ


def now_wall_ms():
    return time.time_ns() // 1000000


def pct(v, p):
    s = sorted(v)
    return s[min(len(s) - 1, int(len(s) * p / 100))] if s else float("nan")


class Conn:
    """A unix stream connection read by lines."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def line(self):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                out, self.buf = self.buf[:i], self.buf[i + 1:]
                return out.rstrip(b"\r")
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise RuntimeError("connection closed")
            self.buf += chunk

    def read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise RuntimeError("connection closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def fileno(self):
        return self.sock.fileno()

    def close(self):
        self.sock.close()


# --- the two servers, behind the same few calls ----------------------------------------------

class Cohortd:
    label = "cohortd"

    def __init__(self, work):
        self.work = work
        self.sock = f"{work}/run/control.sock"
        ini = os.path.join(work, "c.ini")
        with open(ini, "w") as f:
            f.write(f"[cohort]\nrun_dir = {work}/run\nstate_dir = {work}/state\nlog_dir = {work}/log\n"
                    "[service:idle]\ncommand = /bin/sleep 100000\nready = delay:0\nstdout = null\n")
        self.proc = subprocess.Popen([COHORTD, "-q", "-c", ini], stderr=subprocess.DEVNULL)

    def ready(self):
        try:
            Conn(self.sock).close()
        except OSError:
            return False
        return True

    # One lock.acquire line; the answer holds "token".
    @staticmethod
    def acquire_line(name, ttl_ms, wait_ms=0):
        return (f'{{"cmd":"lock.acquire","name":"{name}","ttl_ms":{ttl_ms},"wait_ms":{wait_ms}}}\n').encode()

    @staticmethod
    def granted(line):
        r = json.loads(line)
        if not r.get("ok"):
            raise RuntimeError(f"cohortd refused: {r}")
        return r["token"]

    def take_many(self, c, names, ttl_of):
        for i in range(0, len(names), BATCH):
            part = names[i:i + BATCH]
            c.send(b"".join(self.acquire_line(n, ttl_of()) for n in part))
            for _ in part:
                self.granted(c.line())

    cheap = b'{"cmd":"plan"}\n'

    def metric(self, name):
        """A figure of /metrics, from bus.sock (plain HTTP)."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(f"{self.work}/run/bus.sock")
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            data += chunk
        s.close()
        for line in data.decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise RuntimeError(f"{name} not in /metrics")

    def expired(self):
        return self.metric("cohort_lock_expiries_total")

    def waiting(self):
        return self.metric("cohort_locks_waiting")

    def wait_line(self, name):
        return self.acquire_line(name, LONG_TTL_MS, LONG_TTL_MS)

    def release(self, c, name, token):
        c.send(f'{{"cmd":"lock.release","name":"{name}","token":{token}}}\n'.encode())

    def release_done(self, c):
        if not json.loads(c.line()).get("ok"):
            raise RuntimeError("cohortd: release refused")

    def head_granted(self, c, name):
        return self.granted(c.line())

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(120)


def resp(*args):
    out = [f"*{len(args)}\r\n".encode()]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


# Redis's release: the key only if it still holds the holder's token, then
# one push for the head of the blocked clients.
RELEASE = (b"if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('del', KEYS[1]) "
           b"redis.call('lpush', KEYS[2], '1') return 1 end return 0")


class Redis:
    def __init__(self, work):
        self.sock = f"{work}/redis.sock"
        version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()[2]
        self.label = f"redis-server {version.removeprefix('v=')}"
        self.proc = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", self.sock, "--save", "",
                                      "--appendonly", "no", "--daemonize", "no", "--dir", work,
                                      "--maxclients", str(WAITERS + 100)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.token = 0
        self.admin = None

    def ready(self):
        try:
            self.admin = Conn(self.sock)
        except OSError:		# not there yet, or not listening yet
            return False
        return True

    def call(self, *args):
        self.admin.send(resp(*args))
        return self.reply(self.admin)

    @staticmethod
    def reply(c):
        line = c.line()
        if line.startswith(b"$") and line != b"$-1":
            return c.read(int(line[1:]) + 2)[:-2]
        if line.startswith(b"*") and line != b"*-1":
            return [Redis.reply(c) for _ in range(int(line[1:]))]
        if line.startswith(b"-"):
            raise RuntimeError(f"redis: {line.decode()}")
        return line

    def take_many(self, c, names, ttl_of):
        for i in range(0, len(names), BATCH):
            part = names[i:i + BATCH]
            reqs = []
            for n in part:
                self.token += 1
                reqs.append(resp("SET", n, f"t{self.token}", "NX", "PX", ttl_of()))
            c.send(b"".join(reqs))
            for _ in part:
                if self.reply(c) != b"+OK":
                    raise RuntimeError("redis: SET NX refused")

    cheap = resp("PING")

    def info(self, key):
        for line in self.call("INFO").decode().splitlines():
            if line.startswith(key + ":"):
                return float(line.split(":")[1])
        return 0.0

    def expired(self):
        return self.info("expired_keys")

    def waiting(self):
        return self.info("blocked_clients")

    def wait_line(self, name):
        return resp("BLPOP", f"{name}:q", 0)

    def release(self, c, name, token):
        c.send(resp("EVAL", RELEASE, 2, name, f"{name}:q", token))

    def release_done(self, c):
        if self.reply(c) != b":1":
            raise RuntimeError("redis: release found the key gone")

    def head_granted(self, c, name):
        self.reply(c)		# out of BLPOP
        self.token += 1
        token = f"t{self.token}"
        c.send(resp("SET", name, token, "NX", "PX", LONG_TTL_MS))
        if self.reply(c) != b"+OK":
            raise RuntimeError("redis: the head waiter found the key taken")
        return token

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(120)


# --- the probe: a separate process, so the bench's own work never delays it ------------------

def probe_main(sock, cheap, out, until_file):
    c = Conn(sock)
    samples = []
    while not os.path.exists(until_file):
        t0 = time.monotonic_ns()
        c.send(cheap)
        c.line()		# plan's answer, or +PONG: one line each
        t1 = time.monotonic_ns()
        samples.append((t0, t1 - t0))
        time.sleep(PROBE_EVERY)
    with open(out, "w") as f:
        json.dump(samples, f)


class Probe:
    def __init__(self, srv, work):
        self.out = os.path.join(work, "probe.json")
        self.stop_file = os.path.join(work, "probe.stop")
        for p in (self.out, self.stop_file):
            if os.path.exists(p):
                os.unlink(p)
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--probe", srv.sock,
                                      srv.cheap.hex(), self.out, self.stop_file])

    def finish(self):
        open(self.stop_file, "w").close()
        self.proc.wait(60)
        with open(self.out) as f:
            return json.load(f)


def window(samples, t0_ns, t1_ns):
    """Round trips (ms) of the probes sent from t0 to t1, and a probe stuck
    across the window's start counts too."""
    return [rtt / 1e6 for t, rtt in samples if t0_ns - rtt <= t <= t1_ns]


# --- the three measures -----------------------------------------------------------------------

def settle():
    time.sleep(0.5)


def measure_leases(srv, work):
    r = {}
    names = [f"lease:{i:06d}" for i in range(LEASES)]
    c = Conn(srv.sock)
    c.send(srv.cheap)
    c.line()
    settle()
    before = pss_kib(srv.proc.pid)
    t0 = time.monotonic()
    srv.take_many(c, names, lambda: LONG_TTL_MS)
    r["acquire_s"] = time.monotonic() - t0
    settle()
    r["lease_bytes"] = (pss_kib(srv.proc.pid) - before) * 1024 / LEASES
    if isinstance(srv, Cohortd):
        probe = Probe(srv, work)
        time.sleep(0.3)
        cpu0 = cpu_ms(srv.proc.pid)
        t0 = time.monotonic_ns()
        c.close()
        deadline = time.monotonic() + 600
        while srv.metric("cohort_locks_held") > 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        t1 = time.monotonic_ns()
        time.sleep(0.1)
        w = window(probe.finish(), t0, t1)
        r["close_ms"] = (t1 - t0) / 1e6
        r["close_cpu_ms"] = cpu_ms(srv.proc.pid) - cpu0
        r["close_probe"] = (pct(w, 50), pct(w, 99), max(w) if w else float("nan"))
    else:
        srv.call("FLUSHALL")
        c.close()
    return r


def measure_storm(srv, work):
    """STORM_ROUNDS storms, each figure the median of the rounds."""
    rounds = [storm_round(srv, work, i) for i in range(STORM_ROUNDS)]
    r = {}
    for key in rounds[0]:
        if isinstance(rounds[0][key], tuple):
            r[key] = tuple(statistics.median(x[key][i] for x in rounds) for i in range(len(rounds[0][key])))
        elif isinstance(rounds[0][key], bool):
            r[key] = any(x[key] for x in rounds)
        else:
            r[key] = statistics.median(x[key] for x in rounds)
    r["storm_max_rounds"] = "/".join(f"{x['probe_storm'][2]:.1f}" for x in rounds)
    return r


def storm_round(srv, work, n):
    r = {"late": False}
    names = [f"storm{n}:{i:06d}" for i in range(LEASES)]
    c = Conn(srv.sock)
    lead_ms = 3000 + LEASES // 20
    due = now_wall_ms() + lead_ms
    expired0 = srv.expired()
    t0 = time.monotonic()
    srv.take_many(c, names, lambda: max(1, due - now_wall_ms()))
    r["acquire_s"] = time.monotonic() - t0
    if now_wall_ms() > due - 500:
        r["late"] = True	# the machine was too slow for the lead: said in the table
    probe = Probe(srv, work)
    while now_wall_ms() < due - 200:
        time.sleep(0.005)
    cpu0 = cpu_ms(srv.proc.pid)
    while now_wall_ms() < due:
        time.sleep(0.005)
    t_due = time.monotonic_ns()
    deadline = time.monotonic() + 600
    while srv.expired() - expired0 < LEASES and time.monotonic() < deadline:
        time.sleep(0.01)
    t_end = time.monotonic_ns()
    r["storm_cpu_ms"] = cpu_ms(srv.proc.pid) - cpu0
    time.sleep(0.2)
    samples = probe.finish()
    w = window(samples, t_due, t_end)
    before = [rtt / 1e6 for t, rtt in samples if t < t_due - 100e6]
    r["storm_ms"] = (t_end - t_due) / 1e6
    r["probe_quiet"] = (pct(before, 50), pct(before, 99), max(before) if before else float("nan"))
    r["probe_storm"] = (pct(w, 50), pct(w, 99), max(w) if w else float("nan"), len(w))
    c.close()
    return r


def measure_waiters(srv, work):
    r = {}
    name = "queue"
    holder = Conn(srv.sock)
    if isinstance(srv, Cohortd):
        holder.send(srv.acquire_line(name, LONG_TTL_MS))
        token = srv.granted(holder.line())
    else:
        token = "t0"
        holder.send(resp("SET", name, token, "NX", "PX", LONG_TTL_MS))
        Redis.reply(holder)
    settle()
    base = pss_kib(srv.proc.pid)
    waiters = []
    for _ in range(WAITERS):
        w = Conn(srv.sock)
        w.send(srv.cheap)
        waiters.append(w)
    for w in waiters:
        w.line()
    settle()
    connected = pss_kib(srv.proc.pid)
    for w in waiters:		# in order: waiters[0] is the head of the queue
        w.send(srv.wait_line(name))
    deadline = time.monotonic() + 120
    while srv.waiting() < WAITERS and time.monotonic() < deadline:
        time.sleep(0.05)
    settle()
    queued = pss_kib(srv.proc.pid)
    r["conn_bytes"] = (connected - base) * 1024 / WAITERS
    r["wait_bytes"] = (queued - connected) * 1024 / WAITERS
    # The head is whoever the server granted: the order the requests were
    # read in is the server's, not the order they were sent in.
    ep = select.epoll()
    by_fd = {w.fileno(): w for w in waiters}
    for fd in by_fd:
        ep.register(fd, select.EPOLLIN)
    lat = []
    for _ in range(min(HANDOVERS, WAITERS)):
        t0 = time.monotonic_ns()
        srv.release(holder, name, token)
        ready = ep.poll(60)
        if not ready:
            raise RuntimeError(f"{srv.label}: no waiter was granted in 60 s")
        head = by_fd.pop(ready[0][0])
        ep.unregister(head.fileno())
        token = srv.head_granted(head, name)
        t1 = time.monotonic_ns()
        srv.release_done(holder)
        lat.append((t1 - t0) / 1e3)
        holder.close()
        holder = head
    r["handover_us"] = (pct(lat, 50), pct(lat, 99))
    ep.close()
    holder.close()
    for w in by_fd.values():
        w.close()
    return r


def main():
    if len(sys.argv) == 6 and sys.argv[1] == "--probe":
        return probe_main(sys.argv[2], bytes.fromhex(sys.argv[3]), sys.argv[4], sys.argv[5])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < WAITERS + 200:
        sys.exit(f"the descriptor limit ({hard}) is below {WAITERS + 200}: raise it or lower SCALE_WAITERS")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(f"scale: locks, cohortd beside redis-server (same run): {LEASES} leases, "
          f"{WAITERS} waiters on one name, an expiry storm of {LEASES} leases")
    have_redis = shutil.which("redis-server") is not None
    if not have_redis:
        print("  (redis-server not installed: no comparison)")
    res = {}
    labels = []
    # Each measure on fresh servers: memory freed by one is reused by the
    # next, and would hide what the next allocates.
    for what in (measure_leases, measure_storm, measure_waiters):
        work = tempfile.mkdtemp(prefix="cohort-scale-locks.")
        servers = [Cohortd(work)] + ([Redis(work)] if have_redis else [])
        try:
            end = time.monotonic() + 20
            for s in servers:
                while not s.ready():
                    if time.monotonic() > end:
                        raise RuntimeError(f"{s.label} did not start")
                    time.sleep(0.02)
            for s in servers:
                r = what(s, work)
                res.setdefault(s.label, {}).update(r)
                print(f"  {s.label:20s} {what.__name__[8:]}: "
                      + ", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()),
                      flush=True)
            labels = [s.label for s in servers]
        finally:
            for s in servers:
                try:
                    s.stop()
                except Exception:
                    s.proc.kill()
            shutil.rmtree(work, ignore_errors=True)

    def ms3(t):
        return f"{t[0]:.2f} / {t[1]:.2f} / {t[2]:.2f} ms"

    print(f"\n| server | bytes per lease ({LEASES}) | acquire rate | expiry storm: all {LEASES} gone after | "
          f"server CPU for it | probe p50 / p99 / max during it (quiet p99; max of each round) | bytes per connection / per waiter ({WAITERS}) | "
          f"hand-over at the head p50 / p99 |")
    print("|---|---|---|---|---|---|---|---|")
    for label, r in res.items():
        late = " (late: some leases were taken after D - 0.5 s)" if r.get("late") else ""
        print(f"| {label} | {r['lease_bytes']:.0f} | {LEASES / r['acquire_s'] / 1000:.0f}k/s | "
              f"{r['storm_ms']:.0f} ms{late} | {r['storm_cpu_ms']:.0f} ms | {ms3(r['probe_storm'])} ({r['probe_quiet'][1]:.2f} ms; "
              f"max of each round {r['storm_max_rounds']} ms) | "
              f"{r['conn_bytes']:.0f} / {r['wait_bytes']:.0f} | "
              f"{r['handover_us'][0]:.0f} / {r['handover_us'][1]:.0f} us |")
    c = res.get("cohortd")
    if c and "close_ms" in c:
        print(f"\ncohortd: the connection holding {LEASES} leases closed -> none held: {c['close_ms']:.0f} ms; "
              f"cohortd CPU {c['close_cpu_ms']:.0f} ms; probe p50 / p99 / max meanwhile {ms3(c['close_probe'])}")
    if len(res) == 2:
        c, p = res["cohortd"], res[labels[1]]
        print(f"cohortd / redis: bytes per lease x{c['lease_bytes'] / p['lease_bytes']:.2f}, "
              f"per waiter (with its connection) x{(c['conn_bytes'] + c['wait_bytes']) / (p['conn_bytes'] + p['wait_bytes']):.2f}, "
              f"storm max stall x{c['probe_storm'][2] / p['probe_storm'][2]:.2f}, "
              f"hand-over p50 x{c['handover_us'][0] / p['handover_us'][0]:.2f}")
    summarize(res)


def summarize(res):
    """The figures of item 4, for the one table of SCALE=1 (scale_summary.py)."""
    c = res.get("cohortd")
    if not c:
        return
    p = next((r for label, r in res.items() if label != "cohortd"), None)

    def peer(text):
        return f"redis {text(p)}" if p else ""
    scale_summary.add("locks", f"memory per lease ({LEASES:,} held)", f"{c['lease_bytes']:.0f} B",
                      peer(lambda r: f"{r['lease_bytes']:.0f} B"))
    scale_summary.add("locks", f"memory per waiter with its connection ({WAITERS:,} on one name)",
                      f"{c['conn_bytes'] + c['wait_bytes']:.0f} B",
                      peer(lambda r: f"{r['conn_bytes'] + r['wait_bytes']:.0f} B"))
    scale_summary.add("locks", f"hand-over at the head of {WAITERS:,} waiters, p50 / p99",
                      f"{c['handover_us'][0]:.0f} / {c['handover_us'][1]:.0f} us",
                      peer(lambda r: f"{r['handover_us'][0]:.0f} / {r['handover_us'][1]:.0f} us"))
    scale_summary.add("locks", f"expiry of {LEASES:,} in one second: all gone after", f"{c['storm_ms']:.0f} ms",
                      peer(lambda r: f"{r['storm_ms']:.0f} ms"))
    stall = c["probe_storm"][2]
    scale_summary.add("locks", "longest loop stall during that expiry (a probe's max)", f"{stall:.1f} ms",
                      peer(lambda r: f"{r['probe_storm'][2]:.1f} ms"),
                      "timers do not stall the loop (no probe above 10 ms)", stall <= 10)


if __name__ == "__main__":
    sys.exit(main())
