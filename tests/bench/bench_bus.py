#!/usr/bin/python3
"""Message bus benchmarks: tests/bench/bench_bus with libcohort against
cohortd's bus, with libmosquitto against mosquitto and with RESP against
redis pub/sub and against tests/bench/relay (the floor: a bare relay,
latency only), the same client pattern for all, in the same run; over
unix sockets and over TCP 127.0.0.1.  Each round (BENCH_ROUNDS, 3)
starts every server fresh; a latency measurement runs against all of
them at once (1000 msg/s each), a throughput measurement against each in
turn, back to back.  A shared VM has slow spells, and a server measured
apart from its peer could carry one alone.  A latency percentile is taken
of every round's samples pooled, a throughput is the median of the
rounds.  Beside the p99 goal, the difference from mosquitto's p99 gets a
95% interval from a paired block bootstrap: at this load both servers sit
near what the host allows (the floor), and a difference smaller than the
run's noise is shown as such ('level') rather than as a win or a loss.

  latency      one-way, the send time (CLOCK_MONOTONIC) in the payload:
               p50 / p99 / p99.9 at 1,000 msg/s, 100-byte payloads
               (10,000 messages after 500 of warm-up), qos 0 and qos 1
  throughput   one publisher as fast as its client lets it (qos 1: at most
               1,000 unacknowledged), 1 -> 1 and 1 -> 100 subscribers;
               deliveries per second at the subscribers, and the messages
               lost (qos 0 may drop under load: it is shown)

cohortd: bus_fsync = batch.  mosquitto: persistence off, no Nagle on its
listener and its clients, a client's queue bounded by 64 MiB as cohortd's
(bus_queue_max) rather than by its default 1000 messages, past which it
drops qos-1 messages.  redis: no persistence; it has no qos 1.
Goal: cohortd's p99 at most mosquitto's and its throughput at least
mosquitto's, both qos levels.

Environment: COHORT_BUILDDIR (the build tree), BENCH_TRANSPORTS (unix,tcp),
BENCH_LAT_COUNT (10000), BENCH_TP_COUNT (100000), BENCH_FANOUT_COUNT (3000),
BENCH_ROUNDS (3).
"""
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

BUILD = os.environ.get("COHORT_BUILDDIR", ".")
COHORTD = os.path.abspath(os.path.join(BUILD, "cohortd"))
COHORTCTL = os.path.abspath(os.path.join(BUILD, "cohortctl"))
BENCH = os.path.abspath(os.path.join(BUILD, "tests", "bench", "bench_bus"))
RELAY = os.path.abspath(os.path.join(BUILD, "tests", "bench", "relay"))
TRANSPORTS = [t for t in os.environ.get("BENCH_TRANSPORTS", "unix,tcp").split(",") if t]
LAT_COUNT = os.environ.get("BENCH_LAT_COUNT", "10000")
TP_COUNT = os.environ.get("BENCH_TP_COUNT", "100000")
FANOUT_COUNT = os.environ.get("BENCH_FANOUT_COUNT", "3000")
ROUNDS = max(1, int(os.environ.get("BENCH_ROUNDS", "3")))
RUN_TIMEOUT = 150

# (key, bench_bus arguments after the address)
MEASUREMENTS = [
    ("lat0", ["latency", "0", "1000", LAT_COUNT]),
    ("lat1", ["latency", "1", "1000", LAT_COUNT]),
    ("tp0_1", ["throughput", "0", "1", TP_COUNT]),
    ("tp0_100", ["throughput", "0", "100", FANOUT_COUNT]),
    ("tp1_1", ["throughput", "1", "1", TP_COUNT]),
    ("tp1_100", ["throughput", "1", "100", FANOUT_COUNT]),
]

procs = []  # every process we started, for the cleanup


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def log_tail(proc):
    try:
        with open(proc.log_path) as f:
            return "".join(f.readlines()[-5:])
    except (OSError, AttributeError):
        return ""


def wait_for(check, what, proc, timeout=20):
    end = time.monotonic() + timeout
    while not check():
        if proc.poll() is not None:
            raise RuntimeError(f"{what}: the server exited ({proc.returncode}):\n{log_tail(proc)}")
        if time.monotonic() > end:
            raise RuntimeError(f"{what} did not appear")
        time.sleep(0.02)


def port_open(port):
    def check():
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            return False
    return check


def start(argv, log):
    p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    p.log_path = log.name
    procs.append(p)
    return p


def stop(p):
    if p is not None and p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def kill_pidfile(path, comm):
    """Kills the process a pid file names if it is still comm (an orphan)."""
    try:
        pid = int(open(path).read().split()[0])
        with open(f"/proc/{pid}/comm") as f:
            if f.read().strip() == comm:
                os.kill(pid, signal.SIGKILL)
    except (OSError, ValueError, IndexError):
        pass


class Cohortd:
    label = "cohortd"

    def __init__(self, work):
        self.work = work
        self.port = free_port()

    def launch(self):
        w = self.work
        ini = os.path.join(w, "cohort.ini")
        # The idle service tells us its pid (for the cleanup) and its token
        # (the bus over TCP wants a service's token).
        with open(os.path.join(w, "idle.sh"), "w") as f:
            f.write(f'echo $$ > "{w}/idle.pid"\necho "$COHORT_TOKEN" > "{w}/token.tmp"\n'
                    f'mv "{w}/token.tmp" "{w}/token"\nexec /bin/sleep 100000\n')
        with open(ini, "w") as f:
            f.write(f"[cohort]\nrun_dir = {w}/run\nstate_dir = {w}/state\nlog_dir = {w}/log\n"
                    f"bus_fsync = batch\nbus_listen = 127.0.0.1:{self.port}\n"
                    f"[service:idle]\ncommand = /bin/sh {w}/idle.sh\n"
                    "ready = delay:0\nstdout = null\n")
        self.log = open(os.path.join(w, "cohortd.log"), "w")
        self.proc = start([COHORTD, "-q", "-c", ini], self.log)
        wait_for(lambda: os.path.exists(f"{w}/run/bus.sock"), "cohortd's bus.sock", self.proc)
        wait_for(lambda: os.path.exists(f"{w}/token"), "the idle service's token", self.proc)
        wait_for(port_open(self.port), f"cohortd's bus on 127.0.0.1:{self.port}", self.proc)
        self.token = open(f"{w}/token").read().strip()

    def dropped(self):
        """cohortd's own count of qos-0 messages it dropped (cohortctl bus)."""
        try:
            out = subprocess.run([COHORTCTL, "-s", f"{self.work}/run/control.sock", "--json", "bus"],
                                 capture_output=True, text=True, timeout=10).stdout
            return int(json.loads(out)["dropped_qos0"])
        except (OSError, ValueError, KeyError, subprocess.SubprocessError):
            return None

    def address(self, transport):
        if transport == "unix":
            return f"unix:{self.work}/run/bus.sock", {"COHORT_TOKEN": ""}   # root: an admin
        # TCP needs a service's token: the idle service's
        return f"ws://127.0.0.1:{self.port}/", {"COHORT_TOKEN": self.token}

    def stop(self):
        stop(getattr(self, "proc", None))
        kill_pidfile(f"{self.work}/idle.pid", "sleep")


class Mosquitto:
    label = "mosquitto"

    def __init__(self, work):
        self.work = work
        self.port = free_port()

    def launch(self):
        w = self.work
        conf = os.path.join(w, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write(f"listener {self.port} 127.0.0.1\nset_tcp_nodelay true\n"
                    f"listener 0 {w}/mosquitto.sock\n"
                    "allow_anonymous true\npersistence false\nlog_dest stderr\n"
                    # qos 1 at least once, as cohortd's: its default (1000
                    # messages a client may fall behind, then it drops) would
                    # drop qos-1 messages; bound the queue by bytes instead,
                    # as cohortd does (bus_queue_max, 64M).
                    "max_queued_messages 0\nmax_queued_bytes 67108864\n")
            if os.geteuid() == 0:
                # As root it drops to the mosquitto user, which may not
                # create the socket in our directory.
                f.write("user root\n")
        self.log = open(os.path.join(w, "mosquitto.log"), "w")
        self.proc = start(["mosquitto", "-c", conf], self.log)
        wait_for(lambda: os.path.exists(f"{w}/mosquitto.sock"), "mosquitto's socket", self.proc)
        wait_for(port_open(self.port), f"mosquitto on 127.0.0.1:{self.port}", self.proc)

    def address(self, transport):
        if transport == "unix":
            return f"unix:{self.work}/mosquitto.sock", {}
        return f"127.0.0.1:{self.port}", {}

    def stop(self):
        stop(getattr(self, "proc", None))


class Redis:
    label = "redis"

    def __init__(self, work):
        self.work = work
        self.port = free_port()

    def launch(self):
        w = self.work
        self.log = open(os.path.join(w, "redis.log"), "w")
        self.proc = start(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                           "--unixsocket", f"{w}/redis.sock", "--save", "", "--appendonly", "no",
                           "--daemonize", "no", "--dir", w], self.log)
        wait_for(lambda: os.path.exists(f"{w}/redis.sock"), "redis's socket", self.proc)
        wait_for(port_open(self.port), f"redis on 127.0.0.1:{self.port}", self.proc)

    def address(self, transport):
        if transport == "unix":
            return f"unix:{self.work}/redis.sock", {}
        return f"127.0.0.1:{self.port}", {}

    def stop(self):
        stop(getattr(self, "proc", None))


class Floor:
    """tests/bench/relay: a bare pub/sub relay that speaks the two redis
    commands bench_bus sends, on one epoll loop, and does nothing else.
    Measured at the same time as the servers, with redis's client, its
    latency is what this machine and the client pattern cost; a server's
    figure above it is the server's own.  Latency only: it drops what a
    full socket does not take, so its throughput would not compare."""
    label = "floor"
    latency_only = True

    def __init__(self, work):
        self.work = work
        self.port = free_port()

    def launch(self):
        w = self.work
        self.log = open(os.path.join(w, "relay.log"), "w")
        self.proc = start([RELAY, f"unix:{w}/relay.sock"], self.log)
        self.tcp = start([RELAY, f"127.0.0.1:{self.port}"], self.log)
        wait_for(lambda: os.path.exists(f"{w}/relay.sock"), "the relay's socket", self.proc)
        wait_for(port_open(self.port), f"the relay on 127.0.0.1:{self.port}", self.tcp)

    def address(self, transport):
        if transport == "unix":
            return f"unix:{self.work}/relay.sock", {}
        return f"127.0.0.1:{self.port}", {}

    def stop(self):
        stop(getattr(self, "proc", None))
        stop(getattr(self, "tcp", None))


KIND = {Cohortd: "cohort", Mosquitto: "mosquitto", Redis: "redis", Floor: "redis"}


def version(argv, pattern):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        m = re.search(pattern, out.stdout + out.stderr)
        return m.group(1) if m else "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def run_one(kind, address, env, args, samples=None):
    """One bench_bus run: its key=value line as a dict, or {"error": ...};
    with a samples path, a latency run's latencies (us, None for a message
    that never came, in the order sent) as d["samples"]."""
    if samples:
        env = dict(env, BENCH_SAMPLES=samples)
    try:
        r = subprocess.run([BENCH, kind, address] + args, capture_output=True, text=True,
                           timeout=RUN_TIMEOUT, env=dict(os.environ, **env))
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {RUN_TIMEOUT} s"}
    for line in r.stdout.splitlines():
        m = re.match(r"^(latency|throughput|unsupported) (.*)$", line)
        if m:
            d = dict(re.findall(r"(\w+)=(\S+)", m.group(2)))
            d["type"] = m.group(1)
            if r.returncode:
                d["error"] = f"exit {r.returncode}"
            elif samples and d["type"] == "latency":
                with open(samples) as f:
                    d["samples"] = [int(v) / 1e3 if int(v) >= 0 else None for v in f]
            return d
    return {"error": (r.stderr.strip() or f"exit {r.returncode}, no result").splitlines()[-1]}


def measure_round(peers, work, r):
    """One round: every server started fresh, all up at once.  A latency
    measurement runs against every server at the same time: its p99 is
    decided by this shared VM's slow spells (tens to hundreds of ms, a few
    a minute), which then fall on all the servers alike instead of on
    whichever was being measured; the load is 1000 msg/s each, a few
    percent of a core.  A throughput measurement takes the whole machine,
    so the servers take turns, back to back, the order rotating.
    {label: {(transport, key): result}}."""
    servers = [cls(os.path.join(work, cls.label)) for cls in peers]
    res = {cls.label: {} for cls in peers}

    def one(server, transport, args):
        address, env = server.address(transport)
        samples = os.path.join(server.work, f"samples.{transport}") if args[0] == "latency" else None
        return run_one(KIND[type(server)], address, env, args, samples)

    try:
        for server in servers:
            os.makedirs(server.work)
            server.launch()
        turn = r
        for transport in TRANSPORTS:
            for key, args in MEASUREMENTS:
                turn += 1
                order = servers[turn % len(servers):] + servers[:turn % len(servers)]
                cohortd = next(s for s in servers if isinstance(s, Cohortd))
                before = cohortd.dropped()
                if args[0] == "latency":
                    with ThreadPoolExecutor(len(order)) as pool:
                        done = {s: pool.submit(one, s, transport, args) for s in order}
                    got = {s: f.result() for s, f in done.items()}
                else:
                    got = {}
                    for s in order:
                        if getattr(s, "latency_only", False):
                            continue
                        got[s] = one(s, transport, args)
                        if s is cohortd:
                            after = cohortd.dropped()
                            if before is not None and after is not None:
                                got[s]["server_dropped"] = str(after - before)
                for s, d in got.items():
                    if "error" in d:
                        print(f"  ({s.label} {transport} {key}: {d['error']})", file=sys.stderr)
                    res[s.label][(transport, key)] = d
    finally:
        for server in servers:
            server.stop()
    return res


def num(d, field):
    try:
        return float(d[field])
    except (KeyError, ValueError, TypeError):
        return None


FIGURES = ("p50_us", "p99_us", "p999_us", "msgs_per_s")
COUNTS = ("lost", "dups", "reconnects", "closed", "unacked", "server_dropped")


def percentile(vals, q):
    """As bench_bus.c takes it: vals sorted."""
    return vals[int((len(vals) - 1) * q)]


def combine(rounds):
    """One result per measurement from the rounds: a latency's percentiles
    of every round's samples pooled, the median of each other figure, the
    worst of each count, the first error if any round had one."""
    out = {}
    for key in {k for r in rounds for k in r}:
        ds = [r[key] for r in rounds if key in r]
        d = dict(ds[0])
        d.pop("error", None)
        for field in FIGURES:
            vals = sorted(v for v in (num(x, field) for x in ds) if v is not None)
            if vals:
                d[field] = str(statistics.median(vals))
            d[field + "_rounds"] = vals
        # by round: a server's round k was measured at the same time as
        # its peer's round k, and only those two may be paired
        d["samples_rounds"] = {k: r[key]["samples"] for k, r in enumerate(rounds)
                               if key in r and "samples" in r[key]}
        pooled = sorted(v for r in d["samples_rounds"].values() for v in r if v is not None)
        if pooled and len(d["samples_rounds"]) == len(ds):
            for field, q in (("p50_us", 0.50), ("p99_us", 0.99), ("p999_us", 0.999)):
                d[field] = str(percentile(pooled, q))
        for field in COUNTS:
            vals = [v for v in (num(x, field) for x in ds) if v is not None]
            if vals:
                d[field] = str(int(max(vals)))
        errors = [x["error"] for x in ds if "error" in x]
        if errors:
            d["error"] = errors[0]
        out[key] = d
    return out


BLOCK = 1000     # messages: a second at 1000 msg/s
BOOTSTRAP = 1000


def p99_difference(mine, theirs, q=0.99):
    """How sure we may be of a difference of two servers' p99 measured at
    the same time: its 95% interval by a paired block bootstrap.  The
    samples ({round: latencies in the order sent}) are cut into blocks of a
    second; block k of one server was measured during block k of the
    other, through the same slow spells of the host, so a resample draws
    blocks, each for both servers at once.  (lo, hi) in us, or None."""
    blocks = []
    for a, b in ((mine[k], theirs[k]) for k in sorted(set(mine) & set(theirs))):
        for i in range(0, min(len(a), len(b)), BLOCK):
            pair = []
            for s in (a, b):
                block = sorted((v for v in s[i:i + BLOCK] if v is not None), reverse=True)
                pair.append((block, len(block)))
            if pair[0][1] and pair[1][1]:
                blocks.append(pair)
    if len(blocks) < 10:
        return None
    # The p99 of a resample is among the top 1% of its blocks' samples:
    # keeping each block's top (1% of the most a resample can hold) is
    # enough, and makes a resample cheap.
    keep = int(len(blocks) * BLOCK * (1 - q)) + 2
    blocks = [[(b[:keep], n) for b, n in pair] for pair in blocks]
    rng = random.Random(1)
    diffs = []
    for _ in range(BOOTSTRAP):
        pick = [blocks[rng.randrange(len(blocks))] for _ in blocks]
        got = []
        for side in (0, 1):
            n = sum(p[side][1] for p in pick)
            from_top = n - 1 - int((n - 1) * q)
            top = sorted((v for p in pick for v in p[side][0]), reverse=True)
            got.append(top[from_top])
        diffs.append(got[0] - got[1])
    diffs.sort()
    return diffs[int(0.025 * BOOTSTRAP)], diffs[int(0.975 * BOOTSTRAP)]


def cell(d, field, fmt):
    if d is None:
        return "-"
    if "error" in d and num(d, field) is None:
        return "error"
    if d.get("type") == "unsupported":
        return "n/a"
    v = num(d, field)
    return "-" if v is None else fmt.format(v)


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "   -"
    return f"x{a / b:.2f}"


ROWS = [
    # label, key, field, format, lower is better
    ("latency qos 0   p50 us", "lat0", "p50_us", "{:.1f}", True),
    ("                p99 us", "lat0", "p99_us", "{:.1f}", True),
    ("              p99.9 us", "lat0", "p999_us", "{:.1f}", True),
    ("latency qos 1   p50 us", "lat1", "p50_us", "{:.1f}", True),
    ("                p99 us", "lat1", "p99_us", "{:.1f}", True),
    ("              p99.9 us", "lat1", "p999_us", "{:.1f}", True),
    ("qos 0  1->1     msg/s", "tp0_1", "msgs_per_s", "{:.0f}", False),
    ("                 lost", "tp0_1", "lost", "{:.0f}", None),
    ("qos 0  1->100   msg/s", "tp0_100", "msgs_per_s", "{:.0f}", False),
    ("                 lost", "tp0_100", "lost", "{:.0f}", None),
    ("qos 1  1->1     msg/s", "tp1_1", "msgs_per_s", "{:.0f}", False),
    ("                 lost", "tp1_1", "lost", "{:.0f}", None),
    ("qos 1  1->100   msg/s", "tp1_100", "msgs_per_s", "{:.0f}", False),
    ("                 lost", "tp1_100", "lost", "{:.0f}", None),
]

GOALS = [
    ("p99 latency qos 0", "lat0", "p99_us", True),
    ("p99 latency qos 1", "lat1", "p99_us", True),
    ("throughput qos 0 1->1", "tp0_1", "msgs_per_s", False),
    ("throughput qos 0 1->100", "tp0_100", "msgs_per_s", False),
    ("throughput qos 1 1->1", "tp1_1", "msgs_per_s", False),
    ("throughput qos 1 1->100", "tp1_100", "msgs_per_s", False),
]


def report(results, labels):
    w = 12
    for transport in TRANSPORTS:
        title = "unix sockets" if transport == "unix" else "TCP 127.0.0.1"
        print(f"\n  {title}:")
        head = "".join(f"{lab:>{w}}" for lab in labels)
        rhead = "".join(f"{'cohortd/' + lab:>{w + 6}}" for lab in labels if lab != "cohortd")
        print(f"    {'':24s}{head}{rhead}")
        for label, key, field, fmt, _ in ROWS:
            ds = {lab: results[lab].get((transport, key)) for lab in labels}
            cells = "".join(f"{cell(ds[lab], field, fmt):>{w}}" for lab in labels)
            rs = ""
            if field != "lost":
                base = num(ds["cohortd"], field) if ds["cohortd"] else None
                for lab in labels:
                    if lab == "cohortd":
                        continue
                    other = ds[lab]
                    o = None if other is None or other.get("type") == "unsupported" else num(other, field)
                    rs += f"{ratio(base, o):>{w + 6}}"
            print(f"    {label:24s}{cells}{rs}")
        notes = []
        for lab in labels:
            for key, _ in MEASUREMENTS:
                d = results[lab].get((transport, key)) or {}
                for f in ("dups", "reconnects", "closed", "unacked"):
                    if num(d, f):
                        notes.append(f"{lab} {key}: {f} {d[f]}")
                lost = num(d, "lost")
                if lab == "cohortd" and lost and "server_dropped" in d:
                    notes.append(f"cohortd {key}: {d['lost']} lost, cohortd counted {d['server_dropped']} "
                                 "qos-0 drops (a subscriber's send queue over 8 MiB)")
                if lab == "mosquitto" and lost and d.get("qos") == "1":
                    notes.append(f"mosquitto {key}: {d['lost']} qos-1 messages dropped (a client's "
                                 "queue over max_queued_bytes)")
                if lab == "redis" and num(d, "closed"):
                    notes.append(f"redis {key}: subscribers disconnected (client-output-buffer-limit "
                                 "pubsub)")
        for n in notes:
            print("    note: " + n)
    if "mosquitto" not in labels:
        return
    print("\n  goals (cohortd against mosquitto: p99 at most its, throughput at least its;")
    print("  p99: the difference and its 95% interval, by a paired block bootstrap over the")
    print("  seconds both were measured in, are shown; 'level' is a p99 above mosquitto's by")
    print("  less than this run can tell apart: the interval reaches below 0):")
    tally = {"met": 0, "level": 0, "NOT met": 0, "not measured": 0}
    for transport in TRANSPORTS:
        for name, key, field, lower in GOALS:
            mine = results["cohortd"].get((transport, key)) or {}
            theirs = results["mosquitto"].get((transport, key)) or {}
            a, b = num(mine, field), num(theirs, field)
            if a is None or b is None or not b:
                verdict = "not measured"
                tally[verdict] += 1
            else:
                ok = a <= b if lower else a >= b
                ci = p99_difference(mine["samples_rounds"], theirs["samples_rounds"]) \
                    if lower and mine.get("samples_rounds") and theirs.get("samples_rounds") else None
                state = "met" if ok else "level" if ci and ci[0] <= 0 else "NOT met"
                tally[state] += 1
                unit = "us" if lower else "msg/s"
                verdict = f"{state:7s}  cohortd {a:.0f} {unit} vs mosquitto {b:.0f} {unit} (x{a / b:.2f})"
                if ci:
                    verdict += f"; {a - b:+.0f} us, 95% {ci[0]:+.0f}..{ci[1]:+.0f}"
                elif len(mine.get(field + "_rounds", [])) > 1:
                    each = lambda d: "/".join(f"{v:.0f}" for v in d.get(field + "_rounds", []))
                    verdict += f"  [rounds, sorted: {each(mine)} vs {each(theirs)}]"
                if num(theirs, "lost"):
                    verdict += f"; mosquitto lost {theirs['lost']}"
                if num(mine, "lost"):
                    verdict += f"; cohortd lost {mine['lost']}"
            print(f"    {transport:4s} {name:26s} {verdict}")
    print("  goals: " + ", ".join(f"{n} {state}" for state, n in tally.items() if n) +
          f"; all met: {'yes' if tally['met'] == sum(tally.values()) else 'no'}")
    if "floor" not in labels:
        return
    print("\n  above the floor (a bare relay measured at the same time, the same client as redis's):")
    for transport in TRANSPORTS:
        floor = results["floor"].get((transport, "lat0")) or {}
        for field in ("p50_us", "p99_us"):
            f = num(floor, field)
            if f is None:
                continue
            above = []
            for lab in labels:
                v = num(results[lab].get((transport, "lat0")) or {}, field)
                if lab != "floor" and v is not None:
                    above.append(f"{lab} {v - f:+.0f}")
            print(f"    {transport:4s} qos 0 {field[:-3]:4s} floor {f:.0f} us; " + ", ".join(above))


def main():
    if not os.path.exists(BENCH):
        sys.exit(f"build {BENCH} first (make tests/bench/bench_bus)")
    peers = [Cohortd]
    for cls, exe in ((Mosquitto, "mosquitto"), (Redis, "redis-server")):
        if shutil.which(exe):
            peers.append(cls)
        else:
            print(f"  ({exe} not installed: skipped)")
    if os.path.exists(RELAY):
        peers.append(Floor)
    mver = version(["mosquitto", "-h"], r"mosquitto version (\S+)")
    rver = version(["redis-server", "--version"], r"v=(\S+)")
    print("bus: cohortd (libcohort) beside mosquitto " + mver + " (libmosquitto) and redis " + rver +
          " (pub/sub, RESP), same client pattern, same run")
    print(f"  100-byte payloads; latency: {LAT_COUNT} messages at 1000 msg/s after 500 of warm-up; "
          f"throughput: 1->1 {TP_COUNT} messages, 1->100 {FANOUT_COUNT} messages")
    print("  cohortd bus_fsync = batch; mosquitto persistence off, max_queued_messages 0, "
          "max_queued_bytes 64M; redis without persistence (no qos 1: n/a)")
    print("  ratios: cohortd's figure / the peer's (latency: below 1 is better; msg/s: above 1 is "
          "better)")
    print(f"  {ROUNDS} rounds; in a round, latency is measured of every server at once, throughput "
          "of each in turn;")
    print("  latency: percentiles of the samples of every round pooled; throughput: the median of "
          "the rounds")
    work = tempfile.mkdtemp(prefix="cohort-bbus.")
    rounds = {cls.label: [] for cls in peers}
    t0 = time.monotonic()
    try:
        for r in range(ROUNDS):
            for label, res in measure_round(peers, os.path.join(work, f"round{r}"), r).items():
                rounds[label].append(res)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(work, ignore_errors=True)
    results = {label: combine(rs) for label, rs in rounds.items()}
    report(results, [cls.label for cls in peers])
    print(f"  ({time.monotonic() - t0:.0f} s)")
    errors = sum(1 for r in results.values() for d in r.values() if "error" in d)
    return 1 if errors else 0


def on_signal(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    try:
        sys.exit(main())
    except KeyboardInterrupt as e:
        sys.exit(f"interrupted ({e or 'SIGINT'}): every server stopped")
