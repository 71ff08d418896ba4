#!/usr/bin/python3
"""Processes and output: stop_timeout and KILL of the whole group,
grandchildren, orphan reaping, cohortd as PID 1, service logs with
timestamps and rotation, and a flood that must not slow anything else."""
import glob
import os
import re
import shutil
import signal
import subprocess
import time
import unittest

from harness import FACTOR, CohortTest, children_of, pid_alive, pid_namespace_wrap, wait_until

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ")


def proc_state(pid):
    """The state letter of /proc/PID/stat (T: stopped), or None once gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def read_pid(path):
    with open(path) as f:
        return int(f.read().strip())


class Processes(CohortTest):
    def test_a_term_sent_over_and_over_never_kills_cohortd_itself(self):
        """A supervisor told to stop by a manager that insists (TERM over
        and over until it exits) must end by its own exit, never by the
        signal's default action: between ev_signal_stop and SIG_IGN at the
        end, a TERM killed cohortd after a clean shutdown (-15, 11 runs of
        20).  A second TERM while services stop is 'kill them now' (exit
        1); either way cohortd exits by itself."""
        for _ in range(10):
            d = self.cohortd("[service:a]\ncommand = /bin/sleep 1000\nready = delay:0\n")
            d.wait_log(r"^stack is up")
            while d.proc.poll() is None:
                try:
                    os.kill(d.proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    break
            rc = d.stop(sig=None, expect=None)
            self.assertIn(rc, (0, 1), "cohortd ended by a signal; log:\n" + d.dump())

    def test_stop_timeout_kills_the_group_grandchildren_included(self):
        gc = self.path("gc.pid")
        d = self.cohortd(f"""
[service:obstinate]
command = trap "" TERM
    /bin/sh -c 'echo $$ > {gc}.tmp; mv {gc}.tmp {gc}; exec sleep 1000' &
    while :; do sleep 1; done
shell = yes
stop_timeout = 500ms
ready = delay:0
""".replace("TERM\n", "TERM;\n").replace("& \n", "&\n"))
        d.wait_state("obstinate", "running")
        wait_until(self, lambda: os.path.exists(gc), what="the grandchild's pid")
        main, grandchild = d.last_pid("obstinate"), read_pid(gc)
        self.assertTrue(pid_alive(grandchild))
        d.send(signal.SIGTERM)
        i, stopping = d.wait_state("obstinate", "stopping")
        i, kill = d.wait_log(r"^still running 0\.5s after SIGTERM: sending KILL to process group \d+$",
                             who="obstinate", start=i)
        self.assertGreaterEqual(kill.ms - stopping.ms, 500 - 5)
        self.assertLessEqual(kill.ms - stopping.ms, 500 + 200 * FACTOR)
        _, l = d.wait_state("obstinate", "stopped", start=i)
        self.assertIn("killed by SIGKILL", l.reason)
        d.stop()
        self.assertFalse(pid_alive(main))
        self.assertFalse(pid_alive(grandchild))

    def test_leftovers_of_a_crashed_service_are_killed(self):
        gc = self.path("gc.pid")
        d = self.cohortd(f"""
[service:leaky]
command = /bin/sh -c "sleep 1000 & echo $! > {gc}.tmp; mv {gc}.tmp {gc}; sleep 0.3; exit 1"
ready = delay:0
backoff_initial = 10s
""")
        d.wait_state("leaky", "backoff")
        # the child the main process left in its group went with it
        wait_until(self, lambda: not pid_alive(read_pid(gc)), what="the leftover to die")
        d.stop()

    def test_orphans_are_reaped(self):
        d = self.cohortd("""
[service:parent]
command = /bin/sh -c "for i in 1 2 3 4 5; do (setsid sleep 0.2 &); done; exec sleep 1000"
ready = delay:0
""")
        d.wait_state("parent", "running")
        # five double-forked grandchildren end up ours (subreaper) and exit
        for _ in range(5):
            d.wait_log(r"^reaped orphan pid \d+ \(exited with code 0\)$")
        # and none is left a zombie (one may be between its exit and our
        # SIGCHLD for a moment)
        wait_until(self, lambda: not [c for c in children_of(d.proc.pid) if c[1] == "Z"],
                   what="no zombie children")
        d.stop()

    def test_no_process_outlives_an_orderly_exit(self):
        esc = self.path("escaped.pid")
        d = self.cohortd(f"""
[service:escaper]
command = /bin/sh -c "setsid /bin/sh -c 'echo \\$\\$ > {esc}.tmp;
    mv {esc}.tmp {esc}; exec sleep 1000' & exec sleep 1000"
ready = delay:0
""")
        d.wait_state("escaper", "running")
        wait_until(self, lambda: os.path.exists(esc), what="the escaped pid")
        escaped = read_pid(esc)
        self.assertTrue(pid_alive(escaped))
        # The pid file is there once mv has renamed it, but mv may not have
        # exited yet: a second leftover.  Stop once the shell is sleep.
        wait_until(self, lambda: comm_of(escaped) == "sleep", what="the escaped shell to exec sleep")
        d.stop()
        self.assertFalse(pid_alive(escaped), "a process in its own session outlived cohortd")
        d.wait_log(r"^killed 1 leftover process \(it had left its service's process group\)$")

    def test_stray_signals_do_not_end_cohortd(self):
        """USR1, USR2 and ALRM would end cohortd by their default action and
        leave the stack unsupervised: they are logged and ignored."""
        d = self.cohortd("""
[service:a]
command = /bin/sleep 1000
ready = delay:0
""")
        d.wait_state("a", "running")
        pid = d.ctl_json("status")["services"][0]["pid"]
        for name in ("USR1", "USR2", "ALRM"):
            d.proc.send_signal(getattr(signal, "SIG" + name))
            d.wait_log(rf"^SIG{name} ignored: cohortd acts on TERM, INT, HUP, and USR1 with a log_file$")
        self.assertIsNone(d.proc.poll())
        self.assertEqual(d.ctl_json("status")["services"][0]["pid"], pid)
        d.stop()

    # A service that catches TERM (as redis, nginx and Python programs do)
    # and writes a file once its handler is in place.
    CATCHER = """import os, signal, sys, time
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
open(sys.argv[1] + ".tmp", "w").close()
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(1000)
"""

    def start_catcher(self):
        ready, script = self.path("handler.ready"), self.path("catcher.py")
        with open(script, "w") as f:
            f.write(self.CATCHER)
        d = self.cohortd(f"""
[service:catcher]
command = /usr/bin/python3 {script} {ready}
ready = delay:0
stop_timeout = 60s
""")
        d.wait_state("catcher", "running")
        wait_until(self, lambda: os.path.exists(ready), what="the TERM handler")
        return d, d.last_pid("catcher")

    def test_stop_reaches_a_paused_service_at_once(self):
        """A stopped (SIGSTOP) process cannot run its TERM handler: the stop
        signal is followed by CONT, so it stops well before stop_timeout
        (60s) instead of being KILLed at its end."""
        d, pid = self.start_catcher()
        os.killpg(pid, signal.SIGSTOP)
        wait_until(self, lambda: proc_state(pid) == "T", what="the service to be stopped")
        mark = len(d.lines)
        t0 = time.monotonic()
        d.ctl("stop", "catcher", timeout=90)
        took = time.monotonic() - t0
        self.assertLess(took, 5.0 * FACTOR, d.dump())
        _, l = d.wait_state("catcher", "stopped", start=mark)
        self.assertEqual(l.reason, "stopped (exited with code 0)")   # its handler ran: no KILL
        self.assertEqual(d.count(r"sending KILL"), 0)
        d.stop()

    def test_status_shows_a_paused_service(self):
        """cohortctl signal NAME STOP shows in status (JSON and table), with
        a log line; CONT clears it."""
        d, pid = self.start_catcher()
        _, out, _ = d.ctl("signal", "STOP", "catcher")
        self.assertIn("SIGSTOP", out)
        d.wait_log(rf"^paused: pid {pid} stopped by SIGSTOP$", who="catcher")
        self.assertEqual(proc_state(pid), "T")
        s = d.ctl_json("status", "catcher")["services"][0]
        self.assertEqual((s["state"], s.get("paused")), ("running", "STOP"))
        _, table, _ = d.ctl("status", "catcher")
        row = table.splitlines()[1].split()
        self.assertEqual(row[:2], ["catcher", "running"])
        self.assertIn("  paused (SIGSTOP); ", table)
        mark = len(d.lines)
        d.ctl("signal", "CONT", "catcher")
        d.wait_log(rf"^continued: pid {pid} runs again$", who="catcher", start=mark)
        s = d.ctl_json("status", "catcher")["services"][0]
        self.assertNotIn("paused", s)
        _, table, _ = d.ctl("status", "catcher")
        self.assertNotIn("paused", table)
        d.stop()

    def test_umask_sets_the_mode_of_the_files_a_service_creates(self):
        """umask = 027 gives a file 0640 (0666 & ~027) and a directory 0750;
        without umask a service keeps cohortd's (022 here)."""
        old = os.umask(0o022)   # cohortd inherits it
        try:
            d = self.cohortd(f"""
[service:masked]
command = /bin/sh -c "mkdir {self.path('d027')} && touch {self.path('f027')}.tmp &&
    mv {self.path('f027')}.tmp {self.path('f027')}"
umask = 027
ready = delay:0
restart = on-failure

[service:plain]
command = /bin/sh -c "touch {self.path('f022')}.tmp && mv {self.path('f022')}.tmp {self.path('f022')}"
ready = delay:0
restart = on-failure
""")
        finally:
            os.umask(old)
        d.wait_state("masked", "exited")
        d.wait_state("plain", "exited")
        mode = lambda name: os.stat(self.path(name)).st_mode & 0o7777
        self.assertEqual(oct(mode("f027")), oct(0o640))
        self.assertEqual(oct(mode("d027")), oct(0o750))
        self.assertEqual(oct(mode("f022")), oct(0o644))
        d.stop()

    @unittest.skipUnless(os.geteuid() == 0 and shutil.which("unshare"), "needs root and unshare")
    def test_pid1_in_a_pid_namespace(self):
        probe = subprocess.run(pid_namespace_wrap() + ["true"], capture_output=True, text=True)
        if probe.returncode != 0:
            self.skipTest("unshare cannot make a pid namespace here: " + probe.stderr.strip())
        d = self.cohortd("""
[service:parent]
command = /bin/sh -c "for i in 1 2 3; do (setsid sleep 0.1 &); done; exec sleep 1000"
ready = delay:0

[service:other]
command = /bin/sleep 1000
requires = parent
ready = delay:0
""", wrap=pid_namespace_wrap())
        d.wait_log(r"^cohortd \S+ \(pid 1, init\)")
        d.wait_log(r"^stack is up: 2 of 2 services running$")
        for _ in range(3):
            d.wait_log(r"^reaped orphan pid \d+")
        # TERM goes to cohortd itself: the child unshare forked
        inner = wait_until(self, lambda: children_of(d.proc.pid), what="unshare's child")[0][0]
        os.kill(inner, signal.SIGTERM)
        d.wait_log(r"^every service has stopped$")
        d.stop(sig=None, expect=0)
        self.assertEqual(children_of(inner), [])

    def test_service_logs_are_stamped_and_rotated(self):
        d = self.cohortd("""
[service:talker]
command = /bin/sh -c "i=0; while [ $i -lt 3000 ]; do echo line $i of the talker; echo err $i >&2; i=$((i+1)); done; echo the end; exec sleep 1000"
ready = delay:0
log_max_size = 40K
log_backups = 2

[service:quiet]
command = /bin/sh -c "printf 'no newline at the end'; exec sleep 1000"
ready = delay:0
stdout = {out}
stderr = null
""".replace("{out}", self.path("quiet.out")))
        log = os.path.join(d.log_dir, "talker.log")
        def ended():
            try:
                with open(log) as f:
                    return "the end" in f.read()
            except FileNotFoundError:   # not yet, or between a rotation's rename and open
                return False
        wait_until(self, ended, what="the end")
        files = sorted(glob.glob(log + "*"))
        self.assertEqual(files, [log, log + ".1", log + ".2"])
        for f in files:
            self.assertLessEqual(os.path.getsize(f), 40 * 1024, f)
            with open(f) as fh:
                lines = fh.read().splitlines()
            self.assertTrue(lines)
            for line in lines:
                self.assertRegex(line, STAMP, f)
        with open(log + ".1") as f:
            older = f.read()
        self.assertIn("line ", older)
        self.assertIn("err ", older)  # stderr = stdout by default
        d.stop()
        # the partial line was written when the service stopped
        with open(self.path("quiet.out")) as f:
            self.assertRegex(f.read(), STAMP.pattern + "no newline at the end\n$")

    def test_flood_does_not_delay_another_restart(self):
        d = self.cohortd("""
[service:flood]
command = /bin/sh -c "yes 0123456789012345678901234567890123456789 | head -c 100000000; echo done; exec sleep 1000"
ready = delay:0
log_max_size = 20M
log_backups = 1
restart = never

[service:victim]
command = /bin/sleep 1000
ready = delay:0
backoff_initial = 0
backoff_jitter = 0
breaker_failures = 0
""")
        d.wait_state("victim", "running")
        d.wait_state("flood", "running")
        latencies = []
        for _ in range(5):
            mark = len(d.lines)
            os.kill(d.last_pid("victim"), signal.SIGKILL)
            _, down = d.wait_state("victim", "backoff", start=mark)
            _, up = d.wait_state("victim", "running", start=mark)
            latencies.append(up.ms - down.ms)
        self.assertLess(max(latencies), 250 * FACTOR, latencies)
        # the flood was logged (at least in part) and nothing blocked
        log = os.path.join(d.log_dir, "flood.log")
        wait_until(self, lambda: os.path.exists(log) and os.path.getsize(log) > 0, what="flood.log")
        d.stop()



class LogEdges(CohortTest):
    def test_rotation_that_cannot_happen_does_not_spin(self):
        d = self.cohortd("""
[service:talker]
command = /bin/sh -c "i=0; while [ $i -lt 400 ]; do echo line $i of some length; i=$((i+1)); done;
    echo the end; exec sleep 1000"
ready = delay:0
log_max_size = 1K
log_backups = 1
autostart = no
""")
        os.makedirs(os.path.join(d.log_dir, "talker.log.1"))   # rename onto it fails
        d.wait_socket()
        d.ctl("start", "talker")
        log = os.path.join(d.log_dir, "talker.log")

        def ended():
            with open(log) as f:
                return "the end" in f.read()
        wait_until(self, lambda: os.path.exists(log) and ended(), what="the end")
        # it kept writing (past log_max_size), warned a bounded number of times
        self.assertGreater(os.path.getsize(log), 1024)
        self.assertLess(d.count(r"^cannot rotate "), 40)
        d.stop(timeout=10)


def comm_of(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except (FileNotFoundError, ProcessLookupError):
        return None


if __name__ == "__main__":
    unittest.main(verbosity=2)
