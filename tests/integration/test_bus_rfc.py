#!/usr/bin/python3
"""The bus against RFC 6455, seen by clients nobody here wrote: Node's `ws`
8 (Debian's node-ws, driven through ws_client.js) and, for what ws refuses to send (unmasked frames, oversized
pings, 1-byte close payloads, close reasons that are not UTF-8), a raw
socket with hand-built frames.  Each bad input must end in a Close frame
with the code the RFC names, logged once, never a silent drop."""
import itertools
import json
import os
import queue
import re
import signal
import struct
import subprocess
import threading
import time
import unittest

from harness import FACTOR, SRC, CohortTest, free_port, wait_until, read_token, token_command
from test_bus_liveness import RawWs

# Debian's node-ws puts ws here (sh contrib/bootstrap.sh --tests installs
# it), where a node from elsewhere (NodeSource) looks only when told to.
NODE_PATH = "/usr/share/nodejs"
WS_CLIENT = os.path.join(SRC, "tests", "integration", "ws_client.js")

IDLE = """
[service:idle]
command = /bin/sleep 1000
ready = delay:0
"""


def check_ws():
    """ws 8 is there.  No skipping: bootstrap installs it, so its absence
    is a failure of the test (it came from the npm registry at test time
    before, which a machine without that network failed on)."""
    try:
        with open(os.path.join(NODE_PATH, "ws", "package.json")) as f:
            version = json.load(f)["version"]
    except OSError as e:
        raise RuntimeError(f"Node's ws is not installed ({e}): apt-get install node-ws "
                           "(sh contrib/bootstrap.sh --tests)") from None
    if int(version.split(".")[0]) < 8:
        raise RuntimeError(f"Node's ws is {version}: 8 or later is needed")


class WsClient:
    """ws_client.js in a child process: commands in on stdin, events out on
    stdout, read by a thread into a queue."""

    def __init__(self, test, url, hello=None):
        self.test = test
        env = dict(os.environ, NODE_PATH=NODE_PATH)
        args = ["node", WS_CLIENT, url] + ([json.dumps(hello)] if hello is not None else [])
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)
        self.events = queue.Queue()
        self.seen = []
        threading.Thread(target=self._read, daemon=True).start()
        test.addCleanup(self.end)

    def _read(self):
        for line in self.proc.stdout:
            try:
                self.events.put(json.loads(line))
            except ValueError:
                self.events.put({"event": "garbled", "line": line[:200]})
        self.events.put({"event": "exit"})

    def cmd(self, **obj):
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()

    def recent(self):
        return [{k: (v[:120] if isinstance(v, str) else v) for k, v in e.items()} for e in self.seen[-8:]]

    def wait(self, pred, timeout=10.0, what="an event"):
        """The first event (from those not consumed yet) with pred true."""
        deadline = time.monotonic() + timeout * FACTOR
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.test.fail(f"ws client: timed out waiting for {what}; saw {self.recent()}")
            try:
                e = self.events.get(timeout=left)
            except queue.Empty:
                continue
            self.seen.append(e)
            if pred(e):
                return e
            if e["event"] == "exit":
                self.test.fail(f"ws client exited while waiting for {what}; saw {self.recent()}"
                               f"\nstderr: {self.proc.stderr.read()}")

    def wait_event(self, name, timeout=10.0):
        return self.wait(lambda e: e["event"] == name, timeout, name)

    def messages(self):
        return [e for e in self.seen if e["event"] == "message"]

    def end(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass


class BusRfc(CohortTest):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        check_ws()

    def daemon(self, extra="", services=""):
        d = self.cohortd("[cohort]\n" + extra + IDLE + services)
        d.wait_log(r"^stack is up")
        d.wait_socket()
        return d

    def bus(self, d):
        return os.path.join(d.run_dir, "bus.sock")

    def ws(self, d, hello={"op": "hello"}):
        """A ws client on the unix socket (an admin: no token), welcomed."""
        c = WsClient(self, f"ws+unix://{self.bus(d)}:/", hello)
        c.wait_event("open")
        if hello is not None:
            c.wait(lambda e: e["event"] == "message" and '"welcome"' in e["data"], what="the welcome")
        return c

    def closed_with(self, d, client, code, reason, mark=0):
        """client reads a Close frame with code and reason, and cohortd logs
        that close once."""
        e = client.wait_event("close")
        self.assertEqual((e["code"], e["reason"]), (code, reason), client.recent())
        line = rf"^bus: closing connection \d+ \(.*\): {re.escape(reason)} \({code}\)$"
        i, _ = d.wait_log(line, start=mark)
        self.assertFalse(any(re.search(line, l.msg) for l in d.lines[i + 1:]), "logged twice")

    def pong(self, client, tag):
        """Waits for the answer to a ping with id tag."""
        return client.wait(lambda e: e["event"] == "message" and json.loads(e["data"]).get("id") == tag,
                           what=f"the pong {tag!r}")

    # --- text must be UTF-8 (RFC 6455 8.1: 1007) -----------------------------
    def test_text_that_is_not_utf8_closes_with_1007(self):
        d = self.daemon()
        good = json.dumps({"op": "ping", "id": "caf\u00e9"}, ensure_ascii=False).encode()
        bad_cases = {
            "a stray continuation byte": b'{"op":"ping","id":"\x80"}',
            "a surrogate": b'{"op":"ping","id":"\xed\xa0\x80"}',
            "an overlong slash": b'{"op":"ping","id":"\xc0\xaf"}',
            "a message cut inside a character": b'{"op":"ping","id":"\xc3',
        }
        for what, bad in bad_cases.items():
            with self.subTest(what):
                c = self.ws(d)
                c.cmd(send_hex=good.hex())     # UTF-8 beyond ASCII is fine
                self.pong(c, "caf\u00e9")
                mark = len(d.lines)
                c.cmd(send_hex=bad.hex())
                self.closed_with(d, c, 1007, "a text message that is not UTF-8", mark)
                self.assertEqual([m for m in c.messages() if '"error"' in m["data"]], [])
        d.stop()

    def test_utf8_is_checked_over_the_whole_message_not_per_fragment(self):
        d = self.daemon()
        # "é" (C3 A9) split between two fragments: one valid message
        c = self.ws(d)
        c.cmd(send_hex=b'{"op":"ping","id":"caf\xc3'.hex(), fin=False)
        c.cmd(send_hex=b'\xa9"}'.hex())
        self.pong(c, "caf\u00e9")
        # a bad byte in the second fragment of an otherwise good message
        mark = len(d.lines)
        c.cmd(send_hex=b'{"op":"ping",'.hex(), fin=False)
        c.cmd(send_hex=b'"id":"\xff"}'.hex())
        self.closed_with(d, c, 1007, "a text message that is not UTF-8", mark)
        d.stop()

    # --- binary: one message, one close (1003) --------------------------------
    def test_a_binary_message_of_any_size_closes_once_with_1003(self):
        d = self.daemon()
        for size in (10, 65536, 100000):
            with self.subTest(size=size):
                c = self.ws(d)
                mark = len(d.lines)
                c.cmd(send_hex=(b"x" * size).hex(), binary=True)
                self.closed_with(d, c, 1003, "binary frames are not understood: send JSON text frames", mark)
                self.assertEqual(c.messages()[1:], [], "nothing but the welcome before the close")
        d.stop()

    # --- too large, in fragments (1009) ----------------------------------------
    def test_a_message_over_bus_max_message_in_64k_fragments_reads_1009(self):
        d = self.daemon("bus_max_message = 1M\n")
        c = self.ws(d)
        mark = len(d.lines)
        c.cmd(send_hex=b'{"op":"ping","id":"'.hex(), fin=False)
        c.cmd(send_hex=(b"y" * 65536).hex(), fin=False, repeat=32)
        self.closed_with(d, c, 1009, "message over bus_max_message (1048576 bytes)", mark)
        self.assertEqual([e for e in c.seen if e["event"] == "error"], [])
        d.stop()

    # --- cohortd stopping, a subscriber behind (1001) --------------------------
    def test_a_subscriber_with_a_backlog_reads_1001_at_shutdown(self):
        d = self.daemon()
        sub = self.ws(d)
        sub.cmd(send=json.dumps({"op": "sub", "topic": "load.>", "id": "s"}))
        sub.wait(lambda e: e["event"] == "message" and '"s"' in e["data"], what="the sub's ok")
        sub.cmd(pause=True)
        sub.wait_event("done")
        pub = RawWs.unix(self.bus(d))
        pub.send({"op": "hello"})
        for i in range(2000):
            pub.send({"op": "pub", "topic": "load.x", "data": {"i": i, "pad": "p" * 1000}})
        pub.send({"op": "ping", "id": "sent"})
        wait_until(self, lambda: pub._recv(0.1) and b'"sent"' in pub.buf, what="the publisher's pong")
        status = d.ctl_json("bus")
        backlog = [c for c in status["conns"] if c["out_bytes"] > 0]
        self.assertTrue(backlog, f"no subscriber is behind: {status['conns']}")
        mark = len(d.lines)
        d.send(signal.SIGTERM)
        d.wait_log(r"^bus: closing \d+ connections?: cohortd is stopping \(1001\)$", start=mark)
        sub.cmd(resume=True)
        e = sub.wait_event("close", timeout=20)
        self.assertEqual((e["code"], e["reason"]), (1001, "cohortd is stopping"))
        self.assertGreater(len(sub.messages()), 2)
        pub.close()
        d.stop(sig=None)

    # --- what ws will not send: a raw socket ----------------------------------
    def raw(self, d, port=None, token=None):
        """A raw connection, welcomed: on the unix socket as an admin, or
        on TCP port with a service's token."""
        r = RawWs.tcp(port) if port else RawWs.unix(self.bus(d))
        r.send({"op": "hello", "token": token} if port else {"op": "hello"})
        deadline = time.monotonic() + 10 * FACTOR
        while b"welcome" not in r.buf:
            self.assertLess(time.monotonic(), deadline, "no welcome")
            r._recv(0.2)
        r.frames()
        return r

    def raw_closed_with(self, d, r, code, reason, mark):
        frames = r.read_until_closed(10)
        self.assertEqual((r.close_code, r.close_reason, r.reset, r.closes), (code, reason, False, 1),
                         frames)
        self.assertEqual([f for f in frames if f[0] == 1], [], "no answer before the close")
        d.wait_log(rf"^bus: closing connection \d+ \(.*\): {re.escape(reason)} \({code}\)$", start=mark)

    @staticmethod
    def frame(opcode, payload, masked=True):
        """A final frame built by hand; masked=False leaves out the mask
        (and the mask bit), which only a server may do."""
        n = len(payload)
        head = bytes([0x80 | opcode])
        bit = 0x80 if masked else 0
        if n < 126:
            head += bytes([bit | n])
        elif n < 65536:
            head += bytes([bit | 126]) + struct.pack(">H", n)
        else:
            head += bytes([bit | 127]) + struct.pack(">Q", n)
        if not masked:
            return head + payload
        key = os.urandom(4)
        return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))

    def test_an_unmasked_frame_reads_1002_unanswered(self):
        port = free_port()
        tok = self.path("token")
        d = self.daemon(f"bus_listen = 127.0.0.1:{port}\n", f"""
[service:app]
command = {token_command(tok)}
ready = delay:0
""")
        token = read_token(self, tok)
        ping = json.dumps({"op": "ping", "id": "unmasked"}).encode()
        for transport, before in itertools.product(
                ("unix", "tcp"), (b"", self.frame(1, json.dumps({"op": "ping", "id": "masked"}).encode()))):
            with self.subTest(transport=transport, after_a_good_frame=bool(before)):
                r = self.raw(d, port if transport == "tcp" else None, token)
                mark = len(d.lines)
                # in one write: lws must not act on the bad frame, nor lose the good one
                r.s.sendall(before + self.frame(1, ping, masked=False))
                frames = r.read_until_closed(10)
                self.assertEqual((r.close_code, r.close_reason, r.reset, r.closes),
                                 (1002, "a frame from the client that is not masked", False, 1), frames)
                answers = [json.loads(p)["id"] for op, p in frames if op == 1]
                self.assertEqual(answers, ["masked"] if before else [])
                d.wait_log(rf"^bus: closing connection \d+ \(.*, {transport}, pid \d+\): "
                           r"a frame from the client that is not masked \(1002\)$", start=mark)
                r.close()
        d.stop()

    def test_a_control_frame_over_125_bytes_reads_1002(self):
        d = self.daemon()
        for opcode, what in ((9, "ping"), (10, "pong"), (8, "close")):
            with self.subTest(what):
                r = self.raw(d)
                mark = len(d.lines)
                payload = struct.pack(">H", 1000) + b"r" * 124 if opcode == 8 else b"p" * 126
                r.s.sendall(self.frame(opcode, payload))
                frames = r.read_until_closed(10)
                self.assertEqual((r.close_code, r.close_reason, r.reset, r.closes),
                                 (1002, "a control frame of more than 125 bytes", False, 1), frames)
                d.wait_log(r"^bus: closing connection \d+ \(.*\): a control frame of more than 125 bytes "
                           r"\(1002\)$", start=mark)
                r.close()
        # a 125-byte PING is answered, with its payload
        r = self.raw(d)
        r.s.sendall(self.frame(9, b"q" * 125))
        deadline = time.monotonic() + 10 * FACTOR
        got = []
        while not any(op == 10 for op, _ in got):
            self.assertLess(time.monotonic(), deadline, "no PONG")
            r._recv(0.2)
            got += r.frames()
        self.assertIn((10, b"q" * 125), got)
        r.close()
        d.stop()

    def test_a_close_frame_with_a_1_byte_payload_reads_1002(self):
        d = self.daemon()
        r = self.raw(d)
        mark = len(d.lines)
        r.send(b"\x03", opcode=8)
        self.raw_closed_with(d, r, 1002, "a Close frame with a 1-byte payload", mark)
        d.stop()

    def test_a_close_reason_that_is_not_utf8_reads_1007(self):
        d = self.daemon()
        r = self.raw(d)
        mark = len(d.lines)
        r.send(struct.pack(">H", 1000) + b"bye \xff\xfe", opcode=8)
        self.raw_closed_with(d, r, 1007, "a Close frame whose reason is not UTF-8", mark)
        d.stop()

    def test_a_close_code_no_endpoint_may_send_reads_1002(self):
        d = self.daemon()
        # lws answers those under 3000 itself; cohortd the rest (logged)
        for code, ours in ((999, False), (1005, False), (2999, False), (5000, True), (65535, True)):
            with self.subTest(code=code):
                r = self.raw(d)
                mark = len(d.lines)
                r.send(struct.pack(">H", code) + b"x", opcode=8)
                frames = r.read_until_closed(10)
                self.assertEqual((r.close_code, r.closes), (1002, 1), frames)
                if ours:    # lws, for its part, closes without waiting for the answer
                    self.assertFalse(r.reset)
                    d.wait_log(rf"^bus: closing connection \d+ \(.*\): a Close frame with status {code} \(1002\)$",
                               start=mark)
                r.close()
        d.stop()

    def test_a_good_close_is_echoed(self):
        d = self.daemon()
        r = self.raw(d)
        r.send(struct.pack(">H", 1000) + "au revoir \u00e9".encode(), opcode=8)
        r.answered = True   # it is the answer to ours
        r.read_until_closed(10)
        self.assertEqual((r.close_code, r.close_reason, r.reset, r.closes),
                         (1000, "au revoir \u00e9", False, 1))
        d.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
