#!/usr/bin/python3
"""reactor: the second external service (phase 2, requires core). Serves
/state on DEMO_PORT_BASE+2 and tells cohort it is ready with sd_notify
(ready = notify), the way a program written for systemd does."""
import asyncio
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import demo_common as demo  # noqa: E402
import httpd  # noqa: E402

NAME = "reactor"
events = {"service": NAME, "pid": os.getpid(), "reactions": 0}


def react():
    while True:
        events["reactions"] += 1
        time.sleep(1)


async def report(bus):
    """Publishes what it reacted to, every three seconds."""
    while True:
        await asyncio.sleep(3)
        await bus.publish("reactor.event", {"reactions": events["reactions"]}, qos=1)


def main():
    core = demo.wait_for(demo.PORTS["core"], NAME)
    demo.log(NAME, f"core is up (pid {core['pid']})")
    demo.startup_delay()
    server = httpd.serve(demo.HOST, demo.PORTS[NAME], {"/state": lambda: events})
    threading.Thread(target=react, daemon=True).start()
    demo.run_bus(NAME, report)
    demo.record(NAME)
    demo.notify_ready(f"reacting on port {demo.PORTS[NAME]}")
    demo.log(NAME, f"ready (sd_notify), state on http://{demo.HOST}:{demo.PORTS[NAME]}/state")
    server.serve_forever()


if __name__ == "__main__":
    main()
