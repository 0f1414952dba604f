"""Wall time of `gc-polecat demo`: the whole product on a temporary city, start to audit.

The demo starts 3 real sessions (tmux when installed, else processes), a controller process and
the refinery, and works four items through clean merge, conflict fix, test fix and a killed
waiter; it exits non-zero if any check or the audit fails, which fails this script (functional
breakage). Its 60 s limit is the target; the anchor is the time a fresh polecat loses today:
Gas Town polls for verdicts every 30 s to 5 min, and a fresh session re-reads its context.
Runs `RUNS` times, with tmux and with plain processes, and prints the median and max.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence

import _common as c

RUNS = 3
TARGET_S = 60.0


def _one(provider: str) -> tuple[float, float]:
    """(wall seconds, the demo's own figure) of one run."""
    env = {**c.process_env(), "GC_POLECAT_DEMO_PROVIDER": provider}
    start = time.perf_counter()
    proc = subprocess.run(
        [*c.cli_argv(), "demo"], capture_output=True, text=True, env=env, timeout=180
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"demo ({provider}) failed:\n{proc.stdout[-2000:]}{proc.stderr}")
    own = re.search(r"finalizer; ([\d.]+) s", proc.stdout)
    return wall, float(own.group(1)) if own else wall


def run(keep: bool = False) -> list[c.Figure]:
    c.section("demo")
    figures = []
    providers = ["tmux", "process"] if shutil.which("tmux") else ["process"]
    for provider in providers:
        runs = [_one(provider) for _ in range(RUNS)]
        walls = sorted(w for w, _ in runs)
        med = statistics.median(walls)
        print(f"  demo ({provider})  n={RUNS}  median {med:.1f} s  max {walls[-1]:.1f} s  "
              f"(demo's own clock: {', '.join(f'{o:.1f}' for _, o in runs)} s)")  # fmt: skip
        figures.append(
            c.Figure(
                f"gc-polecat demo wall time, {provider} sessions (max)",
                f"{med:.1f} s ({walls[-1]:.1f} s)",
                f"<= {TARGET_S:.0f} s",
                "Gas Town: 30 s - 5 min verdict polling per round trip",
                walls[-1] <= TARGET_S,
            )
        )
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    return c.script_main(run, __doc__, argv)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
