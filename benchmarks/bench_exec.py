"""`exec-beads` as Gas City calls it: one fresh process per store call, at 100 and 10,000 beads.

gc runs the provider script for every store call (gascity `internal/beads/exec/exec.go`), so a
call's cost is its wall time including the interpreter's start. Each call below is the argv and
stdin gc sends, through the pack's script (`pack/scripts/gc-beads-polecat`), measured cold (no
server: every call imports what it needs) and warm (after gc's lifecycle `start`, which leaves
the city's `exec_server` answering on its socket), side by side with `python -c pass`, the floor
no Python provider can beat. Targets (issue 14): median <= 50 ms for reads and <= 80 ms for
writes at 10,000 beads.

Only functional breakage fails this script (a call exits non-zero or answers wrongly).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import _common as c

SIZES = (100, 10_000)
RUNS = 15
READ_TARGET_MS, WRITE_TARGET_MS = 50.0, 80.0
SCRIPT = Path(__file__).resolve().parent.parent / "pack" / "scripts" / "gc-beads-polecat"
READS = ("get", "list (assignee, newest)", "list (status, type)", "ready", "list-by-label")
WRITES = ("create", "update")


def calls(bead_id: str) -> dict[str, tuple[list[str], bytes | None]]:
    """label -> (argv after the script, stdin) as exec.go builds them."""
    create = {"title": "bench create", "type": "task", "labels": ["bench"], "metadata": {"k": "v"}}
    return {
        "get": (["get", bead_id], None),
        "list (assignee, newest)": (
            ["list", "--status=in_progress", "--assignee=nux", "--limit=1"],
            None,
        ),  # fmt: skip
        "list (status, type)": (["list", "--status=open", "--type=bug"], None),
        "ready": (["ready"], None),
        "list-by-label": (["list-by-label", "urgent", "0"], None),
        "create": (["create"], json.dumps(create).encode()),
        "update": (["update", bead_id], b'{"assignee": "nux", "status": "in_progress"}'),
    }


def environment(repo: Path, city: Path) -> dict[str, str]:
    """The scope environment gc sets (store_target_exec.go gcExecStoreEnv), the store named by
    GC_POLECAT_REPO, and `gc-polecat` on PATH as an install provides it."""
    env = c.process_env()
    env.update(
        {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "GC_POLECAT_REPO": str(repo),
            "GC_CITY": str(city),
            "GC_CITY_PATH": str(city),
            "GC_CITY_RUNTIME_DIR": str(city / ".gc" / "runtime"),
            "GC_STORE_ROOT": str(city),
            "GC_STORE_SCOPE": "city",
            "GC_BEADS_PREFIX": c.PREFIX,
            "GC_PROVIDER": f"exec:{SCRIPT}",
        }
    )
    return env


def timed(argv: Sequence[str], stdin: bytes | None, env: dict[str, str]) -> tuple[float, bytes]:
    start = time.perf_counter()
    proc = subprocess.run(
        list(argv),
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        env=env,
        timeout=30,
    )
    elapsed = (time.perf_counter() - start) * 1000
    if proc.returncode != 0:
        raise SystemExit(f"FAIL: {' '.join(argv)} exited {proc.returncode}: {proc.stderr!r}")
    return elapsed, proc.stdout


def measure(env: dict[str, str], bead_id: str) -> dict[str, c.Stats]:
    """Every call and the floor, taking turns run by run (drifting load falls on all alike)."""
    commands = {"python -c pass": ([sys.executable, "-c", "pass"], None)}
    commands.update({k: ([str(SCRIPT), *a], s) for k, (a, s) in calls(bead_id).items()})
    samples: dict[str, list[float]] = {label: [] for label in commands}
    for k in range(2 + RUNS):
        for label, (argv, stdin) in commands.items():
            elapsed, out = timed(argv, stdin, env)
            if label == "get" and json.loads(out)["id"] != bead_id:
                raise SystemExit(f"FAIL: get answered another bead: {out[:200]!r}")
            if k >= 2:
                samples[label].append(elapsed)
    return {label: c.Stats.of(s) for label, s in samples.items()}


def same_as_cold(served: bytes, env: dict[str, str]) -> None:
    """The warm server's `ready` (from its `ReadyView`, after all the writes above) must be
    byte for byte what a cold process answers from SQL at the same commit."""
    cold = timed([str(SCRIPT), "ready"], None, env)[1]
    if served != cold:
        raise SystemExit(f"FAIL: warm ready differs from cold ({len(served)} / {len(cold)} bytes)")


def lifecycle(op: str, env: dict[str, str]) -> None:
    timed([str(SCRIPT), op], None, env)


def run(keep: bool = False) -> list[c.Figure]:
    figures: list[c.Figure] = []
    for size in SIZES:
        c.section(f"exec-beads: gc's calls at {size:,} beads, a fresh process each, cold and warm")
        template = c.template(size, keep)
        bead_id = c.bead_ids(template)[size // 2]
        with c.scratch_copy(template) as repo:
            city = repo.parent / "city"
            city.mkdir()
            env = environment(repo, city)
            results = {}
            for mode in ("cold", "warm"):
                if mode == "warm":
                    lifecycle("start", env)
                try:
                    results[mode] = measure(env, bead_id)
                    if mode == "warm":
                        served = timed([str(SCRIPT), "ready"], None, env)[1]
                finally:
                    if mode == "warm":
                        lifecycle("stop", env)
                if mode == "warm":
                    same_as_cold(served, env)
                for label, stats in results[mode].items():
                    print(f"  {mode:<4} {label:<25} {stats.line()}")
            for label in (*READS, *WRITES):
                target = READ_TARGET_MS if label in READS else WRITE_TARGET_MS
                cold, warm = results["cold"][label], results["warm"][label]
                floor = results["warm"]["python -c pass"].median
                figures.append(
                    c.Figure(
                        f"exec {label} @ {size:,}, cold / warm (warm p90)",
                        f"{c.fmt_ms(cold.median)} / {c.fmt_ms(warm.median)} ({c.fmt_ms(warm.p90)})",
                        f"<= {target:g} ms" if size == SIZES[-1] else "-",
                        f"warm minus python -c pass {c.fmt_ms(warm.median - floor)}",
                        warm.median <= target if size == SIZES[-1] else None,
                    )
                )
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    return c.script_main(run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main(argv=None))
