#!/usr/bin/python3
"""Memory of a qos-1 backlog: cohortd's bus beside mosquitto.

N subscribers (qos 1) subscribe, then read nothing; one publisher sends M
qos-1 messages of 100 bytes, each acknowledged by the server (cohortd: its
ok, once stored; mosquitto: its PUBACK).  Every subscriber is then behind
by M messages: N x M queued deliveries (less what fits in its socket).
Printed per server: RSS before the publish, at the peak (VmHWM) and once
every client has closed (when it stayed the same for BENCH_SETTLE seconds,
3: cohortd gives memory back a second after a backlog drains), and the
bytes per queued delivery, (peak - before) / (N x M), the message's own
share included.

Both servers get the same settings: at most 1000 messages in flight per
subscriber, no bound on the queue that would drop (cohortd: bus_queue_max
1G, bus_memory_max 0; mosquitto: max_queued_messages 0, max_queued_bytes
0), clean sessions (non-durable: a session ends with its connection), no
persistence for mosquitto (cohortd journals qos 1: bus_fsync never).
Clients speak the protocols on raw unix sockets, here, so nothing in a
client library reads for a subscriber that should not.

Then a spilled backlog (cohortd alone): S durable sessions (qos 1) are
away while P messages of 100 bytes are published for them, once with
bus_memory_max 4M (past 2M their queues spill to the journal) and once with
no bound (all in memory).  Printed: RSS before, once published, the peak,
the journal's size, and the time from the sessions' hello to the last of
their S x P messages read and acked (all sessions at once).

Environment: COHORT_BUILDDIR (the build tree), BENCH_COHORTD (another
cohortd binary, for a before/after), BENCH_SUBS (200), BENCH_MSGS (5000),
BENCH_FULL=1 (200 x 50,000, as issue 20 measured), BENCH_SETTLE (3),
BENCH_SPILL_SESSIONS (10), BENCH_SPILL_MSGS (30000; 0: no spill figure).
"""
import base64
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

BUILD = os.environ.get("COHORT_BUILDDIR", ".")
COHORTD = os.path.abspath(os.environ.get("BENCH_COHORTD") or os.path.join(BUILD, "cohortd"))
FULL = os.environ.get("BENCH_FULL") == "1"
SUBS = int(os.environ.get("BENCH_SUBS", "200"))
MSGS = int(os.environ.get("BENCH_MSGS", "50000" if FULL else "5000"))
SETTLE = float(os.environ.get("BENCH_SETTLE", "3"))
SPILL_SESSIONS = int(os.environ.get("BENCH_SPILL_SESSIONS", "10"))
SPILL_MSGS = int(os.environ.get("BENCH_SPILL_MSGS", "30000"))
WINDOW = 1000
PAYLOAD = json.dumps("x" * 98)   # 100 bytes of JSON text
procs = []


def rss_kb(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def wait_for(check, what, proc, timeout=30):
    end = time.monotonic() + timeout
    while not check():
        if proc.poll() is not None:
            raise RuntimeError(f"{what}: the server exited ({proc.returncode})")
        if time.monotonic() > end:
            raise RuntimeError(f"{what}: not within {timeout} s")
        time.sleep(0.02)


def unix_connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s


def recv_exact(s, n):
    b = b""
    while len(b) < n:
        chunk = s.recv(n - len(b))
        if not chunk:
            raise RuntimeError("the server closed the connection")
        b += chunk
    return b


# --- cohortd: WebSocket (RFC 6455), subprotocol cohort.v1 ---------------------------

def ws_frame(text):
    data = text.encode()
    mask = os.urandom(4)
    n = len(data)
    head = bytes([0x81])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))


class WsReader:
    """Text frames from a socket, whole (the server does not fragment ours)."""

    def __init__(self, s):
        self.s, self.buf, self.rest = s, b"", []

    def frames(self):
        out = []
        while True:
            if len(self.buf) < 2:
                return out
            n, off = self.buf[1] & 0x7F, 2
            if n == 126:
                if len(self.buf) < 4:
                    return out
                n, off = struct.unpack(">H", self.buf[2:4])[0], 4
            elif n == 127:
                if len(self.buf) < 10:
                    return out
                n, off = struct.unpack(">Q", self.buf[2:10])[0], 10
            if len(self.buf) < off + n:
                return out
            if self.buf[0] & 0x0F == 1:
                out.append(json.loads(self.buf[off:off + n]))
            self.buf = self.buf[off + n:]

    def read(self):
        chunk = self.s.recv(1 << 16)
        if not chunk:
            raise RuntimeError("the server closed the connection")
        self.buf += chunk
        return self.frames()

    def wait(self, pred):
        """The first frame pred takes; those after it are kept for take()."""
        while True:
            got, self.rest = self.rest or self.read(), []
            for k, f in enumerate(got):
                if pred(f):
                    self.rest = got[k + 1:]
                    return f

    def take(self):
        """The frames wait() kept, else those read now."""
        got, self.rest = self.rest or self.read(), []
        return got


def ws_open(path, session=None):
    s = unix_connect(path)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
               "Sec-WebSocket-Protocol: cohort.v1\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += recv_exact(s, 1)
    if b" 101 " not in head.split(b"\r\n")[0]:
        raise RuntimeError(f"no upgrade: {head!r}")
    r = WsReader(s)
    s.sendall(ws_frame(json.dumps({"op": "hello", "session": session} if session else {"op": "hello"})))
    r.wait(lambda f: f.get("op") == "welcome")
    return s, r


class Cohortd:
    label = "cohortd"

    def __init__(self, work, memory_max="0"):
        self.work = work
        self.memory_max = memory_max

    def launch(self):
        w = self.work
        ini = os.path.join(w, "cohort.ini")
        with open(ini, "w") as f:
            # An older cohortd has no bound to lift.
            bound = f"bus_memory_max = {self.memory_max}\n" if self.knows_memory_max() else ""
            f.write(f"[cohort]\nrun_dir = {w}/run\nstate_dir = {w}/state\nlog_dir = {w}/log\n{bound}"
                    "bus_fsync = never\nbus_queue_max = 1G\n"
                    "[service:idle]\ncommand = /bin/sleep 100000\nready = delay:0\nstdout = null\n")
        self.log = open(os.path.join(w, "cohortd.log"), "w")
        self.proc = subprocess.Popen([COHORTD, "-q", "-c", ini], stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        procs.append(self.proc)
        wait_for(lambda: os.path.exists(f"{w}/run/bus.sock"), "cohortd's bus.sock", self.proc)

    def knows_memory_max(self):
        probe = os.path.join(self.work, "probe.ini")
        with open(probe, "w") as f:
            f.write(f"[cohort]\nrun_dir = {self.work}/probe\nbus_memory_max = 0\n"
                    "[service:idle]\ncommand = /bin/true\n")
        return subprocess.run([COHORTD, "--check", "-c", probe], capture_output=True).returncode == 0

    def subscriber(self, i):
        s, r = ws_open(f"{self.work}/run/bus.sock")
        s.sendall(ws_frame(json.dumps({"op": "sub", "id": 1, "topic": "bench.backlog", "qos": 1})))
        r.wait(lambda f: f.get("op") == "ok" and f.get("id") == 1)
        return s

    def away(self, name):
        """A durable session subscribed to bench.backlog, then away."""
        s, r = ws_open(f"{self.work}/run/bus.sock", name)
        s.sendall(ws_frame(json.dumps({"op": "sub", "id": 1, "topic": "bench.backlog", "qos": 1})))
        r.wait(lambda f: f.get("op") == "ok" and f.get("id") == 1)
        s.close()

    def drain(self, names, count):
        """The sessions back at once, each reading and acking count messages."""
        conns = {}
        for n in names:
            s, r = ws_open(f"{self.work}/run/bus.sock", n)
            conns[s] = [r, 0]
        while conns:
            ready, _, _ = select.select(list(conns) if not any(v[0].rest for v in conns.values())
                                        else [], [], [], 30)
            ready = ready or [s for s, v in conns.items() if v[0].rest]
            if not ready:
                raise RuntimeError("a session got nothing for 30 s")
            for s in ready:
                r, got = conns[s]
                acks = b""
                for f in r.take():
                    if f.get("op") == "msg":
                        got += 1
                        acks += ws_frame('{"op":"ack","seq":%d}' % f["seq"])
                s.sendall(acks)
                conns[s][1] = got
                if got >= count:
                    s.close()
                    del conns[s]

    def journal_bytes(self):
        st = os.path.join(self.work, "state", "bus")
        return sum(os.path.getsize(os.path.join(st, f)) for f in os.listdir(st))

    def publish(self, count):
        s, r = ws_open(f"{self.work}/run/bus.sock")
        sent = acked = 0
        while acked < count:
            while sent < count and sent - acked < WINDOW:
                sent += 1
                s.sendall(ws_frame(f'{{"op":"pub","id":{sent},"topic":"bench.backlog","qos":1,'
                                   f'"data":{PAYLOAD}}}'))
            for f in r.read():
                if f.get("op") == "error":
                    raise RuntimeError(f"cohortd refused a publish: {f}")
                if f.get("op") == "ok":
                    acked += 1
        s.close()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)


# --- mosquitto: MQTT 3.1.1 ------------------------------------------------------------------

def mqtt_len(n):
    out = b""
    while True:
        b, n = n % 128, n // 128
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def mqtt_str(t):
    return struct.pack(">H", len(t)) + t.encode()


def mqtt_packet(kind, body):
    return bytes([kind]) + mqtt_len(len(body)) + body


def mqtt_read(s, buf):
    """One packet from buf + the socket: (type byte, body, rest of buf)."""
    while True:
        if len(buf) >= 2:
            n, mult, i = 0, 1, 1
            while i < len(buf):
                n += (buf[i] & 0x7F) * mult
                mult *= 128
                i += 1
                if not buf[i - 1] & 0x80:
                    break
            else:
                i = None
            if i is not None and len(buf) >= i + n:
                return buf[0], buf[i:i + n], buf[i + n:]
        chunk = s.recv(1 << 16)
        if not chunk:
            raise RuntimeError("mosquitto closed the connection")
        buf += chunk


def mqtt_open(path, client_id):
    s = unix_connect(path)
    # clean session, no keep-alive (a subscriber that reads nothing cannot answer a ping)
    s.sendall(mqtt_packet(0x10, mqtt_str("MQTT") + bytes([4, 0x02]) + struct.pack(">H", 0) +
                          mqtt_str(client_id)))
    kind, body, buf = mqtt_read(s, b"")
    if kind != 0x20 or body[1] != 0:
        raise RuntimeError(f"mosquitto refused the connection: {body!r}")
    return s, buf


class Mosquitto:
    label = "mosquitto"

    def __init__(self, work):
        self.work = work

    def launch(self):
        w = self.work
        conf = os.path.join(w, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write(f"listener 0 {w}/mosquitto.sock\nallow_anonymous true\npersistence false\n"
                    "log_dest stderr\nmax_inflight_messages 1000\n"
                    "max_queued_messages 0\nmax_queued_bytes 0\n")
            if os.geteuid() == 0:
                f.write("user root\n")
        self.log = open(os.path.join(w, "mosquitto.log"), "w")
        self.proc = subprocess.Popen(["mosquitto", "-c", conf], stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        procs.append(self.proc)
        wait_for(lambda: os.path.exists(f"{w}/mosquitto.sock"), "mosquitto's socket", self.proc)

    def subscriber(self, i):
        s, buf = mqtt_open(f"{self.work}/mosquitto.sock", f"sub{i}")
        s.sendall(mqtt_packet(0x82, struct.pack(">H", 1) + mqtt_str("bench/backlog") + bytes([1])))
        kind, body, buf = mqtt_read(s, buf)
        if kind != 0x90 or body[2] != 1:
            raise RuntimeError(f"mosquitto refused the subscription: {body!r}")
        return s

    def publish(self, count):
        s, buf = mqtt_open(f"{self.work}/mosquitto.sock", "pub")
        payload = PAYLOAD.encode()
        sent = acked = 0
        while acked < count:
            while sent < count and sent - acked < WINDOW:
                sent += 1
                s.sendall(mqtt_packet(0x32, mqtt_str("bench/backlog") + struct.pack(">H", sent % 65535 + 1) +
                                      payload))
            kind, body, buf = mqtt_read(s, buf)
            if kind >> 4 == 4:
                acked += 1
        s.close()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)


def measure(server):
    pid = server.proc.pid
    subs = [server.subscriber(i) for i in range(SUBS)]
    time.sleep(0.5)
    before = rss_kb(pid)
    t0 = time.monotonic()
    server.publish(MSGS)
    took = time.monotonic() - t0
    time.sleep(0.5)
    peak = max(rss_kb(pid, "VmHWM"), rss_kb(pid))
    for s in subs:
        s.close()
    # Settled: the same RSS for SETTLE seconds (at most 30 s)
    after, since, end = rss_kb(pid), time.monotonic(), time.monotonic() + 30
    while time.monotonic() - since < SETTLE and time.monotonic() < end:
        time.sleep(0.1)
        now = rss_kb(pid)
        if now != after:
            after, since = now, time.monotonic()
    return {"before": before, "peak": peak, "after": after, "took": took,
            "per_delivery": (peak - before) * 1024 / (SUBS * MSGS)}


def measure_spill(memory_max):
    work = tempfile.mkdtemp(prefix="cohort-spill-")
    server = Cohortd(work, memory_max)
    try:
        server.launch()
        pid = server.proc.pid
        names = [f"s{i}" for i in range(SPILL_SESSIONS)]
        for n in names:
            server.away(n)
        before = rss_kb(pid)
        server.publish(SPILL_MSGS)
        time.sleep(0.5)
        held = rss_kb(pid)
        journal = server.journal_bytes()
        t0 = time.monotonic()
        server.drain(names, SPILL_MSGS)
        took = time.monotonic() - t0
        return {"before": before, "held": held, "peak": rss_kb(pid, "VmHWM"), "journal": journal,
                "drain": took}
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


def spill_figure():
    print(f"spilled backlog: {SPILL_SESSIONS} durable sessions away, {SPILL_MSGS} messages of 100 bytes "
          f"({SPILL_SESSIONS * SPILL_MSGS:,} queued deliveries); RSS and journal in MiB")
    print(f"  {'queues':24} {'before':>8} {'held':>8} {'peak':>8} {'journal':>8} {'drain s':>8}")
    for label, mem in (("spilled (memory_max 4M)", "4M"), ("in memory (no bound)", "0")):
        r = measure_spill(mem)
        print(f"  {label:24} {r['before'] / 1024:8.1f} {r['held'] / 1024:8.1f} {r['peak'] / 1024:8.1f} "
              f"{r['journal'] / 1048576:8.1f} {r['drain']:8.1f}", flush=True)


def main():
    servers = [Cohortd]
    if shutil.which("mosquitto"):
        servers.append(Mosquitto)
    else:
        print("  mosquitto is not installed: cohortd alone")
    print(f"bus backlog memory: {SUBS} qos-1 subscribers reading nothing, {MSGS} messages of 100 bytes "
          f"({SUBS * MSGS:,} queued deliveries); RSS in MiB")
    print(f"  {'server':10} {'before':>8} {'peak':>8} {'closed':>8} {'B/delivery':>11} {'publish s':>10}")
    results = {}
    for cls in servers:
        work = tempfile.mkdtemp(prefix="cohort-backlog-")
        server = cls(work)
        try:
            server.launch()
            r = results[cls.label] = measure(server)
            print(f"  {cls.label:10} {r['before'] / 1024:8.1f} {r['peak'] / 1024:8.1f} "
                  f"{r['after'] / 1024:8.1f} {r['per_delivery']:11.1f} {r['took']:10.1f}", flush=True)
        finally:
            server.stop()
            shutil.rmtree(work, ignore_errors=True)
    if len(results) == 2:
        c, m = results["cohortd"], results["mosquitto"]
        print(f"  cohortd / mosquitto: peak {c['peak'] / m['peak']:.2f}, after close "
              f"{c['after'] / m['after']:.2f}, per delivery {c['per_delivery'] / m['per_delivery']:.2f}")
    if SPILL_MSGS:
        spill_figure()


def kill_all():
    for p in procs:
        if p.poll() is None:
            p.kill()


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
