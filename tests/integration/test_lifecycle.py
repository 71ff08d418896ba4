#!/usr/bin/python3
"""One service's life under cohortd: restart policies, backoff law,
circuit breaker and its half-open trial, kill -9, start failures, users."""
import os
import re
import signal
import subprocess
import sys
import unittest

from harness import CohortTest, FACTOR, pid_alive, wait_until  # noqa: F401


class Lifecycle(CohortTest):
    def test_crash_loop_backoff_breaker_and_trial(self):
        d = self.cohortd("""
[service:crashy]
command = /bin/sh -c "exit 3"
ready = delay:100ms
backoff_initial = 200ms
backoff_factor = 2
backoff_max = 5s
backoff_jitter = 0.1
breaker_failures = 4
breaker_window = 60s
breaker_cooldown = 1500ms
""")
        # Failures 1..3 back off 200, 400, 800 ms (+-10%); the 4th opens the breaker.
        i = 0
        for n, base in enumerate([200, 400, 800], start=1):
            i, exit_line = d.wait_for(lambda l: l.who == "crashy" and l.to == "backoff", start=i)
            self.assertIn(f"exited with code 3; restart in", exit_line.reason)
            self.assertIn(f"(failure {n})", exit_line.reason)
            i, start_line = d.wait_for(lambda l: l.who == "crashy" and l.frm == "backoff"
                                       and l.to == "starting", start=i)
            # The delay chosen is in the reason, exactly: its bounds are
            # checked there; the start itself comes no earlier, and not
            # grossly later (a loaded machine fires a timer late, by tens
            # of ms: 516 ms for a 400 ms one +-10 %, three suites at once).
            chosen = int(re.search(r"restart in (\d+)ms", exit_line.reason).group(1))
            self.assertGreaterEqual(chosen, base * 0.9 - 1, f"failure {n}: {exit_line.reason}")
            self.assertLessEqual(chosen, base * 1.1 + 1, f"failure {n}: {exit_line.reason}")
            delay = start_line.ms - exit_line.ms
            self.assertGreaterEqual(delay, chosen - 5, f"failure {n}: {delay} ms, chosen {chosen}")
            self.assertLessEqual(delay, chosen + 500 * FACTOR, f"failure {n}: {delay} ms, chosen {chosen}")
        i, opened = d.wait_for(lambda l: l.who == "crashy" and l.to == "failed", start=i)
        self.assertIn("breaker open: 4 failures within 60s (last: exited with code 3); next trial in 1s",
                      opened.reason)
        # Half-open: one trial after the cooldown; it fails and re-opens.
        i, trial = d.wait_for(lambda l: l.who == "crashy" and l.frm == "failed"
                              and l.to == "starting", start=i)
        self.assertEqual(trial.reason, "trial start (breaker half-open)")
        self.assertGreaterEqual(trial.ms - opened.ms, 1500 - 5)
        self.assertLessEqual(trial.ms - opened.ms, 1500 + 150 * FACTOR)
        i, again = d.wait_for(lambda l: l.who == "crashy" and l.to == "failed", start=i)
        self.assertIn("trial start failed (exited with code 3); breaker open again", again.reason)
        # and no restart in between
        self.assertEqual(d.count(r"-> backoff", "crashy"), 3)
        d.stop()

    def test_trial_that_succeeds_closes_the_breaker(self):
        flag = self.path("healthy")
        d = self.cohortd(f"""
[service:flaky]
command = /bin/sh -c "test -f {flag} && exec sleep 1000; exit 1"
ready = delay:100ms
backoff_initial = 50ms
breaker_failures = 2
breaker_cooldown = 1s
""")
        i, _ = d.wait_state("flaky", "failed")
        open(flag, "w").close()
        i, trial = d.wait_state("flaky", "starting", start=i)
        self.assertEqual(trial.reason, "trial start (breaker half-open)")
        i, _ = d.wait_state("flaky", "running", start=i)
        d.wait_log("^breaker closed: the trial start is ready$", who="flaky", start=i)
        d.stop()

    def test_kill9_restarts_and_counts(self):
        d = self.cohortd("""
[service:victim]
command = /bin/sleep 1000
ready = delay:0
backoff_initial = 100ms
""")
        i, _ = d.wait_state("victim", "running")
        pid1 = d.last_pid("victim")
        os.kill(pid1, signal.SIGKILL)
        i, line = d.wait_state("victim", "backoff", start=i)
        self.assertIn("killed by SIGKILL; restart in", line.reason)
        i, line = d.wait_for(lambda l: l.who == "victim" and l.to == "starting", start=i)
        self.assertEqual(line.reason, "restart 1")
        d.wait_state("victim", "running", start=i)
        pid2 = d.last_pid("victim")
        self.assertNotEqual(pid1, pid2)
        self.assertTrue(pid_alive(pid2))
        os.kill(pid2, signal.SIGKILL)
        i, line = d.wait_for(lambda l: l.who == "victim" and l.to == "starting", start=i + 1)
        self.assertEqual(line.reason, "restart 2")
        d.stop()

    def test_restart_policies(self):
        d = self.cohortd("""
[service:never-ok]
command = /bin/sh -c "exit 0"
restart = never

[service:never-fail]
command = /bin/sh -c "exit 3"
restart = never
ready = delay:0

[service:onfail-ok]
command = /bin/sh -c "exit 0"
restart = on-failure
ready = delay:0

[service:onfail-fail]
command = /bin/sh -c "exit 3"
restart = on-failure
ready = delay:0
backoff_initial = 100ms

[service:onfail-custom]
command = /bin/sh -c "exit 3"
restart = on-failure
success_exit = 0, 3
ready = delay:0

[service:always-ok]
command = /bin/sh -c "exit 0"
restart = always
ready = delay:0
backoff_initial = 100ms
""")
        # exits 0 before it is ready (delay:1s): a one-shot that succeeded
        _, l = d.wait_state("never-ok", "exited")
        self.assertEqual(l.frm, "starting")
        self.assertEqual(l.reason, "exited with code 0")
        _, l = d.wait_state("never-fail", "failed")
        self.assertEqual(l.reason, "exited with code 3 (restart = never)")
        _, l = d.wait_state("onfail-ok", "exited")
        _, l = d.wait_state("onfail-fail", "backoff")
        self.assertIn("exited with code 3; restart in", l.reason)
        d.wait_for(lambda l: l.who == "onfail-fail" and l.reason == "restart 1")
        _, l = d.wait_state("onfail-custom", "exited")
        self.assertEqual(l.reason, "exited with code 3")
        # restart = always restarts a clean exit too, without counting a failure
        _, l = d.wait_state("always-ok", "backoff")
        self.assertRegex(l.reason, r"^exited with code 0; restart in \d+ms$")
        d.wait_for(lambda l: l.who == "always-ok" and l.reason == "restart 1")
        d.stop()
        # the one-shots never restarted
        for who in ("never-ok", "never-fail", "onfail-ok", "onfail-custom"):
            self.assertEqual(d.count(r"-> starting", who), 1, who)

    def test_exec_of_missing_binary_fails_with_reason(self):
        d = self.cohortd("""
[service:ghost]
command = /nonexistent/program --flag
ready = delay:0

[service:nodir]
command = /bin/sleep 1000
directory = /nonexistent-dir
ready = delay:0

[service:nopath]
command = no-such-program-anywhere
ready = delay:0

[service:noexec]
command = /etc/passwd
ready = delay:0
""")
        _, l = d.wait_state("ghost", "failed")
        self.assertEqual(l.frm, "starting")
        self.assertEqual(l.reason, "cannot start: exec /nonexistent/program: No such file or directory; "
                         "next trial in 2m")
        _, l = d.wait_state("nodir", "failed")
        self.assertIn("cannot start: chdir /nonexistent-dir: No such file or directory", l.reason)
        _, l = d.wait_state("nopath", "failed")
        self.assertIn("cannot start: exec no-such-program-anywhere: No such file or directory", l.reason)
        _, l = d.wait_state("noexec", "failed")
        self.assertIn("cannot start: exec /etc/passwd: Permission denied", l.reason)
        d.stop()
        for who in ("ghost", "nodir", "nopath", "noexec"):
            self.assertEqual(d.count(r"-> running", who), 0, f"{who} was never running")

    @unittest.skipUnless(os.geteuid() == 0, "needs root")
    def test_quiet_cohortd_still_says_failures(self):
        """-q logs warnings and errors only: a crash (backoff) is a warning,
        a service that cannot start (failed) an error, a start is neither."""
        d = self.cohortd("""
[service:crash]
command = /bin/sh -c 'exit 3'
backoff_initial = 50ms
[service:missing]
command = /nonexistent/bin/x
""", args=("-q",))
        d.wait_for(lambda l: l.who == "crash" and l.to == "backoff" and l.level == "WARN",
                   what="crash -> backoff as a warning")
        d.wait_for(lambda l: l.who == "missing" and l.to == "failed" and l.level == "ERROR",
                   what="missing -> failed as an error")
        self.assertFalse([l for l in d.lines if l.to == "starting"], "no INFO line under -q")
        d.stop()

    def test_user_nobody_drops_privileges(self):
        out = self.path("ids")
        os.chmod(self.tmp, 0o777)
        d = self.cohortd(f"""
[service:who]
command = /bin/sh -c "(id -u; id -g; id -G; echo $HOME) > {out}.tmp
    && mv {out}.tmp {out}; exec sleep 1000"
user = nobody
ready = delay:0

[service:nouser]
command = /bin/true
user = no-such-user-xyz
""")
        wait_until(self, lambda: os.path.exists(out), what="the ids file")
        with open(out) as f:
            uid, gid, groups, home = f.read().split("\n")[:4]
        self.assertEqual(uid, "65534")
        self.assertEqual(gid, "65534")
        self.assertNotIn("0", groups.split())
        self.assertEqual(home, "/nonexistent")
        _, l = d.wait_state("nouser", "failed")
        self.assertIn('cannot start: no such user "no-such-user-xyz"', l.reason)
        d.stop()

    def test_environment_of_a_service(self):
        out = self.path("env")
        d = self.cohortd(f"""
[service:envy]
command = /bin/sh -c "env > {out}.tmp && mv {out}.tmp {out}; exec sleep 1000"
environment = GREETING=hello world, LIST=a\\,b, PATH=/usr/bin:/bin
ready = notify
ready_timeout = 1s
""")
        wait_until(self, lambda: os.path.exists(out), what="the env file")
        with open(out) as f:
            env = dict(line.split("=", 1) for line in f.read().splitlines() if "=" in line)
        self.assertEqual(env["GREETING"], "hello world")
        self.assertEqual(env["LIST"], "a,b")
        self.assertEqual(env["PATH"], "/usr/bin:/bin")
        self.assertEqual(env["COHORT_SERVICE"], "envy")
        self.assertEqual(env["COHORT_SOCKET"], f"{d.run_dir}/control.sock")
        self.assertEqual(env["COHORT_BUS"], f"unix:{d.run_dir}/bus.sock")
        self.assertEqual(env["NOTIFY_SOCKET"], f"{d.run_dir}/notify.envy.sock")   # ready = notify: its own
        self.assertRegex(env["COHORT_TOKEN"], r"^[0-9a-f]{32}$")
        # a fresh token per start
        i, _ = d.wait_state("envy", "backoff")
        os.unlink(out)
        wait_until(self, lambda: os.path.exists(out), what="the env file again")
        with open(out) as f:
            env2 = dict(line.split("=", 1) for line in f.read().splitlines() if "=" in line)
        self.assertNotEqual(env["COHORT_TOKEN"], env2["COHORT_TOKEN"])
        d.stop()

    def test_fds_closed_and_own_process_group(self):
        out = self.path("fds")
        d = self.cohortd(f"""
[service:fds]
command = /bin/sh -c "ls /proc/self/fd > {out}.tmp;
    ps -o pid=,pgid=,sid= -p $$ >> {out}.tmp;
    mv {out}.tmp {out}; exec sleep 1000"
ready = delay:0
""")
        wait_until(self, lambda: os.path.exists(out), what="the fd list")
        with open(out) as f:
            lines = f.read().split()
        # 0-2, plus the one ls opened to read the directory
        fds = sorted(int(x) for x in lines[:-3])
        self.assertLessEqual(len(fds), 4, fds)
        self.assertEqual(fds[:3], [0, 1, 2])
        pid, pgid, sid = lines[-3:]
        self.assertEqual(pid, pgid)
        self.assertEqual(pid, sid)
        d.stop()


def procs_with(marker):
    """pids of the live processes whose command line holds marker."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                if marker.encode() in f.read() and pid_alive(int(d)):
                    out.append(int(d))
        except OSError:
            pass
    return sorted(out)


def start_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[19])


class Instances(CohortTest):
    """One cohortd per run_dir: a second one refused touches nothing, and
    one started after a kill -9 stops what the killed one left running."""

    def test_second_cohortd_refused_changes_nothing(self):
        run, state = self.path("run"), self.path("state")
        go = self.path("go")
        script = self.path("status.py")
        with open(script, "w") as f:
            f.write(f"""import os, socket, time
while not os.path.exists({go!r}):
    time.sleep(0.02)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"STATUS=after the second cohortd", os.environ["NOTIFY_SOCKET"])
time.sleep(1000)
""")
        text = f"""[cohort]
run_dir = {run}
state_dir = {state}

[service:talker]
command = /usr/bin/python3 {script}
ready = delay:0
"""
        first = self.cohortd(text)
        first.run_dir = run
        first.wait_log(r"^stack is up")
        first.wait_socket()
        _, out, _ = first.ctl("lock", "t.x", "--", "sh", "-c", "echo $COHORT_LOCK_TOKEN")
        token = int(out)
        with open(os.path.join(state, "lock.tokens")) as f:
            mark = f.read()
        sockets = {n: os.stat(os.path.join(run, n)).st_ino
                   for n in ("control.sock", "bus.sock", "notify.sock")}

        second = self.cohortd(text)
        second.wait_log(rf"^another cohortd is running: pid {first.proc.pid} holds "
                        + re.escape(os.path.join(run, "cohortd.pid")))
        second.stop(sig=None, expect=1)

        # nothing of the first one's moved: its sockets, its token mark
        self.assertEqual({n: os.stat(os.path.join(run, n)).st_ino for n in sockets}, sockets)
        with open(os.path.join(state, "lock.tokens")) as f:
            self.assertEqual(f.read(), mark)
        # the shared notify socket still hears its services
        open(go, "w").close()
        first.wait_log(r"^status: after the second cohortd$", who="talker")
        _, out, _ = first.ctl("lock", "t.x", "--", "sh", "-c", "echo $COHORT_LOCK_TOKEN")
        self.assertEqual(int(out), token + 1)
        first.stop()

    def test_second_cohortd_on_the_same_state_dir_is_refused(self):
        """A second cohortd with a run_dir of its own but the first's
        state_dir is refused before it opens the journal or lock.tokens:
        both would write one journal segment and hand out one token twice."""
        state = self.path("state")
        text = f"[cohort]\nstate_dir = {state}\n[service:a]\ncommand = /bin/sleep 1000\nready = delay:0\n"
        first = self.cohortd(text)   # run_dir: first's temp dir, as the second's
        first.wait_log(r"^stack is up")
        first.wait_socket()
        _, out, _ = first.ctl("lock", "t.x", "--", "sh", "-c", "echo $COHORT_LOCK_TOKEN")
        token = int(out)
        first.ctl("pub", "t.kept", "1", "--qos", "1", "--retain")

        def snapshot():
            files = {}
            for top, _, names in os.walk(state):
                for n in names:
                    st = os.stat(os.path.join(top, n))
                    files[os.path.relpath(os.path.join(top, n), state)] = (st.st_ino, st.st_size,
                                                                          st.st_mtime_ns)
            with open(os.path.join(state, "lock.tokens")) as f:
                return files, f.read()
        before = snapshot()

        second = self.cohortd(text)
        self.assertNotEqual(second.run_dir, first.run_dir)
        second.wait_log(rf"^another cohortd is running: pid {first.proc.pid} holds "
                        + re.escape(os.path.join(state, "cohortd.lock"))
                        + r" \(stop it, or use another state_dir\)$")
        second.stop(sig=None, expect=1)
        self.assertFalse(os.path.exists(os.path.join(second.run_dir, "control.sock")))

        # the first's journal and token counter are as they were, and it goes on
        self.assertEqual(snapshot(), before)
        _, out, _ = first.ctl("lock", "t.x", "--", "sh", "-c", "echo $COHORT_LOCK_TOKEN")
        self.assertEqual(int(out), token + 1)
        _, out, _ = first.ctl("get", "t.kept")
        self.assertEqual(out, "t.kept 1\n")
        first.stop()
        # the lock goes with its holder: the next cohortd on it starts
        third = self.cohortd(text)
        third.wait_log(r"^stack is up")
        third.stop()

    @unittest.skipUnless(os.geteuid() == 0, "needs root to mount a tmpfs")
    def test_a_state_dir_with_no_room_for_the_lock_file(self):
        """A state_dir so full that even an empty file cannot be made (a
        tmpfs out of inodes) does not stop the stack: the state_dir lock is
        skipped with a warning, as locks and durable publishes are."""
        state = self.path("state")
        os.mkdir(state)
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,nr_inodes=2", "tmpfs", state],
                                 capture_output=True, text=True)
        if mounted.returncode != 0:
            self.skipTest("cannot mount a tmpfs here: " + mounted.stderr.strip())
        self.addCleanup(os.rmdir, state)   # cleanups run last first: after the umount
        self.addCleanup(subprocess.run, ["umount", "-l", state])
        open(os.path.join(state, "filler"), "w").close()   # the last inode
        d = self.cohortd(f"[cohort]\nstate_dir = {state}\n[service:a]\ncommand = /bin/sleep 1000\n"
                         "ready = delay:0\n")
        d.wait_log(r"^stack is up")
        d.wait_log("^" + re.escape(os.path.join(state, "cohortd.lock"))
                   + r": No space left on device: running without the state_dir lock")
        self.assertEqual(d.state("a"), "running")
        d.stop()

    def test_services_left_by_a_killed_cohortd_are_stopped_first(self):
        marker = "cohort-left-" + os.path.basename(self.tmp)
        forks = self.path("forks.py")
        with open(forks, "w") as f:
            f.write("import os, time\nos.fork()\ntime.sleep(1000)\n")   # a child in its group
        deaf = self.path("deaf.py")
        deaf_deaf = self.path("deaf.ignores-term")
        with open(deaf, "w") as f:
            # says when it ignores TERM: ready = delay:0 comes before that,
            # and on a loaded machine a TERM could come before it too
            f.write("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                    f"open({deaf_deaf!r}, 'w').close()\ntime.sleep(1000)\n")
        run = self.path("run")
        text = f"""[cohort]
run_dir = {run}

[service:forks]
command = /usr/bin/python3 {forks} {marker}-forks
ready = delay:0

[service:deaf]
command = /usr/bin/python3 {deaf} {marker}-deaf
ready = delay:0
stop_timeout = 300ms

[service:orphan]
command = /usr/bin/python3 {forks} {marker}-orphan
ready = delay:0
"""
        first = self.cohortd(text)
        first.wait_log(r"^stack is up")
        for name in ("forks", "orphan"):
            wait_until(self, lambda: len(procs_with(f"{marker}-{name}")) == 2,
                       what=f"{name} and its child")
        wait_until(self, lambda: os.path.exists(deaf_deaf), what="deaf ignoring SIGTERM")
        old = {n: procs_with(f"{marker}-{n}") for n in ("forks", "deaf", "orphan")}
        self.assertEqual(len(old["deaf"]), 1)
        self.assertIn(first.last_pid("forks"), old["forks"])
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait()
        first.returncode = -9
        # the kernel keeps them running: nobody supervises them now
        for name, pids in old.items():
            self.assertEqual(procs_with(f"{marker}-{name}"), pids)
        # orphan's main process dies too: what it forked is left in its group
        os.kill(first.last_pid("orphan"), signal.SIGKILL)
        wait_until(self, lambda: len(procs_with(marker + "-orphan")) == 1, what="orphan's leader gone")

        second = self.cohortd(text)
        second.wait_log(r"^stack is up")
        for name in ("forks", "deaf", "orphan"):
            leader = first.last_pid(name)
            runs = "is gone but its process group still runs" if name == "orphan" else "still runs"
            i, _ = second.wait_log(rf"^old pid {leader}, left by a cohortd that ended without "
                                   rf"stopping it, {runs}: SIGTERM to its process group", who=name)
            j, _ = second.wait_log(rf"^old pid {leader} has stopped$", who=name, start=i)
            # and only then the new one starts
            k, _ = second.wait_state(name, "starting")
            self.assertLess(j, k)
        second.wait_log(r"^old pid \d+ still runs after stop_timeout: KILL", who="deaf")
        self.assertEqual(second.count(r"^old pid", "forks"), 2)
        for pid in old["forks"] + old["deaf"] + old["orphan"]:
            self.assertFalse(pid_alive(pid), pid)
        for name in ("forks", "orphan"):
            wait_until(self, lambda: len(procs_with(f"{marker}-{name}")) == 2, what=f"the new {name}")
            self.assertIn(second.last_pid(name), procs_with(f"{marker}-{name}"))
        self.assertEqual(len(procs_with(marker + "-deaf")), 1)
        self.assertEqual(procs_with(marker + "-deaf"), [second.last_pid("deaf")])
        second.stop()
        self.assertFalse(os.path.exists(os.path.join(run, "cohortd.groups")))

    def test_a_record_whose_pid_another_process_took_is_left_alone(self):
        run = self.path("run")
        os.mkdir(run)
        other = subprocess.Popen(["sleep", "1000"], start_new_session=True)
        try:
            with open(os.path.join(run, "cohortd.groups"), "w") as f:
                f.write("# pgid start_ticks stop_signal stop_timeout_ms service\n")
                f.write(f"{other.pid} {start_ticks(other.pid) - 1} 15 1000 a\n")
            d = self.cohortd(f"[cohort]\nrun_dir = {run}\n\n[service:a]\n"
                             "command = /bin/sleep 1000\nready = delay:0\n")
            d.wait_log(rf"^old process group {other.pid} is gone \(or its pid is another "
                       r"process's now\): left alone$", who="a")
            d.wait_log(r"^stack is up")
            self.assertEqual(d.count(r"^old pid"), 0)
            self.assertTrue(pid_alive(other.pid))
            d.stop()
        finally:
            other.kill()
            other.wait()

    def test_groups_file_written_once_per_loop_iteration(self):
        """200 services starting together: cohortd.groups is written at most
        once per loop iteration, after that iteration's spawns, not once per
        spawn; and a start or a stop is appended to it, not a rewrite of
        the whole record (each rewrite was O(n): a restart wrote every
        group, a shutdown O(n^2)); it still names every group and follows a
        stop.  How many spawns one iteration holds depends on the machine's
        speed (a settle yields to the loop after 20 ms), so the test reads
        the iterations from the trace: the epoll waits between them."""
        n = 200
        run = self.path("run")
        os.mkdir(run)
        trace = self.path("trace")
        asan = os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0"   # no LeakSanitizer under ptrace
        text = f"[cohort]\nrun_dir = {run}\n" + "".join(
            f"\n[service:s{i}]\ncommand = /bin/sleep 1000\nready = delay:0\n" for i in range(n))
        # Under valgrind a vfork is made a fork: a spawn is either, or a
        # clone that is not a thread's.
        d = self.cohortd(text, wrap=["env", f"ASAN_OPTIONS={asan}", "strace", "-o", trace, "-e",
                                     "trace=openat,epoll_wait,epoll_pwait,vfork,fork,clone,clone3", "--"])
        d.run_dir = run
        d.wait_log(r"^stack is up", timeout=60)
        groups = os.path.join(run, "cohortd.groups")
        wait_until(self, lambda: set(live_groups(groups)) == {d.last_pid(f"s{i}") for i in range(n)},
                   what="every group in the record")

        def events():
            """The main thread's waits, spawns and writes of the record, in order."""
            out = []
            with open(trace) as f:
                for line in f:
                    m = re.search(r'"[^"]*/(cohortd\.groups(?:\.new)?)", ([A-Z_|]+)', line)
                    if m and "O_WRONLY" in m.group(2):       # not the sweep's read
                        out.append(("write", m.group(1), m.group(2)))
                    elif re.match(r"epoll_p?wait\(", line):
                        out.append(("wait",))
                    elif re.match(r"v?fork\(", line) or (re.match(r"clone3?\(", line)
                                                       and "CLONE_THREAD" not in line):
                        out.append(("spawn",))
            return out

        def writes(evs):
            return [(e[1], e[2]) for e in evs if e[0] == "write"]

        evs = events()
        self.assertGreaterEqual(sum(e[0] == "spawn" for e in evs), n, "the trace shows every spawn")
        iteration, iterations = [], []
        for e in evs:
            if e[0] == "wait":
                iterations.append(iteration)
                iteration = []
            else:
                iteration.append(e[0])
        iterations.append(iteration)
        for i, it in enumerate(iterations):
            self.assertLessEqual(it.count("write"), 1, f"iteration {i} wrote the record twice: {it}")
            if "write" in it:
                self.assertNotIn("spawn", it[it.index("write"):],
                                 f"iteration {i} spawned after its write: {it}")
        written = writes(evs)
        spawning = sum("spawn" in it for it in iterations)
        self.assertLessEqual(len(written), spawning + 1, f"{len(written)} writes, {spawning} iterations spawned")
        self.assertEqual(written[0][0], "cohortd.groups.new", "the first write is whole")
        self.assertTrue(all("O_APPEND" in flags for name, flags in written[1:] if name == "cohortd.groups"),
                        written)
        stopped = d.last_pid("s7")
        d.ctl("stop", "s7")
        wait_until(self, lambda: stopped not in live_groups(groups), what="the stopped group out of the record")
        after = writes(events())
        self.assertEqual([name for name, _ in after].count("cohortd.groups.new"),
                         [name for name, _ in written].count("cohortd.groups.new"),
                         "a stop is appended, not a rewrite")
        with open(os.path.join(run, "cohortd.pid")) as f:
            os.kill(int(f.read()), signal.SIGTERM)      # strace's pid is d.proc's
        d.stop(sig=None)

    def test_groups_record_of_restarts_is_kept_short_and_read_in_order(self):
        """Restarts append an end and a start each: once the ended groups
        outnumber the live ones the record is rewritten with the live ones
        only, and a cohortd after a kill -9 stops exactly those (not the
        ended groups, whose pids may be anyone's by then)."""
        n = 5
        run = self.path("run")
        text = f"[cohort]\nrun_dir = {run}\n" + "".join(
            f"\n[service:s{i}]\ncommand = /bin/sleep 1000\nready = delay:0\n" for i in range(n))
        first = self.cohortd(text)
        first.run_dir = run
        first.wait_log(r"^stack is up", timeout=60)
        groups = os.path.join(run, "cohortd.groups")
        most = 0
        for _ in range(15):
            for i in range(n):
                first.ctl("restart", f"s{i}")
            most = max(most, len(read(groups).splitlines()))
        # cohortctl restart returns once each is running again, but the
        # harness may not have read the "spawned pid" lines yet: the pids
        # are looked up again at each try
        live = set()

        def record_is_last_starts():
            live.clear()
            live.update(first.last_pid(f"s{i}") for i in range(n))
            return set(live_groups(groups)) == live
        wait_until(self, record_is_last_starts, what="the record of the last starts")
        # 15 x 5 restarts appended 150 lines; rewrites kept it near twice the live ones
        self.assertLess(most, 2 * (1 + n) + 64 + 2 * n + 1, read(groups))
        self.assertTrue(any(line.startswith("-") for line in read(groups).splitlines()) or most > 1 + n)
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait()
        first.returncode = -9
        second = self.cohortd(text)
        second.wait_log(r"^stack is up", timeout=60)
        self.assertEqual(second.count(r"^old pid \d+ has stopped$"), n)
        self.assertEqual(second.count(r"^old process group \d+ is gone"), 0, "an ended group was looked at")
        for pid in live:
            self.assertFalse(pid_alive(pid), pid)
        second.stop()

    def test_sweep_of_many_groups_looks_at_proc_once_per_tick(self):
        """100 groups left by a kill -9: the next cohortd reads /proc once
        per look at all of them, not once per group (groups x processes
        reads a tick took minutes with 2,000 services)."""
        n = 100
        run = self.path("run")
        text = f"[cohort]\nrun_dir = {run}\n" + "".join(
            f"\n[service:s{i}]\ncommand = /bin/sleep 1000\nready = delay:0\n" for i in range(n))
        first = self.cohortd(text)
        first.wait_log(r"^stack is up", timeout=60)
        groups = os.path.join(run, "cohortd.groups")
        wait_until(self, lambda: len(read(groups).splitlines()) == n + 1, what="every group recorded")
        old = [first.last_pid(f"s{i}") for i in range(n)]
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait()
        first.returncode = -9
        trace = self.path("trace")
        # LeakSanitizer cannot work under ptrace: no leak check for this one
        asan = os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0"
        second = self.cohortd(text, wrap=["env", f"ASAN_OPTIONS={asan}",
                                          "strace", "-o", trace, "-e", "trace=openat", "--"])
        second.wait_log(r"^stack is up", timeout=60)
        self.assertEqual(second.count(r"^old pid \d+ has stopped$"), n)
        for pid in old:
            self.assertFalse(pid_alive(pid), pid)
        with open(trace) as f:
            scans = sum('"/proc", O_RDONLY' in line for line in f)
        self.assertGreater(scans, 0)
        self.assertLess(scans, n // 4, f"{scans} scans of /proc to stop {n} groups")
        with open(os.path.join(run, "cohortd.pid")) as f:
            os.kill(int(f.read()), signal.SIGTERM)      # strace's pid is second.proc's
        second.stop(sig=None)

    def test_a_group_named_twice_is_stopped_once(self):
        run = self.path("run")
        os.mkdir(run)
        old = subprocess.Popen(["sleep", "1000"], start_new_session=True)
        try:
            with open(os.path.join(run, "cohortd.groups"), "w") as f:
                f.write(f"{old.pid} {start_ticks(old.pid)} 15 1000 a\n" * 2)
            d = self.cohortd(f"[cohort]\nrun_dir = {run}\n\n[service:a]\n"
                             "command = /bin/sleep 1000\nready = delay:0\n")
            d.wait_log(rf"^.*/cohortd\.groups: process group {old.pid} is named twice: the first "
                       r"is used$", who="a")
            d.wait_log(r"^stack is up")
            self.assertEqual(old.wait(10 * FACTOR), -signal.SIGTERM)
            self.assertEqual(d.count(rf"^old pid {old.pid}, left by"), 1)
            self.assertEqual(d.count(rf"^old pid {old.pid} has stopped$"), 1)
            d.stop()
        finally:
            if old.poll() is None:
                old.kill()
            old.wait()

    def test_hup_and_usr1_during_the_sweep_wait_for_the_loop(self):
        """The sweep can last a stop_timeout: a reload's HUP or logrotate's
        USR1 then must not kill cohortd (their default action)."""
        run = self.path("run")
        os.mkdir(run)
        deaf = subprocess.Popen([sys.executable, "-c", "import signal, time\n"
                                 "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                                 "print(flush=True)\ntime.sleep(1000)"],
                                stdout=subprocess.PIPE, start_new_session=True)
        try:
            deaf.stdout.readline()      # its TERM is ignored from here on
            with open(os.path.join(run, "cohortd.groups"), "w") as f:
                f.write(f"{deaf.pid} {start_ticks(deaf.pid)} 15 1500 a\n")
            d = self.cohortd(f"[cohort]\nrun_dir = {run}\n\n[service:a]\n"
                             "command = /bin/sleep 1000\nready = delay:0\n")
            d.wait_log(rf"^old pid {deaf.pid}, left by a cohortd", who="a")
            d.send(signal.SIGUSR1)
            d.send(signal.SIGHUP)
            d.wait_log(rf"^old pid {deaf.pid} still runs after stop_timeout: KILL", who="a")
            d.wait_log(r"^stack is up")
            d.wait_log(r"^SIGUSR1 ignored: cohortd acts on TERM, INT, HUP, and USR1 with a log_file$")
            d.wait_log(r"^reload: ")
            self.assertIsNone(d.proc.poll())
            self.assertEqual(deaf.wait(10 * FACTOR), -signal.SIGKILL)
            d.stop()
        finally:
            if deaf.poll() is None:
                deaf.kill()
            deaf.wait()

    def test_a_reload_of_the_stop_settings_is_recorded(self):
        """stop_signal and stop_timeout apply live: the record a cohortd
        after a crash reads has them too, not the values at spawn."""
        run = self.path("run")
        svc = "\n[service:a]\ncommand = /bin/sleep 1000\nready = delay:0\n"
        d = self.cohortd(f"[cohort]\nrun_dir = {run}\n" + svc + "stop_timeout = 1s\n")
        d.wait_log(r"^stack is up")
        groups = os.path.join(run, "cohortd.groups")
        pid = d.last_pid("a")
        wait_until(self, lambda: f"{pid} " in read(groups), what="a in the record")
        self.assertRegex(read(groups), rf"(?m)^{pid} \d+ 15 1000 a$")
        d.reload(f"[cohort]\nrun_dir = {run}\n" + svc + "stop_signal = INT\nstop_timeout = 7s\n")
        d.wait_log(r"^reload: 0 added, 0 removed, 1 changed")
        wait_until(self, lambda: re.search(rf"(?m)^{pid} \d+ 2 7000 a$", read(groups)),
                   what="the new stop settings in the record")
        self.assertEqual(d.last_pid("a"), pid)      # applied, not restarted
        d.stop()

    @unittest.skipUnless(os.geteuid() == 0, "needs root to run cohortd as nobody")
    def test_a_group_of_another_user_is_left_alone_at_once(self):
        """A cohortd of nobody reading a record that names a group of
        root's: it cannot signal it, so it does not wait a stop_timeout and
        a KILL grace for it, and says so."""
        run = self.path("run")
        os.mkdir(run)
        os.chmod(self.tmp, 0o755)
        os.chown(run, 65534, 65534)
        other = subprocess.Popen(["sleep", "1000"], start_new_session=True)
        try:
            groups = os.path.join(run, "cohortd.groups")
            with open(groups, "w") as f:
                f.write(f"{other.pid} {start_ticks(other.pid)} 15 3000 a\n")
            os.chown(groups, 65534, 65534)
            # the config's directory (and valgrind's log one) must be
            # nobody's to use, then nobody runs it
            as_nobody = ["sh", "-c", 'for a; do last=$a; done; d=$(dirname "$last"); chmod 0777 "$d"; '
                         '[ ! -d "$d/vg" ] || chmod 0777 "$d/vg"; '
                         'exec setpriv --reuid=65534 --regid=65534 --clear-groups "$@"', "sh"]
            d = self.cohortd(f"[cohort]\nrun_dir = {run}\n\n[service:a]\n"
                             "command = /bin/sleep 1000\nready = delay:0\n", wrap=as_nobody)
            d.wait_log(rf"^old process group {other.pid} still runs but is another user's: left "
                       r"alone \(a cohortd of that user, or root, can stop it\)$", who="a")
            d.wait_log(r"^stack is up", timeout=5)      # not after 3 s + 5 s after KILL
            self.assertEqual(d.count(r"^old pid|^SIG|^old process group \d+ still runs after"), 0)
            self.assertTrue(pid_alive(other.pid))
            d.stop()
        finally:
            other.kill()
            other.wait()

    def test_a_record_with_an_impossible_stop_timeout_is_ignored(self):
        """A damaged record: a stop_timeout no config can hold (the sum
        with the clock overflowed, a KILL at once) is not a record."""
        run = self.path("run")
        os.mkdir(run)
        other = subprocess.Popen(["sleep", "1000"], start_new_session=True)
        try:
            with open(os.path.join(run, "cohortd.groups"), "w") as f:
                f.write(f"{other.pid} {start_ticks(other.pid)} 15 9223372036854775807 a\n")
            d = self.cohortd(f"[cohort]\nrun_dir = {run}\n\n[service:a]\n"
                             "command = /bin/sleep 1000\nready = delay:0\n")
            d.wait_log(r"^.*/cohortd\.groups:1: not a process group record: ignored$")
            d.wait_log(r"^stack is up")
            self.assertEqual(d.count(r"^old pid"), 0)
            self.assertTrue(pid_alive(other.pid))
            d.stop()
        finally:
            other.kill()
            other.wait()


def live_groups(path):
    """The groups cohortd.groups names as running: {pgid: start}, its
    "-PGID START" lines applied in order."""
    live = {}
    for line in read(path).splitlines():
        f = line.split()
        if not f or line.startswith("#"):
            continue
        if line.startswith("-"):
            if live.get(int(f[0][1:])) == f[1]:
                del live[int(f[0][1:])]
        else:
            live[int(f[0])] = f[1]
    return live


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


class DaemonLog(CohortTest):
    SVC = """
[service:a]
command = /bin/sh -c "ls -l /proc/self/fd > fds; exec sleep 1000"
ready = delay:0
"""

    def test_log_file_as_well_as_stderr_reopened_on_usr1(self):
        """log_file gets every line stderr gets; no service inherits it;
        after logrotate's rename, SIGUSR1 reopens the path."""
        d = self.cohortd("[cohort]\nlog_file = cohortd.log\n" + self.SVC)
        d.wait_log(r"^stack is up")
        log = os.path.join(d.dir, "cohortd.log")
        wait_until(self, lambda: "stack is up" in read(log), what="the log file")
        self.assertRegex(read(log).splitlines()[0], r"^\d{4}-\d\d-\d\dT[\d:.]+Z INFO  cohortd: ")
        self.assertIn("INFO  a: starting -> running: ", read(log))
        wait_until(self, lambda: "/proc/" in read(os.path.join(d.dir, "fds")), what="a's fds")
        self.assertNotIn("cohortd.log", read(os.path.join(d.dir, "fds")))
        self.assertEqual(os.stat(log).st_mode & 0o137, 0)     # 0640 at most
        # logrotate: rename, then USR1
        os.rename(log, log + ".1")
        mark = len(d.lines)
        d.send(signal.SIGUSR1)
        d.wait_log(r"^SIGUSR1: reopened the log file .*/cohortd\.log$", start=mark)
        d.ctl("restart", "a")
        _, l = d.wait_state("a", "running", start=mark)
        wait_until(self, lambda: l.raw in read(log), what="the restart in the new file")
        self.assertIn("SIGUSR1: reopened the log file", read(log))
        self.assertNotIn("restart requested", read(log + ".1"))
        d.stop()
        self.assertIn("exiting with status 0", read(log))
        # the two files together hold exactly what stderr got
        self.assertEqual((read(log + ".1") + read(log)).splitlines(), [l.raw for l in d.lines if l.level])

    def test_log_file_option_reload_and_errors(self):
        """--log-file wins over log_file (at reload too); a reload's new
        log_file applies at once; one that cannot be opened is an error."""
        first, second, cmdline = self.path("first.log"), self.path("second.log"), self.path("cmd.log")
        d = self.cohortd(f"[cohort]\nlog_file = {first}\n" + self.SVC, args=("-v", "--log-file", cmdline))
        d.wait_log(r"^stack is up")
        wait_until(self, lambda: "stack is up" in read(cmdline), what="the --log-file file")
        d.reload(f"[cohort]\nlog_file = {second}\n" + self.SVC)
        d.wait_log(r"^reload: 0 added")
        wait_until(self, lambda: "reload: 0 added" in read(cmdline), what="the reload line")
        self.assertFalse(os.path.exists(first) or os.path.exists(second))
        d.stop()
        # without --log-file, a reload moves to the new file at once
        d = self.cohortd(f"[cohort]\nlog_file = {first}\n" + self.SVC)
        d.wait_log(r"^stack is up")
        d.reload(f"[cohort]\nlog_file = {second}\n" + self.SVC)
        wait_until(self, lambda: "reload: 0 added" in read(second), what="the new file")
        self.assertNotIn("reload: 0 added", read(first))
        d.reload(f"[cohort]\nlog_file = /nonexistent/dir/x.log\n" + self.SVC)
        d.wait_log(r"^reload: cannot open the log file /nonexistent/dir/x\.log: No such file or "
                   r"directory; still logging to .*/second\.log$")
        d.stop()
        # at start: an error, nothing runs
        d = self.cohortd("[cohort]\nlog_file = /nonexistent/dir/x.log\n" + self.SVC)
        d.wait_log(r"cohortd: cannot open the log file /nonexistent/dir/x\.log: No such file or directory")
        self.assertEqual(d.stop(None, expect=1), 1)
        self.assertFalse(os.path.exists(os.path.join(d.dir, "fds")))
        # and USR1 without a log file is still ignored (test_process too)
        d = self.cohortd(self.SVC)
        d.wait_log(r"^stack is up")
        d.send(signal.SIGUSR1)
        d.wait_log(r"^SIGUSR1 ignored: cohortd acts on TERM, INT, HUP, and USR1 with a log_file$")
        d.stop()

if __name__ == "__main__":
    unittest.main(verbosity=2)
