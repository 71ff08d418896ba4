#!/usr/bin/python3
"""cohortd as PID 1, as in a container: contrib/docker/Dockerfile's
ENTRYPOINT run as the first process of a new pid namespace (unshare --pid
--fork --mount-proc; no container runtime here).  Orphans are reaped, TERM
stops everything within shutdown_timeout, and the image's stack and
HEALTHCHECK work."""
import json
import os
import re
import shutil
import signal
import subprocess
import time
import unittest

from harness import BUILD, COHORTD, FACTOR, SRC, CohortTest, children_of, free_port_block, pid_namespace_wrap, wait_until

DOCKER = os.path.join(SRC, "contrib", "docker")


def dockerfile():
    with open(os.path.join(DOCKER, "Dockerfile")) as f:
        return f.read()


def entrypoint():
    return json.loads(re.search(r"(?m)^ENTRYPOINT (\[.*\])$", dockerfile()).group(1))


def unshare():
    return pid_namespace_wrap(kill_child=True)


def ns_of(pid):
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def ns_procs(ns):
    """(pid, ppid, state, cmdline) of every process in pid namespace ns,
    with host pids."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or ns_of(d) != ns:
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        out.append((int(d), int(fields[1]), fields[0], cmd))
    return out




@unittest.skipUnless(shutil.which("unshare"), "no unshare (util-linux)")
class Pid1(CohortTest):
    def pid1(self, text, env=()):
        """cohortd from the ENTRYPOINT, as PID 1 of a new pid namespace;
        returns (daemon, host pid of cohortd, its namespace)."""
        ep = entrypoint()
        self.assertTrue(ep[0].endswith("/cohortd") and ep[1:] == ["-c", "/etc/cohort/cohort.ini"], ep)
        wrap = unshare() + (["env", *env] if env else [])
        d = self.cohortd(text, wrap=wrap, args=())
        d.wait_log(r"^cohortd \S+ \(pid 1, init\)")
        kids = wait_until(self, lambda: [p for p, _ in children_of(d.proc.pid)], what="the forked PID 1")
        return d, kids[0], ns_of(kids[0])

    def stop(self, d, init, expect=0):
        """TERM to PID 1, as docker stop sends it (unshare passes on
        nothing); returns the seconds until it exited."""
        t0 = time.monotonic()
        os.kill(init, signal.SIGTERM)
        try:
            rc = d.proc.wait(30 * FACTOR)
        except subprocess.TimeoutExpired:
            self.fail("PID 1 did not exit after TERM; log:\n" + d.dump())
        took = time.monotonic() - t0
        d.reader.join(5)
        d.returncode = rc
        d.check_clean()
        self.assertEqual(rc, expect, d.dump())
        return took

    def test_orphans_are_reaped(self):
        d, init, ns = self.pid1("""
[service:spawner]
shell = yes
command = for i in 1 2 3 4 5; do (sleep 4 &); done; exec sleep 1000
ready = delay:0
""")
        d.wait_log(r"^stack is up")
        # The five sleeps lost their parent (the subshells exited): PID 1 has them
        # (for 4 s: a loaded machine took more than 1 s to get here)...
        wait_until(self, lambda: len([p for p in ns_procs(ns) if p[3] == "sleep 4" and p[1] == init]) == 5,
                   what="five orphans re-parented to cohortd")
        # ... and reaps them when they end: no zombie stays.
        wait_until(self, lambda: not [p for p in ns_procs(ns) if p[3] == "sleep 4" or p[2] == "Z"],
                   timeout=10, what="the orphans reaped")
        self.assertEqual([p[3] for p in ns_procs(ns) if p[0] != init], ["sleep 1000"])
        self.stop(d, init)

    def test_term_stops_everything_within_shutdown_timeout(self):
        d, init, ns = self.pid1("""
[cohort]
shutdown_timeout = 2s

[service:polite]
command = /bin/sleep 1000
ready = delay:0

[service:stubborn]
shell = yes
command = trap '' TERM; (setsid sleep 1000 &); exec sleep 1000
stop_timeout = 60s
ready = delay:0
""")
        d.wait_log(r"^stack is up")
        wait_until(self, lambda: len([p for p in ns_procs(ns) if p[3].endswith("sleep 1000")]) == 3,
                   what="the three sleeps")
        # stubborn ignores TERM: shutdown_timeout (2 s) KILLs it; cohortd then exits 1.
        took = self.stop(d, init, expect=1)
        self.assertLess(took, 2 + 3 * FACTOR, d.dump())
        self.assertGreaterEqual(took, 1.9, d.dump())
        d.wait_log(r"shutdown_timeout \(2s\) expired: KILL")
        self.assertEqual(ns_procs(ns), [], "processes outlived PID 1")

    def test_the_image_stack_and_healthcheck(self):
        base = free_port_block(4)
        with open(os.path.join(DOCKER, "cohort.ini")) as f:
            text = f.read()
        text = text.replace("/opt/cohort/demo/", os.path.join(SRC, "contrib", "demo") + "/")
        text = re.sub(r"127\.0\.0\.1:74(\d\d)", lambda m: f"127.0.0.1:{base + int(m.group(1))}", text)
        text = re.sub(r"(?m)^(run_dir|state_dir|log_dir)\s*=.*\n", "", text)
        d, init, ns = self.pid1(text, env=[f"DEMO_PORT_BASE={base}"])
        d.wait_log(r"^stack is up: 4 of 4 services running", timeout=60)
        # The HEALTHCHECK's command, against this cohortd's socket.
        health = re.search(r'CMD \["/bin/sh", "-c", "(.*)"\]', dockerfile()).group(1).replace('\\"', '"')
        env = dict(os.environ, COHORT_SOCKET=d.socket, PATH=BUILD + ":" + os.environ["PATH"])
        self.assertEqual(subprocess.run(["/bin/sh", "-c", health], env=env, timeout=30 * FACTOR).returncode, 0)
        self.assertLess(self.stop(d, init), 8 + 2 * FACTOR, "over shutdown_timeout")
        d.wait_log(r"^every service has stopped")
        self.assertEqual(ns_procs(ns), [])
        # Unhealthy when cohortd is gone.
        self.assertNotEqual(subprocess.run(["/bin/sh", "-c", health], env=env, capture_output=True,
                                           timeout=30 * FACTOR).returncode, 0)


if __name__ == "__main__":
    unittest.main()
