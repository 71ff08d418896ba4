#!/usr/bin/python3
"""The HTTP pages of the bus listeners: GET /metrics (checked by promtool,
and scraped by a real Prometheus server), /healthz, /api/status, on the
unix socket and on bus_listen."""
import json
import os
import re
import shutil
import subprocess
import time
import unittest
import urllib.parse
import urllib.request

from harness import COHORTCTL, FACTOR, CohortTest, free_port, wait_until
from test_bus_http import http_exchange

PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")


def get(address, path, method="GET"):
    host = "localhost" if isinstance(address, str) else f"{address[0]}:{address[1]}"
    return http_exchange(address, f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n\r\n", timeout=10)


def samples(text):
    """{'name{labels}': value} of an exposition."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


class Pages(CohortTest):
    def daemon(self, services, extra=""):
        port = free_port()
        d = self.cohortd(f"[cohort]\nbus_listen = 127.0.0.1:{port}\n{extra}" + services)
        d.wait_socket()
        return d, port, os.path.join(d.run_dir, "bus.sock")

    def test_metrics_name_the_stack_and_pass_promtool(self):
        d, port, unix = self.daemon("""
[service:web]
command = /bin/sleep 1000
ready = delay:0.2

[service:crash]
command = /bin/sh -c "exit 3"
backoff_initial = 100ms
""")
        d.wait_state("web", "running")
        d.wait_log(r"-> backoff", who="crash")
        d.ctl("status")
        d.ctl("status", "nosuch", expect=None)
        d.ctl("lock", "db", "--", "true")
        for address in (unix, ("127.0.0.1", port)):
            status, headers, body, _ = get(address, "/metrics")
            self.assertEqual(status, 200, address)
            self.assertEqual(headers["content-type"], "text/plain; version=0.0.4; charset=utf-8")
            self.assertEqual(int(headers["content-length"]), len(body.encode()))
            s = samples(body)
            self.assertEqual(s['cohort_service_up{service="web"}'], 1)
            self.assertEqual(s['cohort_service_up{service="crash"}'], 0)
            self.assertEqual(s['cohort_service_state{service="web",state="running"}'], 1)
            self.assertEqual(s['cohort_service_state{service="web",state="stopped"}'], 0)
            self.assertGreaterEqual(s['cohort_service_failures_total{service="crash"}'], 1)
            self.assertEqual(s['cohort_service_last_exit_code{service="crash"}'], 3)
            self.assertEqual(s['cohort_service_ready_seconds_count{service="web"}'], 1)
            self.assertGreater(s['cohort_service_ready_seconds_sum{service="web"}'], 0.15)
            self.assertGreater(s['cohort_service_resident_memory_bytes{service="web"}'], 0)
            self.assertGreaterEqual(s['cohort_control_requests_total{command="status"}'], 2)
            self.assertGreaterEqual(s['cohort_control_errors_total{command="status"}'], 1)
            self.assertEqual(s["cohort_lock_grants_total"], 1)
            self.assertEqual(s["cohort_lock_releases_total"], 1)
            self.assertEqual(s["cohort_lock_hold_seconds_count"], 1)
            self.assertEqual(s["cohort_locks_held"], 0)
            self.assertGreater(s["process_open_fds"], 3)
            self.assertGreater(s["process_resident_memory_bytes"], 0)
            if PROMTOOL:
                p = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True, text=True)
                self.assertEqual((p.returncode, p.stdout + p.stderr), (0, ""), "promtool check metrics")
            # HEAD: the headers alone
            status, headers, body, _ = get(address, "/metrics", "HEAD")
            self.assertEqual((status, body), (200, ""))
            self.assertGreater(int(headers["content-length"]), 1000)
        # bus traffic is counted
        self.assertEqual(subprocess.run([COHORTCTL, "-s", d.socket, "pub", "t.x", "1"],
                                        capture_output=True).returncode, 0)
        s = samples(get(unix, "/metrics")[2])
        self.assertGreaterEqual(s['cohort_bus_published_total{qos="0"}'] + s['cohort_bus_published_total{qos="1"}'], 1)
        if not PROMTOOL:
            self.skipTest("promtool is not installed (Debian package prometheus): the format was not checked")
        d.stop()

    def test_a_large_page_is_written_whole(self):
        # 300 services: a reply of some hundreds of KiB, written in chunks
        services = "".join(f"[service:s{i}]\ncommand = /bin/sleep 1000\nready = delay:0\n\n" for i in range(300))
        d, port, unix = self.daemon(services)
        d.wait_log(r"^stack is up", timeout=60)
        for address in (unix, ("127.0.0.1", port)):
            status, headers, body, _ = get(address, "/metrics")
            self.assertEqual(status, 200)
            self.assertGreater(len(body), 200000)
            self.assertEqual(int(headers["content-length"]), len(body.encode()))
            self.assertEqual(sum(1 for k, v in samples(body).items() if k.startswith("cohort_service_up{")
                                 and v == 1), 300)
            status, headers, body, _ = get(address, "/api/status")
            self.assertEqual(status, 200)
            self.assertEqual(len(json.loads(body)["services"]), 300)
        d.stop()

    def test_healthz_says_why_the_stack_is_not_up(self):
        flag = self.path("slow-ok")
        d, port, unix = self.daemon(f"""
[service:slow]
command = /bin/sleep 1000
ready = exec:test -e {flag}

[service:app]
command = /bin/sleep 1000
requires = slow

[service:flaky]
command = /bin/sh -c "exit 1"
autostart = no
backoff_initial = 10s
""")
        d.wait_state("slow", "starting")
        status, _, body, _ = get(("127.0.0.1", port), "/healthz")
        self.assertEqual(status, 503)
        self.assertRegex(body, r"^unhealthy: starting \(phase 1 of 2\): slow starting: ")
        open(flag, "w").close()
        d.wait_log(r"^stack is up", timeout=20)
        status, _, body, _ = get(("127.0.0.1", port), "/healthz")
        self.assertEqual((status, body), (200, "ok: 3 services, the stack is up\n"))
        # a service that should run and is in backoff: unhealthy, with its reason
        d.ctl("start", "--no-wait", "flaky")
        d.wait_state("flaky", "backoff")
        status, _, body, _ = get(unix, "/healthz")
        self.assertEqual(status, 503)
        self.assertRegex(body, r"^unhealthy: flaky backoff: exited with code 1; restart in")
        # stopped on purpose: healthy again
        d.ctl("stop", "flaky")
        status, _, body, _ = get(unix, "/healthz")
        self.assertEqual(status, 200, body)
        d.stop()

    def test_api_status_is_cohortctl_json_status(self):
        d, port, unix = self.daemon("""
[service:web]
command = /bin/sleep 1000
ready = delay:0
""")
        d.wait_state("web", "running")
        status, headers, body, _ = get(("127.0.0.1", port), "/api/status")
        self.assertEqual(status, 200)
        self.assertEqual(headers["content-type"], "application/json")
        page = json.loads(body)
        cli = d.ctl_json("status")
        for o in (page, cli):
            o.pop("now_ms")
        self.assertEqual(page, cli)
        self.assertEqual(list(page)[0], "ok")
        # other methods and pages
        status, _, body, _ = http_exchange(("127.0.0.1", port), "POST /metrics HTTP/1.1\r\nHost: x\r\n"
                                           "Content-Length: 0\r\n\r\n")
        self.assertEqual(status, 405)
        status, _, body, _ = get(("127.0.0.1", port), "/metrics/x")
        self.assertEqual(status, 404)
        d.stop()

    def test_admin_token_file_and_cohortctl_dashboard(self):
        d, port, unix = self.daemon("[service:web]\ncommand = /bin/sleep 1000\n")
        _, out, _ = d.ctl("dashboard")
        path = os.path.join(d.state_dir, "admin.token")
        with open(path) as f:
            token = f.read().strip()
        self.assertEqual(out, f"http://127.0.0.1:{port}/#token={token}\n")
        self.assertRegex(token, r"^[0-9a-f]{64}$")
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        d.stop()
        # kept across a restart
        d2 = self.cohortd(f"[cohort]\nstate_dir = {d.state_dir}\nbus_listen = 127.0.0.1:{port}\n"
                          "[service:web]\ncommand = /bin/sleep 1000\n")
        d2.wait_socket()
        self.assertEqual(d2.ctl("dashboard")[1], out)
        d2.stop()
        # no bus_listen, no dashboard; an admin_token_file that cannot be made: said
        d3 = self.cohortd("[service:web]\ncommand = /bin/sleep 1000\n")
        d3.wait_socket()
        _, _, err = d3.ctl("dashboard", expect=1)
        self.assertIn("needs bus_listen", err)
        d3.stop()
        d4, _, _ = self.daemon("[service:web]\ncommand = /bin/sleep 1000\n",
                               extra=f"admin_token_file = {self.path('no/such/dir/token')}\n")
        d4.wait_log(r"^no admin token \(.*no/such/dir/token: No such file or directory\)")
        _, _, err = d4.ctl("dashboard", expect=1)
        self.assertIn("there is no admin token", err)
        d4.stop()


@unittest.skipUnless(PROMETHEUS, "prometheus is not installed (Debian package prometheus)")
class Scrape(CohortTest):
    def test_prometheus_scrapes_cohortd(self):
        port, prom_port = free_port(), free_port()
        d = self.cohortd(f"""[cohort]
bus_listen = 127.0.0.1:{port}

[service:web]
command = /bin/sleep 1000
ready = delay:0
""")
        d.wait_state("web", "running")
        conf = self.path("prometheus.yml")
        with open(conf, "w") as f:
            f.write(f"""global:
  scrape_interval: 1s
scrape_configs:
  - job_name: cohort
    static_configs:
      - targets: ["127.0.0.1:{port}"]
""")
        log = open(self.path("prometheus.log"), "w")
        prom = subprocess.Popen([PROMETHEUS, f"--config.file={conf}", f"--storage.tsdb.path={self.path('tsdb')}",
                                 f"--web.listen-address=127.0.0.1:{prom_port}"], stdout=log, stderr=log)
        self.addCleanup(lambda: (prom.terminate(), prom.wait(30), log.close()))
        query = urllib.parse.urlencode({"query": 'cohort_service_up{service="web"}'})
        url = f"http://127.0.0.1:{prom_port}/api/v1/query?{query}"
        got = {}

        def answered():
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    got.update(json.load(r))
            except OSError:
                return False
            return bool(got.get("data", {}).get("result"))
        wait_until(self, answered, timeout=60 * FACTOR, what="Prometheus's answer for cohort_service_up")
        result = got["data"]["result"][0]
        self.assertEqual(result["metric"]["job"], "cohort")
        self.assertEqual(result["metric"]["service"], "web")
        self.assertEqual(result["value"][1], "1")
        # and it saw the target healthy
        with urllib.request.urlopen(f"http://127.0.0.1:{prom_port}/api/v1/targets", timeout=5) as r:
            targets = json.load(r)["data"]["activeTargets"]
        self.assertEqual([t["health"] for t in targets], ["up"])
        d.stop()


if __name__ == "__main__":
    unittest.main()
