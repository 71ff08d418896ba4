#!/usr/bin/python3
"""Spilled queues: a durable session that is away while more is published
for it than bus_memory_max could hold keeps its queue in the journal, not
in memory (cohortd's RSS stays bounded, the publishes are accepted), and
gets every message once, in order, when it is back: in the same cohortd,
after a kill -9, and after a compaction of the journal."""
import json
import os
import signal
import time
import unittest

from harness import FACTOR, VALGRIND, CohortTest, wait_until
from test_bus_liveness import RawWs
from test_bus_memory import rss_kb, sanitized

IDLE = """
[service:idle]
command = /bin/sleep 1000
ready = delay:0
"""
PAD = "x" * 1000
COUNT = 8000        # about 8 MB of data, 16 MB as queued in memory: 8x bus_memory_max
CONFIG = "[cohort]\nbus_memory_max = 2M\nbus_fsync = never\n" + IDLE


class BusSpill(CohortTest):
    def daemon(self, text=CONFIG, state=None):
        if state:
            text = text.replace("[cohort]\n", f"[cohort]\nstate_dir = {state}\n", 1)
        d = self.cohortd(text)
        d.wait_log(r"^stack is up")
        d.wait_socket()
        return d

    def killed_and_restarted(self, d, state):
        """cohortd d killed with SIGKILL, and a new one on the same state_dir."""
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait(10 * FACTOR)
        d.returncode = -9
        d.cleanup()
        return self.daemon(state=state)

    def connect(self, d, session=None):
        ws = RawWs.unix(os.path.join(d.run_dir, "bus.sock"))
        hello = {"op": "hello"}
        if session:
            hello["session"] = session
        ws.send(hello)
        welcome = self.reply(ws, None, "welcome")
        return ws, welcome

    @staticmethod
    def frames(ws):
        """The text frames read so far, parsed; those reply() read past first."""
        early, ws.early = getattr(ws, "early", []), []
        return early + [json.loads(p) for op, p in ws.frames() if op == 1]

    def reply(self, ws, id, op=None):
        """The frame answering id (or of op); those after it are kept."""
        deadline = time.monotonic() + 10 * FACTOR
        while time.monotonic() < deadline:
            got = self.frames(ws)
            for k, f in enumerate(got):
                if (op and f.get("op") == op) or (id is not None and f.get("id") == id):
                    ws.early = got[k + 1:]
                    return f
            ws._recv(0.2)
        self.fail(f"no answer to {id or op}")

    def make_session(self, d, name="spiller", topic="sp.>"):
        """A durable session subscribed to topic with qos 1, then away."""
        ws, _ = self.connect(d, name)
        ws.send({"op": "sub", "id": 1, "topic": topic, "qos": 1})
        self.assertEqual(self.reply(ws, 1)["op"], "ok")
        ws.close()
        wait_until(self, lambda: self.session(d, name)["connected"] is False, what="the session away")

    def session(self, d, name="spiller"):
        return [s for s in d.ctl_json("status")["bus"]["sessions"] if s["session"] == "admin/" + name][0]

    def publish(self, d, first, count, window=200, topic="sp.t", topics=None):
        """Publishes data {"i": first...first+count-1} to topic (or to
        topics in turn) with qos 1; returns the answers that were not "ok"."""
        ws, _ = self.connect(d)
        answers, sent, bad = 0, first, []
        deadline = time.monotonic() + 120 * FACTOR
        while answers < count:
            while sent < first + count and sent - first - answers < window:
                if topics:
                    topic = topics[sent % len(topics)]
                ws.send(f'{{"op":"pub","id":{sent},"topic":"{topic}","qos":1,'
                        f'"data":{{"i":{sent},"pad":"{PAD}"}}}}'.encode())
                sent += 1
            ws._recv(0.2)
            for f in self.frames(ws):
                if f.get("op") in ("ok", "error"):
                    answers += 1
                    if f["op"] != "ok":
                        bad.append(f)
            self.assertLess(time.monotonic(), deadline, f"{answers} of {count} answered")
        ws.close()
        return bad

    def drain(self, d, count, name="spiller", ack=True):
        """Connects the session and reads count messages, acking each
        (unless ack is false); returns their "i", in the order they came."""
        ws, welcome = self.connect(d, name)
        self.assertTrue(welcome["resumed"], welcome)
        got, deadline = [], time.monotonic() + 120 * FACTOR
        while len(got) < count:
            self.assertLess(time.monotonic(), deadline, f"{len(got)} of {count} received")
            ws._recv(0.2)
            for f in self.frames(ws):
                if f.get("op") == "msg" and len(got) < count:
                    got.append(f["data"]["i"])
                    if ack:
                        ws.send(b'{"op":"ack","seq":%d}' % f["seq"])
        # the acks are taken before the socket closes: closed with frames
        # unread, it is reset, and cohortd may not read what came last
        ws.send({"op": "ping", "id": "acked"})
        self.reply(ws, "acked")
        ws.close()
        return got

    def read_together(self, d, names, count, conns=None):
        """The sessions back at once (connected now, or conns: name ->
        connection), read in turns, each acking what it gets, until each
        has count messages: their "i", in the order they came."""
        conns = conns or {n: self.connect(d, n)[0] for n in names}
        got = {n: [] for n in names}
        deadline = time.monotonic() + 120 * FACTOR
        while any(len(v) < count for v in got.values()):
            self.assertLess(time.monotonic(), deadline, {n: len(v) for n, v in got.items()})
            for n, ws in conns.items():
                ws._recv(0.01)
                for f in self.frames(ws):
                    if f.get("op") == "msg":
                        got[n].append(f["data"]["i"])
                        ws.send(b'{"op":"ack","seq":%d}' % f["seq"])
        for ws in conns.values():
            ws.send({"op": "ping", "id": "acked"})
            self.reply(ws, "acked")
            ws.close()
        return got

    def spilled(self, d, count):
        """The session is away with count messages queued, nearly all of
        them spilled (what came before the spill started stays in memory)."""
        s = self.session(d)
        self.assertFalse(s["connected"])
        self.assertEqual(s["queued"] + s["spilled"], count, s)
        self.assertGreater(s["spilled"], count * 3 // 4, s)

    def test_an_absent_session_spills_to_the_journal_and_gets_it_all_back_in_order(self):
        d = self.daemon()
        pid = d.proc.pid
        self.make_session(d)
        self.assertEqual(self.publish(d, 0, 20), [])        # warm up: frames, journal buffers
        before = rss_kb(pid)
        # more than bus_memory_max could hold: all accepted, none refused for memory
        self.assertEqual(self.publish(d, 20, COUNT - 21), [])
        self.assertEqual(self.publish(d, COUNT - 1, 1), [])     # alone: nothing follows it
        self.spilled(d, COUNT)
        # the place of each spilled message is noted, the last one's too
        wait_until(self, lambda: self.session(d)["spill_places"] == self.session(d)["spilled"],
                   what=lambda: f"every place noted ({self.session(d)})")
        grown = rss_kb(pid) - before
        if not VALGRIND and not sanitized(pid):
            # 8,000 x 2 KB would be 16 MB in memory; 1 MB of it (half of
            # bus_memory_max) may stay in memory before the spill starts
            self.assertLess(grown, 6 * 1024, f"cohortd grew by {grown} KiB with a spilled queue")
        self.assertEqual(self.drain(d, COUNT), list(range(COUNT)))
        s = self.session(d)
        self.assertEqual((s["queued"], s["spilled"], s["dropped"]), (0, 0, 0), s)
        # what comes now is queued in memory again, and delivered
        self.assertEqual(self.publish(d, COUNT, 5), [])
        self.assertEqual(self.session(d)["spilled"], 0)
        self.assertEqual(self.drain(d, 5), list(range(COUNT, COUNT + 5)))
        d.stop()

    def test_sessions_back_at_once_each_get_all_of_their_spilled_queue(self):
        d = self.daemon()
        names = ["one", "two", "three"]
        for n in names:
            self.make_session(d, n)
        self.assertEqual(self.publish(d, 0, 3000), [])
        for n in names:
            s = self.session(d, n)
            self.assertEqual(s["queued"] + s["spilled"], 3000, s)
            self.assertGreater(s["spilled"], 2000, s)
        # all three back, read in turns: they read back the same messages
        # at the same time (one copy of each, shared)
        got = self.read_together(d, names, 3000)
        for n in names:
            self.assertEqual(got[n], list(range(3000)), n)
            s = self.session(d, n)
            self.assertEqual((s["queued"], s["spilled"]), (0, 0), s)
        d.stop()

    def test_many_sessions_back_after_kill_9_read_their_backlogs_from_their_places(self):
        """40 sessions whose spilled backlogs are interleaved in the journal
        (message i to session i mod 40), after a kill -9: one scan notes
        the place of every spilled message (spill_places), and all 40,
        back at once, get theirs, each once and in order."""
        state = self.path("state")
        d = self.daemon(state=state)
        n, per = 40, 150
        topics = [f"sp.{k}" for k in range(n)]
        for k in range(n):
            self.make_session(d, f"s{k}", topics[k])
        self.assertEqual(self.publish(d, 0, n * per, topics=topics), [])
        d = self.killed_and_restarted(d, state)
        d.wait_log(rf"^bus: recovered \d+ records \({n} durable sessions, {n * per} queued messages")

        def sessions():
            return [self.session(d, f"s{k}") for k in range(n)]
        wait_until(self, lambda: all(s["spill_places"] == s["spilled"] for s in sessions()),
                   what="every spilled message's place noted")
        spilled = sum(s["spilled"] for s in sessions())
        self.assertGreater(spilled, n * per // 2)
        got = self.read_together(d, [f"s{k}" for k in range(n)], per)
        for k in range(n):
            self.assertEqual(got[f"s{k}"], list(range(k, n * per, n)), k)
        for s in sessions():
            self.assertEqual((s["queued"], s["spilled"], s["spill_places"]), (0, 0, 0), s)
        d.stop()

    def test_what_is_read_back_stays_within_bus_memory_max(self):
        """20 sessions with spilled backlogs back at once, reading nothing:
        what is read back into memory for them, together, stays under half
        of bus_memory_max (one message each beyond it), so a qos-1 publish
        for a connected subscriber is still taken; then each gets its
        backlog, once and in order, an ack at a time."""
        d = self.daemon()
        n, per = 20, 300
        topics = [f"sp.{k}" for k in range(n)]
        for k in range(n):
            self.make_session(d, f"s{k}", topics[k])
        self.assertEqual(self.publish(d, 0, n * per, topics=topics), [])
        conns = {}
        for k in range(n):
            conns[k], welcome = self.connect(d, f"s{k}")
            self.assertTrue(welcome["resumed"], welcome)

        def first_sent():
            return all(self.session(d, f"s{k}")["queued"] for k in range(n))
        wait_until(self, first_sent, what="messages read back for each session")
        bus = d.ctl_json("status")["bus"]
        self.assertLess(bus["queued_memory"], (1 << 20) + n * 4096, bus)
        # the other half of bus_memory_max is there for what is published now
        probe, _ = self.connect(d)
        probe.send({"op": "sub", "id": 1, "topic": "probe.t", "qos": 1})
        self.assertEqual(self.reply(probe, 1)["op"], "ok")
        self.assertEqual(self.publish(d, 0, 20, topic="probe.t"), [])
        probe.close()
        got = self.read_together(d, list(range(n)), per, conns)
        for k in range(n):
            self.assertEqual(got[k], list(range(k, n * per, n)), k)
        d.stop()

    def test_over_bus_memory_max_what_only_away_sessions_take_is_accepted(self):
        d = self.daemon("[cohort]\nbus_memory_max = 1M\n" + IDLE)
        self.make_session(d)
        # a connected subscriber that reads nothing fills the queues...
        slow, _ = self.connect(d)
        slow.send({"op": "sub", "id": 1, "topic": "mem.t", "qos": 1})
        self.assertEqual(self.reply(slow, 1)["op"], "ok")
        refused = self.publish(d, 0, 2000, window=1, topic="mem.t")
        self.assertTrue(refused, "nothing refused")
        self.assertRegex(refused[0]["error"], r"^not stored: the bus queues hold \d+ bytes, "
                         r"bus_memory_max is 1048576; try again$")
        # ... over bus_memory_max, a publish that only the away session takes
        # goes to the journal, and is accepted; one it would hold is not
        self.assertEqual(self.publish(d, 0, 500, topic="sp.t"), [])
        s = self.session(d)
        self.assertEqual((s["queued"], s["spilled"]), (0, 500), s)
        _, out, _ = d.ctl("bus")
        self.assertRegex(out, r"(?m)^away: session admin/\S+, 500 queued \(500 of them in the journal only\), "
                         r"0 dropped$")
        self.assertEqual(len(self.publish(d, 0, 1, topic="mem.t")), 1)
        self.assertEqual(self.drain(d, 500), list(range(500)))
        slow.close()
        d.stop()

    def test_a_spilled_queue_survives_kill_9(self):
        state = self.path("state")
        d = self.daemon(state=state)
        self.make_session(d)
        base = rss_kb(d.proc.pid)
        self.assertEqual(self.publish(d, 0, COUNT), [])
        self.spilled(d, COUNT)
        d = self.killed_and_restarted(d, state)
        d.wait_log(rf"^bus: recovered \d+ records \(1 durable session, {COUNT} queued messages")
        # recovery spills too: the backlog does not come back into memory
        self.spilled(d, COUNT)
        pid = d.proc.pid
        if not VALGRIND and not sanitized(pid):
            self.assertLess(rss_kb(pid), base + 6 * 1024,
                            f"cohortd's RSS after recovering a spilled queue (at first {base} KiB)")
        # read half, acked; away again; kill -9 again: the acked half stays acked
        self.assertEqual(self.drain(d, COUNT // 2), list(range(COUNT // 2)))
        wait_until(self, lambda: self.session(d)["queued"] + self.session(d)["spilled"] == COUNT // 2,
                   what="the acks counted")
        # an ok comes once its record is written: so are the acks before it
        self.assertEqual(self.publish(d, 0, 1, topic="other.t"), [])
        d = self.killed_and_restarted(d, state)
        self.assertEqual(self.drain(d, COUNT // 2), list(range(COUNT // 2, COUNT)))
        d.stop()

    def test_a_compaction_while_spilled_keeps_the_spilled_messages(self):
        state = self.path("state")
        d = self.daemon(state=state)
        self.make_session(d)
        self.assertEqual(self.publish(d, 0, 3000), [])
        s = self.session(d)
        self.assertGreater(s["spilled"], 2000, s)
        # read a few (the reading position is then in a segment the
        # compaction deletes), and leave again
        self.assertEqual(self.drain(d, 600), list(range(600)))
        # retained overwrites (not live) until the journal is compacted
        compacting = r"^bus journal: compacting \d+ bytes to \d+ bytes of live state"
        ws, _ = self.connect(d)
        blob = "y" * 50000
        for n in range(2000):
            ws.send({"op": "pub", "id": n, "topic": f"cfg.v{n % 2}", "qos": 1, "retain": True,
                     "data": {"n": n, "pad": blob}})
            self.assertEqual(self.reply(ws, n)["op"], "ok")
            if d.count(compacting):
                break
        else:
            self.fail("no compaction after 100 MB")
        ws.close()
        wait_until(self, lambda: d.ctl_json("status")["bus"]["journal_bytes"] < 16 << 20,
                   what="the compacted journal")
        # read more in the same cohortd (past the 1,000 sent before, from the
        # snapshot), then the rest after a restart
        self.assertEqual(self.drain(d, 1400), list(range(600, 2000)))
        d.stop()
        d = self.daemon(state=state)
        self.assertEqual(self.drain(d, 1000), list(range(2000, 3000)))
        s = self.session(d)
        self.assertEqual((s["queued"], s["spilled"], s["dropped"]), (0, 0, 0), s)
        d.stop()


if __name__ == "__main__":
    unittest.main()
