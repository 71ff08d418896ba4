#!/usr/bin/python3
"""cohort_compat: the names the JARVIS stack's coordination module gave its
users, on cohortd's lock service and bus, so a program moves to cohort by
changing one import (doc/MIGRATING.md):

    from cohort_compat import (DistributedLockManager, get_lock_manager,
                               WebSocketCoordinator, get_state, update_state)

    manager = get_lock_manager()
    async with manager.acquire("vbia_state", timeout=5.0, ttl=10.0) as acquired:
        if acquired:
            ...

    coord = WebSocketCoordinator(source="prime")
    await coord.subscribe("vbia_events", on_event)      # on_event(payload)
    await coord.publish("vbia_events", {"kind": "seen"}, priority="high", ack_required=True)

    await update_state("prime_state", {"status": "ready"})
    state = await get_state("prime_state")              # None if never set

What each old name does here:
  - a lock is a cohort lease (lock.acquire): `timeout` is how long to wait
    for it (wait_ms), `ttl` how long it lasts if not released (ttl_ms).  The
    old lock files went stale after ttl; a lease likewise ends then.
  - publish sends the old envelope (message_id, message_type, topic,
    priority, timestamp, source, payload, ack_required) as the message's
    data; ack_required=True is qos 1 (stored, acknowledged, sent again until
    acknowledged), else qos 0.  priority is carried, not acted on: cohort
    delivers in publish order.
  - a subscriber's callback gets the payload dict.  The envelope's fields
    are readable on it too, by key when the payload has no key of that name
    (payload["message_id"]) and always as attributes (payload.message_id,
    payload.envelope): a callback that read either way keeps working.
    Subscriptions are qos 1, so an ack_required message is acknowledged
    once the callback returned, and sent again if it raised.
  - state is a retained value on topic STATE_PREFIX + name (jarvis.state.
    by default; $COHORT_STATE_PREFIX): update_state replaces it (as the old
    writers rewrote their file), get_state reads it.  cohortd's
    state_mirror_dir keeps each one as <dir>/<name>.json for programs that
    still read the files.

Inside a service cohortd started, $COHORT_BUS and $COHORT_TOKEN say where
the bus is and who we are; the client reconnects by itself
(cohort_client.py).  One connection per process and event loop is shared by
every object here.
"""
import asyncio
import contextlib
import os
import time
import uuid

import cohort_client

STATE_PREFIX = os.environ.get("COHORT_STATE_PREFIX", "jarvis.state.")
EVENTS_CAP = 1000   # vbia_events.json kept its last 1,000 entries

_clients = {}       # event loop -> connected cohort_client.Client
_connecting = {}    # event loop -> future of the Client being connected


async def client():
    """The process's bus connection in the running event loop (made on
    first use)."""
    loop = asyncio.get_running_loop()
    c = _clients.get(loop)
    if c is not None:
        return c
    fut = _connecting.get(loop)
    if fut is None:
        fut = _connecting[loop] = loop.create_future()
        try:
            # A program of the old kind ends without closing anything: a
            # short close_timeout keeps its exit from waiting 10 s.
            c = await cohort_client.Client(close_timeout=1.0).connect()
        except BaseException as e:
            del _connecting[loop]
            fut.set_exception(e)
            fut.exception()     # retrieved: no "never retrieved" warning
            raise
        _clients[loop] = c
        del _connecting[loop]
        c.exit_task = loop.create_task(_close_at_exit(loop, c))
        fut.set_result(c)
        return c
    return await fut


async def _close_at_exit(loop, c):
    """A program of the old kind ends its event loop (asyncio.run) without
    closing anything: when the loop cancels its tasks, this one closes the
    connection properly (quick), instead of letting it wait out its
    close_timeout."""
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        if _clients.get(loop) is c:
            del _clients[loop]
            await c.close()
        raise


async def close():
    """Closes the connection of the running event loop (the locks it holds
    are released by cohortd)."""
    c = _clients.pop(asyncio.get_running_loop(), None)
    if c is not None:
        c.exit_task.cancel()
        await c.close()


# --- locks ----------------------------------------------------------------------
class DistributedLockManager:
    """Named locks shared by the stack's processes: cohortd's lock service."""

    def __init__(self, bus_client=None):
        self._client = bus_client

    async def _bus(self):
        return self._client or await client()

    @contextlib.asynccontextmanager
    async def acquire(self, lock_name, timeout=5.0, ttl=10.0):
        """Yields True once lock_name is ours (for ttl seconds at most), or
        False when it was not free within timeout seconds."""
        bus = await self._bus()
        try:
            token = await bus.lock_acquire(lock_name, ttl_ms=max(1, int(ttl * 1000)),
                                           wait_ms=max(0, int(timeout * 1000)))
        except cohort_client.BusError as e:
            if str(e) != "timeout":
                raise
            token = None
        try:
            yield token is not None
        finally:
            if token is not None:
                with contextlib.suppress(cohort_client.BusError, ConnectionError):
                    # Not held any more (its ttl passed): nothing to release.
                    await bus.lock_release(lock_name, token)


_lock_manager = None


def get_lock_manager():
    """The process's one DistributedLockManager."""
    global _lock_manager
    if _lock_manager is None:
        _lock_manager = DistributedLockManager()
    return _lock_manager


# --- messages -------------------------------------------------------------------
ENVELOPE_FIELDS = ("message_id", "message_type", "topic", "priority", "timestamp", "source",
                   "payload", "ack_required")


class Payload(dict):
    """What a callback gets: the payload dict itself (it compares, iterates
    and serializes as the payload), with the envelope's fields readable as
    attributes and, where the payload has no such key, by key."""

    def __init__(self, payload, envelope):
        super().__init__(payload)
        self.envelope = envelope

    def __missing__(self, key):
        if key in ENVELOPE_FIELDS:
            return self.envelope[key]
        raise KeyError(key)

    def get(self, key, default=None):
        if dict.__contains__(self, key):
            return dict.__getitem__(self, key)
        if key in ENVELOPE_FIELDS:
            return self.envelope[key]
        return default

    def __getattr__(self, name):
        if name in ENVELOPE_FIELDS:
            return self.envelope[name]
        raise AttributeError(name)


def _envelope(msg):
    """The old envelope of a bus message: as sent by WebSocketCoordinator,
    or made up for one a plain cohort client published."""
    data = msg.get("data")
    if isinstance(data, dict) and "payload" in data and "message_id" in data:
        env = {k: data.get(k) for k in ENVELOPE_FIELDS}
    else:
        env = {"message_id": f"seq-{msg.get('seq')}", "message_type": "event", "topic": msg["topic"],
               "priority": "normal", "timestamp": msg.get("ts_ms", 0) / 1000, "source": None,
               "payload": data, "ack_required": msg.get("qos") == 1}
    env["topic"] = msg["topic"]
    return env


class WebSocketCoordinator:
    """Publish/subscribe between the stack's processes: cohortd's bus."""

    def __init__(self, source=None, bus_client=None):
        self.source = source or os.environ.get("COHORT_SERVICE") or f"pid-{os.getpid()}"
        self._client = bus_client

    async def _bus(self):
        return self._client or await client()

    async def publish(self, topic, payload, priority="normal", ack_required=False,
                      message_type="event"):
        """Sends payload (a dict) on topic; with ack_required, returns once
        cohortd stored it, and every subscriber gets it at least once.
        Returns the message_id."""
        env = {"message_id": uuid.uuid4().hex, "message_type": message_type, "topic": topic,
               "priority": priority, "timestamp": time.time(), "source": self.source,
               "payload": payload, "ack_required": bool(ack_required)}
        bus = await self._bus()
        await bus.publish(topic, env, qos=1 if ack_required else 0, mid=env["message_id"])
        return env["message_id"]

    async def subscribe(self, topic, callback):
        """callback(payload) (plain or async) for each message on topic."""
        async def deliver(msg):
            env = _envelope(msg)
            payload = env["payload"]
            arg = Payload(payload, env) if isinstance(payload, dict) else payload
            r = callback(arg)
            if asyncio.iscoroutine(r):
                await r
        bus = await self._bus()
        await bus.subscribe(topic, deliver, qos=1)

    async def unsubscribe(self, topic):
        await (await self._bus()).unsubscribe(topic)


# --- shared state ---------------------------------------------------------------
async def get_state(name):
    """The current value of state name (the dict the last update_state
    gave), or None."""
    msgs = await (await client()).get(STATE_PREFIX + name)
    return msgs[0]["data"] if msgs else None


async def update_state(name, state):
    """Makes state (a dict, or any JSON) the value of name; returns once
    cohortd stored it."""
    await (await client()).publish(STATE_PREFIX + name, state, qos=1, retain=True)
    return state


async def append_state(name, entry, cap=EVENTS_CAP):
    """For the event logs (vbia_events): adds entry to the list that is the
    value of name, keeping its last cap entries.  Not atomic across
    processes: hold get_lock_manager().acquire(name) around it, as the old
    writers held the lock of the file."""
    events = await get_state(name)
    events = (events if isinstance(events, list) else []) + [entry]
    return await update_state(name, events[-cap:])
