#!/usr/bin/python3
"""The stack's own events on the bus: $sys.service.<name> retained values,
$sys.event.service and $sys.event.lock, read by an admin and by a service
whose subscribe patterns include them, and by no other service."""
import asyncio
import json
import os
import re
import subprocess
import time

import websockets

from harness import COHORTCTL, FACTOR, CohortTest, wait_until, token_command
from test_metrics import get


def run(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout * FACTOR))


async def connect(path, token=None):
    ws = await websockets.unix_connect(path, uri="ws://localhost/", subprotocols=["cohort.v1"])
    hello = {"op": "hello", "id": 0}
    if token:
        hello["token"] = token
    await ws.send(json.dumps(hello))
    assert json.loads(await ws.recv())["op"] == "welcome"
    return ws


async def recv(ws, timeout=10):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout * FACTOR))


async def sub(ws, topic, rid):
    """Subscribes; the answer, and the messages that came before it."""
    await ws.send(json.dumps({"op": "sub", "topic": topic, "id": rid}))
    before = []
    while True:
        m = await recv(ws)
        if m.get("id") == rid:
            return m, before
        before.append(m)


async def until(ws, pred, what, timeout=10):
    """Messages up to the first one pred accepts (that one last)."""
    got = []
    while True:
        try:
            m = await recv(ws, timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"no {what} within {timeout} s; got {got}")
        got.append(m)
        if pred(m):
            return got


class SysTopics(CohortTest):
    def daemon(self):
        tokens = {}
        text = ""
        for name, subscribe in (("watcher", "$sys.service.>, $sys.event.service"), ("other", ">")):
            tok = self.path(f"token.{name}")
            tokens[name] = tok
            text += f"""
[service:{name}]
command = {token_command(tok)}
ready = delay:0
subscribe = {subscribe}
"""
        d = self.cohortd(text + """
[service:web]
command = /bin/sleep 1000
ready = delay:0

[service:manual]
command = /bin/sleep 1000
autostart = no
""")
        d.wait_log(r"^stack is up")
        d.wait_socket()
        for path in tokens.values():
            wait_until(self, lambda p=path: os.path.exists(p), what="a token")
        read = {}
        for name, path in tokens.items():
            with open(path) as f:
                read[name] = f.read().strip()
        return d, read, os.path.join(d.run_dir, "bus.sock")

    def test_services_and_locks_on_sys_topics(self):
        d, tokens, bus = self.daemon()

        async def go():
            admin = await connect(bus)
            ok, before = await sub(admin, "$sys.service.>", 1)
            self.assertEqual(ok["op"], "ok")
            retained = {m["topic"]: m for m in before}
            while len(retained) < 4:
                m = await recv(admin)
                retained[m["topic"]] = m
            self.assertEqual(set(retained), {"$sys.service.watcher", "$sys.service.other", "$sys.service.web",
                                             "$sys.service.manual"})
            web = retained["$sys.service.web"]
            self.assertTrue(web["retained"])
            self.assertEqual(web["data"]["state"], "running")
            self.assertEqual(web["data"]["pid"], d.last_pid("web"))
            self.assertEqual(web["data"]["restarts"], 0)
            self.assertEqual((web["data"]["requires"], web["data"]["log"]), ([], True))   # stdout = log, the default
            self.assertEqual(retained["$sys.service.manual"]["data"]["state"], "stopped")
            self.assertIsNone(retained["$sys.service.manual"]["data"]["pid"])
            # every transition, as an event, and the new value
            await sub(admin, "$sys.event.service", 2)
            p = subprocess.run([COHORTCTL, "-s", d.socket, "restart", "web"], capture_output=True)
            self.assertEqual(p.returncode, 0, p.stderr)
            got = await until(admin, lambda m: m["topic"] == "$sys.event.service" and m["data"]["name"] == "web"
                              and m["data"]["to"] == "running", "web running again")
            events = [(m["data"]["from"], m["data"]["to"]) for m in got
                      if m["topic"] == "$sys.event.service" and m["data"]["name"] == "web"]
            self.assertEqual(events[0], ("running", "stopping"))
            self.assertEqual(events[-1], ("starting", "running"))
            values = [m for m in got if m["topic"] == "$sys.service.web"]
            # its pid is there from the start of its process, not from running on
            self.assertEqual([v["data"]["pid"] for v in values if v["data"]["state"] == "starting"][-1],
                             got[-1]["data"]["pid"])
            self.assertEqual(values[-1]["data"]["state"], "running")
            self.assertFalse(values[-1]["retained"])
            self.assertEqual(values[-1]["data"]["pid"], got[-1]["data"]["pid"])
            # a later subscriber gets the new value first
            late = await connect(bus)
            _, before = await sub(late, "$sys.service.web", 1)
            first = before[0] if before else await recv(late)
            self.assertEqual((first["data"]["state"], first["retained"]), ("running", True))
            self.assertNotEqual(first["data"]["pid"], web["data"]["pid"])
            # locks: granted, then released
            await sub(admin, "$sys.event.lock", 3)
            p = subprocess.run([COHORTCTL, "-s", d.socket, "lock", "db", "--", "true"], capture_output=True)
            self.assertEqual(p.returncode, 0, p.stderr)
            got = await until(admin, lambda m: m["topic"] == "$sys.event.lock" and m["data"]["event"] == "ended",
                              "the lock's end")
            locks = [m["data"] for m in got if m["topic"] == "$sys.event.lock"]
            self.assertEqual([(l["lock"], l["event"], l.get("why")) for l in locks],
                             [("db", "granted", None), ("db", "ended", "released")])
            self.assertEqual(locks[0]["token"], locks[1]["token"])
            self.assertEqual(locks[0]["mode"], "exclusive")
            # the bus's figures, every 2 s while watched
            await sub(admin, "$sys.bus", 4)
            got = await until(admin, lambda m: m.get("topic") == "$sys.bus", "$sys.bus", timeout=10)
            figures = got[-1]["data"]
            self.assertGreaterEqual(figures["connections"], 2)
            self.assertIn("admin", [c["identity"] for c in figures["conns"]])
            self.assertIn("ts_ms", figures)
            # a wildcard does not reach $ topics
            _, before = await sub(late, ">", 2)
            self.assertEqual(before, [])
            # a service: only as its subscribe patterns say
            watcher = await connect(bus, tokens["watcher"])
            ok, before = await sub(watcher, "$sys.service.>", 1)
            self.assertEqual(ok["op"], "ok", ok)
            ok, _ = await sub(watcher, "$sys.event.lock", 2)
            self.assertEqual(ok["op"], "error")
            self.assertIn("not allowed", ok["error"])
            other = await connect(bus, tokens["other"])
            ok, _ = await sub(other, "$sys.service.>", 1)
            self.assertEqual(ok["op"], "error")
            self.assertIn("not allowed", ok["error"])
            for ws in (admin, late, watcher, other):
                await ws.close()
        run(go())
        # never journaled: nothing of $sys survives a restart but what is published again
        st = d.ctl_json("status")["bus"]
        self.assertEqual(st["published"], 0)
        d.stop()

    def test_a_reload_that_moves_a_service_publishes_its_value_again(self):
        """A reload that gives b a requirement moves it to phase 2 without a
        restart (requires is applied live): its $sys.service value changes
        with no state change, and is published again; a's, unchanged, is
        not; c, added with autostart = no, gets one though it never
        changes state."""
        base = "[service:a]\ncommand = /bin/sleep 1000\nready = delay:0\n\n" \
               "[service:b]\ncommand = /bin/sleep 1000\nready = delay:0\n"
        d = self.cohortd(base)
        d.wait_log(r"^stack is up")
        d.wait_socket()
        bus = os.path.join(d.run_dir, "bus.sock")

        async def go():
            admin = await connect(bus)
            _, before = await sub(admin, "$sys.service.>", 1)
            retained = {m["topic"]: m["data"] for m in before}
            while len(retained) < 2:
                m = await recv(admin)
                retained[m["topic"]] = m["data"]
            self.assertEqual((retained["$sys.service.b"]["phase"], retained["$sys.service.b"]["requires"],
                              retained["$sys.service.b"]["after"]), (1, [], []))
            pid = d.last_pid("b")
            await asyncio.to_thread(d.reload, base + "requires = a\nafter = a\n\n"
                                    "[service:c]\ncommand = /bin/sleep 1000\nautostart = no\n")
            got = await until(admin, lambda m: m["topic"] == "$sys.service.b", "b's new value")
            self.assertEqual([m["topic"] for m in got], ["$sys.service.b"], "a's value did not change")
            b = got[-1]["data"]
            self.assertEqual((b["phase"], b["requires"], b["after"], b["state"], b["pid"]),
                             (2, ["a"], ["a"], "running", pid))
            # a service added that does not start has a value all the same
            got = await until(admin, lambda m: m["topic"] == "$sys.service.c", "c's value")
            self.assertEqual(got[-1]["data"]["state"], "stopped")
            late = await connect(bus)
            _, before = await sub(late, "$sys.service.b", 1)
            first = before[0] if before else await recv(late)
            self.assertEqual((first["data"]["phase"], first["retained"]), (2, True))
            for ws in (admin, late):
                await ws.close()
        run(go())
        d.stop()

    def test_lock_waiters_on_sys_event_lock(self):
        """A request that queues is on $sys.event.lock as "waiting", with
        an id that `locks` shows too, and "done waiting" when it is
        granted: what the dashboard shows as a lock's waiters."""
        d, _, bus = self.daemon()

        async def go():
            admin = await connect(bus)
            await sub(admin, "$sys.event.lock", 1)
            holder, waiter = await connect(bus), await connect(bus)
            await holder.send(json.dumps({"op": "lock.acquire", "id": 1, "name": "q", "ttl_ms": 60000}))
            token = (await recv(holder))["token"]
            await waiter.send(json.dumps({"op": "lock.acquire", "id": 1, "name": "q", "ttl_ms": 60000,
                                          "wait_ms": 30000}))
            got = await until(admin, lambda m: m["data"].get("event") == "waiting", "the waiter")
            queued = got[-1]["data"]
            self.assertEqual((queued["lock"], queued["mode"]), ("q", "exclusive"), queued)
            self.assertIn("waiter", queued)
            listed = d.ctl_json("locks")["locks"][0]["waiters"]
            self.assertEqual([w["id"] for w in listed], [queued["id"]])
            await holder.send(json.dumps({"op": "lock.release", "id": 2, "name": "q", "token": token}))
            got = await until(admin, lambda m: m["data"].get("event") == "granted" and m["data"]["token"] != token,
                              "the waiter's grant")
            events = [(m["data"]["event"], m["data"].get("id")) for m in got]
            self.assertIn(("done waiting", queued["id"]), events)
            self.assertEqual(d.ctl_json("locks")["locks"][0]["waiters"], [])
            for ws in (admin, holder, waiter):
                await ws.close()
        run(go())
        d.stop()

    def test_sys_bus_counts_each_connections_messages(self):
        """$sys.bus gives each connection what it published and what was
        delivered to it: the dashboard's per-connection rates."""
        d, _, bus = self.daemon()

        async def go():
            admin, pub, subscriber = await connect(bus), await connect(bus), await connect(bus)
            await sub(subscriber, "rate.t", 1)
            for i in range(10):
                await pub.send(json.dumps({"op": "pub", "topic": "rate.t", "data": i}))
            for _ in range(10):
                await recv(subscriber)
            await sub(admin, "$sys.bus", 2)

            def counted(m):
                if m.get("topic") != "$sys.bus":
                    return False
                counts = [(c["published"], c["delivered"]) for c in m["data"]["conns"]]
                return (10, 0) in counts and (0, 10) in counts   # the watcher's own grow
            await until(admin, counted, "$sys.bus with the connections' counts", timeout=15)
            for ws in (admin, pub, subscriber):
                await ws.close()
        run(go())
        d.stop()

    def test_a_services_output_while_someone_watches(self):
        d = self.cohortd("""
[service:talker]
command = /bin/sh -c 'i=0; while :; do i=$((i+1)); echo "line $i"; sleep 0.1; done'
ready = delay:0
""")
        d.wait_state("talker", "running")
        d.wait_socket()
        bus = os.path.join(d.run_dir, "bus.sock")

        async def go():
            ws = await connect(bus)
            await sub(ws, "$sys.log.talker", 1)
            got = await until(ws, lambda m: m.get("topic") == "$sys.log.talker", "a line")
            m = got[-1]
            self.assertEqual(m["data"]["name"], "talker")
            self.assertRegex(m["data"]["lines"][0], r"^\d{4}-\d\d-\d\dT[\d:.]+Z line \d+$")   # as in NAME.log
            self.assertFalse(m["retained"])
            await ws.close()
        run(go())
        # nobody watching: nothing is made for it (it prints ten lines a second)
        def sys_published():
            body = get(bus, "/metrics")[2]
            return int(re.search(r"^cohort_bus_sys_published_total (\d+)$", body, re.M).group(1))
        first = sys_published()
        time.sleep(0.5)
        self.assertEqual(sys_published(), first)
        d.stop()


if __name__ == "__main__":
    import unittest
    unittest.main()
