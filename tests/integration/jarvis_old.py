#!/usr/bin/python3
"""A program written against the JARVIS stack's old coordination names,
moved to cohort by its import line alone (test_migration.py runs it).

    jarvis_old.py lock NAME OUT ROUNDS   enter/exit lines in OUT under the lock
    jarvis_old.py hold NAME SECONDS FLAG holds the lock, FLAG once held
    jarvis_old.py try NAME TIMEOUT       prints whether acquire yielded True
    jarvis_old.py sub TOPIC OUT FAILS    each delivery a JSON line in OUT; the
                                         first FAILS calls raise (no ack)
    jarvis_old.py pub TOPIC N ACK        N messages {"n": i}, ack_required=ACK
    jarvis_old.py state NAME JSON        update_state, then get_state printed
"""
import asyncio
import json
import os
import sys
import time

# The one line that changed in the migration (was: from jarvis_coordination import ...).
from cohort_compat import WebSocketCoordinator, get_lock_manager, get_state, update_state


def line(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, (text + "\n").encode())
    os.close(fd)


async def lock(name, out, rounds):
    manager = get_lock_manager()
    for _ in range(int(rounds)):
        async with manager.acquire(name, timeout=30.0, ttl=10.0) as acquired:
            if not acquired:
                sys.exit("not acquired within 30 s")
            line(out, f"enter {os.getpid()}")
            await asyncio.sleep(0.01)
            line(out, f"exit {os.getpid()}")


async def hold(name, seconds, flag):
    async with get_lock_manager().acquire(name, timeout=5.0, ttl=30.0) as acquired:
        assert acquired
        line(flag, "held")
        await asyncio.sleep(float(seconds))


async def try_lock(name, timeout):
    t0 = time.monotonic()
    async with get_lock_manager().acquire(name, timeout=float(timeout)) as acquired:
        print(json.dumps({"acquired": acquired, "waited": time.monotonic() - t0}), flush=True)


async def sub(topic, out, fails):
    left = [int(fails)]

    async def on_message(payload):
        # Read the way the old callbacks did: the payload's keys, and the
        # envelope's fields.
        rec = {"payload": dict(payload), "n": payload["n"], "message_id": payload["message_id"],
               "source": payload.source, "priority": payload.get("priority"),
               "ack_required": payload.ack_required, "topic": payload.topic}
        line(out, json.dumps(rec))
        if left[0] > 0:
            left[0] -= 1
            raise RuntimeError("callback failed: not acknowledged")

    await WebSocketCoordinator(source="old-sub").subscribe(topic, on_message)
    line(out + ".ready", "ready")
    await asyncio.sleep(3600)


async def pub(topic, n, ack):
    coord = WebSocketCoordinator(source="old-pub")
    for i in range(int(n)):
        await coord.publish(topic, {"n": i}, priority="high", ack_required=ack == "yes")


async def state(name, text):
    await update_state(name, json.loads(text))
    print(json.dumps(await get_state(name)), flush=True)


MODES = {"lock": lock, "hold": hold, "try": try_lock, "sub": sub, "pub": pub, "state": state}

if __name__ == "__main__":
    asyncio.run(MODES[sys.argv[1]](*sys.argv[2:]))
