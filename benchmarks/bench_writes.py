"""Committed create and update latency, in process, at 100, 10,000 and 50,000 beads.

A long-running agent or the controller keeps one Store open, so that is what is timed: the
whole `with store.transaction()` block (lock, staging, blobs + trees + commit, ref CAS, work
tree, split index, catalog, observers). The question is whether a commit costs the same at
50,000 beads as at 100 (target: median <= 5 ms, 50,000/100 ratio <= 1.5).

git's split index is folded into a new shared index once its small part outgrows
`gitindex.MAX_SPLIT_ENTRIES`; that fold is O(repository). Each write is tagged with whether a
new `sharedindex.*` appeared during it, and a probe keeps writing until two folds are seen, so
their cost and spacing are measured rather than guessed.

Also here, for the floor: one raw dulwich commit of one blob (no tree work) and, as the anchor
for "one file per repository" stores, rewriting one JSON file holding every bead.

Only functional breakage fails this script (dirty `git status`, wrong commit count); timings
are printed, never judged. `--profile` adds a step-by-step cProfile of writes at every size.
"""

from __future__ import annotations

import contextlib
import cProfile
import itertools
import json
import os
import pstats
import random
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import _common as c

from gc_polecat.beads import gitindex
from gc_polecat.beads.store import Store

SIZES = (100, 10_000, 50_000)
WARMUP = 20  # of each kind, untimed: imports, caches, the first catalog/SQLite page reads
TIMED = 200  # of each kind
PROBE_SIZES = (10_000, 50_000)  # sizes at which we write on until two folds are seen
PROBE_MAX = 2600  # give up looking for folds after this many extra writes
MEDIAN_TARGET_MS = 5.0
RATIO_TARGET = 1.5
BD_CREATE_MS, BD_UPDATE_MS = 2.5, 18.0  # bd, storage level, 10K issues, Apple M2 Pro


@dataclass
class Run:
    """Latencies of one kind of write at one size, and which writes folded the index."""

    samples: list[float] = field(default_factory=list)
    folded: list[int] = field(default_factory=list)  # positions in `samples`

    @property
    def stats(self) -> c.Stats:
        return c.Stats.of(self.samples)

    def without_folds(self) -> c.Stats:
        skip = set(self.folded)
        return c.Stats.of([s for k, s in enumerate(self.samples) if k not in skip])


class Writer:
    """Drives one open Store, timing each committed write and spotting index folds."""

    def __init__(self, repo: Path, known_ids: Sequence[str], seed: int) -> None:
        self.repo = repo
        self.store = Store(repo)  # the process-wide plugin manager, as the CLI and agents use
        self.known = list(known_ids)
        self.rng = random.Random(seed)
        self.ops = 0

    def _shared(self) -> set[str]:
        return {p.name for p in (self.repo / ".git").glob("sharedindex.*")}

    def _timed(self, write: Callable[[], None], run: Run | None) -> None:
        before = self._shared()
        start = time.perf_counter()
        write()
        elapsed = (time.perf_counter() - start) * 1000
        self.ops += 1
        if run is not None:
            if self._shared() - before:
                run.folded.append(len(run.samples))
            run.samples.append(elapsed)

    def create(self, run: Run | None = None) -> None:
        k = self.ops

        def write() -> None:
            with self.store.transaction() as tx:
                tx.create({"title": f"Benchmark bead {k}", "issue_type": "task", "priority": 2})

        self._timed(write, run)

    def update(self, run: Run | None = None) -> None:
        bead_id, k = self.rng.choice(self.known), self.ops
        changes = {
            "status": self.rng.choice(("open", "in_progress", "blocked")),
            "assignee": self.rng.choice(("furiosa", "nux", "slit")),
            "notes": f"benchmark note {k}",  # always a real change, so always one commit
        }

        def write() -> None:
            with self.store.transaction() as tx:
                tx.update(bead_id, changes)

        self._timed(write, run)


@dataclass
class SizeResult:
    size: int
    create: Run = field(default_factory=Run)
    update: Run = field(default_factory=Run)
    probe: Run | None = None
    probe_intervals: list[int] = field(default_factory=list)


def measure(keep: bool, profile: bool) -> list[SizeResult]:
    """Warm up, time creates then updates, probe for folds, then check git is consistent.

    The sizes take turns write by write, so whatever else the machine is doing (other
    processes, the disk's housekeeping) lands on every size alike and cannot fake a ratio.
    """
    templates = {n: c.template(n, keep) for n in SIZES}
    results = {n: SizeResult(n) for n in SIZES}
    with contextlib.ExitStack() as stack:
        repos = {n: stack.enter_context(c.scratch_copy(t)) for n, t in templates.items()}
        before = {n: c.commit_count(repo) for n, repo in repos.items()}
        writers = {n: Writer(repos[n], c.bead_ids(templates[n]), seed=n) for n in SIZES}
        for _ in range(WARMUP):
            for w in writers.values():
                w.create()
                w.update()
        for kind in ("create", "update"):
            for _ in range(TIMED):
                for n, w in writers.items():
                    getattr(w, kind)(getattr(results[n], kind))
        for n in SIZES:
            for kind in ("create", "update"):
                run_: Run = getattr(results[n], kind)
                folds = f"  folds at #{run_.folded}" if run_.folded else "  no fold"
                print(f"  {n:>6,} beads  {kind}  {run_.stats.line()}{folds}")
        for n in PROBE_SIZES:
            probe = results[n].probe = Run()
            while len(probe.folded) < 2 and len(probe.samples) < PROBE_MAX:
                writers[n].update(probe)
            results[n].probe_intervals = [b - a for a, b in itertools.pairwise(probe.folded)]
            print_probe(results[n])
        if profile:
            profile_phases(writers)
        for n, w in writers.items():
            w.store.catalog.close()
            check_consistent(repos[n], before[n], w.ops)
    return list(results.values())


def print_probe(res: SizeResult) -> None:
    p = res.probe
    assert p is not None
    print(
        f"  {res.size:>6,} beads  fold probe: {len(p.samples)} more updates, folds at "
        f"#{p.folded} ({', '.join(c.fmt_ms(p.samples[k]) for k in p.folded)}); "
        f"interval {res.probe_intervals or '?'} writes"
    )
    print(f"                 probe with folds     {p.stats.line()}")
    print(f"                 probe without folds  {p.without_folds().line()}")


def check_consistent(repo: Path, commits_before: int, ops: int) -> None:
    """Functional sanity only: a clean work tree and exactly one commit per write."""
    status = c.git(repo, "status", "--porcelain")
    if status:
        raise SystemExit(f"FAIL: git status is not clean in {repo}:\n{status[:2000]}")
    grown = c.commit_count(repo) - commits_before
    if grown != ops:
        raise SystemExit(f"FAIL: {ops} writes made {grown} commits in {repo}")
    print(f"  sanity {repo.parent.name}: git status clean; {ops} writes -> {grown} commits")


# Steps of a write, as (module, function) in gc_polecat, dulwich and sqlite3, in write order.
PHASES = (
    ("store.py", "create", "tx.create: validate, dump YAML, new ID"),
    ("store.py", "_new_id", "  new ID (counts top-level beads)"),
    ("catalog.py", "count_top_level", "    catalog count_top_level"),
    ("store.py", "update", "tx.update: read bead, validate, dump YAML"),
    ("bead.py", "dump", "  YAML dump"),
    ("store.py", "_commit", "commit (everything below)"),
    ("git.py", "add_blob", "  blob"),
    ("git.py", "edit_tree", "  trees"),
    ("git.py", "make_commit", "  commit object"),
    ("store.py", "_write_journal", "  journal"),
    ("locks.py", "__init__", "  index.lock and ref lock (with writer record)"),
    ("store.py", "_refuse_local_changes", "  local-change check"),
    ("store.py", "_sync_worktree", "  work tree + index"),
    ("gitindex.py", "update_index", "    split index update"),
    ("git.py", "move", "  ref move (the commit point)"),
    ("store.py", "_update_catalog", "  catalog update"),
    ("store.py", "notify", "observers (plugins, bead hooks)"),
    ("object_store.py", "add_object", "dulwich add_object, all objects"),
    ("config.py", "from_file", "dulwich config file parses"),
    ("~", "<built-in method posix.open>", "os.open (file creation mostly)"),
    ("~", "<built-in method posix.fsync>", "fsync"),
    ("~", "<method 'execute' of 'sqlite3.Connection' objects>", "SQLite execute"),
)


def profile_phases(writers: dict[int, Writer], each: int = 100) -> None:
    """Where a write's time goes, step by step, at every size: what grows with the repository
    is what breaks the ratio. cProfile inflates Python-heavy steps: compare rows, not totals."""
    for kind in ("create", "update"):
        table: dict[int, dict[str, float]] = {}
        for n, writer in writers.items():
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(each):
                getattr(writer, kind)()
            profiler.disable()
            raw = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
            table[n] = {
                label: 1000
                * sum(
                    ct
                    for (path, _, func), (_, _, _, ct, _) in raw.items()
                    if func == name and path.endswith(module)
                )
                / each
                for module, name, label in PHASES
            }
        sizes = list(table)
        print(f"\n  cProfile, ms per {kind} (cumulative, profiler overhead included):")
        print("    " + f"{'step':<42}" + "".join(f"{n:>10,}" for n in sizes))
        for _, _, label in PHASES:
            if any(table[n][label] for n in sizes):
                print("    " + f"{label:<42}" + "".join(f"{table[n][label]:10.2f}" for n in sizes))


# --- floors and anchors ----------------------------------------------------------------------


def dulwich_floor(runs: int = 200) -> c.Stats:
    """One dulwich commit of one blob: blob + commit objects and a ref CAS (with reflog)."""
    from dulwich.objects import Blob, Commit, Tree
    from dulwich.repo import Repo

    with tempfile.TemporaryDirectory(dir=c.cache_dir()) as tmp:
        repo = Repo.init(tmp)
        tree = Tree()
        repo.object_store.add_object(tree)
        parent: bytes | None = None
        samples = []
        for k in range(runs + 10):
            start = time.perf_counter()
            blob = Blob.from_string(f"floor {k}\n".encode())
            repo.object_store.add_object(blob)
            commit = Commit()
            commit.tree, commit.parents = tree.id, [parent] if parent else []
            commit.author = commit.committer = b"bench <bench@localhost>"
            commit.author_time = commit.commit_time = int(time.time())
            commit.author_timezone = commit.commit_timezone = 0
            commit.message = f"floor {k}\n".encode()
            repo.object_store.add_object(commit)
            ok = repo.refs.set_if_equals(
                b"refs/heads/master", parent or b"0" * 40, commit.id, message=b"floor"
            )
            elapsed = (time.perf_counter() - start) * 1000
            if not ok:
                raise SystemExit("FAIL: ref compare-and-swap refused in a private repository")
            parent = commit.id
            if k >= 10:
                samples.append(elapsed)
        repo.close()
    return c.Stats.of(samples)


def file_create_floor(runs: int = 300) -> c.Stats:
    """Creating one small new file where the repositories live. A write creates about twelve
    (six loose objects, two lock records and their links, the work-tree and ref temp files, the
    index): on a slow file system this, not Python, sets the floor."""
    with tempfile.TemporaryDirectory(dir=c.cache_dir()) as tmp:
        samples = []
        for k in range(runs):
            start = time.perf_counter()
            fd = os.open(f"{tmp}/f{k}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, b"x" * 200)
            os.close(fd)
            samples.append((time.perf_counter() - start) * 1000)
    return c.Stats.of(samples)


def floors(label: str) -> tuple[c.Stats, c.Stats]:
    """Both floors, measured around the write benchmark: the file system's speed drifts."""
    commit, create = dulwich_floor(), file_create_floor()
    print(f"  {label}: dulwich 1-blob commit  {commit.line()}")
    print(f"  {label}: create one new file    {create.line()}")
    return commit, create


def json_rewrite(n: int, runs: int = 20) -> c.Stats:
    """Emulates a one-JSON-file store (Gas City's file store pattern): every write serialises
    all n beads and replaces the file (temp + rename, no fsync). Our emulation, not their code."""
    beads = {f"gc-{i}": c.make_bead(i, f"gc-{i}", []) for i in range(n)}
    with tempfile.TemporaryDirectory(dir=c.cache_dir()) as tmp:
        path = Path(tmp) / "beads.json"
        samples = []
        for k in range(runs + 2):
            start = time.perf_counter()
            beads["gc-0"]["notes"] = f"write {k}"
            c.replace_file(path, json.dumps(beads, indent=2).encode())
            if k >= 2:
                samples.append((time.perf_counter() - start) * 1000)
    return c.Stats.of(samples)


# --- report ----------------------------------------------------------------------------------


def report(results: Sequence[SizeResult]) -> list[c.Figure]:
    by = {r.size: r for r in results}
    figures: list[c.Figure] = []
    for kind, anchor in (("create", BD_CREATE_MS), ("update", BD_UPDATE_MS)):
        for r in results:
            st = getattr(r, kind).stats
            figures.append(
                c.Figure(
                    f"{kind} median @ {r.size:,} (p90 / p99)",
                    f"{c.fmt_ms(st.median)} ({c.fmt_ms(st.p90)} / {c.fmt_ms(st.p99)})",
                    f"<= {MEDIAN_TARGET_MS:g} ms",
                    f"bd {anchor:g} ms @ 10K" if r.size == 10_000 else "-",
                    st.median <= MEDIAN_TARGET_MS,
                )
            )
        low, high = min(by), max(by)
        ratio = getattr(by[high], kind).stats.median / getattr(by[low], kind).stats.median
        figures.append(
            c.Figure(
                f"{kind} median {high:,} / {low:,}",
                f"{ratio:.2f}x",
                f"<= {RATIO_TARGET:g}x",
                "",
                ratio <= RATIO_TARGET,
            )
        )
    for r in results:
        if r.probe is None:
            continue
        p = r.probe
        folds = ", ".join(c.fmt_ms(p.samples[k]) for k in p.folded) or "none seen"
        every = f"1 in {r.probe_intervals[0]}" if r.probe_intervals else "?"
        # A fold shows in p99 only if more than 1% of writes fold (then p99 is a fold's time).
        in_p99 = any(p.stats.p99 == p.samples[k] for k in p.folded)
        figures.append(
            c.Figure(
                f"split-index fold write @ {r.size:,}",
                f"{folds} ({every} writes)",
                "",
                f"{'IN' if in_p99 else 'not in'} p99 (p99 {c.fmt_ms(p.stats.p99)} with, "
                f"{c.fmt_ms(p.without_folds().p99)} without)",
            )
        )
    return figures


def run(keep: bool = False, profile: bool = False) -> list[c.Figure]:
    """Measure everything, print the details, return the summary figures."""
    c.section("writes: committed create / update, Store kept open (in process)")
    print(
        f"  {WARMUP}+{WARMUP} warm-up writes, then {TIMED} creates and {TIMED} updates per size;"
        f" split index folds after {gitindex.MAX_SPLIT_ENTRIES} changes"
    )
    floor_dir = c.cache_dir(keep)
    print(f"  repositories and floors in {floor_dir}")
    before = floors("before")
    results = measure(keep, profile)

    c.section("write floors and anchors")
    after = floors("after ")
    figures = report(results)
    figures.append(
        c.Figure(
            "floor: dulwich 1-blob commit (before/after)",
            f"{c.fmt_ms(before[0].median)} / {c.fmt_ms(after[0].median)}",
        )
    )
    figures.append(
        c.Figure(
            "floor: create 1 small file (before/after)",
            f"{c.fmt_ms(before[1].median)} / {c.fmt_ms(after[1].median)}",
        )
    )
    for n in (10_000, 50_000):
        js = json_rewrite(n)
        print(f"  one-JSON-file store rewrite @ {n:>6,} beads (emulated)  {js.line()}")
        figures.append(
            c.Figure(
                f"anchor: whole-JSON rewrite @ {n:,}",
                c.fmt_ms(js.median),
                anchor="Gas City file store pattern (emulated)",
            )
        )
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    return c.script_main(run, __doc__, argv, profile_help="cProfile each step of a write")


if __name__ == "__main__":
    sys.exit(main())
