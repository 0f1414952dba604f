"""`gc-polecat import` of a large real bd export: one commit, records per second.

The file is the largest shared export (`../shared/data/bd-exports/`, frankenscipy: 3,561
records, 4 MB) when it is present, else a synthetic file of the same size and shape. Each run
imports it into a fresh repository in a fresh process (`gc-polecat import FILE`, interpreter
start-up included), then imports it again (nothing differs: no commit). Target: at least 5,000
records/s, i.e. the 3,561-record file in under 1 s.

An import of N new beads must create N work-tree files and their directories, so beside the
figures are the floors: `python -c pass`, one dulwich commit of one blob, and creating the same
number of files of the same sizes in the same directory layout (what the file system alone
costs here). Only functional breakage fails this script (wrong commit count, dirty `git
status`, an export that lost records); timings are printed, never judged. `--profile` adds a
cProfile of one in-process import (CPU time).
"""

from __future__ import annotations

import cProfile
import io
import json
import os
import pstats
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import _common as c
from bench_writes import dulwich_floor

from gc_polecat.beads import ids
from gc_polecat.beads.store import Store
from gc_polecat.plugins import make_plugin_manager

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "bd-exports"
SOURCE = SHARED / "ansonTGN__frankenscipy__b0c4b07d8.jsonl"
SYNTHETIC_RECORDS = 3561
RUNS = 5  # imports per way (served, own process); the median is the figure
TARGET_RATE = 5000  # records per second


def source_file(tmp: Path) -> Path:
    """The real export, else a synthetic one of the same size and shape (times with offsets
    and nanoseconds, custom types, parent-child and blocks dependencies, labels)."""
    if SOURCE.exists():
        return SOURCE
    lines = []
    for i in range(SYNTHETIC_RECORDS):
        bid = f"bench-{ids.base36(i * 7919, 4)}"
        stamp = f"2026-0{1 + i % 9}-1{i % 10}T0{i % 10}:{i % 60:02d}:00.{i:09d}-07:00"
        record = {
            "id": bid,
            "title": f"Synthetic issue {i}: port scipy.{('linalg', 'signal', 'stats')[i % 3]}",
            "description": "Port the function, then check it against the reference.\n" * 12,
            "status": ("closed", "open", "in_progress")[i % 3],
            "priority": i % 5,
            "issue_type": ("task", "bug", "perf", "test", "feature")[i % 5],
            "created_at": stamp,
            "updated_at": stamp,
            "labels": ["linalg", "perf"] if i % 4 else [],
            "compaction_level": 0,
            "source_repo": ".",
        }
        if record["status"] == "closed":
            record["closed_at"] = stamp
            record["close_reason"] = "done"
        if i:
            parent = f"bench-{ids.base36((i - 1) * 7919, 4)}"
            record["dependencies"] = [
                {"issue_id": bid, "depends_on_id": parent, "type": "blocks",
                 "created_at": stamp, "created_by": "bench", "metadata": "{}"}
            ]  # fmt: skip
        lines.append(json.dumps(record))
    path = tmp / "synthetic.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def records_in(path: Path) -> int:
    """Records an import creates: lines that are neither tombstones nor memories."""
    count = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            count += record.get("status") != "tombstone" and record.get("_type") != "memory"
    return count


def fresh_repo(parent: Path, k: int | str) -> Path:
    repo = parent / f"repo-{k}"
    Store.init(repo, prefix="bench", pm=make_plugin_manager(load_entrypoints=False))
    return repo


def timed_import(repo: Path, path: Path, env: dict[str, str]) -> tuple[float, float, dict]:
    """(wall ms, CPU ms of the process: user + system, summary). CPU time is what a busy
    machine disturbs least: it shows our own work apart from waiting for a CPU or the disk."""
    argv = [*c.cli_argv(), "--repo", str(repo), "import", str(path), "--json"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    elapsed, out = c.run_timed(argv, env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
    return elapsed, cpu, json.loads(out)


def check(repo: Path, created: int, summary: dict) -> None:
    """The functional part: one commit, every record a bead, a clean work tree."""
    if summary["created"] != created or not summary["commit"]:
        raise SystemExit(f"FAIL: import summary {summary}, expected {created} created")
    if c.commit_count(repo) != 2:  # init + the import
        raise SystemExit(f"FAIL: {c.commit_count(repo)} commits, expected 2")
    if c.git(repo, "status", "--porcelain").strip():
        raise SystemExit("FAIL: git status is not clean after the import")


def file_tree_floor(path: Path, parent: Path) -> float:
    """ms to create one file per record, with the bead files' sizes and shard directories: what
    the work tree alone costs on this file system."""
    sizes = [len(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    root = parent / "floor"
    start = time.perf_counter()
    for k, size in enumerate(sizes):
        shard = root / ids.base36(k, 2)[0] / ids.base36(k * 7, 2)[1]
        shard.mkdir(parents=True, exist_ok=True)
        fd = os.open(shard / f"f{k}.yaml", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, b"x" * size)
        os.close(fd)
    return (time.perf_counter() - start) * 1000


def profile_import(path: Path, parent: Path) -> None:
    from gc_polecat.interop import bd_jsonl as jsonl

    repo = fresh_repo(parent, 99)
    store = Store(repo, pm=make_plugin_manager(load_entrypoints=False))
    profiler = cProfile.Profile(time.process_time)
    data = path.read_bytes()
    profiler.enable()
    jsonl.import_jsonl(store, data, str(path))
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
    print(out.getvalue())


def warm_up(tmp: Path, path: Path, env: dict[str, str]) -> None:
    """The command server's first use: the first write command starts it and runs in its own
    process (docs/performance.md, "The command server"). Import a few records once, untimed,
    and wait until the server listens, so the timed runs measure what every later import
    pays; `in its own process` is timed beside it with the server switched off."""
    few = tmp / "few.jsonl"
    few.write_text("".join(path.read_text(encoding="utf-8").splitlines(keepends=True)[:5]))
    timed_import(fresh_repo(tmp, "warm-up"), few, env)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(server_sockets(env)):
        time.sleep(0.1)


def server_sockets(env: dict[str, str]) -> list[Path]:
    where = env.get("GC_POLECAT_SERVER_DIR") or f"/tmp/gc-polecat-{os.getuid()}"
    return sorted(Path(where).glob("cmd-*.sock"))


def run(keep: bool = False, profile: bool = False) -> list[c.Figure]:
    c.section("import: `gc-polecat import FILE` of a large bd export, fresh process, one commit")
    with tempfile.TemporaryDirectory(dir=c.cache_dir(keep)) as tmp_name:
        tmp = Path(tmp_name)
        path = source_file(tmp)
        created = records_in(path)
        size_mb = path.stat().st_size / 1e6
        print(f"  source: {path.name} ({created:,} records, {size_mb:.1f} MB)")
        env = c.process_env()
        cold_env = {**env, "GC_POLECAT_SERVER": "0"}  # the command in its own process
        floor_samples, _ = c.time_process([sys.executable, "-c", "pass"], 5, warmup=1, env=env)
        warm_up(tmp, path, env)
        firsts, cpus, agains, colds = [], [], [], []
        for k in range(RUNS):
            repo = fresh_repo(tmp, k)
            first, _, summary = timed_import(repo, path, env)
            check(repo, created, summary)
            again, _, repeat = timed_import(repo, path, env)
            if repeat["commit"] is not None or c.commit_count(repo) != 2:
                raise SystemExit("FAIL: importing the same file again made a commit")
            repo = fresh_repo(tmp, RUNS + k)
            cold, cpu, summary = timed_import(repo, path, cold_env)
            check(repo, created, summary)
            firsts.append(first)
            cpus.append(cpu)
            agains.append(again)
            colds.append(cold)
            print(
                f"  run {k + 1}: import {first:8.1f} ms   again, no commit {again:8.1f} ms   "
                f"in its own process {cold:8.1f} ms (CPU {cpu:7.1f} ms)"
            )
        first_s, cpu_s, again_s = c.Stats.of(firsts), c.Stats.of(cpus), c.Stats.of(agains)
        cold_s = c.Stats.of(colds)
        python_floor = c.Stats.of(floor_samples)
        commit_floor = dulwich_floor(50)
        files_floor = file_tree_floor(path, tmp)
        rate = created / (first_s.median / 1000)
        print(f"  floor: python -c pass                  {python_floor.line()}")
        print(f"  floor: dulwich 1-blob commit           {commit_floor.line()}")
        print(f"  floor: create {created:,} files in shards   {files_floor:8.1f} ms")
        if profile:
            profile_import(path, tmp)
    return [
        c.Figure(
            f"import {created:,} records, wall incl. start-up",
            f"{c.fmt_ms(first_s.median)} ({rate:,.0f} records/s)",
            f">= {TARGET_RATE:,} records/s",
            f"before: 8.6 s; best of {RUNS} {c.fmt_ms(min(firsts))}",
            rate >= TARGET_RATE,
        ),
        c.Figure(
            "import in its own process (GC_POLECAT_SERVER=0), wall",
            f"{c.fmt_ms(cold_s.median)} ({created / (cold_s.median / 1000):,.0f} records/s)",
            "",
            f"best of {RUNS} {c.fmt_ms(min(colds))}",
        ),
        c.Figure(
            "import in its own process, CPU (user + sys)",
            f"{c.fmt_ms(cpu_s.median)} ({created / (cpu_s.median / 1000):,.0f} records/s)",
        ),
        c.Figure("import again, nothing differs (no commit)", c.fmt_ms(again_s.median)),
        c.Figure("floor: python -c pass", c.fmt_ms(python_floor.median)),
        c.Figure("floor: dulwich 1-blob commit", c.fmt_ms(commit_floor.median)),
        c.Figure(f"floor: create {created:,} files (work tree)", c.fmt_ms(files_floor)),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    return c.script_main(run, __doc__, argv, profile_help="add a cProfile of one import")


if __name__ == "__main__":
    sys.exit(main())
