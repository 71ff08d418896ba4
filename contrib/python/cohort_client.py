#!/usr/bin/python3
"""cohort_client: the Python client of cohortd's message bus and lock
service (asyncio, and the `websockets` package: Debian python3-websockets).

    import asyncio, cohort_client

    async def main():
        bus = cohort_client.Client()            # $COHORT_BUS, $COHORT_TOKEN
        await bus.connect()
        await bus.subscribe("orders.>", on_order, qos=1)
        seq = await bus.publish("stack.state", {"up": True}, qos=1, retain=True)
        token = await bus.lock_acquire("db.migrate", ttl_ms=10000, wait_ms=5000)

Inside a service cohortd started, the environment says where the bus is
(COHORT_BUS=unix:PATH) and who we are (COHORT_TOKEN).  The client keeps
itself connected: when the connection drops it reconnects with exponential
backoff and jitter (100 ms doubling to 30 s), says hello with the same
session, subscribes again, and re-sends every qos-1 publish that got no ok
yet, with its mid, so the bus drops the ones it already had.  A qos-1
message is acknowledged once the callbacks of every matching subscription
returned; if one raises (the error is logged, the client goes on), or no
subscription of this client matches (a durable session's subscription
from an earlier client), it is not, and cohortd sends it again later.

A close that trying again cannot mend stops the client for good, logged
once: 1008 (a token cohortd does not know, as when the process outlived the
cohortd that started it; no token where one is needed; too many bad
requests) or 4000 (another client said hello with our session).  Every call
waiting or made after it raises Closed (a BusError) with the code and
reason, and so does `await bus.wait_closed()`, for a program that only
subscribes:

    try:
        await bus.wait_closed()
    except cohort_client.Closed as e:
        sys.exit(f"bus: {e}")

Wire protocol: one JSON object per WebSocket text frame, subprotocol
cohort.v1 (see cohortctl(1) and the README).
"""
import asyncio
import itertools
import json
import logging
import os
import random
import uuid

try:
    import websockets
    # websockets imports its client on first use of websockets.connect; two
    # threads doing that first use at once can break Python 3.11's import
    # locks (KeyError in importlib), so the client is imported here, once.
    from websockets import connect as ws_connect, unix_connect as ws_unix_connect
except ImportError as e:  # pragma: no cover
    raise ImportError("cohort_client needs the websockets package: apt-get install python3-websockets "
                      "(and run /usr/bin/python3)") from e

log = logging.getLogger("cohort_client")

PROTOCOL = "cohort.v1"
CLOSE_TAKEN_OVER = 4000     # a new hello took our session
CLOSE_POLICY = 1008         # bad or no token, too many bad requests
FINAL_CLOSES = (CLOSE_POLICY, CLOSE_TAKEN_OVER)     # trying again cannot mend these
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 30.0


class BusError(Exception):
    """The bus answered a request with an error."""


class Closed(BusError):
    """cohortd closed the connection for a reason trying again cannot mend:
    the client stopped for good.  code: 1008 or 4000; reason: why."""

    def __init__(self, code, reason):
        super().__init__(f"{reason} (close code {code}): not reconnecting")
        self.code = code
        self.reason = reason


def topic_matches(pattern, topic):
    """Does a subscription pattern (`*` one segment, `>` the rest) match topic?"""
    p, t = pattern.split("."), topic.split(".")
    if t and t[0].startswith("$") and p and p[0] in ("*", ">"):
        return False
    for i, seg in enumerate(p):
        if seg == ">":
            return len(t) > i
        if i >= len(t) or (seg != "*" and seg != t[i]):
            return False
    return len(p) == len(t)


class Client:
    def __init__(self, bus=None, token=None, session=None, clean=False, reconnect=True,
                 close_timeout=None):
        self.bus = bus or os.environ.get("COHORT_BUS") or "unix:/run/cohort/bus.sock"
        self.token = token if token is not None else os.environ.get("COHORT_TOKEN")
        self.session = session
        self.clean = clean
        self.reconnect = reconnect
        # How long a close waits for cohortd's answer (websockets' default,
        # 10 s, when None): also how long a program that ends its event
        # loop without close() waits at exit.
        self.close_timeout = close_timeout
        self.ws = None
        self.ids = itertools.count(1)
        self.waiting = {}        # id -> future
        self.subs = {}           # pattern -> (callback, qos)
        self.unacked = {}        # id -> qos-1 publish request, re-sent after a reconnect
        self.connected = asyncio.Event()
        self.closed = False
        self.reader = None
        self.resumed = False
        self.reconnects = 0
        self.taken_over = False  # another client took our session: we stopped
        self.ended = None        # the Closed that stopped the client for good

    # --- connection ---------------------------------------------------------
    async def _open(self):
        kw = {} if self.close_timeout is None else {"close_timeout": self.close_timeout}
        if self.bus.startswith("unix:"):
            ws = await ws_unix_connect(self.bus[5:], uri="ws://localhost/",
                                        subprotocols=[PROTOCOL], max_size=None, **kw)
        else:
            ws = await ws_connect(self.bus, subprotocols=[PROTOCOL], max_size=None, **kw)
        hello = {"op": "hello"}
        if self.token:
            hello["token"] = self.token
        if self.session:
            hello["session"] = self.session
            hello["clean"] = self.clean
            self.clean = False       # only the first hello cleans
        await ws.send(json.dumps(hello))
        answer = json.loads(await ws.recv())
        if answer.get("op") != "welcome":
            why = answer.get("error", f"unexpected answer to hello: {answer}")
            # the Close frame that follows a refusal says if trying again can help
            await ws.close()
            if ws.close_rcvd is not None and ws.close_rcvd.code in FINAL_CLOSES:
                raise Closed(ws.close_rcvd.code, why)
            raise BusError(why)
        self.resumed = answer.get("resumed", False)
        self.ws = ws
        # subscribe again, then send again what was not acknowledged
        for pattern, (_, qos) in self.subs.items():
            await self._send({"op": "sub", "id": next(self.ids), "topic": pattern, "qos": qos})
        for req in list(self.unacked.values()):
            await self._send(req)
        self.connected.set()

    async def connect(self):
        """Connects (and says hello); raises if the first attempt fails."""
        try:
            await self._open()
        except Closed as e:
            self._end(e)
            raise
        self.reader = asyncio.ensure_future(self._read_loop())
        return self

    async def close(self):
        self.closed = True
        if self.reader:
            self.reader.cancel()
        if self.ws:
            await self.ws.close()
        for fut in self.waiting.values():
            if not fut.done():
                fut.set_exception(ConnectionError("client closed"))

    async def __aenter__(self):
        return await self.connect()

    async def __aexit__(self, *exc):
        await self.close()

    async def _send(self, obj):
        try:
            await self.ws.send(json.dumps(obj))
        except websockets.ConnectionClosed as e:
            # the reader says it (once); the caller sees it now
            rcvd = getattr(e, "rcvd", None)
            if rcvd is not None and rcvd.code in FINAL_CLOSES:
                raise self.ended or Closed(rcvd.code, rcvd.reason) from None
            raise

    async def wait_closed(self):
        """Returns when the client stopped (closed, or not reconnecting);
        raises Closed if cohortd ended it for good."""
        if self.reader:
            await asyncio.shield(self.reader)
        if self.ended:
            raise self.ended

    def _end(self, e):
        """Stops for good on a close trying again cannot mend: said once."""
        log.error("cohort_client: %s", e)
        self.ended = e
        self.taken_over = e.code == CLOSE_TAKEN_OVER
        self.connected.set()     # wakes who waits to send: they raise e
        for fut in self.waiting.values():
            if not fut.done():
                fut.set_exception(e)
        self.waiting.clear()
        self.unacked.clear()

    async def _read_loop(self):
        while not self.closed:
            try:
                async for frame in self.ws:
                    await self._dispatch(json.loads(frame))
            except websockets.ConnectionClosed as e:
                # Another client said hello with our session (taking it back
                # would start a tug of war that never ends), or our token
                # died with the cohortd that gave it.
                rcvd = getattr(e, "rcvd", None)
                if rcvd is not None and rcvd.code in FINAL_CLOSES and not self.closed:
                    self._end(Closed(rcvd.code, rcvd.reason))
                    return
            except OSError:
                pass
            except asyncio.CancelledError:
                return
            if self.closed:
                return
            self.connected.clear()
            self._fail_waiting(all_of_them=not self.reconnect)
            if not self.reconnect:
                return
            try:
                await self._reconnect()
            except Closed as e:
                self._end(e)
                return

    def _fail_waiting(self, all_of_them=False):
        # qos-1 publishes wait on (they are sent again after a reconnect);
        # other requests fail, and everything does without reconnecting
        for rid, fut in list(self.waiting.items()):
            if (all_of_them or rid not in self.unacked) and not fut.done():
                fut.set_exception(ConnectionError("connection to cohortd lost"))
                del self.waiting[rid]
                self.unacked.pop(rid, None)

    async def _reconnect(self):
        delay = BACKOFF_FIRST
        while not self.closed:
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            try:
                await self._open()
                self.reconnects += 1
                return
            except Closed:
                raise
            except (OSError, websockets.InvalidHandshake, websockets.ConnectionClosed, BusError):
                delay = min(delay * 2, BACKOFF_MAX)

    async def _dispatch(self, m):
        op = m.get("op")
        if op == "msg":
            taken, failed = False, False
            for pattern, (cb, _) in list(self.subs.items()):
                if topic_matches(pattern, m["topic"]):
                    taken = True
                    try:
                        r = cb(m)
                        if asyncio.iscoroutine(r):
                            await r
                    except Exception:
                        failed = True
                        log.exception("cohort_client: the callback of %s failed on %s (seq %s): "
                                      "not acknowledged", pattern, m["topic"], m.get("seq"))
            if m.get("qos") == 1 and not m.get("retained") and taken and not failed:
                await self._send({"op": "ack", "seq": m["seq"]})
            return
        fut = self.waiting.pop(m.get("id"), None)
        self.unacked.pop(m.get("id"), None)
        if fut is None or fut.done():
            return
        if op == "error":
            fut.set_exception(BusError(m.get("error")))
        else:
            fut.set_result(m)

    async def _request(self, obj, keep=False):
        if self.ended:
            raise self.ended
        rid = next(self.ids)
        obj["id"] = rid
        fut = asyncio.get_running_loop().create_future()
        self.waiting[rid] = fut
        if keep:
            self.unacked[rid] = obj
        await self.connected.wait()
        if self.ended:
            raise self.ended
        try:
            await self._send(obj)
        except websockets.ConnectionClosed:
            if not keep:
                self.waiting.pop(rid, None)
                raise ConnectionError("connection to cohortd lost")
        return await fut

    # --- the ops ---------------------------------------------------------------
    async def publish(self, topic, data, qos=0, retain=False, mid=None):
        """qos 0: fire and forget.  qos 1: returns the seq once cohortd stored it."""
        req = {"op": "pub", "topic": topic, "data": data, "qos": qos, "retain": retain}
        if qos == 1:
            req["mid"] = mid or uuid.uuid4().hex
            return (await self._request(req, keep=True))["seq"]
        if mid:
            req["mid"] = mid
        await self.connected.wait()
        if self.ended:
            raise self.ended
        await self._send(req)
        return None

    async def subscribe(self, pattern, callback, qos=0):
        """callback(msg) (may be async) gets each matching message."""
        prev = self.subs.get(pattern)
        self.subs[pattern] = (callback, qos)    # before the ok: retained values follow it
        try:
            await self._request({"op": "sub", "topic": pattern, "qos": qos})
        except BusError:
            # refused: not to be sent again at every reconnect
            if prev is None:
                self.subs.pop(pattern, None)
            else:
                self.subs[pattern] = prev
            raise

    async def unsubscribe(self, pattern):
        self.subs.pop(pattern, None)
        await self._request({"op": "unsub", "topic": pattern})

    async def get(self, pattern):
        """The retained values matching pattern: [{topic, data, seq, ts_ms}]."""
        return (await self._request({"op": "get", "topic": pattern}))["messages"]

    async def ping(self):
        await self._request({"op": "ping"})

    async def lock_acquire(self, name, ttl_ms=30000, wait_ms=0, mode="exclusive", pgid=None,
                           stop_timeout_ms=5000):
        """Returns the fencing token; BusError("timeout") if not had within wait_ms.
        pgid (unix socket only): the process group of the work under the lease, which
        cohortd stops (TERM, KILL after stop_timeout_ms) before the next holder starts
        if the lease is lost other than by lock_release."""
        req = {"op": "lock.acquire", "name": name, "ttl_ms": ttl_ms, "wait_ms": wait_ms, "mode": mode}
        if pgid is not None:
            req.update(pgid=pgid, stop_timeout_ms=stop_timeout_ms)
        r = await self._request(req)
        return r["token"]

    async def lock_renew(self, name, token, ttl_ms=30000):
        return (await self._request({"op": "lock.renew", "name": name, "token": token,
                                     "ttl_ms": ttl_ms}))["expires_ms"]

    async def lock_release(self, name, token):
        await self._request({"op": "lock.release", "name": name, "token": token})
