#!/usr/bin/python3
"""pidfile = PATH: a program that forks a daemon and exits (systemd's
Type=forking with PIDFile=).  Real double-forking daemons, and the real
nginx when it is installed, on a config of their own in a temp dir."""
import os
import re
import shutil
import signal
import subprocess
import time
import unittest
import urllib.request

from harness import FACTOR, PY, CohortTest, free_port, pid_alive, wait_until

# A daemon as the books make one: fork, setsid, fork, the first two exit.
# argv: PIDFILE MODE DELAY.  The daemon forks a worker of its own (in its
# group, as nginx's are), then after DELAY seconds (or, for DELAY gate:PATH,
# once PATH exists) writes its pid (MODE ok),
# junk (junk) or nothing (never) to PIDFILE, through a temp file and a
# rename.  MODE fail: the started process exits 3 without forking.  TERM
# ends the daemon (and its worker) with 0; MODE stubborn: as ok, but the
# daemon ignores TERM.
DAEMON = """import os, signal, sys, time
path, mode, delay = sys.argv[1], sys.argv[2], sys.argv[3]
if mode == "fail":
    sys.exit(3)
if os.fork():
    os._exit(0)
os.setsid()
if os.fork():
    os._exit(0)
worker = os.fork()
if worker == 0:
    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
    while True:
        time.sleep(1000)
def term(*a):
    os.kill(worker, signal.SIGTERM)
    os._exit(0)
signal.signal(signal.SIGTERM, signal.SIG_IGN if mode == "stubborn" else term)
with open(path + ".worker", "w") as f:
    f.write("%d\\n" % worker)
if delay.startswith("gate:"):
    while not os.path.exists(delay[5:]):
        time.sleep(0.02)
else:
    time.sleep(float(delay))
text = {"junk": "not-a-pid\\n", "never": None}.get(mode, "%d\\n" % os.getpid())
if text is not None:
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)
while True:
    time.sleep(1000)
"""

# A daemon whose parent stays: the started process forks a keeper (in its
# process group) and exits 0; the keeper forks the daemon, which writes its
# pid and lives; the keeper waits for it, then exits.  The daemon is not
# cohortd's child: cohortd watches it through a pidfd.
KEPT = """import os, signal, sys, time
path = sys.argv[1]
if os.fork():
    os._exit(0)
pid = os.fork()
if pid:
    os.waitpid(pid, 0)
    os._exit(0)
signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
with open(path + ".tmp", "w") as f:
    f.write("%d\\n" % os.getpid())
os.rename(path + ".tmp", path)
while True:
    time.sleep(1000)
"""


def read_pid(path):
    with open(path) as f:
        return int(f.read().split()[0])


class Pidfile(CohortTest):
    def script(self, name, text):
        p = self.path(name)
        with open(p, "w") as f:
            f.write(text)
        return p

    def service(self, name, mode, delay=0.2, extra=""):
        daemon = self.script("daemon.py", DAEMON)
        pidfile = self.path(f"{name}.pid")
        return pidfile, f"""
[service:{name}]
command = {PY} {daemon} {pidfile} {mode} {delay}
pidfile = {pidfile}
stop_timeout = 5s
{extra}
"""

    def status_pid(self, d, name):
        st = d.ctl_json("status", name)
        svc = [s for s in st["services"] if s["name"] == name][0]
        return svc["pid"], svc["state"]

    def test_adopted_daemon_runs_restarts_and_stops(self):
        # The pid file is written 0.5s after the daemon starts, so
        # the first looks find nothing; a stale file from an earlier run
        # names a live process that is not the daemon, and must not be read.
        pidfile, text = self.service("d", "ok", delay=0.5,
                                     extra="backoff_initial = 100ms\nbackoff_jitter = 0")
        decoy = subprocess.Popen(["/bin/sleep", "1000"])
        self.addCleanup(lambda: (decoy.kill(), decoy.wait()))
        with open(pidfile, "w") as f:
            f.write(f"{decoy.pid}\n")
        d = self.cohortd(text)
        _, forked = d.wait_state("d", "starting", start=d.wait_state("d", "starting")[0] + 1)
        self.assertIn(f"the started process exited 0; reading {pidfile}", forked.reason)
        _, up = d.wait_state("d", "running")
        daemon = read_pid(pidfile)
        self.assertNotEqual(daemon, decoy.pid)
        self.assertEqual(up.reason, f"adopted pid {daemon} from {pidfile}")
        self.assertEqual(self.status_pid(d, "d"), (daemon, "running"))
        started = d.last_pid("d")
        self.assertNotEqual(started, daemon)
        # The file came after cohortd began to look for it (it looked again),
        # and the service was ready only once it was there.
        written = int(os.stat(pidfile).st_mtime * 1000)
        self.assertGreater(written, forked.ms, "the file was there at the first look")
        self.assertGreaterEqual(up.ms, written - 1, "ready before the file was written")

        # Killing the daemon is the service's exit: restarted (a new daemon).
        mark = len(d.lines)
        os.kill(daemon, signal.SIGKILL)
        _, ended = d.wait_state("d", "backoff", start=mark)
        self.assertIn("killed by SIGKILL", ended.reason)
        _, up2 = d.wait_state("d", "running", start=mark)
        daemon2 = read_pid(pidfile)
        self.assertNotEqual(daemon2, daemon)
        self.assertEqual(up2.reason, f"adopted pid {daemon2} from {pidfile}")

        # stop: TERM to the daemon's group (its worker too), well within
        # stop_timeout (5s), and no KILL needed.
        worker = read_pid(pidfile + ".worker")
        self.assertTrue(pid_alive(worker))
        t0 = time.monotonic()
        mark = len(d.lines)
        d.ctl("stop", "d")
        _, down = d.wait_state("d", "stopped", start=mark)
        self.assertLess(time.monotonic() - t0, 5 * FACTOR)
        self.assertEqual(down.reason, "stopped (exited with code 0)")
        wait_until(self, lambda: not pid_alive(daemon2) and not pid_alive(worker),
                   what="the daemon and its worker gone")
        self.assertEqual(d.count(r"sending KILL", who="d"), 0)
        self.assertTrue(pid_alive(decoy.pid), "the stale file's pid was signalled")
        d.stop()

    def test_stop_timeout_kills_a_daemon_that_ignores_term(self):
        pidfile, text = self.service("d", "stubborn", delay=0)
        text = text.replace("stop_timeout = 5s", "stop_timeout = 500ms")
        d = self.cohortd(text)
        d.wait_state("d", "running")
        daemon = read_pid(pidfile)
        mark = len(d.lines)
        t0 = time.monotonic()
        d.ctl("stop", "d")
        _, down = d.wait_state("d", "stopped", start=mark)
        took = time.monotonic() - t0
        self.assertIn("killed by SIGKILL", down.reason)
        self.assertGreaterEqual(took, 0.45)
        self.assertEqual(d.count(r"still running 0\.5s after SIGTERM: sending KILL", who="d"), 1)
        self.assertFalse(pid_alive(daemon))
        self.assertFalse(pid_alive(read_pid(pidfile + ".worker")))
        d.stop()

    def test_a_pid_file_that_never_comes_fails_after_ready_timeout(self):
        pidfile, text = self.service("d", "never", extra="ready_timeout = 700ms\nrestart = never")
        d = self.cohortd(text)
        _, l = d.wait_state("d", "failed")
        self.assertEqual(l.frm, "starting")
        self.assertEqual(l.reason, f"no pid within 700ms: {pidfile}: not written (restart = never)")
        self.assertEqual(self.status_pid(d, "d"), (None, "failed"))
        d.stop()

    def test_junk_in_the_pid_file_fails_with_its_name(self):
        pidfile, text = self.service("d", "junk", extra="restart = never")
        d = self.cohortd(text)
        _, l = d.wait_state("d", "failed")
        self.assertEqual(l.reason, f"{pidfile}: expected a process id, found \"not-a-pid\" (restart = never)")
        d.stop()

    def test_a_pid_file_that_cannot_be_removed_fails_the_start(self):
        pidfile, text = self.service("d", "ok", extra="restart = never")
        os.mkdir(pidfile)
        d = self.cohortd(text)
        _, l = d.wait_state("d", "failed")
        self.assertEqual(l.reason, f"cannot start: cannot remove the earlier PID file {pidfile}: "
                         "Is a directory")
        self.assertIsNone(d.last_pid("d"), "nothing was started")
        d.stop()

    def test_started_process_exiting_non_zero_is_a_failed_start(self):
        pidfile, text = self.service("d", "fail", extra="backoff_initial = 5s\nbackoff_jitter = 0")
        d = self.cohortd(text)
        _, l = d.wait_state("d", "backoff")
        self.assertEqual(l.frm, "starting")
        self.assertEqual(l.reason, "exited with code 3; restart in 5s (failure 1)")
        self.assertEqual(d.count(r"reading .*\.pid", who="d"), 0)
        d.stop()

    def test_a_pid_that_is_no_process_of_the_service_is_refused(self):
        # The started process writes the pid of a process of someone else
        # (the test's own sleep) and exits 0.
        other = subprocess.Popen(["/bin/sleep", "1000"])
        self.addCleanup(lambda: (other.kill(), other.wait()))
        pidfile = self.path("x.pid")
        d = self.cohortd(f"""
[service:x]
command = /bin/sh -c "echo {other.pid} > {pidfile}"
pidfile = {pidfile}
restart = never
""")
        _, l = d.wait_state("x", "failed")
        self.assertEqual(l.reason, f"{pidfile} names pid {other.pid}, which is not this service's "
                         "(not cohortd's child, nor started from its process group) (restart = never)")
        self.assertTrue(pid_alive(other.pid))
        d.stop()

    def test_a_daemon_whose_parent_stays_is_watched_by_pidfd(self):
        kept = self.script("kept.py", KEPT)
        pidfile = self.path("k.pid")
        d = self.cohortd(f"""
[service:k]
command = {PY} {kept} {pidfile}
pidfile = {pidfile}
backoff_initial = 100ms
""")
        _, up = d.wait_state("k", "running")
        daemon = read_pid(pidfile)
        # pidfd_open, or where there is none (valgrind knows no such call) a look every 0.2 s
        self.assertIn(up.reason, (f"adopted pid {daemon} from {pidfile} (watched by pidfd)",
                                  f"adopted pid {daemon} from {pidfile} (watched by a look every 0.2 s)"))
        mark = len(d.lines)
        os.kill(daemon, signal.SIGKILL)
        _, ended = d.wait_state("k", "backoff", start=mark)
        self.assertIn("ended (not cohortd's child: no exit status)", ended.reason)
        d.wait_state("k", "running", start=mark)
        daemon2 = read_pid(pidfile)
        mark = len(d.lines)
        d.ctl("stop", "k")
        d.wait_state("k", "stopped", start=mark)
        wait_until(self, lambda: not pid_alive(daemon2), what="the daemon gone")
        d.stop()

    def test_shutdown_stops_the_adopted_daemon(self):
        pidfile, text = self.service("d", "ok", delay=0)
        d = self.cohortd(text)
        d.wait_state("d", "running")
        daemon = read_pid(pidfile)
        worker = read_pid(pidfile + ".worker")
        d.stop()
        self.assertFalse(pid_alive(daemon))
        self.assertFalse(pid_alive(worker))

    def test_a_stop_before_the_pid_is_read_stops_what_comes(self):
        # The file comes once the stop is under way (a gate: a delay of 1 s
        # was passed on a loaded machine before the stop came): the daemon
        # is adopted during the stop, and stopped.  A file that never comes
        # ends the stop at stop_timeout.
        gate = self.path("gate")
        pidfile, text = self.service("d", "ok", delay=f"gate:{gate}")
        never_file, never = self.service("n", "never", extra="stop_timeout = 500ms")
        d = self.cohortd(text + never.replace("stop_timeout = 5s\n", ""))
        for name in ("d", "n"):
            first, _ = d.wait_state(name, "starting")
            d.wait_log(r"^starting -> starting: the started process exited 0", who=name, start=first)
        mark = len(d.lines)
        d.ctl("stop", "--no-wait", "d", "n")
        d.wait_state("d", "stopping", start=mark)
        open(gate, "w").close()
        _, down = d.wait_state("d", "stopped", start=mark)
        daemon = read_pid(pidfile)
        self.assertEqual(down.reason, "stopped (exited with code 0)")
        d.wait_log(rf"^adopted pid {daemon} from {re.escape(pidfile)}: stopping it", who="d", start=mark)
        wait_until(self, lambda: not pid_alive(daemon) and not pid_alive(read_pid(pidfile + ".worker")),
                   what="the daemon and its worker gone")
        _, down = d.wait_state("n", "stopped", start=mark)
        self.assertEqual(down.frm, "stopping")
        self.assertEqual(down.reason, f"stopped: no pid read within 500ms (not ready: {never_file}: not written)")
        d.stop()

    def test_a_killed_cohortds_daemon_is_stopped_by_the_next(self):
        """cohortd records each running service's process group: for an
        adopted daemon, the group it is in (its first fork's, left
        leaderless by the double fork), so that a cohortd started after a
        kill -9 of this one stops it before starting the service again."""
        pidfile, text = self.service("d", "ok", delay=0)
        text = f"[cohort]\nrun_dir = {self.path('run')}\n" + text
        first = self.cohortd(text)
        first.wait_state("d", "running")
        daemon = read_pid(pidfile)
        worker = read_pid(pidfile + ".worker")
        with open(f"/proc/{daemon}/stat") as f:
            group = int(f.read().rsplit(")", 1)[1].split()[2])
        self.assertNotEqual(group, daemon, "the double fork leaves the daemon in its first child's group")
        # The record is written before the loop next waits, a moment after
        # the log line: a kill -9 comes only once it names the group.
        record = os.path.join(self.path("run"), "cohortd.groups")

        def recorded():
            with open(record) as f:
                return any(l.split()[:1] == [str(group)] for l in f)
        wait_until(self, recorded, what="the record naming the daemon's group")
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait()
        first.returncode = -9
        self.assertTrue(pid_alive(daemon) and pid_alive(worker))
        second = self.cohortd(text)
        i, _ = second.wait_log(rf"^old pid {group}, left by a cohortd that ended without stopping it, "
                               r"is gone but its process group still runs: SIGTERM", who="d")
        j, _ = second.wait_log(rf"^old pid {group} has stopped$", who="d", start=i)
        k, _ = second.wait_state("d", "starting")
        self.assertLess(j, k)
        self.assertFalse(pid_alive(daemon) or pid_alive(worker))
        second.wait_state("d", "running")
        self.assertNotEqual(read_pid(pidfile), daemon)
        second.stop()

    @unittest.skipUnless(shutil.which("nginx") or os.path.exists("/usr/sbin/nginx"),
                         "nginx is not installed (contrib/bootstrap.sh --tests installs it)")
    def test_real_nginx(self):
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        port = free_port()
        conf = self.path("nginx.conf")
        pidfile = self.path("nginx.pid")
        t = self.tmp
        with open(conf, "w") as f:
            f.write(f"""
worker_processes 2;
error_log {t}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {t}/body;
    proxy_temp_path {t}/proxy;
    fastcgi_temp_path {t}/fastcgi;
    uwsgi_temp_path {t}/uwsgi;
    scgi_temp_path {t}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "hello from nginx under cohort\\n"; }}
    }}
}}
""")
        d = self.cohortd(f"""
[service:nginx]
command = {nginx} -c {conf} -p {t}/ -e {t}/error.log -g 'daemon on; master_process on; pid {pidfile};'
pidfile = {pidfile}
ready = http://127.0.0.1:{port}/
stop_timeout = 5s
""")
        _, up = d.wait_state("nginx", "running", timeout=20)
        master = read_pid(pidfile)
        self.assertEqual(up.reason, f"ready: http://127.0.0.1:{port}/ GET / answered 200")
        adopted = [l for l in d.transitions("nginx") if l.reason.startswith("adopted pid")]
        self.assertEqual(adopted[-1].reason, f"adopted pid {master} from {pidfile}")
        self.assertEqual(self.status_pid(d, "nginx"), (master, "running"))
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5 * FACTOR).read()
        self.assertEqual(body, b"hello from nginx under cohort\n")
        # one worker answers the probe before the master may have forked the
        # other: its two workers, once both are there (and no third)
        workers = wait_until(self, lambda: (lambda w: w if len(w) >= 2 else None)(
            [int(p) for p in os.listdir("/proc") if p.isdigit() and self._ppid(int(p)) == master]),
            what="nginx's two workers")
        self.assertEqual(len(workers), 2, "nginx's two workers")
        mark = len(d.lines)
        t0 = time.monotonic()
        d.ctl("stop", "nginx")
        _, down = d.wait_state("nginx", "stopped", start=mark)
        self.assertLess(time.monotonic() - t0, 5 * FACTOR)
        self.assertEqual(d.count(r"sending KILL", who="nginx"), 0)
        wait_until(self, lambda: not any(pid_alive(p) for p in [master] + workers), what="nginx gone")
        with self.assertRaises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
        d.stop()

    @staticmethod
    def _ppid(pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                return int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return None


if __name__ == "__main__":
    unittest.main()
