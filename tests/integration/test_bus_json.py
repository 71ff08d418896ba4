#!/usr/bin/python3
"""Bus data is any JSON (RFC 8259), kept as published: numbers of any size
and precision, white space, \\u0000; through the publish, the delivery, the
retained value (get, the retained delivery on subscribe), the journal
replayed after a restart and a compaction's snapshot, and through every
client: raw WebSocket frames, cohortctl (libcohort) and cohort_client.py."""
import asyncio
import json
import os
import sys
import unittest

from harness import FACTOR, SRC, CohortTest, wait_until_async

sys.path.insert(0, os.path.join(SRC, "contrib", "python"))
import cohort_client  # noqa: E402
import websockets  # noqa: E402

IDLE = """
[service:idle]
command = /bin/sleep 1000
ready = delay:0
"""

BIG = "123456789012345678901234567890"

# data texts jansson alone cannot hold, and the plain one of the issue
DATA = [
    '{"n":' + BIG + '}',
    '-' + BIG,
    '[1e400, -1e-400, 1E+2, -0.0, 0.5e-3]',
    '{ "b": 2,  "a": 1.50 }',
    '3.14159265358979323846264338327950288',
    '{"s":"a\\u0000b","n":[' + BIG + ']}',
    '{"deep":[[{"x":-' + BIG + '.5e+99999}]]}',
]

# still not JSON: refused as ever
NOT_JSON = ["01", "1.", ".5", "-", "+1", "1e", "1e+", "0x10", "NaN", "Infinity", "1.5.3", "--1", "1e5.5"]


def run(coro, timeout=90):
    return asyncio.run(asyncio.wait_for(coro, timeout * FACTOR))


async def connect(path):
    ws = await websockets.unix_connect(path, uri="ws://localhost/", subprotocols=["cohort.v1"], max_size=None,
                                       ping_interval=None)
    await ws.send('{"op":"hello"}')
    assert json.loads(await ws.recv())["op"] == "welcome"
    return ws


async def text(ws, timeout=10):
    return await asyncio.wait_for(ws.recv(), timeout * FACTOR)


def layouts(topic, data, seq_id):
    """The pub frame in libcohort's exact layout (cohortd's fast path) and
    in another spelling (the parser's path)."""
    return [
        '{"op":"pub","topic":"%s","data":%s,"qos":1,"retain":true,"id":%d}' % (topic, data, seq_id),
        '{ "id": %d, "op": "pub", "retain": true, "qos": 1, "topic": "%s", "data": %s }' % (seq_id, topic, data),
    ]


def data_of(frame):
    """The text of "data" in a msg frame as cohortd writes it."""
    start = frame.index('"data":') + len('"data":')
    return frame[start:frame.rindex(',"seq":')]


def get_values(answer):
    """topic -> data text, from the text of a get answer (as cohortd writes it)."""
    out = {}
    for part in answer.split('{"topic":"')[1:]:
        topic = part[:part.index('"')]
        out[topic] = part[part.index('"data":') + 7:part.rindex(',"seq":')]
    return out


class BusJson(CohortTest):
    def daemon(self, text=IDLE):
        return self.started(text)

    def bus(self, d):
        return os.path.join(d.run_dir, "bus.sock")

    def publish_all(self, d):
        """Publishes every DATA text in both layouts, retained, qos 1;
        a subscriber gets each text as published. topic -> data."""
        want = {}

        async def go():
            sub = await connect(self.bus(d))
            await sub.send('{"op":"sub","topic":"j.>","qos":1,"id":0}')
            self.assertEqual(json.loads(await text(sub))["op"], "ok")
            pub = await connect(self.bus(d))
            n = 0
            for i, data in enumerate(DATA):
                for k in range(2):
                    n += 1
                    frame = layouts(f"j.d{i}.l{k}", data, n)[k]
                    await pub.send(frame)
                    ok = json.loads(await text(pub))
                    self.assertEqual((ok["op"], ok["id"]), ("ok", n), frame)
                    got = await text(sub)
                    self.assertEqual(data_of(got), data, frame)
                    self.assertIn('"topic":"j.d%d.l%d"' % (i, k), got)
                    await sub.send('{"op":"ack","seq":%d}' % json.loads(got.replace(data, "null"))["seq"])
                    want[f"j.d{i}.l{k}"] = data
            await sub.close()
            await pub.close()
        run(go())
        return want

    def check_retained(self, d, want):
        """get, and the retained deliveries of a new subscription, give
        every value as published."""
        async def go():
            ws = await connect(self.bus(d))
            await ws.send('{"op":"get","topic":"j.>","id":"g"}')
            answer = await text(ws)
            self.assertTrue(answer.startswith('{"op":"ok","id":"g","messages":['), answer)
            self.assertEqual(get_values(answer), want)
            await ws.send('{"op":"sub","topic":"j.>","id":1}')
            self.assertEqual(json.loads(await text(ws))["op"], "ok")
            seen = {}
            for _ in want:
                m = await text(ws)
                self.assertIn('"retained":true', m)
                topic = m[m.index('"topic":"') + 9:]
                seen[topic[:topic.index('"')]] = data_of(m)
            self.assertEqual(seen, want)
            await ws.close()
        run(go())

    def test_numbers_of_any_size_are_kept_as_published(self):
        d = self.daemon()
        want = self.publish_all(d)
        self.check_retained(d, want)

        async def refusals():
            for bad in NOT_JSON:	# (a connection each: 20 bad requests close one)
                ws = await connect(self.bus(d))
                for frame in layouts("j.bad", "[" + bad + "]", 9):
                    await ws.send(frame)
                    r = json.loads(await text(ws))
                    self.assertEqual(r["op"], "error", frame)
                    self.assertIn("bad JSON", r["error"], frame)
                await ws.close()
            ws = await connect(self.bus(d))
            # a big number outside the data is still one jansson cannot hold
            await ws.send('{"op":"ack","seq":%s}' % BIG)
            self.assertIn("bad JSON", json.loads(await text(ws))["error"])
            # duplicate keys in the data, beside a big number: still refused, and said where
            frame = '{"op":"pub","topic":"j.x","data":{"a":%s,"a":1}, "qos":0}' % BIG
            await ws.send(frame)
            r = json.loads(await text(ws))
            self.assertIn("duplicate object key", r["error"])
            self.assertIn("column %d)" % (frame.rindex('"a"') + 3), r["error"])	# the second "a", in the frame
            # jansson's depth limit still counts from the frame, a value inside
            # N arrays at depth N + 1, on both paths: 2046 arrays around it, not 2047
            for depth, want in ((2046, "ok"), (2047, "error"), (2048, "error")):
                for frame in layouts("j.deep", "[" * depth + BIG + "]" * depth, 10) + \
                        layouts("j.deep", "[" * depth + "1" + "]" * depth, 10):
                    await ws.send(frame)
                    self.assertEqual(json.loads(await text(ws))["op"], want, depth)
            # a \u0000 outside the data (a topic) is refused: a topic is a C string
            await ws.send('{"op":"pub","topic":"j.\\u0000x","data":{"a":%s}, "qos":0}' % BIG)
            self.assertIn("bad JSON", json.loads(await text(ws))["error"])
            # line breaks between tokens are taken out, nothing else
            sub = await connect(self.bus(d))
            await sub.send('{"op":"sub","topic":"k.>","id":1}')
            await text(sub)
            await ws.send('{"op":"pub","topic":"k.a","data":{"x":\n 1.50 ,\r\n "y":[ %s ]}}' % BIG)
            self.assertEqual(data_of(await text(sub)), '{"x":1.50,"y":[%s]}' % BIG)
            await ws.close()
            await sub.close()
        run(refusals())
        d.stop()

    def test_retained_text_survives_a_restart_and_a_compaction(self):
        state = self.path("state")
        conf = f"[cohort]\nstate_dir = {state}\nbus_fsync = never\nbus_max_message = 2M\n" + IDLE
        d = self.daemon(conf)
        want = self.publish_all(d)
        d.stop()
        # the journal replayed
        d = self.daemon(conf)
        self.check_retained(d, want)
        # a compaction: its snapshot holds the live values; overwrite one
        # 1 MiB value until the journal passes 16 MiB
        compacting = r"^bus journal: compacting \d+ bytes"

        async def fill():
            ws = await connect(self.bus(d))
            blob = '"' + "z" * (1 << 20) + '"'
            for i in range(40):
                await ws.send('{"op":"pub","topic":"pad","data":%s,"qos":1,"retain":true,"id":%d}' % (blob, i))
                self.assertEqual(json.loads(await text(ws))["op"], "ok")
                if d.count(compacting):
                    break
            await ws.close()
        run(fill())
        # 40 MiB is well past 16 MiB, but the log line can lag the publish
        # that set it off (the harness reads cohortd's log in a thread):
        # waited for, not counted once after the last publish
        d.wait_log(compacting)
        d.stop()
        d = self.daemon(conf)
        self.check_retained(d, want)
        d.stop()

    def test_cohortctl_and_libcohort(self):
        d = self.daemon()
        # pub: a big number is JSON, not text to quote; the value goes as written
        d.ctl("pub", "--qos", "1", "--retain", "c.big", BIG)
        d.ctl("pub", "--qos", "1", "--retain", "c.obj", '{ "b": 2,  "a": 1.50, "n": [-%s] }' % BIG)
        _, _, err = d.ctl("pub", "c.bad", '{"n":01}', expect=2)
        self.assertIn("DATA is not JSON", err)
        # get prints each value as published (libcohort's cohort_get), in
        # topic order (the daemon's is its hash's), and --json too
        for k in (7, 3, 5, 0, 6, 1, 4, 2):
            d.ctl("pub", "--retain", f"c.k{k}", str(k))
        _, out, _ = d.ctl("get", "c.>")
        self.assertEqual(out.splitlines(),
                         ["c.big " + BIG] + [f"c.k{k} {k}" for k in range(8)]
                         + ['c.obj { "b": 2,  "a": 1.50, "n": [-%s] }' % BIG])
        _, out, _ = d.ctl("--json", "get", "c.obj")
        self.assertIn('"data":{ "b": 2,  "a": 1.50, "n": [-%s] }' % BIG, out)
        self.assertEqual(json.loads(out)[0]["data"]["n"], [-int(BIG)])
        d.stop()

    def test_python_client(self):
        d = self.daemon()

        async def go():
            got = []
            async with cohort_client.Client(bus="unix:" + self.bus(d)) as c:
                await c.subscribe("p.>", got.append, qos=1)
                await c.publish("p.a", {"n": int(BIG), "f": 1.5}, qos=1, retain=True)
                await wait_until_async(self, lambda: got, what="the qos-1 message with a big integer")
                self.assertEqual(got[0]["data"], {"n": int(BIG), "f": 1.5})
                self.assertEqual([m["data"] for m in await c.get("p.a")], [{"n": int(BIG), "f": 1.5}])
        run(go())
        d.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
