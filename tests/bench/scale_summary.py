"""The one summary table of `SCALE=1 make bench` (issue 19, item 5).

Each scale benchmark adds a row per goal it measures with add(), to the
file named by $SCALE_SUMMARY (JSON lines; nothing when it is unset, so a
benchmark run alone prints only its own tables).  tests/bench/run.sh sets
it, and at the end prints the rows of all four as one table:

    /usr/bin/python3 tests/bench/scale_summary.py FILE
"""
import json
import os
import sys


def add(item, what, cohortd, peers="", goal="", met=None):
    """A row: item (services, bus, journal, locks), what was measured,
    cohortd's figure and the peers' (text, same run), the goal, and whether
    it was met (None: no goal, or nothing to judge it by)."""
    path = os.environ.get("SCALE_SUMMARY")
    if not path:
        return
    with open(path, "a") as f:
        f.write(json.dumps({"item": item, "what": what, "cohortd": cohortd, "peers": peers,
                            "goal": goal, "met": met}) + "\n")


def faster(mine, theirs):
    """True when mine is below every one of theirs; None with none."""
    theirs = [t for t in theirs if t is not None]
    if mine is None or not theirs:
        return None
    return all(mine < t for t in theirs)


def table(path):
    rows = []
    try:
        with open(path) as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    rows.append(json.loads(line))
                except ValueError as e:
                    print(f"{path}:{n}: not a summary row ({e}): skipped", file=sys.stderr)
    except FileNotFoundError:
        pass
    if not rows:
        print("scale summary: no rows (did the scale benchmarks run?)")
        return
    mark = {True: "yes", False: "**no**", None: "-"}
    print("scale summary (issue 19): every goal, cohortd beside the peers of the same run")
    print()
    print("| item | measured | cohortd | peers, same run | goal | met |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['item']} | {r['what']} | {r['cohortd']} | {r['peers'] or '-'} | {r['goal'] or '-'} | "
              f"{mark.get(r['met'], '-')} |")
    judged = [r for r in rows if r["met"] is not None]
    print(f"\n{sum(1 for r in judged if r['met'])} of {len(judged)} goals met")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: scale_summary.py FILE")
    table(sys.argv[1])
