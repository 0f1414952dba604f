"""`gc-polecat bead show ID` from a cold interpreter at 10,000 beads, against the start-up floor.

An agent calls `bead show` as a fresh process, so the figure is wall time including the
interpreter start (target: median <= 150 ms), with the catalog warm so the fast read path
(catalog at HEAD: no dulwich, no YAML) is what runs. For the floor, `python -c pass` and
`python -c "import click"` on the same machine; and `python -X importtime` of the show command,
top 10 by cumulative time, so a start-up regression shows which import brought it.

Only functional breakage fails this script (show exits non-zero or prints another bead).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from collections.abc import Sequence

import _common as c

from gc_polecat.beads.store import Store

SIZE = 10_000
RUNS = 30
SHOW_TARGET_MS = 150.0
IMPORTTIME_RUNS = 5
NO_PYC = "  same, no .pyc (compile each start)"


def importtime_top(
    argv: Sequence[str], top: int = 10, runs: int = IMPORTTIME_RUNS
) -> tuple[list[tuple[float, float, str]], float]:
    """(cumulative us, self us, indented module) of the slowest imports and the total in us,
    each the median over `runs` runs of `python -X importtime` (one run is too noisy)."""
    cumulative: dict[str, list[int]] = {}
    own: dict[str, list[int]] = {}
    totals = []
    for _ in range(runs):
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", *argv],
            capture_output=True,
            text=True,
            env=c.process_env(),
        )
        if proc.returncode != 0:
            raise SystemExit(f"FAIL: {' '.join(argv)} exited {proc.returncode}")
        total = 0
        for line in proc.stderr.splitlines():
            if not line.startswith("import time:") or "[us]" in line:
                continue
            self_us, cum_us, name = line.removeprefix("import time:").split("|", 2)
            name = name.rstrip()
            cumulative.setdefault(name, []).append(int(cum_us))
            own.setdefault(name, []).append(int(self_us))
            if not name.startswith("  "):  # a top-level import: these add up to the total
                total += int(cum_us)
        totals.append(total)
    rows = [
        (statistics.median(cumulative[name]), statistics.median(own[name]), name)
        for name in cumulative
    ]
    return sorted(rows, reverse=True)[:top], statistics.median(totals)


def shown_id(out: str) -> str | None:
    """The ID a `bead show` printed: first word of the text form, or the JSON array's id."""
    if out.startswith("["):
        return json.loads(out)[0]["id"]
    return out.split(maxsplit=1)[0] if out.strip() else None


def show_argv(repo: str, bead_id: str, module: bool = False) -> list[str]:
    return c.cli_argv(module) + ["--repo", repo, "bead", "show", bead_id]


def run(keep: bool = False, profile: bool = False) -> list[c.Figure]:
    """Measure everything, print the details, return the summary figures."""
    c.section(f"show: `gc-polecat bead show ID` at {SIZE:,} beads, fresh process each time")
    template = c.template(SIZE, keep)
    bead_id = c.bead_ids(template)[SIZE // 2]
    figures: list[c.Figure] = []
    with c.scratch_copy(template) as repo:
        store = Store(repo)
        store.catalog.refresh()
        store.catalog.close()

        cached, compiling = c.process_env(), c.process_env(bytecode_cache=False)
        repo_s = str(repo)
        commands = {
            "python -c pass": ([sys.executable, "-c", "pass"], cached),
            "python -c 'import click'": ([sys.executable, "-c", "import click"], cached),
            "gc-polecat bead show ID": (show_argv(repo_s, bead_id), cached),
            "python -m gc_polecat bead show ID": (show_argv(repo_s, bead_id, True), cached),
            "gc-polecat bead show ID --json": ([*show_argv(repo_s, bead_id), "--json"], cached),
            NO_PYC: (show_argv(repo_s, bead_id), compiling),
        }
        results: dict[str, c.Stats] = {}
        for label, (samples, out) in c.time_interleaved(commands, RUNS, warmup=3).items():
            if "show" in label and shown_id(out) != bead_id:
                raise SystemExit(f"FAIL: {label} printed something else:\n{out[:500]}")
            results[label] = c.Stats.of(samples)
            print(f"  {label:<37} {results[label].line()}")

        show = results["gc-polecat bead show ID"]
        floor = results["python -c pass"]
        print(
            f"  show minus `python -c pass`: {c.fmt_ms(show.median - floor.median)} "
            f"of our own start-up and work"
        )
        figures += [
            c.Figure(
                f"bead show @ {SIZE:,}, wall incl. start-up (p90)",
                f"{c.fmt_ms(show.median)} ({c.fmt_ms(show.p90)})",
                f"<= {SHOW_TARGET_MS:g} ms",
                "",
                show.median <= SHOW_TARGET_MS,
            ),
            c.Figure(
                "bead show, no .pyc cache (compiles each start)",
                c.fmt_ms(results[NO_PYC].median),
                anchor="PYTHONDONTWRITEBYTECODE=1, as this sandbox sets it",
            ),
            c.Figure("floor: python -c pass", c.fmt_ms(floor.median)),
            c.Figure(
                "floor: python -c 'import click'",
                c.fmt_ms(results["python -c 'import click'"].median),
            ),
        ]

        rows, total = importtime_top(show_argv(str(repo), bead_id))
        print(
            f"\n  python -X importtime, bead show (median of {IMPORTTIME_RUNS} runs): "
            f"{total / 1000:.1f} ms in imports; top 10 by cumulative time:"
        )
        print(f"  {'cumulative':>10}  {'self':>8}  module")
        for cumulative, self_us, name in rows:
            print(f"  {cumulative / 1000:8.1f}ms  {self_us / 1000:6.1f}ms  {name}")
        figures.append(c.Figure("bead show: time in imports", f"{total / 1000:.1f} ms"))

        if profile:
            proc = subprocess.run(
                [sys.executable, "-m", "cProfile", "-s", "cumulative"]
                + show_argv(str(repo), bead_id),
                capture_output=True,
                text=True,
                env=c.process_env(),
            )
            lines = proc.stdout.splitlines()
            start = next((k for k, line in enumerate(lines) if "ncalls" in line), 0)
            print("\n  cProfile of one `bead show` (cumulative):")
            print("\n".join("    " + line for line in lines[start : start + 35]))
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    return c.script_main(run, __doc__, argv, profile_help="cProfile one bead show")


if __name__ == "__main__":
    sys.exit(main())
