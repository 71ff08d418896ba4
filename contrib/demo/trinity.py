#!/usr/bin/python3
"""trinity: the integration layer (phase 3, requires prime and reactor).
Combines what the other three serve into one view on DEMO_PORT_BASE+3."""
import asyncio
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import demo_common as demo  # noqa: E402
import httpd  # noqa: E402

NAME = "trinity"


def ask_prime(n):
    with socket.create_connection((demo.HOST, demo.PORTS["prime"]), timeout=1) as s:
        s.sendall(f"{n}\n".encode())
        return s.makefile().readline().strip()


def view():
    return {
        "core": demo.get_json(demo.PORTS["core"]),
        "reactor": demo.get_json(demo.PORTS["reactor"]),
        "prime": ask_prime(7919),
    }


heard = {"messages": 0}


async def listen(bus):
    """Integrates by listening: what prime and reactor publish, and the
    stack state core keeps retained (pushed, no polling)."""
    def got(m):
        heard["messages"] += 1
        heard[m["topic"]] = m["data"]
        demo.log(NAME, f"heard {m['topic']}: {m['data']}")
    await bus.subscribe("prime.>", got, qos=1)
    await bus.subscribe("reactor.>", got, qos=1)
    await bus.subscribe("stack.state", got)
    await asyncio.Event().wait()


def main():
    demo.wait_for(demo.PORTS["core"], NAME)
    demo.wait_for(demo.PORTS["reactor"], NAME)
    demo.log(NAME, f"prime says: {ask_prime(7919)}")
    demo.startup_delay()
    server = httpd.serve(demo.HOST, demo.PORTS[NAME],
                         {"/health": lambda: {"ok": True}, "/view": view, "/heard": lambda: heard})
    demo.run_bus(NAME, listen)
    demo.record(NAME)
    demo.log(NAME, f"integrating on http://{demo.HOST}:{demo.PORTS[NAME]}/view")
    server.serve_forever()


if __name__ == "__main__":
    main()
