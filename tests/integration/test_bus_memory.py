#!/usr/bin/python3
"""Memory of the bus's queues: over bus_memory_max a qos-1 publish is
refused with the reason (and accepted again once the queues drain), and
the memory a backlog took goes back to the system once it drains.
Subscribers are raw sockets that read nothing (test_bus_liveness.RawWs)."""
import json
import os
import time
import unittest

from harness import FACTOR, VALGRIND, CohortTest, wait_until
from test_bus_liveness import RawWs

IDLE = """
[service:idle]
command = /bin/sleep 1000
ready = delay:0
"""
DATA = '"' + "x" * 1022 + '"'   # 1 KB of JSON text


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def sanitized(pid):
    """True when pid runs with AddressSanitizer, whose allocator is not malloc's."""
    with open(f"/proc/{pid}/maps") as f:
        return "libasan" in f.read()


class BusMemory(CohortTest):
    def daemon(self, text=IDLE):
        return self.started(text)

    def connect(self, d, sub=None):
        ws = RawWs.unix(os.path.join(d.run_dir, "bus.sock"))
        ws.send({"op": "hello"})
        self.reply(ws, None, "welcome")
        if sub:
            ws.send({"op": "sub", "id": 1, "topic": sub, "qos": 1})
            self.reply(ws, 1)
        return ws

    def reply(self, ws, id, op=None):
        """The next frame answering id (or of op), parsed."""
        deadline = time.monotonic() + 10 * FACTOR
        while time.monotonic() < deadline:
            for opcode, payload in ws.frames():
                if opcode != 1:
                    continue
                f = json.loads(payload)
                if (op and f.get("op") == op) or (id is not None and f.get("id") == id):
                    return f
            ws._recv(0.2)
        self.fail(f"no answer to {id or op}")

    def publish(self, ws, first, count, window=200):
        """Publishes count qos-1 messages (ids first...), at most window
        unanswered; returns the answers by id."""
        answers, sent, deadline = {}, first, time.monotonic() + 60 * FACTOR
        while len(answers) < count:
            while sent < first + count and sent - first - len(answers) < window:
                ws.send(f'{{"op":"pub","id":{sent},"topic":"mem.t","qos":1,"data":{DATA}}}'.encode())
                sent += 1
            ws._recv(0.2)
            for opcode, payload in ws.frames():
                f = json.loads(payload) if opcode == 1 else {}
                if f.get("op") in ("ok", "error"):
                    answers[f["id"]] = f
            self.assertLess(time.monotonic(), deadline, f"{len(answers)} of {count} answered")
        return answers

    def test_over_bus_memory_max_a_qos1_publish_is_refused_with_the_reason(self):
        d = self.daemon("[cohort]\nbus_memory_max = 1M\n" + IDLE)
        sub = self.connect(d, "mem.t")          # reads nothing from here on
        pub = self.connect(d)
        answers = self.publish(pub, 100, 2000, window=1)
        refused = [a for a in answers.values() if a["op"] == "error"]
        stored = [a for a in answers.values() if a["op"] == "ok"]
        # 1M holds a few hundred 1 KB messages queued for one subscriber
        self.assertGreater(len(stored), 100)
        self.assertTrue(refused, "nothing refused")
        self.assertRegex(refused[0]["error"], r"^not stored: the bus queues hold \d+ bytes, "
                         r"bus_memory_max is 1048576; try again$")
        # once the subscriber is gone, its queue with it, publishes are taken again
        sub.close()
        n = [5000]

        def stored_again():
            n[0] += 1
            return self.publish(pub, n[0], 1)[n[0]]["op"] == "ok"
        wait_until(self, stored_again, what="a qos-1 publish stored again")
        pub.close()
        d.stop()

    @unittest.skipIf(VALGRIND, "valgrind's allocator is not malloc's")
    def test_two_thousand_clients_at_the_defaults_cost_under_5_kib_each(self):
        # Issue 19: bus_max_connections' default (1024) refused the
        # 1,025th client, and the 64 KiB that lws allocated for each
        # connection's receiving cost 4 KiB of it in memory.
        d = self.daemon()
        pid = d.proc.pid
        if sanitized(pid):
            self.skipTest("AddressSanitizer's allocator keeps what is freed")
        warm = [self.connect(d, "mem.c") for _ in range(50)]
        before = rss_kb(pid)
        n = 2000
        conns = [self.connect(d, "mem.c") for _ in range(n)]
        per = (rss_kb(pid) - before) * 1024 / n
        self.assertLess(per, 5 * 1024, f"cohortd's memory per connection: {per:.0f} bytes")
        # each of them is served
        warm[0].send({"op": "pub", "id": 2, "topic": "mem.c", "qos": 0, "data": 1})
        for ws in conns[::100] + conns[-1:]:
            self.assertEqual(self.reply(ws, None, "msg")["data"], 1)
        for ws in conns + warm:
            ws.close()
        d.stop()

    @unittest.skipIf(VALGRIND, "valgrind's allocator is not malloc's")
    def test_memory_goes_back_once_a_backlog_drains(self):
        d = self.daemon()
        pid = d.proc.pid
        if sanitized(pid):
            self.skipTest("AddressSanitizer's allocator keeps what is freed")
        subs = [self.connect(d, "mem.t") for _ in range(100)]   # they read nothing
        pub = self.connect(d)
        self.publish(pub, 1, 20)                # warm up: frames, journal buffers
        before = rss_kb(pid)
        answers = self.publish(pub, 100, 2000)
        self.assertEqual({a["op"] for a in answers.values()}, {"ok"})
        # 100 x 2,000 queued deliveries of 1 KB messages: the backlog took memory...
        peak = rss_kb(pid)
        self.assertGreater(peak, before + 4096, (before, peak))
        for s in subs:
            s.close()
        # ... and gives it back once it drained (their sessions ended)
        margin = 3072
        wait_until(self, lambda: rss_kb(pid) < before + margin, timeout=15,
                   what=f"cohortd's RSS back under {before + margin} KiB (before {before}, peak {peak})")
        pub.close()
        d.stop()

    @unittest.skipIf(VALGRIND, "valgrind's allocator is not malloc's")
    def test_memory_goes_back_once_subscribers_read_their_backlog(self):
        d = self.daemon()
        pid = d.proc.pid
        if sanitized(pid):
            self.skipTest("AddressSanitizer's allocator keeps what is freed")
        subs = [self.connect(d, "mem.t") for _ in range(10)]
        pub = self.connect(d)
        self.publish(pub, 1, 20)
        before = rss_kb(pid)
        self.publish(pub, 100, 3000)
        peak = rss_kb(pid)
        self.assertGreater(peak, before + 4096, (before, peak))
        # each reads and acks all 3,020, and stays connected
        seen = {ws: set() for ws in subs}
        deadline = time.monotonic() + 60 * FACTOR
        while any(len(v) < 3020 for v in seen.values()):
            self.assertLess(time.monotonic(), deadline, [len(v) for v in seen.values()])
            for ws in subs:
                ws._recv(0.01)
                for opcode, payload in ws.frames():
                    f = json.loads(payload) if opcode == 1 else {}
                    if f.get("op") == "msg":
                        seen[ws].add(f["seq"])
                        ws.send(b'{"op":"ack","seq":%d}' % f["seq"])
        margin = 3072
        wait_until(self, lambda: rss_kb(pid) < before + margin, timeout=15,
                   what=f"cohortd's RSS back under {before + margin} KiB (before {before}, peak {peak})")
        for ws in subs + [pub]:
            ws.close()
        d.stop()


if __name__ == "__main__":
    unittest.main()
