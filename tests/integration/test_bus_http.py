#!/usr/bin/python3
"""The bus listeners and what is not a cohort.v1 WebSocket: plain HTTP and
bad handshakes answered at once with an HTTP error, on the unix and the TCP
listener; the Origin of browser pages (bus_allowed_origins), with the
Python websockets client and, when it is installed, headless Chromium."""
import asyncio
import http.server
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest

import websockets

from harness import COHORTD, FACTOR, CohortTest, free_port, wait_until

IDLE = """
[service:idle]
command = /bin/sleep 1000
ready = delay:0
"""

HANDSHAKE = ("GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n")


def run(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout * FACTOR))


def http_exchange(address, request, timeout=5.0):
    """Sends request on a new connection to address (a unix path or a
    (host, port)) and reads until the server closes, within timeout:
    (status, headers, body, seconds); status None when nothing came."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    start = time.monotonic()
    deadline = start + timeout * FACTOR
    data = b""
    with socket.socket(family) as s:
        s.settimeout(timeout * FACTOR)
        s.connect(address)
        s.sendall(request.encode())
        while time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    took = time.monotonic() - start
    if not data:
        return None, {}, "", took
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:] if ":" in l)}
    return status, headers, body.decode(), took


class TcpBus(CohortTest):
    def daemon(self, extra="", services=IDLE):
        """(daemon, port, token): see tcp_token_daemon."""
        return self.tcp_token_daemon(extra=extra, services=services)


class Listeners(TcpBus):
    def test_what_is_not_a_cohort_websocket_is_answered_at_once(self):
        d, port, token = self.daemon()
        unix = os.path.join(d.run_dir, "bus.sock")
        for address, host in ((unix, "localhost"), (("127.0.0.1", port), f"127.0.0.1:{port}")):
            where = f"{address}"
            # a plain GET of /: the dashboard page, at once, and closed
            status, headers, body, took = http_exchange(address, f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n")
            self.assertEqual(status, 200, where)
            self.assertLess(took, 2 * FACTOR, where)	# not lws's 20 s wait
            self.assertEqual(headers["content-type"], "text/html; charset=utf-8")
            self.assertEqual(headers["connection"], "close")
            self.assertIn('new WebSocket', body)
            self.assertIn('"cohort.v1"', body)
            self.assertEqual(int(headers["content-length"]), len(body.encode()))
            # HEAD: the same headers, no body
            status, headers, body, _ = http_exchange(address, f"HEAD / HTTP/1.1\r\nHost: {host}\r\n\r\n")
            self.assertEqual((status, body), (200, ""), where)
            self.assertEqual(headers["connection"], "close")
            # a path no page has: 404, naming the pages there are
            status, _, body, took = http_exchange(address, f"GET /nothing HTTP/1.1\r\nHost: {host}\r\n\r\n")
            self.assertEqual(status, 404, where)
            self.assertIn("cohort.v1", body)
            self.assertIn("/metrics", body)
            # a WebSocket handshake without the subprotocol, or with another: 400
            for extra in ("", "Sec-WebSocket-Protocol: chat, superchat\r\n"):
                status, _, body, took = http_exchange(address, HANDSHAKE.format(host=host, extra=extra))
                self.assertEqual(status, 400, (where, extra))
                self.assertLess(took, 2 * FACTOR)
                self.assertIn("subprotocol cohort.v1", body)
            # with it but without a key: 400 too (lws would just hang up)
            status, _, body, _ = http_exchange(address, HANDSHAKE.format(
                host=host, extra="Sec-WebSocket-Protocol: cohort.v1\r\n").replace(
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""))
            self.assertEqual(status, 400, where)
            self.assertIn("Sec-WebSocket-Key", body)
            # with it, among others: the upgrade
            status, headers, _, _ = http_exchange(
                address, HANDSHAKE.format(host=host, extra="Sec-WebSocket-Protocol: chat, cohort.v1\r\n"),
                timeout=0.5)
            self.assertEqual(status, 101, where)
            self.assertEqual(headers["sec-websocket-protocol"], "cohort.v1")

        # the bus works on, over both
        async def go():
            async with websockets.connect(f"ws://127.0.0.1:{port}/", subprotocols=["cohort.v1"]) as ws:
                await ws.send('{"op":"hello","token":"%s","id":1}' % token)
                self.assertIn('"welcome"', await asyncio.wait_for(ws.recv(), 10 * FACTOR))
            async with websockets.unix_connect(unix, uri="ws://localhost/", subprotocols=["cohort.v1"]) as ws:
                await ws.send('{"op":"hello","id":1}')
                self.assertIn('"welcome"', await asyncio.wait_for(ws.recv(), 10 * FACTOR))
        run(go())
        d.stop()

    def test_a_request_head_over_8_kib_is_answered_431(self):
        """lws drops a head it cannot keep with no answer at all (the client
        sees the connection end); cohortd answers 431 and logs it.  Up to
        8192 bytes of head, in one header or many, is served as usual."""
        d, port, token = self.daemon()
        unix = os.path.join(d.run_dir, "bus.sock")
        for address, host in ((unix, "localhost"), (("127.0.0.1", port), f"127.0.0.1:{port}")):
            def head(extra):
                return f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n"
            base = len(head(""))
            one = "X-Big: " + "a" * (8192 - base - len("X-Big: \r\n")) + "\r\n"
            self.assertEqual(len(head(one)), 8192)
            many = "".join(f"X-H{i:03}: " + "b" * 30 + "\r\n" for i in range((8192 - base) // 40))
            for extra in (one, many):
                status, _, _, _ = http_exchange(address, head(extra))
                self.assertIn(status, (200, 503), (address, len(head(extra))))
            for extra in (one.replace("X-Big: ", "X-Big: a"), "X-Big: " + "a" * 100000 + "\r\n"):
                status, headers, body, took = http_exchange(address, head(extra))
                self.assertEqual(status, 431, (address, len(head(extra))))
                self.assertEqual(headers["connection"], "close")
                self.assertIn("over 8192 bytes", body)
                self.assertLess(took, 2 * FACTOR)
        d.wait_log(r"its head is over 8192 bytes \(431\)")
        # an upgrade carrying 7 KB of cookies (a browser's, on localhost) is served
        async def go():
            cookies = "; ".join(f"c{i}={'v' * 60}" for i in range(110))
            async with websockets.connect(f"ws://127.0.0.1:{port}/", subprotocols=["cohort.v1"],
                                          extra_headers={"Cookie": cookies}) as ws:
                await ws.send('{"op":"hello","token":"%s","id":1}' % token)
                self.assertIn('"welcome"', await asyncio.wait_for(ws.recv(), 10 * FACTOR))
        run(go())
        d.stop()

    def test_a_page_of_another_origin_is_refused(self):
        d, port, token = self.daemon()
        url = f"ws://127.0.0.1:{port}/"

        async def hello(origin):
            async with websockets.connect(url, subprotocols=["cohort.v1"], origin=origin) as ws:
                await ws.send('{"op":"hello","token":"%s","id":1}' % token)
                return (await asyncio.wait_for(ws.recv(), 10 * FACTOR))

        async def go():
            # no Origin (not a browser) and the bus's own origin: let in
            self.assertIn('"welcome"', await hello(None))
            self.assertIn('"welcome"', await hello(f"http://127.0.0.1:{port}"))
            # any other page: 403, with its reason
            for origin in ("http://evil.example", f"http://127.0.0.1:{port + 1}", "null",
                           f"http://localhost:{port}", f"ftp://127.0.0.1:{port}"):
                with self.assertRaises(websockets.InvalidStatusCode) as cm:
                    await hello(origin)
                self.assertEqual(cm.exception.status_code, 403, origin)
        run(go())
        status, _, body, _ = http_exchange(("127.0.0.1", port), HANDSHAKE.format(
            host=f"127.0.0.1:{port}", extra="Origin: http://evil.example\r\nSec-WebSocket-Protocol: cohort.v1\r\n"))
        self.assertEqual(status, 403)
        self.assertIn("origin not allowed", body)
        self.assertIn("bus_allowed_origins", body)
        # on the unix listener too (a browser behind a proxy)
        status, _, _, _ = http_exchange(os.path.join(d.run_dir, "bus.sock"), HANDSHAKE.format(
            host="localhost", extra="Origin: http://evil.example\r\nSec-WebSocket-Protocol: cohort.v1\r\n"))
        self.assertEqual(status, 403)
        # logged once, not once per attempt (7 refusals)...
        d.wait_log(r"^bus: refused a WebSocket from origin http://evil.example \(Host 127\.0\.0\.1:\d+\)")
        # ... and 10 s later (the policy: a line per 10 s at most) the next
        # one is, with the count of those that were not
        time.sleep(10.2)
        status, _, _, _ = http_exchange(("127.0.0.1", port), HANDSHAKE.format(
            host=f"127.0.0.1:{port}", extra="Origin: http://later.example\r\nSec-WebSocket-Protocol: cohort.v1\r\n"))
        self.assertEqual(status, 403)
        d.wait_log(r"^bus: refused a WebSocket from origin http://later\.example .*since the last line\)$")
        lines = [l.msg for l in d.lines if l.msg.startswith("bus: refused a WebSocket")]
        unlogged = sum(int(m.group(1)) for m in (re.search(r"\(and (\d+) more such", l) for l in lines) if m)
        self.assertEqual(len(lines) + unlogged, 8, lines)
        # (2 lines; a 3rd only if 7 attempts took more than 10 s, under valgrind)
        self.assertLessEqual(len(lines), 3, lines)
        d.stop()

    def test_a_refused_origin_is_logged_printable(self):
        # what a client sent goes into the log: no control character with it
        d, port, _ = self.daemon()
        status, _, _, _ = http_exchange(("127.0.0.1", port), HANDSHAKE.format(
            host=f"127.0.0.1:{port}",
            extra="Origin: http://e\x1bvil\x01.example\r\nSec-WebSocket-Protocol: cohort.v1\r\n"))
        self.assertEqual(status, 403)
        d.wait_log(r"^bus: refused a WebSocket from origin http://e\?vil\?\.example \(Host ")
        d.stop()

    def test_bus_allowed_origins(self):
        d, port, token = self.daemon("bus_allowed_origins = http://app.example:8080, HTTPS://Ops.Example\n")
        url = f"ws://127.0.0.1:{port}/"

        async def status(origin):
            try:
                async with websockets.connect(url, subprotocols=["cohort.v1"], origin=origin) as ws:
                    await ws.send('{"op":"hello","token":"%s","id":1}' % token)
                    return "welcome" if '"welcome"' in await asyncio.wait_for(ws.recv(), 10 * FACTOR) else "?"
            except websockets.InvalidStatusCode as e:
                return e.status_code

        async def go():
            self.assertEqual(await status("http://app.example:8080"), "welcome")
            self.assertEqual(await status("https://ops.example"), "welcome")	# case does not matter
            self.assertEqual(await status("http://app.example"), 403)		# nor the port
            self.assertEqual(await status("https://app.example:8080"), 403)	# nor the scheme
            self.assertEqual(await status(f"http://127.0.0.1:{port}"), "welcome")	# its own, still
        run(go())
        d.stop()
        d2, port2, _ = self.daemon("bus_allowed_origins = *\n")

        async def any_origin():
            async with websockets.connect(f"ws://127.0.0.1:{port2}/", subprotocols=["cohort.v1"],
                                          origin="http://anything.example"):
                pass
        run(any_origin())
        d2.stop()

    def test_a_bad_origin_in_the_config_names_file_and_line(self):
        ini = self.path("bad.ini")
        for value in ("ftp://x.example", "http://x.example/path", "x.example"):
            with open(ini, "w") as f:
                f.write("[cohort]\n\nbus_allowed_origins = http://ok.example, " + value + "\n" + IDLE)
            r = subprocess.run([COHORTD, "--check", "-c", ini], capture_output=True, text=True, timeout=30)
            self.assertNotEqual(r.returncode, 0, value)
            self.assertIn("bad.ini:3", r.stderr + r.stdout)
            self.assertIn(f'"{value}" is not an origin', r.stderr + r.stdout)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

PAGE = """<!DOCTYPE html><html><head><title>waiting</title></head><body><script>
function report(what) { fetch("/result?" + what).then(function () { document.title = what; }); }
var ws = new WebSocket("ws://127.0.0.1:%d/", "cohort.v1");
ws.onopen = function () { ws.send('{"op":"hello","token":"%s","id":1}'); };
ws.onmessage = function (e) { report(JSON.parse(e.data).op); ws.close(); };
ws.onerror = function () { report("error"); };
</script></body></html>
"""


class Page(http.server.BaseHTTPRequestHandler):
    """Serves the page; records what the page reports."""
    page = ""
    results = []

    def do_GET(self):
        if self.path.startswith("/result?"):
            Page.results.append(self.path.split("?", 1)[1])
            body = b"ok"
        else:
            body = Page.page.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@unittest.skipUnless(CHROMIUM, "chromium is not installed (apt-get install chromium): "
                                   "the browser test of bus_allowed_origins is skipped")
class Browser(TcpBus):
    def open_page(self, port, token, page_port=0):
        """Chromium loads a page from another origin (a server on another
        port) that opens a WebSocket to the bus and reports what it saw:
        (what it saw, the page's port)."""
        Page.page = PAGE % (port, token)
        Page.results = []
        server = http.server.ThreadingHTTPServer(("127.0.0.1", page_port), Page)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        profile = tempfile.mkdtemp(prefix="cohort-chromium.", dir=self.tmp)
        browser = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             f"--user-data-dir={profile}", f"http://127.0.0.1:{server.server_port}/"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_until(self, lambda: Page.results, timeout=60, what="the page's report")
        finally:
            os.killpg(browser.pid, 9)
            browser.wait()
            server.shutdown()
            server.server_close()
        return Page.results[0], server.server_port

    def test_chromium_on_another_origin(self):
        d, port, token = self.daemon()
        seen, page_port = self.open_page(port, token)
        self.assertEqual(seen, "error")
        d.wait_log(rf"^bus: refused a WebSocket from origin http://127\.0\.0\.1:{page_port} ")
        d.stop()
        # the same page, its origin allowed: it talks to the bus
        page_port = free_port()
        d2, port2, token2 = self.daemon(f"bus_allowed_origins = http://127.0.0.1:{page_port}\n")
        seen, _ = self.open_page(port2, token2, page_port)
        self.assertEqual(seen, "welcome")
        d2.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
