#!/usr/bin/python3
"""The migration kit (contrib/python/cohort_compat.py, state_mirror_dir,
etc/jarvis.ini): a program written against the old coordination names
(jarvis_old.py) run against a real cohortd."""
import json
import os
import re
import subprocess
import sys
import time
import unittest

from harness import COHORTD, FACTOR, PY, SRC, CohortTest, wait_until

OLD = os.path.join(SRC, "tests", "integration", "jarvis_old.py")
sys.path.insert(0, os.path.join(SRC, "contrib", "python"))


class Migration(CohortTest):
    def daemon(self, extra=""):
        self.mirror = self.path("cross_repo")
        d = self.cohortd(f"""
[cohort]
bus_ack_timeout = 1s
state_mirror_dir = {self.mirror}
state_mirror_topics = jarvis.state.*
{extra}
[service:idle]
command = /bin/sleep 1000
ready = delay:0
""")
        d.wait_log(r"^stack is up")
        d.wait_socket()
        self.env = dict(os.environ, COHORT_BUS="unix:" + os.path.join(d.run_dir, "bus.sock"),
                        PYTHONPATH=os.path.join(SRC, "contrib", "python"))
        self.env.pop("COHORT_TOKEN", None)
        return d

    def old(self, *args, **kw):
        return subprocess.Popen([PY, "-B", OLD, *args], env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, **kw)

    def finish(self, p, timeout=60):
        out, err = p.communicate(timeout=timeout * FACTOR)
        self.assertEqual(p.returncode, 0, f"jarvis_old.py failed:\n{err}")
        return out

    def test_two_processes_contend_a_lock(self):
        d = self.daemon()
        out = self.path("critical")
        procs = [self.old("lock", "vbia_state", out, "40") for _ in range(2)]
        for p in procs:
            self.finish(p)
        with open(out) as f:
            lines = f.read().split()
        events = list(zip(lines[0::2], lines[1::2]))
        self.assertEqual(len(events), 160)
        # Never two inside: every enter is followed by the exit of the same pid.
        for i in range(0, len(events), 2):
            (e1, p1), (e2, p2) = events[i], events[i + 1]
            self.assertEqual((e1, e2, p1), ("enter", "exit", p2), f"interleaved at {i}: {events[i:i + 4]}")
        self.assertEqual(len({p for _, p in events}), 2, "both processes got the lock")
        d.stop()

    def test_acquire_yields_false_after_timeout(self):
        d = self.daemon()
        flag = self.path("held")
        holder = self.old("hold", "heartbeat", "30", flag)
        wait_until(self, lambda: os.path.exists(flag), timeout=20, what="the holder")
        r = json.loads(self.finish(self.old("try", "heartbeat", "0.5")))
        self.assertFalse(r["acquired"])
        self.assertGreaterEqual(r["waited"], 0.45)
        self.assertLess(r["waited"], 5 * FACTOR)
        holder.kill()
        holder.communicate()
        # The holder's connection went: its lease with it, and the lock is free.
        r = json.loads(self.finish(self.old("try", "heartbeat", "10")))
        self.assertTrue(r["acquired"])
        d.stop()

    def test_publish_subscribe_with_ack_required(self):
        d = self.daemon()
        out = self.path("got")
        sub = self.old("sub", "vbia_events", out, "1")
        wait_until(self, lambda: os.path.exists(out + ".ready"), timeout=20, what="the subscriber")
        self.finish(self.old("pub", "vbia_events", "3", "yes"))

        def records():
            if not os.path.exists(out):
                return []
            with open(out) as f:
                return [json.loads(x) for x in f]
        # The first delivery's callback raised: not acknowledged, so cohortd
        # sends it again after bus_ack_timeout (1 s); all three arrive.
        wait_until(self, lambda: len({r["n"] for r in records()}) == 3 and len(records()) >= 4,
                   timeout=20, what="every message, the failed one twice")
        recs = records()
        first = [r for r in recs if r["n"] == recs[0]["n"]]
        self.assertGreaterEqual(len(first), 2, recs)
        self.assertEqual(first[0]["message_id"], first[1]["message_id"])
        for r in recs:
            self.assertEqual(r["payload"], {"n": r["n"]})
            self.assertEqual((r["source"], r["priority"], r["ack_required"], r["topic"]),
                             ("old-pub", "high", True, "vbia_events"))
        sub.kill()
        sub.communicate()
        d.stop()

    def test_state_through_the_mirrored_file(self):
        d = self.daemon()
        got = json.loads(self.finish(self.old("state", "prime_state", '{"status": "ready", "n": 1}')))
        self.assertEqual(got, {"status": "ready", "n": 1})
        path = os.path.join(self.mirror, "prime_state.json")
        wait_until(self, lambda: os.path.exists(path), what="prime_state.json")
        with open(path) as f:
            self.assertEqual(json.load(f), {"status": "ready", "n": 1})
        # A reader polling the file sees a whole value at every read while
        # the writer rewrites it (rename, never a part written in place).
        stop = time.monotonic() + 2 * FACTOR
        writer = self.old("state", "prime_state", '{"status": "busy", "pad": "' + "x" * 20000 + '"}')
        seen = set()
        while time.monotonic() < stop and (writer.poll() is None or len(seen) < 2):
            with open(path) as f:
                seen.add(json.load(f)["status"])
        self.finish(writer)
        def status():
            with open(path) as f:
                return json.load(f)["status"]
        wait_until(self, lambda: status() == "busy", what="the new value")
        self.assertFalse([n for n in os.listdir(self.mirror) if n.endswith(".new")])
        # A topic outside state_mirror_topics has no file; an unrelated
        # file in the directory is left alone.
        with open(os.path.join(self.mirror, "legacy.json"), "w") as f:
            f.write("{}")
        self.env["COHORT_STATE_PREFIX"] = "other."
        self.finish(self.old("state", "reactor_state", "{}"))
        time.sleep(0.3)
        self.assertEqual(sorted(os.listdir(self.mirror)), ["legacy.json", "prime_state.json"])
        # Kept across a restart (the journal), and written again at start.
        d.stop()
        os.unlink(path)
        with open(d.path) as f:
            d2 = self.cohortd(f.read())
        d2.wait_log(r"^stack is up")
        wait_until(self, lambda: os.path.exists(path), what="prime_state.json after a restart")
        with open(path) as f:
            self.assertEqual(json.load(f)["status"], "busy")
        d2.stop()

    def test_cleared_value_removes_its_file(self):
        import asyncio
        import cohort_client
        d = self.daemon()
        self.finish(self.old("state", "heartbeat", '{"beat": 1}'))
        path = os.path.join(self.mirror, "heartbeat.json")
        wait_until(self, lambda: os.path.exists(path), what="heartbeat.json")

        async def clear():
            async with cohort_client.Client(bus=self.env["COHORT_BUS"]) as c:
                await c.publish("jarvis.state.heartbeat", None, qos=1, retain=True)
        asyncio.run(asyncio.wait_for(clear(), 30 * FACTOR))
        wait_until(self, lambda: not os.path.exists(path), what="heartbeat.json removed")
        d.stop()

    def test_event_log_kept_at_its_cap(self):
        import asyncio
        import cohort_compat
        d = self.daemon()
        os.environ["COHORT_BUS"] = self.env["COHORT_BUS"]
        self.addCleanup(os.environ.pop, "COHORT_BUS")

        async def go():
            for i in range(7):
                await cohort_compat.append_state("vbia_events", {"i": i}, cap=5)
            got = await cohort_compat.get_state("vbia_events")
            await cohort_compat.close()
            return got
        got = asyncio.run(asyncio.wait_for(go(), 30 * FACTOR))
        self.assertEqual(got, [{"i": i} for i in range(2, 7)])
        path = os.path.join(self.mirror, "vbia_events.json")
        wait_until(self, lambda: os.path.exists(path), what="vbia_events.json")
        with open(path) as f:
            self.assertEqual(json.load(f), got)
        d.stop()

    def test_unwritable_mirror_is_one_warning(self):
        blocker = self.path("file")
        with open(blocker, "w") as f:
            f.write("not a directory")
        d = self.cohortd(f"""
[cohort]
state_mirror_dir = {blocker}/sub
state_mirror_topics = jarvis.state.*
[service:idle]
command = /bin/sleep 1000
ready = delay:0
""")
        d.wait_log(r"^stack is up")
        self.env = dict(os.environ, COHORT_BUS="unix:" + os.path.join(d.run_dir, "bus.sock"),
                        PYTHONPATH=os.path.join(SRC, "contrib", "python"))
        for i in range(3):
            self.finish(self.old("state", "vbia_state", json.dumps({"i": i})))
        d.wait_log(r"state_mirror_dir: cannot write .*vbia_state.json")
        time.sleep(0.2)
        self.assertEqual(d.count(r"state_mirror_dir: cannot"), 2, d.dump())  # mkdir, then one write
        got = json.loads(self.finish(self.old("state", "vbia_state", '{"i": 9}')))
        self.assertEqual(got, {"i": 9})
        d.stop()


class JarvisIni(CohortTest):
    def test_jarvis_ini_passes_check(self):
        env = dict(os.environ, JARVIS_HOME=self.tmp)
        p = subprocess.run([COHORTD, "--check", "-c", os.path.join(SRC, "etc", "jarvis.ini")],
                           capture_output=True, text=True, env=env, timeout=30 * FACTOR)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        for name in ("core", "prime", "reactor", "trinity"):
            self.assertRegex(p.stdout, rf"(?m)^\s+{name}\b")


if __name__ == "__main__":
    unittest.main()
