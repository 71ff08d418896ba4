#!/usr/bin/python3
"""Readiness (delay, notify, tcp, http, exec, and ready_timeout) and
health checks, with real listeners and real probes."""
import os
import re
import shutil
import signal
import subprocess
import unittest

from harness import PY, CohortTest, free_port, pid_alive, wait_until

NOTIFY = """import os, socket, sys, time
time.sleep(float(sys.argv[1]))
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"STATUS=warming up", os.environ["NOTIFY_SOCKET"])
s.sendto(b"READY=1\\nSTATUS=all good", os.environ["NOTIFY_SOCKET"])
time.sleep(1000)
"""

LISTEN = """import socket, sys, time
time.sleep(float(sys.argv[2]))
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(16)
while True:
    c, _ = s.accept()
    c.close()
"""


class Readiness(CohortTest):
    def script(self, name, text):
        p = self.path(name)
        with open(p, "w") as f:
            f.write(text)
        return p

    def test_each_readiness_kind(self):
        notify = self.script("notify.py", NOTIFY)
        listen = self.script("listen.py", LISTEN)
        flag = self.path("flag")
        tcp_port, http_port, closed_port, http404_port = (free_port() for _ in range(4))
        d = self.cohortd(f"""
[service:by-delay]
command = /bin/sleep 1000
ready = delay:300ms

[service:by-notify]
command = {PY} {notify} 0.3
ready = notify

[service:by-tcp]
command = {PY} {listen} {tcp_port} 0.3
ready = tcp:127.0.0.1:{tcp_port}

[service:by-http]
command = {PY} -m http.server {http_port} --bind 127.0.0.1
directory = {self.tmp}
ready = http://127.0.0.1:{http_port}/

[service:by-exec]
command = /bin/sh -c "sleep 0.3; touch {flag}; exec sleep 1000"
ready = exec:test -f {flag}

[service:never-tcp]
command = /bin/sleep 1000
ready = tcp:127.0.0.1:{closed_port}
ready_timeout = 1s
backoff_initial = 10s

[service:http-404]
command = {PY} -m http.server {http404_port} --bind 127.0.0.1
directory = {self.tmp}
ready = http://127.0.0.1:{http404_port}/no/such/page
ready_timeout = 1500ms
backoff_initial = 10s
""")
        for who, reason in [("by-delay", "still up after 300ms"),
                            ("by-notify", "all good"),
                            ("by-tcp", f"ready: tcp:127.0.0.1:{tcp_port} connected"),
                            ("by-http", f"ready: http://127.0.0.1:{http_port}/ GET / answered 200"),
                            ("by-exec", f"ready: exec:test -f {flag} exited 0")]:
            _, start = d.wait_state(who, "starting")
            _, up = d.wait_state(who, "running", timeout=15)
            self.assertEqual(up.reason, reason, who)
            if who != "by-http":
                self.assertGreaterEqual(up.ms - start.ms, 300 - 5, f"{who} ready too early")
        _, l = d.wait_state("never-tcp", "stopping")
        self.assertEqual(l.frm, "starting")
        self.assertIn("not ready within 1s (not ready: connect 127.0.0.1:", l.reason)
        self.assertIn("Connection refused", l.reason)
        _, l = d.wait_state("never-tcp", "backoff")
        self.assertIn("not ready within 1s", l.reason)
        _, l = d.wait_state("http-404", "stopping")
        self.assertIn("GET /no/such/page answered 404", l.reason)
        d.stop()

    def test_notify_from_a_child_of_the_service(self):
        notify = self.script("notify.py", NOTIFY)
        d = self.cohortd(f"""
[service:forks]
command = /bin/sh -c "{PY} {notify} 0.1; true"
ready = notify
""")
        _, up = d.wait_state("forks", "running")
        self.assertEqual(up.reason, "all good")
        d.stop()

    def test_notify_ignored_from_other_processes(self):
        # A READY=1 from a process that is no service's is dropped.
        import socket
        d = self.cohortd("""
[service:slow]
command = /bin/sleep 1000
ready = notify
ready_timeout = 60s
""")
        d.wait_state("slow", "starting")
        sock = os.path.join(d.run_dir, "notify.sock")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.sendto(b"READY=1", sock)
        d.wait_log(r"notify message from pid \d+, which is no service's")
        self.assertEqual(d.state("slow"), "starting")
        d.stop()

    def test_notify_from_a_helper_that_exits_at_once(self):
        """systemd-notify in a script: the sender exits (and is reaped by
        the script) before cohortd reads its READY=1, so its pid names no
        one.  A ready = notify service has a socket of its own, and the
        message is its by where it came.  cohortd is held stopped while the
        helpers send and exit, so that their pids are gone for certain."""
        send = self.script("send.py", "import os, socket\n"
                           "socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto("
                           "b'READY=1\\nSTATUS=sent and gone', os.environ['NOTIFY_SOCKET'])\n")
        go = self.path("go")
        names = [f"s{i}" for i in range(4)]
        d = self.cohortd("".join(f"""
[service:{n}]
command = /bin/sh -c "touch {go}.{n}.up; while [ ! -e {go} ]; do sleep 0.02; done; {PY} {send};
    touch {go}.{n}; exec sleep 1000"
ready = notify
ready_timeout = 1h
""" for n in names))
        # each one's process runs (the log says "starting" before the spawn)
        wait_until(self, lambda: all(os.path.exists(f"{go}.{n}.up") for n in names),
                   what="every service's process")
        d.proc.send_signal(signal.SIGSTOP)
        try:
            open(go, "w").close()
            wait_until(self, lambda: all(os.path.exists(f"{go}.{n}") for n in names),
                       what="every helper to send and be reaped")
        finally:
            d.proc.send_signal(signal.SIGCONT)
        for n in names:
            _, up = d.wait_state(n, "running")
            self.assertEqual(up.reason, "sent and gone")
        sock = os.path.join(d.run_dir, "notify.s0.sock")
        d.stop()
        self.assertFalse(os.path.exists(sock))

    @unittest.skipUnless(os.geteuid() == 0 and shutil.which("setpriv"), "needs root and setpriv")
    def test_notify_socket_of_a_service_is_not_anyones(self):
        """On a service's own socket a message counts when its sender is in
        the service's process group (whatever its user: a service may drop
        privileges itself), or is gone and ran as the service's user; not
        from a process of another user that is gone."""
        send = self.script("send.py", "import os, socket, sys, time\n"
                           "socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto("
                           "b'READY=1\\nSTATUS=' + sys.argv[1].encode(), "
                           "sys.argv[2] if len(sys.argv) > 2 else os.environ['NOTIFY_SOCKET'])\n"
                           "if sys.argv[1] == 'dropped': time.sleep(1000)\n")
        up = self.path("up")
        os.chmod(self.tmp, 0o755)   # nobody reads the script
        os.chmod(send, 0o644)
        d = self.cohortd(f"""
[service:dropper]
command = /bin/sh -c "while [ ! -e {up}.go ]; do sleep 0.02; done;
    exec setpriv --reuid=65534 --regid=65534 --clear-groups {PY} {send} dropped"
ready = notify

[service:target]
command = /bin/sh -c "touch {up}; exec sleep 1000"
ready = notify
ready_timeout = 1h
""")
        d.wait_socket()
        for p in (d.dir, d.run_dir):    # nobody reaches the sockets
            os.chmod(p, 0o755)
        open(up + ".go", "w").close()
        _, l = d.wait_state("dropper", "running")
        self.assertEqual(l.reason, "dropped")
        wait_until(self, lambda: os.path.exists(up), what="target's process")
        sock = os.path.join(d.run_dir, "notify.target.sock")
        d.proc.send_signal(signal.SIGSTOP)
        try:    # another user's process sends and is gone before cohortd reads
            subprocess.run([PY, send, "spoofed", sock], user=65534, group=65534, check=True)
        finally:
            d.proc.send_signal(signal.SIGCONT)
        d.wait_log(r"^notify message from pid \d+ \(uid 65534\), which is not its: ignored$", who="target")
        self.assertEqual(d.state("target"), "starting")
        d.stop()

    def test_notify_falls_back_to_the_shared_socket(self):
        """A run_dir and service name too long for a socket path of the
        service's own: it uses the shared socket (the sender found by its
        process group), and says so once, not at each start."""
        notify = self.script("notify.py", NOTIFY)
        run_dir = self.path("r" * 40)
        name = "n" * 64
        d = self.cohortd(f"""
[cohort]
run_dir = {run_dir}

[service:{name}]
command = {PY} {notify} 0.1
ready = notify
backoff_initial = 100ms
""")
        _, up = d.wait_state(name, "running")
        self.assertEqual(up.reason, "all good")
        # the mark before the kill: the restart's lines may be read before
        # this thread runs again
        mark = len(d.lines)
        os.kill(d.last_pid(name), signal.SIGKILL)
        d.wait_state(name, "running", start=mark)
        self.assertEqual(d.count(r"^no notify socket of its own \(.*path too long.*\): it uses the shared one$",
                                 name), 1)
        self.assertFalse(os.path.exists(os.path.join(run_dir, f"notify.{name}.sock")))
        d.stop()

    def test_health_failures_restart_the_service(self):
        flag = self.path("healthy")
        # a long name: the reason of the backoff holds the failure whole
        check = self.path("check-that-the-flag-file-is-still-there")
        with open(check, "w") as f:
            f.write(f"#!/bin/sh\ntest -f {flag}\n")
        os.chmod(check, 0o755)
        d = self.cohortd(f"""
[service:sick]
command = /bin/sh -c "touch {flag}; exec sleep 1000"
ready = delay:0
health = exec:{check}
health_interval = 200ms
health_timeout = 1s
health_retries = 2
backoff_initial = 100ms
""")
        i, _ = d.wait_state("sick", "running")
        pid1 = d.last_pid("sick")
        # passing probes first
        d.wait_log(r"^health ok: exited 0", who="sick", start=i)
        os.unlink(flag)
        i, l = d.wait_state("sick", "stopping", start=i)
        failed = f"health check failed 2 times: {check} exited 1"
        self.assertEqual(l.reason, failed)
        self.assertEqual(d.count(r"health check failed \(1 of 2\)", "sick"), 1)
        i, l = d.wait_state("sick", "backoff", start=i)
        self.assertRegex(l.reason, "^" + re.escape(failed) + r"; restart in \S+ \(failure 1\)$")
        d.wait_state("sick", "running", start=i)
        self.assertNotEqual(d.last_pid("sick"), pid1)
        self.assertFalse(pid_alive(pid1))
        d.stop()

    def test_health_over_http_and_tcp(self):
        http_port, tcp_port = free_port(), free_port()
        listen = self.script("listen.py", LISTEN)
        d = self.cohortd(f"""
[service:web]
command = {PY} -m http.server {http_port} --bind 127.0.0.1
directory = {self.tmp}
ready = http://127.0.0.1:{http_port}/
health = http://127.0.0.1:{http_port}/
health_interval = 100ms

[service:tcp]
command = {PY} {listen} {tcp_port} 0
ready = tcp:127.0.0.1:{tcp_port}
health = tcp:127.0.0.1:{tcp_port}
health_interval = 100ms
""")
        for who, why in (("web", "GET / answered 200"), ("tcp", "connected")):
            i, _ = d.wait_state(who, "running")
            for _ in range(5):
                i, _ = d.wait_log(f"^health ok: {why}$", who=who, start=i + 1)
        self.assertEqual(d.count(r"health check failed"), 0)
        d.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
