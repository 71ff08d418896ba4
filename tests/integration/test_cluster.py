#!/usr/bin/python3
"""The cluster mode's locks (issue 18) on a real three-node NATS JetStream
cluster on loopback (tests/cluster/natscluster.py) with two cohortds:
exclusion and rising tokens across cohortds, shared locks across hosts, a
dead holder's lock handed to another host's waiter at once, a SIGKILLed
cohortd's lease taken over after its TTL, a cohortd or the bucket's server
stopped (SIGSTOP) for 10 s with the lock exclusive throughout (checked at a
fenced store), the whole cluster away: refusals, supervision going on, then
recovery; and the cluster's state in status and /metrics."""
import fcntl
import json
import os
import signal
import socket
import sys
import threading
import time
import unittest

from harness import COHORTCTL, FACTOR, PY, SRC, CohortTest, read_line, wait_until
from test_bus_http import http_exchange

sys.path.insert(0, os.path.join(SRC, "tests", "cluster"))
import natscluster  # noqa: E402

def cluster_built():
    """cohortd takes `cluster =` only when built with libnats."""
    import subprocess
    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".ini") as f:
        f.write("[cohort]\ncluster = nats://127.0.0.1:4222\n[service:a]\ncommand = /bin/true\n")
        f.flush()
        return subprocess.run([os.path.join(os.environ.get("COHORT_BUILDDIR", os.getcwd()), "cohortd"),
                               "--check", "-c", f.name], capture_output=True).returncode == 0


SKIP = None
if not os.path.exists(natscluster.NATS_SERVER):
    SKIP = "nats-server is not installed (apt-get install nats-server; contrib/bootstrap.sh --tests)"
elif not cluster_built():
    SKIP = "cohortd was built without the cluster mode (apt-get install libnats-dev, then configure again)"

IDLE = """
[service:idle]
command = /bin/sleep 1000
ready = delay:0
"""

# A service that takes lock `held` through its own control connection and
# says so in a file, then sleeps: when it dies, its cohortd releases.
HOLDER_PY = """
import json, os, socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(os.environ["COHORT_SOCKET"])
s.sendall(b'{"cmd":"lock.acquire","name":"held","ttl_ms":60000,"wait_ms":10000}\\n')
r = s.makefile().readline()
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(r)
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(1000)
"""
HOLDER = """
[service:holder]
command = {py} {script} {out}
ready = delay:0
restart = never
"""


class Client:
    """A control-socket connection: one lock session."""

    def __init__(self, d):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.settimeout(30 * FACTOR)
        self.s.connect(d.socket)
        self.buf = bytearray()

    def send(self, **obj):
        self.s.sendall((json.dumps(obj) + "\n").encode())

    def recv(self):
        return json.loads(read_line(self.s, self.buf))

    def call(self, **obj):
        self.send(**obj)
        return self.recv()

    def close(self):
        self.s.close()


def metrics(d):
    """{'name{labels}': value} of cohortd d's /metrics (on its bus socket)."""
    body = http_exchange(os.path.join(d.run_dir, "bus.sock"),
                         "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n", timeout=10)[2]
    out = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def cluster_status(d):
    r = d.ctl("status", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["cluster"]


class FencedStore:
    """A file store that several holders write to, as a real one shared by
    hosts would be used: every write carries its writer's fencing token, and
    a token below the highest one written is refused.  Every attempt is
    logged, accepted or not, to be checked after."""

    def __init__(self, path):
        self.path = path
        self.mu = threading.Lock()
        self.attempts = []      # (token, who, turn, accepted)
        open(path, "w").close()

    def write(self, token, who, turn):
        with self.mu, open(self.path, "r+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            lines = f.read().splitlines()
            top = int(lines[-1].split()[0]) if lines else 0
            ok = token >= top
            if ok:
                f.write(f"{token} {who} {turn}\n")
            self.attempts.append((token, who, turn, ok))
            return ok


class Turns:
    """Contenders on cohortds taking one lock in turns, each turn a few
    writes at the fenced store with its token.  `hold_at_pause`: the next
    turn that begins on that cohortd once set holds on, writing every 50 ms,
    until the store refuses it (a successor elsewhere wrote) or 20 s pass."""

    TTL = 1000

    def __init__(self, test, store, cohortds, per_cohortd=2):
        self.test, self.store = test, store
        self.done = threading.Event()
        self.hold_at_pause = None       # a cohortd's name
        self.holding = threading.Event()
        self.held_turn = None           # (who, turn) of the turn held at the pause
        self.rounds = {}
        self.unreachable = 0
        self.errors = []
        self.mu = threading.Lock()
        self.threads = []
        for d in cohortds:
            for i in range(per_cohortd):
                who = f"{d.name}{i}"
                self.rounds[who] = 0
                self.threads.append(threading.Thread(target=self.run, args=(d, who), daemon=True))

    def start(self):
        for t in self.threads:
            t.start()

    def stop(self):
        self.done.set()
        for t in self.threads:
            t.join(60 * FACTOR)
        return not any(t.is_alive() for t in self.threads)

    def run(self, d, who):
        c = Client(d)
        c.s.settimeout(60 * FACTOR)
        turn = 0
        try:
            while not self.done.is_set():
                r = c.call(cmd="lock.acquire", name="fenced", ttl_ms=self.TTL, wait_ms=int(30000 * FACTOR))
                if not r.get("ok"):
                    if "cluster unreachable" in r.get("error", ""):
                        with self.mu:
                            self.unreachable += 1
                        self.done.wait(0.1)
                        continue
                    self.errors.append((who, r))
                    return
                turn += 1
                held = False
                with self.mu:
                    if self.hold_at_pause == d.name and not self.holding.is_set():
                        self.holding.set()
                        self.held_turn = (who, turn)
                        held = True
                if held:
                    deadline = time.monotonic() + 20 * FACTOR
                    while self.store.write(r["token"], who, turn) and time.monotonic() < deadline:
                        time.sleep(0.05)
                else:
                    for _ in range(3):
                        if not self.store.write(r["token"], who, turn):
                            break
                        time.sleep(0.01)
                c.call(cmd="lock.release", name="fenced", token=r["token"])   # lost, if fenced
                with self.mu:
                    self.rounds[who] += 1
        except (OSError, ValueError) as e:
            self.errors.append((who, repr(e)))
        finally:
            c.close()

    def snapshot(self):
        with self.mu:
            return dict(self.rounds)

    def wait_rounds(self, who_prefix, since, n, timeout, what):
        """Each contender named who_prefix* has done n turns more than in since."""
        wait_until(self.test, lambda: all(v >= since[k] + n for k, v in self.snapshot().items()
                                          if k.startswith(who_prefix)),
                   timeout=timeout, what=what)

    def check(self, fenced):
        """Exclusive throughout: the accepted writes come in whole turns
        whose tokens strictly rise, and a write was refused only in the turn
        held across the pause (exactly when `fenced`)."""
        t = self.test
        t.assertEqual(self.errors, [])
        accepted = [(tok, who, turn) for tok, who, turn, ok in self.store.attempts if ok]
        refused = [(tok, who, turn) for tok, who, turn, ok in self.store.attempts if not ok]
        blocks = []
        for tok, who, turn in accepted:
            if not blocks or blocks[-1][1:] != (who, turn):
                blocks.append((tok, who, turn))
            else:
                t.assertEqual(blocks[-1][0], tok, "a turn wrote with two tokens")
        t.assertEqual(len(blocks), len({b[1:] for b in blocks}), f"turns interleaved: {blocks}")
        toks = [b[0] for b in blocks]
        t.assertTrue(all(x < y for x, y in zip(toks, toks[1:])), f"tokens do not rise: {blocks}")
        if fenced:
            t.assertTrue(refused, "the holder cut off by the pause never met its successor's token")
            t.assertEqual({r[1:] for r in refused}, {self.held_turn}, "a write refused outside the paused turn")
        else:
            t.assertEqual(refused, [])
        return blocks


@unittest.skipIf(SKIP, SKIP)
class Cluster(CohortTest):
    def setUp(self):
        super().setUp()
        self.nc = natscluster.NatsCluster(builddir=os.environ.get("COHORT_BUILDDIR", os.getcwd()))
        try:
            self.nc.start()
        except BaseException:
            self.nc.stop()
            raise
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.close()
        try:
            # Each cohortd the test did not kill stops cleanly, and no
            # sanitizer said anything about any of them.
            for d in self.nc.cohortds:
                killed = d.proc.proc.returncode == -signal.SIGKILL
                rc = d.stop()
                bad = [line for line in d.proc.lines
                       if "AddressSanitizer" in line or "runtime error:" in line or "LeakSanitizer" in line]
                self.assertEqual(bad, [], f"cohortd {d.name}")
                if not killed:
                    self.assertEqual(rc, 0, f"cohortd {d.name}:\n" + "\n".join(d.proc.lines[-20:]))
        finally:
            self.nc.stop()
            super().tearDown()

    def cohortd(self, name, text=IDLE):
        d = self.nc.start_cohortd(name, text)
        d.proc.wait_log(r"cluster: connected to nats://", 20, what=f"cohortd {name} connected")
        return d

    def client(self, d):
        c = Client(d)
        self.clients.append(c)
        return c

    def test_exclusion_and_rising_tokens_over_two_cohortds(self):
        a, b = self.cohortd("a"), self.cohortd("b")
        inside = [0]
        order = []
        errors = []
        mu = threading.Lock()

        def contender(d, rounds):
            c = Client(d)
            try:
                for _ in range(rounds):
                    r = c.call(cmd="lock.acquire", name="crit", ttl_ms=10000, wait_ms=int(60000 * FACTOR))
                    if not r.get("ok"):
                        errors.append(r)
                        return
                    with mu:
                        inside[0] += 1
                        if inside[0] != 1:
                            errors.append(f"{inside[0]} holders at once (token {r['token']})")
                        order.append(r["token"])
                    time.sleep(0.002)
                    with mu:
                        inside[0] -= 1
                    rel = c.call(cmd="lock.release", name="crit", token=r["token"])
                    if not rel.get("ok"):
                        errors.append(rel)
            finally:
                c.close()

        threads = [threading.Thread(target=contender, args=(a if i % 2 else b, 5)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120 * FACTOR)
        self.assertFalse(any(t.is_alive() for t in threads), "a contender is stuck")
        self.assertEqual(errors, [])
        self.assertEqual(len(order), 100)
        self.assertTrue(all(x < y for x, y in zip(order, order[1:])), f"tokens do not rise: {order}")

    def test_a_busy_lock_is_a_timeout_at_once_and_a_stale_token_releases_nothing(self):
        a, b = self.cohortd("a"), self.cohortd("b")
        ca, cb = self.client(a), self.client(b)
        held = ca.call(cmd="lock.acquire", name="s", ttl_ms=10000)
        self.assertTrue(held["ok"], held)
        # wait_ms 0 on the other cohortd: the cluster says it is held
        self.assertEqual(cb.call(cmd="lock.acquire", name="s", ttl_ms=1000)["error"], "timeout")
        self.assertEqual(cb.call(cmd="lock.acquire", name="s", mode="shared", ttl_ms=1000)["error"], "timeout")
        # ... and on the same one, its own table does
        self.assertEqual(self.client(a).call(cmd="lock.acquire", name="s", ttl_ms=1000)["error"], "timeout")
        # a stale token releases nothing; the holder's does
        self.assertFalse(cb.call(cmd="lock.release", name="s", token=held["token"])["ok"])
        self.assertTrue(ca.call(cmd="lock.release", name="s", token=held["token"])["ok"])
        g = cb.call(cmd="lock.acquire", name="s", ttl_ms=1000, wait_ms=int(10000 * FACTOR))
        self.assertTrue(g["ok"], g)
        self.assertGreater(g["token"], held["token"])

    def assertWaiting(self, c, seconds):
        """No answer comes to c's request for that long (it still waits)."""
        c.s.settimeout(seconds)
        try:
            with self.assertRaises(socket.timeout, msg="granted while it should wait"):
                c.recv()
        finally:
            c.s.settimeout(30 * FACTOR)

    def test_shared_holders_on_two_cohortds_and_an_exclusive_waiter_waits_for_both(self):
        a, b = self.cohortd("a"), self.cohortd("b")
        ttl = 1000
        a1, a2, b1 = self.client(a), self.client(a), self.client(b)
        r_a1 = a1.call(cmd="lock.acquire", name="sh", mode="shared", ttl_ms=ttl)
        self.assertTrue(r_a1["ok"], r_a1)
        r_b1 = b1.call(cmd="lock.acquire", name="sh", mode="shared", ttl_ms=ttl)      # joins, across hosts
        self.assertTrue(r_b1["ok"], r_b1)
        r_a2 = a2.call(cmd="lock.acquire", name="sh", mode="shared", ttl_ms=ttl)      # joins a's entry at once
        self.assertTrue(r_a2["ok"], r_a2)
        self.assertGreater(r_b1["token"], r_a1["token"])
        self.assertGreaterEqual(r_a2["token"], r_a1["token"])
        # An exclusive request that may not wait, on either host: held.
        self.assertEqual(self.client(a).call(cmd="lock.acquire", name="sh", ttl_ms=ttl)["error"], "timeout")
        self.assertEqual(self.client(b).call(cmd="lock.acquire", name="sh", ttl_ms=ttl)["error"], "timeout")
        # The holders renew their leases (and so their cohortds their
        # entries, the two writing the one key at once): an exclusive waiter
        # on b waits through three TTLs, then for a's holders, then for b's.
        stop = threading.Event()
        held = [(a1, r_a1), (a2, r_a2), (b1, r_b1)]
        mu = threading.Lock()
        errors = []

        def renew():
            while not stop.wait(ttl / 4000):
                with mu:
                    for c, r in held:
                        rr = c.call(cmd="lock.renew", name="sh", token=r["token"], ttl_ms=ttl)
                        if not rr.get("ok"):
                            errors.append(rr)
        t = threading.Thread(target=renew, daemon=True)
        t.start()
        try:
            x = self.client(b)
            x.send(cmd="lock.acquire", name="sh", ttl_ms=ttl, wait_ms=int(60000 * FACTOR))
            xa = self.client(a)     # and one on a, behind a's shared holders
            xa.send(cmd="lock.acquire", name="sh", ttl_ms=ttl, wait_ms=int(60000 * FACTOR))
            self.assertWaiting(x, 3 * ttl / 1000)
            with mu:
                for c, r in held[:2]:
                    self.assertTrue(c.call(cmd="lock.release", name="sh", token=r["token"])["ok"])
                del held[:2]
            self.assertWaiting(x, 0.5)
        finally:
            stop.set()
            t.join()
        self.assertEqual(errors, [])
        self.assertTrue(b1.call(cmd="lock.release", name="sh", token=r_b1["token"])["ok"])
        # One of the two exclusive waiters gets it, then the other.
        got = []
        for c in (x, xa):
            c.s.settimeout(0.05)
        deadline = time.monotonic() + 20 * FACTOR
        pending = [x, xa]
        while pending and time.monotonic() < deadline:
            for c in list(pending):
                try:
                    g = c.recv()
                except socket.timeout:
                    continue
                self.assertTrue(g["ok"], g)
                self.assertGreater(g["token"], r_b1["token"])
                got.append(g["token"])
                pending.remove(c)
                self.assertEqual(c.call(cmd="lock.release", name="sh", token=g["token"])["ok"], True)
        self.assertEqual(pending, [], "an exclusive waiter never got the lock")
        self.assertLess(got[0], got[1])

    def test_a_waiter_of_the_other_mode_at_the_head_goes_for_that_mode(self):
        """a's head waiter is shared, an exclusive one behind it; the shared
        one leaves: a goes for the key exclusive, and once it has it, b's
        shared requests do not join it."""
        a, b = self.cohortd("a"), self.cohortd("b")
        hb = self.client(b)
        r = hb.call(cmd="lock.acquire", name="m", ttl_ms=10000)
        self.assertTrue(r["ok"], r)
        s1 = Client(a)
        s1.send(cmd="lock.acquire", name="m", mode="shared", ttl_ms=10000, wait_ms=int(30000 * FACTOR))
        x = self.client(a)
        x.send(cmd="lock.acquire", name="m", ttl_ms=10000, wait_ms=int(30000 * FACTOR))
        self.assertWaiting(x, 0.3)
        s1.close()      # its waiter goes with its connection
        self.assertWaiting(x, 0.3)
        self.assertTrue(hb.call(cmd="lock.release", name="m", token=r["token"])["ok"])
        g = x.recv()
        self.assertTrue(g["ok"], g)
        self.assertGreater(g["token"], r["token"])
        self.assertEqual(self.client(b).call(cmd="lock.acquire", name="m", mode="shared", ttl_ms=1000)["error"],
                         "timeout")
        self.assertTrue(x.call(cmd="lock.release", name="m", token=g["token"])["ok"])
        g2 = self.client(b).call(cmd="lock.acquire", name="m", mode="shared", ttl_ms=1000,
                                 wait_ms=int(10000 * FACTOR))
        self.assertTrue(g2["ok"], g2)
        self.assertGreater(g2["token"], g["token"])

    def test_a_shared_holder_excludes_exclusive_and_is_taken_over_when_its_cohortd_dies(self):
        a, b = self.cohortd("a"), self.cohortd("b")
        ttl = 1000
        x = self.client(b)
        r = x.call(cmd="lock.acquire", name="rw", ttl_ms=5000)
        self.assertTrue(r["ok"], r)
        s = self.client(a)
        s.send(cmd="lock.acquire", name="rw", mode="shared", ttl_ms=ttl, wait_ms=int(30000 * FACTOR))
        self.assertWaiting(s, 0.3)
        self.assertTrue(x.call(cmd="lock.release", name="rw", token=r["token"])["ok"])
        g = s.recv()
        self.assertTrue(g["ok"], g)
        self.assertGreater(g["token"], r["token"])
        # a dies with its shared lease: b's exclusive waiter takes the key
        # over once a's entry has stood still for its TTL.
        w = self.client(b)
        w.send(cmd="lock.acquire", name="rw", ttl_ms=ttl, wait_ms=int(30000 * FACTOR))
        self.assertWaiting(w, 0.3)
        t0 = time.monotonic()
        a.stop(signal.SIGKILL)
        g2 = w.recv()
        took = time.monotonic() - t0
        self.assertTrue(g2["ok"], g2)
        self.assertGreater(g2["token"], g["token"])
        self.assertLess(took, (ttl + 400 * FACTOR) / 1000)

    def test_ping_pong_across_cohortds_never_waits_for_a_ttl(self):
        """Two clients on a and b take one lock in turns, each asking the
        moment the other released: every hand-over comes within 5 s, far
        under the 30 s TTL.  (A waiter whose request conflicted with a key
        already deleted, the watch telling so while the request was on its
        way, once ignored that delete and waited for the TTL: the bench's
        hand-over timed out on a loaded machine.)"""
        a, b = self.cohortd("a"), self.cohortd("b")
        ca, cb = self.client(a), self.client(b)
        tokens = []
        for i in range(150):
            c = (ca, cb)[i % 2]
            t0 = time.monotonic()
            g = c.call(cmd="lock.acquire", name="pp", ttl_ms=30000, wait_ms=int(20000 * FACTOR))
            took = time.monotonic() - t0
            self.assertTrue(g["ok"], (i, g))
            self.assertLess(took, 5 * FACTOR, f"hand-over {i} took {took:.1f} s")
            tokens.append(g["token"])
            self.assertTrue(c.call(cmd="lock.release", name="pp", token=g["token"])["ok"])
        self.assertTrue(all(x < y for x, y in zip(tokens, tokens[1:])))

    def test_the_hot_path_is_sent_and_answered_on_the_loop(self):
        """A create over a delete marker the cohortd knows (its own
        release's, or the watch's) and a release go on the loop's own NATS
        connection; only a key never seen is read first, by the worker.
        Status counts both; a waiter on b, told of a's release by the watch
        the loop reads, creates the key from the loop too."""
        a, b = self.cohortd("a"), self.cohortd("b")
        ca, cb = self.client(a), self.client(b)
        for i in range(20):
            g = ca.call(cmd="lock.acquire", name="hot", ttl_ms=30000, wait_ms=5000)
            self.assertTrue(g["ok"], (i, g))
            self.assertTrue(ca.call(cmd="lock.release", name="hot", token=g["token"])["ok"])
        req = cluster_status(a)["requests"]
        self.assertEqual(req["by_worker"], 1, req)      # the first create: the key unknown
        self.assertGreaterEqual(req["on_loop"], 39, req)
        g = ca.call(cmd="lock.acquire", name="hot", ttl_ms=30000, wait_ms=5000)
        self.assertTrue(g["ok"], g)
        before = cluster_status(b)["requests"]
        cb.send(cmd="lock.acquire", name="hot", ttl_ms=30000, wait_ms=int(20000 * FACTOR))
        # b's first create: the key unknown to b, read by its worker, found
        # held: b waits for the watch to tell of its delete.
        wait_until(self, lambda: cluster_status(b)["requests"]["by_worker"] > before["by_worker"],
                   what="b's worker to answer its first create")
        self.assertTrue(ca.call(cmd="lock.release", name="hot", token=g["token"])["ok"])
        got = cb.recv()
        self.assertTrue(got["ok"], got)
        self.assertGreater(got["token"], g["token"])
        after = cluster_status(b)["requests"]
        self.assertGreater(after["on_loop"], before["on_loop"], (before, after))

    def test_a_killed_holder_hands_over_to_another_host_at_once(self):
        out, script = self.path("holder.json"), self.path("holder.py")
        with open(script, "w") as f:
            f.write(HOLDER_PY)
        a = self.cohortd("a", IDLE + HOLDER.format(py=PY, script=script, out=out))
        b = self.cohortd("b")
        wait_until(self, lambda: os.path.exists(out), what="the holder's lock")
        with open(out) as f:
            held = json.loads(f.read())
        self.assertTrue(held["ok"], held)
        w = self.client(b)
        self.assertEqual(w.call(cmd="lock.acquire", name="held", ttl_ms=5000)["error"], "timeout")
        w.send(cmd="lock.acquire", name="held", ttl_ms=5000, wait_ms=30000)
        time.sleep(0.2)     # the request is queued on b (no answer comes before the release)
        st = json.loads(a.ctl("status", "--json").stdout)
        pid = next(s["pid"] for s in st["services"] if s["name"] == "holder")
        t0 = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        g = w.recv()
        took = time.monotonic() - t0
        self.assertTrue(g["ok"], g)
        self.assertGreater(g["token"], held["token"])
        print(f"\nhand-over after the holder's death, across cohortds: {took * 1000:.1f} ms", file=sys.stderr)
        self.assertLess(took, 0.1 * FACTOR)

    def test_a_request_the_stream_cannot_take_for_a_moment_is_tried_again(self):
        """The bucket's stream not there (as between two leaders, or just
        made): a lock request is tried again for 2 s before it is refused,
        and once the stream is back, requests are granted."""
        a = self.cohortd("a")
        c = self.client(a)
        self.assertTrue(c.call(cmd="lock.acquire", name="first", ttl_ms=5000)["ok"])   # the bucket is there
        url, stream = self.nc.nodes[0].url, f"KV_COHORT_LOCKS_{self.nc.name}"
        config = natscluster.nats_request(url, f"$JS.API.STREAM.INFO.{stream}")["config"]
        r = natscluster.nats_request(url, f"$JS.API.STREAM.DELETE.{stream}")
        self.assertTrue(r.get("success"), r)
        t0 = time.monotonic()
        r = c.call(cmd="lock.acquire", name="again", ttl_ms=5000)
        took = time.monotonic() - t0
        self.assertFalse(r["ok"], r)
        self.assertIn("cluster unreachable", r["error"])
        self.assertIn("stream not found", r["error"])
        self.assertGreater(took, 1.5, "refused without being tried again")

        # The stream made again (a busy server may take its time to answer
        # that: asked again until it says it has it).
        def made():
            try:
                r = natscluster.nats_request(url, f"$JS.API.STREAM.CREATE.{stream}", json.dumps(config).encode())
            except (TimeoutError, OSError):
                return False
            return "error" not in r or r["error"].get("err_code") == 10058     # already made
        wait_until(self, made, timeout=60, what="the bucket's stream made again")
        wait_until(self, lambda: c.call(cmd="lock.acquire", name="again", ttl_ms=5000)["ok"], timeout=30,
                   what="a lock granted once the stream is back")

    def test_a_sigkilled_cohortd_is_taken_over_after_its_ttl(self):
        a, b = self.cohortd("a"), self.cohortd("b")
        ttl = 1000
        h = self.client(a)
        r = h.call(cmd="lock.acquire", name="lease", ttl_ms=ttl)
        self.assertTrue(r["ok"], r)
        stop = threading.Event()

        def renew():        # the holder keeps its lease; a renews its key
            while not stop.wait(ttl / 4000):
                try:
                    h.call(cmd="lock.renew", name="lease", token=r["token"], ttl_ms=ttl)
                except (OSError, EOFError, ValueError):
                    return
        t = threading.Thread(target=renew, daemon=True)
        t.start()
        w = self.client(b)
        w.send(cmd="lock.acquire", name="lease", ttl_ms=ttl, wait_ms=30000)
        # Three TTLs with the lease held: b must not take it meanwhile.
        w.s.settimeout(3 * ttl / 1000)
        with self.assertRaises(socket.timeout):
            w.recv()
        w.s.settimeout(30 * FACTOR)
        t0 = time.monotonic()
        a.stop(signal.SIGKILL)
        stop.set()
        g = w.recv()
        took = time.monotonic() - t0
        self.assertTrue(g["ok"], g)
        self.assertGreater(g["token"], r["token"])
        print(f"\ntake-over after cohortd's SIGKILL, TTL {ttl} ms: {took * 1000:.1f} ms", file=sys.stderr)
        # Not before the last renewal (TTL/3 at most before the kill) is a
        # TTL old.  Within the TTL plus the time to see the last renewal and
        # to take over: 100 ms is the goal (670 ms is measured for this 1 s
        # TTL on an idle machine), but on a loaded one the watch's delivery
        # and the take-over's round trip wait for a CPU (1238 ms was seen
        # beside a compile on 2 shared cores), hence 400 ms of slack.
        self.assertGreater(took, (ttl * 2 / 3 - 50) / 1000)
        self.assertLess(took, (ttl + 400 * FACTOR) / 1000)

    def test_the_whole_cluster_away_refuses_then_recovers(self):
        a = self.cohortd("a")
        c = self.client(a)
        r = c.call(cmd="lock.acquire", name="before", ttl_ms=60000)
        self.assertTrue(r["ok"], r)
        mark = len(a.proc.lines)
        for i in range(3):
            self.nc.kill_node(i, signal.SIGKILL)
        a.proc.wait_log(r"cluster: unreachable", 20, start=mark)
        # Whether cohortd has noticed the last server go (a refusal at
        # once) or not yet (the request fails at the cluster), the answer
        # comes within the request timeout of 2 s, and says why.
        r2 = c.call(cmd="lock.acquire", name="during", ttl_ms=1000, wait_ms=int(10000 * FACTOR))
        self.assertFalse(r2["ok"])
        self.assertIn("cluster unreachable", r2["error"])
        # Supervision goes on without it.
        t0 = time.monotonic()
        self.assertEqual(a.ctl("restart", "idle").returncode, 0)
        self.assertLess(time.monotonic() - t0, 5 * FACTOR)
        mark = len(a.proc.lines)
        for i in range(3):
            self.nc.restart_node(i)
        a.proc.wait_log(r"cluster: connected to nats://", 30, start=mark)
        # The bucket's stream needs a leader again after the restart: the
        # first requests may still be refused until it has one.
        deadline = time.monotonic() + 30 * FACTOR
        while True:
            r3 = c.call(cmd="lock.acquire", name="after", ttl_ms=1000)
            if r3.get("ok") or time.monotonic() > deadline:
                break
            self.assertIn("cluster unreachable", r3["error"])
            time.sleep(0.2)
        self.assertTrue(r3["ok"], r3)
        self.assertGreater(r3["token"], r["token"])
        # The loop's own connection is back too: a release and the next
        # create over its marker go on it again (it reconnects by itself,
        # maybe a moment after the worker's).
        self.assertTrue(c.call(cmd="lock.release", name="after", token=r3["token"])["ok"])
        before = cluster_status(a)["requests"]["on_loop"]

        def on_loop_again():
            g = c.call(cmd="lock.acquire", name="after", ttl_ms=1000)
            self.assertTrue(g["ok"], g)
            self.assertTrue(c.call(cmd="lock.release", name="after", token=g["token"])["ok"])
            return cluster_status(a)["requests"]["on_loop"] > before
        wait_until(self, on_loop_again, what="a request on the loop's connection after the cluster came back")

    def test_a_cohortd_stopped_for_10s_keeps_the_lock_exclusive(self):
        """Item 5's SIGSTOP: contenders on a and b take one lock in turns;
        a is stopped for 10 s while one of its contenders holds it, that
        contender writing on at the fenced store (its own process is not
        stopped, only its cohortd).  b takes the lock over after the TTL,
        the stale holder's next write is refused, b's contenders go on
        meanwhile, and once a is continued everyone takes turns again."""
        a, b = self.cohortd("a"), self.cohortd("b")
        turns = Turns(self, FencedStore(self.path("store")), [a, b])
        self.addCleanup(turns.stop)
        turns.start()
        turns.wait_rounds("", {k: 0 for k in turns.rounds}, 2, 30, "two turns of every contender")
        turns.hold_at_pause = "a"
        wait_until(self, turns.holding.is_set, timeout=30, what="a turn held on a")
        pid = a.proc.proc.pid
        os.kill(pid, signal.SIGSTOP)
        self.addCleanup(lambda: a.proc.alive() and os.kill(pid, signal.SIGCONT))
        t0 = time.monotonic()
        before = turns.snapshot()
        turns.wait_rounds("b", before, 3, 9, "three turns of b's contenders while a is stopped")
        time.sleep(max(0.0, 10 - (time.monotonic() - t0)))   # the pause itself: 10 s
        os.kill(pid, signal.SIGCONT)
        after = turns.snapshot()
        turns.wait_rounds("", after, 2, 30, "two turns of every contender after a was continued")
        self.assertTrue(turns.stop(), "a contender is stuck")
        blocks = turns.check(fenced=True)
        print(f"\n{len(blocks)} turns, writes refused to the stopped cohortd's holder: "
              f"{sum(1 for x in turns.store.attempts if not x[3])}", file=sys.stderr)

    def test_the_bucket_server_stopped_for_10s(self):
        """The nats-server that holds the locks' bucket (one replica) is
        stopped for 10 s while contenders on a and b take turns: their
        requests are refused as unreachable (never granted twice), and they
        take turns again once it is continued."""
        a, b = self.cohortd("a"), self.cohortd("b")
        turns = Turns(self, FencedStore(self.path("store")), [a, b])
        self.addCleanup(turns.stop)
        turns.start()
        turns.wait_rounds("", {k: 0 for k in turns.rounds}, 2, 30, "two turns of every contender")
        stream = "KV_COHORT_LOCKS_" + self.nc.name
        node = next(n for n in self.nc.nodes
                    if any(stream in dirs for _, dirs, _ in os.walk(os.path.join(n.dir, "js"))))
        pid = node.proc.proc.pid
        os.kill(pid, signal.SIGSTOP)
        self.addCleanup(lambda: node.proc.alive() and os.kill(pid, signal.SIGCONT))
        t0 = time.monotonic()
        wait_until(self, lambda: turns.unreachable > 0, timeout=9, what="a refusal while the server is stopped")
        time.sleep(max(0.0, 10 - (time.monotonic() - t0)))   # the pause itself: 10 s
        os.kill(pid, signal.SIGCONT)
        after = turns.snapshot()
        turns.wait_rounds("", after, 2, 45, "two turns of every contender after the server was continued")
        self.assertTrue(turns.stop(), "a contender is stuck")
        blocks = turns.check(fenced=False)
        print(f"\n{len(blocks)} turns, {turns.unreachable} requests refused as unreachable", file=sys.stderr)

    def test_status_and_metrics_show_the_cluster_state(self):
        """Item 3's visibility: connected (server, round trip), then every
        nats-server stopped: unreachable, requests refused; then back:
        connected again, one reconnection counted.  The same of the bus's
        own connection (cluster.bus)."""
        a = self.cohortd("a")
        a.proc.wait_log(r"cluster: bus connected to nats://", 20)
        urls = [n.url for n in self.nc.nodes]
        # The round trip is measured every 2 s off the loop: the first one
        # comes within that of the connection.
        st = wait_until(self, lambda: (lambda s: s if s["rtt_ms"] is not None else None)(cluster_status(a)),
                        timeout=10, what="a round trip in status")
        self.assertEqual(st["state"], "connected")
        self.assertIn(st["server"], urls)
        self.assertGreater(st["rtt_ms"], 0)
        self.assertLess(st["rtt_ms"], 1000)
        self.assertEqual(st["reconnects"], 0)
        self.assertEqual(st["servers"], self.nc.urls())
        self.assertNotIn("error", st)
        bus = st["bus"]
        self.assertEqual(bus["state"], "connected")
        self.assertIn(bus["server"], urls)
        self.assertEqual((bus["reconnects"], bus["refused"], bus["dropped_qos0"]), (0, 0, 0))
        self.assertNotIn("rtt_ms", bus)
        table = a.ctl("status").stdout
        self.assertRegex(table, r"\ncluster: connected to nats://127\.0\.0\.1:\d+ for \S+, round trip "
                                r"[0-9.]+ ms, 0 reconnections\n"
                                r"cluster bus: connected to nats://127\.0\.0\.1:\d+ for \S+, 0 reconnections\n$")
        m = metrics(a)
        self.assertEqual(m['cohort_cluster_state{state="connected"}'], 1)
        self.assertEqual(m['cohort_cluster_state{state="unreachable"}'], 0)
        self.assertEqual(m[f'cohort_cluster_server{{server="{st["server"]}"}}'], 1)
        self.assertGreater(m["cohort_cluster_rtt_seconds"], 0)
        self.assertEqual(m["cohort_cluster_reconnects_total"], 0)
        self.assertEqual(m['cohort_cluster_bus_state{state="connected"}'], 1)
        self.assertEqual(m['cohort_cluster_bus_state{state="unreachable"}'], 0)
        self.assertEqual(m["cohort_cluster_bus_reconnects_total"], 0)
        self.assertEqual(m["cohort_cluster_bus_refused_total"], 0)

        mark = len(a.proc.lines)
        for i in range(3):
            self.nc.kill_node(i, signal.SIGTERM)
        a.proc.wait_log(r"cluster: unreachable", 20, start=mark)
        a.proc.wait_log(r"cluster: bus unreachable", 20, start=mark)
        # The servers go one after the other: cohortd may have moved to a
        # second one meanwhile (a reconnection too), but not after the last.
        wait_until(self, lambda: cluster_status(a)["state"] == "unreachable", timeout=10,
                   what="state unreachable")
        st = cluster_status(a)
        before = st["reconnects"]
        self.assertIsNone(st["server"])
        self.assertIsNone(st["rtt_ms"])
        self.assertRegex(st["error"], r"^cluster unreachable: ")
        r = self.client(a).call(cmd="lock.acquire", name="x", ttl_ms=1000, wait_ms=int(5000 * FACTOR))
        self.assertFalse(r["ok"])
        self.assertRegex(r["error"], r"^cluster unreachable: ")
        wait_until(self, lambda: cluster_status(a)["bus"]["state"] == "unreachable", timeout=10,
                   what="the bus's state unreachable")
        bus = cluster_status(a)["bus"]
        bus_before = bus["reconnects"]
        self.assertIsNone(bus["server"])
        self.assertIn("disconnected", bus["error"])
        self.assertRegex(a.ctl("status").stdout, r"\ncluster: unreachable for \S+ \(lock requests refused\): "
                                                 r"cluster unreachable: .*, \d+ reconnections\n"
                                                 r"cluster bus: unreachable for \S+ \(qos-1 and retained "
                                                 r"publishes refused\): .*, \d+ reconnections\n$")
        m = metrics(a)
        self.assertEqual(m['cohort_cluster_state{state="unreachable"}'], 1)
        self.assertEqual(m['cohort_cluster_state{state="connected"}'], 0)
        self.assertNotIn("cohort_cluster_rtt_seconds", m)
        self.assertGreaterEqual(m["cohort_cluster_refused_total"], 1)
        self.assertEqual(m['cohort_cluster_bus_state{state="unreachable"}'], 1)
        self.assertEqual(m['cohort_cluster_bus_state{state="connected"}'], 0)

        mark = len(a.proc.lines)
        for i in range(3):
            self.nc.restart_node(i)
        a.proc.wait_log(r"cluster: connected to nats://", 30, start=mark)
        a.proc.wait_log(r"cluster: bus connected to nats://", 30, start=mark)
        bus = cluster_status(a)["bus"]
        self.assertEqual(bus["state"], "connected")
        self.assertIn(bus["server"], urls)
        self.assertEqual(bus["reconnects"], bus_before + 1)
        self.assertEqual(metrics(a)["cohort_cluster_bus_reconnects_total"], bus_before + 1)
        st = cluster_status(a)
        self.assertEqual(st["state"], "connected")
        self.assertIn(st["server"], urls)
        self.assertEqual(st["reconnects"], before + 1)
        wait_until(self, lambda: cluster_status(a)["rtt_ms"] is not None, timeout=10,
                   what="a round trip after the reconnection")
        self.assertEqual(metrics(a)["cohort_cluster_reconnects_total"], before + 1)
        # The bucket's stream needs a leader again: the first requests may
        # be refused until it has one, then one is granted.
        deadline = time.monotonic() + 30 * FACTOR
        while True:
            r = self.client(a).call(cmd="lock.acquire", name="x", ttl_ms=1000)
            if r.get("ok") or time.monotonic() > deadline:
                break
            self.assertIn("cluster unreachable", r["error"])
            time.sleep(0.2)
        self.assertTrue(r["ok"], r)

    def test_one_host_shows_no_cluster(self):
        d = self.nc.start_cohortd("solo", IDLE, cluster_line="")
        self.assertNotIn("cluster", json.loads(d.ctl("status", "--json").stdout))
        self.assertNotIn("cluster:", d.ctl("status").stdout)
        self.assertFalse([k for k in metrics(d) if k.startswith("cohort_cluster")])


@unittest.skipIf(SKIP, SKIP)
class ClusterNeverReached(CohortTest):
    def test_cohortd_stops_while_the_cluster_was_never_reached(self):
        """No server at the cluster's address from the start: cohortd runs
        its stack, and TERM ends it as always (its connection thread once
        retried inside natsConnection_Connect forever, and the exit waited
        on that thread)."""
        d = self.cohortd("[cohort]\ncluster = nats://127.0.0.1:1\n" + IDLE)
        d.wait_log(r"^stack is up")
        t0 = time.monotonic()
        d.stop(timeout=15)
        self.assertLess(time.monotonic() - t0, 15 * FACTOR)


    def test_a_request_that_may_wait_waits_for_the_first_connection(self):
        """Services start with the stack, which does not wait for the
        cluster: before cohortd's first connection, a request that may wait
        is queued and granted once the cluster is up; one that may not is
        refused as unreachable."""
        nc = natscluster.NatsCluster(builddir=os.environ.get("COHORT_BUILDDIR", os.getcwd()))
        self.addCleanup(nc.stop)
        d = nc.start_cohortd("early", IDLE)
        c = Client(d)
        self.addCleanup(c.close)
        r = c.call(cmd="lock.acquire", name="now", ttl_ms=5000)
        self.assertRegex(r.get("error", ""), r"^cluster unreachable: ", r)
        c.send(cmd="lock.acquire", name="early", ttl_ms=5000, wait_ms=int(60000 * FACTOR))
        nc.start()
        g = c.recv()
        self.assertTrue(g["ok"], g)
        self.assertGreater(g["token"], 0)


if __name__ == "__main__":
    unittest.main()
