#!/usr/bin/python3
"""libcohort, the C client, against a real cohortd: its ops, errors, its
own-event-loop use, locks, and reconnecting across a kill -9."""
import asyncio
import json
import os
import signal
import subprocess
import time
import unittest

import websockets

from harness import BUILD, FACTOR, CohortTest, read_token, token_command

PROG = os.path.join(BUILD, "tests", "integration", "libcohort_test")
IDLE = """
[service:idle]
command = /bin/sleep 1000
ready = delay:0
"""


class LibCohort(CohortTest):
    def env(self, run_dir):
        return dict(os.environ, COHORT_BUS="unix:" + os.path.join(run_dir, "bus.sock"), COHORT_TOKEN="")

    def scenario(self, name):
        d = self.cohortd(IDLE)
        d.wait_log(r"^stack is up")
        p = subprocess.run([PROG, name], env=self.env(d.run_dir), capture_output=True, text=True,
                           timeout=60 * FACTOR)
        self.assertEqual(p.returncode, 0, p.stderr)
        d.stop()

    def test_basic(self):
        self.scenario("basic")

    def test_locks(self):
        self.scenario("locks")

    def test_every_shape_of_msg_frame(self):
        """libcohort reads cohortd's own msg frames without jansson and any
        other shape through it: a stand-in bus sends both, the fields must
        agree, and qos-1 messages are acked."""
        # both paths pass the data's text on as it came, spaces and all
        # (jansson would print it compact)
        canonical = ('{"op":"msg","topic":"a.b","data":{"x": [1, "}\\",\\"seq\\":9"], "seq": 2},'
                     '"seq":41,"qos":1,"ts_ms":1795693516945,"retained":false,"redelivered":true}')
        frames = [
            canonical,
            # the same message, other key order and white space
            '{ "seq": 41, "op": "msg", "qos": 1, "topic": "a.b", "redelivered": true,'
            ' "data": {"x": [1, "}\\",\\"seq\\":9"], "seq": 2}, "retained": false, "ts_ms": 1795693516945 }',
            # cut short of the canonical tail: parsed, not guessed
            '{"op":"msg","topic":"a.c","data":"v","seq":42,"qos":0,"ts_ms":5,"retained":true}',
            '{"op":"msg","topic":"a.d","data":7,"seq":43,"qos":0,"ts_ms":6,"retained":false,"redelivered":false}',
        ]
        sock = self.path("bus.sock")
        acks, closes = [], []

        async def handler(ws, path=None):
            try:
                async for text in ws:
                    req = json.loads(text)
                    if req["op"] == "hello":
                        await ws.send('{"op":"welcome","session":null}')
                    elif req["op"] == "sub":
                        await ws.send(json.dumps({"op": "ok", "id": req["id"]}))
                        for f in frames:
                            await ws.send(f)
                    elif req["op"] == "ack":
                        acks.append(req["seq"])
            finally:
                closes.append(ws.close_code)

        async def go():
            async with websockets.unix_serve(handler, sock, subprotocols=["cohort.v1"]):
                p = await asyncio.create_subprocess_exec(
                    PROG, "print", str(len(frames)), stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE, env=dict(os.environ, COHORT_BUS="unix:" + sock, COHORT_TOKEN=""))
                out, err = await asyncio.wait_for(p.communicate(), 30 * FACTOR)
                self.assertEqual(p.returncode, 0, err)
                deadline = time.monotonic() + 10 * FACTOR
                while (len(acks) < 2 or not closes) and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                return out.decode().splitlines()
        lines = asyncio.run(go())
        fields = "|41|1|1795693516945|0|1"
        self.assertEqual(lines[0], 'a.b|{"x": [1, "}\\",\\"seq\\":9"], "seq": 2}' + fields)
        self.assertEqual(lines[1], lines[0])
        self.assertEqual(lines[2], 'a.c|"v"|42|0|5|1|0')
        self.assertEqual(lines[3], "a.d|7|43|0|6|0|0")
        self.assertEqual(acks, [41, 41])
        self.assertEqual(closes, [1000])     # cohort_free says goodbye

    def test_reconnect_across_kill9(self):
        state, run_dir = self.path("state"), self.path("run")
        text = f"[cohort]\nstate_dir = {state}\nrun_dir = {run_dir}\n" + IDLE
        d = self.cohortd(text)
        d.run_dir = run_dir
        d.wait_log(r"^stack is up")
        p = subprocess.Popen([PROG, "reconnect", "400"], env=self.env(run_dir), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.assertEqual(p.stdout.readline(), "half\n")
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait()
        d.returncode = -9
        again = self.cohortd(text)
        again.run_dir = run_dir
        p.stdin.write("go\n")
        p.stdin.flush()
        out, err = p.communicate(timeout=90 * FACTOR)
        self.assertEqual(p.returncode, 0, err)
        again.wait_log(r"^stack is up")
        again.stop()

    def test_a_client_whose_token_died_stops_once(self):
        """After cohortd restarts, a process left from before reconnects
        with its old COHORT_TOKEN: refused (1008), it stops for good and
        says so once, through its callback, instead of trying for ever."""
        state, run_dir, tok = self.path("state"), self.path("run"), self.path("token")
        text = f"""[cohort]\nstate_dir = {state}\nrun_dir = {run_dir}\n{IDLE}
[service:app]
command = {token_command(tok)}
ready = delay:0
"""
        d = self.cohortd(text)
        d.wait_log(r"^stack is up")
        env = dict(self.env(run_dir), COHORT_TOKEN=read_token(self, tok))
        p = subprocess.Popen([PROG, "dead-token"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        self.assertEqual(p.stdout.readline(), "connected\n")
        d.stop()
        again = self.cohortd(text)
        out, err = p.communicate(timeout=90 * FACTOR)
        self.assertEqual(p.returncode, 0, err)
        self.assertRegex(out, r"^ended: the bus refused hello: bad token: not the COHORT_TOKEN of a running "
                              r"service: not reconnecting\n$")
        self.assertEqual(err, "")       # the callback was told: nothing on stderr
        # the client reads its close frame before the harness reads
        # cohortd's log line about it: count once every line is in
        again.stop()
        self.assertEqual(again.count(r"^bus: closing connection .*: bad token \(1008\)$"), 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
