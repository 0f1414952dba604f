"""Chaos at length: the engine of tests/test_chaos.py for many more randomized runs.

    .venv/bin/python benchmarks/chaos.py [--runs 1000] [--seed S] [--workers N] [--city-runs 50]

Each run gives 0-2 new work items to a pool of sessions running `sleep`, advances the city a
random number of lifecycle steps (the script acts as the polecats and as a refinery through the
library calls the CLI makes), kills polecat sessions (SIGKILL to the process group), real
`gc-polecat controller run` and `refinery process` processes, and CLI writers inside their
commit (GC_POLECAT_TEST_CRASH_AT), then restarts the controller (controller passes with
refinery passes until nothing changes) and checks the invariants: every work item merged,
held by a live session (its own when that one survived), escalated, or in the pool with its
resume metadata; no wait open without its live session; no session process unaccounted for;
no stray worktree; `git status` and `git fsck` clean. Every `--city-runs` runs the city
finishes its work and the full leak audit must be empty.

Printed: kills by kind and moment, outcomes after convergence, CLI processes (forked or fresh
interpreters), the convergence time (p50/p99) and where the time went. Timings never change
the exit status; an invariant that does not hold exits 1, naming the seed that reproduces it.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import _common as c

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.test_chaos import CITY_RUNS, ChaosFailure, Stats, run_chaos, summary  # noqa: E402


def _isolate(home: Path) -> None:
    """A git identity of its own, and none of the caller's gc-polecat settings."""
    home.mkdir()
    (home / ".gitconfig").write_text("[user]\n\tname = Chaos\n\temail = chaos@localhost\n")
    os.environ["HOME"] = str(home)
    os.environ["GIT_CONFIG_NOSYSTEM"] = "1"
    for var in ("GC_POLECAT_REPO", "GC_SESSION_ID", "GC_CONTINUATION_EPOCH", "BD_NO_HOOKS"):
        os.environ.pop(var, None)
    os.environ.pop("GC_POLECAT_TEST_CRASH_AT", None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=None, help="default: a random one")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--city-runs", type=int, default=CITY_RUNS)
    parser.add_argument("--keep", action="store_true", help="keep the cities (for a post-mortem)")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)

    c.section("machine")
    for key, value in c.machine():
        print(f"  {key:<14} {value}")
    c.section(f"chaos: {args.runs} runs, seed {seed}, {args.workers} workers")
    tmp = Path(tempfile.mkdtemp(prefix="gc-polecat-chaos-"))
    _isolate(tmp / "home")
    started = time.monotonic()
    last = [started]

    def progress(n: int, stats: Stats) -> None:
        if time.monotonic() - last[0] > 10:
            last[0] = time.monotonic()
            print(f"  {n} runs, {time.monotonic() - started:.0f} s", flush=True)

    try:
        stats = run_chaos(
            tmp, seed, args.runs, workers=args.workers, city_runs=args.city_runs,
            report=progress,  # (one worker only: workers report when they finish)
        )  # fmt: skip
    except ChaosFailure as exc:
        print(f"\nFAILED (seed {seed}; the cities are kept in {tmp}):\n{exc}", file=sys.stderr)
        return 1
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.monotonic() - started
    print("\n".join(f"  {line}" for line in summary(stats).splitlines()))
    print(f"  wall time {elapsed:.1f} s ({elapsed / max(1, stats.runs) * 1000:.0f} ms per run)")
    print(f"  load average now {c.load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
