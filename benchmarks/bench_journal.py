"""Journaled replay throughput against the same run without a state directory; prints JSON.

    PYTHONSAFEPATH=1 .venv/bin/python benchmarks/bench_journal.py [--bars 20000] [--runs 3]
        [--baseline GIT_REF [--baseline-bars 2000]]

The run of bench_engine.py (the example SMA strategy over replayed bars with the
paper broker, as `kubetrade run` does it), twice per round: without a state
directory, and with a fresh one (`--state-dir`: the journal and the durable
paper venue). Rounds alternate the two, so a machine whose speed drifts slows
both alike; each figure is the best round's. `journaled_vs_no_state` is how
many times longer the journaled run takes.

`--baseline REF` also runs the replay with the runner of another commit (its
`runner/` from `git archive`, imported in a child process in place of this
checkout's), journaled and without a state directory, alternating with the
rounds above, so the figures to beat are measured in the same run on the same
disk. Its journaled run may be far slower, hence its own, shorter
`--baseline-bars`. `fsync_ms` is the median time this
disk took to make one 4 KiB write durable while the benchmark ran: journaled
throughput is bound by it.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

from kubetrade.runner import events as ev
from kubetrade.runner.app.assemble import RunOptions, build_engine
from kubetrade.runner.app.session_file import load_session

ROOT = Path(__file__).resolve().parents[1]

# Runs a session journaled with whichever kubetrade.runner is importable, in a child.
_CHILD = """
import asyncio, json, sys, time
from pathlib import Path
import kubetrade.runner
from kubetrade.runner import events as ev
# Chosen by what the tree holds: this checkout's editable install would otherwise supply
# runner/app/ to a tree from before it, mixing the two runners.
if (Path(kubetrade.runner.__file__).parent / "app").is_dir():
    from kubetrade.runner.app import assemble
    from kubetrade.runner.app.session_file import load_session
else:  # a runner from before runner/app/ (issue 17, item 6)
    from kubetrade.runner import assemble
    from kubetrade.runner.session_file import load_session
RunOptions, build_engine = assemble.RunOptions, assemble.build_engine

async def main():
    state = Path(sys.argv[2]) if sys.argv[2] else None
    engine = build_engine(load_session(Path(sys.argv[1])), RunOptions(state_dir=state))
    start, summary = time.perf_counter(), None
    async for event in engine.run():
        if isinstance(event, ev.EngineStopped):
            summary = event.summary
    return time.perf_counter() - start, summary

elapsed, summary = asyncio.run(main())
print(json.dumps({"seconds": elapsed, "bars": summary.bars, "orders": summary.orders,
                  "runner": kubetrade.runner.__file__, "assemble": assemble.__file__}))
"""


def _bench_engine() -> ModuleType:
    """bench_engine.py's session and bar writer (benchmarks are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(
        "bench_engine", ROOT / "benchmarks/bench_engine.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def _run(session: Path, state_dir: Path | None) -> tuple[float, ev.Summary]:
    engine = build_engine(load_session(session), RunOptions(state_dir=state_dir))
    start, summary = time.perf_counter(), None
    async for event in engine.run():
        if isinstance(event, ev.EngineStopped):
            summary = event.summary
    assert summary is not None and summary.bars > 0
    return time.perf_counter() - start, summary


def _baseline_tree(ref: str, into: Path) -> Path:
    """REF's runner/ as an importable kubetrade.runner under `into`."""
    package = into / "kubetrade"
    package.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "runner"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(package)], input=archive, check=True)
    return into


def _run_baseline(tree: Path, session: Path, state_dir: Path | None) -> dict[str, object]:
    env = {**os.environ, "PYTHONSAFEPATH": "1", "PYTHONPATH": str(tree)}
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(session), str(state_dir or "")],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"the baseline run failed:\n{proc.stderr[-3000:]}")
    result: dict[str, object] = json.loads(proc.stdout)
    for module in ("runner", "assemble"):
        if not str(result[module]).startswith(str(tree)):
            raise SystemExit(f"the baseline imported {result[module]}, not the tree in {tree}")
    return result


def _fsync_ms(directory: Path, count: int = 20) -> float:
    path = directory / "fsync-probe"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    times = []
    try:
        for i in range(count):
            os.pwrite(fd, b"x" * 4096, i * 4096)
            start = time.perf_counter()
            os.fsync(fd)
            times.append(time.perf_counter() - start)
    finally:
        os.close(fd)
        path.unlink()
    return round(statistics.median(times) * 1000, 3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bars", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline", help="a git ref whose runner is measured too")
    parser.add_argument("--baseline-bars", type=int, default=2_000)
    args = parser.parse_args()
    bench = _bench_engine()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "new").mkdir()
        session = bench.session(work / "new", args.bars)
        baseline_session = tree = None
        if args.baseline:
            (work / "old").mkdir()
            baseline_session = bench.session(work / "old", args.baseline_bars)
            tree = _baseline_tree(args.baseline, work / "tree")
        best = dict.fromkeys(("no_state", "journal", "baseline", "baseline_no_state"), math.inf)
        fsync: list[float] = []
        summary = None
        for run in range(args.runs):
            elapsed, summary = asyncio.run(_run(session, None))
            best["no_state"] = min(best["no_state"], elapsed)
            elapsed, with_journal = asyncio.run(_run(session, work / f"state-{run}"))
            best["journal"] = min(best["journal"], elapsed)
            assert (with_journal.bars, with_journal.orders) == (summary.bars, summary.orders)
            fsync.append(_fsync_ms(work))
            if tree is not None and baseline_session is not None:
                result = _run_baseline(tree, baseline_session, work / f"baseline-{run}")
                best["baseline"] = min(best["baseline"], float(str(result["seconds"])))
                result = _run_baseline(tree, session, None)
                best["baseline_no_state"] = min(
                    best["baseline_no_state"], float(str(result["seconds"]))
                )
    assert summary is not None
    no_state = summary.bars / best["no_state"]
    journaled = summary.bars / best["journal"]
    out: dict[str, object] = {
        "benchmark": "journal_replay_sma_paper",
        "bars": summary.bars,
        "orders": summary.orders,
        "no_state_dir_bars_per_s": round(no_state),
        "journaled_bars_per_s": round(journaled),
        "journaled_vs_no_state": round(no_state / journaled, 2),
        "fsync_ms": statistics.median(fsync),
        "runs": args.runs,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    if args.baseline:
        old = args.baseline_bars / best["baseline"]
        out["baseline"] = {
            "ref": args.baseline,
            "bars": args.baseline_bars,
            "journaled_bars_per_s": round(old),
            "no_state_dir_bars_per_s": round(summary.bars / best["baseline_no_state"]),
        }
        out["speedup_vs_baseline"] = round(journaled / old, 1)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
