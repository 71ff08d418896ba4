#!/usr/bin/python3
"""The per-service process keys seen from inside the service: limit_nofile,
limit_core, limit_nproc, limit_as, nice, oom_score_adjust, environment_file
(and umask beside them), and the failures that name what could not be set."""
import json
import os
import pwd
import unittest

from harness import PY, VALGRIND, CohortTest, wait_until

# Writes what the process sees, then stays.
REPORT = """import json, os, resource, sys
r = {}
for name in ("NOFILE", "CORE", "NPROC", "AS"):
    r[name] = list(resource.getrlimit(getattr(resource, "RLIMIT_" + name)))
with open("/proc/self/stat") as f:
    r["nice"] = int(f.read().rsplit(")", 1)[1].split()[16])
with open("/proc/self/oom_score_adj") as f:
    r["oom"] = int(f.read())
r["umask"] = os.umask(0)
r["uid"] = os.getuid()
r["env"] = {k: v for k, v in os.environ.items() if k.startswith("T_")}
with open(sys.argv[1] + ".tmp", "w") as f:
    json.dump(r, f)
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
import time
time.sleep(1000)
"""
INF = -1   # resource.RLIM_INFINITY
# valgrind keeps RLIMIT_NOFILE to itself: a setrlimit of it in a child not
# yet exec'd is refused (EPERM) or recorded without reaching the kernel.
# Under valgrind (CI's memory check) limit_nofile is left to the plain and
# sanitizer runs.
NOFILE = not VALGRIND
CAP_SYS_NICE, CAP_SYS_RESOURCE = 23, 24


def has_cap(bit):
    with open("/proc/self/status") as f:
        eff = next(int(l.split()[1], 16) for l in f if l.startswith("CapEff:"))
    return bool(eff >> bit & 1)


class Limits(CohortTest):
    def report(self, name, d=None):
        path = self.path(name)
        try:
            wait_until(self, lambda: os.path.exists(path), what=f"{name} from the service")
        except AssertionError:
            if d:
                for f in os.listdir(d.log_dir):
                    with open(os.path.join(d.log_dir, f)) as fh:
                        print(f, fh.read())
                print(d.dump())
            raise
        with open(path) as f:
            return json.load(f)

    def setUp(self):
        super().setUp()
        self.script = self.path("report.py")
        with open(self.script, "w") as f:
            f.write(REPORT)
        os.chmod(self.tmp, 0o755)
        os.chmod(self.script, 0o644)

    def test_each_key_from_inside(self):
        with open(self.path("app.env"), "w") as f:
            f.write('# the app\nT_PLAIN=1\nT_QUOTED="a, \\"b\\""\nT_OVER=from the file\n'
                    "T_SINGLE='$HOME stays'\nT_JOINED=one \\\ntwo\n")
        d = self.cohortd(f"""
[service:limited]
command = {PY} {self.script} {self.path("limited.json")}
{"limit_nofile = 123:456" if NOFILE else ""}
limit_core = 0
limit_nproc = 4000:5000
limit_as = 2G:infinity
nice = 7
oom_score_adjust = 300
umask = 027
environment = T_OVER=from environment, T_KEPT=env
environment_file = {self.path("app.env")}, -{self.path("missing.env")}
ready = delay:0

[service:plain]
command = {PY} {self.script} {self.path("plain.json")}
ready = delay:0
""")
        r = self.report("limited.json")
        p = self.report("plain.json")
        if NOFILE:
            self.assertEqual(r["NOFILE"], [123, 456])
        self.assertEqual(r["CORE"], [0, 0])
        self.assertEqual(r["NPROC"], [4000, 5000])
        self.assertEqual(r["AS"], [2 << 30, INF])
        self.assertEqual(r["nice"], 7)
        self.assertEqual(r["oom"], 300)
        self.assertEqual(r["umask"], 0o027)
        self.assertEqual(r["env"], {"T_PLAIN": "1", "T_QUOTED": 'a, "b"', "T_OVER": "from the file",
                                    "T_SINGLE": "$HOME stays", "T_JOINED": "one two", "T_KEPT": "env"})
        # A service without the keys has cohortd's.
        me = os.getpid()
        with open(f"/proc/{me}/oom_score_adj") as f:
            self.assertEqual(p["oom"], int(f.read()))
        self.assertEqual(p["nice"], os.getpriority(os.PRIO_PROCESS, 0))
        self.assertEqual(p["env"], {})
        self.assertNotEqual(p["NOFILE"], r["NOFILE"] if NOFILE else [123, 456])
        d.stop()

    def test_changed_file_is_read_at_the_next_start(self):
        env = self.path("app.env")
        with open(env, "w") as f:
            f.write("T_V=first\n")
        d = self.cohortd(f"""
[service:a]
command = {PY} {self.script} {self.path("a.json")}
environment_file = {env}
ready = delay:0
""")
        self.assertEqual(self.report("a.json")["env"], {"T_V": "first"})
        os.unlink(self.path("a.json"))
        with open(env, "w") as f:
            f.write("T_V=second\n")
        d.ctl("restart", "a")
        self.assertEqual(self.report("a.json")["env"], {"T_V": "second"})
        d.stop()

    @unittest.skipUnless(os.geteuid() == 0 and has_cap(CAP_SYS_NICE), "root with CAP_SYS_NICE only")
    def test_set_before_dropping_root(self):
        # A nice lowered, and (with CAP_SYS_RESOURCE, which a container's
        # root may lack) a hard limit raised and an oom_score_adj lowered:
        # only root may, so they are set before the switch to the user.
        nobody = pwd.getpwnam("nobody").pw_uid
        out = self.path("out")
        os.mkdir(out)
        os.chmod(out, 0o777)
        resource = has_cap(CAP_SYS_RESOURCE) and NOFILE
        hard = 1 << 20 if resource else os.sysconf("SC_OPEN_MAX")
        d = self.cohortd(f"""
[service:a]
command = {PY} {self.script} {out}/a.json
user = nobody
nice = -3
""" + (f"""limit_nofile = {hard}:{hard}
oom_score_adjust = -200
""" if resource else "") + """ready = delay:0
""")
        r = self.report("out/a.json", d)
        self.assertEqual((r["uid"], r["nice"]), (nobody, -3))
        if resource:
            self.assertEqual((r["NOFILE"], r["oom"]), ([hard, hard], -200))
        d.stop()

    def test_what_cannot_be_set_fails_the_start_and_says_why(self):
        with open(self.path("bad.env"), "w") as f:
            f.write("T_OK=1\nthis is not it\n")
        d = self.cohortd(f"""
[service:toomany]
command = /bin/sleep 1000
limit_nofile = 2000000000
restart = never

[service:nofile]
command = /bin/sleep 1000
environment_file = {self.path("none.env")}
restart = never

[service:badline]
command = /bin/sleep 1000
environment_file = {self.path("bad.env")}
restart = never
""")
        # Past the kernel's nr_open (or the hard limit, without
        # CAP_SYS_RESOURCE): refused even to root.
        _, l = d.wait_state("toomany", "failed")
        self.assertIn("setrlimit limit_nofile 2000000000:2000000000: Operation not permitted", l.reason)
        _, l = d.wait_state("nofile", "failed")
        self.assertIn(f"environment_file {self.path('none.env')}: No such file or directory", l.reason)
        _, l = d.wait_state("badline", "failed")
        self.assertIn(f"{self.path('bad.env')}:2: expected NAME=VALUE", l.reason)
        d.stop()


if __name__ == "__main__":
    unittest.main()
