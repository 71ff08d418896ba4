#!/usr/bin/python3
"""Reload against what runs: [cohort] keys compared with the values cohortd
runs with (live ones applied and named, start-up ones reported until a
restart)."""
import os
import signal
import socket
import unittest

from harness import CohortTest, free_port, pid_alive, wait_until


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
        deaf = """
[service:deaf]
command = /bin/sh -c "trap '' TERM; while :; do sleep 0.1; done"
ready = delay:0
stop_timeout = 1h
"""
        d = self.cohortd("[cohort]\nshutdown_timeout = 12s\n" + deaf)
        d.wait_state("deaf", "running")
        d.wait_socket()
        d.write_config("[cohort]\nshutdown_timeout = 3s\nbus_queue_age = 1h\n" + deaf)
        self.assertEqual(d.ctl("reload")[1], "applied: bus_queue_age shutdown_timeout\n")
        self.assertEqual(d.ctl("reload")[1], "reloaded: nothing changed\n")
        mark = len(d.lines)
        d.stop(expect=1, timeout=20)
        d.wait_log(r"^shutdown_timeout \(3s\) expired: KILL to 1 process group$", start=mark)


if __name__ == "__main__":
    unittest.main(verbosity=2)
