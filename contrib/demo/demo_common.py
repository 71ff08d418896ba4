"""Shared helpers of the demo services that stand in for the four
repositories of the stack cohort is first built for.

Each demo service is a small real program: it listens on a loopback port
(so cohort's tcp:/http:// readiness probes have something to check), talks
to the services it depends on, and records when it started so tests can
prove the phase order from the services' own clocks.

Environment:
  DEMO_PORT_BASE     first port (default 7400): core +0, prime +1,
                     reactor +2, trinity +3
  DEMO_RECORD        a file each service appends "NAME started WALL_MS PID"
                     to when it is up (optional)
  DEMO_START_DELAY   seconds to wait before listening (optional), to make
                     readiness observable
"""
import asyncio
import json
import os
import socket
import sys
import threading
import time

HOST = "127.0.0.1"
BASE = int(os.environ.get("DEMO_PORT_BASE", "7400"))
PORTS = {"core": BASE, "prime": BASE + 1, "reactor": BASE + 2, "trinity": BASE + 3}


def log(name, msg):
    print(f"{name}: {msg}", flush=True)


def record(name):
    path = os.environ.get("DEMO_RECORD")
    if path:
        with open(path, "a") as f:
            f.write(f"{name} started {int(time.time() * 1000)} {os.getpid()}\n")


def startup_delay():
    delay = float(os.environ.get("DEMO_START_DELAY", "0"))
    if delay > 0:
        time.sleep(delay)


def notify_ready(status):
    """sd_notify READY=1 (the systemd datagram protocol) when cohort asks
    for it with NOTIFY_SOCKET; otherwise nothing."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(f"READY=1\nSTATUS={status}".encode(), path)


def get_json(port, path="/state", timeout=1.0):
    """GET http://127.0.0.1:PORT/PATH and decode the JSON answer."""
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: {HOST}\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.") or b" 200 " not in head.split(b"\r\n")[0] + b" ":
        raise OSError(f"bad answer from port {port}: {head[:40]!r}")
    return json.loads(body or b"null")


def wait_for(port, name, deadline_s=30.0):
    """Wait until a dependency answers: cohort starts us only once it is
    ready, so this normally returns at once; it guards manual runs."""
    end = time.monotonic() + deadline_s
    while True:
        try:
            return get_json(port)
        except OSError as e:
            if time.monotonic() > end:
                log(name, f"dependency on port {port} not reachable: {e}")
                sys.exit(1)
            time.sleep(0.1)


def bus_client():
    """A cohort bus client for this service (COHORT_BUS / COHORT_TOKEN come
    from cohortd), or None when not run under cohortd."""
    if not os.environ.get("COHORT_BUS"):
        return None
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.join(here, "..", "python"))
    import cohort_client
    return cohort_client.Client()


def run_bus(name, main):
    """Runs `async main(client)` on an asyncio loop in a thread of its own,
    beside the service's (threaded) server; does nothing without a bus."""
    client = bus_client()
    if client is None:
        log(name, "no COHORT_BUS: not on the bus")
        return

    async def runner():
        await client.connect()
        await main(client)

    def thread():
        try:
            asyncio.run(runner())
        except Exception as e:   # the service goes on without the bus
            log(name, f"bus: {e}")

    threading.Thread(target=thread, daemon=True).start()
