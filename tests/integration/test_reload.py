#!/usr/bin/python3
"""Reload against what runs: [cohort] keys compared with the values cohortd
runs with (live ones applied and named, start-up ones reported until a
restart), and service changes that the process cannot see applied to the
running process instead of restarting it."""
import os
import signal
import socket
import subprocess
import unittest

from harness import COHORTCTL, COHORTD, CohortTest, free_port, pid_alive, wait_until


def listening(port):
    """True when something accepts a TCP connection on 127.0.0.1:port."""
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) == 0


SLEEPER = """
[service:s]
command = /bin/sleep 1000
ready = delay:0
"""


class DaemonKeys(CohortTest):
    def test_a_start_up_key_is_reported_until_cohortd_restarts(self):
        """bus_listen (and log_dir) are compared with what cohortd listens on
        and writes to, not with the previous file."""
        old, new = free_port(), free_port()
        moved = self.path("elsewhere")

        def config(port, log_dir=None):
            head = f"[cohort]\nbus_listen = 127.0.0.1:{port}\n"
            return head + (f"log_dir = {log_dir}\n" if log_dir else "") + SLEEPER

        d = self.cohortd(config(old))
        d.wait_state("s", "running")
        d.wait_socket()
        wait_until(self, lambda: listening(old), what="the bus on the first port")
        d.write_config(config(new))
        self.assertEqual(d.ctl("reload")[1], "takes effect when cohortd restarts: bus_listen\n")
        # again: still true, since cohortd still listens on the old port
        self.assertEqual(d.ctl("reload")[1], "takes effect when cohortd restarts: bus_listen\n")
        self.assertTrue(listening(old))
        self.assertFalse(listening(new))
        d.write_config(config(new, moved))
        self.assertEqual(d.ctl("reload")[1],
                         "takes effect when cohortd restarts: log_dir bus_listen\n")
        self.assertEqual(d.ctl_json("reload")["needs_restart"], ["log_dir", "bus_listen"])
        # put back to what runs: nothing to say
        d.write_config(config(old))
        self.assertEqual(d.ctl("reload")[1], "reloaded: nothing changed\n")
        self.assertTrue(listening(old))
        self.assertEqual(d.count(r"-> starting", "s"), 1)
        d.stop()

    def test_a_live_key_applies_and_is_named(self):
        """shutdown_timeout 12s -> 3s: said, and the next TERM uses 3 s."""
        flag = self.path("deaf.ignores-term")
        deaf = f"""
[service:deaf]
command = /bin/sh -c "trap '' TERM; touch {flag}; while :; do sleep 0.1; done"
ready = delay:0
stop_timeout = 1h
"""
        d = self.cohortd("[cohort]\nshutdown_timeout = 12s\n" + deaf)
        d.wait_state("deaf", "running")
        d.wait_socket()
        # ready = delay:0 comes before the trap: a TERM before it would end it
        wait_until(self, lambda: os.path.exists(flag), what="deaf ignoring SIGTERM")
        d.write_config("[cohort]\nshutdown_timeout = 3s\nbus_queue_age = 1h\n" + deaf)
        self.assertEqual(d.ctl("reload")[1], "applied: bus_queue_age shutdown_timeout\n")
        self.assertEqual(d.ctl("reload")[1], "reloaded: nothing changed\n")
        mark = len(d.lines)
        d.stop(expect=1, timeout=20)
        d.wait_log(r"^shutdown_timeout \(3s\) expired: KILL to 1 process group$", start=mark)


class Errors(CohortTest):
    def test_a_reload_reports_every_error_check_does(self):
        """The plan's errors (a requires naming no service) are reported by
        a reload even when the file has errors of its own, as --check does."""
        d = self.cohortd(SLEEPER)
        d.wait_state("s", "running")
        d.wait_socket()
        pid = d.last_pid("s")
        d.write_config(SLEEPER + "\n[service:bad]\ncomand = x\nrequires = nosuch\n")
        check = subprocess.run([COHORTD, "--check", "-c", d.path], capture_output=True, text=True)
        self.assertEqual(check.returncode, 1)
        want = check.stderr.splitlines()
        self.assertEqual(len(want), 3, check.stderr)
        self.assertRegex(want[-1], r':\d+: \[service:bad\]: requires "nosuch": no such service$')
        _, out, err = d.ctl("reload", expect=1)
        self.assertEqual(err.splitlines()[1:], want)
        self.assertEqual(d.ctl_json("reload", expect=1)["errors"], want)
        d.wait_log(r"^reload: .* has 3 errors; still running the old config:$")
        # cohortctl -c that file finds the socket all the same (its run_dir),
        # so that reload can report the errors: exit 1, not a usage error
        env = dict(os.environ, NO_COLOR="1")
        env.pop("COHORT_SOCKET", None)
        p = subprocess.run([COHORTCTL, "-c", d.path, "reload"], capture_output=True, text=True, env=env)
        self.assertEqual((p.returncode, p.stderr.splitlines()[1:]), (1, want), p.stderr)
        # the plan's error alone, too
        d.write_config(SLEEPER + "\n[service:bad]\ncommand = x\nrequires = nosuch\n")
        _, out, err = d.ctl("reload", expect=1)
        self.assertRegex(err, r'requires "nosuch": no such service')
        self.assertEqual(d.last_pid("s"), pid)
        self.assertEqual(d.state("s"), "running")
        d.stop()


class ServiceKeys(CohortTest):
    def test_what_the_process_cannot_see_applies_without_a_restart(self):
        """log_backups, log_max_size and health_interval of a service that
        another requires, and backoff of the other: both keep their pid, and
        the new values are in force."""
        def config(size, backups, interval, backoff):
            return f"""
[service:base]
command = /bin/sh -c 'i=0; while :; do i=$((i+1)); echo "line $i of base output"; sleep 0.01; done'
ready = delay:0
health = exec:true
health_interval = {interval}
log_max_size = {size}
log_backups = {backups}

[service:app]
command = /bin/sleep 1000
requires = base
ready = delay:0
backoff_initial = {backoff}
backoff_jitter = 0
"""
        d = self.cohortd(config("1M", 5, "1h", "1h"))
        d.wait_state("app", "running")
        d.wait_socket()
        base, app = d.last_pid("base"), d.last_pid("app")
        log = os.path.join(d.log_dir, "base.log")
        mark = len(d.lines)
        d.write_config(config("2K", 1, "100ms", "100ms"))
        out = d.ctl("reload")[1]
        # the new health interval: probes every 100 ms, not every hour
        at = mark
        for _ in range(3):
            at, _ = d.wait_log(r"^health ok", who="base", start=at + 1, timeout=5)
        # the new log size and backups: rotated at 2K, one backup kept
        wait_until(self, lambda: os.path.exists(log + ".1"), what="base.log rotated")

        def first_line():
            with open(log + ".1") as f:
                return f.readline()
        first = first_line()
        wait_until(self, lambda: first_line() != first, what="base.log rotated again")
        self.assertLessEqual(os.path.getsize(log + ".1"), 2048)
        self.assertFalse(os.path.exists(log + ".2"))
        # neither restarted: same pids, no transition since the reload
        self.assertEqual((d.last_pid("base"), d.last_pid("app")), (base, app))
        self.assertTrue(pid_alive(base) and pid_alive(app))
        self.assertEqual([l for l in d.lines[mark:] if l.to], [])
        self.assertEqual(out, "updated: base (health_interval, log_max_size, log_backups) "
                         "app (backoff_initial)\n")
        # the new backoff at the next crash
        os.kill(app, signal.SIGKILL)
        _, l = d.wait_state("app", "backoff", start=mark)
        self.assertEqual(l.reason, "killed by SIGKILL; restart in 100ms (failure 1)")
        d.wait_state("app", "running", start=mark)
        self.assertEqual(d.last_pid("base"), base)
        d.stop()

    def test_fewer_log_backups_drop_the_surplus_at_the_next_rotation(self):
        def config(backups):
            return f"""
[service:chatty]
command = /bin/sh -c 'i=0; while :; do i=$((i+1)); echo "line $i of chatty output"; sleep 0.01; done'
ready = delay:0
log_max_size = 2K
log_backups = {backups}
"""
        d = self.cohortd(config(3))
        d.wait_state("chatty", "running")
        d.wait_socket()
        log = os.path.join(d.log_dir, "chatty.log")
        wait_until(self, lambda: os.path.exists(log + ".3"), what="three rotated files")
        pid = d.last_pid("chatty")
        d.write_config(config(1))
        reloaded = d.ctl("reload")[1]
        # at its next rotation (every second or so) .2 and .3 go
        wait_until(self, lambda: sorted(f for f in os.listdir(d.log_dir) if f.startswith("chatty.log"))
                   == ["chatty.log", "chatty.log.1"], what="chatty.log.2 and .3 gone")
        self.assertEqual(d.last_pid("chatty"), pid)
        self.assertEqual(reloaded, "updated: chatty (log_backups)\n")
        d.stop()

    def test_a_requires_change_replans_without_a_restart(self):
        text = """
[service:a]
command = /bin/sleep 1000
ready = delay:0

[service:b]
command = /bin/sleep 1000
ready = delay:0

[service:c]
command = /bin/sleep 1000
ready = delay:0
requires = a
"""
        d = self.cohortd(text)
        d.wait_log(r"^stack is up")
        d.wait_socket()
        self.assertEqual(d.ctl("plan")[1], "phase 1: a b\nphase 2: c\n")
        pids = [d.last_pid(n) for n in "abc"]
        mark = len(d.lines)
        d.write_config(text.replace("[service:b]\n", "[service:b]\nrequires = c\n"))
        out = d.ctl("reload")[1]
        # a second reload's summary: what the first one did is logged before it
        self.assertEqual(d.ctl("reload")[1], "reloaded: nothing changed\n")
        d.wait_log(r"^reload: 0 added, 0 removed, 0 changed, 3 unchanged$", start=mark)
        self.assertEqual([l for l in d.lines[mark:] if l.to], [])
        self.assertEqual([d.last_pid(n) for n in "abc"], pids)
        self.assertEqual(d.ctl("plan")[1], "phase 1: a\nphase 2: c\nphase 3: b\n")
        self.assertEqual(out, "updated: b (requires)\n")
        # and it holds: c going down takes b with it now
        mark = len(d.lines)
        d.ctl("restart", "c")
        d.wait_state("b", "stopping", start=mark)
        d.wait_state("b", "running", start=mark)
        d.stop()

    def test_a_start_under_way_takes_the_new_ready_settings(self):
        """ready and ready_timeout of a service still starting: the new
        check judges it from now on, the new timeout counts from its spawn."""
        text = """
[service:slow]
command = /bin/sleep 1000
ready = exec:false
ready_timeout = 1h

[service:late]
command = /bin/sleep 1000
ready = exec:false
ready_timeout = 1h
backoff_initial = 1h
"""
        d = self.cohortd(text)
        d.wait_state("slow", "starting")
        d.wait_state("late", "starting")
        d.wait_socket()
        slow, late = d.pid_of("slow"), d.pid_of("late")
        mark = len(d.lines)
        d.write_config(text.replace("exec:false\nready_timeout = 1h\n\n", "exec:true\nready_timeout = 1h\n\n")
                       .replace("ready_timeout = 1h\nbackoff", "ready_timeout = 300ms\nbackoff"))
        out = d.ctl("reload")[1]
        _, l = d.wait_state("slow", "running", start=mark)
        self.assertEqual(l.reason, "ready: exec:true exited 0")
        _, l = d.wait_state("late", "stopping", start=mark)
        self.assertRegex(l.reason, r"^not ready within 300ms")
        self.assertEqual((d.last_pid("slow"), d.last_pid("late")), (slow, late))
        self.assertEqual(d.count(r"^spawned pid", "slow"), 1)
        self.assertEqual(out, "updated: slow (ready) late (ready_timeout)\n")
        d.stop()

    def test_a_new_stop_signal_is_used_at_the_next_stop(self):
        """stop_signal is cohortd's to send: changed, it does not restart
        the service, and the next stop sends the new one."""
        flag = self.path("s.traps")
        text = f"""
[service:s]
command = /bin/sh -c "trap '' TERM; trap 'exit 0' INT; touch {flag}; while :; do sleep 0.05; done"
ready = delay:200ms
stop_signal = TERM
stop_timeout = 1h
"""
        d = self.cohortd(text)
        d.wait_state("s", "running")
        d.wait_socket()
        wait_until(self, lambda: os.path.exists(flag), what="s trapping TERM and INT")
        pid = d.last_pid("s")
        mark = len(d.lines)
        d.write_config(text.replace("stop_signal = TERM", "stop_signal = INT"))
        reloaded = d.ctl("reload")[1]
        _, out, _ = d.ctl("stop", "s", timeout=20)
        # cohortctl answers once s is stopped; cohortd's log line about it
        # may not have been read by the harness yet
        d.wait_state("s", "stopped", start=mark)
        self.assertEqual([l.to for l in d.lines[mark:] if l.who == "s" and l.to], ["stopping", "stopped"])
        self.assertEqual(out, "s: stopped - stopped (exited with code 0)\n")
        self.assertFalse(pid_alive(pid))
        self.assertEqual(reloaded, "updated: s (stop_signal)\n")
        d.stop()

    def test_a_change_the_process_sees_restarts_it(self):
        text = """
[service:base]
command = /bin/sleep 1000
ready = delay:0
log_backups = 5

[service:app]
command = /bin/sleep 1000
requires = base
ready = delay:0

[service:ui]
command = /bin/sleep 1000
requires = app
ready = delay:0

[service:other]
command = /bin/sleep 1000
ready = delay:0
"""
        d = self.cohortd(text)
        d.wait_state("ui", "running")
        d.wait_socket()
        base, app = d.last_pid("base"), d.last_pid("app")
        mark = len(d.lines)
        d.write_config(text.replace("sleep 1000\nready = delay:0\nlog_backups = 5",
                                    "sleep 2000\nready = delay:0\nlog_backups = 2"))
        j = d.ctl_json("reload")
        self.assertEqual((j["changed"], j["restarted"], j["updated"]), (["base"], ["base"], []))
        self.assertEqual(j["keys"], {"base": ["command", "log_backups"]})
        # What requires base, directly or not, restarts with it, and says so.
        self.assertEqual(j["dependents"], ["app", "ui"])
        i, l = d.wait_state("base", "stopping", start=mark)
        self.assertEqual(l.reason, "definition changed by reload")
        d.wait_state("base", "running", start=i)
        d.wait_state("app", "running", start=i)
        self.assertNotEqual(d.last_pid("base"), base)
        self.assertNotEqual(d.last_pid("app"), app)
        self.assertFalse(pid_alive(base))
        # "running" (ready = delay:0) may come before the child's exec has
        # finished, when its cmdline is still empty
        pid = d.last_pid("base")
        wait_until(self, lambda: cmdline(pid) == "/bin/sleep\x002000\x00",
                   what="the new command line of base")
        d.wait_state("ui", "running", start=i)
        # cohortctl's words for it; app changed itself is restarted, not a
        # dependent, and ui is (through app)
        d.write_config(text.replace("sleep 1000\nready = delay:0\nlog_backups = 5",
                                    "sleep 2000\nready = delay:0\nlog_backups = 2")
                       .replace("sleep 1000\nrequires = base", "sleep 3000\nrequires = base"))
        rc, out, err = d.ctl("reload")
        self.assertEqual(out, "restarted: app (command)\n"
                              "restarted with them (they require one of them): ui\n", err)
        d.stop()

    def test_a_removed_service_stops_before_an_added_one_starts(self):
        """A rename keeping the port (supervisorctl update's order: what a
        reload removes stops first): the added service must not start, nor
        pass its probe against the old one, while the removed one drains."""
        server = self.path("server.py")
        with open(server, "w") as f:
            f.write("import signal, socket, sys, time\n"
                    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
                    "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen()\n"
                    "def term(*_):\n    time.sleep(1.0); sys.exit(0)\n"   # a drain before it lets go
                    "signal.signal(signal.SIGTERM, term)\n"
                    "while True:\n    s.accept()[0].close()\n")
        port = free_port()
        text = f"""
[service:old]
command = /usr/bin/python3 {server} {port}
ready = tcp:127.0.0.1:{port}
backoff_initial = 5s
"""
        d = self.cohortd(text)
        d.wait_state("old", "running")
        d.wait_socket()
        mark = len(d.lines)
        d.write_config(text.replace("[service:old]", "[service:new]"))
        d.ctl("reload")
        i, _ = d.wait_state("new", "running", start=mark, timeout=30)
        stopped, _ = d.wait_state("old", "stopped", start=mark)
        starts = [k for k, l in enumerate(d.lines[mark:i + 1], mark) if l.who == "new" and l.to == "starting"]
        self.assertTrue(starts and starts[0] > stopped, "new started before old had stopped:\n" + d.dump())
        waited = [l for l in d.lines[mark:] if l.who == "new" and l.to == "waiting"]
        self.assertIn("old, removed by the reload, is still stopping", waited[0].reason)
        self.assertFalse([l for l in d.lines[mark:] if l.who == "new" and l.to == "backoff"], d.dump())
        d.stop()


def cmdline(pid):
    with open(f"/proc/{pid}/cmdline") as f:
        return f.read()


if __name__ == "__main__":
    unittest.main(verbosity=2)
