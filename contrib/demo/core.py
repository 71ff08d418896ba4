#!/usr/bin/python3
"""core: the stack's core repository (phase 1). Serves the stack state over
HTTP on DEMO_PORT_BASE; ready when /health answers."""
import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import demo_common as demo  # noqa: E402
import httpd  # noqa: E402

NAME = "core"
started = time.time()
state = {"service": NAME, "pid": os.getpid(), "generation": 0}


def health():
    return {"ok": True, "uptime_s": round(time.time() - started, 1)}


def get_state():
    state["generation"] += 1
    return state


async def keep_state(bus):
    """The stack's shared state: a retained value everyone reads on subscribe."""
    while True:
        state["generation"] += 1
        await bus.publish("stack.state", {"core": "up", "generation": state["generation"],
                                          "ts": time.time()}, qos=1, retain=True)
        await asyncio.sleep(5)


def main():
    demo.startup_delay()
    server = httpd.serve(demo.HOST, demo.PORTS[NAME], {"/health": health, "/state": get_state})
    demo.run_bus(NAME, keep_state)
    demo.record(NAME)
    demo.log(NAME, f"serving the stack state on http://{demo.HOST}:{demo.PORTS[NAME]}/state")
    server.serve_forever()


if __name__ == "__main__":
    main()
