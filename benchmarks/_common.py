"""Shared helpers for the benchmarks: fast repository builds, a build cache, statistics, output.

Building 50,000 beads through 50,000 transactions would take longer than every benchmark put
together, so `template()` creates them in transactions of `BATCH` beads through the ordinary
Store API (tx.create, one commit per batch). The result has the same shape as a repository
grown one bead at a time: one YAML file per bead at its ID's path, a split git index, a warm
catalog. Only the history is shorter (one commit per batch), which no benchmarked operation
reads. Bead contents are a deterministic function of their number, so rebuilds are identical.

Templates are cached under `$GC_POLECAT_BENCH_CACHE` (kept) or a temporary directory (deleted
at exit unless `--keep`). Benchmarks never touch a template: `scratch_copy()` hard-links it
(objects, shared indexes and work-tree files are only ever replaced by rename, never rewritten
in place) and copies the few files that are modified in place (refs logs, catalog, config).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import hashlib
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from gc_polecat.beads import ids
from gc_polecat.beads.bead import AWAIT_TYPES, Bead
from gc_polecat.beads.store import Store
from gc_polecat.plugins import make_plugin_manager

BATCH = 5000  # beads per build transaction
BUILD_VERSION = "1"  # bump when make_bead() changes, to invalidate cached templates
PREFIX = "gc"
CACHE_ENV = "GC_POLECAT_BENCH_CACHE"
PACKAGE_DIR = Path(__file__).resolve().parent.parent / "gc_polecat"
# Modules that decide what a built repository looks like on disk: a change invalidates the cache.
_SHAPE_MODULES = tuple(
    f"beads/{name}"
    for name in ("bead.py", "ids.py", "store.py", "git.py", "gitindex.py", "catalog.py")
)
# Plain git must never pause a benchmark for `gc --auto` or ask who we are.
GIT_OPTS = ("-c", "gc.auto=0", "-c", "user.name=bench", "-c", "user.email=bench@localhost")

# --- command line and cache ------------------------------------------------------------------


def argument_parser(description: str) -> argparse.ArgumentParser:
    """The options every benchmark script accepts; scripts add their own."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--keep",
        action="store_true",
        help=f"keep the temporary build cache (ignored when ${CACHE_ENV} is set: always kept)",
    )
    return parser


def script_main(
    run: Callable[..., list[Figure]],
    doc: str,
    argv: Sequence[str] | None,
    profile_help: str | None = None,
) -> int:
    """The `main()` of one benchmark script: parse options, run, print the summary table."""
    parser = argument_parser(doc.splitlines()[0])
    if profile_help:
        parser.add_argument("--profile", action="store_true", help=profile_help)
    args = parser.parse_args(argv)
    figures = run(args.keep, args.profile) if profile_help else run(args.keep)
    section("summary")
    print_table(figures)
    return 0


_cache: Path | None = None


def cache_dir(keep: bool = False) -> Path:
    """Where templates live: $GC_POLECAT_BENCH_CACHE, else one temp dir for this process."""
    global _cache
    if _cache is not None:
        return _cache
    configured = os.environ.get(CACHE_ENV)
    if configured:
        _cache = Path(configured).expanduser().resolve()
        _cache.mkdir(parents=True, exist_ok=True)
        return _cache
    _cache = Path(tempfile.mkdtemp(prefix="gc-polecat-bench-"))
    if keep:
        atexit.register(
            lambda: print(f"\nbuild cache kept: export {CACHE_ENV}={_cache}", file=sys.stderr)
        )
    else:
        atexit.register(shutil.rmtree, _cache, True)
    return _cache


def _fingerprint() -> str:
    digest = hashlib.sha256(f"{BUILD_VERSION}|{BATCH}".encode())
    for name in _SHAPE_MODULES:
        digest.update((PACKAGE_DIR / name).read_bytes())
    return digest.hexdigest()[:12]


# --- building repositories -------------------------------------------------------------------

_WORDS = (
    "login", "flaky", "test", "refinery", "merge", "queue", "polecat", "session", "branch",
    "rebase", "gate", "timer", "review", "deploy", "convoy", "witness", "mayor", "rig", "hook",
    "bead", "ledger", "verdict", "retry", "timeout", "cache", "index", "commit",
)  # fmt: skip
_ASSIGNEES = ("furiosa", "nux", "slit", "capable", "toast", "ace", "morsov", "keeper")
_LABELS = ("tests", "ci", "refinery", "infra", "docs", "urgent", "polecat", "backend")
_TYPES = ("task",) * 5 + ("bug",) * 2 + ("feature", "chore", "epic", "story", "decision")
_STATUSES = ("open",) * 7 + ("in_progress",) * 2 + ("blocked",) + ("closed",) * 10
_EPOCH = 1_795_000_000  # 2026-11-19, so every timestamp is valid and deterministic


def _stamp(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def make_bead(i: int, bead_id: str, earlier: Sequence[str]) -> Bead:
    """Bead number i: every 10th is a gate (half of those open), the rest a realistic mix."""
    rng = random.Random(i)
    created = _EPOCH + 60 * i
    words = rng.sample(_WORDS, 4)
    bead: Bead = {
        "id": bead_id,
        "title": f"{words[0].capitalize()} {' '.join(words[1:])} {i}",
        "priority": rng.randrange(5),
        "created_at": _stamp(created),
        "created_by": rng.choice(("mayor", "witness", "refinery")),
        "labels": rng.sample(_LABELS, rng.randrange(3)),
    }
    if rng.random() < 0.6:
        lines = [" ".join(rng.choices(_WORDS, k=8)) for _ in range(rng.randrange(1, 5))]
        bead["description"] = "\n".join(lines) + "\n"
    if i % 10 == 0:
        bead["issue_type"] = "gate"
        bead["status"] = "open" if (i // 10) % 2 == 0 else "closed"
        bead["await_type"] = rng.choice(AWAIT_TYPES)
        bead["await_id"] = f"run-{i}"
        bead["timeout"] = 7200 * 10**9
        bead["waiters"] = [f"polecat/{rng.choice(_ASSIGNEES)}"]
    else:
        bead["issue_type"] = rng.choice(_TYPES)
        bead["status"] = rng.choice(_STATUSES)
        if bead["status"] != "open" or rng.random() < 0.3:
            bead["assignee"] = rng.choice(_ASSIGNEES)
        if rng.random() < 0.3:
            bead["metadata"] = {"branch": f"polecat/{rng.choice(_ASSIGNEES)}/{bead_id}"}
    bead["updated_at"] = _stamp(created + 30)
    if bead["status"] == "in_progress":
        bead["started_at"] = bead["updated_at"]
    if bead["status"] == "closed":
        bead["closed_at"] = bead["updated_at"]
        bead["close_reason"] = "merged"
    if earlier and rng.random() < 0.15:
        bead["dependencies"] = [
            {
                "issue_id": bead_id,
                "depends_on_id": rng.choice(earlier),
                "type": "blocks",
                "created_at": _stamp(created),
            }
        ]
    return bead


def build_repository(root: Path, n: int, log: Callable[[str], None] = print) -> list[str]:
    """Make `root` a beads repository holding n beads, BATCH per commit; returns their IDs.

    The last bead gets a transaction of its own: git's split index folds when its small part
    outgrows its limit, and a big final batch would leave that fold to the first timed write.
    """
    store = Store.init(root, prefix=PREFIX, pm=make_plugin_manager(load_entrypoints=False))
    store.catalog.refresh()  # from here on every commit feeds the catalog directly
    made: list[str] = []
    taken: set[str] = set()
    start = time.perf_counter()
    batches = [min(BATCH, n - 1 - s) for s in range(0, n - 1, BATCH)] + ([1] if n else [])
    for size in batches:
        first = len(made)
        with store.transaction(f"bench: beads {first}..{first + size - 1}") as tx:
            for i in range(first, first + size):
                # bd's ID scheme, seeded by the bead number: lengths grow as the set grows.
                bead_id = ids.generate_id(PREFIX, f"bench-{i}", i, taken.__contains__)
                taken.add(bead_id)
                tx.create(make_bead(i, bead_id, made[-500:]))
                made.append(bead_id)
        log(f"  built {len(made):>6}/{n} beads  ({time.perf_counter() - start:5.1f} s)")
    if not store.catalog.is_fresh():
        raise RuntimeError("catalog fell behind HEAD during the build")
    store.catalog.close()
    return made


def template(n: int, keep: bool = False) -> Path:
    """A cached repository of n beads (built on first use); never modify it, copy it."""
    cache = cache_dir(keep)
    final = cache / f"beads-{n}-{_fingerprint()}"
    if (final / ".git" / "gc-polecat" / "bench-ids.txt").is_file():
        return final
    for stale in [*cache.glob(f"beads-{n}-*"), *cache.glob(f".building-{n}-*")]:
        shutil.rmtree(stale, ignore_errors=True)  # built by other code, or an interrupted run
    building = cache / f".building-{n}-{os.getpid()}"
    print(f"building a {n:,}-bead repository in {cache} (cached for re-runs) ...", flush=True)
    made = build_repository(building, n)
    (building / ".git" / "gc-polecat" / "bench-ids.txt").write_text("\n".join(made) + "\n")
    shutil.rmtree(final, ignore_errors=True)
    building.rename(final)
    return final


def bead_ids(repo: Path) -> list[str]:
    """The IDs a template was built with, in build order (index i is bead number i)."""
    return (repo / ".git" / "gc-polecat" / "bench-ids.txt").read_text().split()


def _is_immutable(rel: Path) -> bool:
    """Files git and gc-polecat only ever create or replace by rename: safe to hard-link."""
    parts = rel.parts
    if parts[0] != ".git":
        return True  # work tree: gc-polecat writes temp + rename; our own edits do the same
    return parts[1] == "objects" or parts[-1].startswith("sharedindex.")


@contextlib.contextmanager
def scratch_copy(template_dir: Path) -> Iterator[Path]:
    """A throw-away copy of a template, made in seconds even at 50,000 beads."""
    scratch = Path(tempfile.mkdtemp(prefix="scratch-", dir=cache_dir()))
    dest = scratch / "repo"
    try:
        subprocess.run(["cp", "-al", str(template_dir), str(dest)], check=True)
        for dirpath, dirnames, filenames in os.walk(dest / ".git"):
            if Path(dirpath) == dest / ".git":
                dirnames.remove("objects")
            for name in filenames:
                path = Path(dirpath) / name
                if not _is_immutable(path.relative_to(dest)):
                    tmp = path.with_name(name + ".bench-copy")
                    shutil.copy2(path, tmp)
                    os.replace(tmp, path)
        yield dest
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def replace_file(path: Path, data: bytes) -> None:
    """Write by temp file + rename, as gc-polecat does, so hard-linked templates stay intact."""
    tmp = path.with_name(path.name + ".bench-tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# --- git and processes -----------------------------------------------------------------------


def git(repo: Path, *args: str) -> str:
    """Run real git in `repo` (never auto-gc, always an identity); raise on failure."""
    proc = subprocess.run(
        ["git", *GIT_OPTS, "-C", str(repo), *args], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def commit_count(repo: Path) -> int:
    return int(git(repo, "rev-list", "--count", "HEAD"))


def cli_argv(module: bool = False) -> list[str]:
    """How a user starts gc-polecat: the console script next to this Python, else `-m`."""
    script = Path(sys.executable).with_name("gc-polecat")
    if module or not script.is_file():
        return [sys.executable, "-m", "gc_polecat"]
    return [str(script)]


def process_env(bytecode_cache: bool = True) -> dict[str, str]:
    """The environment for timed subprocesses. With bytecode_cache, imports read cached .pyc
    files as on a normal install, even where PYTHONDONTWRITEBYTECODE is set; the cache lives
    under the build cache (PYTHONPYCACHEPREFIX), never in the source tree."""
    env = dict(os.environ)
    if bytecode_cache:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(cache_dir() / "pycache")
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.pop("PYTHONPYCACHEPREFIX", None)
    return env


def run_timed(argv: Sequence[str], env: dict[str, str]) -> tuple[float, str]:
    """Wall time in ms of one run of a command (interpreter start included), and its stdout."""
    start = time.perf_counter()
    proc = subprocess.run(list(argv), capture_output=True, text=True, env=env)
    elapsed = (time.perf_counter() - start) * 1000
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr}")
    return elapsed, proc.stdout


def time_process(
    argv: Sequence[str], runs: int, warmup: int = 2, env: dict[str, str] | None = None
) -> tuple[list[float], str]:
    """Wall times in ms of `runs` runs of a command after `warmup` untimed ones; last stdout."""
    env = process_env() if env is None else env
    out = ""
    samples = []
    for k in range(warmup + runs):
        elapsed, out = run_timed(argv, env)
        if k >= warmup:
            samples.append(elapsed)
    return samples, out


def time_interleaved(
    commands: dict[str, tuple[Sequence[str], dict[str, str]]], runs: int, warmup: int = 2
) -> dict[str, tuple[list[float], str]]:
    """Like time_process for several commands taking turns run by run, so drifting machine
    load falls on all of them alike and their differences stay meaningful."""
    results: dict[str, tuple[list[float], str]] = {label: ([], "") for label in commands}
    for k in range(warmup + runs):
        for label, (argv, env) in commands.items():
            elapsed, out = run_timed(argv, env)
            samples = results[label][0]
            if k >= warmup:
                samples.append(elapsed)
            results[label] = (samples, out)
    return results


# --- statistics and reporting ----------------------------------------------------------------


@dataclass(frozen=True)
class Stats:
    """Order statistics of latency samples in milliseconds (nearest-rank percentiles)."""

    n: int
    median: float
    p90: float
    p99: float
    max: float

    @classmethod
    def of(cls, samples_ms: Sequence[float]) -> Stats:
        s = sorted(samples_ms)
        return cls(len(s), percentile(s, 50), percentile(s, 90), percentile(s, 99), s[-1])

    def line(self) -> str:
        return (
            f"n={self.n:<4} median {self.median:8.2f} ms   p90 {self.p90:8.2f} ms   "
            f"p99 {self.p99:8.2f} ms   max {self.max:8.2f} ms"
        )


def percentile(sorted_samples: Sequence[float], p: float) -> float:
    """Nearest-rank percentile: an observed value, never an interpolation."""
    rank = max(1, math.ceil(p / 100 * len(sorted_samples)))
    return sorted_samples[rank - 1]


@dataclass(frozen=True)
class Figure:
    """One line of the summary table; `met` is None when there is no target to meet."""

    metric: str
    figure: str
    target: str = "-"
    anchor: str = "-"
    met: bool | None = None


def verdict(met: bool | None) -> str:
    return {True: "met", False: "MISSED", None: ""}[met]


def print_table(figures: Sequence[Figure]) -> None:
    """A plain-text table: metric | figure | target (met?) | anchor."""
    rows = [("metric", "figure", "target", "anchor / note")]
    rows += [
        (f.metric, f.figure, f"{f.target} {verdict(f.met)}".strip(), f.anchor) for f in figures
    ]
    widths = [max(len(r[c]) for r in rows) for c in range(3)]
    for k, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)), row[3])
        if k == 0:
            print("  ".join("-" * w for w in widths), "-" * 6)


def section(title: str) -> None:
    """A heading, with the load average: figures taken on a busy machine are noisy."""
    print(f"\n== {title} " + "=" * max(0, 76 - len(title)), flush=True)
    print(f"  (load average {load_average()})")


def fmt_ms(value: float) -> str:
    return f"{value:.1f} ms" if value >= 10 else f"{value:.2f} ms"


def machine() -> list[tuple[str, str]]:
    """What the figures were measured on: they mean little without it."""
    import platform

    import dulwich

    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    git_version = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout
    return [
        ("date", time.strftime("%Y-%m-%d %H:%M %Z")),
        ("cpu", f"{cpu}, {os.cpu_count()} logical CPUs (nproc)"),
        ("python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("kernel", platform.release()),
        (
            "git / dulwich",
            f"{git_version.strip()} / dulwich {'.'.join(map(str, dulwich.__version__))}",
        ),
        ("load average", load_average()),
    ]


def load_average() -> str:
    """1/5/15-minute load: other work on the machine shows up as noise in every figure."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"
