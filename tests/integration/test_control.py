#!/usr/bin/python3
"""The control socket and cohortctl: every command through cohortctl and
through the raw socket, exit codes, authorisation, and bad input."""
import json
import os
import queue
import re
import select
import signal
import socket
import subprocess
import threading
import time
import unittest

from harness import COHORTCTL, FACTOR, VALGRIND, CohortTest, pid_alive, read_line, wait_until

def file_has(path, text):
    try:
        with open(path) as f:
            return text in f.read()
    except FileNotFoundError:
        return False


def line_queue(stream):
    """The lines of stream, read by a thread: get() them with a deadline."""
    q = queue.Queue()
    threading.Thread(target=lambda: [q.put(l) for l in stream], daemon=True).start()
    return q


STACK = """
[service:a]
command = /bin/sleep 1000
ready = delay:0

[service:b]
command = /bin/sleep 1000
requires = a
ready = delay:0

[service:c]
command = /bin/sleep 1000
autostart = no
ready = delay:0
"""


class Control(CohortTest):
    def stack(self, text=STACK, **kw):
        return self.started(text, **kw)

    def test_status_table_and_json(self):
        d = self.stack()
        _, out, _ = d.ctl("status")
        lines = out.splitlines()
        self.assertRegex(lines[0], r"^NAME +STATE +PID +PHASE +UPTIME +RESTARTS +REASON$")
        self.assertEqual(len(lines), 4)
        cols = [m.start() for m in re.finditer(r"\S+", lines[0])]
        for line in lines[1:]:
            # aligned: each cell starts where its header does
            for col in cols[:6]:
                self.assertNotEqual(line[col], " ", line)
        # in plan order: phase 1 (a, c), then phase 2 (b)
        self.assertRegex(lines[1], r"^a +running +\d+ +1 +\d+(ms|s) +0 +started")
        self.assertRegex(lines[2], r"^c +stopped +- +1 +- +0 *$")
        self.assertRegex(lines[3], r"^b +running +\d+ +2 ")
        j = d.ctl_json("status")
        self.assertTrue(j["ok"])
        by = {s["name"]: s for s in j["services"]}
        self.assertEqual(set(by), {"a", "b", "c"})
        for key in ("name", "state", "pid", "phase", "since_ms", "restarts", "last_exit", "reason",
                    "health"):
            self.assertIn(key, by["a"])
        self.assertEqual(by["b"]["phase"], 2)
        self.assertEqual(by["a"]["pid"], d.last_pid("a"))
        j = d.ctl_json("status", "b")
        self.assertEqual([s["name"] for s in j["services"]], ["b"])
        _, _, err = d.ctl("status", "nosuch", expect=1)
        self.assertIn("no such service: nosuch", err)
        d.stop()

    def test_a_wait_for_a_restart_counts_down_and_says_nothing_of_the_last_health(self):
        """In backoff the reason says the delay drawn when it began ("restart
        in 30s"): status adds what is left of it, which counts down, and says
        nothing more of the health checks of the process that ended."""
        d = self.stack("""
[service:flappy]
command = /bin/sleep 1000
ready = delay:0
health = exec:/bin/false
health_interval = 50ms
health_retries = 2
backoff_initial = 30s
backoff_jitter = 0
""")
        seen = []

        def in_backoff():
            seen.append(d.ctl_json("status", "flappy")["services"][0])
            return seen[-1]["state"] == "backoff"
        wait_until(self, in_backoff, what="flappy in backoff after its health checks failed")
        first = seen[-1]
        self.assertRegex(first["reason"], r"^health check failed 2 times: .*; restart in 30s \(failure 1\)$")
        self.assertLessEqual(first["next_start_in_ms"], 30000)
        wait_until(self, lambda: d.ctl_json("status", "flappy")["services"][0]["next_start_in_ms"]
                   < first["next_start_in_ms"], what="the time left to go down")
        _, out, _ = d.ctl("status", "flappy")
        row = out.splitlines()[1]
        self.assertRegex(row, r"; restart in 30s \(failure 1\) \(due in \d\S*\)$")
        self.assertNotIn("(health", row)
        d.stop()

    def test_status_table_is_rendered_by_cohortd(self):
        d = self.stack(STACK + """
[service:sick]
command = /bin/sleep 1000
ready = delay:0
health = exec:/bin/false
health_interval = 50ms
health_retries = 100000

[service:accent]
command = /nonexistent/caf\u00e9
""".replace("\\u00e9", "\u00e9"))
        wait_until(self, lambda: (d.ctl_json("status", "sick")["services"][0]["health"] or "")
                   .startswith("failing"), what="sick's health failing")
        wait_until(self, lambda: d.ctl_json("status", "accent")["services"][0]["state"] in ("backoff", "failed"),
                   what="accent failing")
        services = {s["name"]: s for s in d.ctl_json("status")["services"]}
        table = d.request({"cmd": "status", "format": "table"})
        self.assertEqual(set(table), {"ok", "table"})
        lines = table["table"].splitlines()
        self.assertRegex(lines[0], r"^NAME +STATE +PID +PHASE +UPTIME +RESTARTS +REASON$")
        self.assertEqual([l.split()[0] for l in lines[1:]], ["a", "c", "sick", "accent", "b"])
        rows = {l.split()[0]: l for l in lines[1:]}
        self.assertIn("caf\u00e9", services["accent"]["reason"])
        # the reason says the delay when it began; the row says what is left
        self.assertRegex(rows["accent"], re.escape(services["accent"]["reason"]) + r" \(due in \S+\)$")
        self.assertLessEqual(services["accent"]["next_start_in_ms"], 120000)
        self.assertNotIn("next_start_in_ms", services["sick"])
        self.assertRegex(rows["sick"], r"\(health failing \d+/100000")
        self.assertNotIn("health", rows["a"])
        # what cohortctl prints is that table, unescaped (numbers and
        # alignment aside: uptimes, restarts and health counts move on)
        def norm(text):
            return [re.sub(r"\d+", "N", re.sub(r" +", " ", line)) for line in text.splitlines()]
        _, out, _ = d.ctl("status")
        self.assertEqual(norm(out), norm(d.request({"cmd": "status", "format": "table"})["table"]))
        self.assertIn("caf\u00e9", out)
        _, out, _ = d.ctl("status", "a", "b")
        self.assertRegex(out.splitlines()[0], r"^NAME +STATE +PID +PHASE +UPTIME +RESTARTS +REASON$")
        self.assertRegex(out.splitlines()[1], r"^a +running +\d+ +1 ")
        self.assertRegex(out.splitlines()[2], r"^b +running +\d+ +2 ")
        # colour only when asked: green running, red failed, none for stopped
        colored = d.request({"cmd": "status", "format": "table", "color": True})["table"].splitlines()
        self.assertIn("\x1b[32mrunning", colored[1])
        self.assertRegex(colored[1], r"\x1b\[32mrunning *\x1b\[0m  \d")
        self.assertNotIn("\x1b", colored[2])      # c: stopped
        self.assertNotIn("\x1b", table["table"])
        # cohortctl colours on a terminal only, and not with NO_COLOR
        import pty
        for no_color, want in ((None, True), ("1", False)):
            master, slave = pty.openpty()
            env = dict(os.environ)
            env.pop("NO_COLOR", None)
            if no_color:
                env["NO_COLOR"] = no_color
            p = subprocess.Popen([COHORTCTL, "-s", d.socket, "status", "a"], stdout=slave, env=env)
            os.close(slave)
            got = b""
            while True:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                got += chunk
            os.close(master)
            self.assertEqual(p.wait(10 * FACTOR), 0)
            self.assertEqual(b"\x1b[32m" in got, want, got)
        # bad fields
        for req, err in (({"cmd": "status", "format": "xml"}, 'field "format" must be "json" or "table"'),
                         ({"cmd": "status", "format": 1}, 'field "format" must be'),
                         ({"cmd": "status", "format": "table", "color": "yes"}, 'field "color" must be true or false'),
                         ({"cmd": "status", "format": "table", "services": ["nosuch"]}, "no such service: nosuch"),
                         ({"cmd": "status", "format": "table", "services": "a"}, 'field "services" must be a list')):
            r = d.request(req)
            self.assertFalse(r["ok"], req)
            self.assertIn(err, r["error"], req)
        self.assertEqual(d.request({"cmd": "status", "format": "table", "services": ["b"]})["table"]
                         .splitlines()[1].split()[0], "b")
        self.assertIn("services", d.request({"cmd": "status", "format": "json"}))
        d.stop()

    def test_fields_are_declared(self):
        """Each command's fields are declared in its table entry and checked
        once, before its handler: an unknown or misspelt field is refused
        and named (once, "line": 5 was read as no "lines" at all, 50), as
        are a field of the wrong type and a missing required one."""
        d = self.stack()
        cases = [
            # unknown or misspelt: named, with the nearest declared field
            ({"cmd": "log", "service": "a", "line": 5}, 'unknown field "line" (did you mean "lines"?)'),
            ({"cmd": "status", "sevices": ["a"]}, 'unknown field "sevices" (did you mean "services"?)'),
            ({"cmd": "stop", "targets": ["a"], "wiat": False}, 'unknown field "wiat" (did you mean "wait"?)'),
            ({"cmd": "signal", "service": "a", "signal": "TERM", "pid": 1},
             'unknown field "pid" (known: service, signal)'),
            ({"cmd": "plan", "verbose": True}, 'unknown field "verbose" (this request takes none)'),
            ({"cmd": "lock.release", "name": "x", "token": 1, "tokn": 2},
             'unknown field "tokn" (did you mean "token"?)'),
            # the wrong type
            ({"cmd": "signal", "service": "a", "signal": 15}, 'field "signal" must be a string'),
            ({"cmd": "stop", "targets": ["a"], "timeout_ms": "1s"},
             'field "timeout_ms" must be an integer from 0 to 604800000'),
            ({"cmd": "log", "service": "a", "follow": 1}, 'field "follow" must be true or false'),
            ({"cmd": "lock.acquire", "name": "x", "wait_ms": 1.5}, 'field "wait_ms" must be an integer (milliseconds)'),
            ({"cmd": "lock.renew", "name": "x", "token": "7"}, 'field "token" must be a positive integer'),
            # a required field missing
            ({"cmd": "signal", "service": "a"}, 'missing field "signal" (a string)'),
            ({"cmd": "lock.renew", "token": 3}, 'missing field "name" (a string)'),
            ({"cmd": "lock.release", "name": "x"}, 'missing field "token" (a positive integer)'),
        ]
        for req, want in cases:
            r = d.request(req)
            self.assertEqual(r, {"ok": False, "error": want}, req)
        # nothing ran: the misspelt "wait" did not stop a, the signal reached nobody
        self.assertEqual({s["name"]: s["state"] for s in d.request({"cmd": "status"})["services"]}["a"], "running")
        self.assertEqual(d.ctl_json("locks")["locks"], [])
        # the declared fields, spelt right, are taken
        self.assertTrue(d.request({"cmd": "stop", "targets": ["a"], "wait": True, "timeout_ms": 30000})["ok"])
        d.stop()

    def fake_cohortd(self, answer, *args):
        """cohortctl ARGS against a socket that answers the line ANSWER:
        (the completed process, the request it sent)."""
        import threading
        path = os.path.join(self.tmp, "fake.sock")
        if os.path.exists(path):
            os.unlink(path)
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(path)
        srv.listen(1)
        got = []

        def serve():
            conn, _ = srv.accept()
            with conn:
                got.append(read_line(conn))
                conn.sendall(answer.encode() + b"\n")
        t = threading.Thread(target=serve)
        t.start()
        p = subprocess.run([COHORTCTL, "-s", path, *args], capture_output=True, text=True,
                           env=dict(os.environ, NO_COLOR="1"), timeout=10 * FACTOR)
        t.join(10 * FACTOR)
        srv.close()
        return p, json.loads(got[0])

    def test_status_prints_the_table_cohortd_renders(self):
        # cohortd renders the table (one renderer, ctl_status.c): cohortctl
        # prints it as sent, and makes none of its own from the services'
        # JSON (it ships with cohortd: there is no older cohortd to serve)
        table = "NAME  STATE\nweb   \u001b[32mrunning\u001b[0m\n"
        p, req = self.fake_cohortd(json.dumps({"ok": True, "table": table}), "status")
        self.assertEqual((p.returncode, p.stdout), (0, table), p.stderr)
        self.assertEqual((req["format"], req["color"]), ("table", False))
        answer = {"ok": True, "now_ms": 100000, "services": [
            {"name": "web", "state": "running", "pid": 42, "phase": 1, "since_ms": 1, "restarts": 2,
             "last_exit": None, "reason": "started", "health": None}]}
        p, _ = self.fake_cohortd(json.dumps(answer), "status")
        self.assertEqual((p.returncode, p.stdout, p.stderr),
                         (1, "", "cohortctl: cohortd answered status without its table\n"))
        # answers that are not what cohortd writes: a cut line, a bad escape
        for bad in ('{"ok":true,"table":"NAME\\n', '{"ok":true,"table":"NAME\\q"}'):
            p, _ = self.fake_cohortd(bad, "status")
            self.assertEqual(p.returncode, 1, bad)
            self.assertEqual(p.stdout, "", bad)
            self.assertRegex(p.stderr, r"^cohortctl: cohortd sent (something that is not JSON|a table that is not)", bad)
        # an error answer is printed as before
        p, _ = self.fake_cohortd('{"ok":false,"error":"no such service: x"}', "status", "x")
        self.assertEqual((p.returncode, p.stderr), (1, "cohortctl: no such service: x\n"))

    def test_start_stop_restart_with_wait(self):
        d = self.stack(STACK + """
[service:broken]
command = /nonexistent/binary
autostart = no
""")
        _, out, _ = d.ctl("start", "c")
        self.assertRegex(out, r"^c: running - started")
        # the daemon's word: its log line may not have reached the harness yet
        self.assertEqual(d.ctl_json("status", "c")["services"][0]["state"], "running")
        # stop a: b (which requires it) stops first, then a; b waits for a
        mark = len(d.lines)
        _, out, _ = d.ctl("stop", "a")
        self.assertRegex(out, r"^a: stopped")
        # the answer can come before the harness has read cohortd's log line
        d.wait_for(lambda l: l.who == "a" and l.to == "stopped", start=mark)
        order = [(l.who, l.to) for l in d.lines[mark:] if l.to == "stopped"]
        self.assertEqual(order[:2], [("b", "stopped"), ("a", "stopped")])
        d.wait_for(lambda l: l.who == "b" and l.to == "waiting" and "requires a" in l.reason, start=mark)
        # start a: b comes back on its own
        _, out, _ = d.ctl("start", "a")
        self.assertRegex(out, r"^a: running")
        d.wait_state("b", "running", start=mark)
        b_pid = d.ctl_json("status", "b")["services"][0]["pid"]
        _, out, _ = d.ctl("restart", "b")
        self.assertRegex(out, r"^b: running")
        self.assertNotEqual(d.ctl_json("status", "b")["services"][0]["pid"], b_pid)
        self.assertFalse(pid_alive(b_pid))
        # phases and all
        _, out, _ = d.ctl("stop", "@2")
        self.assertRegex(out, r"^b: stopped")
        _, out, _ = d.ctl("stop", "all")
        self.assertEqual(sorted(l.split(":")[0] for l in out.splitlines()), ["a", "b", "broken", "c"])
        _, out, _ = d.ctl("start", "all", expect=1)   # broken ends failed
        self.assertIn("broken: failed - cannot start: exec /nonexistent/binary: No such file", out)
        self.assertIn("a: running", out)
        # --no-wait answers at once with the state then (c stopped once
        # already: its new line is waited for, not that one)
        mark = len(d.lines)
        d.ctl("stop", "--no-wait", "c")
        d.wait_state("c", "stopped", start=mark)
        # a timeout while waiting
        _, out, err = d.ctl("stop", "--timeout", "1ms", "nosuch", expect=1)
        self.assertIn("no such service: nosuch", err)
        _, _, err = d.ctl("stop", "@9", expect=1)
        self.assertIn("no phase 9", err)
        d.stop()

    def test_wait_timeout(self):
        d = self.stack("""
[service:slow]
command = /bin/sleep 1000
ready = exec:false
ready_timeout = 60s
autostart = no
""")
        _, out, err = d.ctl("start", "--timeout", "300ms", "slow", expect=1)
        self.assertIn("timed out waiting for slow (starting)", err)
        self.assertIn("slow: starting", out)
        d.stop()

    def test_signal(self):
        got = self.path("got")
        d = self.stack(f"""
[service:trap]
command = /bin/sh -c "trap 'echo usr1 >> {got}' USR1; touch {got}.ready;
    while :; do sleep 0.05; done"
ready = exec:test -f {got}.ready
""")
        _, out, _ = d.ctl("signal", "USR1", "trap")
        self.assertRegex(out, r"^sent SIGUSR1 to trap \(process group \d+\)$")
        wait_until(self, lambda: os.path.exists(got), what="the trap to run")
        _, _, err = d.ctl("signal", "NOPE", "trap", expect=1)
        self.assertIn('unknown signal "NOPE"', err)
        _, _, err = d.ctl("signal", "USR1", "ghost", expect=1)
        self.assertIn("no such service: ghost", err)
        d.ctl("stop", "trap")
        _, _, err = d.ctl("signal", "USR1", "trap", expect=1)
        self.assertIn("trap: not running", err)
        d.ctl("signal", "trap", expect=2)   # usage
        d.stop()

    def test_reload_and_plan(self):
        d = self.stack()
        _, out, _ = d.ctl("plan")
        self.assertEqual(out, "phase 1: a c\nphase 2: b\n")
        self.assertEqual(d.ctl_json("plan")["phases"], [["a", "c"], ["b"]])
        d.write_config(STACK.replace("autostart = no\n", "") + "\n[service:d]\ncommand = /bin/sleep 5\n")
        _, out, _ = d.ctl("reload")
        self.assertEqual(out, "added: d\nchanged: c (autostart)\n")
        d.wait_state("c", "running")
        _, out, _ = d.ctl("reload")
        self.assertEqual(out, "reloaded: nothing changed\n")
        # a [cohort] key read only at start-up: said, not hidden
        with open(d.path) as f:
            text = f.read()
        d.write_config("[cohort]\nbus_fsync = always\nbus_max_message = 2M\n" + text)
        _, out, _ = d.ctl("reload")
        self.assertEqual(out, "takes effect when cohortd restarts: bus_fsync bus_max_message\n")
        d.write_config(text)
        d.ctl("reload")
        d.write_config(STACK + "\n[service:e]\ncomand = x\n")
        _, out, err = d.ctl("reload", expect=1)
        self.assertIn("the new config is invalid", err)
        self.assertIn('unknown key "comand" (did you mean "command"?)', err)
        self.assertIn('[service:e]: missing "command"', err)
        j = d.ctl_json("reload", expect=1)
        self.assertFalse(j["ok"])
        self.assertEqual(len(j["errors"]), 2)
        # still the previous config
        self.assertEqual(d.ctl_json("plan")["phases"], [["a", "c", "d"], ["b"]])
        d.stop()

    def test_log_tail_and_follow(self):
        d = self.stack("""
[service:talk]
command = /bin/sh -c "i=0; while [ $i -lt 120 ]; do echo line $i; i=$((i+1)); done;
    exec sleep 1000"
ready = delay:0

[service:quiet]
command = /bin/sleep 1000
stdout = inherit
ready = delay:0
""")
        log = os.path.join(d.log_dir, "talk.log")

        def logged():
            if not os.path.exists(log):
                return False
            with open(log) as f:
                return "line 119" in f.read()
        wait_until(self, logged, what="the log")
        _, out, _ = d.ctl("log", "-n", "3", "talk")
        lines = out.splitlines()
        self.assertEqual(len(lines), 3)
        self.assertRegex(lines[0], r"^\d{4}-\d\d-\d\dT[\d:.]+Z line 117$")
        self.assertTrue(lines[2].endswith(" line 119"))
        _, out, _ = d.ctl("log", "talk")
        self.assertEqual(len(out.splitlines()), 50)
        j = d.ctl_json("log", "-n", "1", "talk")
        self.assertEqual(len(j["lines"]), 1)
        _, _, err = d.ctl("log", "quiet", expect=1)
        self.assertIn("quiet does not log to a file (stdout = inherit)", err)
        _, _, err = d.ctl("log", "ghost", expect=1)
        self.assertIn("no such service: ghost", err)
        d.ctl("log", "-n", "x", "talk", expect=2)
        # follow: the tail, then new lines as the service writes them
        f = subprocess.Popen([COHORTCTL, "-s", d.socket, "log", "-n", "1", "-f", "talk"],
                             stdout=subprocess.PIPE, text=True)
        self.assertTrue(f.stdout.readline().endswith(" line 119\n"))
        d.ctl("restart", "--no-wait", "talk")
        self.assertTrue(f.stdout.readline().endswith(" line 0\n"))
        self.assertTrue(f.stdout.readline().endswith(" line 1\n"))
        f.terminate()
        f.wait()
        f.stdout.close()
        d.stop()

    def test_options_after_the_operands(self):
        """Options may follow the names, as in most CLIs; nothing after
        lock's NAME -- (or after CMD's first word) is taken for one."""
        d = self.stack(STACK + """
[service:talk]
command = /bin/sh -c "for i in 1 2 3 4; do echo line $i; done; exec sleep 1000"
ready = delay:0
""")
        log = os.path.join(d.log_dir, "talk.log")
        wait_until(self, lambda: file_has(log, "line 4"), what="the log")
        _, out, _ = d.ctl("log", "talk", "-n", "2")
        self.assertEqual([l.split(" ", 1)[1] for l in out.splitlines()], ["line 3", "line 4"])
        _, out, _ = d.ctl("log", "talk", "-n1")
        self.assertEqual([l.split(" ", 1)[1] for l in out.splitlines()], ["line 4"])
        j = json.loads(d.ctl("log", "talk", "--json", "-n", "1")[1])
        self.assertEqual(len(j["lines"]), 1)
        _, out, _ = d.ctl("restart", "a", "--no-wait")
        self.assertRegex(out, r"^a: (running|stopping|stopped|waiting|starting)")
        d.ctl("start", "c", "--timeout", "10s")
        d.ctl("log", "talk", "-n", "x", expect=2)
        d.ctl("status", "a", "--bogus", expect=2)
        # lock: options between NAME and "--"; CMD's own words stay CMD's
        _, out, _ = d.ctl("lock", "demo.x", "--wait", "5s", "--", "sh", "-c", 'echo "$COHORT_LOCK_NAME $1"',
                          "sh", "--json")
        self.assertEqual(out, "demo.x --json\n")
        _, out, _ = d.ctl("lock", "demo.x", "--ttl", "2s", "echo", "--ttl", "-n", "1")
        self.assertEqual(out, "--ttl -n 1\n")
        # pub: DATA may be a negative number; options after it still count
        _, out, _ = d.ctl("pub", "demo.n", "-5", "--qos", "1")
        self.assertRegex(out, r"^stored as seq \d+$")
        _, out, _ = d.ctl("pub", "demo.n", "--retain", "--", "--text")
        _, out, _ = d.ctl("get", "demo.n")
        self.assertEqual(out, 'demo.n "--text"\n')
        d.stop()

    def test_log_of_several_services_interleaved_by_time(self):
        # Each writes its next line once the other's previous line is in
        # its log file, and 10 ms more (a different stamp), so the order in
        # time is a1 b2 a3 b4 for certain.
        wait = 'until grep -q {0} log/{1}.log 2>/dev/null; do sleep 0.01; done; sleep 0.01'
        d = self.stack(f"""
[service:a]
command = /bin/sh -c "echo a1; {wait.format('b2', 'b')}; echo a3; exec sleep 1000"
ready = delay:0

[service:b]
command = /bin/sh -c "{wait.format('a1', 'a')}; echo b2; {wait.format('a3', 'a')}; echo b4;
    exec sleep 1000"
ready = delay:0
""")
        blog = os.path.join(d.log_dir, "b.log")
        wait_until(self, lambda: file_has(blog, "b4"), what="b4")
        _, out, _ = d.ctl("log", "a", "b")
        got = [re.sub(r"^\d{4}-\d\d-\d\dT[\d:.]+Z ", "", l) for l in out.splitlines()]
        self.assertEqual(got, ["a: a1", "b: b2", "a: a3", "b: b4"], out)
        _, out, _ = d.ctl("log", "-n", "3", "b", "a")
        self.assertEqual([l.split(" ", 1)[1] for l in out.splitlines()], ["b: b2", "a: a3", "b: b4"])
        j = json.loads(d.ctl("--json", "log", "a", "b", "-n", "2")[1])
        self.assertEqual([l.split(" ", 1)[1] for l in j["lines"]], ["a3", "b4"])
        self.assertEqual(j["services"], ["a", "b"])
        _, _, err = d.ctl("log", "a", "ghost", expect=1)
        self.assertIn("no such service: ghost", err)
        # follow: the tail (once read, the stream is on), then new lines of
        # either, each with its service
        f = subprocess.Popen([COHORTCTL, "-s", d.socket, "log", "-n", "1", "-f", "a", "b"],
                             stdout=subprocess.PIPE, text=True)
        lines = line_queue(f.stdout)
        self.assertTrue(lines.get(timeout=10 * FACTOR).endswith(" b: b4\n"))
        d.ctl("restart", "a")
        self.assertTrue(lines.get(timeout=10 * FACTOR).endswith(" a: a1\n"))
        self.assertTrue(lines.get(timeout=10 * FACTOR).endswith(" a: a3\n"))
        d.ctl("restart", "--no-wait", "b")
        self.assertTrue(lines.get(timeout=10 * FACTOR).endswith(" b: b2\n"))
        self.assertTrue(lines.get(timeout=10 * FACTOR).endswith(" b: b4\n"))
        f.terminate()
        f.wait()
        f.stdout.close()
        d.stop()

    def test_events_stream(self):
        d = self.stack()
        s = d.connect()
        buf = bytearray()
        s.sendall(b'{"cmd":"events"}\n')
        self.assertEqual(json.loads(read_line(s, buf)), {"ok": True})
        d.ctl("restart", "a")
        seen = []
        while not any(e["service"] == "b" and e["to"] == "running" for e in seen):
            seen.append(json.loads(read_line(s, buf)))
        for e in seen:
            self.assertEqual(set(e), {"ts_ms", "service", "from", "to", "reason"})
        # the dependent goes down first, comes back last
        self.assertEqual((seen[0]["service"], seen[0]["from"], seen[0]["to"]), ("b", "running", "stopping"))
        self.assertEqual(seen[0]["reason"], "requires a, which is restarting")
        order = [(e["service"], e["to"]) for e in seen]
        self.assertLess(order.index(("b", "stopped")), order.index(("a", "stopping")))
        self.assertLess(order.index(("a", "running")), order.index(("b", "starting")))
        s.close()
        # the CLI prints them for humans
        p = subprocess.Popen([COHORTCTL, "-s", d.socket, "events"], stdout=subprocess.PIPE, text=True)
        # cohortctl says nothing when it has subscribed: make events until
        # one reaches it, so the stop and start below are seen whole
        deadline = time.monotonic() + 20 * FACTOR
        while not select.select([p.stdout], [], [], 0.2)[0]:
            self.assertLess(time.monotonic(), deadline, "cohortctl events printed nothing")
            d.ctl("restart", "a")
        self.assertRegex(p.stdout.readline(), r"^\d{4}-.*Z [ab]: \w+ -> \w+: ")
        d.ctl("stop", "c")
        d.ctl("start", "c")
        lines = []
        while not lines or " c: " not in lines[-1]:
            lines.append(p.stdout.readline())
        self.assertRegex(lines[-1], r"^\d{4}-.*Z c: stopped -> starting: starting$")
        p.terminate()
        p.wait()
        p.stdout.close()
        d.stop()

    def test_shutdown_command(self):
        d = self.stack()
        pids = [d.last_pid(x) for x in ("a", "b")]
        _, out, _ = d.ctl("shutdown")
        self.assertEqual(out, "cohortd is shutting down\n")
        self.assertEqual(d.proc.wait(20 * FACTOR), 0)
        d.stop(sig=None)
        for p in pids:
            self.assertFalse(pid_alive(p))
        self.assertFalse(os.path.exists(d.socket))

    def test_bad_requests(self):
        d = self.stack()
        cases = [
            (b"nonsense\n", "bad JSON"),
            (b"[1, 2]\n", "a request is a JSON object"),
            (b'{"cmd": 5}\n', 'field "cmd" must be a string'),
            (b'{"nocmd": 1}\n', 'missing field "cmd"'),
            (b'{"cmd":"frobnicate"}\n', 'unknown command "frobnicate"'),
            (b'{"cmd":"start"}\n', 'missing field "targets" (a non-empty list'),
            (b'{"cmd":"start","targets":"a"}\n', 'field "targets" must be a non-empty list'),
            (b'{"cmd":"start","targets":[1]}\n', 'field "targets" must hold strings'),
            (b'{"cmd":"start","targets":["ghost"]}\n', "no such service: ghost"),
            (b'{"cmd":"start","targets":["a"],"wait":"yes"}\n', 'field "wait" must be true or false'),
            (b'{"cmd":"log","service":"a","lines":"ten"}\n', 'field "lines" must be an integer'),
            (b'{"cmd":"log","service":"a","lines":-1}\n', 'field "lines" must be an integer'),
            (b'{"cmd":"log"}\n', 'missing field "service"'),
            (b'{"cmd":"signal","service":"a","signal":"KIL"}\n', 'unknown signal "KIL"'),
            (b'{"cmd":"status","services":"a"}\n', 'field "services" must be a list'),
            (b'{"cmd":"status","cmd":"plan"}\n', "bad JSON"),
            # the flat-request reader (src/wire/jflat.c) hands these to jansson
            (b'{"cmd":"log","service":"a","lines":1.5}\n', 'field "lines" must be an integer'),
            (b'{"cmd":"log","service":"a","lines":123456789012345678901234}\n', "bad JSON"),
            (b'{"cmd":"log","service":"a","lines":01}\n', "bad JSON"),
            (b'{"cmd":"st\\u0061tus","services":"a"}\n', 'field "services" must be a list'),
            (b'{"cmd":"plan"} x\n', "bad JSON"),
            (b'{"cmd":"plan",}\n', "bad JSON"),
            (b'{"cmd":"pl\xe9n"}\n', "bad JSON"),
            # jansson's message quotes half of the e-acute (found by fuzz_control)
            (b'{"cmd":"pl\\\xc3\xa9n"}\n', "bad JSON: invalid escape"),
        ]
        for raw, want in cases:
            r = d.request(raw=raw)
            self.assertFalse(r["ok"], raw)
            self.assertIn(want, r["error"], raw)
        # over 64 KiB: refused, and the same connection still works
        with d.connect() as s:
            buf = bytearray()
            s.sendall(b'{"cmd":"status","x":"' + b"x" * 70000 + b'"}\n{"cmd":"plan"}\n')
            r = json.loads(read_line(s, buf))
            self.assertEqual(r["error"], "request over 64 KiB: refused")
            self.assertEqual(json.loads(read_line(s, buf))["phases"], [["a", "c"], ["b"]])
        # several requests in one write, answered in order
        with d.connect() as s:
            buf = bytearray()
            s.sendall(b'{"cmd":"plan"}\n\n{"cmd":"nope"}\n{"cmd":"status","services":["a"]}\n')
            self.assertIn("phases", json.loads(read_line(s, buf)))
            self.assertIn("unknown command", json.loads(read_line(s, buf))["error"])
            self.assertEqual(json.loads(read_line(s, buf))["services"][0]["name"], "a")
        # half a line, then gone: nothing breaks
        with d.connect() as s:
            s.sendall(b'{"cmd":"sta')
        # a whole request, then gone before its answer is written (answers
        # wait for the end of the loop iteration): nothing breaks either
        for _ in range(200):
            with d.connect() as s:
                s.sendall(b'{"cmd":"status"}\n{"cmd":"plan"}\n')
        self.assertTrue(d.request({"cmd": "status"})["ok"])
        d.stop()

    def test_a_thousand_clients_at_once(self):
        d = self.stack()
        socks = []
        for _ in range(1000):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(30 * FACTOR)
            s.connect(d.socket)
            socks.append(s)
        for s in socks:
            s.sendall(b'{"cmd":"status","services":["a"]}\n')
        for s in socks:
            r = json.loads(read_line(s))
            self.assertEqual(r["services"][0]["state"], "running")
            s.close()
        # and a thousand that connect and leave at once
        for _ in range(1000):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(d.socket)
            s.close()
        self.assertTrue(d.request({"cmd": "status"})["ok"])
        d.stop()

    def test_out_of_descriptors_the_accept_waits(self):
        """At the descriptor limit a pending client keeps the socket
        readable: accepting again at once would spin on a core and flood
        the log.  cohortd waits, says so once (and once more when every
        waiting client is in), and serves them later."""
        d = self.cohortd(STACK, wrap=["prlimit", "--nofile=128:128", "--"])
        d.wait_log(r"^stack is up")
        d.wait_socket()
        socks = []
        for _ in range(160):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(30 * FACTOR)
            s.connect(d.socket)     # the ones not accepted wait in the backlog
            socks.append(s)
        d.wait_log(r"^control socket: accept: Too many open files: new clients wait until "
                   r"descriptors free up$")

        def cpu():
            with open(f"/proc/{d.proc.pid}/stat") as f:
                st = f.read().rsplit(")", 1)[1].split()
            return (int(st[11]) + int(st[12])) / os.sysconf("SC_CLK_TCK")
        c0, t0 = cpu(), time.monotonic()
        time.sleep(1)   # a window to measure: a spinning accept takes the whole of it
        used = cpu() - c0
        self.assertLess(used, 0.3 * (time.monotonic() - t0), "cohortd spins at the descriptor limit")
        # Ten descriptors free up: ten waiting clients come in and the
        # limit is met again, which is the same wait, not said again.
        def sockets():
            fd_dir, out = f"/proc/{d.proc.pid}/fd", set()
            for fd in os.listdir(fd_dir):
                try:
                    out.add(os.readlink(os.path.join(fd_dir, fd)))
                except FileNotFoundError:   # closed meanwhile
                    pass
            return {x for x in out if x.startswith("socket:")}
        before = sockets()
        for s in socks[:10]:    # accepted first: the backlog is first in, first out
            s.close()
        wait_until(self, lambda: len(sockets() - before) >= 10, what="ten waiting clients accepted in their place")
        for s in socks[10:100]:
            s.close()
        served = 0
        for s in socks[100:]:
            try:
                s.sendall(b'{"cmd":"status","services":["a"]}\n')
                self.assertTrue(json.loads(read_line(s))["ok"])
                served += 1
            except (BrokenPipeError, ConnectionResetError):
                # Under valgrind only: it closes a descriptor accept returns
                # past the range it keeps for the program, and says EMFILE;
                # that client is gone, not left in the backlog.
                if not VALGRIND:
                    raise
            s.close()
        self.assertGreater(served, 0)
        d.wait_log(r"^control socket: accepting clients again$")
        self.assertEqual(len([l for l in d.lines if "new clients wait" in l.msg]), 1)
        self.assertEqual(len([l for l in d.lines if "accepting clients again" in l.msg]), 1)
        d.stop()

    @unittest.skipIf(VALGRIND, "valgrind's allocator is not malloc's")
    def test_a_big_answer_leaves_no_heap_behind(self):
        """status --json of 2,000 services is a 0.8 MB answer made of 3 MB
        of JSON objects: once written, cohortd gives that memory back
        (free() kept it for good: 1.5 KB a service, for as long as cohortd
        ran), at once the first time, then at most every 10 s."""
        from test_bus_memory import rss_kb, sanitized
        n = 2000
        d = self.cohortd("".join(f"[service:s{i}]\ncommand = /bin/sleep 1000\nready = delay:0\n"
                                 "stdout = null\nstderr = null\n\n" for i in range(n)))
        d.wait_log(r"^stack is up", timeout=60)
        d.wait_socket()
        if sanitized(d.proc.pid):
            self.skipTest("AddressSanitizer's allocator keeps what is freed")
        self.assertEqual(len(d.ctl_json("status", "s1")["services"]), 1)    # the client's own first costs
        before = rss_kb(d.proc.pid)
        self.assertEqual(len(d.ctl_json("status")["services"]), n)
        grown = rss_kb(d.proc.pid) - before
        self.assertLess(grown, 1024, f"cohortd's RSS grew by {grown} KiB after status --json of {n} services")
        # Two more at once: the heap is walked at most every 10 s (it takes
        # 30-100 ms for 500 MB), so theirs goes back when that time is up.
        for _ in range(2):
            self.assertEqual(len(d.ctl_json("status")["services"]), n)
        wait_until(self, lambda: rss_kb(d.proc.pid) - before < 1024, timeout=20,
                   what=lambda: f"cohortd's RSS back under {before + 1024} KiB (now {rss_kb(d.proc.pid)})")
        d.stop()

    def test_answers_nobody_reads_do_not_pile_up(self):
        """A client that sends requests and reads no answer: cohortd stops
        reading it while a megabyte of answers waits, instead of growing
        without bound; every request is still answered, in order."""
        d = self.stack()
        n = 20000
        req = b'{"cmd":"status","services":["a"]}\n'
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)   # little in flight
        s.connect(d.socket)
        s.setblocking(False)
        data, sent = req * n, 0
        while sent < len(data):
            try:
                sent += s.send(data[sent:sent + 65536])
            except BlockingIOError:
                # no progress for a while: cohortd has stopped reading us
                if not select.select([], [s], [], 2 * FACTOR)[1]:
                    break
        self.assertLess(sent, len(data), "cohortd read every request with its answers unread")
        got, buf = 0, b""
        while got < n:
            r, w, _ = select.select([s], [s] if sent < len(data) else [], [], 30 * FACTOR)
            self.assertTrue(r or w, f"stuck after {got} answers")
            if w:
                try:
                    sent += s.send(data[sent:sent + 65536])
                except BlockingIOError:
                    pass
            if r:
                chunk = s.recv(1 << 20)
                self.assertTrue(chunk, f"closed after {got} answers")
                buf += chunk
                lines = buf.split(b"\n")
                buf = lines.pop()
                for line in lines:
                    self.assertTrue(json.loads(line)["ok"], line)
                got += len(lines)
        self.assertEqual(got, n)
        s.close()
        self.assertTrue(d.request({"cmd": "status"})["ok"])
        d.stop()

    def test_a_batch_then_shutdown_is_answered_whole(self):
        """A client writes a batch of requests, shuts its side, then reads:
        every request is answered before cohortd closes, even those held
        back while the answers piled up."""
        d = self.stack()
        n = 20000
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(60 * FACTOR)
        s.connect(d.socket)

        def write():
            s.sendall(b'{"cmd":"status","services":["a"]}\n' * n)
            s.shutdown(socket.SHUT_WR)
        writer = threading.Thread(target=write)
        writer.start()
        data = bytearray()
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            data.extend(chunk)
        writer.join()
        s.close()
        lines = bytes(data).splitlines()
        self.assertEqual(len(lines), n)
        self.assertTrue(all(json.loads(l)["ok"] for l in lines[:10] + lines[-10:]))
        d.stop()

    def test_slow_event_reader_is_told_and_closed(self):
        d = self.stack("""
[service:a]
command = /bin/sleep 1000
ready = delay:0

[service:churn]
command = /bin/true
ready = delay:0
backoff_initial = 0
breaker_failures = 0
autostart = no
""")
        slow = d.connect()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.sendall(b'{"cmd":"events"}\n')
        # A reader that keeps up is sent the same lines: what it has read
        # is what the slow one was sent.
        fast, seen = d.connect(), [0]
        fast.sendall(b'{"cmd":"events"}\n')

        def count():
            while chunk := fast.recv(1 << 16):
                seen[0] += len(chunk)
        threading.Thread(target=count, daemon=True).start()
        d.ctl("start", "--no-wait", "churn")
        # 1 MiB held for the slow reader, and what the kernel holds for it
        # (cohortd's send buffer: at most some 200 KiB), are well under
        # 1.5 MiB: past that it has been told.  (6,000 restarts stood for
        # this, more than twice what it takes, and a machine at a load
        # average of 45 did not get there in 120 s.)
        wait_until(self, lambda: seen[0] > 3 << 19, timeout=300, what="1.5 MiB of events")
        d.ctl("stop", "churn")
        # the daemon kept answering others; the slow reader got a last word
        data = b""
        slow.settimeout(10 * FACTOR)
        while True:
            chunk = slow.recv(1 << 20)
            if not chunk:
                break
            data += chunk
        last = json.loads(data.rstrip(b"\n").rsplit(b"\n", 1)[-1])
        self.assertEqual(last["error"], "client too slow: output buffer over 1 MiB; closing")
        d.stop()

    def test_exit_codes_and_discovery(self):
        # 3: no daemon
        p = subprocess.run([COHORTCTL, "-s", "/nonexistent/control.sock", "status"],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 3)
        self.assertEqual(p.stderr, "cohortctl: cannot reach cohortd at /nonexistent/control.sock: "
                         "No such file or directory (is it running? try -s or -c)\n")
        # 2: usage
        for args in (["bogus"], ["start"], [], ["--bad"], ["plan", "extra"], ["log"]):
            p = subprocess.run([COHORTCTL, "-s", "/nonexistent", *args], capture_output=True, text=True)
            self.assertEqual(p.returncode, 2, args)
        p = subprocess.run([COHORTCTL, "start", "--help"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0)
        self.assertIn("usage: cohortctl start [--wait|--no-wait] [--timeout DUR] TARGET...", p.stdout)
        p = subprocess.run([COHORTCTL, "--commands"], capture_output=True, text=True)
        self.assertIn("status\nstart\n", p.stdout)
        # discovery: -c, then $COHORT_CONFIG, then $COHORT_SOCKET wins over both
        d = self.stack()
        env = dict(os.environ, NO_COLOR="1")
        env.pop("COHORT_SOCKET", None)
        p = subprocess.run([COHORTCTL, "-c", d.path, "plan"], capture_output=True, text=True, env=env)
        self.assertEqual((p.returncode, p.stdout), (0, "phase 1: a c\nphase 2: b\n"))
        # --json after the command counts as before it
        for args in (["status", "--json"], ["locks", "--json"], ["bus", "--json"]):
            p = subprocess.run([COHORTCTL, "-c", d.path, *args], capture_output=True, text=True, env=env)
            self.assertEqual(p.returncode, 0, (args, p.stderr))
            json.loads(p.stdout.splitlines()[0])
        p = subprocess.run([COHORTCTL, "plan"], capture_output=True, text=True,
                           env=dict(env, COHORT_CONFIG=d.path))
        self.assertEqual(p.returncode, 0)
        p = subprocess.run([COHORTCTL, "plan"], capture_output=True, text=True,
                           env=dict(env, COHORT_CONFIG=d.path, COHORT_SOCKET="/nonexistent/s"))
        self.assertEqual(p.returncode, 3)
        d.stop()

    @unittest.skipUnless(os.geteuid() == 0, "needs root to run as nobody")
    def test_unauthorised_uid_is_refused(self):
        os.chmod(self.tmp, 0o755)
        d = self.cohortd(STACK.replace("[service:a]", "[cohort]\ncontrol_mode = 0666\n\n[service:a]", 1))
        os.chmod(d.dir, 0o755)
        d.wait_log(r"^stack is up")
        d.wait_socket()
        os.chmod(d.run_dir, 0o755)
        _, _, err = d.ctl("status", user=65534, expect=1)
        self.assertIn("permission denied: uid 65534 may not use this control socket", err)
        self.assertTrue(d.request({"cmd": "status"})["ok"])   # root still may
        d.stop()

    @unittest.skipUnless(os.geteuid() == 0, "needs root to run as nobody")
    def test_socket_mode_and_group(self):
        os.chmod(self.tmp, 0o755)
        d = self.cohortd(STACK.replace("[service:a]", "[cohort]\ncontrol_mode = 0660\n"
                                       "control_group = nogroup\n\n[service:a]", 1))
        os.chmod(d.dir, 0o755)
        d.wait_log(r"^stack is up")
        d.wait_socket()
        os.chmod(d.run_dir, 0o755)
        st = os.stat(d.socket)
        self.assertEqual(st.st_mode & 0o777, 0o660)
        self.assertEqual(st.st_gid, 65534)
        d.ctl("status", user=65534, expect=0)   # nobody is in nogroup
        os.chmod(d.socket, 0o600)                # and now may not connect at all
        _, _, err = d.ctl("status", user=65534, expect=3)
        self.assertIn(": Permission denied (cohortd's control_mode and control_group say who may use it)", err)
        d.stop()

    def test_stale_socket_replaced_live_one_refused(self):
        run = self.path("run")
        text = f"[cohort]\nrun_dir = {run}\n" + STACK
        first = self.cohortd(text)
        first.run_dir = run
        first.wait_log(r"^stack is up")
        first.wait_socket()
        # a second cohortd on the same run_dir is refused, and says why
        second = self.cohortd(text)
        second.run_dir = run
        second.wait_log(rf"^another cohortd is running: pid {first.proc.pid} holds "
                        + re.escape(os.path.join(run, "cohortd.pid")))
        second.stop(sig=None, expect=1)
        self.assertTrue(first.request({"cmd": "status"})["ok"])
        # kill -9 leaves the socket file behind; the next cohortd replaces it
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait()
        first.returncode = -9
        self.assertTrue(os.path.exists(first.socket))
        third = self.cohortd(text)
        third.run_dir = run
        third.wait_log(r"^replaced the stale control socket ")
        third.wait_log(r"^stack is up")
        self.assertTrue(third.request({"cmd": "status"})["ok"])
        third.stop()



class ControlEdges(CohortTest):
    def test_restart_with_wait_answers_after_the_restart(self):
        d = self.cohortd(STACK)
        d.wait_log(r"^stack is up")
        d.wait_socket()
        a_pid, b_pid = d.last_pid("a"), d.last_pid("b")
        _, out, _ = d.ctl("restart", "a")
        self.assertRegex(out, r"^a: running")
        self.assertNotEqual(d.ctl_json("status", "a")["services"][0]["pid"], a_pid)
        self.assertFalse(pid_alive(a_pid))
        # b, which requires a, went down first and comes back
        d.wait_state("b", "running", start=0)
        wait_until(self, lambda: d.last_pid("b") != b_pid, what="b restarted")
        d.stop()

    def test_wait_is_accepted_explicitly(self):
        """--wait is the default, and accepted as an option of start, stop
        and restart, before or after the targets; the last of --wait and
        --no-wait counts."""
        d = self.cohortd(STACK)
        d.wait_log(r"^stack is up")
        d.wait_socket()
        a_pid = d.last_pid("a")
        _, out, _ = d.ctl("restart", "a", "--wait")
        # b, which requires a, is waited for too: it is in the answer
        self.assertRegex(out, r"^a: running")
        self.assertRegex(out, r"(?m)^b: running")
        self.assertFalse(pid_alive(a_pid))
        _, out, _ = d.ctl("start", "--wait", "c")
        self.assertRegex(out, r"^c: running")
        _, out, _ = d.ctl("stop", "--no-wait", "--wait", "c")
        self.assertRegex(out, r"^c: stopped")
        _, out, _ = d.ctl("start", "--timeout", "10s", "c", "--wait")
        self.assertRegex(out, r"^c: running")
        p = subprocess.run([COHORTCTL, "restart", "--help"], capture_output=True, text=True)
        self.assertIn("usage: cohortctl restart [--wait|--no-wait] [--timeout DUR] TARGET...", p.stdout)
        d.stop()

    def test_start_of_a_blocked_target_answers(self):
        d = self.cohortd(STACK)
        d.wait_log(r"^stack is up")
        d.wait_socket()
        d.ctl("stop", "a")
        _, out, _ = d.ctl("start", "b", expect=1)
        self.assertEqual(out, "b: waiting - requires a, which is not wanted up\n")
        d.stop()

    def test_start_of_a_service_a_reload_removes_answers(self):
        d = self.cohortd("""
[service:a]
command = /bin/sleep 1000
ready = delay:0

[service:x]
command = /bin/sleep 1000
autostart = no
ready = exec:false
ready_timeout = 1h
""")
        d.wait_log(r"^stack is up")
        d.wait_socket()
        start = subprocess.Popen([COHORTCTL, "-s", d.socket, "start", "x"], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        d.wait_state("x", "starting")
        d.write_config("[service:a]\ncommand = /bin/sleep 1000\nready = delay:0\n")
        _, out, _ = d.ctl("reload")
        self.assertEqual(out, "removed: x\n")
        out, err = start.communicate(timeout=10 * FACTOR)
        self.assertEqual(start.returncode, 1, err)
        self.assertRegex(out, r"^x: \w+ - removed by a reload\n$")
        d.stop()

    def test_a_second_reload_wins_over_a_pending_change(self):
        """A change made while the service stops waits for its next start;
        a later change, made while it waits in backoff, replaces it."""
        go, ver = self.path("go"), self.path("version")

        def config(version):
            return f"""
[service:v]
command = /bin/sh -c "echo {version} > {ver}; trap 'while [ ! -e {go} ]; do sleep 0.05; done; exit 1' TERM;
    while :; do sleep 0.1; done"
ready = exec:false
ready_timeout = 300ms
backoff_initial = 1h
backoff_max = 1h
backoff_jitter = 0
"""
        d = self.cohortd(config("V1"))
        d.wait_socket()
        d.wait_state("v", "stopping")       # not ready in time
        d.write_config(config("V2"))
        self.assertEqual(d.ctl("reload")[1], "changed: v (command)\n")
        open(go, "w").close()
        d.wait_state("v", "backoff")
        d.write_config(config("V3"))
        self.assertEqual(d.ctl("reload")[1], "changed: v (command)\n")
        os.unlink(go)
        d.ctl("start", "--no-wait", "v")

        def version():
            with open(ver) as f:
                return f.read().strip()
        # the shell's > empties the file before echo writes to it
        wait_until(self, lambda: version() not in ("V1", ""), what="v started again")
        self.assertEqual(version(), "V3")
        open(go, "w").close()
        d.stop()

    def test_a_log_dir_change_waits_for_a_restart(self):
        """log_dir is read at start-up: a service restarted after a reload
        that changed it still logs where the others do."""
        def config(word):
            # the output's settings change too: its log is opened again
            return f"""
[service:c]
command = /bin/sh -c "echo {word}; exec sleep 1000"
ready = delay:0
log_max_size = {"1M" if word == "one" else "2M"}
"""
        d = self.cohortd(config("one"))
        d.wait_state("c", "running")
        d.wait_socket()
        moved = self.path("elsewhere")
        d.write_config(f"[cohort]\nlog_dir = {moved}\n" + config("one"))
        self.assertEqual(d.ctl("reload")[1], "takes effect when cohortd restarts: log_dir\n")
        d.write_config(f"[cohort]\nlog_dir = {moved}\n" + config("two"))
        self.assertEqual(d.ctl("reload")[1], "restarted: c (command, log_max_size)\n"
                         "takes effect when cohortd restarts: log_dir\n")
        wait_until(self, lambda: any(l.endswith(" two") for l in d.ctl_json("log", "c")["lines"]),
                   what="c's new output in its log")
        self.assertFalse(os.path.exists(moved))
        with open(os.path.join(d.log_dir, "c.log")) as f:
            self.assertIn(" two\n", f.read())
        d.stop()

    def test_bad_utf8_from_services(self):
        d = self.cohortd("""
[service:garbled]
command = /usr/bin/python3 -c "import os,socket,sys,time;
    sys.stdout.buffer.write(b'bytes \\xff\\xfe here\\n'); sys.stdout.flush();
    socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM).sendto(b'STATUS=bad \\xc3 status',
    os.environ['NOTIFY_SOCKET']); time.sleep(1000)"
ready = delay:0
""")
        d.wait_state("garbled", "running")
        d.wait_socket()
        log = os.path.join(d.log_dir, "garbled.log")
        wait_until(self, lambda: os.path.exists(log) and os.path.getsize(log) > 0, what="the log")
        wait_until(self, lambda: d.ctl_json("status", "garbled")["services"][0].get("status"),
                   what="the status text")
        self.assertEqual(d.ctl_json("status", "garbled")["services"][0]["status"], "bad ? status")
        lines = d.ctl_json("log", "garbled")["lines"]
        self.assertTrue(lines[-1].endswith("bytes \ufffd\ufffd here"), lines)
        d.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
