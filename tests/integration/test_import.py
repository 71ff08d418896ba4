#!/usr/bin/python3
"""cohortctl import: supervisord configs and systemd units into a cohort
config.  The inputs are files nobody here wrote: supervisord's own sample
(echo_supervisord_conf, Debian's supervisor) and the units Debian ships for
redis-server, mosquitto and nginx (read from /lib/systemd/system/); each
import must pass cohortd --check, and the imported redis and mosquitto run
under a private cohortd and get ready.  A few configs are written here for
what the samples lack (numprocs, [include], %(ENV_X)s, quoting), and the
bad inputs each get an error naming the file and line.

Two keys come from work merged beside this: instances (templates) and
pidfile (Type=forking).  The tests that need them are named *_template* and
*_forking* and skip, saying so, while cohortd --check calls the key unknown.
"""
import json
import os
import re
import resource
import shutil
import subprocess
import unittest

from harness import COHORTCTL, COHORTD, PY, SRC, VALGRIND, CohortTest, free_port, wait_until

UNITS = "/lib/systemd/system"
CAP_SYS_RESOURCE = 24



def without_nofile(config):
    """valgrind keeps RLIMIT_NOFILE to itself and refuses a child's setrlimit
    of it (EPERM): under valgrind (CI's memory check) limit_nofile is left to
    the plain and sanitizer runs, as in test_limits.py."""
    return re.sub(r"(?m)^limit_nofile = .*\n", "", config) if VALGRIND else config

def has_cap(bit):
    with open("/proc/self/status") as f:
        eff = next(int(l.split()[1], 16) for l in f if l.startswith("CapEff:"))
    return bool(eff >> bit & 1)


def run(*cmd, env=None, cwd=None):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env, cwd=cwd)


def key_known(key, value):
    """Does this cohortd know a service key?  (False until the other
    helper's work is merged.)"""
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "k.ini")
        with open(path, "w") as f:
            f.write(f"[service:k]\ncommand = /bin/true\n{key} = {value}\n")
        p = run(COHORTD, "--check", "-c", path)
        return f'unknown key "{key}"' not in p.stdout + p.stderr


def unit(name):
    path = os.path.join(UNITS, name + ".service")
    if not os.path.exists(path):
        raise unittest.SkipTest(f"{path} is missing: install Debian's {name.split('-')[0]} package "
                                "(contrib/bootstrap.sh --tests)")
    return path


def sample_conf():
    exe = shutil.which("echo_supervisord_conf")
    if not exe:
        raise unittest.SkipTest("echo_supervisord_conf is missing: install Debian's supervisor package "
                                "(contrib/bootstrap.sh --tests)")
    return run(exe).stdout


def section(text, name):
    """The lines of [service:NAME] in an imported config."""
    m = re.search(r"^\[service:%s\]\n(.*?)(?=^\[|\Z)" % re.escape(name), text, re.M | re.S)
    assert m, f"no [service:{name}] in:\n{text}"
    return m.group(1)


def keys(text, name):
    """KEY -> VALUE of [service:NAME], continuation lines joined."""
    out, last = {}, None
    for line in section(text, name).split("\n"):
        if line.startswith((" ", "\t")) and last:
            out[last] += " " + line.strip()
        elif "=" in line and not line.startswith(";"):
            k, v = line.split("=", 1)
            last = k.strip()
            out[last] = v.strip()
    return out


class Import(CohortTest):
    def importing(self, *files, expect=0, env=None):
        p = run(COHORTCTL, "import", *files, env=env)
        self.assertEqual(p.returncode, expect, f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}")
        for bad in ("Sanitizer", "runtime error:"):    # a --enable-sanitizers build
            self.assertNotIn(bad, p.stderr)
        return p

    def write(self, name, text):
        path = self.path(name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        return path

    def check(self, text, name="imported.ini"):
        """cohortd --check on an imported config; returns its report."""
        for n, line in enumerate(text.split("\n"), 1):
            self.assertLessEqual(len(line), 199, f"line {n} is too long for cohortd")
        path = self.write(name, text)
        p = run(COHORTD, "--check", "-c", path)
        self.assertEqual(p.returncode, 0, f"--check:\n{p.stdout}{p.stderr}\nconfig:\n{text}")
        return p.stdout

    def summary(self, p, services, skipped):
        self.assertRegex(p.stderr, rf"\b{services} services?, {skipped} settings? not imported")
        self.assertEqual(p.stdout.count("; not imported: "), skipped, p.stdout)

    # --- supervisord ----------------------------------------------------------
    def test_supervisord_sample_as_shipped(self):
        path = self.write("supervisord.conf", sample_conf())
        # Every [program:x] in it is commented out: nothing to supervise.
        p = self.importing(path, expect=1)
        self.assertIn(f"no service in {path}: nothing to import", p.stderr)
        self.assertEqual(p.stdout, "")
        # With a unit beside it, its daemon settings are comments of [cohort].
        p = self.importing(path, unit("redis-server"))
        head = p.stdout.split("[service:")[0]
        for key in ("[unix_http_server] file=/tmp/supervisor.sock", "[supervisord] logfile=/tmp/supervisord.log",
                    "[supervisord] minfds=1024", "[supervisorctl] serverurl=unix:///tmp/supervisor.sock",
                    "[rpcinterface:supervisor] supervisor.rpcinterface_factory="):
            self.assertIn("; not imported: " + key, head)
        self.assertIn("supervisord.conf", head)
        self.check(p.stdout)

    def test_supervisord_sample_program(self):
        """The sample's [program:theprogramname], uncommented as a user would."""
        lines, out, inside = sample_conf().split("\n"), [], False
        for line in lines:
            inside = inside or line.startswith(";[program:theprogramname]")
            if inside and line.startswith(";") and not line.startswith("; "):
                out.append(line[1:])
                inside = not line.startswith(";serverurl")
            else:
                inside = False if inside and not line.startswith(";") else inside
                out.append(line)
        path = self.write("supervisord.conf", "\n".join(out))
        p = self.importing(path)
        k = keys(p.stdout, "theprogramname")
        self.assertEqual(k["command"], "/bin/cat")
        self.assertEqual(k["directory"], "/tmp")
        self.assertEqual(k["umask"], "022")
        self.assertEqual(k["autostart"], "yes")
        self.assertEqual(k["ready"], "delay:1s")
        self.assertEqual(k["restart"], "on-failure")     # autorestart=unexpected
        self.assertEqual(k["success_exit"], "0")
        self.assertEqual(k["stop_signal"], "QUIT")
        self.assertEqual(k["stop_timeout"], "10s")
        self.assertEqual(k["user"], "chrism")
        self.assertEqual(k["stdout"], "/a/path")
        self.assertEqual(k["stderr"], "stdout")          # redirect_stderr=true wins over stderr_logfile
        self.assertEqual(k["log_max_size"], "1MB")
        self.assertEqual(k["log_backups"], "10")
        self.assertEqual(k["environment"], 'A="1",B="2"')
        self.assertNotIn("phase", k)
        s = section(p.stdout, "theprogramname")
        for key in ("startretries=3", "stopasgroup=false", "killasgroup=false", "stdout_syslog=false",
                    "stderr_logfile=/a/path", "serverurl=AUTO"):
            self.assertIn("; not imported: " + key + ": ", s)
        # The daemon's sections (12 settings) and the program's 13.
        self.summary(p, 1, 25)
        self.check(p.stdout)

    def test_a_password_is_not_copied(self):
        """supervisord's [inet_http_server] password= has no place in cohort:
        the comment names the key, not the secret."""
        path = self.write("secret.conf", "[inet_http_server]\nport = 127.0.0.1:9001\nusername = user\n"
                          "password = s3cr3t-Pw\n[program:a]\ncommand = /bin/sleep 100\n")
        p = self.importing(path)
        self.assertNotIn("s3cr3t-Pw", p.stdout + p.stderr)
        self.assertIn("; not imported: [inet_http_server] password=(not shown): ", p.stdout)
        self.assertIn("; not imported: [inet_http_server] username=user: ", p.stdout)
        self.check(p.stdout)

    def test_supervisord_include_env_group(self):
        self.write("conf.d/web.conf", """\
[program:web]
command = %(ENV_PYTHON)s -m http.server %(ENV_T_IMPORT_PORT)s
    --bind 127.0.0.1   ; a continuation line
directory: %(here)s
environment = NAME="%(program_name)s", NUM=%(process_num)03d,HOST=%(host_node_name)s
numprocs_start = 7
priority = 10
stdout_logfile = %(here)s/%(program_name)s.log
autorestart = true
stopsignal = SIGINT
""")
        self.write("conf.d/skip.txt", "[program:not-included]\ncommand = /bin/false\n")
        main = self.write("etc/supervisord.conf", """\
; a config of our own: [include] relative to this file, a group
[supervisord]
nodaemon = true

[include]
files = ../conf.d/*.conf
  extra/*.conf

[program:worker]
command=/bin/sleep 100 # an inline comment
startsecs=60
priority=20
autostart=false
stopwaitsecs = 3

[group:site]
programs = web,worker
priority = 5
""")
        self.write("etc/extra/cache.conf", "[program:cache]\ncommand = /bin/sleep 200\n")
        env = dict(os.environ, PYTHON=PY, T_IMPORT_PORT="8123")
        p = self.importing(main, env=env)
        web, worker, cache = keys(p.stdout, "web"), keys(p.stdout, "worker"), keys(p.stdout, "cache")
        self.assertNotIn("not-included", p.stdout)
        self.assertEqual(web["command"], f"{PY} -m http.server 8123 --bind 127.0.0.1")
        self.assertEqual(web["directory"], self.path("conf.d"))
        host = os.uname().nodename
        self.assertEqual(web["environment"], f'NAME="web", NUM=007,HOST={host}')
        self.assertEqual(web["stdout"], self.path("conf.d/web.log"))
        self.assertEqual(web["restart"], "always")
        self.assertEqual(web["stop_signal"], "INT")
        self.assertEqual(worker["command"], "/bin/sleep 100")
        self.assertEqual(worker["ready"], "delay:60s")
        self.assertEqual(worker["ready_timeout"], "90s")   # a delay must be shorter
        self.assertEqual(worker["autostart"], "no")
        self.assertEqual(worker["stop_timeout"], "3s")
        # priority 10 < 20 < 999 (cache has none): three phases, in order.
        self.assertEqual((web["phase"], worker["phase"], cache["phase"]), ("1", "2", "3"))
        self.assertIn("; not imported: [group:site] programs=web,worker: cohort has no groups", p.stdout)
        self.assertIn("; not imported: [supervisord] nodaemon=true", p.stdout)
        self.summary(p, 3, 3)
        report = self.check(p.stdout)
        self.assertIn("3 services in 3 phases", report)

    def test_supervisord_numprocs_template(self):
        self.write("numprocs.conf", """\
[program:worker]
command = /bin/sleep 10%(process_num)d
process_name = %(program_name)s_%(process_num)02d
numprocs = 3
numprocs_start = 1
environment = SLOT="%(process_num)02d", FMT="%%s"
stdout_logfile = %(here)s/worker-%(process_num)d.log
user = %(ENV_T_USER)s%%
""")
        p = self.importing(self.path("numprocs.conf"), env=dict(os.environ, T_USER="nobody"))
        k = keys(p.stdout, "worker")
        self.assertEqual(k["instances"], "3")
        self.assertEqual(k["command"], "/bin/sleep 10%{i+1}")
        self.assertEqual(k["environment"], 'SLOT="%{i+1}", FMT="%%s"')    # % is %% where %i is read
        self.assertEqual(k["stdout"], self.path("worker-%{i+1}.log"))
        self.assertEqual(k["user"], "nobody%")                          # not there
        s = section(p.stdout, "worker")
        self.assertIn("; note: numprocs_start=1: instances are numbered from 0, so %(process_num)d is %{i+1}", s)
        self.assertIn("; not imported: process_name=%(program_name)s_%(process_num)02d: ", s)
        self.assertIn("; note: environment: %(process_num) is %i, without its width", s)
        self.summary(p, 1, 1)
        if not key_known("instances", "2"):
            self.skipTest("cohortd does not know instances = N yet (the tmpl work): --check would refuse it")
        self.check(p.stdout)

    def test_supervisord_runs_template(self):
        """numprocs = 3 under cohortd: worker@0..2, each with its own number."""
        if not key_known("instances", "2"):
            self.skipTest("cohortd does not know instances = N yet (the tmpl work)")
        self.open_tmp()
        self.write("numprocs.conf", f"""\
[program:worker]
command = {PY} -c "import os, time; open(os.environ['OUT'], 'w').write('x'); time.sleep(100)"
numprocs = 3
numprocs_start = 5
environment = OUT="{self.tmp}/worker-%(process_num)d"
startsecs = 0
""")
        p = self.importing(self.path("numprocs.conf"))
        d = self.running(p.stdout, "worker@2")
        for n in (5, 6, 7):
            wait_until(self, lambda: os.path.exists(self.path(f"worker-{n}")), what=f"worker-{n}")
        # running() waited for worker@2 only: worker@0 and @1 are running
        # once cohortd has seen their ready (delay:0), not when their file is
        # there (the program ran before cohortd took its next look)
        status = [""]

        def three_running():
            status[0] = d.ctl("status")[1]
            return len(re.findall(r"(?m)^worker@[012]\s+running\b", status[0])) == 3
        wait_until(self, three_running, what=lambda: f"worker@0..2 running; status:\n{status[0]}")
        d.stop()

    # --- systemd: the units Debian ships ------------------------------------------
    def test_redis_unit(self):
        p = self.importing(unit("redis-server"))
        k = keys(p.stdout, "redis-server")
        self.assertEqual(k["command"], "/usr/bin/redis-server /etc/redis/redis.conf --supervised systemd "
                                       "--daemonize no")
        self.assertEqual(k["ready"], "notify")
        self.assertEqual(k["restart"], "always")
        self.assertEqual((k["user"], k["group"], k["umask"], k["limit_nofile"]),
                         ("redis", "redis", "007", "65535"))
        s = section(p.stdout, "redis-server")
        self.assertIn("; not imported: TimeoutStopSec=0: ", s)
        self.assertIn("; not imported: PIDFile=/run/redis/redis-server.pid: ", s)
        self.assertIn("; not imported: ProtectSystem=strict: cohort does not sandbox", s)
        self.assertIn("; not imported: After=network.target: ", s)
        self.check(p.stdout)

    def test_mosquitto_unit(self):
        p = self.importing(unit("mosquitto"))
        k = keys(p.stdout, "mosquitto")
        self.assertEqual(k["shell"], "yes")
        self.assertEqual(k["command"], "/bin/mkdir -m 740 -p /var/log/mosquitto && /bin/chown mosquitto "
                         "/var/log/mosquitto && /bin/mkdir -m 740 -p /run/mosquitto && /bin/chown mosquitto "
                         "/run/mosquitto && exec /usr/sbin/mosquitto -c /etc/mosquitto/mosquitto.conf")
        self.assertEqual((k["ready"], k["restart"]), ("notify", "on-failure"))
        self.assertIn("; not imported: ExecReload=/bin/kill -HUP $MAINPID: ", p.stdout)
        self.check(p.stdout)

    def test_nginx_unit_forking(self):
        p = self.importing(unit("nginx"))
        k = keys(p.stdout, "nginx")
        self.assertEqual(k["command"], "/usr/sbin/nginx -t -q -g 'daemon on; master_process on;' && "
                                       "exec /usr/sbin/nginx -g 'daemon on; master_process on;'")
        self.assertEqual((k["shell"], k["pidfile"], k["stop_timeout"]), ("yes", "/run/nginx.pid", "5s"))
        self.assertIn("; not imported: KillMode=mixed: ", p.stdout)
        self.assertIn("; not imported: ExecStop=-/sbin/start-stop-daemon", p.stdout)
        if not key_known("pidfile", "/run/x.pid"):
            self.skipTest("cohortd does not know pidfile yet (the forking work): --check would refuse it")
        self.check(p.stdout)

    def test_units_imported_together(self):
        app = self.write("app.service", """\
[Unit]
Requires=redis-server.service missing.service
After=mosquitto.service redis-server.service network.target
[Service]
ExecStart=/bin/sleep 100
""")
        p = self.importing(unit("redis-server"), unit("mosquitto"), app)
        k = keys(p.stdout, "app")
        self.assertEqual(k["requires"], "redis-server")
        self.assertEqual(k["after"], "mosquitto")
        self.assertEqual(k["restart"], "never")          # systemd's default Restart=no
        self.assertIn("; not imported: Requires=missing.service: not a unit imported with it", p.stdout)
        self.assertIn("3 services in 2 phases", self.check(p.stdout))

    # --- running them -------------------------------------------------------------
    def running(self, config, name, timeout=30):
        """Runs an imported config under a private cohortd until NAME is
        running.  Its run_dir is in our temp dir, which daemons that drop to
        a user of their own can reach (their sd_notify socket is there)."""
        self.open_tmp()
        config = config.replace("[cohort]\n", f"[cohort]\nrun_dir = {self.path('run.cohort')}\n", 1)
        d = self.cohortd(config)
        try:
            d.wait_state(name, "running", timeout=timeout)
        except AssertionError:
            for f in os.listdir(d.log_dir) if os.path.isdir(d.log_dir) else []:
                with open(os.path.join(d.log_dir, f)) as fh:
                    print(f"--- {f}:\n{fh.read()[-3000:]}")
            raise
        d.run_dir = self.path("run.cohort")
        d.wait_socket()
        _, out, _ = d.ctl("status", name)
        self.assertRegex(out, rf"(?m)^{re.escape(name)}\s+running\b")
        return d

    def open_tmp(self):
        """Our temp dir, reachable by the users the daemons drop to."""
        os.chmod(self.tmp, 0o755)

    def test_redis_runs(self):
        p = self.importing(unit("redis-server"))
        self.open_tmp()
        port = free_port()
        data = self.path("redis")
        os.mkdir(data)
        if os.geteuid() == 0:
            shutil.chown(data, "redis", "redis")
        # Debian's config, with the port and paths of this test after it.
        conf = self.write("redis.conf", f"include /etc/redis/redis.conf\nport {port}\nbind 127.0.0.1\n"
                          f"dir {data}\nlogfile \"\"\npidfile {data}/redis.pid\nunixsocket \"\"\n")
        os.chmod(conf, 0o644)
        config = p.stdout.replace("/etc/redis/redis.conf", conf)
        self.assertNotEqual(config, p.stdout)
        # LimitNOFILE=65535 needs CAP_SYS_RESOURCE where the hard limit is lower
        # (the root of a container may lack it): then the most we may have.
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        if hard != resource.RLIM_INFINITY and hard < 65535 and not has_cap(CAP_SYS_RESOURCE):
            config = config.replace("limit_nofile = 65535\n", f"limit_nofile = {hard}\n")
        config = without_nofile(config)
        d = self.running(config, "redis-server")
        pong = run("redis-cli", "-p", str(port), "ping") if shutil.which("redis-cli") else None
        if pong:
            self.assertEqual(pong.stdout.strip(), "PONG")
        d.stop()

    def test_mosquitto_runs(self):
        self.open_tmp()
        port = free_port()
        conf = self.write("mosquitto.conf", f"listener {port} 127.0.0.1\nallow_anonymous true\n"
                          f"pid_file {self.path('run/mosquitto.pid')}\npersistence false\nlog_dest stdout\n")
        os.chmod(conf, 0o644)
        # Debian's unit with our paths: its ExecStartPre makes directories.
        with open(unit("mosquitto")) as f:
            text = f.read()
        text = (text.replace("/etc/mosquitto/mosquitto.conf", conf)
                .replace("/var/log/mosquitto", self.path("log")).replace("/run/mosquitto", self.path("run")))
        self.assertEqual(text.count(self.tmp), 5)
        p = self.importing(self.write("mosquitto.service", text))
        d = self.running(p.stdout, "mosquitto")
        self.assertTrue(os.path.isdir(self.path("log")) and os.path.isdir(self.path("run")))
        import socket
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        d.stop()

    def test_nginx_runs_forking(self):
        if not key_known("pidfile", "/run/x.pid"):
            self.skipTest("cohortd does not know pidfile yet (the forking work)")
        p = self.importing(unit("nginx"))
        self.open_tmp()
        port = free_port()
        pid = self.path("nginx.pid")
        conf = self.write("nginx.conf", f"""\
pid {pid};
error_log stderr;
events {{ worker_connections 16; }}
http {{
  access_log off;
  client_body_temp_path {self.tmp}; proxy_temp_path {self.tmp}; fastcgi_temp_path {self.tmp};
  uwsgi_temp_path {self.tmp}; scgi_temp_path {self.tmp};
  server {{ listen 127.0.0.1:{port}; location / {{ return 200 "ok"; }} }}
}}
""")
        config = (p.stdout.replace("/usr/sbin/nginx -", f"/usr/sbin/nginx -c {conf} -")
                  .replace("/run/nginx.pid", pid))
        config = re.sub(r"(?m)^\[service:nginx\]\n", f"[service:nginx]\nready = tcp:127.0.0.1:{port}\n", config)
        d = self.running(config, "nginx")
        wait_until(self, lambda: os.path.exists(pid), what="nginx's pidfile")
        d.stop()

    # --- systemd syntax, seen from inside the service ----------------------------
    def test_systemd_syntax_from_inside(self):
        """Quoting, Environment items, $VAR and ${VAR}, prefixes, continuation
        lines, specifiers and a command longer than a cohort line: the
        imported service runs and reports its argv and environment."""
        self.open_tmp()
        script = self.write("report.py", "import json, os, sys\n"
                            "out = os.environ['T_OUT']\n"
                            "with open(out + '.new', 'w') as f:\n"
                            "    json.dump({'argv': sys.argv[1:], 'cwd': os.getcwd(), 'env': {k: v for k, v in "
                            "os.environ.items() if k.startswith('T_')}}, f)\n"
                            "os.rename(out + '.new', out)\n"
                            "import time\ntime.sleep(100)\n")
        envfile = self.write("app.env", "T_FILE='from file'\n")
        long_arg = "x" * 150
        path = self.write("app.service", f"""\
# a unit of our own
[Unit]
Description=An app for %n
[Service]
Type=simple
Environment="T_GREETING=hello world" T_WORDS='one  two' T_QUOTE='say "hi"' T_ESC=a\\x20b\\\\
Environment=T_OUT={self.path('out.json')}
EnvironmentFile=-{self.path('missing.env')}
EnvironmentFile={envfile}
WorkingDirectory={self.tmp}
ExecStartPre=-/bin/false
ExecStartPre=/bin/sh -c 'echo pre; exit 0'
ExecStart=@{PY} ignored-argv0 {script} "${{T_GREETING}}" $T_WORDS 'a ; b' \\
    "c d" $$literal %N {long_arg} {long_arg}
Restart=on-abnormal
RestartSec=1min 30s
KillSignal=SIGINT
TimeoutStartSec=45
LimitNOFILE=1024:4096
""")
        p = self.importing(path)
        k = keys(p.stdout, "app")
        self.assertEqual(k["shell"], "yes")
        self.assertEqual(k["restart"], "on-failure")
        self.assertEqual(k["backoff_initial"], "90s")
        self.assertEqual(k["stop_signal"], "INT")
        self.assertEqual(k["ready_timeout"], "45s")
        self.assertEqual(k["limit_nofile"], "1024:4096")
        self.assertEqual(k["environment_file"], f"-{self.path('missing.env')}, {envfile}")
        self.assertIn("; from " + path, p.stdout)
        self.assertIn("An app for app.service", p.stdout)
        self.assertIn("; note: Restart=on-abnormal is restart = on-failure", p.stdout)
        self.assertIn("; not imported: ExecStart=@", p.stdout)
        self.assertRegex(p.stdout, r"(?m)^command = .{100,}\n    ")   # continued on the next line
        self.check(p.stdout)
        d = self.cohortd(without_nofile(p.stdout))
        d.wait_state("app", "running", timeout=20)
        wait_until(self, lambda: os.path.exists(self.path("out.json")), what="the service's report")
        with open(self.path("out.json")) as f:
            r = json.load(f)
        self.assertEqual(r["argv"], ["hello world", "one", "two", "a ; b", "c d", "$literal", "app",
                                     long_arg, long_arg])
        self.assertEqual(r["cwd"], self.tmp)
        self.assertEqual(r["env"], {"T_GREETING": "hello world", "T_WORDS": "one  two", "T_QUOTE": 'say "hi"',
                                    "T_ESC": "a b\\",
                                    "T_OUT": self.path("out.json"), "T_FILE": "from file"})
        d.stop()

    def test_execstartpre_prefix_not_honoured(self):
        path = self.write("p.service", "[Service]\nUser=nobody\nExecStartPre=+/bin/mkdir -p /run/p\n"
                          "ExecStartPre=/bin/true\nExecStart=/bin/sleep 5\n")
        p = self.importing(path)
        k = keys(p.stdout, "p")
        self.assertEqual(k["command"], "/bin/sleep 5")
        self.assertNotIn("shell", k)
        self.assertIn("; not imported: ExecStartPre=+/bin/mkdir -p /run/p: the + and ! prefixes", p.stdout)
        self.assertIn("; not imported: ExecStartPre=/bin/true: left out with the ExecStartPre=", p.stdout)
        self.summary(p, 1, 2)
        self.check(p.stdout)

    # --- bad input -------------------------------------------------------------------
    def bad(self, files, message):
        p = self.importing(*files, expect=1)
        self.assertEqual(p.stdout, "")
        self.assertIn(message, p.stderr)

    def test_bad_input(self):
        missing = self.path("nope.service")
        self.bad([missing], f"{missing}: cannot read: No such file or directory")
        other = self.write("other.ini", "[cohort]\nrun_dir = /x\n")
        self.bad([other], f"{other}: neither a systemd unit")
        nocmd = self.write("nocmd.conf", "[supervisord]\n\n[program:x]\nautostart = true\n")
        self.bad([nocmd], f"{nocmd}:3: [program:x]: no command")
        noexec = self.write("noexec.service", "[Unit]\nDescription=x\n\n[Service]\nType=simple\n")
        self.bad([noexec], f"{noexec}:4: [Service]: no ExecStart=")
        badline = self.write("bad.conf", "[program:x]\ncommand = /bin/true\nthis is not a key\n")
        self.bad([badline], f'{badline}:3: expected "key = value" or "key: value", got "this is not a key"')
        badunit = self.write("bad.service", "[Service]\nExecStart=/bin/true\nNoEquals\n")
        self.bad([badunit], f'{badunit}:3: expected "Key=Value", got "NoEquals"')
        before = self.write("before.service", "ExecStart=/bin/true\n[Service]\n")
        self.bad([before], f'{before}:1: "ExecStart=/bin/true" comes before any [Section]')
        env = self.write("env.conf", "[program:x]\ncommand = %(ENV_T_IMPORT_UNSET)s\n")
        self.bad([env], f"{env}:2: %(ENV_T_IMPORT_UNSET)s cannot be expanded (no such variable")
        quote = self.write("quote.service", "[Service]\nExecStart=/bin/echo 'unterminated\n")
        self.bad([quote], f"{quote}:2: ExecStart: unterminated quote")
        twice = self.write("redis-server.service", "[Service]\nExecStart=/bin/true\n")
        self.bad([twice, twice], f'{twice}:1: a service "redis-server" is imported already')
        newline = self.write("newline.service", "[Service]\nExecStart=/bin/echo 'a\\nb'\n")
        self.bad([newline], f"{newline}:1: [service:newline]: its command cannot be written in a cohort config: "
                 "it holds a line break")
        # One bad file among good ones: nothing is printed.
        self.bad([unit("redis-server"), badline], f"{badline}:3:")

    # --- the table, documented --------------------------------------------------------
    def test_table_is_documented(self):
        """Every row of the mapping table is in doc/MIGRATING.md, as
        cohortctl import --table prints it."""
        p = self.importing("--table")
        rows = p.stdout.strip().split("\n")
        self.assertGreater(len(rows), 80)
        with open(os.path.join(SRC, "doc", "MIGRATING.md")) as f:
            doc = f.read()
        missing = [r for r in rows if r not in doc]
        self.assertEqual(missing, [], "rows of cohortctl import --table missing from doc/MIGRATING.md")
        with open(os.path.join(SRC, "doc", "cohortctl.1")) as f:
            man = f.read().replace("\\-", "-").replace("\\e", "\\")
        man = man[man.index(".SS IMPORTING CONFIGS"):man.index(".SH PROTOCOL")]
        for r in rows:
            key, how = r.split(" | ")[1].strip("`"), r.split(" | ")[3].rstrip(" |")
            self.assertIn(f"\\fB{key}\\fR", man, f"{key} is not in cohortctl(1)'s import table")
            self.assertIn(how, man, f"{key}: {how!r} is not in cohortctl(1)'s import table")


if __name__ == "__main__":
    unittest.main()
