#!/usr/bin/python3
"""Service templates with real processes: instances = N makes NAME@0 ..
NAME@N-1, each listening on its own port (%{i+BASE} in command and ready);
cohortctl takes NAME@*, NAME@K and NAME; a service requiring the template
starts once every instance is ready; a reload changes the number of
instances and leaves the others (and what requires them) running; bad
input gets errors that name the file, line and key."""
import os
import socket
import subprocess
import unittest

from harness import COHORTD, PY, CohortTest, free_port_block, pid_alive, wait_until

LISTEN = r"""
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(16)
print(f"instance {sys.argv[2]} listening on {sys.argv[1]}", flush=True)
while True:
    c, _ = s.accept()
    c.close()
"""




def listening(port):
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def status_names(table):
    """The NAME column of cohortctl status."""
    return [l.split()[0] for l in table.splitlines()[1:] if l.strip()]


class Templates(CohortTest):
    def worker(self, n, base, extra=""):
        script = self.path("listen.py")
        with open(script, "w") as f:
            f.write(LISTEN)
        return f"""
[service:worker]
instances = {n}
command = {PY} {script} %{{i+{base}}} %i
ready = tcp:127.0.0.1:%{{i+{base}}}
ready_timeout = 30s
stop_timeout = 5s
{extra}
"""

    def pids(self, d, n):
        return [d.last_pid(f"worker@{i}") for i in range(n)]

    def test_instances_listen_and_answer_to_their_names(self):
        base = free_port_block(3)
        d = self.cohortd(self.worker(3, base))
        d.wait_log(r"^stack is up")
        d.wait_socket()
        for i in range(3):
            self.assertEqual(d.state(f"worker@{i}"), "running")
            self.assertTrue(listening(base + i), f"worker@{i} on {base + i}")
        out = d.ctl("status")[1]
        for i in range(3):
            self.assertRegex(out, rf"(?m)^worker@{i}\s+running")
        # the template's name and a glob are every instance
        names = [f"worker@{i}" for i in range(3)]
        self.assertEqual(status_names(d.ctl("status", "worker")[1]), names)
        self.assertEqual(status_names(d.ctl("status", "worker@*")[1]), names)
        self.assertEqual(status_names(d.ctl("status", "worker@[12]")[1]), names[1:])
        self.assertEqual(status_names(d.ctl("status", "worker@1")[1]), ["worker@1"])
        # each has its own retained $sys value, named exactly
        got = d.ctl("get", "$sys.service.worker@1")[1]
        self.assertIn('"name":"worker@1"', got.replace(" ", ""))
        self.assertNotIn("worker@0", got)
        # each has its own log file, and log worker@* interleaves them; an
        # instance is ready once it listens, before its line is printed,
        # and its log file is made with the first line written to it
        for i in range(3):
            wait_until(self, lambda: os.path.exists(os.path.join(d.log_dir, f"worker@{i}.log")),
                       what=f"worker@{i}.log")
        wait_until(self, lambda: len(d.ctl("log", "worker@*")[1].splitlines()) == 3, what="3 log lines")
        lines = d.ctl("log", "worker@*")[1]
        for i in range(3):
            self.assertRegex(lines, rf"(?m)Z worker@{i}: instance {i} listening on {base + i}$")
        self.assertRegex(d.ctl("log", "worker@2")[1], rf"Z instance 2 listening on {base + 2}\n$")

        # restart 'worker@*': every instance runs again, with a new pid
        before = self.pids(d, 3)
        mark = len(d.lines)
        out = d.ctl("restart", "worker@*")[1]
        self.assertEqual([l.split(" ")[:2] for l in out.splitlines()],
                         [[f"worker@{i}:", "running"] for i in range(3)], out)
        for i in range(3):   # its log line follows the spawn's: both are read
            d.wait_state(f"worker@{i}", "running", start=mark)
        after = self.pids(d, 3)
        for i in range(3):
            self.assertNotEqual(before[i], after[i], f"worker@{i} restarted")
            self.assertFalse(pid_alive(before[i]))

        # stop worker@1: that one only
        mark = len(d.lines)
        d.ctl("stop", "worker@1")
        d.wait_state("worker@1", "stopped", start=mark)
        self.assertFalse(pid_alive(after[1]))
        wait_until(self, lambda: not listening(base + 1), what="port of worker@1 closed")
        for i in (0, 2):
            self.assertEqual(d.state(f"worker@{i}"), "running")
            self.assertEqual(d.last_pid(f"worker@{i}"), after[i])
            self.assertTrue(pid_alive(after[i]))
        # start worker (the template's name): the stopped one starts, the others stay
        mark = len(d.lines)
        d.ctl("start", "worker")
        d.wait_state("worker@1", "running", start=mark)
        self.assertTrue(listening(base + 1))
        self.assertEqual([d.last_pid("worker@0"), d.last_pid("worker@2")], [after[0], after[2]])

        # names that mean nothing say so
        _, _, err = d.ctl("stop", "worker@x", expect=1)
        self.assertIn("no such service: worker@x (worker has the instances worker@0 to worker@2)", err)
        _, _, err = d.ctl("restart", "worker@7", expect=1)
        self.assertIn("no such service: worker@7 (worker has the instances", err)
        _, _, err = d.ctl("status", "nope@*", expect=1)
        self.assertIn('no service matches "nope@*"', err)
        _, _, err = d.ctl("signal", "HUP", "worker", expect=1)
        self.assertIn("worker is 3 services (worker@0, ... worker@2): signal one at a time", err)
        d.ctl("signal", "CONT", "worker@2")
        d.stop()

    def test_a_service_requiring_the_template_waits_for_every_instance(self):
        base = free_port_block(3)
        # instance 2 takes longest to listen: api must wait for it too
        text = self.worker(3, base).replace(f"command = {PY}",
                                            f"command = /bin/sh -c 'sleep $((%i / 2)); exec \"$0\" \"$@\"' {PY}")
        d = self.cohortd(text + "\n[service:api]\ncommand = /bin/sleep 1000\nready = delay:0\nrequires = worker\n")
        d.wait_log(r"^stack is up", timeout=30)
        ready = [d.wait_state(f"worker@{i}", "running")[0] for i in range(3)]
        started, _ = d.wait_state("api", "starting")
        self.assertGreater(started, max(ready), "api started before every instance was ready:\n" + d.dump())
        out = subprocess.run([COHORTD, "--check", "-c", d.path], capture_output=True, text=True).stdout
        self.assertRegex(out, r"phase 1:\n  worker@0 .*\n  worker@1 .*\n  worker@2 .*\nphase 2:\n  api +requires worker")
        # a restart of one instance takes api down and back up after it
        api = d.last_pid("api")
        mark = len(d.lines)
        d.ctl("restart", "worker@0")
        d.wait_state("api", "running", start=mark)
        self.assertNotEqual(d.last_pid("api"), api)
        d.stop()

    def test_a_reload_changes_the_number_of_instances_only(self):
        base = free_port_block(5)
        api = "\n[service:api]\ncommand = /bin/sleep 1000\nready = delay:0\nrequires = worker\n"
        d = self.cohortd(self.worker(3, base) + api)
        d.wait_log(r"^stack is up")
        d.wait_socket()
        first = self.pids(d, 3)
        api_pid = d.last_pid("api")

        mark = d.reload(self.worker(5, base) + api)
        d.wait_log(r"^reload: 2 added, 0 removed, 0 changed, 4 unchanged$", start=mark)
        for i in (3, 4):
            d.wait_state(f"worker@{i}", "running", start=mark)
            self.assertTrue(listening(base + i))
        self.assertEqual(self.pids(d, 3), first, "the first three kept their processes")
        for p in first:
            self.assertTrue(pid_alive(p))
        self.assertEqual([l.to for l in d.lines[mark:] if l.who == "api" and l.to], [],
                         "api kept running while worker@3 and worker@4 started")
        self.assertEqual(d.last_pid("api"), api_pid)
        five = self.pids(d, 5)

        mark = d.reload(self.worker(2, base) + api)
        d.wait_log(r"^reload: 0 added, 3 removed, 0 changed, 3 unchanged$", start=mark)
        for i in (2, 3, 4):
            d.wait_state(f"worker@{i}", "stopped", start=mark)
            wait_until(self, lambda: not pid_alive(five[i]), what=f"worker@{i} gone")
        self.assertEqual(self.pids(d, 2), first[:2])
        for p in first[:2]:
            self.assertTrue(pid_alive(p))
        self.assertEqual(d.last_pid("api"), api_pid)
        out = d.ctl("status")[1]
        self.assertNotIn("worker@2", out)
        _, _, err = d.ctl("stop", "worker@2", expect=1)
        self.assertIn("no such service: worker@2 (worker has the instances worker@0 to worker@1)", err)
        d.stop()

    def test_bad_input_names_file_line_and_key(self):
        cases = [
            ("instances = 0", 'cohort.ini:3: [service:w]: instances = "0": expected a number of instances '
                              'from 1 to 10000'),
            ("instances = abc", 'cohort.ini:3: [service:w]: instances = "abc": expected a number of instances'),
            ("instances = 2\nready = tcp:127.0.0.1:80%q",
             'cohort.ini:4: [service:w]: ready = "tcp:127.0.0.1:80%q": "%q" is not known: in a template %i '
             'is the instance number'),
        ]
        for key, want in cases:
            path = self.path("cohort.ini")
            with open(path, "w") as f:
                f.write(f"[service:w]\ncommand = /bin/true\n{key}\n")
            p = subprocess.run([COHORTD, "--check", "-c", path], capture_output=True, text=True)
            self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
            self.assertIn(path + ":" + want.split(":", 1)[1], p.stderr)
        # outside a template, % is as it always was
        with open(path, "w") as f:
            f.write("[service:w]\ncommand = /bin/date +%s\n[service:x]\ncommand = /bin/true\nrequires = w@0\n")
        p = subprocess.run([COHORTD, "--check", "-c", path], capture_output=True, text=True)
        self.assertEqual(p.returncode, 1)
        self.assertIn('[service:x]: requires "w@0": no such service', p.stderr)


if __name__ == "__main__":
    unittest.main()
