#!/usr/bin/python3
"""trinity: the integration layer (phase 3, requires prime and reactor).
Combines what the other three serve into one view on DEMO_PORT_BASE+3."""
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


def main():
    demo.wait_for(demo.PORTS["core"], NAME)
    demo.wait_for(demo.PORTS["reactor"], NAME)
    demo.log(NAME, f"prime says: {ask_prime(7919)}")
    demo.startup_delay()
    server = httpd.serve(demo.HOST, demo.PORTS[NAME],
                         {"/health": lambda: {"ok": True}, "/view": view})
    demo.record(NAME)
    demo.log(NAME, f"integrating on http://{demo.HOST}:{demo.PORTS[NAME]}/view")
    server.serve_forever()


if __name__ == "__main__":
    main()
