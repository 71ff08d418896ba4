#!/usr/bin/python3
"""cohortd under systemd (Type=notify): the sd_notify exchange with a
NOTIFY_SOCKET the test listens on, as systemd would."""
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import unittest

from harness import BUILD, COHORTD, FACTOR, PY, CohortTest, wait_until

# Prints whether it sees systemd's variables (it must not: cohortd is its
# supervisor), then stays.
ENVDUMP = """import os, sys, time
with open(sys.argv[1] + ".tmp", "w") as f:
    for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        f.write(f"{k}={os.environ.get(k, '')}\\n")
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(1000)
"""


class Listener:
    """The systemd end: a datagram socket read at once by a thread of its
    own, as systemd drains its notify socket (the kernel queues only
    net.unix.max_dgram_qlen datagrams, 10 by default), and the messages it
    got, each with its arrival time."""

    def __init__(self, address):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.msgs = []
        self.cond = threading.Condition()
        self.closed = False
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        self.sock.settimeout(0.2)
        while not self.closed:
            try:
                data = self.sock.recv(4096).decode()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.cond:
                self.msgs.append((time.monotonic(), data))
                self.cond.notify_all()

    def take(self, pred, timeout, what, since=0):
        """The first message from index since with pred true."""
        deadline = time.monotonic() + timeout * FACTOR
        i = since
        with self.cond:
            while True:
                while i < len(self.msgs):
                    if pred(self.msgs[i][1]):
                        return self.msgs[i]
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(min(left, 0.2))
            got = [m for _, m in self.msgs if m != "WATCHDOG=1"]
        raise AssertionError(f"no {what} from cohortd; got (pings aside) {got}")

    def close(self):
        self.closed = True
        self.reader.join(5)
        self.sock.close()


class SdNotify(CohortTest):
    def start(self, address, slow_ready="1.0", extra_env=()):
        envdump = self.path("envdump.py")
        with open(envdump, "w") as f:
            f.write(ENVDUMP)
        self.seen = self.path("seen.env")
        env = ["env", f"NOTIFY_SOCKET={address}", *extra_env]
        return self.cohortd(f"""
[service:quick]
command = {PY} {envdump} {self.seen}

[service:slow]
command = /bin/sleep 1000
ready = delay:{slow_ready}s

[service:idle]
command = /bin/sleep 1000
autostart = no
""", wrap=env)

    def test_ready_status_watchdog_stopping(self):
        sockpath = self.path("notify.sock")
        lst = Listener(sockpath)
        self.addCleanup(lst.close)
        t0 = time.monotonic()
        d = self.start(sockpath, extra_env=["WATCHDOG_USEC=200000"])
        # READY=1 only once the stack is up: after slow's delay (1 s), with
        # the count of services running in the same message.
        at, ready = lst.take(lambda m: "READY=1" in m, 10, "READY=1")
        self.assertGreaterEqual(at - t0, 0.9, "READY=1 before slow was ready")
        self.assertIn("STATUS=2 of 3 services running", ready)
        # (The log is read by a thread of ours: it may lag the datagram.)
        d.wait_state("slow", "running")
        d.wait_log(r"^stack is up: 2 of 3 services running")
        # Watchdog pings every half WATCHDOG_USEC (100 ms): a dozen in 1.5 s.
        n0 = sum("WATCHDOG=1" in m for _, m in lst.msgs)
        lst.take(lambda m: False if "WATCHDOG=1" not in m else
                 sum("WATCHDOG=1" in x for _, x in lst.msgs) >= n0 + 5, 3, "5 more WATCHDOG=1")
        # A change of the count is a new STATUS=.
        mark = len(lst.msgs)
        d.ctl("start", "idle")
        lst.take(lambda m: "STATUS=3 of 3 services running" in m, 10, "STATUS=3 of 3", since=mark)
        mark = len(lst.msgs)
        d.ctl("stop", "quick")
        lst.take(lambda m: m == "STATUS=2 of 3 services running", 10, "STATUS=2 of 3 after a stop",
                 since=mark)
        # The services do not see systemd's variables.
        wait_until(self, lambda: os.path.exists(self.seen), what="the service's environment")
        with open(self.seen) as f:
            seen = dict(line.rstrip("\n").split("=", 1) for line in f)
        self.assertEqual(seen["WATCHDOG_USEC"], "")
        self.assertEqual(seen["WATCHDOG_PID"], "")
        self.assertNotEqual(seen["NOTIFY_SOCKET"], sockpath)
        self.assertTrue(seen["NOTIFY_SOCKET"].startswith(d.run_dir))
        # TERM: STOPPING=1 first, then the services stop.
        mark = len(d.lines)
        d.send(signal.SIGTERM)
        _, stopping = lst.take(lambda m: "STOPPING=1" in m, 10, "STOPPING=1")
        self.assertIn("STATUS=stopping:", stopping)
        d.stop(None)
        d.wait_log(r"^every service has stopped", start=mark)

    def test_nothing_lost_while_the_reader_is_stuck(self):
        # A reader that does not read: its queue (max_dgram_qlen
        # datagrams) fills with pings, and READY=1 and STATUS= cannot go.
        # They are sent once it reads again.
        sockpath = self.path("notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(sockpath)
        self.addCleanup(sock.close)
        d = self.start(sockpath, slow_ready="0.2", extra_env=["WATCHDOG_USEC=20000"])
        d.wait_log(r"^stack is up")
        time.sleep(0.3)
        d.wait_log(r"cannot tell systemd \(NOTIFY_SOCKET\): Resource temporarily unavailable")
        sock.settimeout(10 * FACTOR)
        got = []
        while not any("READY=1" in m for m in got):
            got.append(sock.recv(4096).decode())
        self.assertIn("READY=1\nSTATUS=2 of 3 services running", got)
        d.stop()

    def test_abstract_socket_and_no_watchdog(self):
        name = f"cohort-test-{os.getpid()}-{time.monotonic_ns()}"
        lst = Listener("\0" + name)
        self.addCleanup(lst.close)
        d = self.start("@" + name, slow_ready="0.2")
        _, ready = lst.take(lambda m: "READY=1" in m, 10, "READY=1 on an abstract socket")
        self.assertIn("STATUS=2 of 3 services running", ready)
        time.sleep(0.5)
        self.assertFalse([m for _, m in lst.msgs if "WATCHDOG" in m], "pings without WATCHDOG_USEC")
        d.stop()
        lst.take(lambda m: "STOPPING=1" in m, 10, "STOPPING=1")

    def test_watchdog_for_another_pid_is_not_ours(self):
        sockpath = self.path("notify.sock")
        lst = Listener(sockpath)
        self.addCleanup(lst.close)
        d = self.start(sockpath, slow_ready="0.2", extra_env=["WATCHDOG_USEC=100000", "WATCHDOG_PID=1"])
        lst.take(lambda m: "READY=1" in m, 10, "READY=1")
        time.sleep(0.5)
        self.assertFalse([m for _, m in lst.msgs if "WATCHDOG" in m], "pings meant for pid 1")
        d.stop()

    def test_without_notify_socket_nothing_changes(self):
        d = self.cohortd("[service:a]\ncommand = /bin/sleep 1000\n")
        d.wait_log(r"^stack is up")
        self.assertEqual(d.count(r"systemd|NOTIFY_SOCKET"), 0, d.dump())
        d.stop()

    def test_bad_notify_socket_is_a_warning(self):
        d = self.cohortd("[service:a]\ncommand = /bin/sleep 1000\n", wrap=["env", "NOTIFY_SOCKET=relative"])
        d.wait_log(r"NOTIFY_SOCKET=relative is not a socket path")
        d.wait_log(r"^stack is up")
        d.stop()


class Unit(CohortTest):
    """contrib/systemd/cohortd.service as `make` fills it in for install."""

    def test_unit_is_valid(self):
        path = os.path.join(BUILD, "cohortd.service")
        with open(path) as f:
            text = f.read()
        keys = dict(l.split("=", 1) for l in text.splitlines() if "=" in l and not l.startswith("#"))
        self.assertEqual(keys["Type"], "notify")
        self.assertEqual(keys["KillMode"], "mixed")
        self.assertEqual(keys["ExecReload"], "/bin/kill -HUP $MAINPID")
        self.assertTrue(keys["ExecStart"].split()[0].endswith("/sbin/cohortd"), keys["ExecStart"])
        self.assertNotRegex(text, r"@\w+@", "a placeholder left unreplaced")
        # systemd's own check, with the programs of this build in the unit.
        analyze = shutil.which("systemd-analyze")
        if not analyze:
            self.skipTest("no systemd-analyze (contrib/bootstrap.sh --tests installs systemd)")
        conf = self.path("cohort.ini")
        with open(conf, "w") as f:
            f.write(f"[cohort]\nrun_dir = {self.tmp}/run\n[service:a]\ncommand = /bin/true\n")
        exec_start = keys["ExecStart"].split()
        local = text.replace(exec_start[0], COHORTD).replace(exec_start[-1], conf)
        unit = self.path("cohortd.service")
        with open(unit, "w") as f:
            f.write(local)
        p = subprocess.run([analyze, "verify", "--man=no", unit], capture_output=True, text=True,
                           timeout=60 * FACTOR)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(p.stderr.strip(), "", p.stderr)
        # And its check command passes on a valid config.
        pre = keys["ExecStartPre"].replace(exec_start[0], COHORTD).replace(exec_start[-1], conf)
        subprocess.run(pre.split(), check=True, capture_output=True, timeout=30 * FACTOR)


if __name__ == "__main__":
    unittest.main()
