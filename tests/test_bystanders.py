"""A write next to git, editors and other processes (issue 12: points 4, 5, 12, "also seen").

Every test drives the real command line (`python -m gc_polecat`) and real git processes: a
`git update-ref --stdin` transaction holding the branch's `<ref>.lock`, a `git commit -a` whose
editor holds `index.lock`, hand edits of bead files, a work tree the kernel refuses to write
(`chattr +i`, which stops root too). The rule checked each time: the exit status and the outcome
agree (exit 0: in HEAD and in the index; otherwise in neither), and nobody else's lock is
removed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import assert_clean, git, run_cli


def create(repo: Path, title: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_cli("--repo", str(repo), "bead", "create", title, env=env)


def head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD").strip()


def titles(repo: Path) -> list[str]:
    listed = run_cli("--repo", str(repo), "bead", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    return sorted(b["title"] for b in json.loads(listed.stdout))


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def journal_pending(repo: Path) -> bool:
    journal = repo / ".git" / "gc-polecat" / "journal.json"
    return journal.exists() and journal.stat().st_size > 0


# --- point 5: a ref lock held by git ---------------------------------------------------------


@pytest.fixture
def git_holds_the_branch(repo: Path) -> Iterator[subprocess.Popen[str]]:
    """A real `git update-ref --stdin` transaction, prepared (so it holds
    `refs/heads/<branch>.lock`) and waiting for its `commit` line."""
    branch = git(repo, "symbolic-ref", "HEAD").strip()
    tip = head(repo)
    proc = subprocess.Popen(
        ["git", "update-ref", "--stdin"],
        cwd=repo,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(f"start\nupdate {branch} {tip} {tip}\nprepare\n")
    proc.stdin.flush()
    assert proc.stdout.readline() == "start: ok\n"
    assert proc.stdout.readline() == "prepare: ok\n"
    assert (repo / ".git" / f"{branch}.lock").exists()
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_a_ref_lock_git_holds_makes_the_write_fail_and_is_never_removed(
    repo: Path, git_holds_the_branch: subprocess.Popen[str]
) -> None:
    """Issue 12, point 5: a write that found git's ref lock used to leave its journal, and the
    next command (even `bead list`) deleted git's lock, failing git's commit. Now the write
    fails before anything is written, no command removes the lock, and git's commit works."""
    branch = git(repo, "symbolic-ref", "HEAD").strip()
    lock = repo / ".git" / f"{branch}.lock"
    before = head(repo)
    made = create(repo, "blocked")
    assert made.returncode == 1
    assert str(lock) in one_line(made.stderr) and "nothing was written" in made.stderr
    assert head(repo) == before and not journal_pending(repo)
    assert titles(repo) == []  # a reader: exit 0, and the lock stays
    assert lock.exists()
    proc = git_holds_the_branch
    assert proc.stdin is not None
    out, err = proc.communicate("commit\n", timeout=30)
    assert proc.returncode == 0 and "commit: ok" in out, err
    assert create(repo, "after").returncode == 0
    assert titles(repo) == ["after"]
    assert_clean(repo)


def test_recovery_removes_a_dead_writers_index_lock_but_not_gits_ref_lock(
    repo: Path, tmp_path: Path
) -> None:
    """A writer killed inside its write leaves a journal, its index.lock and its ref lock. If
    git then holds the ref lock (here: after the dead writer's lock was removed by hand),
    recovery removes the dead writer's index.lock, which its record proves ours, and leaves
    git's ref lock alone; git's transaction then commits."""
    branch = git(repo, "symbolic-ref", "HEAD").strip()
    killed = create(repo, "killed", GC_POLECAT_TEST_CRASH_AT="locked")
    assert killed.returncode == -9 and journal_pending(repo)
    ref_lock = repo / ".git" / f"{branch}.lock"
    index_lock = repo / ".git" / "index.lock"
    assert ref_lock.read_bytes().startswith(b"gc-polecat-lock ")
    assert index_lock.read_bytes().startswith(b"gc-polecat-lock ")
    ref_lock.unlink()
    tip = head(repo)
    proc = subprocess.Popen(
        ["git", "update-ref", "--stdin"],
        cwd=repo,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(f"start\nupdate {branch} {tip} {tip}\nprepare\n")
    proc.stdin.flush()
    assert proc.stdout.readline() == "start: ok\n" and proc.stdout.readline() == "prepare: ok\n"
    try:
        assert titles(repo) == []  # the reader recovers: the killed write is undone
        assert not index_lock.exists() and not journal_pending(repo)
        assert ref_lock.exists()  # git's
    finally:
        out, err = proc.communicate("commit\n", timeout=30)
    assert proc.returncode == 0 and "commit: ok" in out, err
    assert_clean(repo)


# --- also seen: index.lock held by an editor --------------------------------------------------


def test_an_editor_holding_index_lock_fails_the_write_before_its_commit(repo: Path) -> None:
    """`git commit -a` holds index.lock while its editor is open. A write used to commit and
    then fail on the index (exit 1 with the bead in HEAD: a retry made a duplicate). Now it
    fails before its commit point, and succeeds once the editor is closed."""
    (repo / "NOTES.md").write_text("one\n")
    git(repo, "add", "NOTES.md")
    git(repo, "commit", "-qm", "notes")
    (repo / "NOTES.md").write_text("two\n")
    gate = repo.parent / "editor-may-finish"
    editor = repo.parent / "editor.sh"
    editor.write_text(f'#!/bin/sh\nwhile [ ! -e "{gate}" ]; do sleep 0.05; done\necho msg > "$1"\n')
    editor.chmod(0o755)
    committer = subprocess.Popen(
        ["git", "commit", "-a"],
        cwd=repo,
        env={**os.environ, "GIT_EDITOR": str(editor)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lock = repo / ".git" / "index.lock"
    deadline = time.monotonic() + 30
    while not lock.exists():
        assert time.monotonic() < deadline and committer.poll() is None
        time.sleep(0.02)
    before = head(repo)
    made = create(repo, "while the editor is open")
    assert made.returncode == 1
    assert "index.lock" in one_line(made.stderr) and "nothing was written" in made.stderr
    assert head(repo) == before and not journal_pending(repo)
    assert lock.exists()  # the editor's lock was not touched
    gate.touch()
    _, err = committer.communicate(timeout=30)
    assert committer.returncode == 0, err
    assert create(repo, "after the editor").returncode == 0
    assert titles(repo) == ["after the editor"]  # exactly one: nothing half-made before
    assert git(repo, "show", "HEAD~1:NOTES.md") == "two\n"
    assert_clean(repo)


# --- point 12: local edits are never overwritten ----------------------------------------------


def bead_file(repo: Path, bead_id: str) -> Path:
    (path,) = (repo / "beads").glob(f"*/*/{bead_id}.yaml")
    return path


def test_an_uncommitted_edit_is_never_overwritten_by_an_update(repo: Path) -> None:
    """Issue 12, point 12 (the update half): `bead update` of a bead whose file holds an
    uncommitted edit used to throw the edit away. Like git's checkout, it now refuses: one
    line naming the file, exit 2, nothing written; once the edit is committed it goes on."""
    bid = create(repo, "x").stdout.strip()
    path = bead_file(repo, bid)
    edited = path.read_text().replace("title: x", "title: edited by hand")
    path.write_text(edited)
    before = head(repo)
    refused = run_cli("--repo", str(repo), "bead", "update", bid, "--priority", "0")
    assert refused.returncode == 2
    rel = str(path.relative_to(repo))
    assert rel in one_line(refused.stderr) and "uncommitted" in refused.stderr
    assert head(repo) == before and path.read_text() == edited and not journal_pending(repo)
    assert not (repo / ".git" / "index.lock").exists()
    git(repo, "commit", "-qam", "hand edit")
    done = run_cli("--repo", str(repo), "bead", "update", bid, "--priority", "0")
    assert done.returncode == 0, done.stderr
    shown = json.loads(run_cli("--repo", str(repo), "bead", "show", bid, "--json").stdout)
    shown = shown[0] if isinstance(shown, list) else shown
    assert (shown["title"], shown["priority"]) == ("edited by hand", 0)
    assert_clean(repo)


def test_a_bead_file_deleted_by_hand_is_not_brought_back_by_an_update(repo: Path) -> None:
    bid = create(repo, "x").stdout.strip()
    path = bead_file(repo, bid)
    path.unlink()
    refused = run_cli("--repo", str(repo), "bead", "close", bid)
    assert refused.returncode == 2 and "deleted" in one_line(refused.stderr)
    assert not path.exists()
    # an unrelated bead is written as usual
    assert create(repo, "other").returncode == 0
    assert not path.exists()


# --- also seen: a work tree that cannot be written --------------------------------------------


def _immutable(path: Path, on: bool) -> bool:
    chattr = shutil.which("chattr")
    if chattr is None:
        return False
    done = subprocess.run([chattr, "+i" if on else "-i", str(path)], capture_output=True)
    return done.returncode == 0


@pytest.fixture
def frozen(repo: Path) -> Iterator[list[Path]]:
    """Paths made immutable (`chattr +i`: even root cannot write them); thawed afterwards."""
    paths: list[Path] = []
    yield paths
    for p in paths:
        _immutable(p, False)


def freeze(frozen: list[Path], path: Path) -> None:
    if not _immutable(path, True):
        pytest.skip("chattr +i is not available here (needs ext4-like file system and root)")
    frozen.append(path)


def test_a_read_only_work_tree_fails_the_write_before_its_commit(
    repo: Path, frozen: list[Path]
) -> None:
    """Issue 12, "also seen": with a read-only work tree a write exited 1 after its commit had
    landed, and a retry made a duplicate bead. It is refused before the commit point now."""
    freeze(frozen, repo / "beads")
    before = head(repo)
    made = create(repo, "x")
    assert made.returncode == 1
    assert "nothing was written" in one_line(made.stderr)
    assert head(repo) == before and not journal_pending(repo)
    _immutable(repo / "beads", False)
    assert create(repo, "x").returncode == 0
    assert titles(repo) == ["x"]  # the retry made one bead, not two
    assert_clean(repo)


def test_a_file_that_cannot_be_replaced_undoes_the_write(repo: Path, frozen: list[Path]) -> None:
    """The file itself refuses the rename (immutable), which no check before the commit point
    sees: the write fails between its files and the ref move and is undone: exit 1, HEAD and
    the index unchanged, the transaction's other file put back, no journal left."""
    first = create(repo, "first").stdout.strip()
    second = create(repo, "second").stdout.strip()
    freeze(frozen, bead_file(repo, second))
    before, index = head(repo), git(repo, "ls-files", "-s")
    closed = run_cli("--repo", str(repo), "bead", "close", first, second)  # one commit
    assert closed.returncode == 1, closed.stderr
    assert "nothing was written" in one_line(closed.stderr)
    assert head(repo) == before and git(repo, "ls-files", "-s") == index
    assert not journal_pending(repo)
    assert git(repo, "status", "--porcelain") == ""
    _immutable(bead_file(repo, second), False)
    closed = run_cli("--repo", str(repo), "bead", "close", first, second)
    assert closed.returncode == 0, closed.stderr
    assert titles(repo) == []  # both closed
    assert_clean(repo)


def test_a_recovery_that_cannot_finish_lets_readers_read_and_stops_writers(
    repo: Path, frozen: list[Path]
) -> None:
    """A writer killed after its files and index (`index-written`, before its ref moved) is
    undone by the next command. If that cannot be done yet (the file it wrote is now
    immutable), a reader prints one warning and reads HEAD, a writer exits 1 with nothing
    written, and once the cause is gone the next command finishes the recovery."""
    bid = create(repo, "old title").stdout.strip()
    before = head(repo)
    killed = run_cli(
        "--repo", str(repo), "bead", "update", bid, "--title", "new title",
        env={"GC_POLECAT_TEST_CRASH_AT": "index-written"},
    )  # fmt: skip
    assert killed.returncode == -9 and journal_pending(repo)
    path = bead_file(repo, bid)
    assert "title: new title" in path.read_text() and head(repo) == before  # written, not committed
    freeze(frozen, path)
    listed = run_cli("--repo", str(repo), "bead", "list", "--json")
    assert listed.returncode == 0
    assert "warning" in one_line(listed.stderr) and "interrupted write" in listed.stderr
    assert [b["title"] for b in json.loads(listed.stdout)] == ["old title"]  # HEAD
    made = create(repo, "blocked")
    assert made.returncode == 1 and "interrupted write" in one_line(made.stderr)
    assert head(repo) == before and journal_pending(repo)
    _immutable(path, False)
    assert titles(repo) == ["old title"]
    assert not journal_pending(repo) and "title: old title" in path.read_text()
    assert create(repo, "after").returncode == 0
    assert titles(repo) == ["after", "old title"]
    assert_clean(repo)


def test_a_staged_edit_is_never_overwritten_either(repo: Path) -> None:
    """An edit staged with `git add` and then undone in the work tree still lives in the index:
    a write refuses it too (exit 2, nothing written), as does a `git rm --cached`."""
    bid = create(repo, "x").stdout.strip()
    path = bead_file(repo, bid)
    original = path.read_text()
    path.write_text(original.replace("title: x", "title: staged"))
    git(repo, "add", str(path))
    path.write_text(original)
    staged_index = git(repo, "ls-files", "-s")
    refused = run_cli("--repo", str(repo), "bead", "update", bid, "--priority", "0")
    assert refused.returncode == 2 and "staged changes" in one_line(refused.stderr)
    assert git(repo, "ls-files", "-s") == staged_index and path.read_text() == original
    git(repo, "reset", "-q")
    git(repo, "rm", "-q", "--cached", str(path))
    refused = run_cli("--repo", str(repo), "bead", "update", bid, "--priority", "0")
    assert refused.returncode == 2 and "removed from the index" in one_line(refused.stderr)
    git(repo, "reset", "-q")
    assert run_cli("--repo", str(repo), "bead", "update", bid, "--priority", "0").returncode == 0
    assert_clean(repo)


def test_a_corrupt_index_fails_the_write_before_its_commit(repo: Path) -> None:
    """The index is read (for the local-change check) under index.lock before the branch moves,
    so an index that cannot be parsed fails the write with one line and nothing committed; a
    write used to commit first and fail on the index after."""
    assert create(repo, "a").returncode == 0
    before = head(repo)
    index = repo / ".git" / "index"
    good = index.read_bytes()
    index.write_bytes(b"garbage" * 20)
    made = create(repo, "b")
    assert made.returncode == 1 and str(index) in one_line(made.stderr)
    assert head(repo) == before and not journal_pending(repo)
    index.write_bytes(good)
    assert create(repo, "b").returncode == 0
    assert titles(repo) == ["a", "b"]
    assert_clean(repo)
