#!/usr/bin/python3
"""The services together: phases (proven by the demo services' own
clocks), the requires cascade, reload, shutdown order, second TERM."""
import os
import re
import signal
import subprocess
import time
import unittest

from harness import BUILD, COHORTCTL, FACTOR, PY, SRC, CohortTest, free_port, free_port_block, pid_alive, wait_until




class Stack(CohortTest):
    def test_demo_stack_phase_order_from_service_clocks(self):
        base = free_port_block(4)
        record = self.path("record")
        demo = os.path.join(SRC, "contrib", "demo")
        env = f"environment = DEMO_PORT_BASE={base}, DEMO_RECORD={record}, DEMO_START_DELAY=0.2"
        d = self.cohortd(f"""
[service:trinity]
command = {PY} {demo}/trinity.py
requires = prime, reactor
ready = http://127.0.0.1:{base + 3}/health
{env}

[service:prime]
command = {PY} {demo}/prime.py
requires = core
ready = tcp:127.0.0.1:{base + 1}
{env}

[service:reactor]
command = {PY} {demo}/reactor.py
requires = core
ready = notify
{env}

[service:core]
command = {PY} {demo}/core.py
ready = http://127.0.0.1:{base}/health
{env}
""")
        d.wait_log(r"^stack is up: 4 of 4 services running$", timeout=30)
        with open(record) as f:
            started = {}
            for line in f:
                name, _, ms, pid = line.split()
                started[name] = int(ms)
        # Each service records when it listens; phase N+1 is spawned only
        # after phase N is ready, so its record comes later.
        self.assertLess(started["core"], started["prime"])
        self.assertLess(started["core"], started["reactor"])
        self.assertLess(started["prime"], started["trinity"])
        self.assertLess(started["reactor"], started["trinity"])
        # and cohortd spawned phase 2 only after core was running
        _, core_up = d.wait_state("core", "running")
        _, prime_start = d.wait_state("prime", "starting")
        self.assertGreaterEqual(prime_start.ms, core_up.ms)
        _, reactor_up = d.wait_state("reactor", "running")
        _, trinity_start = d.wait_state("trinity", "starting")
        self.assertGreaterEqual(trinity_start.ms, reactor_up.ms)
        # and phase 3 was held back with a reason
        _, w = d.wait_state("trinity", "waiting")
        self.assertEqual(w.reason, "phase 3 starts once phase 1 is ready")
        d.stop()
        # reverse order on the way down: trinity first, core last
        order = [l.who for l in d.lines if l.to == "stopped"]
        self.assertEqual(order[0], "trinity")
        self.assertEqual(order[-1], "core")

    def test_phase_waits_for_a_crash_looping_service(self):
        d = self.cohortd("""
[service:shaky]
command = /bin/sh -c "exit 1"
ready = delay:200ms
backoff_initial = 50ms
breaker_failures = 3
breaker_cooldown = 10m

[service:next]
command = /bin/sleep 1000
after = shaky
ready = delay:0
""")
        # phase 2 starts only when phase 1 settled: here, when the breaker opened
        _, failed = d.wait_state("shaky", "failed")
        _, started = d.wait_state("next", "starting")
        self.assertGreaterEqual(started.ms, failed.ms)
        d.stop()

    def test_many_services_after_many_all_start(self):
        # 350 services each `after` 350 others make 122,500 looks in one
        # start-up, more than one settle takes (its bound keeps the loop
        # serving): the rest was dropped, and the stack stood with a
        # phase never started (found by trying 1,000 services).
        d = self.cohortd("""
[service:a]
command = /bin/sleep 100000
[service:b]
instances = 350
command = /bin/sleep 100000
after = a
[service:c]
instances = 350
command = /bin/sleep 100000
after = b
""")
        d.wait_log(r"^stack is up: 701 of 701 services running$", timeout=60 * FACTOR)
        # a phase this long is not listed whole in one log line (cut at
        # about 2 KiB, mid-name): it says how many it left out
        d.wait_log(r"^phase 2: b@0, b@1, .*, b@\d+ and \d+ more \(cohortd --check lists them all\)$")

    def test_control_socket_answers_while_a_large_phase_starts(self):
        # Each start is a vfork and an exec: a phase of 3,000 started in
        # one loop pass, and a status asked meanwhile waited 3 s (a new
        # user's trial).  A settle now yields to the loop after 20 ms, so
        # a status asked once the first start is logged is answered with
        # the phase partly started; before, after the whole phase.
        n = 1500
        d = self.cohortd(f"""
[service:w]
instances = {n}
command = /bin/sleep 100000
ready = delay:0
stdout = null
""")
        d.wait_socket()
        d.wait_for(lambda l: l.who and l.who.startswith("w@") and l.to == "starting", 30,
                   what="the first start")
        st = d.ctl_json("status")
        spawned = sum(1 for s in st["services"] if s.get("pid"))
        self.assertGreater(spawned, 0, "the status was answered before any start")
        self.assertLess(spawned, n, "the status waited for the whole phase to start")
        d.wait_log(rf"^stack is up: {n} of {n} services running$", timeout=120)

    def test_requires_cascade_stops_and_restarts_dependents(self):
        d = self.cohortd("""
[service:base]
command = /bin/sleep 1000
ready = delay:0
backoff_initial = 700ms
backoff_jitter = 0

[service:dep]
command = /bin/sleep 1000
requires = base
ready = delay:0

[service:soft]
command = /bin/sleep 1000
after = base
ready = delay:0
""")
        d.wait_log(r"^stack is up")
        dep_pid, soft_pid = d.last_pid("dep"), d.last_pid("soft")
        mark = len(d.lines)
        os.kill(d.last_pid("base"), signal.SIGKILL)
        i, l = d.wait_state("dep", "stopping", start=mark)
        self.assertEqual(l.reason, "requires base, which is in backoff")
        i, l = d.wait_state("dep", "waiting", start=i)
        self.assertIn("requires base", l.reason)
        _, base_up = d.wait_state("base", "running", start=mark)
        i, l = d.wait_state("dep", "starting", start=i)
        self.assertGreaterEqual(l.ms, base_up.ms)
        d.wait_state("dep", "running", start=i)
        self.assertNotEqual(d.last_pid("dep"), dep_pid)
        self.assertFalse(pid_alive(dep_pid))
        # `after` only orders: soft kept running
        self.assertEqual(d.last_pid("soft"), soft_pid)
        self.assertTrue(pid_alive(soft_pid))
        d.stop()

    def test_restart_waits_for_the_dependents_it_took_down(self):
        """restart --wait answers once the dependents it stopped (directly or
        through others) are running again, not only the target; a dependent
        that was not up is not waited for."""
        d = self.cohortd("""
[service:base]
command = /bin/sleep 1000
ready = delay:0

[service:mid]
command = /bin/sleep 1000
requires = base
ready = delay:1s

[service:top]
command = /bin/sleep 1000
requires = mid
ready = delay:1s

[service:idle]
command = /bin/sleep 1000
requires = base
autostart = no
""")
        d.wait_log(r"^stack is up")
        d.wait_socket()
        old = {n: d.last_pid(n) for n in ("base", "mid", "top")}
        _, out, _ = d.ctl("restart", "base")
        self.assertEqual([l.split(" - ")[0] for l in out.splitlines()],
                         ["base: running", "mid: running", "top: running"], out)
        by = {s["name"]: s for s in d.ctl_json("status")["services"]}
        for n in ("base", "mid", "top"):
            self.assertEqual(by[n]["state"], "running", n)
            self.assertNotEqual(by[n]["pid"], old[n], n)
        self.assertEqual(by["idle"]["state"], "stopped")
        j = d.ctl_json("restart", "mid")
        self.assertEqual([(s["name"], s["state"], s.get("dependent", False)) for s in j["services"]],
                         [("mid", "running", False), ("top", "running", True)])
        self.assertEqual(j["failed"], [])
        d.stop()

    def chain(self, go, top):
        """a <- b <- each of top (each requires the one before); the first
        of top takes until the file go exists to stop."""
        text = """
[service:a]
command = /bin/sleep 1000
ready = delay:0

[service:b]
command = /bin/sleep 1000
requires = a
ready = delay:0
"""
        # Ready only once its trap is set: a TERM before that would end it
        # at once, and the chain would not wait on it (seen under load).
        trapped = go + ".trapped"
        slow = ("/bin/sh -c \"trap 'while [ ! -e " + go + " ]; do sleep 0.05; done; exit 0' TERM; "
                "touch " + trapped + "; while :; do sleep 0.1; done\"")
        for i, name in enumerate(top):
            ready = f"exec:/usr/bin/test -e {trapped}" if i == 0 else "delay:0"
            text += (f"\n[service:{name}]\ncommand = {slow if i == 0 else '/bin/sleep 1000'}\n"
                     f"requires = b\nready = {ready}\n")
        return self.cohortd(text)

    def test_a_chain_stops_from_the_top(self):
        """a <- b <- c (each requires the one before): when a goes, c stops
        first, then b, then a, though only b requires a."""
        go = self.path("go")
        d = self.chain(go, ["c"])
        d.wait_log(r"^stack is up")
        d.wait_socket()
        mark = len(d.lines)
        stop = subprocess.Popen([COHORTCTL, "-s", d.socket, "stop", "a"], stdout=subprocess.PIPE, text=True)
        _, l = d.wait_state("c", "stopping", start=mark)
        self.assertEqual(l.reason, "requires b, which is going down")
        # c takes its time: b and a wait for it
        self.assertEqual(d.ctl_json("status", "a", "b")["services"][0]["state"], "running")
        self.assertEqual(d.ctl_json("status", "a", "b")["services"][1]["state"], "running")
        open(go, "w").close()
        self.assertEqual(stop.wait(10 * FACTOR), 0)
        self.assertRegex(stop.stdout.read(), r"^a: stopped")
        stop.stdout.close()
        # cohortctl answered once a stopped: its log line may not be read yet
        d.wait_state("a", "stopped", start=mark)
        stopped = [(l.who, l.ms) for l in d.lines[mark:] if l.to == "stopped" or
                   (l.to == "waiting" and l.frm == "stopping")]
        self.assertEqual([w for w, _ in stopped], ["c", "b", "a"], stopped)
        # and all of it comes back when a does
        d.ctl("start", "a")
        d.wait_state("c", "running", start=mark)
        d.stop()

    def test_a_base_back_before_the_chain_is_down(self):
        """a comes back while b waits for c1 to stop: b is no longer going
        down, and c2, which waited on that, starts."""
        go = self.path("go")
        d = self.chain(go, ["c1", "c2"])
        d.wait_log(r"^stack is up")
        d.wait_socket()
        d.ctl("stop", "c2")
        mark = len(d.lines)
        d.ctl("stop", "--no-wait", "a")
        d.wait_state("c1", "stopping", start=mark)
        start = subprocess.Popen([COHORTCTL, "-s", d.socket, "start", "c2"], stdout=subprocess.PIPE, text=True)
        _, l = d.wait_state("c2", "waiting", start=mark)
        self.assertEqual(l.reason, "requires b, which is going down")
        d.ctl("start", "a")     # back before c1 has stopped
        out, _ = start.communicate(timeout=10 * FACTOR)
        self.assertRegex(out, r"^c2: running")
        open(go, "w").close()
        d.wait_state("c1", "running", start=mark)
        d.stop()

    def test_one_shot_job_before_its_dependents(self):
        out = self.path("migrated")
        d = self.cohortd(f"""
[service:migrate]
command = /bin/sh -c "sleep 0.2; touch {out}"
restart = on-failure

[service:app]
command = /bin/sh -c "test -f {out} && exec sleep 1000; exit 9"
requires = migrate
ready = delay:0
""")
        _, done = d.wait_state("migrate", "exited")
        _, up = d.wait_state("app", "running")
        self.assertGreaterEqual(up.ms, done.ms)
        d.wait_log(r"^stack is up: 1 of 2 services running$")
        d.stop()

    def test_failed_one_shot_blocks_what_requires_it(self):
        d = self.cohortd("""
[service:migrate]
command = /bin/sh -c "exit 2"
restart = never

[service:app]
command = /bin/sleep 1000
requires = migrate
""")
        _, l = d.wait_state("migrate", "failed")
        d.wait_for(lambda l: l.who == "app" and l.to == "waiting"
                   and l.reason == "requires migrate, which is failed", what="app waiting on migrate")
        d.wait_log(r"^stack is up: 0 of 2 services running$")
        d.stop()

    def test_reload_keeps_untouched_services(self):
        base = """
[service:keep]
command = /bin/sleep 1000
ready = delay:0
"""
        d = self.cohortd(base + """
[service:change]
command = /bin/sleep 1000
ready = delay:0

[service:drop]
command = /bin/sleep 1000
ready = delay:0
""")
        d.wait_log(r"^stack is up")
        keep, change, drop = d.last_pid("keep"), d.last_pid("change"), d.last_pid("drop")
        mark = d.reload(base + """
[service:change]
command = /bin/sleep 2000
ready = delay:0

[service:add]
command = /bin/sleep 1000
ready = delay:0
""")
        d.wait_log(r"^reload: 1 added, 1 removed, 1 changed, 1 unchanged$", start=mark)
        i, l = d.wait_state("change", "stopping", start=mark)
        self.assertEqual(l.reason, "definition changed by reload")
        d.wait_state("change", "running", start=i)
        d.wait_state("add", "running", start=mark)
        d.wait_state("drop", "stopped", start=mark)
        d.wait_log(r"^removed$", who="drop", start=mark)
        self.assertNotEqual(d.last_pid("change"), change)
        self.assertFalse(pid_alive(drop))
        # untouched: same pid, no transition since the reload
        self.assertEqual(d.last_pid("keep"), keep)
        self.assertTrue(pid_alive(keep))
        self.assertEqual([l for l in d.lines[mark:] if l.who == "keep" and l.to], [])

        # An invalid config is refused whole; everything keeps running.
        mark = len(d.lines)
        d.write_config(base + "\n[service:broken]\ncomand = x\n")
        d.send(signal.SIGHUP)
        d.wait_log(r"^reload: .* has 2 errors; still running the old config:$", start=mark)
        d.wait_log(r'unknown key "comand" \(did you mean "command"\?\)', start=mark)
        self.assertEqual(d.last_pid("keep"), keep)
        self.assertEqual(d.state("add"), "running")
        d.stop()

    def test_shutdown_in_reverse_phase_order(self):
        d = self.cohortd("""
[service:a]
command = /bin/sleep 1000
ready = delay:0

[service:b]
command = /bin/sleep 1000
requires = a
ready = delay:0

[service:c]
command = /bin/sleep 1000
requires = b
ready = delay:0

[service:c2]
command = /bin/sleep 1000
after = b
ready = delay:0
""")
        d.wait_log(r"^stack is up")
        pids = [d.last_pid(x) for x in ("a", "b", "c", "c2")]
        mark = len(d.lines)
        d.stop()
        events = [(l.who, l.to) for l in d.lines[mark:] if l.to in ("stopping", "stopped")]
        def at(who, to):
            return events.index((who, to))
        self.assertLess(at("c", "stopped"), at("b", "stopping"))
        self.assertLess(at("c2", "stopped"), at("b", "stopping"))
        self.assertLess(at("b", "stopped"), at("a", "stopping"))
        for p in pids:
            self.assertFalse(pid_alive(p))

    def test_second_term_kills_everything(self):
        d = self.cohortd("""
[service:deaf]
command = /bin/sh -c "trap '' TERM; touch {flag}; while :; do sleep 1; done"
ready = exec:test -f {flag}
stop_timeout = 60s
""".replace("{flag}", self.path("trapped")))
        d.wait_state("deaf", "running")
        pid = d.last_pid("deaf")
        d.send(signal.SIGTERM)
        d.wait_state("deaf", "stopping")
        d.send(signal.SIGTERM)
        d.wait_log(r"^second SIGTERM: KILL to 1 process group$")
        d.stop(sig=None, expect=1, timeout=10)
        self.assertFalse(pid_alive(pid))

    def test_shutdown_timeout(self):
        d = self.cohortd("""
[cohort]
shutdown_timeout = 500ms

[service:deaf]
command = /bin/sh -c "trap '' TERM; touch {flag}; while :; do sleep 1; done"
ready = exec:test -f {flag}
stop_timeout = 60s
""".replace("{flag}", self.path("trapped")))
        d.wait_state("deaf", "running")
        pid = d.last_pid("deaf")
        d.stop(expect=1, timeout=10)
        d.wait_log(r"^shutdown_timeout \(500ms\) expired: KILL to 1 process group$")
        self.assertFalse(pid_alive(pid))



class StackEdges(CohortTest):
    """Cases a review found: each once broke the stack."""

    def test_reload_keeps_probes_of_untouched_services(self):
        text = """
[service:checked]
command = /bin/sleep 1000
ready = delay:0
health = exec:true
health_interval = 100ms

[service:slowready]
command = /bin/sleep 1000
ready = exec:sleep 0.4
ready_timeout = 5s
"""
        d = self.cohortd(text)
        d.wait_state("checked", "running")
        d.wait_state("slowready", "starting")
        mark = d.reload(text)   # while slowready's probe is in flight
        for _ in range(3):
            mark, _ = d.wait_log(r"^health ok", who="checked", start=mark + 1)
        d.wait_state("slowready", "running")
        self.assertEqual(d.count(r"not ready within", "slowready"), 0)
        d.stop()

    def test_frequent_reloads_do_not_hide_a_failing_health_check(self):
        """A probe under way when a reload leaves its service untouched
        goes on: killing it lost its result, and reloads every few hundred
        ms kept a failing health check from ever being seen."""
        text = """
[service:sick]
command = /bin/sleep 1000
ready = delay:0
health = exec:sh -c 'sleep 0.6; exit 1'
health_interval = 100ms
health_timeout = 5s
health_retries = 2
"""
        d = self.cohortd(text)
        _, up = d.wait_state("sick", "running")
        deadline = time.monotonic() + 15 * FACTOR
        while not d.count(r"^health check failed", "sick"):
            self.assertLess(time.monotonic(), deadline, "no health check ever ended")
            d.reload(text)      # unchanged, every 300 ms
            time.sleep(0.3)
        d.wait_log(r"^health check failed \(1 of 2\)", who="sick")
        d.stop()

    def test_hup_during_shutdown_is_ignored(self):
        flag = self.path("trapped")
        d = self.cohortd(f"""
[service:deaf]
command = /bin/sh -c "trap '' TERM; touch {flag}; while :; do sleep 1; done"
ready = exec:test -f {flag}
stop_timeout = 2s
""")
        d.wait_state("deaf", "running")
        d.write_config(f"""
[service:deaf]
command = /bin/sh -c "trap '' TERM; touch {flag}; while :; do sleep 1; done"
ready = exec:test -f {flag}
stop_timeout = 2s

[service:new]
command = /bin/sleep 1000
""")
        d.send(signal.SIGTERM)
        d.wait_state("deaf", "stopping")
        d.send(signal.SIGHUP)
        d.wait_log(r"^SIGHUP ignored: shutting down$")
        d.stop(sig=None)
        self.assertEqual(d.count(r"-> starting", "new"), 0)

    def test_definition_changed_while_failing_takes_effect(self):
        # reloaded while it is being stopped for failing its readiness check
        cmd = "/bin/sh -c \"trap '' TERM; while :; do sleep 0.1; done\""
        d = self.cohortd(f"""
[service:s]
command = {cmd}
ready = tcp:127.0.0.1:1
ready_timeout = 300ms
stop_timeout = 1s
backoff_initial = 100ms
""")
        d.wait_state("s", "stopping")
        mark = d.reload(f"""
[service:s]
command = {cmd}
ready = delay:0
stop_timeout = 1s
backoff_initial = 100ms
""")
        # what cohortd does around the process: in force at once, no restart of its own
        d.wait_log(r"^reload: ready, ready_timeout changed: applied to the running service$",
                   who="s", start=mark)
        d.wait_state("s", "backoff", start=mark)
        d.wait_state("s", "running", start=mark)
        d.stop()

    def test_always_service_exiting_before_ready_is_a_failure(self):
        d = self.cohortd("""
[service:quick]
command = /bin/true
ready = delay:500ms
backoff_initial = 10ms
breaker_failures = 3
breaker_cooldown = 10m

[service:next]
command = /bin/sleep 1000
after = quick
ready = delay:0
""")
        _, l = d.wait_state("quick", "failed")
        self.assertIn("breaker open: 3 failures", l.reason)
        self.assertIn("exited with code 0 before it was ready", l.reason)
        d.wait_state("next", "running")   # the phase gate opened
        d.stop()


    def test_readme_transcript_runs_as_written(self):
        """Every command of the README's cohortctl transcript, typed as
        written from a checkout in a shell with no COHORT_* variables,
        against the example stack (etc/cohort.ini, moved to free ports and
        a private directory): each exits 0."""
        with open(os.path.join(SRC, "README.md")) as f:
            readme = f.read()
        block = readme.split("From another terminal", 1)[1].split("```", 2)[1]
        commands = [l[2:] for l in block.split("\n") if l.startswith("$ ")]
        self.assertIn("build/cohortctl status", commands)
        base = free_port_block(4)
        demo = os.path.abspath(os.path.join(SRC, "contrib", "demo"))
        with open(os.path.join(SRC, "etc", "cohort.ini")) as f:
            text = f.read()
        text = re.sub(r"^(run_dir|state_dir|log_dir)\s*=.*$", "", text, flags=re.M)
        text = text.replace("../contrib/demo", demo)
        for i in range(4):
            text = text.replace(f"127.0.0.1:{7400 + i}", f"127.0.0.1:{base + i}")
        text = text.replace("127.0.0.1:7480", f"127.0.0.1:{free_port()}")   # bus_listen
        text = re.sub(r"^(\[service:\w+\])$", rf"\1\nenvironment = DEMO_PORT_BASE={base}", text,
                      flags=re.M)
        d = self.cohortd(text)
        d.wait_log(r"^stack is up: 4 of 4 services running$", timeout=30)
        # the checkout the README's commands run in
        checkout = self.path("checkout")
        os.makedirs(os.path.join(checkout, "etc"))
        os.symlink(os.path.abspath(BUILD), os.path.join(checkout, "build"))
        os.symlink(d.path, os.path.join(checkout, "etc", "cohort.ini"))
        rcs = self.path("rcs")
        script = "".join(f"{c}\necho $? >>{rcs}\n" for c in commands)
        env = {k: v for k, v in os.environ.items() if not k.startswith("COHORT_")}
        p = subprocess.run(["sh", "-c", script], cwd=checkout, env=env, capture_output=True,
                           text=True, timeout=60 * FACTOR)
        with open(rcs) as f:
            got = [int(x) for x in f.read().split()]
        self.assertEqual(list(zip(commands, got)), [(c, 0) for c in commands],
                         f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}")
        d.stop(None)

if __name__ == "__main__":
    unittest.main(verbosity=2)
