#!/usr/bin/python3
"""Torture: cohortd attacked the way a reliability engineer would, with real
processes, sockets and files (issue 14, item 6).  `make torture` runs it.

  kill9    for each bus_fsync (always, batch, never): a qos-1 publisher
           (the Python client, counting each acknowledged message), a
           durable subscriber (counting what it receives, de-duplicated by
           the message's number; away every other round, so that what is
           acknowledged then is queued only in the journal when the kill
           comes) and two lock takers (recording every fencing token
           granted) run while cohortd is killed with SIGKILL at a random
           moment, then started again on the same state_dir.
           At the end every acknowledged message must have reached the
           subscriber, nothing it never published, and no token may repeat
           or go backwards across the restarts.
  corrupt  a stopped cohortd's journal damaged (bits flipped, a range
           zeroed, or the file cut short) inside its queued messages: it
           must start, lose the damaged records only, and keep the damaged
           file as found as *.corrupt when it reports corruption.
  soak     a service that exits at once, restarted as fast as cohortd can
           (backoff_initial = 0, breaker off): cohortd's descriptors,
           threads and RSS must stay flat.
  disk     a 512k tmpfs state_dir filled while publishing qos-1 and taking
           locks: both are refused with the reason while it is full,
           nothing acknowledged is lost (across a kill -9 too), and both
           work again once there is room, without a restart.

What a kill -9 of cohortd may lose, by bus_fsync: nothing, in all three.
The journal's writer thread hands records to the kernel with write(2)
(always: then fdatasync per batch of records; batch: one fdatasync for what
one loop iteration queued; never: none) and only then are the oks sent, so
an acknowledged record is in the page cache at least, which survives the
process.  bus_fsync only matters when the machine itself goes down: then
`never` may lose what the page cache had not written back (seconds of
oks), `batch` and `always` nothing acknowledged.  This program kills the
process, not the machine, so it checks zero loss for every setting.

Usage: torture.py [--rounds full|small|N] [--seconds S] [--only kill9,...]
  full: 40 kill -9 rounds per bus_fsync (120), 24 corruption rounds,
        100,000 restarts, the full-disk round
  small: 4 per bus_fsync, 6 corruption rounds, 5,000 restarts, full disk
  N: N kill -9 rounds per bus_fsync, the rest as small
One line per round, a summary, exit 1 on any violation (2: usage).
"""
import argparse
import asyncio
import collections
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("COHORT_SRCDIR", os.path.dirname(os.path.dirname(HERE)))
os.environ.setdefault("COHORT_SRCDIR", SRC)
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))
sys.path.insert(0, os.path.join(SRC, "contrib", "python"))
import harness  # noqa: E402
import cohort_client  # noqa: E402
import websockets  # noqa: E402

IDLE = """
[service:idle]
command = /bin/sleep 1000
ready = delay:0
"""
LOST_CONNECTION = (ConnectionError, websockets.ConnectionClosed, OSError, asyncio.TimeoutError)


class Violation(Exception):
    """A guarantee did not hold."""


class Checker(unittest.TestCase):
    """The harness reports through a TestCase: its failures end a round."""

    def runTest(self):   # pragma: no cover - never run, needed to construct
        pass


class Totals:
    def __init__(self):
        self.acked = self.received = self.lost = self.duplicated = self.phantom = 0
        self.tokens = self.repeats = 0
        self.damaged = 0            # records lost to journal damage (allowed)
        self.rounds = 0
        self.violations = []

    def violation(self, what):
        self.violations.append(what)
        print(f"  VIOLATION: {what}", flush=True)


def say(line):
    print(line, flush=True)


def run(coro, timeout=120):
    return asyncio.run(asyncio.wait_for(coro, timeout * harness.FACTOR))


class Stack:
    """A cohortd on a state_dir and run_dir that outlive it, so that it can
    be killed and started again on the same journal and lock counter."""

    def __init__(self, checker, top, extra="", services=IDLE):
        self.checker = checker
        self.state = os.path.join(top, "state")
        self.run_dir = os.path.join(top, "run")
        self.text = f"[cohort]\nstate_dir = {self.state}\nrun_dir = {self.run_dir}\n{extra}" + services
        self.d = None

    @property
    def bus(self):
        return "unix:" + os.path.join(self.run_dir, "bus.sock")

    def start(self):
        self.d = harness.Cohortd(self.checker, self.text)
        self.d.run_dir = self.run_dir
        self.d.wait_log(r"^stack is up", timeout=30)
        self.d.wait_socket()
        return self.d

    def kill(self):
        """SIGKILL, and the services it leaves (this process is their
        subreaper) ended, as a machine's reboot would."""
        self.d.proc.send_signal(signal.SIGKILL)
        self.d.proc.wait(10 * harness.FACTOR)
        self.d.returncode = -9
        self.d.cleanup()
        harness.end_orphans()

    def stop(self):
        self.d.stop()
        self.d.cleanup()
        harness.end_orphans()


# --- kill -9 rounds -------------------------------------------------------------

class KillState:
    """What one bus_fsync setting's rounds saw, across its restarts."""

    def __init__(self):
        self.next = 0
        self.sent, self.acked = set(), set()
        self.received = {}          # n -> times delivered
        self.last_retained = -1
        self.max_token = 0          # the highest token of the rounds before
        self.tokens = set()


async def kill_round(stack, st, rnd, seconds, totals, online):
    """Publishes, subscribes (if online) and takes locks until cohortd is
    killed at a random moment; returns (acked, received, tokens) of the
    round.  Every other round the subscriber stays away, so that what is
    acknowledged then is only in the journal, queued for it, at the kill."""
    round_acked, round_tokens, got = [0], [], [0]

    def on_msg(m):
        if m.get("retained"):
            return      # the current value given at subscribe, not a delivery
        n = m["data"]["n"]
        st.received[n] = st.received.get(n, 0) + 1
        got[0] += 1

    subs = []
    if online:
        subs.append(cohort_client.Client(bus=stack.bus, session="torture-sub", reconnect=False))
        await subs[0].connect()
        await subs[0].subscribe("torture.>", on_msg, qos=1)
    pub = cohort_client.Client(bus=stack.bus, reconnect=False)
    await pub.connect()
    takers = [cohort_client.Client(bus=stack.bus, reconnect=False) for _ in range(2)]
    for t in takers:
        await t.connect()

    async def publish():
        try:
            while True:
                n = st.next
                st.next += 1
                st.sent.add(n)
                retain = n % 7 == 0
                await pub.publish("torture.state" if retain else "torture.msg", {"n": n},
                                  qos=1, retain=retain)
                st.acked.add(n)
                round_acked[0] += 1
                if retain:
                    st.last_retained = max(st.last_retained, n)
        except LOST_CONNECTION:
            pass

    async def take(c):
        mine = []
        try:
            while True:
                try:
                    token = await c.lock_acquire("torture.lock", ttl_ms=5000, wait_ms=2000)
                except cohort_client.BusError as e:
                    if "timeout" in str(e):
                        continue
                    raise
                if mine and token <= mine[-1]:
                    totals.violation(f"token {token} granted after {mine[-1]} to the same taker")
                mine.append(token)
                round_tokens.append(token)
                await c.lock_release("torture.lock", token)
        except LOST_CONNECTION:
            pass
        except cohort_client.BusError as e:
            totals.violation(f"lock refused during a kill -9 round: {e}")

    # 16 publishes in flight: a batch's oks are pending at any moment
    tasks = [asyncio.ensure_future(publish()) for _ in range(16)]
    tasks += [asyncio.ensure_future(take(t)) for t in takers]
    delay = rnd.uniform(0.1, seconds)
    await asyncio.sleep(delay)
    stack.d.proc.send_signal(signal.SIGKILL)      # mid-stream: oks and grants in flight
    done, pending = await asyncio.wait(tasks, timeout=20 * harness.FACTOR)
    for t in pending:
        t.cancel()
        totals.violation("a client did not notice cohortd's death within 20 s")
    for t in done:
        if t.exception():
            totals.violation(f"a client failed: {t.exception()!r}")
    for c in subs + [pub] + takers:
        await c.close()
    return delay, round_acked[0], got[0], round_tokens


def check_tokens(st, round_tokens, totals, where):
    """Tokens never repeat, and a restart never goes back below the
    highest token granted before it."""
    twice = [t for t in round_tokens if t in st.tokens]
    st.tokens.update(round_tokens)
    twice += [t for t, n in collections.Counter(round_tokens).items() if n > 1]
    repeats = len(twice)
    if twice:
        totals.violation(f"{where}: {len(twice)} tokens granted twice: {sorted(twice)[:10]}")
    if round_tokens and min(round_tokens) <= st.max_token:
        repeats += 1
        totals.violation(f"{where}: token {min(round_tokens)} after a restart is not above "
                         f"{st.max_token}, the highest granted before")
    if round_tokens:
        st.max_token = max(st.max_token, max(round_tokens))
    totals.tokens += len(round_tokens)
    totals.repeats += repeats


def session_settled(stack, key):
    """True once cohortd holds nothing more for the durable session key:
    nothing queued (sent and not yet acked counts as queued) or spilled."""
    for s in stack.d.request({"cmd": "status"})["bus"]["sessions"]:
        if s["session"] == key:
            return s["queued"] == 0 and s["spilled"] == 0
    return True


async def drain(stack, st, quiet=3.0, deadline=60.0):
    """Reads the durable session's queue until every acknowledged message
    is there, or cohortd has nothing more for it (asked once nothing came
    for `quiet` seconds: a loaded machine may pause a delivery that long);
    returns the retained value of torture.state."""
    def on_msg(m):
        if not m.get("retained"):
            n = m["data"]["n"]
            st.received[n] = st.received.get(n, 0) + 1
    sub = cohort_client.Client(bus=stack.bus, session="torture-sub", reconnect=False)
    await sub.connect()
    await sub.subscribe("torture.>", on_msg, qos=1)
    end = time.monotonic() + deadline * harness.FACTOR
    seen, still = len(st.received), time.monotonic()
    while not st.acked <= st.received.keys() and time.monotonic() < end:
        await asyncio.sleep(0.05)
        if len(st.received) != seen:
            seen, still = len(st.received), time.monotonic()
        elif time.monotonic() - still > quiet * harness.FACTOR:
            # an ack is sent after its callback: what the session still
            # holds would come, and what it does not hold is lost
            if session_settled(stack, "admin/torture-sub"):
                break
            still = time.monotonic()
    values = await sub.get("torture.state")
    await sub.close()
    return values


def kill9(fsync, rounds, seconds, rnd, totals, top):
    checker = Checker()
    stack = Stack(checker, os.path.join(top, f"kill9-{fsync}"), f"bus_fsync = {fsync}\n")
    st = KillState()
    for r in range(1, rounds + 1):
        stack.start()
        delay, acked, got, tokens = run(kill_round(stack, st, rnd, seconds, totals, r % 2 == 1))
        stack.d.proc.wait(10 * harness.FACTOR)
        stack.kill()
        seen = f"{got} received" if r % 2 == 1 else "subscriber away"
        say(f"kill9 {fsync:6} round {r}/{rounds}: killed after {delay:.2f}s; {acked} acked, "
            f"{seen}, {len(tokens)} tokens (highest {max(tokens, default=st.max_token)})")
        check_tokens(st, tokens, totals, f"kill9 {fsync} round {r}")
        totals.rounds += 1
    stack.start()
    values = run(drain(stack, st))
    stack.stop()
    lost = sorted(st.acked - st.received.keys())
    phantom = sorted(st.received.keys() - st.sent)
    dups = sum(c - 1 for c in st.received.values())
    totals.acked += len(st.acked)
    totals.received += len(st.received)
    totals.lost += len(lost)
    totals.duplicated += dups
    totals.phantom += len(phantom)
    say(f"kill9 {fsync:6} total: {len(st.acked)} acked, {len(lost)} lost (allowed 0), {dups} duplicated, "
        f"{len(phantom)} never published, {len(st.tokens)} tokens, last retained {st.last_retained}")
    if lost:
        totals.violation(f"kill9 {fsync}: {len(lost)} acknowledged messages lost: {lost[:10]}")
    if phantom:
        totals.violation(f"kill9 {fsync}: delivered but never published: {phantom[:10]}")
    if st.last_retained >= 0 and (len(values) != 1 or values[0]["data"]["n"] < st.last_retained):
        totals.violation(f"kill9 {fsync}: retained torture.state is {values}, "
                         f"acknowledged up to {st.last_retained}")


# --- journal corruption rounds ----------------------------------------------------

MAGIC = b"COHJRNL1"
MARK = b"torture-msg-"


def records(data):
    """[(offset, end)] of the framed records of a segment (8-byte header:
    length and CRC-32C, little-endian, then the payload)."""
    out, off = [], len(MAGIC)
    while off + 8 <= len(data):
        n = int.from_bytes(data[off:off + 4], "little")
        if n == 0 or off + 8 + n > len(data):
            break
        out.append((off, off + 8 + n))
        off += 8 + n
    return out


def damage(data, rnd):
    """Damages data inside the message records; returns (new data, kind,
    damaged byte offsets as a set, or the cut offset for a truncation)."""
    recs = [(a, b) for a, b in records(data) if MARK in data[a:b]]
    lo = recs[0][0]
    kind = rnd.choice(("flip", "flip", "zero", "truncate"))
    buf = bytearray(data)
    if kind == "flip":
        where = {rnd.randrange(lo, len(data)) for _ in range(rnd.randint(1, 3))}
        for at in where:
            buf[at] ^= 1 << rnd.randrange(8)
        return bytes(buf), f"flip {len(where)} bit(s) at {sorted(where)}", where
    if kind == "zero":
        at = rnd.randrange(lo, len(data) - 1)
        n = min(rnd.randint(1, 300), len(data) - at)
        buf[at:at + n] = bytes(n)
        return bytes(buf), f"zero {n} bytes at {at}", set(range(at, at + n))
    cut = rnd.randrange(lo + 1, len(data))
    return bytes(buf[:cut]), f"truncate to {cut} of {len(data)}", set(range(cut, len(data)))


def corrupt_round(r, rounds, rnd, totals, top, count=40):
    checker = Checker()
    stack = Stack(checker, os.path.join(top, f"corrupt-{r}"), "bus_fsync = always\n")
    stack.start()

    async def fill():
        async with cohort_client.Client(bus=stack.bus, session="keeper") as s:
            await s.subscribe("kept.>", lambda m: None, qos=1)
        async with cohort_client.Client(bus=stack.bus) as c:
            for i in range(count):
                await c.publish("kept.x", f"torture-msg-{i:04d}", qos=1)
    run(fill())
    stack.stop()
    seg_dir = os.path.join(stack.state, "bus")
    segs = sorted(f for f in os.listdir(seg_dir) if f.endswith(".seg"))
    seg = os.path.join(seg_dir, segs[-1])
    with open(seg, "rb") as f:
        data = f.read()
    recs = [(a, b) for a, b in records(data) if MARK in data[a:b]]
    if len(recs) != count:
        totals.violation(f"corrupt round {r}: {len(recs)} message records in {seg}, not {count}")
        return
    bad, kind, where = damage(data, rnd)
    with open(seg, "wb") as f:
        f.write(bad)
    lost = {i for i, (a, b) in enumerate(recs) if any(a <= w < b for w in where)}
    expected = [f"torture-msg-{i:04d}" for i in range(count) if i not in lost]

    d = stack.start()
    corrupt_logged = d.count(r"bus journal: corruption: \d+ damaged place") > 0

    async def collect():
        got, done = [], asyncio.Event()

        def on(m):
            if m["data"] == "marker":
                done.set()
            else:
                got.append(m["data"])
        s = cohort_client.Client(bus=stack.bus, session="keeper")
        s.subs["kept.>"] = (on, 1)
        await s.connect()
        async with cohort_client.Client(bus=stack.bus) as c:
            await c.publish("kept.x", "marker", qos=1)
        await asyncio.wait_for(done.wait(), 20 * harness.FACTOR)
        await s.close()
        return got
    got = run(collect())
    stack.stop()
    # the damaged file was rewritten with its good records: the next start
    # finds nothing to report
    again = stack.start()
    clean = again.count(r"corrupt|torn tail") == 0
    stack.stop()
    kept = seg + ".corrupt"
    say(f"corrupt round {r}/{rounds}: {kind}: {count - len(got)} of {count} records lost "
        f"(damaged: {len(lost)}), corruption {'logged' if corrupt_logged else 'not logged'}, "
        f"{'.corrupt kept' if os.path.exists(kept) else 'no .corrupt'}")
    totals.rounds += 1
    totals.damaged += len(lost)
    totals.lost += len(set(expected) - set(got))     # undamaged records lost
    if got != expected:
        missing = sorted(set(expected) - set(got))
        extra = sorted(set(got) - set(expected))
        totals.violation(f"corrupt round {r} ({kind}): damaged records {sorted(lost)}; "
                         f"undamaged ones lost: {missing[:10]}, unexpected: {extra[:10]}, "
                         f"order kept: {sorted(got) == got}")
    if not clean:
        totals.violation(f"corrupt round {r} ({kind}): the start after recovery reported damage again")
    # Damage wholly before the last record cannot pass for a torn tail.
    if not kind.startswith("truncate") and max(where) < recs[-1][0] and not corrupt_logged:
        totals.violation(f"corrupt round {r} ({kind}): damage before the last record not "
                         f"reported as corruption")
    if corrupt_logged:
        if not os.path.exists(kept):
            totals.violation(f"corrupt round {r} ({kind}): corruption logged, {kept} missing")
        else:
            with open(kept, "rb") as f:
                if f.read() != bad:
                    totals.violation(f"corrupt round {r} ({kind}): {kept} is not the file as found")


# --- the restart soak ---------------------------------------------------------------

def proc_figures(pid):
    """(open descriptors, threads, RSS in KiB) of pid."""
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return fds, int(fields["Threads"]), int(fields["VmRSS"].split()[0])


def soak(restarts, totals, top):
    """cohortd runs with its log in a file (100,000 restarts log 200,000
    lines), polled through cohortctl status."""
    d = os.path.join(top, "soak")
    os.makedirs(d)
    conf = os.path.join(d, "cohort.ini")
    with open(conf, "w") as f:
        f.write(f"[cohort]\nrun_dir = {d}/run\nlog_dir = {d}/log\nstate_dir = {d}/state\n"
                "[service:flap]\ncommand = /bin/true\nbackoff_initial = 0\nbreaker_failures = 0\n")
    with open(harness.COHORTD, "rb") as f:
        asan = b"__asan_init" in f.read()
    log = open(os.path.join(d, "cohortd.log"), "w")
    # Under ASan freed memory waits in a quarantine (256 MB) before reuse:
    # 100,000 restarts would fill it; the soak needs no use-after-free
    # detection across restarts.
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = ":".join(filter(None, [env.get("ASAN_OPTIONS"), "quarantine_size_mb=0"]))
    p = subprocess.Popen([harness.COHORTD, "-c", conf], stdin=subprocess.DEVNULL, stdout=log,
                         stderr=subprocess.STDOUT, env=env)
    sock = os.path.join(d, "run", "control.sock")

    def count():
        r = subprocess.run([harness.COHORTCTL, "-s", sock, "--json", "status", "flap"],
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            return None
        s = json.loads(r.stdout.splitlines()[0])["services"][0]
        return s["restarts"], s["state"]

    def wait_restarts(n):
        last, since = -1, time.monotonic()
        while True:
            if p.poll() is not None:
                raise Violation(f"soak: cohortd exited with {p.returncode}")
            c = count() if os.path.exists(sock) else None
            if c and c[0] >= n:
                return c
            if c and c[0] != last:
                last, since = c[0], time.monotonic()
            elif time.monotonic() - since > 30 * harness.FACTOR:
                raise Violation(f"soak: no restart for 30 s at {last} ({c})")
            time.sleep(0.2)
    t0 = time.monotonic()
    try:
        warm = min(2000, restarts // 10)
        wait_restarts(warm)
        base = proc_figures(p.pid)
        marks = []
        for i in range(1, 5):
            wait_restarts(warm + (restarts - warm) * i // 4)
            marks.append(proc_figures(p.pid))
        end = marks[-1]
    except Violation as e:
        totals.violation(str(e))
        p.kill()
        p.wait()
        return
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            p.wait(30)
        log.close()
        harness.end_orphans()
    secs = time.monotonic() - t0
    totals.rounds += 1
    say(f"soak: {restarts} restarts in {secs:.0f}s; descriptors {base[0]} -> "
        f"{' -> '.join(str(m[0]) for m in marks)}, threads {base[1]} -> {end[1]}, "
        f"RSS {base[2]} -> {' -> '.join(str(m[2]) for m in marks)} KiB")
    if p.returncode != 0:
        totals.violation(f"soak: cohortd exited with {p.returncode} at SIGTERM")
    with open(os.path.join(d, "cohortd.log"), errors="replace") as f:
        for line in f:
            if any(bad in line for bad in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                                           "runtime error:")):
                totals.violation(f"soak: sanitizer report: {line.strip()}")
                break
    if end[0] > base[0] + 2:
        totals.violation(f"soak: descriptors grew from {base[0]} to {end[0]}")
    if end[1] > base[1] + 1:
        totals.violation(f"soak: threads grew from {base[1]} to {end[1]}")
    # A leak of even a few bytes per restart grows without end: the last
    # three quarters must not keep climbing past allocator noise.  Under
    # ASan, even without its quarantine, its allocator's bookkeeping grows
    # (some 240 bytes a restart, where the plain build stays flat): there
    # LeakSanitizer's report at exit is the check.
    if asan:
        say("soak: RSS not judged: cohortd is built with ASan")
    elif end[2] > base[2] + max(2048, base[2] // 10):
        totals.violation(f"soak: RSS grew from {base[2]} to {end[2]} KiB")


# --- the full-disk round ------------------------------------------------------------

NOSPACE = "No space left on device"
LOCK_TOKEN_BLOCK = 10000        # src/core/lock.h: tokens reserved per write of the counter


def full_disk(totals, top):
    checker = Checker()
    root = os.path.join(top, "disk")
    os.makedirs(root)
    stack = Stack(checker, root, "bus_fsync = always\n")
    os.mkdir(stack.state)
    m = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", stack.state],
                       capture_output=True, text=True)
    if m.returncode != 0:
        say(f"disk: skipped: cannot mount a tmpfs here: {m.stderr.strip()}")
        return
    try:
        full_disk_on(stack, totals)
    finally:
        harness.end_orphans()
        subprocess.run(["umount", "-l", stack.state])


def full_disk_on(stack, totals):
    # Half the space goes to a file freed later: the journal fills the rest.
    filler = os.path.join(stack.state, "filler")
    with open(filler, "wb") as f:
        f.write(b"x" * 256 * 1024)
    d = stack.start()
    acked, tokens, refusals = set(), [], {"pub": [], "lock": []}

    async def fill():
        async with cohort_client.Client(bus=stack.bus, session="disk-sub") as s:
            await s.subscribe("disk.>", lambda m: None, qos=1)
        pub = cohort_client.Client(bus=stack.bus)
        await pub.connect()
        taker = cohort_client.Client(bus=stack.bus)
        await taker.connect()
        stuck = {}

        full = asyncio.Event()      # the first publish refused

        async def take():
            # Tokens are reserved LOCK_TOKEN_BLOCK at a time: once the disk
            # is full, a grant is refused within one block.
            since_full = 0
            while since_full <= LOCK_TOKEN_BLOCK:
                try:
                    t = await taker.lock_acquire("disk.lock", ttl_ms=5000)
                except cohort_client.BusError as e:
                    refusals["lock"].append(str(e))
                    return
                tokens.append(t)
                await taker.lock_release("disk.lock", t)
                since_full += full.is_set()
        taking = asyncio.ensure_future(take())
        n = 0
        while len(refusals["pub"]) < 3 and n < 5000:
            task = asyncio.ensure_future(pub.publish("disk.msg", {"n": n, "pad": "x" * 2000}, qos=1))
            done, _ = await asyncio.wait({task}, timeout=2 * harness.FACTOR)
            if not done:
                stuck[n] = task         # taken, not yet written: acked once it is
            elif task.exception():
                if not isinstance(task.exception(), cohort_client.BusError):
                    raise task.exception()
                refusals["pub"].append(str(task.exception()))
                full.set()
            else:
                acked.add(n)
            n += 1
        await taking
        full_pubs, full_tokens = n, len(tokens)
        # room again: what was taken is written and acknowledged, and new
        # publishes and grants work, without a restart
        os.unlink(filler)
        for k, task in stuck.items():
            await asyncio.wait_for(task, 20 * harness.FACTOR)
            acked.add(k)
        deadline = time.monotonic() + 20 * harness.FACTOR
        while True:
            try:
                await pub.publish("disk.msg", {"n": n, "pad": ""}, qos=1)
                acked.add(n)
                break
            except cohort_client.BusError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
        t = await taker.lock_acquire("disk.lock", ttl_ms=5000)
        tokens.append(t)
        await pub.close()
        await taker.close()
        return full_pubs, full_tokens, len(stuck)
    pubs, full_tokens, stuck = run(fill(), timeout=300)
    d.wait_log(r"bus journal .*: written again")
    stack.kill()
    # after a kill -9 the journal on the tmpfs holds every acknowledged message
    stack.start()

    async def collect():
        got = set()
        s = cohort_client.Client(bus=stack.bus, session="disk-sub")
        s.subs["disk.>"] = (lambda m: got.add(m["data"]["n"]), 1)
        await s.connect()
        deadline = time.monotonic() + 30 * harness.FACTOR
        while not acked <= got and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await s.close()
        return got
    got = run(collect())
    stack.stop()
    lost = sorted(acked - got)
    totals.rounds += 1
    totals.acked += len(acked)
    totals.lost += len(lost)
    totals.tokens += len(tokens)
    repeats = len(tokens) - len(set(tokens)) + sum(1 for a, b in zip(tokens, tokens[1:]) if b <= a)
    totals.repeats += repeats
    say(f"disk: {pubs} publishes, {len(acked)} acked ({stuck} held while full), "
        f"{len(refusals['pub'])} refused, {full_tokens} tokens before the lock refusal "
        f"({len(refusals['lock'])}), {len(lost)} lost, works again after freeing: yes")
    if lost:
        totals.violation(f"disk: {len(lost)} acknowledged messages lost: {lost[:10]}")
    if repeats:
        totals.violation(f"disk: tokens repeated or went backwards: {tokens[-20:]}")
    if not refusals["pub"] or not all(NOSPACE in r for r in refusals["pub"]):
        totals.violation(f"disk: qos-1 publishes not refused with the reason: {refusals['pub'][:3]}")
    if not refusals["lock"] or NOSPACE not in refusals["lock"][0]:
        totals.violation(f"disk: locks not refused with the reason: {refusals['lock'][:1]}")


# --- main ---------------------------------------------------------------------------------

SETTINGS = {
    "full": {"kill9": 40, "corrupt": 24, "restarts": 100000},
    "small": {"kill9": 4, "corrupt": 6, "restarts": 5000},
}


def main():
    ap = argparse.ArgumentParser(description="cohortd torture rounds (see the top of this file)")
    ap.add_argument("--rounds", default="full",
                    help="full, small, or N kill -9 rounds per bus_fsync (default: full)")
    ap.add_argument("--seconds", type=float, default=1.5,
                    help="a kill -9 comes at most this long after a round starts (default 1.5)")
    ap.add_argument("--restarts", type=int, help="restarts of the soak (default: by --rounds)")
    ap.add_argument("--only", default="kill9,corrupt,soak,disk",
                    help="comma-separated: kill9, corrupt, soak, disk")
    ap.add_argument("--seed", type=int, default=None, help="random seed (default: the time)")
    a = ap.parse_args()
    if a.rounds in SETTINGS:
        s = dict(SETTINGS[a.rounds])
    elif a.rounds.isdigit() and int(a.rounds) > 0:
        s = dict(SETTINGS["small"], kill9=int(a.rounds))
    else:
        ap.error(f"--rounds {a.rounds}: full, small or a positive number")
    if a.restarts is not None:
        s["restarts"] = a.restarts
    parts = a.only.split(",")
    for p in parts:
        if p not in ("kill9", "corrupt", "soak", "disk"):
            ap.error(f"--only: unknown part {p!r}")
    if not os.access(harness.COHORTD, os.X_OK):
        ap.error(f"no cohortd at {harness.COHORTD}: set COHORT_BUILDDIR (make torture does)")
    seed = a.seed if a.seed is not None else int(time.time())
    rnd = random.Random(seed)
    plan = {"kill9": f"{s['kill9']} kill -9 rounds per bus_fsync",
            "corrupt": f"{s['corrupt']} corruption rounds", "soak": f"{s['restarts']} restarts",
            "disk": "the full-disk round"}
    say(f"torture: --rounds {a.rounds} --seed {seed}: "
        + ", ".join(v for p, v in plan.items() if p in parts))
    harness.become_subreaper()
    # asyncio warns of every write to a socket cohortd's death closed
    logging.getLogger("asyncio").setLevel(logging.ERROR)
    totals = Totals()
    top = tempfile.mkdtemp(prefix="cohort-torture.")
    t0 = time.monotonic()
    try:
        if "kill9" in parts:
            for fsync in ("always", "batch", "never"):
                kill9(fsync, s["kill9"], a.seconds, rnd, totals, top)
        if "corrupt" in parts:
            for r in range(1, s["corrupt"] + 1):
                corrupt_round(r, s["corrupt"], rnd, totals, top)
        if "soak" in parts:
            soak(s["restarts"], totals, top)
        if "disk" in parts:
            if os.geteuid() == 0:
                full_disk(totals, top)
            else:
                say("disk: skipped: needs root to mount a tmpfs")
    except (AssertionError, Violation) as e:
        # the harness gave up waiting (cohortd did not start, or died):
        # that is a violation too, and ends the run
        totals.violation(f"aborted: {e}")
    finally:
        harness.end_orphans()
        shutil.rmtree(top, ignore_errors=True)
    say(f"summary: {totals.rounds} rounds in {time.monotonic() - t0:.0f}s, seed {seed}: "
        f"acknowledged {totals.acked}, lost {totals.lost}, duplicated {totals.duplicated}, "
        f"never published {totals.phantom}, damaged records {totals.damaged}, "
        f"tokens {totals.tokens}, repeats {totals.repeats}, "
        f"violations {len(totals.violations)}")
    return 1 if totals.violations else 0


if __name__ == "__main__":
    sys.exit(main())
