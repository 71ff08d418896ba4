#!/usr/bin/python3
"""Scale: bus clients (issue 19, item 2).  10,000 WebSocket clients of
cohortd (libcohort) beside 10,000 MQTT clients of mosquitto
(libmosquitto), in the same run, over the unix socket and over TCP
127.0.0.1.  The clients are tests/bench/bench_scale_bus processes (a few,
with threads: a libcohort client's connect blocks on its answer, as it
would in as many programs).

  memory    each server's PSS (and RSS) with every client connected and
            subscribed, less its own before the first: per connection
  fan-out   one publisher, every client subscribed to its topic (qos 0):
            a message's latency to its first and to its last receiver,
            p50 / p99 over the messages, and of every delivery; the two
            servers' messages interleaved, so a slow spell of the host
            falls on both
  storm     every client with a durable session (cohortd: a named session;
            mosquitto: clean_session false, persistence on) subscribed with
            qos 1; the server is stopped (SIGTERM) and, while it is down, a
            publisher with a durable session queues qos-1 messages (its
            client keeps them); then the server starts again: how long until
            every client is back, and until every client has every message;
            a histogram of when clients came back (their reconnect jitter
            spreads the storm); lost messages; accept errors and refusals in
            the server's log.  Each server alone, one after the other.

Goals (issue 19): less memory per connection than mosquitto, a fan-out p99
at most mosquitto's, the storm absorbed with no lost message and no accept
error.

Environment: COHORT_BUILDDIR; SCALE_BUS_CLIENTS (10000), SCALE_BUS_PROCS
(client processes per server, 4), SCALE_BUS_THREADS (threads per process,
50), SCALE_BUS_TRANSPORTS (unix,tcp), SCALE_BUS_STORM_TRANSPORTS (unix,tcp),
SCALE_BUS_FANOUT (messages, 20), SCALE_BUS_FANOUT_GAP (s between two to
one server, N / 2500), SCALE_BUS_STORM (messages, 20),
SCALE_BUS_COHORT_INI (lines added to cohortd's [cohort] section).
"""
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scale_summary  # noqa: E402

BUILD = os.environ.get("COHORT_BUILDDIR", ".")
COHORTD = os.path.abspath(os.path.join(BUILD, "cohortd"))
SWARM = os.path.abspath(os.path.join(BUILD, "tests", "bench", "bench_scale_bus"))
N = int(os.environ.get("SCALE_BUS_CLIENTS", "10000"))
PROCS = int(os.environ.get("SCALE_BUS_PROCS", "4"))
THREADS = int(os.environ.get("SCALE_BUS_THREADS", "50"))
TRANSPORTS = [t for t in os.environ.get("SCALE_BUS_TRANSPORTS", "unix,tcp").split(",") if t]
STORM_TRANSPORTS = [t for t in os.environ.get("SCALE_BUS_STORM_TRANSPORTS", "unix,tcp").split(",") if t]
FANOUT = int(os.environ.get("SCALE_BUS_FANOUT", "20"))
# s between two messages to one server: a fan-out must be over before the
# next (10,000 deliveries take the clients' processes a second or two of
# this 2-core host), or what is measured is a queue
FANOUT_GAP = float(os.environ.get("SCALE_BUS_FANOUT_GAP", str(max(0.5, N / 2500))))
STORM = int(os.environ.get("SCALE_BUS_STORM", "20"))
STORM_DOWN = 2.0      # s the server stays down
STORM_TIMEOUT = 300
COHORT_INI = os.environ.get("SCALE_BUS_COHORT_INI", "").replace("\\n", "\n")

procs = []


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(check, what, proc=None, timeout=60):
    end = time.monotonic() + timeout
    while not check():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: the server exited ({proc.returncode})")
        if time.monotonic() > end:
            raise RuntimeError(f"{what}: not within {timeout} s")
        time.sleep(0.02)


def port_open(port):
    def check():
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            return False
    return check


def memory(pid):
    """(PSS, RSS, anonymous) of pid in bytes."""
    got = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key = line.split(":")[0]
            if key in ("Pss", "Rss", "Anonymous"):
                got[key] = int(line.split()[1]) * 1024
    return got["Pss"], got["Rss"], got["Anonymous"]


def stop(p, sig=signal.SIGTERM, timeout=60):
    if p is not None and p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


class Cohortd:
    label = "cohortd"
    kind = "cohort"

    def __init__(self, work):
        self.work = work
        self.port = free_port()
        self.proc = None
        self.starts = 0
        os.makedirs(work)
        w = work
        with open(os.path.join(w, "idle.sh"), "w") as f:
            f.write(f'echo $$ > "{w}/idle.pid"\nexec /bin/sleep 100000\n')
        self.ini = os.path.join(w, "cohort.ini")
        with open(self.ini, "w") as f:
            f.write(f"[cohort]\nrun_dir = {w}/run\nstate_dir = {w}/state\nlog_dir = {w}/log\n"
                    f"bus_fsync = batch\nbus_listen = 127.0.0.1:{self.port}\n{COHORT_INI}\n"
                    f"[service:idle]\ncommand = /bin/sh {w}/idle.sh\n"
                    "ready = delay:0\nstdout = null\n")

    def launch(self):
        w = self.work
        if os.path.exists(f"{w}/run/bus.sock"):
            os.unlink(f"{w}/run/bus.sock")
        self.starts += 1
        self.log_path = os.path.join(w, f"cohortd.{self.starts}.log")
        log = open(self.log_path, "w")
        self.proc = subprocess.Popen([COHORTD, "-q", "-c", self.ini], stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        procs.append(self.proc)
        wait_for(lambda: os.path.exists(f"{w}/run/bus.sock"), "cohortd's bus.sock", self.proc)
        wait_for(port_open(self.port), "cohortd's bus_listen", self.proc)
        # Over TCP the clients say hello with the admin token: a service's
        # token is new at every start of cohortd, the admin's is kept.
        self.token = open(f"{w}/state/admin.token").read().split()[0]

    def address(self, transport):
        if transport == "unix":
            return f"unix:{self.work}/run/bus.sock", {"COHORT_TOKEN": ""}   # root: an admin
        return f"ws://127.0.0.1:{self.port}/", {"COHORT_TOKEN": self.token}   # admin_token_file's

    def topic(self, name):
        return f"bench.{name}"

    def log_problems(self):
        """Lines of the logs about accepting or refusing clients."""
        out = []
        for i in range(1, self.starts + 1):
            with open(os.path.join(self.work, f"cohortd.{i}.log"), errors="replace") as f:
                out += [line.strip() for line in f
                        if re.search(r"accept|refused|libwebsockets|descriptor", line)]
        return out

    def stop(self):
        stop(self.proc)
        try:
            pid = int(open(f"{self.work}/idle.pid").read())
            if open(f"/proc/{pid}/comm").read().strip() == "sleep":
                os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            pass


class Mosquitto:
    label = "mosquitto"
    kind = "mosquitto"

    def __init__(self, work, persistent=False):
        self.work = work
        self.port = free_port()
        self.proc = None
        self.starts = 0
        os.makedirs(work)
        self.conf = os.path.join(work, "mosquitto.conf")
        with open(self.conf, "w") as f:
            f.write(f"listener {self.port} 127.0.0.1\nset_tcp_nodelay true\n"
                    f"listener 0 {work}/mosquitto.sock\nallow_anonymous true\nlog_dest stderr\n"
                    "max_queued_messages 0\nmax_queued_bytes 67108864\n")
            if persistent:
                # saved at shutdown (and every 30 min): a restart keeps the
                # sessions and what they are owed
                f.write(f"persistence true\npersistence_location {work}/\n")
            else:
                f.write("persistence false\n")
            if os.geteuid() == 0:
                f.write("user root\n")

    def launch(self):
        w = self.work
        if os.path.exists(f"{w}/mosquitto.sock"):
            os.unlink(f"{w}/mosquitto.sock")
        self.starts += 1
        self.log_path = os.path.join(w, f"mosquitto.{self.starts}.log")
        log = open(self.log_path, "w")
        self.proc = subprocess.Popen(["mosquitto", "-c", self.conf], stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        procs.append(self.proc)
        wait_for(lambda: os.path.exists(f"{w}/mosquitto.sock"), "mosquitto's socket", self.proc)
        wait_for(port_open(self.port), "mosquitto's listener", self.proc)

    def address(self, transport):
        if transport == "unix":
            return f"unix:{self.work}/mosquitto.sock", {}
        return f"127.0.0.1:{self.port}", {}

    def topic(self, name):
        return f"bench/{name}"

    def log_problems(self):
        out = []
        for i in range(1, self.starts + 1):
            with open(os.path.join(self.work, f"mosquitto.{i}.log"), errors="replace") as f:
                out += [line.strip() for line in f if re.search(r"[Ee]rror|refused|accept", line)]
        return out

    def stop(self):
        stop(self.proc)


class Client:
    """A bench_scale_bus process, talked to by lines."""

    def __init__(self, argv, env, work, name):
        self.name = name
        self.err_path = os.path.join(work, f"{name}.err")
        self.proc = subprocess.Popen([SWARM] + argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=open(self.err_path, "w"), text=True, bufsize=1,
                                     env=dict(os.environ, **env))
        procs.append(self.proc)

    def expect(self, prefix, timeout):
        """The next line starting with prefix, as a dict of its key=value."""
        import select
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                raise RuntimeError(f"{self.name}: no '{prefix}' within {timeout} s: {self.stderr()}")
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{self.name} exited ({self.proc.wait()}): {self.stderr()}")
            if line.startswith(prefix):
                return dict(re.findall(r"(\w+)=(\S+)", line))

    def stderr(self):
        try:
            return open(self.err_path).read().strip()[-500:]
        except OSError:
            return ""

    def send(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def quit(self):
        if self.proc.poll() is None:
            try:
                self.send("quit")
            except BrokenPipeError:
                pass
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Swarm:
    """N clients of one server, over PROCS processes."""

    def __init__(self, server, transport, work, topic, qos, expect, session=None):
        address, env = server.address(transport)
        self.clients = []
        self.work = work
        self.label = server.label
        for i in range(PROCS):
            n = N // PROCS + (i < N % PROCS)
            argv = ["swarm", server.kind, address, str(n), str(max(1, THREADS)), server.topic(topic), str(qos),
                    str(expect)] + ([session] if session else [])
            e = dict(env, BENCH_FIRST=str(i * (N // PROCS + 1)))
            self.clients.append(Client(argv, e, work, f"{server.label}-swarm{i}"))

    def ready(self, timeout):
        for c in self.clients:
            c.expect("ready", timeout)

    def stats(self):
        tot = {}
        for c in self.clients:
            c.send("stats")
        for c in self.clients:
            for k, v in c.expect("stats", 60).items():
                tot[k] = tot.get(k, 0) + int(v)
        return tot

    def dump(self):
        lat, msgs, recon = [], {}, []
        for i, c in enumerate(self.clients):
            path = os.path.join(self.work, f"{c.name}.dump")
            c.send("dump " + path)
            c.expect("dumped", 120)
            with open(path) as f:
                for line in f:
                    p = line.split()
                    if p[0] == "l":
                        lat.append(int(p[1]))
                    elif p[0] == "m":
                        i, n, first, last = int(p[1]), int(p[2]), int(p[3]), int(p[4])
                        if i in msgs:
                            n0, f0, l0 = msgs[i]
                            msgs[i] = (n0 + n, min(f0, first), max(l0, last))
                        else:
                            msgs[i] = (n, first, last)
                    elif p[0] == "r":
                        recon.append((int(p[1]), int(p[2]), int(p[3])))
            os.unlink(path)
        return lat, msgs, recon

    def quit(self):
        for c in self.clients:
            c.quit()


def pct(vals, q):
    vals = sorted(vals)
    return vals[int((len(vals) - 1) * q)] if vals else None


def ms(ns):
    return "-" if ns is None else f"{ns / 1e6:.1f}"


def mib(b):
    return f"{b / 1048576:.1f} MiB"


def publisher(server, transport, work, topic, qos):
    address, env = server.address(transport)
    p = Client(["publish", server.kind, address, server.topic(topic), str(qos)], env, work,
               f"{server.label}-publisher")
    p.expect("ready", 30)
    return p


def memory_and_fanout(transport, work):
    """Both servers fresh; both swarms connected at once; memory; then the
    fan-out, the servers' messages interleaved."""
    servers = [Cohortd(os.path.join(work, "cohortd")), Mosquitto(os.path.join(work, "mosquitto"))]
    res = {s.label: {} for s in servers}
    swarms = []
    pubs = []
    try:
        for s in servers:
            s.launch()
        time.sleep(1)
        base = {s.label: memory(s.proc.pid) for s in servers}
        for s in servers:
            t0 = time.monotonic()
            sw = Swarm(s, transport, work, "fan", 0, FANOUT)
            sw.ready(300)
            res[s.label]["connect_s"] = time.monotonic() - t0
            swarms.append(sw)
        time.sleep(2)
        for s in servers:
            pss, rss, anon = memory(s.proc.pid)
            res[s.label].update(pss=pss, rss=rss, pss_base=base[s.label][0],
                                pss_per_conn=(pss - base[s.label][0]) / N, rss_per_conn=(rss - base[s.label][1]) / N,
                                anon_per_conn=(anon - base[s.label][2]) / N)
        pubs = [publisher(s, transport, work, "fan", 0) for s in servers]
        for _ in range(FANOUT):
            for p in pubs:
                p.send("send 1 0")
                time.sleep(FANOUT_GAP / len(pubs))
        want = N * FANOUT
        end = time.monotonic() + 60
        got = {}
        while time.monotonic() < end:
            got = {sw.label: sw.stats()["got"] for sw in swarms}
            if all(v >= want for v in got.values()):
                break
            time.sleep(0.5)
        for sw in swarms:
            lat, msgs, _ = sw.dump()
            r = res[sw.label]
            r["lost"] = want - got[sw.label]
            r["p50"], r["p99"] = pct(lat, 0.5), pct(lat, 0.99)
            firsts = [m[1] for m in msgs.values()]
            lasts = [m[2] for m in msgs.values()]
            r["first_p50"], r["first_p99"] = pct(firsts, 0.5), pct(firsts, 0.99)
            r["last_p50"], r["last_p99"] = pct(lasts, 0.5), pct(lasts, 0.99)
    finally:
        for p in pubs:
            p.quit()
        for sw in swarms:
            sw.quit()
        for s in servers:
            s.stop()
    return res


def storm(server, transport, work):
    """server restarted under N clients with durable sessions."""
    res = {}
    sw = pub = None
    try:
        server.launch()
        sw = Swarm(server, transport, work, "storm", 1, STORM, session=f"{server.label}-{transport}")
        sw.ready(600)
        pub = publisher(server, transport, work, "storm", 1)
        stop(server.proc)
        down = time.monotonic()
        pub.send(f"send {STORM} 10")
        pub.expect("sent", 30)
        time.sleep(max(0.0, STORM_DOWN - (time.monotonic() - down)))
        t_start = time.monotonic_ns()
        server.launch()
        t_up = time.monotonic_ns()
        back = done = None
        st = {}
        end = time.monotonic() + STORM_TIMEOUT
        while time.monotonic() < end:
            st = sw.stats()
            now = time.monotonic_ns()
            if back is None and st["connected"] >= N:
                back = now
            if st["complete"] >= N:
                done = now
                break
            time.sleep(0.1)
        _, _, recon = sw.dump()
        ups = sorted(u - t_start for _, u, _ in recon if u > t_start)
        res.update(start_s=(t_up - t_start) / 1e9, back_s=None if back is None else (back - t_start) / 1e9,
                   done_s=None if done is None else (done - t_start) / 1e9, complete=st.get("complete", 0),
                   connected=st.get("connected", 0), dups=st.get("dups", 0), closed=st.get("closed", 0),
                   ups=ups, problems=server.log_problems(),
                   lost=N * STORM - st.get("got", 0))
    finally:
        if pub:
            pub.quit()
        if sw:
            sw.quit()
        server.stop()
    return res


def histogram(ups, width_ms=250):
    if not ups:
        return "    (none came back)"
    top = max(ups)
    bins = [0] * (int(top / 1e6 // width_ms) + 1)
    for u in ups:
        bins[int(u / 1e6 // width_ms)] += 1
    peak = max(bins)
    lines = []
    for i, n in enumerate(bins):
        if n:
            lines.append(f"    {i * width_ms / 1000:6.2f} s {n:6d} {'#' * max(1, round(40 * n / peak))}")
    return "\n".join(lines)


def main():
    if not os.path.exists(SWARM):
        sys.exit(f"build {SWARM} first (make tests/bench/bench_scale_bus)")
    if not shutil.which("mosquitto"):
        print("scale bus: mosquitto not installed: skipped")
        return 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 2 * N + 1000
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(want, soft)), hard))
    print(f"scale bus: {N} clients of cohortd (libcohort) beside {N} of mosquitto (libmosquitto), same run; "
          f"{PROCS} client processes per server, {THREADS} threads each; descriptor limit "
          f"{resource.getrlimit(resource.RLIMIT_NOFILE)[0]}")
    work = tempfile.mkdtemp(prefix="cohort-sbus.")
    t0 = time.monotonic()
    rows = []
    try:
        for transport in TRANSPORTS:
            res = memory_and_fanout(transport, os.path.join(work, f"fan-{transport}"))
            print(f"\n  {transport}: memory with {N} clients connected and subscribed, and a 1 -> {N} fan-out "
                  f"of {FANOUT} messages (qos 0, 100 bytes, {FANOUT_GAP} s apart)")
            for label, r in res.items():
                print(f"    {label:10s} connect {r['connect_s']:.1f} s; PSS {mib(r['pss_base'])} -> {mib(r['pss'])}: "
                      f"{r['pss_per_conn']:.0f} B/conn (RSS {r['rss_per_conn']:.0f}, anonymous {r['anon_per_conn']:.0f}); "
                      f"first receiver p50 {ms(r['first_p50'])} p99 {ms(r['first_p99'])} ms, last receiver "
                      f"p50 {ms(r['last_p50'])} p99 {ms(r['last_p99'])} ms, every delivery p50 {ms(r['p50'])} "
                      f"p99 {ms(r['p99'])} ms; lost {r['lost']}")
            rows.append((transport, "fan", res))
        for transport in STORM_TRANSPORTS:
            for cls in (Cohortd, Mosquitto):
                w = os.path.join(work, f"storm-{transport}-{cls.label}")
                server = cls(w) if cls is Cohortd else cls(w, persistent=True)
                r = storm(server, transport, w)
                print(f"\n  {transport}: {cls.label} restarted under {N} clients with durable sessions, {STORM} "
                      f"qos-1 messages queued by a publisher while it was down ({STORM_DOWN:.0f} s)")
                back = "not all" if r["back_s"] is None else f"{r['back_s']:.2f} s"
                done = "not all" if r["done_s"] is None else f"{r['done_s']:.2f} s"
                print(f"    started in {r['start_s']:.2f} s; all {N} back {back}, every message delivered {done} "
                      f"(after the start); connected {r['connected']}, complete {r['complete']}, lost {r['lost']}, "
                      f"dups {r['dups']}, stopped for good {r['closed']}")
                print(f"    log lines about accepting or refusing: {len(r['problems'])}")
                for line in r["problems"][:5]:
                    print("      " + line)
                print("    reconnects after the start (250 ms bins):")
                print(histogram(r["ups"]))
                rows.append((transport, "storm-" + cls.label, r))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(work, ignore_errors=True)
    summary(rows)
    print(f"  ({time.monotonic() - t0:.0f} s)")
    return 0


def summary(rows):
    print(f"\n  summary ({N} clients; cohortd / mosquitto):")
    print(f"    {'':34s}{'cohortd':>14s}{'mosquitto':>14s}{'ratio':>9s}")

    def line(name, a, b, fmt):
        ratio = f"x{a / b:.2f}" if a is not None and b else "-"
        fa = "-" if a is None else fmt.format(a)
        fb = "-" if b is None else fmt.format(b)
        print(f"    {name:34s}{fa:>14s}{fb:>14s}{ratio:>9s}")
    for transport, what, r in rows:
        if what == "fan":
            c, m = r["cohortd"], r["mosquitto"]
            line(f"{transport} PSS per connection B", c["pss_per_conn"], m["pss_per_conn"], "{:.0f}")
            line(f"{transport} RSS per connection B", c["rss_per_conn"], m["rss_per_conn"], "{:.0f}")
            for key, name in (("first_p50", "first p50"), ("first_p99", "first p99"), ("last_p50", "last p50"),
                              ("last_p99", "last p99"), ("p99", "every delivery p99")):
                line(f"{transport} fan-out {name} ms", c[key] and c[key] / 1e6, m[key] and m[key] / 1e6, "{:.1f}")
    storms = {(t, w[6:]): r for t, w, r in rows if w.startswith("storm-")}
    for transport in STORM_TRANSPORTS:
        c, m = storms.get((transport, "cohortd")), storms.get((transport, "mosquitto"))
        if not c or not m:
            continue
        line(f"{transport} storm all back s", c["back_s"], m["back_s"], "{:.2f}")
        line(f"{transport} storm all delivered s", c["done_s"], m["done_s"], "{:.2f}")
        line(f"{transport} storm lost", c["lost"], m["lost"], "{:.0f}")
    summarize(rows)


def summarize(rows):
    """The goals of item 2, for the one table of SCALE=1 (scale_summary.py)."""
    for transport, what, r in rows:
        if what != "fan":
            continue
        c, m = r["cohortd"], r["mosquitto"]
        scale_summary.add("bus", f"memory (PSS) per connection, {N:,} clients, {transport}",
                          f"{c['pss_per_conn']:.0f} B", f"mosquitto {m['pss_per_conn']:.0f} B",
                          "less than mosquitto", c["pss_per_conn"] < m["pss_per_conn"])
        for key, name in (("first_p99", "first receiver"), ("last_p99", "last receiver")):
            if c[key] is None or m[key] is None:
                continue
            scale_summary.add("bus", f"1 -> {N:,} fan-out, {name} p99, {transport}", f"{c[key] / 1e6:.1f} ms",
                              f"mosquitto {m[key] / 1e6:.1f} ms", "at most mosquitto's", c[key] <= m[key])
        scale_summary.add("bus", f"fan-out deliveries lost, {transport}", f"{c['lost']}", f"mosquitto {m['lost']}",
                          "none", c["lost"] == 0)
    for transport, what, r in rows:
        if what != "storm-cohortd":
            continue
        m = next((x for t, w, x in rows if t == transport and w == "storm-mosquitto"), None)

        def back(x):
            return "not all" if x["back_s"] is None else f"{x['back_s']:.2f} s"

        def done(x):
            return "not all" if x["done_s"] is None else f"{x['done_s']:.2f} s"
        scale_summary.add("bus", f"restart under {N:,} durable clients, {transport}: all back / every queued message in",
                          f"{back(r)} / {done(r)}", f"mosquitto {back(m)} / {done(m)}" if m else "")
        scale_summary.add("bus", f"that storm, {transport}: messages lost, accept errors logged",
                          f"{r['lost']}, {len(r['problems'])}",
                          f"mosquitto {m['lost']}, {len(m['problems'])}" if m else "",
                          "no message lost, no accept error",
                          r["lost"] == 0 and not r["problems"] and r["done_s"] is not None)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("interrupted"))
    sys.exit(main())
