#!/usr/bin/python3
"""The lock service through the control socket and `cohortctl lock`:
mutual exclusion, exact TTL expiry, renew, release on holder death, FIFO,
shared and exclusive, tokens across a kill -9, service patterns, bad input;
a lost lease's process group stopped before the next holder (also over the
bus), and `cohortctl lock` on a terminal."""
import asyncio
import json
import os
import pty
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import unittest

from harness import (COHORTCTL, FACTOR, PY, SRC, CohortTest, children_of, free_port, pid_alive, read_line, wait_until,
                     read_token, token_command)

sys.path.insert(0, os.path.join(SRC, "contrib", "python"))
import cohort_client  # noqa: E402

BASE = """
[service:idle]
command = /bin/sleep 1000
ready = delay:0
"""


class Client:
    """A raw control-socket connection: one lock session."""

    def __init__(self, d):
        self.s = d.connect()
        self.buf = bytearray()

    def send(self, obj):
        self.s.sendall((json.dumps(obj) + "\n").encode())

    def recv(self):
        return json.loads(read_line(self.s, self.buf))

    def call(self, **obj):
        self.send(obj)
        return self.recv()

    def acquire(self, name, **kw):
        return self.call(cmd="lock.acquire", name=name, **kw)

    def close(self):
        self.s.close()


class Locks(CohortTest):
    def daemon(self, text=BASE, **kw):
        return self.started(text, **kw)

    def test_mutual_exclusion_under_contention(self):
        d = self.daemon()
        counter, log = self.path("counter"), self.path("log")
        with open(counter, "w") as f:
            f.write("0\n")
        script = (f"read n < {counter}; echo start $$ >> {log}; sleep 0.01; "
                  f"echo $((n+1)) > {counter}; echo end $$ >> {log}")
        procs = [subprocess.Popen([COHORTCTL, "-s", d.socket, "lock", "counter", "--", "/bin/sh", "-c",
                                   script]) for _ in range(24)]
        for p in procs:
            self.assertEqual(p.wait(60 * FACTOR), 0)
        with open(counter) as f:
            self.assertEqual(f.read().strip(), "24")
        with open(log) as f:
            lines = f.read().split("\n")[:-1]
        self.assertEqual(len(lines), 48)
        for i in range(0, 48, 2):   # start/end pairs never interleave
            a, b = lines[i].split(), lines[i + 1].split()
            self.assertEqual((a[0], b[0], a[1]), ("start", "end", b[1]), lines[i:i + 2])
        self.assertEqual(d.ctl_json("locks")["locks"], [])
        d.stop()

    def test_ttl_expiry_is_on_time(self):
        d = self.daemon()
        a, b = Client(d), Client(d)
        for ttl in (300, 1000):
            # the lease runs from the grant, which is after t0 and before the
            # reply arrives: so expiry can be no earlier than t0 + ttl
            t0, w0 = time.monotonic(), time.time() * 1000
            r = a.acquire(f"exp{ttl}", ttl_ms=ttl)
            w1, t1 = time.time() * 1000, time.monotonic()
            self.assertTrue(r["ok"])
            self.assertGreater(r["token"], 0)
            # expires_ms is the grant's wall clock plus the TTL, and the grant
            # falls between the request and its answer (ms rounding aside)
            self.assertGreaterEqual(r["expires_ms"], w0 + ttl - 1)
            self.assertLessEqual(r["expires_ms"], w1 + ttl + 1)
            g = b.acquire(f"exp{ttl}", wait_ms=5000, ttl_ms=30000)
            took = (time.monotonic() - t0) * 1000
            self.assertTrue(g["ok"])
            self.assertGreater(g["token"], r["token"])
            self.assertGreaterEqual(took, ttl)
            # Soon after the deadline, by cohortd's own clock: each
            # expires_ms is its grant time plus the TTL, so a stall of this
            # process does not count.  cohortd's own wake-up on a loaded
            # machine does (23 ms seen at a load of 10 on 2 cores; more under
            # ASan): a periodic sweep would be late by up to its period. The
            # 20 ms of the lock table's timer against the loop's own is
            # lock::ttl_expiry_is_exact_and_grants_the_waiter's to check.
            late = g["expires_ms"] - 30000 - r["expires_ms"]
            self.assertGreaterEqual(late, -1)
            self.assertLessEqual(late, 150 * FACTOR, f"granted {late} ms after the end of a {ttl} ms lease")
        d.wait_log(r"^lock exp300: lease \d+ of uid 0 \(pid \d+\) expired$")
        self.assertEqual(a.call(cmd="lock.renew", name="exp300", token=r["token"])["error"], "not held")
        d.stop()

    def test_renew_keeps_the_lease(self):
        d = self.daemon()
        a, b = Client(d), Client(d)
        # Renewed every 80 ms, a lease of 600 ms outlives a stall of this
        # process on a loaded machine (one of 200 ms did not).
        ttl = 600
        t0 = time.monotonic()
        r = a.acquire("job", ttl_ms=ttl)
        b.send({"cmd": "lock.acquire", "name": "job", "wait_ms": 10000})
        b.s.setblocking(False)
        for _ in range(10):         # 800 ms of renewals every 80 ms: past the first TTL's end
            time.sleep(0.08)
            n = a.call(cmd="lock.renew", name="job", token=r["token"], ttl_ms=ttl)
            self.assertTrue(n["ok"], n)
            with self.assertRaises(BlockingIOError):
                b.s.recv(1)          # b still waits
        renewed = time.monotonic()
        self.assertGreater(renewed - t0, ttl / 1000, "the renewals must outlast the first TTL")
        b.s.setblocking(True)
        g = b.recv()                 # renewals stop: b gets it when the TTL runs out
        self.assertTrue(g["ok"])
        waited = time.monotonic() - renewed
        self.assertGreater(waited, ttl / 1000 - 0.1, "granted before the renewed TTL ran out")
        self.assertLess(waited, ttl / 1000 + 0.5 * FACTOR)
        d.stop()

    def test_holder_killed_next_waiter_granted_quickly(self):
        d = self.daemon()
        holder = subprocess.Popen([COHORTCTL, "-s", d.socket, "lock", "db", "--", "/bin/sleep", "1000"],
                                  start_new_session=True)
        wait_until(self, lambda: d.ctl_json("locks")["locks"], what="the holder's lease")
        w = Client(d)
        w.send({"cmd": "lock.acquire", "name": "db", "wait_ms": 10000})
        wait_until(self, lambda: d.ctl_json("locks")["locks"][0]["waiters"], what="the waiter")
        t0 = time.monotonic()
        os.kill(holder.pid, signal.SIGKILL)
        g = w.recv()
        took = (time.monotonic() - t0) * 1000
        self.assertTrue(g["ok"])
        # the hand-over waits for the holder's command to have died of its
        # TERM (a few ms; seconds on a loaded machine), not for the TTL
        # (30 s): a third of the TTL tells the two apart however busy the
        # machine (100 ms failed at a load average of 45)
        self.assertLess(took, 10000, f"{took:.1f} ms")
        holder.wait()
        d.stop()

    def test_cmd_is_ended_when_cohortctl_lock_is_killed(self):
        """flock's lock lives as long as its command; cohortctl's lease ends
        with cohortctl, so CMD must not go on unprotected: it gets TERM."""
        d = self.daemon()
        pidfile = self.path("cmd.pid")
        holder = subprocess.Popen([COHORTCTL, "-s", d.socket, "lock", "db", "--", "/bin/sh", "-c",
                                   f'echo $$ > {pidfile}.tmp; mv {pidfile}.tmp {pidfile}; exec sleep 1000'],
                                  start_new_session=True)
        wait_until(self, lambda: os.path.exists(pidfile), what="the command")
        with open(pidfile) as f:
            cmd = int(f.read())
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()

        def cmd_gone():
            try:
                with open(f"/proc/{cmd}/stat") as f:
                    return f.read().split(") ")[1][0] == "Z"
            except FileNotFoundError:
                return True
        wait_until(self, cmd_gone, what="the command's end")
        # the lease lasts until cohortd has seen the command's group gone
        wait_until(self, lambda: d.ctl_json("locks")["locks"] == [], what="the lease to end")
        d.stop()

    def test_fifo_and_a_waiter_that_leaves(self):
        d = self.daemon()
        a = Client(d)
        ta = a.acquire("q")["token"]
        waiters = []
        for i in range(4):
            c = Client(d)
            c.send({"cmd": "lock.acquire", "name": "q", "wait_ms": 10000})
            wait_until(self, lambda: len(d.ctl_json("locks")["locks"][0]["waiters"]) == i + 1,
                       what=f"waiter {i}")
            waiters.append(c)
        waiters[1].close()           # leaves the queue
        wait_until(self, lambda: len(d.ctl_json("locks")["locks"][0]["waiters"]) == 3,
                   what="the leaver gone")
        self.assertTrue(a.call(cmd="lock.release", name="q", token=ta)["ok"])
        prev = ta
        for i in (0, 2, 3):
            g = waiters[i].recv()
            self.assertTrue(g["ok"])
            self.assertGreater(g["token"], prev)
            prev = g["token"]
            self.assertTrue(waiters[i].call(cmd="lock.release", name="q", token=g["token"])["ok"])
        d.stop()

    def test_shared_and_exclusive(self):
        d = self.daemon()
        r1, r2, w, r3 = Client(d), Client(d), Client(d), Client(d)
        t1 = r1.acquire("cfg", mode="shared")["token"]
        t2 = r2.acquire("cfg", mode="shared")["token"]
        self.assertEqual(w.acquire("cfg")["error"], "timeout")          # try once
        w.send({"cmd": "lock.acquire", "name": "cfg", "wait_ms": 10000})
        wait_until(self, lambda: d.ctl_json("locks")["locks"][0]["waiters"], what="w queued")
        r3.send({"cmd": "lock.acquire", "name": "cfg", "mode": "shared", "wait_ms": 10000})
        info = d.ctl_json("locks")["locks"][0]
        self.assertEqual(info["mode"], "shared")
        self.assertEqual(len(info["holders"]), 2)
        wait_until(self, lambda: len(d.ctl_json("locks")["locks"][0]["waiters"]) == 2, what="r3 queued")
        r1.call(cmd="lock.release", name="cfg", token=t1)
        r2.call(cmd="lock.release", name="cfg", token=t2)
        gw = w.recv()
        self.assertTrue(gw["ok"])
        self.assertEqual(d.ctl_json("locks")["locks"][0]["mode"], "exclusive")
        w.call(cmd="lock.release", name="cfg", token=gw["token"])
        self.assertTrue(r3.recv()["ok"])
        _, out, _ = d.ctl("locks")
        self.assertRegex(out.splitlines()[0], r"^NAME +MODE +HOLDER +TOKEN +EXPIRES +WAITERS$")
        self.assertRegex(out.splitlines()[1], r"^cfg +shared +uid 0 \(pid \d+\) +\d+ +in \d+s +0$")
        d.stop()

    def test_tokens_increase_across_kill9_and_restart(self):
        state = self.path("state")
        text = f"[cohort]\nstate_dir = {state}\n" + BASE
        d = self.daemon(text)
        c = Client(d)
        tokens = [c.acquire(f"t{i}")["token"] for i in range(5)]
        self.assertEqual(tokens, sorted(set(tokens)))
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait()
        d.returncode = -9
        e = self.daemon(text)
        t = Client(e).acquire("t0")["token"]
        self.assertGreater(t, tokens[-1])
        e.stop()

    def test_service_patterns(self):
        out = self.path("out")
        d = self.daemon(BASE + f"""
[service:worker]
command = /bin/sh -c "{COHORTCTL} lock jobs.nightly -- true; echo $? >> {out};
    {COHORTCTL} lock other -- true 2>> {out}.err; echo $? >> {out}; exec sleep 1000"
locks = jobs.*
ready = delay:0
""".replace("{COHORTCTL}", COHORTCTL))
        wait_until(self, lambda: os.path.exists(out) and len(open(out).read().split()) == 2,
                   what="the worker's two tries")
        with open(out) as f:
            self.assertEqual(f.read().split(), ["0", "1"])
        with open(out + ".err") as f:
            self.assertIn("lock other: not allowed: the name matches none of this service's locks patterns",
                          f.read())
        d.stop()

    def test_bad_requests(self):
        d = self.daemon()
        c = Client(d)
        cases = [
            ({"name": "bad name"}, "bad lock name"),
            ({"name": ""}, "bad lock name"),
            ({"name": "x" * 256}, "bad lock name"),
            ({"name": "x", "ttl_ms": -1}, "ttl_ms must be from 1 to 86400000"),
            ({"name": "x", "ttl_ms": 0}, "ttl_ms must be from 1"),
            ({"name": "x", "ttl_ms": 10 ** 15}, "ttl_ms must be from 1"),
            ({"name": "x", "ttl_ms": "5s"}, 'field "ttl_ms" must be an integer (milliseconds)'),
            ({"name": "x", "wait_ms": -3}, "wait_ms must be from 0"),
            ({"name": "x", "mode": "both"}, 'field "mode" must be "exclusive" or "shared"'),
            ({}, 'missing field "name"'),
        ]
        for extra, want in cases:
            r = c.call(cmd="lock.acquire", **extra)
            self.assertFalse(r["ok"], extra)
            self.assertIn(want, r["error"], extra)
        missing = next(p for p in range(4000000, 4100000) if not os.path.exists(f"/proc/{p}"))
        for extra, want in [({"pgid": 1}, 'field "pgid" must be an integer from 2 to 2147483647'),
                            ({"pgid": "7"}, 'field "pgid" must be an integer from 2 to 2147483647'),
                            ({"pgid": missing}, f"pgid: no process group {missing}"),
                            ({"pgid": os.getpgid(d.proc.pid)},
                             f"pgid: process group {os.getpgid(d.proc.pid)} is cohortd's own"),
                            ({"pgid": os.getpgrp(), "stop_timeout_ms": -1},
                             'field "stop_timeout_ms" must be an integer from 0 to 3600000')]:
            r = c.call(cmd="lock.acquire", name="x", **extra)
            self.assertFalse(r["ok"], extra)
            self.assertEqual(r["error"], want, extra)
        self.assertEqual(c.call(cmd="lock.renew", name="x", token=12345)["error"], "not held")
        self.assertEqual(c.call(cmd="lock.release", name="x", token=12345)["error"], "not held")
        self.assertIn('missing field "token"', c.call(cmd="lock.release", name="x")["error"])
        self.assertIn('"token" must be a positive integer', c.call(cmd="lock.renew", name="x", token=-4)["error"])
        # cohortctl lock checks durations itself: a usage error, exit 2, nothing run
        for args, want in [(["--ttl", "1h30m"], "--ttl: expected a duration such as"),
                           (["--ttl", "-1"], "--ttl: expected a duration such as"),
                           (["--ttl", "50ms"], "--ttl: expected a duration from 100ms to 1d, got 50ms"),
                           (["--ttl", "2d"], "--ttl: expected a duration from 100ms to 1d, got 2d"),
                           (["--wait", "8d"], "--wait: expected a duration of at most 7d, got 8d"),
                           (["--wait", "soon"], "--wait: expected a duration such as"),
                           (["--stop-timeout", "2h"], "--stop-timeout: expected a duration of at most 1h, got 2h"),
                           (["--stop-timeout", "x"], "--stop-timeout: expected a duration such as")]:
            rc, out, err = d.ctl("lock", *args, "x", "--", "touch", self.path("ran"), expect=2)
            self.assertIn(want, err, args)
        self.assertFalse(os.path.exists(self.path("ran")))
        d.stop()

    def test_bad_requests_read_alike_on_both_transports(self):
        """One reader of lock requests (lock_request.c): the control socket
        and the bus check the same fields the same way and say the same
        words, the bus naming its op first.  (The bus once took a token of 0
        or less, and its messages differed.)"""
        d = self.daemon()
        c = Client(d)
        cases = [
            ("lock.acquire", {}, 'missing field "name" (a string)'),
            ("lock.acquire", {"name": 5}, 'field "name" must be a string'),
            ("lock.acquire", {"name": "x", "mode": "both"}, 'field "mode" must be "exclusive" or "shared"'),
            ("lock.acquire", {"name": "x", "ttl_ms": "5s"}, 'field "ttl_ms" must be an integer (milliseconds)'),
            ("lock.acquire", {"name": "x", "pgid": 1}, 'field "pgid" must be an integer from 2 to 2147483647'),
            ("lock.acquire", {"name": "x", "pgid": os.getpgrp(), "stop_timeout_ms": -1},
             'field "stop_timeout_ms" must be an integer from 0 to 3600000'),
            ("lock.renew", {"name": "x"}, 'missing field "token" (a positive integer)'),
            ("lock.renew", {"name": "x", "token": 0}, 'field "token" must be a positive integer'),
            ("lock.release", {"token": 4}, 'missing field "name" (a string)'),
            ("lock.release", {"name": "x", "token": -4}, 'field "token" must be a positive integer'),
        ]
        for op, fields, want in cases:
            self.assertEqual(c.call(cmd=op, **fields), {"ok": False, "error": want}, (op, fields))

        async def go():
            b = cohort_client.Client(bus=f"unix:{d.run_dir}/bus.sock", reconnect=False)
            await b.connect()
            for op, fields, want in cases:
                with self.assertRaises(cohort_client.BusError, msg=(op, fields)) as cm:
                    await b._request({"op": op, **fields})
                self.assertEqual(str(cm.exception), f"{op}: {want}", (op, fields))
            await b.close()
        asyncio.run(asyncio.wait_for(go(), 30 * FACTOR))
        self.assertEqual(d.ctl_json("locks")["locks"], [])
        d.stop()

    def test_cohortctl_lock_wait_and_lost_lease(self):
        d = self.daemon()
        holder = subprocess.Popen([COHORTCTL, "-s", d.socket, "lock", "--ttl", "2s", "res", "--",
                                   "/bin/sleep", "1000"], start_new_session=True)
        wait_until(self, lambda: d.ctl_json("locks")["locks"], what="the lease")
        rc, _, err = d.ctl("lock", "--wait", "200ms", "res", "--", "true", expect=1)
        self.assertIn("lock res not had within 200ms", err)
        _, out, _ = d.ctl("lock", "--shared", "other", "--", "/bin/sh", "-c",
                          "echo $COHORT_LOCK_NAME $COHORT_LOCK_TOKEN; exit 3", expect=3)
        self.assertRegex(out, r"^other \d+\n$")
        d.ctl("lock", "res", expect=2)   # no command
        # cohortd goes away: the holder stops its command and exits 1 (the
        # command is forked once the lease is granted: looked for until there)
        child = wait_until(self, lambda: [int(x) for x in subprocess.run(
            ["pgrep", "-s", str(holder.pid)], capture_output=True, text=True).stdout.split()
            if int(x) != holder.pid], what="the holder's command")
        d.stop()
        self.assertEqual(holder.wait(10 * FACTOR), 1)
        for p in child:
            wait_until(self, lambda: not pid_alive(p), what="the command to stop")

    def test_lost_lease_stops_what_the_command_started(self):
        """A shell script's child would go on without the lock if only the
        shell got TERM: cohortctl, leading its process group (a service's
        command, a shell's job), stops the whole group."""
        d = self.daemon()
        pidfile = self.path("bg.pid")
        holder = subprocess.Popen([COHORTCTL, "-s", d.socket, "lock", "res", "--", "/bin/sh", "-c",
                                   f"sleep 1000 & echo $! > {pidfile}.tmp; mv {pidfile}.tmp {pidfile}; wait"],
                                  start_new_session=True, stderr=subprocess.PIPE, text=True)
        wait_until(self, lambda: os.path.exists(pidfile), what="the command's child")
        with open(pidfile) as f:
            bg = int(f.read())
        self.addCleanup(lambda: pid_alive(bg) and os.kill(bg, signal.SIGKILL))
        d.stop()    # the lease is lost
        self.assertEqual(holder.wait(10 * FACTOR), 1)
        self.assertIn("lock res lost", holder.stderr.read())
        holder.stderr.close()
        wait_until(self, lambda: not pid_alive(bg), what="the command's child to stop")

    # --- a lost lease's work stops before the next holder starts ------------

    def start_holder(self, d, *opts, trap="", user=None, env=None):
        """cohortctl lock OPTS demo.y -- a shell that starts a grandchild in
        its process group and waits for it; returns cohortctl and the
        grandchild's pid."""
        bg = self.path("bg.pid")
        as_user = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] if user else []
        holder = subprocess.Popen(as_user + [COHORTCTL, "-s", d.socket, "lock", *opts, "demo.y", "--", "/bin/sh",
                                             "-c", f"{trap}sleep 300 & echo $! > {bg}.tmp; mv {bg}.tmp {bg}; wait"],
                                  start_new_session=True, stderr=subprocess.DEVNULL, env=env)
        wait_until(self, lambda: os.path.exists(bg), what="the holder's grandchild")
        with open(bg) as f:
            pid = int(f.read())
        self.addCleanup(lambda: pid_alive(pid) and os.kill(pid, signal.SIGKILL))
        self.addCleanup(lambda: holder.poll() is None and (holder.kill(), holder.wait()))
        return holder, pid

    def start_waiter(self, d):
        """The next cohortctl lock demo.y: its command notes when it started
        and whether the holder's grandchild was still there then."""
        seen = self.path("seen")
        check = ("import sys, time\n"
                 "t = time.time()\n"
                 "pid = open(sys.argv[1]).read().strip()\n"
                 "try:\n"
                 "    state = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()[0]\n"
                 "except OSError:\n"
                 "    state = 'gone'\n"
                 "open(sys.argv[2], 'w').write('%f %s' % (t, 'gone' if state in ('Z', 'gone') else 'alive'))\n")
        w = subprocess.Popen([COHORTCTL, "-s", d.socket, "lock", "demo.y", "--", PY, "-c", check,
                              self.path("bg.pid"), seen], start_new_session=True)
        self.addCleanup(lambda: w.poll() is None and (w.kill(), w.wait()))

        def queued():   # or already through, if the lease ended meanwhile
            locks = d.ctl_json("locks")["locks"]
            return w.poll() is not None or (locks and locks[0]["waiters"])
        wait_until(self, queued, what="the waiter queued")
        return w

    def waiter_saw(self, w):
        """(when the waiter's command started, what it saw)."""
        self.assertEqual(w.wait(30 * FACTOR), 0)
        with open(self.path("seen")) as f:
            t, what = f.read().split()
        return float(t), what

    def test_killed_holders_group_ends_before_the_next_holder_runs(self):
        """kill -9 of cohortctl lock: what its command started in its group
        must be gone before the next holder's command starts."""
        d = self.daemon()
        holder, bg = self.start_holder(d)
        w = self.start_waiter(d)
        os.kill(holder.pid, signal.SIGKILL)
        _, what = self.waiter_saw(w)
        self.assertEqual(what, "gone", "the next holder ran beside the killed holder's grandchild")
        self.assertFalse(pid_alive(bg))
        d.wait_log(r"^lock demo\.y: lease \d+ of uid 0 \(pid \d+\) lost \(its holder went away\): "
                   r"stopping its process group \d+$")
        d.wait_log(r"^lock demo\.y: process group \d+ of lease \d+ ended \d+ ms after the stop signal$")
        self.assertEqual(d.ctl_json("locks")["locks"], [])
        d.stop()

    def test_expired_lease_group_ends_before_the_next_holder_runs(self):
        """A holder that stops renewing (stopped here) loses its lease at
        the TTL: its command's group is stopped by cohortd before the next
        holder starts."""
        d = self.daemon()
        holder, bg = self.start_holder(d, "--ttl", f"{max(1, int(FACTOR))}s")
        os.kill(holder.pid, signal.SIGSTOP)
        w = self.start_waiter(d)
        _, what = self.waiter_saw(w)
        self.assertEqual(what, "gone", "the next holder ran beside the expired holder's grandchild")
        d.wait_log(r"^lock demo\.y: lease \d+ of uid 0 \(pid \d+\) lost \(expired\): "
                   r"stopping its process group \d+$")
        os.kill(holder.pid, signal.SIGKILL)
        d.stop()

    def test_a_group_that_ignores_term_is_killed_after_the_stop_timeout(self):
        d = self.daemon()
        grace = max(1, int(FACTOR))     # seconds: long enough to see it stopping
        holder, bg = self.start_holder(d, "--stop-timeout", f"{grace}s", trap="trap '' TERM; ")
        w = self.start_waiter(d)
        t0 = time.time()
        os.kill(holder.pid, signal.SIGKILL)
        # meanwhile the lease is still held, as "stopping"
        wait_until(self, lambda: d.ctl_json("locks")["locks"][0]["holders"][0]["stopping"],
                   what="the lease shown as stopping")
        _, out, _ = d.ctl("locks")
        self.assertRegex(out.splitlines()[1], r"^demo\.y +exclusive +uid 0 \(pid \d+\) +\d+ +stopping +1$")
        started, what = self.waiter_saw(w)
        self.assertEqual(what, "gone")
        self.assertGreaterEqual(started - t0, grace)
        _, line = d.wait_log(rf"^lock demo\.y: process group \d+ of lease \d+ still runs {grace}s after the "
                             r"stop signal: killed$")
        self.assertGreaterEqual(started * 1000, line.ms)
        self.assertEqual(line.level, "WARN")
        d.stop()

    @unittest.skipUnless(os.geteuid() == 0 and shutil.which("setpriv"), "needs root and setpriv")
    def test_over_the_bus_too_the_killed_holders_group_ends_first(self):
        """A service's process as another user takes its lock over the bus
        (the control socket refuses it): the bus takes the group too."""
        os.chmod(self.tmp, 0o777)
        tok = self.path("token")
        d = self.daemon(BASE + f"""
[service:worker]
command = {token_command(tok)}
user = nobody
ready = delay:0
""")
        os.chmod(d.dir, 0o755)
        os.chmod(d.run_dir, 0o755)
        token = read_token(self, tok, what="the worker's token")
        holder, bg = self.start_holder(d, user=65534, env=dict(os.environ, COHORT_TOKEN=token))
        self.assertIn("(bus, pid", d.ctl_json("locks")["locks"][0]["holders"][0]["owner"])
        w = self.start_waiter(d)
        os.kill(holder.pid, signal.SIGKILL)
        _, what = self.waiter_saw(w)
        self.assertEqual(what, "gone", "the next holder ran beside the killed holder's grandchild")
        d.wait_log(r"^lock demo\.y: lease \d+ of service:worker \(bus, pid \d+\) lost \(its holder went away\): "
                   r"stopping its process group \d+$")
        d.stop()

    def test_the_bus_takes_a_group_on_its_unix_socket_only(self):
        """cohort_client's lock_acquire(pgid=...): a TCP peer has no uid to
        check the group with; on the unix socket a lost lease stops it."""
        port = free_port()
        tok = self.path("token")
        d = self.daemon(f"[cohort]\nbus_listen = 127.0.0.1:{port}\n" + BASE + f"""
[service:app]
command = {token_command(tok)}
ready = delay:0
""")
        token = read_token(self, tok)
        work = subprocess.Popen(["/bin/sleep", "300"], start_new_session=True)
        self.addCleanup(lambda: work.poll() is None and (work.kill(), work.wait()))

        async def go():
            async with cohort_client.Client(bus=f"ws://127.0.0.1:{port}/", token=token) as c:
                with self.assertRaisesRegex(cohort_client.BusError, r"^lock\.acquire: pgid is taken on the "
                                                                    r"unix socket only \(its uid is checked\)$"):
                    await c.lock_acquire("x", pgid=work.pid)
                with self.assertRaisesRegex(cohort_client.BusError, "field \"pgid\" must be an integer from 2 to"):
                    await c.lock_acquire("x", pgid=1)
            c = cohort_client.Client(bus=f"unix:{d.run_dir}/bus.sock", reconnect=False)
            await c.connect()
            await c.lock_acquire("x", pgid=work.pid, stop_timeout_ms=1000)
            await c.close()     # the lease is lost with the connection
        asyncio.run(asyncio.wait_for(go(), 30 * FACTOR))
        d.wait_log(rf"^lock x: lease \d+ of admin \(bus, pid \d+\) lost \(its holder went away\): "
                   rf"stopping its process group {work.pid}$")
        wait_until(self, lambda: work.poll() is not None, what="the group stopped")
        self.assertEqual(work.returncode, -signal.SIGTERM)
        wait_until(self, lambda: d.ctl_json("locks")["locks"] == [], what="the lease to end")
        d.stop()

    def test_a_service_that_runs_cohortctl_lock_stops_with_its_command(self):
        """CMD is no longer in the service's process group: the service's
        stop signal reaches cohortctl, which passes it on to CMD's group."""
        bg = self.path("bg.pid")
        d = self.daemon(BASE + f"""
[service:job]
command = {COHORTCTL} lock svc.x --
    /bin/sh -c "sleep 300 & echo $! > {bg}.tmp; mv {bg}.tmp {bg}; wait"
ready = delay:0
""")
        wait_until(self, lambda: os.path.exists(bg), what="the command's child")
        with open(bg) as f:
            pid = int(f.read())
        self.addCleanup(lambda: pid_alive(pid) and os.kill(pid, signal.SIGKILL))
        d.ctl("stop", "job")
        wait_until(self, lambda: not pid_alive(pid), what="the command's child to stop")
        _, line = d.wait_state("job", "stopped")
        self.assertEqual(line.reason, "stopped (exited with code 143)")   # CMD's TERM
        self.assertEqual(d.ctl_json("locks")["locks"], [])
        self.assertEqual(d.count(r"^lock svc\.x: "), 0)      # stopped by TERM, released: not lost
        d.stop()

    def test_a_command_killed_while_it_waits_for_the_lock(self):
        """CMD's process waits for the lease in its group: killed meanwhile,
        cohortctl still sees it once the lease comes, and lets go."""
        d = self.daemon()
        a = Client(d)
        ta = a.acquire("w")["token"]
        b = subprocess.Popen([COHORTCTL, "-s", d.socket, "lock", "w", "--", "true"], start_new_session=True)
        self.addCleanup(lambda: b.poll() is None and (b.kill(), b.wait()))
        wait_until(self, lambda: d.ctl_json("locks")["locks"][0]["waiters"], what="b queued")
        kids = children_of(b.pid)
        self.assertEqual(len(kids), 1, kids)
        os.kill(kids[0][0], signal.SIGKILL)
        self.assertTrue(a.call(cmd="lock.release", name="w", token=ta)["ok"])
        self.assertEqual(b.wait(10 * FACTOR), 128 + signal.SIGKILL)
        self.assertEqual(d.ctl_json("locks")["locks"], [])
        d.stop()

    def test_cohortd_exits_while_a_lost_lease_group_is_stopping(self):
        """A shutdown does not wait out the stop timeout of a lost lease's
        group: its KILL comes at the exit."""
        d = self.daemon()
        holder, bg = self.start_holder(d, "--stop-timeout", "1h", trap="trap '' TERM; ")
        os.kill(holder.pid, signal.SIGKILL)
        d.wait_log(r"^lock demo\.y: lease \d+ of .* lost \(its holder went away\): stopping its process group")
        self.assertTrue(d.ctl_json("locks")["locks"][0]["holders"][0]["stopping"])
        self.assertTrue(pid_alive(bg))     # it ignores TERM, and has 1h
        d.stop()
        self.assertEqual(d.count(r"^lock demo\.y: process group \d+ of lease \d+ still runs at exit: killed$"), 1)
        wait_until(self, lambda: not pid_alive(bg), what="the group killed")

    @unittest.skipUnless(os.geteuid() == 0 and shutil.which("setpriv"), "needs root and setpriv")
    def test_a_group_of_another_user_is_refused(self):
        """cohortd signals a lost lease's group for the asker: only a group
        the asker could signal itself is taken."""
        os.chmod(self.tmp, 0o755)
        d = self.daemon("[cohort]\ncontrol_mode = 0660\ncontrol_group = nogroup\n" + BASE)
        os.chmod(d.dir, 0o755)
        os.chmod(d.run_dir, 0o755)
        roots = subprocess.Popen(["/bin/sleep", "300"], start_new_session=True)
        self.addCleanup(lambda: (roots.kill(), roots.wait()))
        ask = ("import socket, sys\n"
               "s = socket.socket(socket.AF_UNIX)\n"
               "s.connect(sys.argv[1])\n"
               "s.sendall(sys.argv[2].encode() + b'\\n')\n"
               "print(s.makefile().readline(), end='')\n")
        req = json.dumps({"cmd": "lock.acquire", "name": "x", "pgid": roots.pid})
        p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", PY, "-c", ask,
                            d.socket, req], capture_output=True, text=True, timeout=10 * FACTOR)
        r = json.loads(p.stdout)
        self.assertEqual(r, {"ok": False, "error": f"pgid: process group {roots.pid} is not yours: "
                                                   "1 of its processes run as another user"})
        self.assertEqual(d.ctl_json("locks")["locks"], [])
        # its own group is taken: cohortctl lock as nobody
        _, out, _ = d.ctl("lock", "x", "--", "/bin/sh", "-c", "echo ran as $(id -u)", user=65534)
        self.assertEqual(out, "ran as 65534\n")
        d.stop()

    def test_the_command_gets_sigpipe(self):
        """cohortctl ignores SIGPIPE for itself; its command must not."""
        d = self.daemon()
        _, out, err = d.ctl("lock", "p", "--", "/bin/sh", "-c", "yes | head -1; echo ${PIPESTATUS:-done}")
        self.assertEqual(out, "y\ndone\n")
        self.assertEqual(err, "")
        d.stop()

    def test_cohortctl_lock_ctrl_c_reaches_the_command_once(self):
        """Ctrl-C on a terminal goes to the whole foreground group, the
        command included: cohortctl must not send it a second INT.  A TERM
        sent to cohortctl alone does go on to the command."""
        d = self.daemon()
        t = Terminal(self, d, "n = 0\n"
                              "def on_int(s, f):\n"
                              "    global n\n"
                              "    n += 1\n"
                              "    os.write(1, b'INT\\n')\n"
                              "def on_term(s, f):\n"
                              "    os.write(1, b'TERM after %d INT\\n' % n)\n"
                              "    os._exit(10 + n)\n"
                              "signal.signal(signal.SIGINT, on_int)\n"
                              "signal.signal(signal.SIGTERM, on_term)\n")
        os.write(t.master, b"\x03")     # the terminal's INT to its foreground group
        t.wait_output(b"INT", "the command's INT")
        os.kill(t.pid, signal.SIGTERM)  # to cohortctl alone: passed on
        t.wait_output(b"TERM after", "the command's TERM")
        self.assertEqual(t.wait_exit(), 11)
        self.assertIn(b"TERM after 1 INT", t.out, t.out.decode(errors="replace"))
        wait_until(self, lambda: not d.ctl_json("locks")["locks"], what="the lock released")
        d.stop()

    def test_cohortctl_lock_passes_a_hangup_on(self):
        """A terminal that goes away sends HUP to its session leader only:
        cohortctl passes it on, so the command ends instead of holding the
        lock with nobody to see it."""
        d = self.daemon()
        got = self.path("hup")
        t = Terminal(self, d, "def on_hup(s, f):\n"
                              f"    open({got!r}, 'w').close()\n"
                              "    os._exit(7)\n"
                              "signal.signal(signal.SIGHUP, on_hup)\n")
        t.close()       # the terminal goes away
        self.assertEqual(t.wait_exit(), 7)
        self.assertTrue(os.path.exists(got))
        wait_until(self, lambda: not d.ctl_json("locks")["locks"], what="the lock released")
        d.stop()


    @unittest.skipUnless(shutil.which("bash"), "needs bash")
    def test_cohortctl_lock_in_an_interactive_shell(self):
        """CMD has a process group of its own, yet on a terminal it is the
        foreground: it reads the terminal, Ctrl-Z stops the shell's job
        (a script that runs cohortctl too) and fg continues it, a job
        started in the background gets the terminal at fg, and the shell
        has the terminal back after each."""
        d = self.daemon()
        cmd = self.path("cmd.py")
        with open(cmd, "w") as f:
            f.write("import sys\n"
                    "print('ready', flush=True)\n"
                    "for line in sys.stdin:\n"
                    "    if line.strip() == 'quit':\n"
                    "        sys.exit(5)\n"
                    "    print('got:', line.strip().upper(), flush=True)\n")
        lock = f"{COHORTCTL} -s {d.socket} lock tty -- {PY} {cmd}"
        script = self.path("job.sh")
        with open(script, "w") as f:
            f.write(f"{lock}\necho script went on after $?\n")
        pid, master = pty.fork()
        if pid == 0:
            try:
                login_signals()
                os.execve("/bin/bash", ["bash", "--norc", "--noprofile", "-i"],
                          dict(os.environ, PS1="$ ", TERM="dumb"))
            finally:
                os._exit(127)
        t = Terminal.__new__(Terminal)
        t.test, t.pid, t.master, t.out, t.status = self, pid, master, bytearray(), None
        self.addCleanup(t.cleanup)

        def say(text):
            os.write(master, text.encode() + b"\n")

        def expect(text, what):
            t.wait_output(text.encode(), what)
            del t.out[:t.out.index(text.encode()) + len(text)]

        for run in (lock, f"sh {script}"):
            say(run)
            expect("ready", f"the command ({run})")
            say("hello")
            expect("got: HELLO", "the command to read the terminal")
            os.write(master, b"\x1a")            # Ctrl-Z
            expect("Stopped", "the shell to see its job stopped")
            self.assertEqual(len(d.ctl_json("locks")["locks"][0]["holders"]), 1)
            say("fg")
            say("again")
            expect("got: AGAIN", "the command continued, reading the terminal")
            say("quit")
            if run != lock:
                expect("script went on after 5", "the script to go on")
            say("echo status=$?")
            expect(f"status={5 if run == lock else 0}", "the shell back with the status")
            self.assertEqual(d.ctl_json("locks")["locks"], [])
        # Ctrl-C ends the command, and the script that ran cohortctl with it
        say(f"sh {script}")
        expect("ready", "the command in the script")
        os.write(master, b"\x03")            # Ctrl-C
        t.wait_output(b"$ ", "the prompt after Ctrl-C")   # typed before, it would be flushed
        self.assertNotIn(b"script went on", t.out)
        del t.out[:]
        say("echo status=$?")
        expect("status=130", "the shell back after Ctrl-C")
        self.assertEqual(d.ctl_json("locks")["locks"], [])
        # started in the background: it stops when it reads, and fg gives
        # it the terminal
        say("set -b")       # the shell tells of the stop at once
        say(lock + " &")
        expect("Stopped", "the background job to stop at its read")
        say("fg")
        say("late")
        expect("got: LATE", "the command in the foreground after fg")
        say("quit")
        say("echo status=$?")
        expect("status=5", "the shell back with the status")
        say("exit")
        self.assertEqual(t.wait_exit(), 0)
        d.stop()


def login_signals():
    """A terminal's session starts as a login's does: every signal at its
    default and none blocked.  Inherited, an INT ignored by whatever ran the
    tests (nohup, a shell's background job) stays ignored in bash's
    commands, and Ctrl-C does nothing (CI saw that as a random failure)."""
    for sig in range(1, signal.NSIG):
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            try:
                signal.signal(sig, signal.SIG_DFL)
            except (OSError, ValueError):
                pass
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


class Terminal:
    """cohortctl lock tty -- python3 -c SETUP... under a pty of its own (it
    leads the session and the terminal's foreground group); the command
    says "ready" once SETUP has run, then waits for signals."""

    def __init__(self, test, d, setup):
        self.test = test
        script = "import os, signal\n" + setup + "os.write(1, b'ready\\n')\nwhile True:\n    signal.pause()\n"
        self.pid, self.master = pty.fork()
        if self.pid == 0:
            try:
                login_signals()
                os.execv(COHORTCTL, [COHORTCTL, "-s", d.socket, "lock", "tty", "--", "/usr/bin/python3",
                                     "-c", script])
            finally:
                os._exit(127)
        self.out = bytearray()
        self.status = None
        test.addCleanup(self.cleanup)
        self.wait_output(b"ready", "the command under a terminal")

    def wait_output(self, text, what):
        def has():
            while self.master >= 0 and select.select([self.master], [], [], 0)[0]:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:     # EIO: every slave side closed
                    break
                if not chunk:
                    break
                self.out.extend(chunk)
            return text in self.out

        def seen():     # what a failed wait saw: the terminal's last output, the session's processes
            ps = subprocess.run(["ps", "-o", "pid,pgid,tpgid,stat,wchan:20,args", "-s", str(self.pid)],
                                capture_output=True, text=True).stdout
            sigs = ""
            for line in ps.splitlines()[1:]:
                try:
                    with open(f"/proc/{line.split()[0]}/status") as f:
                        sigs += line.split()[0] + " " + " ".join(
                            x.strip() for x in f if x.startswith(("SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt"))) + "\n"
                except OSError:
                    pass
            try:
                import termios
                lflag = termios.tcgetattr(self.master)[3]
                tty = f"ISIG {bool(lflag & termios.ISIG)} ICANON {bool(lflag & termios.ICANON)}"
            except (OSError, termios.error) as e:
                tty = str(e)
            return (f"{what}; the terminal's last output: {bytes(self.out[-300:])!r}; the terminal: {tty}; "
                    f"its session:\n{ps}{sigs}")
        wait_until(self.test, has, what=seen)

    def close(self):
        os.close(self.master)
        self.master = -1

    def wait_exit(self):
        def ended():
            p, st = os.waitpid(self.pid, os.WNOHANG)
            if p:
                self.status = os.waitstatus_to_exitcode(st)
            return p
        wait_until(self.test, ended, what="cohortctl to end")
        return self.status

    def cleanup(self):
        if self.status is None and pid_alive(self.pid):
            os.killpg(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        if self.master >= 0:
            self.close()

if __name__ == "__main__":
    unittest.main(verbosity=2)
