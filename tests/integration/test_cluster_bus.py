#!/usr/bin/python3
"""The bus in cluster mode (issue 18 items 2, 3 and 5's "messages") on a
real three-node NATS JetStream cluster on loopback
(tests/cluster/natscluster.py) with three cohortds: qos 0 and 1 published
on one cohortd reach subscribers on the others; a durable session leaves
one cohortd and comes back on another to every qos-1 message published
meanwhile; the whole cluster away: qos 1 refused with the reason, qos 0
dropped and counted, supervision going on, then recovery."""
import asyncio
import json
import os
import signal
import socket
import sys
import time
import unittest

import subprocess

import websockets

from harness import FACTOR, SRC, CohortTest, read_line

sys.path.insert(0, os.path.join(SRC, "contrib", "python"))
import cohort_client  # noqa: E402

sys.path.insert(0, os.path.join(SRC, "tests", "cluster"))
import natscluster  # noqa: E402
from test_cluster import IDLE, SKIP  # noqa: E402


def run(coro, timeout=90):
    return asyncio.run(asyncio.wait_for(coro, timeout * FACTOR))


def bus_path(d):
    return os.path.join(d.run_dir, "bus.sock")


async def connect(d, session=None, clean=None):
    """An admin's connection (the test's uid owns cohortd) to d's bus; its
    welcome, or the error that came instead."""
    ws = await websockets.unix_connect(bus_path(d), uri="ws://localhost/", subprotocols=["cohort.v1"],
                                       max_size=None, ping_interval=None)
    hello = {"op": "hello"}
    if session:
        hello["session"] = session
    if clean is not None:
        hello["clean"] = clean
    await ws.send(json.dumps(hello))
    return ws, await recv(ws)


async def recv(ws, timeout=15):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout * FACTOR))


async def call(ws, **req):
    """A request with an id, and its answer (deliveries before it are kept
    in ws.early)."""
    req["id"] = req.get("id", int(time.monotonic() * 1e6))
    await ws.send(json.dumps(req))
    while True:
        r = await recv(ws)
        if r.get("id") == req["id"]:
            return r
        ws.early = getattr(ws, "early", []) + [r]


async def collect(ws, want, timeout=20, ack=True):
    """Deliveries (op msg) until pred want(list) holds; acks qos-1 ones."""
    got = list(m for m in getattr(ws, "early", []) if m.get("op") == "msg")
    ws.early = []
    deadline = time.monotonic() + timeout * FACTOR
    while not want(got):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"deliveries so far: {got}")
        try:
            m = json.loads(await asyncio.wait_for(ws.recv(), left))
        except asyncio.TimeoutError:
            raise AssertionError(f"deliveries so far: {got}") from None
        if m.get("op") != "msg":
            continue
        got.append(m)
        if ack and m.get("qos") == 1:
            await ws.send(json.dumps({"op": "ack", "seq": m["seq"]}))
    return got


def status(d):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10 * FACTOR)
    s.connect(d.socket)
    s.sendall(b'{"cmd":"status"}\n')
    r = json.loads(read_line(s, bytearray()))
    s.close()
    return r


def stream_leader(nc, stream):
    """The name of the server leading the stream (n1, n2, n3)."""
    for n in nc.nodes:
        if not (n.proc and n.proc.alive()):
            continue
        info = natscluster.nats_request(n.url, f"$JS.API.STREAM.INFO.{stream}")
        leader = info.get("cluster", {}).get("leader")
        if leader:
            return leader
    return None


@unittest.skipIf(SKIP, SKIP)
class ClusterBus(CohortTest):
    def setUp(self):
        super().setUp()
        self.nc = natscluster.NatsCluster(builddir=os.environ.get("COHORT_BUILDDIR", os.getcwd()))
        try:
            self.nc.start()
        except BaseException:
            self.nc.stop()
            raise

    def tearDown(self):
        try:
            for d in self.nc.cohortds:
                rc = d.stop()
                bad = [line for line in d.proc.lines
                       if "AddressSanitizer" in line or "runtime error:" in line or "LeakSanitizer" in line]
                self.assertEqual(bad, [], f"cohortd {d.name}")
                self.assertEqual(rc, 0, f"cohortd {d.name}:\n" + "\n".join(d.proc.lines[-20:]))
        finally:
            self.nc.stop()
            super().tearDown()

    def cohortd(self, name):
        d = self.nc.start_cohortd(name, IDLE)
        d.proc.wait_log(r"cluster: bus connected to nats://", 30, what=f"cohortd {name}: bus connected")
        return d

    def test_qos_0_and_1_published_on_a_reach_subscribers_on_b_and_c(self):
        """... and a's own subscriber, once each: a hands them to it itself,
        and NATS does not send them back (NoEcho)."""
        a, b, c = self.cohortd("a"), self.cohortd("b"), self.cohortd("c")

        async def go():
            subs = []
            for d in (b, c, a):
                ws, w = await connect(d)
                self.assertEqual(w["op"], "welcome", w)
                self.assertEqual((await call(ws, op="sub", topic="fan.>", qos=1))["op"], "ok")
                subs.append(ws)
            pub, w = await connect(a)
            oks = []
            for i in range(20):
                r = await call(pub, op="pub", topic=f"fan.q1.{i % 3}", data={"i": i}, qos=1)
                self.assertEqual(r["op"], "ok", r)
                oks.append(r["seq"])
                await pub.send(json.dumps({"op": "pub", "topic": "fan.q0", "data": {"i": i}}))
            # The ok's seq is the stream's: it rises.
            self.assertEqual(oks, sorted(oks))
            self.assertEqual(len(set(oks)), 20)
            for ws in subs:
                got = await collect(ws, lambda g: len([m for m in g if m["topic"].startswith("fan.q1")]) >= 20
                                    and len([m for m in g if m["topic"] == "fan.q0"]) >= 20)
                q1 = [m for m in got if m["topic"].startswith("fan.q1")]
                q0 = [m for m in got if m["topic"] == "fan.q0"]
                self.assertEqual([m["data"]["i"] for m in q1], list(range(20)))
                self.assertTrue(all(m["qos"] == 1 for m in q1))
                self.assertEqual([m["data"]["i"] for m in q0], list(range(20)))
                self.assertTrue(all(m["qos"] == 0 for m in q0))
            # Nothing comes twice to a's subscriber: a message published
            # on b once every subscriber had all of a's went through a's
            # server after any copy of a's messages it sent back to a, so
            # it comes after them.
            other, _ = await connect(b)
            self.assertEqual((await call(other, op="pub", topic="fan.end", data=1, qos=1))["op"], "ok")
            late = await collect(subs[2], lambda g: any(m["topic"] == "fan.end" for m in g))
            self.assertEqual([m["topic"] for m in late], ["fan.end"])
            for ws in subs + [pub, other]:
                await ws.close()
        run(go())

    def test_a_publish_the_cluster_refuses_reaches_no_subscriber_here_either(self):
        """A retained publish whose value the bucket cannot take is refused,
        and this host's own subscriber does not get it: its copy is handed
        over only once the message has gone to NATS."""
        a = self.cohortd("a")

        async def go():
            sub_ws, _ = await connect(a)
            self.assertEqual((await call(sub_ws, op="sub", topic="ret.>", qos=1))["op"], "ok")
            pub, _ = await connect(a)
            url, stream = self.nc.nodes[0].url, f"KV_COHORT_RETAINED_{self.nc.name}"
            r = await asyncio.to_thread(natscluster.nats_request, url, f"$JS.API.STREAM.DELETE.{stream}")
            self.assertTrue(r.get("success"), r)
            r = await call(pub, op="pub", topic="ret.value", data=1, qos=1, retain=True)
            self.assertEqual(r["op"], "error", r)
            self.assertIn("cluster unreachable", r["error"])
            # Handed over in publish order: the next one's copy comes after
            # any copy of the refused one would have.
            self.assertEqual((await call(pub, op="pub", topic="ret.marker", data=2, qos=1))["op"], "ok")
            got = await collect(sub_ws, lambda g: any(m["topic"] == "ret.marker" for m in g))
            self.assertEqual([m["topic"] for m in got], ["ret.marker"])
            for ws in (sub_ws, pub):
                await ws.close()
        run(go())

    def test_the_clients_change_nothing(self):
        """libcohort (cohortctl pub and sub) and the Python client, as on one
        host: cohortctl sub on c and a Python durable session on b get what
        the Python client and cohortctl publish on a."""
        a, b, c = self.cohortd("a"), self.cohortd("b"), self.cohortd("c")
        ctl_sub = subprocess.Popen([c.cohortctl, "-s", c.socket, "sub", "--qos", "1", "-n", "2", "cli.>"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            async def go():
                got = []
                sub = cohort_client.Client(bus="unix:" + bus_path(b), session="py")
                await sub.connect()

                def on_msg(m):
                    got.append((m["topic"], m["data"]))
                await sub.subscribe("cli.>", on_msg, qos=1)
                # cohortctl sub is subscribed once cohortd c says so.
                deadline = time.monotonic() + 15 * FACTOR
                while status(c)["bus"]["subscriptions"] < 1 and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                pub = cohort_client.Client(bus="unix:" + bus_path(a))
                await pub.connect()
                seq = await pub.publish("cli.py", {"from": "python"}, qos=1)
                self.assertIsInstance(seq, int)
                r = a.ctl("pub", "--qos", "1", "cli.ctl", '{"from":"cohortctl"}')
                self.assertEqual(r.returncode, 0, r.stderr)
                deadline = time.monotonic() + 15 * FACTOR
                while len(got) < 2 and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                self.assertEqual(sorted(got), [("cli.ctl", {"from": "cohortctl"}), ("cli.py", {"from": "python"})])
                await pub.close()
                await sub.close()
            run(go())
            out, err = ctl_sub.communicate(timeout=15 * FACTOR)
            self.assertEqual(ctl_sub.returncode, 0, err)
            self.assertIn("python", out)
            self.assertIn("cohortctl", out)
        finally:
            if ctl_sub.poll() is None:
                ctl_sub.kill()
                ctl_sub.wait()

    def test_a_durable_session_moves_from_a_to_b_and_gets_its_queue(self):
        a, b, c = self.cohortd("a"), self.cohortd("b"), self.cohortd("c")

        async def go():
            ws, w = await connect(a, session="mover")
            self.assertEqual(w, {"op": "welcome", "session": "mover", "resumed": False})
            self.assertEqual((await call(ws, op="sub", topic="work.>", qos=1))["op"], "ok")
            pub, _ = await connect(c)
            r = await call(pub, op="pub", topic="work.first", data=0, qos=1)
            self.assertEqual(r["op"], "ok", r)
            got = await collect(ws, lambda g: len(g) >= 1)
            self.assertEqual(got[0]["data"], 0)
            # One it was sent and did not ack when it left: owed again.
            self.assertEqual((await call(pub, op="pub", topic="work.unacked", data=-1, qos=1))["op"], "ok")
            got = await collect(ws, lambda g: len(g) >= 1, ack=False)
            self.assertEqual((got[0]["data"], got[0]["redelivered"]), (-1, False))
            await ws.close()
            # Away: 30 qos-1 messages, and some it does not subscribe to.
            for i in range(1, 31):
                r = await call(pub, op="pub", topic=f"work.n{i}", data=i, qos=1)
                self.assertEqual(r["op"], "ok", r)
                self.assertEqual((await call(pub, op="pub", topic="other", data=i, qos=1))["op"], "ok")
            # Back on another host's cohortd: its queue is there.
            ws2, w = await connect(b, session="mover")
            self.assertEqual(w, {"op": "welcome", "session": "mover", "resumed": True})
            got = await collect(ws2, lambda g: set(range(-1, 31)) - {0} <= {m["data"] for m in g})
            self.assertTrue(all(m["topic"].startswith("work.") for m in got), got)
            self.assertTrue([m["redelivered"] for m in got if m["data"] == -1][0])
            self.assertNotIn(0, [m["data"] for m in got])	# acked on a: not owed again
            # ... and what comes now, too; acked, nothing comes again.
            r = await call(pub, op="pub", topic="work.later", data=99, qos=1)
            got = await collect(ws2, lambda g: 99 in [m["data"] for m in g])
            # Published on b, its own host: qos 1 from its consumer, qos 0
            # handed over by b itself; each once.
            here, _ = await connect(b)
            self.assertEqual((await call(here, op="pub", topic="work.here", data=100, qos=1))["op"], "ok")
            await here.send(json.dumps({"op": "pub", "topic": "work.here0", "data": 101}))
            got = await collect(ws2, lambda g: {100, 101} <= {m["data"] for m in g})
            self.assertEqual(sorted(m["data"] for m in got if m["data"] in (100, 101)), [100, 101], got)
            await here.close()
            with self.assertRaises(AssertionError):
                await collect(ws2, lambda g: False, timeout=1.5)
            for x in (ws2, pub):
                await x.close()
        run(go())

    def test_retained_values_are_shared_and_reach_a_cohortd_started_later(self):
        a, b = self.cohortd("a"), self.cohortd("b")

        async def values(ws, pattern):
            r = await call(ws, op="get", topic=pattern)
            self.assertEqual(r["op"], "ok", r)
            return {v["topic"]: v["data"] for v in r["messages"]}

        async def until(ws, pattern, want):
            deadline = time.monotonic() + 10 * FACTOR
            while True:
                got = await values(ws, pattern)
                if got == want or time.monotonic() > deadline:
                    return got
                await asyncio.sleep(0.05)

        async def go():
            pa, _ = await connect(a)
            pb, _ = await connect(b)
            r = await call(pa, op="pub", topic="cfg.mode", data={"m": "fast"}, qos=1, retain=True)
            self.assertEqual(r["op"], "ok", r)
            # qos 0 and retained: stored all the same, no answer (a ping's comes next).
            await pa.send(json.dumps({"op": "pub", "topic": "cfg.user@host", "data": 7, "retain": True}))
            self.assertEqual((await call(pa, op="ping"))["op"], "pong")
            want = {"cfg.mode": {"m": "fast"}, "cfg.user@host": 7}
            self.assertEqual(await until(pb, "cfg.>", want), want)
            # A new subscription on b gets them first, marked retained.
            sb, _ = await connect(b)
            self.assertEqual((await call(sb, op="sub", topic="cfg.>", qos=1))["op"], "ok")
            got = await collect(sb, lambda g: len(g) >= 2)
            self.assertEqual({m["topic"]: m["data"] for m in got}, want)
            self.assertTrue(all(m["retained"] for m in got))
            # Cleared with null, everywhere; the live copy still reaches b.
            r = await call(pa, op="pub", topic="cfg.mode", data=None, qos=1, retain=True)
            self.assertEqual(r["op"], "ok", r)
            live = await collect(sb, lambda g: len(g) >= 1)
            self.assertEqual((live[0]["topic"], live[0]["data"], live[0]["retained"]), ("cfg.mode", None, False))
            self.assertEqual(await until(pb, "cfg.>", {"cfg.user@host": 7}), {"cfg.user@host": 7})
            for x in (pa, pb, sb):
                await x.close()
        run(go())
        # A cohortd started afterwards reads them from the cluster.
        c = self.cohortd("c")

        async def later():
            pc, _ = await connect(c)
            self.assertEqual(await until(pc, "cfg.>", {"cfg.user@host": 7}), {"cfg.user@host": 7})
            await pc.close()
        run(later())

    def test_the_whole_cluster_away_refuses_qos_1_drops_qos_0_then_recovers(self):
        a, b = self.cohortd("a"), self.cohortd("b")

        async def go():
            sub, _ = await connect(b)
            self.assertEqual((await call(sub, op="sub", topic="x.>", qos=1))["op"], "ok")
            pub, _ = await connect(a)
            self.assertEqual((await call(pub, op="pub", topic="x.before", data=1, qos=1))["op"], "ok")
            await collect(sub, lambda g: len(g) >= 1)
            mark = len(a.proc.lines)
            for i in range(3):
                self.nc.kill_node(i, signal.SIGKILL)
            a.proc.wait_log(r"cluster: bus unreachable", 20, start=mark)
            # Between two kills the bus may reconnect to a node not killed
            # yet (seen under load): what counts is its state after the last.
            deadline = time.monotonic() + 20 * FACTOR
            while status(a)["bus"]["cluster"]["up"]:
                self.assertLess(time.monotonic(), deadline, "a's bus sees the cluster up, all three nodes killed")
                await asyncio.sleep(0.05)
            # Refused at once, with the reason; nothing acknowledged.
            t0 = time.monotonic()
            r = await call(pub, op="pub", topic="x.during", data=2, qos=1)
            self.assertEqual(r["op"], "error", r)
            self.assertIn("cluster unreachable", r["error"])
            self.assertLess(time.monotonic() - t0, 3 * FACTOR)
            # A retained value too, whatever its qos.
            r = await call(pub, op="pub", topic="x.state", data=5, retain=True)
            self.assertEqual(r["op"], "error", r)
            self.assertIn("cluster unreachable", r["error"])
            st = status(a)["bus"]
            self.assertFalse(st["cluster"]["up"], st)
            self.assertIn("disconnected", st["cluster"]["unreachable"])
            dropped = st["dropped_qos0"]
            await pub.send(json.dumps({"op": "pub", "topic": "x.q0", "data": 3}))
            # A ping's answer comes after the qos-0 publish was handled.
            self.assertEqual((await call(pub, op="ping"))["op"], "pong")
            st = status(a)["bus"]
            self.assertEqual(st["dropped_qos0"], dropped + 1)
            self.assertEqual(st["cluster"]["dropped_qos0"], 1)
            # A durable session cannot open without the cluster: said why.
            ws, w = await connect(a, session="during")
            self.assertEqual(w["op"], "error", w)
            self.assertIn("cluster unreachable", w["error"])
            await ws.close()
            # Counted where status and /metrics show the bus's connection.
            cl = json.loads(a.ctl("status", "--json").stdout)["cluster"]["bus"]
            self.assertEqual((cl["state"], cl["refused"], cl["dropped_qos0"]), ("unreachable", 3, 1), cl)
            self.assertEqual(status(a)["bus"]["cluster"]["refused"], 3)
            # Supervision goes on.
            t0 = time.monotonic()
            self.assertEqual(a.ctl("restart", "idle").returncode, 0)
            self.assertLess(time.monotonic() - t0, 5 * FACTOR)
            mark = len(a.proc.lines)
            for i in range(3):
                self.nc.restart_node(i)
            a.proc.wait_log(r"cluster: bus connected to nats://", 30, start=mark)
            self.assertTrue(status(a)["bus"]["cluster"]["up"])
            # The fan-out is a core subscription: until the restarted
            # servers' routes carry b's interest to a's server, what a
            # publishes does not reach b's non-durable subscriber (stored
            # all the same: doc/CLUSTER.md). Wait for that path first.
            deadline = time.monotonic() + 30 * FACTOR
            seen = []
            while not any(m["topic"] == "x.probe" for m in seen):
                self.assertLess(time.monotonic(), deadline, f"no qos-0 probe from a reached b: {seen}")
                await pub.send(json.dumps({"op": "pub", "topic": "x.probe", "data": 0}))
                try:
                    seen += await collect(sub, lambda g: len(g) >= 1, timeout=0.5)
                except AssertionError:
                    pass
            # The stream needs a leader again: until then, refused.
            deadline = time.monotonic() + 30 * FACTOR
            while True:
                r = await call(pub, op="pub", topic="x.after", data=4, qos=1)
                if r["op"] == "ok" or time.monotonic() > deadline:
                    break
                self.assertIn("cluster unreachable", r["error"])
                await asyncio.sleep(0.2)
            self.assertEqual(r["op"], "ok", r)
            got = await collect(sub, lambda g: 4 in [m["data"] for m in g])
            self.assertNotIn(2, [m["data"] for m in got])
            for x in (sub, pub):
                await x.close()
        run(go(), timeout=150)


    def test_the_stream_leader_killed_during_qos_1_publishing_loses_nothing_acknowledged(self):
        """SIGKILL of the server leading the stream while a publisher on a
        sends qos-1 messages (retrying what was refused with the same mid,
        as the clients do) and a durable session on b receives them:
        every acknowledged message arrives, the stream stored each one
        once (the retries' mid is its Nats-Msg-Id), and deliveries of one
        message more than once, which qos 1 allows (a consumer whose new
        leader did not know of a delivery sends it again), are counted."""
        a, b = self.cohortd("a"), self.cohortd("b")
        total, kill_at = 200, 60

        async def go():
            sub, w = await connect(b, session="counter")
            self.assertEqual(w["op"], "welcome", w)
            self.assertEqual((await call(sub, op="sub", topic="count.>", qos=1))["op"], "ok")
            received = []

            async def reader():
                while True:
                    m = json.loads(await sub.recv())
                    if m.get("op") != "msg":
                        continue
                    received.append(m)
                    await sub.send(json.dumps({"op": "ack", "seq": m["seq"]}))
            task = asyncio.ensure_future(reader())
            pub, _ = await connect(a)
            leader = stream_leader(self.nc, "COHORT_BUS_cohorttest")
            self.assertIsNotNone(leader)
            acked, refusals = [], 0
            for i in range(total):
                if i == kill_at:
                    self.nc.kill_node(int(leader[1:]) - 1, signal.SIGKILL)
                deadline = time.monotonic() + 60 * FACTOR
                while True:
                    r = await call(pub, op="pub", topic=f"count.n{i % 7}", data=i, qos=1, mid=f"m{i}")
                    if r["op"] == "ok":
                        acked.append(i)
                        break
                    self.assertIn("cluster unreachable", r["error"])
                    self.assertLess(time.monotonic(), deadline, r)
                    refusals += 1
                    await asyncio.sleep(0.1)
            deadline = time.monotonic() + 60 * FACTOR
            while set(acked) - {m["data"] for m in received} and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            await asyncio.sleep(1)  # what would come twice, comes now
            task.cancel()
            datas = [m["data"] for m in received]
            lost = sorted(set(acked) - set(datas))
            dups = [m for m in received if datas.count(m["data"]) > 1]
            print(f"\nleader {leader} killed after {kill_at} of {total}: {refusals} refusals, "
                  f"{len(lost)} lost, {len(dups)} deliveries of messages delivered more than once "
                  f"({len([m for m in dups if m['redelivered']])} marked redelivered)", file=sys.stderr)
            self.assertEqual(lost, [])
            live = [n for n in self.nc.nodes if n.proc.alive()][0]
            state = natscluster.nats_request(live.url, "$JS.API.STREAM.INFO.COHORT_BUS_cohorttest")["state"]
            self.assertEqual(state["messages"], total, state)
            for x in (sub, pub):
                await x.close()
        run(go(), timeout=240)


if __name__ == "__main__":
    unittest.main()
