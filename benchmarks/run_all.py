"""Run every benchmark and print one summary table: metric, figure, target, anchor.

    .venv/bin/python benchmarks/run_all.py [--keep] [--profile] [--only writes,list,...]

Benchmarks: writes, list, show, startup, exec, import, wake, reconcile, demo (the default: all,
in that order). `startup` is the start-up table: the hot commands beside `python -c pass`.

Anchors: bd publishes create 2.5 ms / update 18 ms / ready query 30 ms at 10K issues (storage
level, Apple M2 Pro); Gas City's file store rewrites one whole JSON file per write (emulated
here). Targets are printed as met or MISSED but never change the exit status: only functional
breakage (dirty git status, wrong commit count, wrong results) exits non-zero.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

import _common as c
import bench_demo
import bench_exec
import bench_import
import bench_list
import bench_reconcile
import bench_show
import bench_wake
import bench_writes

# `import` runs before `wake`: the wake run starts 1,000 waiter processes, and right after it
# (2026-12-04) the machine was still busy (load average 14 on two CPUs, the disk writing back),
# so the import's wall time, which includes creating 3,561 work-tree files, measured that.
BENCHES = ("writes", "list", "show", "startup", "exec", "import", "wake", "reconcile", "demo")


def main(argv: Sequence[str] | None = None) -> int:
    parser = c.argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--profile", action="store_true", help="add cProfile output")
    parser.add_argument(
        "--only", default=",".join(BENCHES), help=f"comma-separated subset of {BENCHES}"
    )
    args = parser.parse_args(argv)
    chosen = [b.strip() for b in args.only.split(",") if b.strip()]
    unknown = set(chosen) - set(BENCHES)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")

    c.section("machine")
    for key, value in c.machine():
        print(f"  {key:<14} {value}")
    start = time.perf_counter()
    figures: list[c.Figure] = []
    if "writes" in chosen:
        figures += bench_writes.run(args.keep, args.profile)
    if "list" in chosen:
        figures += bench_list.run(args.keep)
    if "show" in chosen:
        figures += bench_show.run(args.keep, args.profile)
    if "startup" in chosen:
        figures += bench_show.run_startup(args.keep)
    if "exec" in chosen:
        figures += bench_exec.run(args.keep)
    if "import" in chosen:  # before wake: see BENCHES
        figures += bench_import.run(args.keep)
    if "wake" in chosen:
        figures += bench_wake.run(args.keep)
    if "reconcile" in chosen:
        figures += bench_reconcile.run(args.keep, args.profile)
    if "demo" in chosen:
        figures += bench_demo.run(args.keep)

    c.section("summary")
    c.print_table(figures)
    missed = [f.metric for f in figures if f.met is False]
    print(f"\n  targets missed: {len(missed)} of {sum(f.met is not None for f in figures)}")
    print(f"  load average now {c.load_average()}; total {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
