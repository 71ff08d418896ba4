#!/usr/bin/python3
"""The dashboard in a real browser (Debian's chromium, chromium-driver and
python3-selenium): the example stack (etc/cohort.ini, on free ports) seen
running, a restart clicked and seen going through starting to running, a
service killed with SIGKILL seen red then green, a wrong token refused
with a message.  Each test saves a screenshot under the build tree
(test-screenshots/)."""
import os
import re
import shutil
import signal
import subprocess
import tempfile
import unittest

from harness import BUILD, COHORTCTL, FACTOR, SRC, CohortTest, free_port, free_port_block

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:
    webdriver = None

CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM = shutil.which("chromium")
SHOTS = os.path.join(BUILD, "test-screenshots")
GREEN, RED = "rgb(26, 155, 80)", "rgb(212, 52, 44)"

# Records, in the page, each colour the state badge of a service shows:
# the rows are rebuilt on every change, so the table is watched.
WATCH = """
window.seen = window.seen || {};
const name = arguments[0];
window.seen[name] = [];
const look = () => {
  const b = document.querySelector('#svc-' + name + ' .state');
  if (!b) return;
  const c = getComputedStyle(b).backgroundColor, s = window.seen[name];
  if (!s.length || s[s.length - 1][0] !== c || s[s.length - 1][1] !== b.textContent) s.push([c, b.textContent]);
};
new MutationObserver(look).observe(document.querySelector('#services tbody'), {childList: true, subtree: true});
look();
"""


@unittest.skipUnless(webdriver and CHROMEDRIVER and CHROMIUM,
                     "chromium, chromium-driver and python3-selenium are needed (contrib/bootstrap.sh --tests)")
class Dashboard(CohortTest):
    def setUp(self):
        super().setUp()
        base, port = free_port_block(4), free_port()
        demo = os.path.abspath(os.path.join(SRC, "contrib", "demo"))
        with open(os.path.join(SRC, "etc", "cohort.ini")) as f:
            text = f.read()
        text = re.sub(r"^(run_dir|state_dir|log_dir)\s*=.*$", "", text, flags=re.M)
        text = text.replace("../contrib/demo", demo).replace("127.0.0.1:7480", f"127.0.0.1:{port}")
        text = re.sub(r"^stdout\s*=\s*inherit$", "stdout = log", text, flags=re.M)   # for the log tail
        for i in range(4):
            text = text.replace(f"127.0.0.1:{7400 + i}", f"127.0.0.1:{base + i}")
        text = re.sub(r"^(\[service:\w+\])$", rf"\1\nenvironment = DEMO_PORT_BASE={base}", text, flags=re.M)
        self.d = self.cohortd(text)
        self.d.wait_log(r"^stack is up: 4 of 4 services running$", timeout=60)
        _, out, _ = self.d.ctl("dashboard")
        self.url = out.strip()
        self.assertRegex(self.url, rf"^http://127\.0\.0\.1:{port}/#token=[0-9a-f]{{64}}$")
        opts = Options()
        opts.binary_location = CHROMIUM
        for a in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--window-size=1280,860",
                  "--disable-dev-shm-usage", f"--user-data-dir={tempfile.mkdtemp(dir=self.tmp)}"):
            opts.add_argument(a)
        self.browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
        self.addCleanup(self.browser.quit)
        os.makedirs(SHOTS, exist_ok=True)

    def wait(self, pred, what, timeout=30):
        return WebDriverWait(self.browser, timeout * FACTOR, poll_frequency=0.05).until(
            lambda b: pred(b), message=f"the page did not show {what}")

    def row(self, name):
        """(state, pid) as the row of name shows them (read at once: rows
        are rebuilt on every change)."""
        return tuple(self.browser.execute_script(
            "const r = document.getElementById('svc-' + arguments[0]);"
            "return r ? [r.dataset.state, r.dataset.pid] : [null, null]", name))

    def state(self, name):
        return self.row(name)[0]

    def pid(self, name):
        """The pid cohortd says the service has."""
        return {s["name"]: s["pid"] for s in self.d.ctl_json("status")["services"]}[name]

    def shot(self, name):
        self.browser.save_screenshot(os.path.join(SHOTS, name + ".png"))

    def open_running(self):
        self.browser.get(self.url)
        self.wait(lambda b: all(self.state(n) == "running" for n in ("core", "prime", "reactor", "trinity")),
                  "every service running")

    def test_the_page_shows_the_example_stack_running(self):
        self.open_running()
        self.wait(lambda b: b.find_element(By.ID, "conn").text == "live", "the live connection")
        self.assertEqual(self.browser.find_element(By.ID, "summary").text, "4 of 4 running")
        self.assertEqual(self.row("trinity"), ("running", str(self.pid("trinity"))))
        self.assertIn("prime, reactor", self.browser.execute_script(
            "return document.getElementById('svc-trinity').textContent"))	# its dependency edges
        phases = [e.text for e in self.browser.find_elements(By.CSS_SELECTOR, "tr.phase")]
        self.assertEqual(phases, ["phase 1", "phase 2", "phase 3"])
        self.assertEqual(self.browser.execute_script(
            "return getComputedStyle(document.querySelector('#svc-core .state')).backgroundColor"), GREEN)
        # the timeline holds the start-up: a mark per transition of each
        marks = self.browser.find_elements(By.CSS_SELECTOR, "#timeline tr:first-child .tl i")
        self.assertGreaterEqual(len(marks), 2)
        # the bus, live: a rate once two $sys.bus have come, each connection with its queue
        self.wait(lambda b: "msg/s published" in b.find_element(By.ID, "bus").text, "the bus's rates")
        self.assertGreaterEqual(len(self.browser.find_elements(By.CSS_SELECTOR, "#conns tbody tr")), 4)
        # each connection's rates (published, received per second) once two $sys.bus have come
        self.wait(lambda b: all(re.fullmatch(r"\d+\.\d", td.text) for td in
                                b.find_elements(By.CSS_SELECTOR, "#conns tbody td:nth-child(4)")),
                  "each connection's rate")
        # no script or style comes from elsewhere: the page works offline
        html = self.browser.page_source
        self.assertNotRegex(html, r"<script[^>]+src=|<link[^>]+href=")
        self.shot("dashboard-running")

    def test_locks_held_and_waiting_are_live(self):
        """A lock's holder and a request waiting for it show as they come,
        and the waiter's row goes once it is granted."""
        self.open_running()
        lock = [COHORTCTL, "-s", self.d.socket, "lock", "--wait", "60s", "db", "--", "sleep", "60"]
        holder = subprocess.Popen(lock)
        waiter = None
        try:
            self.wait(lambda b: "db" in b.find_element(By.ID, "locks").text, "the held lock")
            waiter = subprocess.Popen(lock)
            rows = "#locks tr.waiter"
            self.wait(lambda b: len(b.find_elements(By.CSS_SELECTOR, rows)) == 1, "the waiter")
            self.assertIn("waiting: uid", self.browser.find_element(By.CSS_SELECTOR, rows).text)
            self.shot("dashboard-lock-waiter")
            holder.send_signal(signal.SIGTERM)      # its command ends, the lease is released
            self.wait(lambda b: not b.find_elements(By.CSS_SELECTOR, rows), "the waiter granted")
            self.wait(lambda b: "db" in b.find_element(By.ID, "locks").text, "the new holder")
        finally:
            for p in (holder, waiter):
                if p and p.poll() is None:
                    p.terminate()
                if p:
                    p.wait(30)

    def test_a_restart_clicked_goes_through_starting_to_running(self):
        self.open_running()
        self.wait(lambda b: b.find_element(By.ID, "conn").text == "live", "the live connection")
        old = self.pid("reactor")
        self.browser.execute_script(WATCH, "reactor")
        self.browser.find_element(By.CSS_SELECTOR, "#svc-reactor button[data-action=restart]").click()
        alert = self.wait(lambda b: b.switch_to.alert, "the confirmation")
        self.assertEqual(alert.text, "restart reactor?")
        alert.accept()
        self.wait(lambda b: "restart reactor: done" in b.find_element(By.ID, "result").text, "the result")
        self.wait(lambda b: self.row("reactor")[0] == "running" and self.row("reactor")[1] not in ("", str(old)),
                  "reactor running again with a new pid")
        seen = self.browser.execute_script("return window.seen.reactor")
        states = [s for _, s in seen]
        self.assertIn("starting", states, seen)
        self.assertLess(states.index("starting"), len(states) - 1, seen)
        self.assertEqual(states[-1], "running", seen)
        starting, running = (c for c, s in seen if s == "starting"), (c for c, s in seen if s == "running")
        self.assertNotEqual(next(starting), next(running), "starting and running shown in one colour")
        events = self.browser.execute_script(
            "return transitions.filter(e => e.name === 'reactor').map(e => e.from + '>' + e.to)")
        # in order: down, then up through starting
        down, up = events.index("running>stopping"), len(events) - 1 - events[::-1].index("starting>running")
        self.assertLess(down, up, events)
        self.assertTrue(any(e.endswith(">starting") for e in events[down:up]), events)
        self.d.wait_log(r"^bus: an admin asked to restart reactor$")
        self.shot("dashboard-restarted")

    def test_a_killed_service_turns_red_then_green(self):
        self.open_running()
        self.browser.execute_script(WATCH, "prime")
        pid = self.pid("prime")
        os.kill(pid, signal.SIGKILL)
        self.wait(lambda b: any(c == RED for c, _ in b.execute_script("return window.seen.prime")), "prime red")
        self.shot("dashboard-killed")
        self.wait(lambda b: self.row("prime")[0] == "running" and self.row("prime")[1] != str(pid),
                  "prime green again")
        colours = [c for c, _ in self.browser.execute_script("return window.seen.prime")]
        self.assertEqual(colours[0], GREEN)
        self.assertIn(RED, colours)
        self.assertEqual(colours[-1], GREEN)
        self.assertIn("killed by SIGKILL", self.browser.execute_script(
            "return transitions.filter(e => e.name === 'prime' && e.to === 'backoff').pop().reason"))

    def test_the_log_tail_of_a_chosen_service(self):
        self.open_running()
        self.wait(lambda b: b.find_element(By.ID, "conn").text == "live", "the live connection")
        self.browser.find_element(By.CSS_SELECTOR, "#svc-trinity td.name").click()
        self.assertEqual(self.browser.execute_script("return document.getElementById('log-service').value"),
                         "trinity")
        self.wait(lambda b: "heard " in b.find_element(By.ID, "log").text, "trinity's output")
        self.shot("dashboard-log")
        # another service: its lines only, from now on (prime says where it answers as it starts)
        self.browser.execute_script("follow('prime')")
        self.wait(lambda b: b.find_element(By.ID, "log").text == "", "the tail cleared")
        self.d.ctl("restart", "prime")
        self.wait(lambda b: "prime: answering on tcp" in b.find_element(By.ID, "log").text, "prime's output")
        self.assertNotIn("heard ", self.browser.find_element(By.ID, "log").text)

    def test_a_wrong_token_is_refused_with_a_message(self):
        self.browser.get(self.url.split("#")[0] + "#token=" + "0" * 64)
        self.wait(lambda b: b.find_element(By.ID, "notice").is_displayed(), "the refusal")
        notice = self.browser.find_element(By.ID, "notice").get_attribute("textContent")
        self.assertIn("The bus refused this page", notice)
        self.assertIn("bad token", self.browser.find_element(By.ID, "refusal").text)
        self.assertIn("cohortctl dashboard", notice)
        self.assertFalse(self.browser.find_element(By.ID, "main").is_displayed())
        self.shot("dashboard-wrong-token")
        # and without a token it says how to get one
        self.browser.get(self.url.split("#")[0])
        self.browser.refresh()
        self.wait(lambda b: "needs cohortd's admin token" in b.find_element(By.ID, "notice").get_attribute(
            "textContent"), "the hint")
        self.shot("dashboard-no-token")


if __name__ == "__main__":
    unittest.main()
