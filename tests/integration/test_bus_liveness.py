#!/usr/bin/python3
"""The bus's connection policy, seen from raw sockets (no client library
between the test and the wire): every close cohortd decides reaches the
client as a close frame with its code, even from a client that keeps
writing; a connection is closed for liveness only when it made no progress
either way for bus_idle_timeout; one that never says hello is closed after
the handshake timeout; and each close is logged once with its reason."""
import asyncio
import base64
import json
import logging
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import unittest

from harness import FACTOR, SRC, CohortTest, wait_until

sys.path.insert(0, os.path.join(SRC, "contrib", "python"))
import cohort_client  # noqa: E402

IDLE = """
[service:idle]
command = /bin/sleep 1000
ready = delay:0
"""


class RawWs:
    """A WebSocket client on a plain socket: it can keep writing while the
    server closes, stop reading, and tell exactly which frames arrived."""

    def __init__(self, sock):
        self.s = sock
        self.buf = b""
        self.close_code = None      # of the server's close frame, once read
        self.close_reason = None
        self.eof = False            # FIN or RST seen
        self.reset = False          # RST seen
        self.answered = False       # we answered the server's close frame
        self.closes = 0             # close frames read
        self.s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                       b"Connection: Upgrade\r\nSec-WebSocket-Key: "
                       + base64.b64encode(os.urandom(16)) +
                       b"\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: cohort.v1\r\n\r\n")
        deadline = time.monotonic() + 10 * FACTOR
        while b"\r\n\r\n" not in self.buf:
            if time.monotonic() > deadline or not self._recv(deadline - time.monotonic()):
                raise ConnectionError("no upgrade")
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise ConnectionError(head.decode(errors="replace"))

    @classmethod
    def unix(cls, path):
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        return cls(s)

    @classmethod
    def tcp(cls, port):
        return cls(socket.create_connection(("127.0.0.1", port)))

    def _recv(self, timeout):
        p = select.poll()   # not select(): a test may hold over 1,024 sockets
        p.register(self.s, select.POLLIN)
        if not p.poll(max(timeout, 0) * 1000):
            return False
        try:
            data = self.s.recv(65536)
        except ConnectionResetError:
            self.eof = self.reset = True
            return False
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    @staticmethod
    def frame(obj, opcode=1, fin=True, masked=True):
        """A frame's bytes; masked=False leaves out the mask (and the mask
        bit), which only a server may do."""
        data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        bit = 0x80 if masked else 0
        n = len(data)
        head = bytes([(0x80 if fin else 0) | opcode])
        if n < 126:
            head += bytes([bit | n])
        elif n < 65536:
            head += bytes([bit | 126]) + struct.pack(">H", n)
        else:
            head += bytes([bit | 127]) + struct.pack(">Q", n)
        if not masked:
            return head + data
        mask = os.urandom(4)
        return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))

    def send(self, obj, opcode=1, fin=True):
        self.s.sendall(self.frame(obj, opcode, fin))

    def frames(self):
        """The whole frames read so far: [(opcode, payload)]; a close frame
        sets close_code."""
        out = []
        while len(self.buf) >= 2:
            n, h = self.buf[1] & 0x7F, 2
            if n == 126:
                if len(self.buf) < 4:
                    break
                n, h = struct.unpack(">H", self.buf[2:4])[0], 4
            elif n == 127:
                if len(self.buf) < 10:
                    break
                n, h = struct.unpack(">Q", self.buf[2:10])[0], 10
            if len(self.buf) < h + n:
                break
            op, payload = self.buf[0] & 0x0F, self.buf[h:h + n]
            self.buf = self.buf[h + n:]
            self.closes += op == 8
            if op == 8 and self.close_code is None:
                self.close_code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005
                self.close_reason = payload[2:].decode(errors="replace")
            out.append((op, payload))
        return out

    def read_until_closed(self, timeout, keep_writing=False):
        """Reads (and, with keep_writing, sends a ping op every few ms) until
        the server's close frame and the end of the stream, or timeout."""
        deadline = time.monotonic() + timeout * FACTOR
        got = []
        while not self.eof and time.monotonic() < deadline:
            if keep_writing and self.close_code is None:
                try:
                    for _ in range(20):
                        self.send({"op": "ping"})
                except (BrokenPipeError, ConnectionResetError):
                    # the server dropped it: what it sent before is still
                    # to be read, but a real client would have failed here
                    self.reset = True
                    keep_writing = None
                    continue
                self._recv(0.002)
            else:
                self._recv(min(0.2, deadline - time.monotonic()))
            got += self.frames()
            if self.close_code is not None and not self.answered:
                # answer it, as a client does, and wait for the end
                self.answered = True
                try:
                    self.send(struct.pack(">H", self.close_code), opcode=8)
                except OSError:
                    pass
                keep_writing = None
        got += self.frames()
        return got

    def close(self):
        self.s.close()


class BusLiveness(CohortTest):
    def daemon(self, text=IDLE):
        return self.started(text)

    def bus(self, d):
        return os.path.join(d.run_dir, "bus.sock")

    def tcp_daemon(self, extra=""):
        return self.tcp_token_daemon(extra=extra, services=IDLE)

    def connect(self, d, transport, port):
        return RawWs.tcp(port) if transport == "tcp" else RawWs.unix(self.bus(d))

    def test_a_refused_client_that_keeps_writing_reads_1008(self):
        d, port, _ = self.tcp_daemon()
        for transport in ("tcp", "unix"):
            for i in range(20):
                ws = self.connect(d, transport, port)
                ws.send({"op": "hello", "token": "not-a-token"})
                ws.read_until_closed(10, keep_writing=True)
                self.assertEqual((transport, i, ws.close_code, ws.reset), (transport, i, 1008, False))
                self.assertEqual((ws.close_reason, ws.closes), ("bad token", 1))
                ws.close()
        d.stop()

    def test_the_older_of_two_connections_of_a_session_reads_4000(self):
        d, port, token = self.tcp_daemon()
        hello = {"op": "hello", "token": token, "session": "tug"}
        for transport in ("tcp", "unix"):
            for i in range(20):
                older = self.connect(d, transport, port)
                older.send(hello)
                wait_until(self, lambda: older._recv(0.1) or older.buf, what="the welcome")
                # the older one keeps writing while a newer one takes over
                older.send({"op": "ping"})
                newer = self.connect(d, transport, port)
                newer.send(hello)
                older.read_until_closed(10, keep_writing=True)
                self.assertEqual((transport, i, older.close_code, older.reset), (transport, i, 4000, False))
                self.assertEqual(older.closes, 1)
                older.close()
                newer.close()
        d.stop()

    def test_a_connection_without_hello_is_closed_after_5_s(self):
        d = self.daemon()
        start = time.monotonic()
        ws = RawWs.unix(self.bus(d))
        ws.read_until_closed(20)
        waited = time.monotonic() - start
        self.assertEqual((ws.close_code, ws.close_reason, ws.reset), (4001, "no hello within 5 s", False))
        self.assertTrue(4.5 <= waited < 10 * FACTOR, waited)
        d.wait_log(r"^bus: closing connection \d+ \(no hello, unix, pid \d+\): no hello within 5 s \(4001\)$")
        ws.close()
        d.stop()

    def publish(self, d, topic, count, size, failed=None):
        """count qos-0 messages of size bytes on topic, from a raw admin
        connection; returns once cohortd has them all (a ping answered).
        In a thread, a failure goes to the list failed."""
        pub = RawWs.unix(self.bus(d))
        pub.send({"op": "hello"})
        for i in range(count):
            pub.send({"op": "pub", "topic": topic, "data": {"i": i, "pad": "x" * size}})
        pub.send({"op": "ping", "id": "done"})
        deadline = time.monotonic() + 30 * FACTOR
        while not any(b'"done"' in f for _, f in pub.frames()):
            if time.monotonic() > deadline:
                if failed is None:
                    self.fail("no pong from the publisher's connection")
                failed.append("no pong from the publisher's connection")
                break
            pub._recv(0.2)
        pub.close()

    # --- reading: cohortd reads more of a socket than lws asks for ----------
    def welcomed(self, d, transport, port, token):
        ws = self.connect(d, transport, port)
        ws.send({"op": "hello", "token": token})
        wait_until(self, lambda: ws._recv(0.1) or b"welcome" in ws.buf, what="the welcome")
        ws.frames()
        return ws

    @staticmethod
    def pongs(frames):
        return [json.loads(p)["id"] for op, p in frames if op == 1 and b'"pong"' in p]

    def test_a_burst_in_one_write_is_answered_whole_and_in_order(self):
        """5,000 pings in one write, 160 KB: what cohortd read ahead of lws
        is handed over although nothing more comes; a frame that is not
        masked at the end of it still reads 1002 after every ping before it
        was answered."""
        d, port, token = self.tcp_daemon()
        count = 5000
        burst = b"".join(RawWs.frame({"op": "ping", "id": i}) for i in range(count))
        bad = RawWs.frame({"op": "ping", "id": "unmasked"}, masked=False)
        for transport in ("unix", "tcp"):
            for bad_end in (False, True):
                with self.subTest(transport=transport, bad_end=bad_end):
                    ws = self.welcomed(d, transport, port, token)
                    ws.s.sendall(burst + (bad if bad_end else b""))
                    if bad_end:
                        got = self.pongs(ws.read_until_closed(30))
                        self.assertEqual((ws.close_code, ws.close_reason, ws.reset),
                                         (1002, "a frame from the client that is not masked", False))
                    else:
                        got = []
                        deadline = time.monotonic() + 30 * FACTOR
                        while len(got) < count and not ws.eof:
                            self.assertLess(time.monotonic(), deadline, f"{len(got)} of {count} answered")
                            ws._recv(0.2)
                            got += self.pongs(ws.frames())
                        self.assertIsNone(ws.close_code)
                    self.assertEqual(got, list(range(count)))
                    ws.close()
        d.stop()

    def test_a_burst_to_1500_subscribers_reaches_each_whole_and_in_order(self):
        """20 qos-0 publishes in one write to a topic 1,500 connections
        subscribe to: a fan-out that large is written as it goes (the
        first receivers before the last is queued), and every subscriber
        still gets all 20, once, in order."""
        d = self.started("[cohort]\nbus_max_connections = 2000\n" + IDLE)
        n, count = 1500, 20
        subs = []
        for i in range(n):
            ws = RawWs.unix(self.bus(d))
            ws.send({"op": "hello"})
            ws.send({"op": "sub", "id": i, "topic": "fan.t", "qos": 0})
            subs.append(ws)
        for i, ws in enumerate(subs):
            wait_until(self, lambda: ws._recv(0.1) or b'"ok"' in ws.buf, what=f"subscriber {i}'s ok")
            ws.frames()
        pub = RawWs.unix(self.bus(d))
        pub.send({"op": "hello"})
        pub.s.sendall(b"".join(RawWs.frame({"op": "pub", "id": k, "topic": "fan.t", "qos": 0, "data": k})
                               for k in range(count)))
        deadline = time.monotonic() + 60 * FACTOR
        for i, ws in enumerate(subs):
            got = []
            while len(got) < count:
                self.assertLess(time.monotonic(), deadline, f"subscriber {i}: {got}")
                ws._recv(0.2)
                got += [json.loads(p)["data"] for op, p in ws.frames()
                        if op == 1 and json.loads(p).get("op") == "msg"]
            self.assertEqual(got, list(range(count)), f"subscriber {i}")
            ws.close()
        pub.close()
        d.stop()

    def test_a_client_that_reads_its_answers_late_gets_them_all(self):
        """A client sends 12 MB of pings before it reads: cohortd stops
        reading it once 8 MB of answers wait (BUS_OUT_MAX), with some of
        what it read ahead of lws still unparsed, and goes on when the
        client reads.  Every ping is answered, in order, and the
        connection stays."""
        d, port, token = self.tcp_daemon()
        count, pad = 12000, "p" * 1000
        for transport in ("unix", "tcp"):
            with self.subTest(transport=transport):
                ws = self.welcomed(d, transport, port, token)
                sent, errors = [0], []

                def send():
                    try:
                        for first in range(0, count, 100):
                            ws.s.sendall(b"".join(RawWs.frame({"op": "ping", "id": [i, pad]})
                                                  for i in range(first, first + 100)))
                            sent[0] = first + 100
                    except OSError as e:
                        errors.append(e)

                t = threading.Thread(target=send)
                t.start()
                # Reading starts once the sender is held up (cohortd stopped
                # reading it) or done; either way every answer must come.
                last, still = -1, 0
                deadline = time.monotonic() + 60 * FACTOR
                while t.is_alive() and still < 10:
                    self.assertLess(time.monotonic(), deadline, f"the sender stuck at {sent[0]}")
                    still = still + 1 if sent[0] == last else 0
                    last = sent[0]
                    t.join(0.1)
                got = []
                while len(got) < count and not ws.eof:
                    self.assertLess(time.monotonic(), deadline, f"{len(got)} of {count} answered")
                    ws._recv(0.2)
                    got += [i for i, _ in self.pongs(ws.frames())]
                t.join()
                self.assertEqual((errors, ws.close_code, ws.eof), ([], None, False))
                self.assertEqual(got, list(range(count)))
                ws.close()
        d.stop()

    def test_a_slow_reader_draining_a_backlog_is_kept(self):
        """bus_idle_timeout 5 s; a subscriber takes 12 s to read a backlog
        of 3 MB, 256 KB a second: it makes progress, so it stays.  (The
        reader pauses 1 s between reads; the timeout leaves room for a
        loaded machine's pauses, and, times FACTOR, for valgrind.)"""
        d = self.daemon(f"[cohort]\nbus_idle_timeout = {5 * FACTOR:g}s\n" + IDLE)
        sub = RawWs.unix(self.bus(d))
        sub.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sub.send({"op": "hello"})
        sub.send({"op": "sub", "topic": "slow.>", "id": 1})
        deadline = time.monotonic() + 10 * FACTOR
        while sub.buf.count(b'"op"') < 2:
            self.assertLess(time.monotonic(), deadline, "no welcome and ok to the subscription")
            sub._recv(0.2)
        sub.frames()
        count, got = 3000, 0
        # published while the subscriber reads: publishing alone can take
        # longer than bus_idle_timeout under valgrind
        failed = []
        pub = threading.Thread(target=lambda: self.publish(d, "slow.x", count, 1000, failed))
        pub.start()
        deadline = time.monotonic() + 60 * FACTOR
        while got < count and not sub.eof:
            self.assertLess(time.monotonic(), deadline, f"{got} of {count} messages read")
            before = len(sub.buf)
            while len(sub.buf) - before < 256 * 1024 / FACTOR and sub._recv(0.05):
                pass
            got += sum(op == 1 and b'"msg"' in f for op, f in sub.frames())
            time.sleep(1)
        pub.join()
        self.assertEqual(failed, [])
        self.assertEqual((got, sub.close_code, sub.eof), (count, None, False), d.dump())
        self.assertEqual(d.count(r"^bus: closing connection"), 0)
        sub.close()
        d.stop()

    def test_an_idle_peer_that_answers_pings_is_kept_with_its_lease(self):
        """bus_idle_timeout 2 s; a client that says nothing but answers
        cohortd's PINGs, once with an empty PONG (lws reports none for an
        empty one) and once with the payload echoed, as RFC 6455 asks, and
        one that sends only PINGs of its own: each stays open for three
        timeouts, and a lease it holds stays held."""
        d = self.daemon("[cohort]\nbus_idle_timeout = 2s\n" + IDLE)
        for kind in ("empty pong", "echoed pong", "own pings"):
            ws = RawWs.unix(self.bus(d))
            ws.send({"op": "hello"})
            name = "idle." + kind.replace(" ", "-")
            ws.send({"op": "lock.acquire", "name": name, "ttl_ms": 600000, "id": 1})
            deadline = time.monotonic() + 6
            pings = 0
            seen = []   # the frames other than pings, to say what happened
            while time.monotonic() < deadline and not ws.eof:
                if kind == "own pings":
                    ws.send(b"", opcode=9)
                ws._recv(0.5)
                for op, payload in ws.frames():
                    if op == 9:
                        pings += 1
                        if kind != "own pings":
                            ws.send(b"" if kind == "empty pong" else payload, opcode=10)
                    elif op != 10:
                        seen.append((op, payload[:200]))
            self.assertEqual((ws.eof, ws.close_code), (False, None), f"{kind}:\n" + d.dump())
            if kind != "own pings":
                self.assertGreaterEqual(pings, 2, kind)
            holders = [lk for lk in d.ctl_json("locks")["locks"] if lk["name"] == name]
            self.assertEqual(len(holders), 1, (kind, d.ctl_json("locks"), seen, d.dump()))
            ws.close()
        self.assertEqual(d.count(r"^bus: closing connection"), 0, d.dump())
        d.stop()

    def test_a_stopped_peer_is_closed_after_bus_idle_timeout(self):
        """A subscriber stopped with SIGSTOP: it answers no PING and reads
        nothing, with messages waiting for it or not: closed after
        bus_idle_timeout, logged with the reason, and the Close frame (4001)
        is what it reads when it runs again."""
        d = self.daemon("[cohort]\nbus_idle_timeout = 2s\n" + IDLE)
        for backlog in (0, 3000):
            # its last progress (the sub) comes after this, and before
            # "subscribed" reaches us: under valgrind, well before
            spawned = time.monotonic()
            peer = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--peer", self.bus(d)],
                                    stdout=subprocess.PIPE, text=True)
            self.assertEqual(peer.stdout.readline().strip(), "subscribed")
            mark = len(d.lines)
            peer.send_signal(signal.SIGSTOP)
            stopped = time.monotonic()
            if backlog:
                self.publish(d, "slow.x", backlog, 1000)
            line = d.wait_log(rf"^bus: closing connection \d+ \(admin, unix, pid {peer.pid}\): no progress "
                              r"reading or writing for 2 s \(bus_idle_timeout\) \(4001\)$",
                              timeout=20, start=mark)
            self.assertGreaterEqual(time.monotonic() - spawned, 1.9)
            waited = time.monotonic() - stopped
            self.assertLess(waited, 10 * FACTOR)
            peer.send_signal(signal.SIGCONT)
            out, _ = peer.communicate(timeout=30 * FACTOR)
            if not backlog:     # its socket had room for the Close frame
                self.assertEqual(out.strip(), "closed 4001")
            self.assertEqual(d.count(rf"^bus: closing connection \d+ \(admin, unix, pid {peer.pid}\)"), 1, line)
        d.stop()

    def test_a_message_too_large_in_fragments_reads_1009(self):
        """2 MB (bus_max_message is 1M) sent as 64 KiB fragments, the sender
        writing on after cohortd closes: it reads 1009, and no RST."""
        d, port, token = self.tcp_daemon()
        for transport in ("tcp", "unix"):
            ws = self.connect(d, transport, port)
            ws.send({"op": "hello", "token": token})
            chunk = b"x" * 65536
            try:
                for i in range(32):
                    ws.send(chunk, opcode=1 if i == 0 else 0, fin=i == 31)
                    ws._recv(0)
            except OSError:
                ws.reset = True
            ws.read_until_closed(10, keep_writing=True)
            self.assertEqual((transport, ws.close_code, ws.reset), (transport, 1009, False))
            self.assertEqual(ws.close_reason, "message over bus_max_message (1048576 bytes)")
            ws.close()
        d.stop()

    def test_clients_that_keep_writing_read_1001_at_shutdown(self):
        d, port, token = self.tcp_daemon()
        clients = []
        for transport in ("tcp", "unix"):
            for _ in range(5):
                ws = self.connect(d, transport, port)
                ws.send({"op": "hello", "token": token})
                clients.append(ws)
        stopper = threading.Thread(target=d.stop)
        stopper.start()
        # every client writes until it reads the Close frame
        deadline = time.monotonic() + 30 * FACTOR
        while any(ws.close_code is None and not ws.eof for ws in clients) and time.monotonic() < deadline:
            for ws in clients:
                if ws.close_code is None and not ws.eof:
                    try:
                        ws.send({"op": "ping"})
                    except OSError:
                        ws.reset = True
                    ws._recv(0.001)
                    ws.frames()
        for ws in clients:
            ws.read_until_closed(10)
        stopper.join()
        self.assertEqual([(ws.close_code, ws.close_reason, ws.reset) for ws in clients],
                         [(1001, "cohortd is stopping", False)] * len(clients))
        for ws in clients:
            ws.close()

    def test_two_python_clients_of_one_session_publishing_take_it_once(self):
        """Two cohort_client.py clients of one session, both publishing: the
        older reads 4000 and stops; the session is taken once, not back and
        forth for ever."""
        d, port, token = self.tcp_daemon()
        urls = {"tcp": f"ws://127.0.0.1:{port}/", "unix": "unix:" + self.bus(d)}

        async def flood(c):
            try:
                while True:
                    await c.publish("tug.x", "p" * 100)
                    await asyncio.sleep(0)
            except cohort_client.Closed:
                pass

        async def round_(transport, i):
            session = f"tug-{transport}-{i}"
            older = cohort_client.Client(bus=urls[transport], token=token, session=session)
            await older.connect()
            older_flood = asyncio.ensure_future(flood(older))
            await asyncio.sleep(0.05)
            newer = cohort_client.Client(bus=urls[transport], token=token, session=session)
            await newer.connect()
            newer_flood = asyncio.ensure_future(flood(newer))
            with self.assertRaises(cohort_client.Closed) as cm:
                await asyncio.wait_for(older.wait_closed(), 10 * FACTOR)
            self.assertEqual((transport, i, cm.exception.code), (transport, i, 4000))
            await asyncio.sleep(0.2)
            self.assertIsNone(newer.ended)
            newer_flood.cancel()
            await older_flood
            await newer.close()

        async def go():
            for transport in ("tcp", "unix"):
                for i in range(10):
                    await round_(transport, i)
        logging.disable(logging.ERROR)  # each older client says it stops, once
        try:
            asyncio.run(asyncio.wait_for(go(), 120 * FACTOR))
        finally:
            logging.disable(logging.NOTSET)
        # the last older client reads its close frame before the harness
        # reads cohortd's log line about it: count once every line is in
        d.stop()
        self.assertEqual(d.count(r"^bus: closing connection .*: session taken over by a new connection \(4000\)$"),
                         20)


def peer(path):
    """A subscriber to slow.> that reads everything it is sent, run as a
    process of its own to be stopped; at the end, prints the close code."""
    ws = RawWs.unix(path)
    ws.send({"op": "hello"})
    ws.send({"op": "sub", "topic": "slow.>", "id": 1})
    deadline = time.monotonic() + 10 * FACTOR
    while ws.buf.count(b'"op"') < 2:
        if time.monotonic() > deadline:
            sys.exit("peer: no welcome and ok to the subscription within %g s" % (10 * FACTOR))
        ws._recv(0.2)
    print("subscribed", flush=True)
    ws.read_until_closed(60)
    print("closed", ws.close_code, flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--peer":
        peer(sys.argv[2])
    else:
        unittest.main(verbosity=2)
