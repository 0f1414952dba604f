"""Many writer processes at once: nothing lost, one commit per write, no wedged lock."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gc_polecat.beads.catalog import Query
from gc_polecat.beads.store import Store

from .conftest import ROOT, assert_clean, git


def spawn(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.workers", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_eight_processes_fifty_writes_each(store: Store, repo: Path) -> None:
    with store.transaction() as tx:
        counter = tx.create({"title": "counter"})["id"]
    start = int(git(repo, "rev-list", "--count", "HEAD"))
    procs = [spawn("counter_writer", str(repo), f"w{n}", "50", counter) for n in range(8)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err

    assert int(git(repo, "rev-list", "--count", "HEAD")) == start + 400  # one commit per write
    fresh = Store(repo)
    assert fresh.get(counter)["metadata"]["count"] == "400"  # no read-modify-write was lost
    fresh.catalog.refresh()
    for n in range(8):
        titles = {b["title"] for b in fresh.catalog.list(Query(labels=(f"w{n}",)))}
        assert titles == {f"w{n}-{i}" for i in range(50)}
    assert fresh.catalog.bad_files() == []  # every file at HEAD parses and validates
    assert_clean(repo)


def test_cli_writers_in_parallel(repo: Path) -> None:
    """The real command line, four processes at once."""
    env = {**os.environ, "GC_POLECAT_REPO": str(repo)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "gc_polecat", "bead", "create", f"cli-{n}"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    made = set()
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        made.add(out.strip())
    assert len(made) == 4
    assert int(git(repo, "rev-list", "--count", "HEAD")) == 5
    assert_clean(repo)


def test_lock_of_a_killed_process_does_not_wedge(repo: Path) -> None:
    holder = spawn("hold_lock", str(repo))
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    blocked = spawn("one_write", str(repo), "waits for the lock")
    time.sleep(0.5)
    assert blocked.poll() is None  # really blocked by the live holder
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    _, err = blocked.communicate(timeout=30)
    assert blocked.returncode == 0, err
    assert "waits for the lock" in git(repo, "log", "-1", "--format=%s")
    assert_clean(repo)


def _hand_commits_while_writing(repo: Path, wrap: list[str]) -> tuple[list[str], list[str], int]:
    """Three writer processes create 40 beads each while a person commits notes with real
    `git add` and `git commit -m` (each prefixed by `wrap`), as fast as git goes. When git
    reports `cannot lock ref` (its commit read the branch before one of ours moved it: see
    docs/formats.md, "Committing by hand"), the person does what the docs say: reset the
    index under the write lock. Returns (beads reported, notes committed, resets)."""
    writers = [spawn("creator", str(repo), f"w{n}", "40") for n in range(3)]
    notes = repo / "notes"
    notes.mkdir()
    committed: list[str] = []
    resets = i = 0
    while any(w.poll() is None for w in writers):
        i += 1
        (notes / f"{i}.txt").write_text(f"note {i}\n")
        add = subprocess.run([*wrap, "git", "add", "notes"], cwd=repo, capture_output=True)
        if add.returncode != 0:
            continue
        done = subprocess.run(
            [*wrap, "git", "commit", "-qm", f"hand {i}"], cwd=repo, capture_output=True, text=True
        )
        if done.returncode == 0:
            committed.append(f"notes/{i}.txt")
        elif "cannot lock ref" in done.stderr:
            resets += 1
            subprocess.run([*LOCKED, "git", "reset", "-q"], cwd=repo, check=True)
    reported = []
    for w in writers:
        out, err = w.communicate(timeout=60)
        assert w.returncode == 0, err
        reported += out.split()
    assert len(reported) == 120 and len(committed) > 0
    in_head = set(git(repo, "ls-tree", "-r", "--name-only", "HEAD").split())
    in_index = set(git(repo, "ls-files").split())
    from gc_polecat.beads.ids import id_path

    lost = [b for b in reported if id_path(b) not in in_head or id_path(b) not in in_index]
    assert lost == [], (
        [(b, id_path(b) in in_head, id_path(b) in in_index) for b in lost],
        git(repo, "status", "--porcelain"),
    )
    assert [p for p in committed if p not in in_head] == []
    print(f"{i} hand commits tried, {len(committed)} made, {resets} resets, 120 beads")
    return reported, committed, resets


LOCKED = ["flock", ".git/gc-polecat/write.lock"]  # the supported way: docs/formats.md


def test_hand_git_commits_racing_writers_never_lose_a_reported_write(repo: Path) -> None:
    """Issue 12, point 4: `git commit` run by hand while gc-polecat writes used to build its
    tree from the index of before our commit, on top of our commit: 1 in 60 reported beads
    vanished from HEAD, silently. Now a racing `git commit` either fails on index.lock, or
    reads our new index, or fails on the moved branch (`cannot lock ref`, after which git's
    own read-before-lock has left a stale index, which the person resets as documented):
    every bead a writer reported is in HEAD and in the index at the end, and every hand
    commit git reported done is there too."""
    _hand_commits_while_writing(repo, [])


@pytest.mark.skipif(shutil.which("flock") is None, reason="needs util-linux flock")
def test_hand_commits_under_the_write_lock_never_fail_or_lose_anything(repo: Path) -> None:
    """The supported way to commit by hand while agents write: `flock .git/gc-polecat/write.lock
    git ...` takes the lock gc-polecat's writers take (an flock on that file), so git and
    gc-polecat never overlap: no hand commit fails, no reset is ever needed."""
    subprocess.run([*LOCKED, "true"], cwd=repo, check=True)  # the state dir exists
    _, committed, resets = _hand_commits_while_writing(repo, LOCKED)
    assert resets == 0 and len(committed) > 10


@pytest.mark.skipif(shutil.which("flock") is None, reason="needs util-linux flock")
def test_git_gc_prune_now_under_the_write_lock_loses_nothing(repo: Path) -> None:
    """docs/formats.md, "git gc": `git gc --prune=now` can delete the objects of a write in
    flight, so it is run under the write lock; then writers and gc take turns and the
    repository stays whole (`git fsck` clean, every reported bead in HEAD)."""
    subprocess.run([*LOCKED, "true"], cwd=repo, check=True)
    writers = [spawn("creator", str(repo), f"g{n}", "30") for n in range(2)]
    runs = 0
    while any(w.poll() is None for w in writers):
        subprocess.run([*LOCKED, "git", "gc", "--prune=now", "--quiet"], cwd=repo, check=True)
        runs += 1
    reported = []
    for w in writers:
        out, err = w.communicate(timeout=60)
        assert w.returncode == 0, err
        reported += out.split()
    fsck = subprocess.run(["git", "fsck", "--full"], cwd=repo, capture_output=True, text=True)
    assert fsck.returncode == 0 and "missing" not in fsck.stdout + fsck.stderr, fsck.stderr
    from gc_polecat.beads.ids import id_path

    in_head = set(git(repo, "ls-tree", "-r", "--name-only", "HEAD").split())
    assert len(reported) == 60 and [b for b in reported if id_path(b) not in in_head] == []
    assert runs > 1
    assert_clean(repo)
