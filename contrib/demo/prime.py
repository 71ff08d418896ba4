#!/usr/bin/python3
"""prime: the first external service (phase 2, requires core). A line
protocol on DEMO_PORT_BASE+1: send a number, get back whether it is prime.
Ready when the port accepts (ready = tcp:...)."""
import asyncio
import os
import socketserver
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import demo_common as demo  # noqa: E402

NAME = "prime"


def is_prime(n):
    if n < 2:
        return False
    i = 2
    while i * i <= n:
        if n % i == 0:
            return False
        i += 1
    return True


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            try:
                n = int(line.strip())
                self.wfile.write(f"{n} {'prime' if is_prime(n) else 'composite'}\n".encode())
            except ValueError:
                self.wfile.write(b"error: send a whole number\n")


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


async def announce(bus):
    """Publishes a freshly found prime every two seconds."""
    n = 1000
    while True:
        n += 1
        while not is_prime(n):
            n += 1
        await bus.publish("prime.found", {"prime": n}, qos=1)
        await asyncio.sleep(2)


def main():
    core = demo.wait_for(demo.PORTS["core"], NAME)
    demo.log(NAME, f"core is up (pid {core['pid']})")
    demo.startup_delay()
    server = Server((demo.HOST, demo.PORTS[NAME]), Handler)
    demo.run_bus(NAME, announce)
    demo.record(NAME)
    demo.log(NAME, f"answering on tcp {demo.HOST}:{demo.PORTS[NAME]}")
    server.serve_forever()


if __name__ == "__main__":
    main()
