#!/usr/bin/python3
"""libcohort, the C client, against a real cohortd: its ops, errors, its
own-event-loop use, locks, and reconnecting across a kill -9."""
import os
import signal
import subprocess
import unittest

from harness import BUILD, FACTOR, CohortTest

PROG = os.path.join(BUILD, "tests", "integration", "libcohort_test")
IDLE = """
[service:idle]
command = /bin/sleep 1000
ready = delay:0
"""


class LibCohort(CohortTest):
    def env(self, run_dir):
        return dict(os.environ, COHORT_BUS="unix:" + os.path.join(run_dir, "bus.sock"), COHORT_TOKEN="")

    def scenario(self, name):
        d = self.cohortd(IDLE)
        d.wait_log(r"^stack is up")
        p = subprocess.run([PROG, name], env=self.env(d.run_dir), capture_output=True, text=True,
                           timeout=60 * FACTOR)
        self.assertEqual(p.returncode, 0, p.stderr)
        d.stop()

    def test_basic(self):
        self.scenario("basic")

    def test_locks(self):
        self.scenario("locks")

    def test_reconnect_across_kill9(self):
        state, run_dir = self.path("state"), self.path("run")
        text = f"[cohort]\nstate_dir = {state}\nrun_dir = {run_dir}\n" + IDLE
        d = self.cohortd(text)
        d.run_dir = run_dir
        d.wait_log(r"^stack is up")
        p = subprocess.Popen([PROG, "reconnect", "400"], env=self.env(run_dir), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.assertEqual(p.stdout.readline(), "half\n")
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait()
        d.returncode = -9
        again = self.cohortd(text)
        again.run_dir = run_dir
        p.stdin.write("go\n")
        p.stdin.flush()
        out, err = p.communicate(timeout=90 * FACTOR)
        self.assertEqual(p.returncode, 0, err)
        again.wait_log(r"^stack is up")
        again.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
