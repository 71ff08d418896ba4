#!/usr/bin/python3
"""A NATS JetStream cluster of three nats-server processes on 127.0.0.1,
and cohortds pointing at it, for the cluster tests and the benchmarks.

As a module:

    with NatsCluster() as nc:          # three servers, ready when this returns
        a = nc.start_cohortd("a", SERVICES_TEXT)
        b = nc.start_cohortd("b", SERVICES_TEXT)
        nc.kill_node(0, signal.SIGKILL); nc.restart_node(0)
    # everything stopped, the temp dir removed

From the command line (to try the cluster mode by hand):

    tests/cluster/natscluster.py [--cohortds N] [--builddir DIR]

starts the servers (and N cohortds), prints their addresses and waits for
Ctrl-C.  Every wait has a deadline and reads a process's log: a server is
ready when its log says "Server is ready", the JetStream cluster when one
log says it has a metadata leader; a cohortd when its control socket
exists and its log says "stack is up".
"""
import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

NATS_SERVER = os.environ.get("NATS_SERVER", shutil.which("nats-server") or "/usr/bin/nats-server")
FACTOR = float(os.environ.get("COHORT_TIME_FACTOR", "1"))


def free_port():
    """A loopback port free now, below the kernel's ephemeral range (where
    an outgoing connection could take it before nats-server binds it); in
    the tests, also reserved against the other tests running at the same
    time (harness.free_port_block)."""
    if "harness" in sys.modules:
        return sys.modules["harness"].free_port_block(1)
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low = int(f.read().split()[0])
    for _ in range(500):
        port = random.randint(10000, low - 1)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port below {low}")


class LogProc:
    """A process whose stdout+stderr is read line by line by a thread, so
    that waits on its log have deadlines and never block on a pipe."""

    def __init__(self, cmd, log_path, cwd=None):
        self.cmd = cmd
        self.lines = []
        self.cond = threading.Condition()
        self.log = open(log_path, "a")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, cwd=cwd)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            self.log.write(line + "\n")
            self.log.flush()
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_log(self, regex, timeout=10.0, start=0, what=None):
        """Index of the first line from start matching regex; raises
        TimeoutError (with the log's tail) at the deadline, or at once if
        the process exits first."""
        pat = re.compile(regex)
        deadline = time.monotonic() + timeout * FACTOR
        i = start
        with self.cond:
            while True:
                while i < len(self.lines):
                    if pat.search(self.lines[i]):
                        return i
                    i += 1
                if self.proc.poll() is not None and not self.reader.is_alive():
                    raise RuntimeError(f"{self.cmd[0]} exited ({self.proc.returncode}) before "
                                       f"{what or regex!r}:\n" + "\n".join(self.lines[-20:]))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {what or regex!r} within {timeout * FACTOR:.1f} s:\n"
                                       + "\n".join(self.lines[-20:]))
                self.cond.wait(min(left, 0.5))

    def count(self, regex):
        pat = re.compile(regex)
        with self.cond:
            return sum(1 for line in self.lines if pat.search(line))

    def alive(self):
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Signals the process and reaps it (KILL at the deadline)."""
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout * FACTOR)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(5)
        self.proc.stdout.close()
        self.log.close()
        return self.proc.returncode


class NatsNode:
    def __init__(self, cluster, index):
        self.cluster = cluster
        self.index = index
        self.name = f"n{index + 1}"
        self.port = free_port()
        self.route_port = free_port()
        self.dir = os.path.join(cluster.dir, self.name)
        os.makedirs(os.path.join(self.dir, "js"), exist_ok=True)
        self.conf = os.path.join(self.dir, "node.conf")
        self.proc = None

    @property
    def url(self):
        return f"nats://127.0.0.1:{self.port}"

    def write_conf(self):
        # Routes separated by commas: nats-server 2.9 reads a
        # space-separated list as a parse error.
        routes = ", ".join(f"nats://127.0.0.1:{n.route_port}" for n in self.cluster.nodes if n is not self)
        with open(self.conf, "w") as f:
            f.write(f"""server_name: {self.name}
server_tags: ["{self.name}"]
listen: 127.0.0.1:{self.port}
jetstream {{
  store_dir: "{os.path.join(self.dir, 'js')}"
  max_memory_store: 64MB
  max_file_store: 256MB
}}
cluster {{
  name: {self.cluster.name}
  listen: 127.0.0.1:{self.route_port}
  routes: [{routes}]
}}
""")

    def start(self):
        self.write_conf()
        self.proc = LogProc([NATS_SERVER, "-c", self.conf], os.path.join(self.dir, "server.log"))
        return self.proc

    def stop(self, sig=signal.SIGTERM):
        if self.proc:
            self.proc.stop(sig)


class CohortdProc:
    """A cohortd in its own directory (run, state and log dirs), with
    `cluster =` set to the cluster's URLs."""

    def __init__(self, cluster, name, text, builddir, cluster_line=None):
        self.name = name
        self.dir = os.path.join(cluster.dir, "cohortd-" + name)
        self.run_dir = os.path.join(self.dir, "run")
        self.state_dir = os.path.join(self.dir, "state")
        self.log_dir = os.path.join(self.dir, "log")
        os.makedirs(self.dir, exist_ok=True)
        self.config = os.path.join(self.dir, "cohort.ini")
        head = (f"[cohort]\nrun_dir = {self.run_dir}\nstate_dir = {self.state_dir}\n"
                f"log_dir = {self.log_dir}\nshutdown_timeout = 20s\n")
        head += cluster_line if cluster_line is not None else \
            f"cluster = {cluster.urls()}\ncluster_name = {cluster.name}\n"
        text = text.replace("[cohort]\n", "", 1)
        with open(self.config, "w") as f:
            f.write(head + text)
        self.socket = os.path.join(self.run_dir, "control.sock")
        self.builddir = builddir
        self.cohortctl = os.path.join(builddir, "cohortctl")
        self.proc = LogProc([os.path.join(builddir, "cohortd"), "-v", "-c", self.config],
                            os.path.join(self.dir, "cohortd.log"), cwd=self.dir)

    def wait_up(self, timeout=15.0):
        self.proc.wait_log(r"stack is up", timeout, what=f"cohortd {self.name}: stack is up")

    def ctl(self, *args, timeout=30):
        return subprocess.run([self.cohortctl, "-s", self.socket, *args], capture_output=True,
                              text=True, timeout=timeout * FACTOR)

    def stop(self, sig=signal.SIGTERM):
        return self.proc.stop(sig, timeout=30.0)


def nats_request(url, subject, payload=b"", timeout=5.0):
    """One request over the NATS text protocol (no NATS client library is
    needed for the tests): the reply's payload, as JSON."""
    host, port = url.rsplit("/", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout * FACTOR) as s:
        f = s.makefile("rb")
        f.readline()  # INFO
        s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nSUB _INBOX.t 1\r\n'
                  + b"PUB %s _INBOX.t %d\r\n%s\r\nPING\r\n" % (subject.encode(), len(payload), payload))
        while True:
            line = f.readline()
            if not line:
                raise ConnectionError(f"{url}: closed")
            if line.startswith(b"MSG "):
                data = f.read(int(line.split()[-1]) + 2)[:-2]
                return json.loads(data)
            if line.startswith(b"-ERR"):
                raise ConnectionError(f"{url}: {line!r}")


class NatsCluster:
    """Three nats-server processes (JetStream, routes on loopback) in a
    temporary directory; stop() (or leaving the with block) stops every
    server and cohortd it started and removes the directory."""

    def __init__(self, size=3, name="cohorttest", builddir=None, keep=False):
        if not os.path.exists(NATS_SERVER):
            raise FileNotFoundError(f"{NATS_SERVER}: not found (Debian: apt-get install nats-server)")
        self.name = name
        self.keep = keep
        self.builddir = builddir or os.environ.get("COHORT_BUILDDIR", os.getcwd())
        self.dir = tempfile.mkdtemp(prefix="cohort-nats.")
        self.nodes = []
        self.nodes = [NatsNode(self, i) for i in range(size)]
        self.cohortds = []

    def urls(self, nodes=None):
        return ",".join(n.url for n in (nodes if nodes is not None else self.nodes))

    def start(self, timeout=20.0):
        for n in self.nodes:
            n.start()
        for n in self.nodes:
            n.proc.wait_log(r"Server is ready", timeout, what=f"{n.name}: Server is ready")
        self.wait_meta_leader(timeout)
        return self

    def wait_meta_leader(self, timeout=20.0):
        """Waits until the JetStream cluster has a metadata leader: the
        first moment a KV bucket can be made."""
        deadline = time.monotonic() + timeout * FACTOR
        pat = r"JetStream cluster new metadata leader|Self is new JetStream cluster metadata leader"
        while True:
            for n in self.nodes:
                if n.proc and n.proc.alive() and n.proc.count(pat):
                    return
            if time.monotonic() > deadline:
                raise TimeoutError("no JetStream metadata leader within %.1f s" % (timeout * FACTOR))
            live = [n for n in self.nodes if n.proc and n.proc.alive()]
            try:
                live[0].proc.wait_log(pat, timeout=0.5)
                return
            except (TimeoutError, RuntimeError, IndexError):
                pass

    def kill_node(self, i, sig=signal.SIGKILL):
        self.nodes[i].stop(sig)

    def restart_node(self, i, timeout=20.0):
        n = self.nodes[i]
        n.start()
        n.proc.wait_log(r"Server is ready", timeout, what=f"{n.name}: Server is ready")

    def start_cohortd(self, name, text="", wait=True, cluster_line=None):
        d = CohortdProc(self, name, text, self.builddir, cluster_line)
        self.cohortds.append(d)
        if wait:
            d.wait_up()
        return d

    def stop(self):
        for d in self.cohortds:
            d.stop()
        for n in self.nodes:
            n.stop()
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc):
        self.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cohortds", type=int, default=0, help="cohortds to start (0 to 3)")
    ap.add_argument("--builddir", default=os.environ.get("COHORT_BUILDDIR", os.getcwd()))
    ap.add_argument("--name", default="cohort", help="the NATS cluster's name (cluster_name)")
    a = ap.parse_args()
    nc = NatsCluster(name=a.name, builddir=a.builddir, keep=True)
    try:
        nc.start()
        for n in nc.nodes:
            print(f"nats-server {n.name}: {n.url} (log {n.dir}/server.log)")
        print(f"cluster = {nc.urls()}")
        for i in range(a.cohortds):
            d = nc.start_cohortd("abc"[i], "[service:idle]\ncommand = /bin/sleep 1000\nready = delay:0\n")
            print(f"cohortd {d.name}: socket {d.socket} (log {d.dir}/cohortd.log)")
        print(f"everything is in {nc.dir}; Ctrl-C stops it all", flush=True)
        # Blocked, so that sigwait takes them: a TERM left to its default
        # action ended this script and left the servers and cohortds running.
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGINT, signal.SIGTERM])
        signal.sigwait([signal.SIGINT, signal.SIGTERM])
    except KeyboardInterrupt:
        pass
    finally:
        nc.keep = False
        nc.stop()


if __name__ == "__main__":
    sys.exit(main())
