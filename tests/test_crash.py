"""Writers killed with SIGKILL: the old state or the new one, never a torn file or a stuck repo.

The deterministic tests kill the writer exactly between two steps of the write protocol
(GC_POLECAT_TEST_CRASH_AT, see store.crash_point); the random test kills a writer that commits
back to back at random moments, many times, and checks every invariant after each kill.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gc_polecat.beads.catalog import Query
from gc_polecat.beads.store import Store

from .conftest import ROOT, assert_clean, git, run_cli, wait_for
from .test_catalog_rebuild import rebuilt, snapshot

# Where a kill leaves the branch: before the ref moved, the old commit stays. The work tree and
# the index are written before the ref moves (so a racing `git commit` never builds on our
# commit from the old index): a kill after them still leaves the old commit, and recovery puts
# the files and the index back.
POINTS = {
    "objects-written": "old",
    "journal-written": "old",
    "locked": "old",
    "file-written": "old",
    "index-written": "old",
    "ref-moved": "new",
}


def spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.workers", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def journal_pending(repo: Path) -> bool:
    """The journal is kept between writes and empty when no write is in flight."""
    journal = repo / ".git" / "gc-polecat" / "journal.json"
    return journal.exists() and journal.stat().st_size > 0


def check_invariants(repo: Path, counter: str) -> int:
    """Recover through a real command, then check everything; returns the number of pairs."""
    proc = run_cli("--repo", str(repo), "bead", "show", counter, "--json")
    assert proc.returncode == 0, proc.stderr
    assert not journal_pending(repo)
    assert not (repo / ".git" / "index.lock").exists()
    assert_clean(repo)
    store = Store(repo)
    store.catalog.refresh()
    assert store.catalog.bad_files() == []  # no torn or invalid file at HEAD
    beads = store.catalog.list(Query(labels=("pair",)))
    by_title = {b["title"]: b for b in beads}
    for title, b in by_title.items():
        if title.endswith("-a"):  # the pair is all or nothing
            partner = by_title[title[:-1] + "b"]
            assert partner["dependencies"][0]["depends_on_id"] == b["id"]
    pairs = len(beads) // 2
    assert len(beads) % 2 == 0
    assert int(store.get(counter).get("metadata", {}).get("count", "0")) == pairs
    # the work tree holds exactly what HEAD holds (beyond what status's stat check proves)
    assert git(repo, "diff", "HEAD", "--stat") == ""
    return pairs


@pytest.fixture
def counter(store: Store) -> str:
    with store.transaction() as tx:
        return tx.create({"title": "counter"})["id"]


@pytest.mark.parametrize("point", list(POINTS))
def test_kill_between_steps(repo: Path, counter: str, point: str) -> None:
    before = git(repo, "rev-parse", "HEAD").strip()
    writer = spawn("pair_writer", str(repo), "k", counter, env={"GC_POLECAT_TEST_CRASH_AT": point})
    writer.communicate(timeout=60)
    assert writer.returncode == -signal.SIGKILL
    after = git(repo, "rev-parse", "HEAD").strip()
    assert (after == before) == (POINTS[point] == "old")
    if point != "objects-written":
        assert journal_pending(repo)  # a write was cut short
    pairs = check_invariants(repo, counter)
    assert pairs == (0 if POINTS[point] == "old" else 1)
    # and the repository takes the next write normally
    assert run_cli("--repo", str(repo), "bead", "create", "after the crash").returncode == 0
    assert_clean(repo)


@pytest.mark.parametrize("point", list(POINTS))
def test_recovery_catches_the_catalog_up_without_a_rebuild(
    repo: Path, counter: str, point: str
) -> None:
    """Issue 17, point 3: recovering from a writer killed at any step keeps the catalog and
    catches it up from the commit it records (a tree diff), never a full rebuild. Observed by
    the catalog's build token, which every full rebuild (or a new file) replaces; the rows
    must still be exactly what a rebuild from git gives."""
    catalog = Store(repo).catalog
    catalog.refresh()
    token = catalog.build_id()
    catalog.close()
    writer = spawn("pair_writer", str(repo), "k", counter, env={"GC_POLECAT_TEST_CRASH_AT": point})
    writer.communicate(timeout=60)
    assert writer.returncode == -signal.SIGKILL
    listed = run_cli("--repo", str(repo), "bead", "list", "--json")  # a reader recovers
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)) == (1 if POINTS[point] == "old" else 3)
    assert not journal_pending(repo)
    catalog = Store(repo).catalog
    assert catalog.is_fresh() and catalog.build_id() == token
    assert snapshot(catalog) == rebuilt(repo)
    catalog.close()


def test_a_killed_writers_locks_are_removed_and_nobody_elses(repo: Path, counter: str) -> None:
    """Killed after the commit point, a writer leaves `index.lock` holding its record (pid and
    start time). Recovery removes that one (its writer is provably gone) but not a lock whose
    content proves nothing: a ref lock of git's is left, as git itself would leave it."""
    writer = spawn(
        "pair_writer", str(repo), "k", counter, env={"GC_POLECAT_TEST_CRASH_AT": "ref-moved"}
    )
    writer.communicate(timeout=60)
    lock = repo / ".git" / "index.lock"
    assert lock.read_bytes().startswith(b"gc-polecat-lock %d " % writer.pid)
    other = repo / ".git" / "refs" / "heads" / "someone-elses.lock"
    other.write_bytes(b"not ours")
    check_invariants(repo, counter)
    assert not lock.exists()
    assert other.read_bytes() == b"not ours"  # a lock nothing proves ours is not ours to remove


def test_a_hand_commit_after_a_killed_write_cannot_revert_it(repo: Path) -> None:
    """Issue 12, point 4, as reported: `GC_POLECAT_TEST_CRASH_AT=ref-moved gc-polecat bead
    create x`, then `git commit -m hand`, used to commit the old index on top of the new
    commit and so delete the bead. Now the index is written before the ref moves and
    index.lock is held until both are done: git refuses loudly while the dead writer's lock is
    there, and if a person removes it by hand (as git's message suggests), the index already
    holds the bead."""
    made = run_cli(
        "--repo", str(repo), "bead", "create", "x", env={"GC_POLECAT_TEST_CRASH_AT": "ref-moved"}
    )
    assert made.returncode == -signal.SIGKILL
    (path,) = git(repo, "diff", "--name-only", "HEAD~1", "HEAD").split()
    hand = subprocess.run(["git", "commit", "-m", "hand"], cwd=repo, capture_output=True, text=True)
    assert hand.returncode != 0 and "index.lock" in hand.stderr  # loud, not silent
    assert path in git(repo, "ls-tree", "-r", "--name-only", "HEAD")
    (repo / ".git" / "index.lock").unlink()  # what git tells the person to do
    subprocess.run(["git", "commit", "-m", "hand"], cwd=repo, capture_output=True, check=False)
    assert path in git(repo, "ls-tree", "-r", "--name-only", "HEAD")  # still there
    assert git(repo, "status", "--porcelain") == ""
    listed = run_cli("--repo", str(repo), "bead", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [b["title"] for b in json.loads(listed.stdout)] == ["x"]
    assert not journal_pending(repo)
    assert_clean(repo)


def test_random_kills(repo: Path, counter: str) -> None:
    rng = random.Random(int(os.environ.get("GC_POLECAT_CRASH_SEED", "20261121")))
    runs = int(os.environ.get("GC_POLECAT_CRASH_RUNS", "40"))
    mid_write = 0
    last = 0
    for _ in range(runs):
        before = git(repo, "rev-parse", "HEAD")
        writer = spawn("pair_writer", str(repo), f"r{rng.random():.6f}", counter)
        # past start-up, into the commit loop: its first commit moved HEAD (a clock would
        # kill a writer still starting on a loaded machine, and test nothing)
        wait_for(lambda b=before: git(repo, "rev-parse", "HEAD") != b, "the writer's first commit")
        time.sleep(rng.random() * 0.4)
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
        if journal_pending(repo):
            mid_write += 1
        pairs = check_invariants(repo, counter)
        assert pairs >= last  # nothing committed is ever lost
        last = pairs
    assert last > 0
    print(f"{runs} kills, {mid_write} left a journal (killed inside a write), {last} pairs")
