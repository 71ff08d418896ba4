#!/usr/bin/python3
"""/metrics benchmark: how long cohortd takes to render the Prometheus page
for 50 and 500 running services, as cohortd measures it itself
(cohort_metrics_render_seconds, the previous scrape's rendering: the text,
not the socket; /proc is read after each scrape, for the next, see
src/metrics/metrics_proc.c), and the whole scrape as a client sees it
(connect, request, read to the close), 50 ms apart.

Each figure is the median and p90 of BENCH_RUNS scrapes (default 200)."""
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time

BUILD = os.environ.get("COHORT_BUILDDIR", ".")
COHORTD = os.path.abspath(os.path.join(BUILD, "cohortd"))
RUNS = int(os.environ.get("BENCH_RUNS", "200"))


def scrape(path):
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(30)
        s.connect(path)
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"/metrics answered {head[:60]!r}")
    return body.decode()


def render_seconds(body):
    for line in body.splitlines():
        if line.startswith("cohort_metrics_render_seconds "):
            return float(line.split()[1])
    raise RuntimeError("no cohort_metrics_render_seconds in /metrics")


def stats(values):
    values = sorted(values)
    return statistics.median(values), values[max(0, int(len(values) * 0.9) - 1)]


def bench(n):
    tmp = tempfile.mkdtemp(prefix="cohort-bench-metrics.")
    conf = os.path.join(tmp, "cohort.ini")
    with open(conf, "w") as f:
        f.write(f"[cohort]\nrun_dir = {tmp}/run\nstate_dir = {tmp}/state\nlog_dir = {tmp}/log\n\n")
        for i in range(n):
            f.write(f"[service:s{i}]\ncommand = /bin/sleep 100000\nready = delay:0\n\n")
    log = open(os.path.join(tmp, "cohortd.log"), "w")
    d = subprocess.Popen([COHORTD, "-c", conf], stdout=log, stderr=log)
    sock = os.path.join(tmp, "run", "bus.sock")
    try:
        deadline = time.monotonic() + 120
        while True:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{n} services did not all run within 120 s")
            if os.path.exists(sock):
                body = scrape(sock)
                if sum(1 for l in body.splitlines() if l.startswith("cohort_service_up{") and l.endswith(" 1")) == n:
                    break
            time.sleep(0.2)
        render, whole = [], []
        for _ in range(RUNS):
            time.sleep(0.05)	# as between a scraper's scrapes: /proc is read again meanwhile
            t0 = time.perf_counter()
            body = scrape(sock)
            whole.append((time.perf_counter() - t0) * 1000)
            render.append(render_seconds(body) * 1000)
        size = len(body)
        lines = body.count("\n")
    finally:
        d.terminate()
        d.wait(60)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)
    r, w = stats(render[1:]), stats(whole)
    print(f"  {n:4d} services: render {r[0]:.3f} ms (p90 {r[1]:.3f}), whole scrape {w[0]:.3f} ms "
          f"(p90 {w[1]:.3f}); {size // 1024} KiB, {lines} lines")


def main():
    print(f"GET /metrics over the bus socket, {RUNS} scrapes (median, p90):")
    for n in (50, 500):
        bench(n)


if __name__ == "__main__":
    main()
