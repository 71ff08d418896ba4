#!/usr/bin/python3
"""Cluster lock benchmarks (issue 18 item 6): three nats-servers and two
cohortds on 127.0.0.1 (tests/cluster/natscluster.py).

- cohort: tests/bench/bench_lock against cohortd a's control socket, the
  hand-over's waiter on cohortd b (release on a -> grant on b): acquire +
  release pairs/s and p50/p99 with 1 and 16 clients, hand-over p50/p99.
- the floor: tests/bench/bench_nats_kv, the same KV requests made directly
  with libnats (raw: cohortd's exact requests; kv: kvStore_Create), so the
  ratio is what cohort adds above NATS.  Goal: at most 20 % more.  Both
  travel alike: cohortd a and the floor's A connect to the first server,
  cohortd b and the floor's B (the hand-over's waiter) to the second, and
  the floor's bucket is placed on the server of cohortd's (a random one:
  JetStream places a stream where it likes, and a request that crosses a
  route costs more).
- the hand-over beside etcd 3.4's lock (three etcd members on 127.0.0.1,
  data in /dev/shm when it exists): the same Python client pattern for
  both (cohortd's control socket; etcd's lock service through its
  HTTP/JSON gateway, which runs the mutex `etcdctl lock` runs), and the
  commands themselves (`cohortctl lock` beside `etcdctl lock`, one process
  per holder).  Goal: faster than etcd.
- the bus across hosts: tests/bench/bench_bus publishing on cohortd c and
  subscribed on cohortd d (each on a server of its own), qos 0 and 1:
  latency p50/p99 at BENCH_CLUSTER_BUS_RATE msg/s, throughput 1 -> 1;
  beside tests/bench/bench_nats_bus, the same messages made directly with
  libnats (core publish; JetStream publish to a stream of 3, read by a
  core subscription: what cohortd does).  Goal: at most 20 % over it.
  And the latency with publisher and subscriber both on cohortd c: a
  publisher's cohortd hands its own messages over itself.

BENCH_CLUSTER_BUS=0 leaves the bus out.  cohort and the floor take turns
over BENCH_ROUNDS rounds (default 3) so that the load of a shared machine
falls on both alike; medians."""
import base64
import http.client
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

BUILD = os.environ.get("COHORT_BUILDDIR", ".")
SRC = os.environ.get("COHORT_SRCDIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(SRC, "tests", "cluster"))
import natscluster  # noqa: E402

BENCH_LOCK = os.path.join(BUILD, "tests", "bench", "bench_lock")
BENCH_NATS = os.path.join(BUILD, "tests", "bench", "bench_nats_kv")
BENCH_BUS = os.path.join(BUILD, "tests", "bench", "bench_bus")
BENCH_NATS_BUS = os.path.join(BUILD, "tests", "bench", "bench_nats_bus")
BUS_RATE = os.environ.get("BENCH_CLUSTER_BUS_RATE", "1000")
BUS_COUNT = os.environ.get("BENCH_CLUSTER_BUS_COUNT", "5000")
BUS_TP_COUNT = os.environ.get("BENCH_CLUSTER_BUS_TP_COUNT", "20000")
COHORTCTL = os.path.join(BUILD, "cohortctl")
SECONDS = os.environ.get("BENCH_SECONDS", "2")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
HANDOVERS = int(os.environ.get("BENCH_HANDOVER_ROUNDS", "300"))
CLI_HANDOVERS = int(os.environ.get("BENCH_CLI_HANDOVERS", "20"))
ETCD = shutil.which("etcd")
ETCDCTL = shutil.which("etcdctl")
KEYS = (("u1", "uncontended  1 client  (acquire+release)"),
        ("u16", "uncontended 16 clients (acquire+release)"),
        ("handover", "hand-over across hosts (release -> grant)"))
IDLE = "[service:idle]\ncommand = /bin/sleep 100000\nready = delay:0\nstdout = null\n"


def parse(out, what):
    """{key: (p50 us, p99 us, pairs/s)} of a bench_lock-style output."""
    figures = {}
    for line in out.splitlines():
        m = re.match(r"^uncontended\s+(\d+) clients?\s*: .*p50\s+([\d.]+) us\s+p99\s+([\d.]+) us\s+(\d+) pairs/s", line)
        if m:
            figures[f"u{m.group(1)}"] = (float(m.group(2)), float(m.group(3)), float(m.group(4)))
        m = re.match(r"^contended .*p50\s+([\d.]+) us\s+p99\s+([\d.]+) us", line)
        if m:
            figures["handover"] = (float(m.group(1)), float(m.group(2)), 0)
    if set(figures) != {k for k, _ in KEYS}:
        raise RuntimeError(f"{what}: unexpected output:\n{out}")
    return figures


def run_cohort(a, b):
    env = dict(os.environ, BENCH_WAITER_SOCKET=b.socket, BENCH_HANDOVER_PAUSE_US="5000",
               BENCH_HANDOVER_ROUNDS=str(HANDOVERS))
    out = subprocess.run([BENCH_LOCK, "cohort", a.socket, SECONDS], capture_output=True, text=True, check=True,
                         env=env, timeout=600).stdout
    return parse(out, "bench_lock")


def run_floor(nc, mode):
    # A on cohortd a's server, B on b's, the bucket's stream on the server
    # of cohortd's: the floor's requests travel as cohortd's do.
    env = dict(os.environ, BENCH_HANDOVER_ROUNDS=str(HANDOVERS), BENCH_NATS_B_URLS=nc.nodes[1].url,
               BENCH_FLOOR_BESIDE=f"KV_COHORT_LOCKS_{nc.name}")
    out = subprocess.run([BENCH_NATS, mode, nc.nodes[0].url, SECONDS], capture_output=True, text=True,
                         check=True, env=env, timeout=600).stdout
    return parse(out, f"bench_nats_kv {mode}")


def med(rounds, key, i):
    return statistics.median(r[key][i] for r in rounds)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


# --- hand-over beside etcd ---------------------------------------------------

class CohortLock:
    """One control-socket connection to a cohortd."""

    def __init__(self, sock):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.connect(sock)
        self.f = self.s.makefile("rb")
        self.token = None

    def lock(self, name):
        self.s.sendall(json.dumps({"cmd": "lock.acquire", "name": name, "ttl_ms": 30000,
                                   "wait_ms": 30000}).encode() + b"\n")
        r = json.loads(self.f.readline())
        if not r.get("ok"):
            raise RuntimeError(r)
        self.token = r["token"]

    def unlock(self, name):
        self.s.sendall(json.dumps({"cmd": "lock.release", "name": name, "token": self.token}).encode() + b"\n")
        json.loads(self.f.readline())

    def close(self):
        self.s.close()


class EtcdLock:
    """etcd's lock service (v3lock: the concurrency mutex `etcdctl lock`
    runs, here on the server) through the JSON gateway, one kept-alive
    HTTP connection; each holder its own lease."""

    def __init__(self, port):
        self.h = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.h.connect()    # no Nagle: a request or answer is never held back for an ACK
        self.h.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.lease = self.post("/v3/lease/grant", {"TTL": 30})["ID"]
        self.key = None

    def post(self, path, body):
        self.h.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        r = self.h.getresponse()
        data = json.loads(r.read())
        if r.status != 200:
            raise RuntimeError(f"{path}: {r.status} {data}")
        return data

    def lock(self, name):
        self.key = self.post("/v3/lock/lock", {"name": base64.b64encode(name.encode()).decode(),
                                               "lease": self.lease})["key"]

    def unlock(self, name):
        self.post("/v3/lock/unlock", {"key": self.key})

    def close(self):
        self.h.close()


def handover(make_a, make_b, rounds, name="bench.api"):
    """From A sending its release to B holding the lock, B having asked
    5 ms before (the pause bench_lock makes too); latencies in us."""
    a, b = make_a(), make_b()
    lat = []
    try:
        for _ in range(rounds):
            a.lock(name)
            got = []
            t = threading.Thread(target=lambda: (b.lock(name), got.append(time.monotonic_ns())))
            t.start()
            time.sleep(0.005)
            t0 = time.monotonic_ns()
            a.unlock(name)
            t.join(30)
            if not got:
                raise RuntimeError("the waiter never got the lock")
            lat.append((got[0] - t0) / 1000)
            b.unlock(name)
    finally:
        a.close()
        b.close()
    return lat


def cli_handover(cmd_a, cmd_b, waiting, rounds):
    """The commands themselves: A holds the lock running a shell that waits
    for a line (on a FIFO), then prints the time and exits (the command
    releases); B,
    queued meanwhile, prints the time when its own shell starts.  us."""
    lat = []
    fifo = os.path.join(tempfile.mkdtemp(prefix="cohort-bench-cli."), "go")
    os.mkfifo(fifo)     # etcdctl gives its command no stdin: A waits on a FIFO
    for _ in range(rounds):
        a = subprocess.Popen(cmd_a + ["sh", "-c", f"echo held; read x < {fifo}; date +%s%N"],
                             stdout=subprocess.PIPE, text=True)
        if a.stdout.readline().strip() != "held":
            raise RuntimeError(f"{cmd_a}: did not hold")
        b = subprocess.Popen(cmd_b + ["date", "+%s%N"], stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 10
        while not waiting():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{cmd_b}: never queued")
            time.sleep(0.005)
        with open(fifo, "w") as f:
            f.write("\n")
        t_a = int(a.stdout.read().split()[-1])
        t_b = int(b.stdout.read().split()[-1])
        a.wait(30)
        b.wait(30)
        lat.append((t_b - t_a) / 1000)
    shutil.rmtree(os.path.dirname(fifo), ignore_errors=True)
    return lat


class Etcd:
    """Three etcd members on 127.0.0.1, data in a temp dir (/dev/shm when it
    exists, as NATS does not fsync each write either)."""

    def __init__(self):
        base = "/dev/shm" if os.path.isdir("/dev/shm") else None
        self.dir = tempfile.mkdtemp(prefix="cohort-etcd.", dir=base)
        ports = [(natscluster.free_port(), natscluster.free_port()) for _ in range(3)]
        self.client_ports = [c for c, _ in ports]
        initial = ",".join(f"e{i}=http://127.0.0.1:{p}" for i, (_, p) in enumerate(ports))
        self.procs = []
        for i, (cp, pp) in enumerate(ports):
            log = open(os.path.join(self.dir, f"e{i}.log"), "w")
            self.procs.append(subprocess.Popen(
                [ETCD, "--name", f"e{i}", "--data-dir", os.path.join(self.dir, f"e{i}"),
                 "--listen-client-urls", f"http://127.0.0.1:{cp}", "--advertise-client-urls", f"http://127.0.0.1:{cp}",
                 "--listen-peer-urls", f"http://127.0.0.1:{pp}", "--initial-advertise-peer-urls",
                 f"http://127.0.0.1:{pp}", "--initial-cluster", initial, "--initial-cluster-state", "new",
                 "--initial-cluster-token", "cohort-bench"], stdout=log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 30
        while subprocess.run([ETCDCTL, "--endpoints", self.endpoints(), "endpoint", "health"],
                             capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("etcd did not become healthy within 30 s")
            time.sleep(0.2)

    def endpoints(self, i=None):
        ports = self.client_ports if i is None else [self.client_ports[i]]
        return ",".join(f"127.0.0.1:{p}" for p in ports)

    def waiters(self, name):
        out = subprocess.run([ETCDCTL, "--endpoints", self.endpoints(0), "get", "--prefix", "--keys-only", name],
                             capture_output=True, text=True).stdout
        return len([line for line in out.splitlines() if line.strip()])

    def stop(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.wait(30)
        shutil.rmtree(self.dir, ignore_errors=True)


def cohort_waiting(d, name):
    r = subprocess.run([COHORTCTL, "-s", d.socket, "--json", "locks"], capture_output=True, text=True)
    for lk in json.loads(r.stdout).get("locks", []) if r.returncode == 0 else []:
        if lk.get("name") == name and lk.get("waiters"):
            return True
    return False


def line(label, lat):
    return f"    {label:44s} p50 {statistics.median(lat):8.0f} us   p99 {pct(lat, 0.99):8.0f} us   ({len(lat)} rounds)"


def kv_line(out, what):
    """{key: value} of bench_bus's (or bench_nats_bus's) one result line."""
    for line in out.splitlines():
        if line.startswith(("latency ", "throughput ")):
            return {k: v for k, v in (f.split("=", 1) for f in line.split()[1:])}
    raise RuntimeError(f"{what}: unexpected output:\n{out}")


def bus_round(c, d, nc, mode, qos):
    """One measurement of cohort's (publisher on c, subscriber on d), of
    the floor's, and of cohort's with both on c (latency only), in turns;
    {"cohort": {...}, "nats": {...}, "same": {...}}."""
    args = [mode, str(qos)] + ([BUS_RATE, BUS_COUNT] if mode == "latency" else ["1", BUS_TP_COUNT])
    res = {}
    for who, sub in (("cohort", d), ("same", c)) if mode == "latency" else (("cohort", d),):
        env = dict(os.environ, BENCH_SUB_ADDRESS=f"unix:{sub.bus}")
        out = subprocess.run([BENCH_BUS, "cohort", f"unix:{c.bus}"] + args, capture_output=True, text=True,
                             check=True, env=env, timeout=600).stdout
        res[who] = kv_line(out, "bench_bus")
    fargs = args if mode == "latency" else [mode, str(qos), BUS_TP_COUNT]
    out = subprocess.run([BENCH_NATS_BUS, nc.nodes[0].url, nc.nodes[1].url] + fargs, capture_output=True,
                         text=True, check=True, timeout=600).stdout
    res["nats"] = kv_line(out, "bench_nats_bus")
    return res


def bus_bench(nc):
    """The bus across hosts, cohort beside the floor: the lines of its table."""
    out = []
    c = nc.start_cohortd("c", IDLE, cluster_line=f"cluster = {nc.nodes[0].url}\ncluster_name = {nc.name}\n")
    d = nc.start_cohortd("d", IDLE, cluster_line=f"cluster = {nc.nodes[1].url}\ncluster_name = {nc.name}\n")
    for x in (c, d):
        x.proc.wait_log(r"cluster: connected to nats://", 20)
        x.bus = os.path.join(x.run_dir, "bus.sock")
    rows = {}
    for _ in range(ROUNDS):
        for mode in ("latency", "throughput"):
            for qos in (0, 1):
                r = bus_round(c, d, nc, mode, qos)
                for who, v in r.items():
                    rows.setdefault((mode, qos, who), []).append(v)
    out.append(f"\ncluster bus: published on cohortd c (server n1), subscribed on cohortd d (server n2), 100-byte "
               f"messages;\nbeside the same messages made directly with libnats (bench_nats_bus); medians of {ROUNDS} rounds")
    out.append(f"  {'':40s} {'p50 us':>9s} {'p99 us':>9s} {'msg/s':>9s}  lost")

    def m(mode, qos, who, key):
        return statistics.median(float(v[key]) for v in rows[(mode, qos, who)])

    def lost(mode, qos, who):
        return sum(int(v["lost"]) for v in rows[(mode, qos, who)])
    for qos in (0, 1):
        for who, label in (("cohort", "cohortd"), ("nats", "libnats (the floor)")):
            out.append(f"  qos {qos}, {label:32s} {m('latency', qos, who, 'p50_us'):9.0f} {m('latency', qos, who, 'p99_us'):9.0f} "
                       f"{m('throughput', qos, who, 'msgs_per_s'):9.0f}  {lost('latency', qos, who) + lost('throughput', qos, who)}")
    for qos in (0, 1):
        out.append(f"  qos {qos}, {'both on cohortd c (one host)':32s} {m('latency', qos, 'same', 'p50_us'):9.0f} "
                   f"{m('latency', qos, 'same', 'p99_us'):9.0f} {'':>9s}  {lost('latency', qos, 'same')}")
    out.append(f"  cohortd / the floor (latency at {BUS_RATE} msg/s: the goal at most 1.2; msg/s: at least 0.83):")
    for qos in (0, 1):
        p50 = m("latency", qos, "cohort", "p50_us") / m("latency", qos, "nats", "p50_us")
        p99 = m("latency", qos, "cohort", "p99_us") / m("latency", qos, "nats", "p99_us")
        tp = m("throughput", qos, "cohort", "msgs_per_s") / m("throughput", qos, "nats", "msgs_per_s")
        met = "goal met" if p50 <= 1.2 and p99 <= 1.2 and tp >= 1 / 1.2 else "goal NOT met"
        out.append(f"    qos {qos}: p50 x{p50:.2f}   p99 x{p99:.2f}   msg/s x{tp:.2f}   ({met})")
        out.append(f"      rounds, p99 us: {'/'.join(v['p99_us'] for v in rows[('latency', qos, 'cohort')])} vs "
                   f"{'/'.join(v['p99_us'] for v in rows[('latency', qos, 'nats')])}; msg/s: "
                   f"{'/'.join(v['msgs_per_s'] for v in rows[('throughput', qos, 'cohort')])} vs "
                   f"{'/'.join(v['msgs_per_s'] for v in rows[('throughput', qos, 'nats')])}")
    return out


def main():
    missing = [p for p in (BENCH_LOCK, BENCH_NATS) if not os.path.exists(p)]
    if not os.path.exists(natscluster.NATS_SERVER) or missing:
        print("cluster locks: skipped (needs nats-server and a build with libnats: "
              f"{', '.join(missing) or natscluster.NATS_SERVER} missing)")
        return 0
    print(f"cluster locks: 3 nats-servers + 2 cohortds on 127.0.0.1; cohort (bench_lock on cohortd a, the\n"
          f"hand-over's waiter on cohortd b) beside the same requests made directly with libnats\n"
          f"(bench_nats_kv), taking turns over {ROUNDS} rounds of {SECONDS} s; medians")
    nc = natscluster.NatsCluster(builddir=BUILD)
    rounds = {"cohort": [], "raw": [], "kv": []}
    try:
        nc.start()
        # Each cohortd on a server of its own, as the floor's A and B are.
        a = nc.start_cohortd("a", IDLE, cluster_line=f"cluster = {nc.nodes[0].url}\ncluster_name = {nc.name}\n")
        b = nc.start_cohortd("b", IDLE, cluster_line=f"cluster = {nc.nodes[1].url}\ncluster_name = {nc.name}\n")
        for d in (a, b):
            d.proc.wait_log(r"cluster: connected to nats://", 20)
        order = ["cohort", "raw", "kv"]
        for i in range(ROUNDS):
            for what in (order if i % 2 == 0 else order[::-1]):
                rounds[what].append(run_cohort(a, b) if what == "cohort" else run_floor(nc, what))
        api = {"cohort": handover(lambda: CohortLock(a.socket), lambda: CohortLock(b.socket), HANDOVERS // 2)}
        cli = {"cohort": cli_handover([COHORTCTL, "-s", a.socket, "lock", "bench.cli", "--"],
                                      [COHORTCTL, "-s", b.socket, "lock", "bench.cli", "--"],
                                      lambda: cohort_waiting(b, "bench.cli"), CLI_HANDOVERS)}
        etcd_version = None
        etcd = None
        if ETCD and ETCDCTL:
            try:
                etcd = Etcd()
            except (RuntimeError, OSError) as e:   # the others' figures still count
                print(f"  etcd could not be started ({e}): no comparison")
        if etcd:
            try:
                etcd_version = subprocess.run([ETCD, "--version"], capture_output=True,
                                              text=True).stdout.split()[2]
                api["etcd"] = handover(lambda: EtcdLock(etcd.client_ports[0]),
                                       lambda: EtcdLock(etcd.client_ports[1]), HANDOVERS // 2)
                cli["etcd"] = cli_handover([ETCDCTL, "--endpoints", etcd.endpoints(0), "lock", "bench.cli", "--"],
                                           [ETCDCTL, "--endpoints", etcd.endpoints(1), "lock", "bench.cli", "--"],
                                           lambda: etcd.waiters("bench.cli") >= 2, CLI_HANDOVERS)
            finally:
                etcd.stop()
        if os.environ.get("BENCH_CLUSTER_BUS", "1") == "0":
            bus_lines = ["\ncluster bus: skipped (BENCH_CLUSTER_BUS=0)"]
        elif os.path.exists(BENCH_BUS) and os.path.exists(BENCH_NATS_BUS):
            bus_lines = bus_bench(nc)
        else:
            bus_lines = ["\ncluster bus: skipped (bench_bus or bench_nats_bus not built)"]
    finally:
        nc.stop()

    names = {"cohort": "cohortd (cluster mode)", "raw": "libnats, cohortd's requests (the floor)",
             "kv": "libnats, kvStore_Create"}
    print(f"  {'':44s} {'p50 us':>8s} {'p99 us':>8s} {'pairs/s':>9s}")
    for what, rs in rounds.items():
        print(f"  {names[what]}:")
        for key, label in KEYS:
            rate = "" if key == "handover" else f"{med(rs, key, 2):9.0f}"
            print(f"    {label:42s} {med(rs, key, 0):8.1f} {med(rs, key, 1):8.1f} {rate}")
    mine, floor = rounds["cohort"], rounds["raw"]
    print("  cohortd / the floor (pairs/s: 1 is the floor, the goal at least 0.83;"
          " latency: the goal at most 1.2):")
    for key, label in (("u1", "1 client"), ("u16", "16 clients")):
        ops = med(mine, key, 2) / med(floor, key, 2)
        p99 = med(mine, key, 1) / med(floor, key, 1)
        met = "goal met" if ops >= 1 / 1.2 and p99 <= 1.2 else "goal NOT met"
        print(f"    {label:11s} pairs/s x{ops:.2f}   p99 x{p99:.2f}   ({met})")
        print(f"      rounds, pairs/s: {'/'.join(f'{r[key][2]:.0f}' for r in mine)} vs "
              f"{'/'.join(f'{r[key][2]:.0f}' for r in floor)}")
    p50 = med(mine, "handover", 0) / med(floor, "handover", 0)
    p99 = med(mine, "handover", 1) / med(floor, "handover", 1)
    print(f"    hand-over   p50 x{p50:.2f}   p99 x{p99:.2f}   "
          f"({'goal met' if p50 <= 1.2 and p99 <= 1.2 else 'goal NOT met'})")
    print("  hand-over across hosts beside etcd" + (f" {etcd_version}" if etcd_version else
                                                     " (etcd-server/etcd-client not installed: cohort only)") + ":")
    print("   the same Python client (cohortd's control socket; etcd's lock service through its JSON gateway):")
    for what, lat in api.items():
        print(line(what, lat))
    print("   the commands (cohortctl lock / etcdctl lock, from A's command ending to B's starting):")
    for what, lat in cli.items():
        print(line(what, lat))
    if "etcd" in api:
        for kind, d in (("client", api), ("commands", cli)):
            r = statistics.median(d["cohort"]) / statistics.median(d["etcd"])
            print(f"    cohort / etcd ({kind}): p50 x{r:.2f}   p99 x{pct(d['cohort'], .99) / pct(d['etcd'], .99):.2f}"
                  f"   ({'goal met' if r < 1 else 'goal NOT met'}: faster than etcd)")
    print("\n".join(bus_lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
