"""Split-index maintenance checked against real git (no mocks): after every update git must see
a clean work tree, a consistent index and a clean fsck."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gc_polecat.beads import gitindex
from gc_polecat.beads.gitindex import (
    IndexFormatError,
    IndexLockedError,
    read_entries,
    update_index,
    write_full_index,
)

ROOT = Path(__file__).resolve().parents[1]
BLOB = 0o100644


@pytest.fixture
def git_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Isolate git from the user's and system configuration."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.delenv("GIT_DIR", raising=False)
    monkeypatch.delenv("GIT_INDEX_FILE", raising=False)
    monkeypatch.delenv("GIT_TEST_SPLIT_INDEX", raising=False)
    for who in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{who}_NAME", "Test")
        monkeypatch.setenv(f"GIT_{who}_EMAIL", "test@example.com")


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    """Each test starts with nothing remembered and leaves no shared index open."""
    gitindex.clear_cache()
    yield
    gitindex.clear_cache()


def git(
    repo: Path, *args: str, env: dict[str, str] | None = None, check: bool = True, stdin: str = ""
) -> str:
    proc = subprocess.run(
        ["git", "-c", "core.quotePath=false", *args],
        input=stdin,
        cwd=repo,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    if check and proc.returncode:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout + proc.stderr


def make_repo(tmp_path: Path, split: str | None = "true", name: str = "repo") -> Path:
    repo = tmp_path / name
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    if split is not None:
        git(repo, "config", "core.splitIndex", split)
    return repo


Content = bytes | tuple[bytes, int] | None  # file content, (content or link target, mode), gone


def commit(repo: Path, files: dict[str, Content]) -> dict[str, tuple[bytes, int] | None]:
    """Our commit path, with git plumbing: write the work tree and objects, move HEAD to a
    commit built in a scratch index (never .git/index), return the changes for update_index."""
    scratch_index = repo / ".git" / "scratch-index"
    scratch_index.unlink(missing_ok=True)

    def scratch(*args: str) -> str:  # a plain (never split) throw-away index
        env = {"GIT_INDEX_FILE": str(scratch_index)}
        return git(repo, "-c", "core.splitIndex=false", *args, env=env)

    has_head = git(repo, "rev-parse", "-q", "--verify", "HEAD", check=False).strip()
    if has_head:
        scratch("read-tree", "HEAD")
    changes: dict[str, tuple[bytes, int] | None] = {}
    for path, content in files.items():
        target = repo / path
        if content is None:
            target.unlink()
            with contextlib.suppress(OSError):  # like git: drop directories left empty
                os.removedirs(target.parent)
            scratch("update-index", "--force-remove", path)
            changes[path] = None
            continue
        data, mode = content if isinstance(content, tuple) else (content, BLOB)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.exists():
            target.unlink()
        if mode == 0o120000:  # a link's blob is its target
            target.symlink_to(data.decode())
            sha = git(repo, "hash-object", "-w", "--stdin", stdin=data.decode()).strip()
        else:
            target.write_bytes(data)
            target.chmod(mode & 0o777)
            sha = git(repo, "hash-object", "-w", path).strip()
        scratch("update-index", "--add", "--cacheinfo", f"{mode:o},{sha},{path}")
        changes[path] = (bytes.fromhex(sha), mode)
    tree = scratch("write-tree").strip()
    parent = ["-p", has_head] if has_head else []
    new = git(repo, "commit-tree", tree, *parent, "-m", "beads").strip()
    git(repo, "update-ref", "HEAD", new)
    return changes


def assert_clean(repo: Path) -> None:
    """git agrees with HEAD and the work tree; index and objects pass fsck."""
    head = {
        line.split("\t")[1]: line.split()[2]
        for line in git(repo, "ls-tree", "-r", "HEAD").splitlines()
    }
    ours = {p: sha.hex() for p, (sha, _) in read_entries(repo / ".git").items()}
    staged = {
        line.split("\t")[1]: line.split()[1] for line in git(repo, "ls-files", "-s").splitlines()
    }
    assert ours == head == staged
    git(repo, "diff-files", "--quiet")
    git(repo, "diff-index", "--cached", "--quiet", "HEAD")
    assert git(repo, "status", "--porcelain") == ""
    git(repo, "diff", "--exit-code")
    fsck = git(repo, "fsck")
    bad = [ln for ln in fsck.splitlines() if ln.startswith(("error", "fatal", "broken", "missing"))]
    assert not bad, fsck


def index_version(path: Path) -> int:
    return struct.unpack(">4sII", path.read_bytes()[:12])[1]


def is_split(repo: Path) -> bool:
    return b"link" in (repo / ".git" / "index").read_bytes()


def current_shared(repo: Path) -> str:
    link = (repo / ".git" / "index").read_bytes().split(b"link")[1]
    return f"sharedindex.{link[4:24].hex()}"


def shared_files(repo: Path) -> set[str]:
    return {p.name for p in (repo / ".git").glob("sharedindex.*")}


@pytest.mark.parametrize("split", ["true", None])
def test_fresh_repo_without_index(git_env: None, tmp_path: Path, split: str | None) -> None:
    repo = make_repo(tmp_path, split)
    changes = commit(repo, {"beads/one.yaml": b"one\n", "beads/two.yaml": b"two\n"})
    assert not (repo / ".git" / "index").exists()
    update_index(repo, repo / ".git", changes)
    assert is_split(repo) and len(shared_files(repo)) == 1
    assert_clean(repo)
    update_index(repo, repo / ".git", commit(repo, {"beads/one.yaml": b"uno\n"}))
    assert_clean(repo)


def test_executables_and_symlinks(git_env: None, tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    files: dict[str, Content] = {
        "run.sh": (b"#!/bin/sh\n", 0o100755),
        "link": (b"run.sh", 0o120000),
    }
    update_index(repo, repo / ".git", commit(repo, files))
    assert_clean(repo)
    files = {"run.sh": (b"#!/bin/sh\n", 0o100644), "link": (b"elsewhere", 0o120000)}
    update_index(repo, repo / ".git", commit(repo, files))
    assert read_entries(repo / ".git")["link"][1] == 0o120000
    assert_clean(repo)


def test_add_modify_delete_in_one_call(git_env: None, tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    update_index(repo, repo / ".git", commit(repo, {f"b/{i}.yaml": b"%d\n" % i for i in range(6)}))
    changes = commit(repo, {"b/0.yaml": None, "b/3.yaml": b"three\n", "b/9.yaml": b"nine\n"})
    update_index(repo, repo / ".git", changes)
    assert sorted(read_entries(repo / ".git")) == [f"b/{i}.yaml" for i in (1, 2, 3, 4, 5, 9)]
    assert_clean(repo)


def test_many_updates_cross_fold_threshold(
    git_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gitindex, "MAX_SPLIT_ENTRIES", 3)
    repo = make_repo(tmp_path)
    rng = random.Random(7)
    live: set[str] = set()
    for step in range(25):
        files: dict[str, Content] = {f"d{step % 3}/n{step}.yaml": b"%d\n" % step}
        if live and step % 4 == 0:
            files[rng.choice(sorted(live))] = None
        if live and step % 3 == 0:
            files[rng.choice(sorted(live - set(files)))] = b"edit %d\n" % step
        update_index(repo, repo / ".git", commit(repo, files))
        live = {p for p in live | set(files) if files.get(p, b"") is not None}
        assert set(read_entries(repo / ".git")) == live
    assert_clean(repo)
    folds = shared_files(repo)
    assert len(folds) > 3  # several folds, old files kept: they are not a day old yet
    day_old = time.time() - 2 * gitindex.SHARED_EXPIRY
    for name in folds:
        os.utime(repo / ".git" / name, (day_old, day_old))
    for step in range(5):  # enough to fold again
        update_index(repo, repo / ".git", commit(repo, {f"late{step}": b"x"}))
    current = current_shared(repo)
    left = shared_files(repo)  # the current one, and perhaps the one referenced before the fold
    assert current in left and len(left) <= 2 and len(folds - left) >= len(folds) - 1
    assert {p.name for p in (repo / ".git" / "gc-polecat").iterdir() if p.is_file()} == {
        f"{name}.offsets" for name in left
    }
    assert_clean(repo)


def test_tricky_sort_order_and_file_to_directory(git_env: None, tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    names = ["a/b", "a.b", "a-b", "a0", "ab", "a/a", "deep/x/y/z/w.yaml", "ü.yaml", "A", "a b"]
    files: dict[str, Content] = {n: b"x\n" for n in names}
    update_index(repo, repo / ".git", commit(repo, files))
    assert_clean(repo)
    # a/b turns from a file into a directory, in one call, among neighbours that sort around it
    update_index(repo, repo / ".git", commit(repo, {"a/b": None, "a/b/c": b"c\n", "a.c": b"."}))
    assert_clean(repo)
    update_index(repo, repo / ".git", commit(repo, {"a/b/c": None, "a/b": b"back\n"}))
    assert_clean(repo)


@pytest.mark.parametrize("version", [2, 3, 4])
@pytest.mark.parametrize("split", ["--split-index", "--no-split-index"])
def test_index_written_by_git(git_env: None, tmp_path: Path, version: int, split: str) -> None:
    repo = make_repo(tmp_path, None)
    for i in range(20):
        (repo / f"f{i:02}").write_text(f"{i}\n")
    (repo / "dir").mkdir()
    (repo / "dir" / "skip").write_text("skip\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "init")
    if version == 3:
        git(repo, "update-index", "--skip-worktree", "dir/skip")
    git(repo, "update-index", "--index-version", str(version), split)
    git(repo, "update-index", "--refresh")
    update_index(repo, repo / ".git", commit(repo, {"f03": b"changed\n", "new": b"n\n"}))
    update_index(repo, repo / ".git", commit(repo, {"f05": None, "f06": b"six\n"}))
    assert_clean(repo)
    if version == 3:
        assert git(repo, "ls-files", "-v", "dir/skip").startswith("S ")


def test_split_index_edited_by_git_across_many_bitmap_words(git_env: None, tmp_path: Path) -> None:
    """git's own replace/delete bitmaps over a 300-entry shared index, then ours on top."""
    repo = make_repo(tmp_path, "true")
    for i in range(300):
        (repo / f"f{i:03}").write_text(f"{i}\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "init")
    for i in range(3, 300, 29):
        (repo / f"f{i:03}").write_text("edited by git\n")
    git(repo, "rm", "-q", *(f"f{i:03}" for i in range(10, 300, 41)))
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "git edits")
    link = (repo / ".git" / "index").read_bytes().split(b"link")[1]
    assert len(link) > 4 + 20 + 2 * 16  # real bitmaps, not an empty split
    assert_clean(repo)
    update_index(repo, repo / ".git", commit(repo, {"f003": b"ours\n", "f200": None, "g": b"g"}))
    update_index(repo, repo / ".git", commit(repo, {f"f{i:03}": b"x" for i in range(50, 300, 37)}))
    assert_clean(repo)


def test_intent_to_add_is_preserved(
    git_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path)
    update_index(repo, repo / ".git", commit(repo, {"a": b"a\n"}))
    (repo / "planned").write_text("later\n")
    git(repo, "add", "-N", "planned")  # git writes the i-t-a entry into its split part
    update_index(repo, repo / ".git", commit(repo, {"b": b"b\n"}))
    monkeypatch.setattr(gitindex, "MAX_SPLIT_ENTRIES", 0)
    update_index(repo, repo / ".git", commit(repo, {"c": b"c\n"}))  # folds it into shared
    assert index_version(next((repo / ".git").glob("sharedindex.*"))) == 3
    update_index(repo, repo / ".git", commit(repo, {"c": b"c2\n"}))
    assert git(repo, "status", "--porcelain") == " A planned\n"


@pytest.mark.parametrize("split", ["true", "false", None])
def test_git_rewrites_index_between_updates(
    git_env: None, tmp_path: Path, split: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gitindex, "MAX_SPLIT_ENTRIES", 4)
    repo = make_repo(tmp_path, split)
    update_index(repo, repo / ".git", commit(repo, {f"b/{i}": b"%d" % i for i in range(10)}))
    rewrites = [
        ("status",),
        ("-c", "core.splitIndex=true", "status"),
        ("update-index", "--no-split-index"),
        ("update-index", "--split-index"),
        ("update-index", "--index-version", "4"),
        ("-c", "splitIndex.maxPercentChange=0", "update-index", "--refresh"),
    ]
    for step, args in enumerate(rewrites * 2):
        update_index(repo, repo / ".git", commit(repo, {f"b/{step}": b"s%d" % step}))
        git(repo, *args)
        assert_clean(repo)
        # ... and a user keeps working with git in between
        (repo / f"user{step}.txt").write_text("mine\n")
        git(repo, "add", f"user{step}.txt")
        git(repo, "commit", "-qm", "user")
        assert_clean(repo)
        files: dict[str, Content] = {f"c/{step}": b"c"}
        if step:
            files[f"c/{step - 1}"] = None
        update_index(repo, repo / ".git", commit(repo, files))
        assert_clean(repo)


def test_an_old_lock_of_someone_else_is_never_removed(
    git_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Like git (`lockfile.c`), an index.lock that does not prove itself ours is left alone
    however old it is: it may be a `git commit` whose editor has been open for an hour."""
    monkeypatch.setattr(gitindex, "LOCK_TIMEOUT", 0.2)
    repo = make_repo(tmp_path)
    lock = repo / ".git" / "index.lock"
    lock.write_bytes(b"left by git, or held by an editor")
    old = time.time() - 3600
    os.utime(lock, (old, old))
    with pytest.raises(IndexLockedError, match="index.lock is held by another process"):
        update_index(repo, repo / ".git", commit(repo, {"a": b"a"}))
    assert lock.read_bytes() == b"left by git, or held by an editor"


def test_the_lock_of_a_dead_gc_polecat_writer_is_removed(git_env: None, tmp_path: Path) -> None:
    """A lock whose record names a gc-polecat process that is gone is taken over at once."""
    repo = make_repo(tmp_path)
    dead = subprocess.run(
        [sys.executable, "-c", HOLD_AND_EXIT, str(repo / ".git")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    lock = repo / ".git" / "index.lock"
    assert lock.read_bytes().startswith(b"gc-polecat-lock %s " % dead.stdout.strip().encode())
    update_index(repo, repo / ".git", commit(repo, {"a": b"a"}))
    assert not lock.exists()
    assert_clean(repo)


# Takes index.lock the way gc-polecat does and exits holding it (as a SIGKILL would leave it).
HOLD_AND_EXIT = """
import os, sys
from pathlib import Path
from gc_polecat.beads.locks import OwnLock
OwnLock(Path(sys.argv[1]) / "index.lock", 1.0, "test", Path(sys.argv[1]) / "gc-polecat" / "tmp")
print(os.getpid())
"""


def test_fresh_lock_raises_and_leaves_index_alone(
    git_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gitindex, "LOCK_TIMEOUT", 0.2)
    repo = make_repo(tmp_path)
    update_index(repo, repo / ".git", commit(repo, {"a": b"a"}))
    before = (repo / ".git" / "index").read_bytes()
    lock = repo / ".git" / "index.lock"
    lock.write_bytes(b"someone else")
    with pytest.raises(IndexLockedError):
        update_index(repo, repo / ".git", commit(repo, {"b": b"b"}))
    assert lock.read_bytes() == b"someone else"
    assert (repo / ".git" / "index").read_bytes() == before


def test_missing_offsets_sidecar_is_rebuilt(git_env: None, tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    update_index(repo, repo / ".git", commit(repo, {f"x{i}": b"%d" % i for i in range(30)}))
    write_full_index(repo, repo / ".git", [(p, *v) for p, v in read_entries(repo / ".git").items()])
    sidecar = repo / ".git" / "gc-polecat" / f"{current_shared(repo)}.offsets"
    content = sidecar.read_bytes()
    sidecar.unlink()
    update_index(repo, repo / ".git", commit(repo, {"x7": b"seven", "x70": b"new"}))
    assert sidecar.read_bytes() == content
    sidecar.write_bytes(b"\0" * 3)  # wrong size: also rebuilt
    update_index(repo, repo / ".git", commit(repo, {"x8": None}))
    assert sidecar.read_bytes() == content
    assert_clean(repo)


def test_corrupt_index_raises_naming_the_file(git_env: None, tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    update_index(repo, repo / ".git", commit(repo, {"a": b"a", "b": b"b"}))
    index = repo / ".git" / "index"
    good = index.read_bytes()
    for bad in (good[:-1] + bytes([good[-1] ^ 1]), good[:30], b"garbage" * 10):
        index.write_bytes(bad)
        with pytest.raises(IndexFormatError, match=str(index)):
            update_index(repo, repo / ".git", {"a": None})
        with pytest.raises(IndexFormatError, match=str(index)):
            read_entries(repo / ".git")
        assert not (repo / ".git" / "index.lock").exists()
    index.write_bytes(good)
    (shared,) = (repo / ".git").glob("sharedindex.*")
    shared.unlink()
    with pytest.raises(IndexFormatError, match=shared.name):
        update_index(repo, repo / ".git", {"a": None})
    # recovery: rebuild from HEAD
    write_full_index(
        repo,
        repo / ".git",
        [
            (ln.split("\t")[1], bytes.fromhex(ln.split()[2]), BLOB)
            for ln in git(repo, "ls-tree", "-r", "HEAD").splitlines()
        ],
    )
    assert_clean(repo)


def test_racily_clean_entry_is_smudged(git_env: None, tmp_path: Path) -> None:
    """A same-size edit that keeps the recorded mtime must not become invisible to git once we
    write a newer index (git's racy-git problem)."""
    repo = make_repo(tmp_path)
    update_index(repo, repo / ".git", commit(repo, {"base": b"base"}))
    future = time.time_ns() + 50 * 10**9
    changes = commit(repo, {"racy": b"aaaa"})
    os.utime(repo / "racy", ns=(future, future))  # not older than the index we are about to write
    update_index(repo, repo / ".git", changes)
    (repo / "racy").write_bytes(b"bbbb")
    os.utime(repo / "racy", ns=(future, future))
    update_index(repo, repo / ".git", commit(repo, {"other": b"o"}))
    entry = [ln for ln in git(repo, "ls-files", "--debug", "racy").splitlines() if "size" in ln]
    assert entry[0].split()[1] == "0"  # smudged: git will re-hash it
    assert git(repo, "status", "--porcelain") == " M racy\n"


def test_rejects_bad_paths(git_env: None, tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    for bad in ("/abs", "a/../b", ".git/config", "x/.GIT/y", "a//b", "dir/", ""):
        with pytest.raises(ValueError):
            update_index(repo, repo / ".git", {bad: None})


@pytest.mark.parametrize("cache", [True, False])
def test_hot_path_does_not_read_the_whole_shared_index(
    git_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache: bool
) -> None:
    monkeypatch.setattr(gitindex, "CACHE_ENABLED", cache)
    repo = make_repo(tmp_path)
    git_dir = repo / ".git"
    sha = bytes.fromhex(git(repo, "hash-object", "-w", "--stdin").strip() or "0" * 40)
    names = [f"beads/{i % 97:02}/{i:06}.yaml" for i in range(50_000)]
    write_full_index(repo, git_dir, [(n, sha, BLOB) for n in names])
    update_index(repo, git_dir, {n: (sha, BLOB) for n in names[100:300]})  # a split part

    full_reads: list[str] = []
    real_read, real_probe = gitindex._read_index, gitindex._Shared.__getitem__
    probes = 0

    def spy(path: Path) -> object:
        full_reads.append(path.name)
        return real_read(path)

    def probe(self: object, i: int) -> bytes:
        nonlocal probes
        probes += 1
        return real_probe(self, i)

    def forbidden(*args: object) -> None:
        raise AssertionError("full parse of the shared index on the hot path")

    monkeypatch.setattr(gitindex, "_read_index", spy)
    monkeypatch.setattr(gitindex, "_resolve", forbidden)
    monkeypatch.setattr(gitindex, "_write_shared", forbidden)
    monkeypatch.setattr(gitindex._Shared, "__getitem__", probe)
    (repo / "beads" / "new.yaml").parent.mkdir()
    (repo / "beads" / "new.yaml").write_text("")
    update_index(repo, git_dir, {"beads/new.yaml": (sha, BLOB), names[777]: None, names[4]: None})
    assert full_reads == ([] if cache else ["index"])  # the cache stands in for .git/index
    assert probes <= 3 * 20  # a binary search per changed path, nothing per split entry
    monkeypatch.undo()
    entries = read_entries(git_dir)
    assert len(entries) == 50_000 - 2 + 1 and "beads/new.yaml" in entries
    assert names[777] not in entries and names[5] in entries


# --- the per-process cache --------------------------------------------------------------------


def count_reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every file _read_index parses from now on (the parse the cache is there to avoid)."""
    reads: list[Path] = []
    real = gitindex._read_index

    def counting(path: Path) -> gitindex._Index | None:
        reads.append(Path(path))
        return real(path)

    monkeypatch.setattr(gitindex, "_read_index", counting)
    return reads


def index_reads(reads: list[Path], git_dir: Path) -> int:
    return reads.count(git_dir / "index")


def fold_all(repo: Path) -> None:
    """Move every entry into a new shared index (those not written in this very tick)."""
    write_full_index(repo, repo / ".git", [(p, *v) for p, v in read_entries(repo / ".git").items()])


def test_cached_updates_write_the_same_bytes_as_uncached(
    git_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One sequence of updates (adds, edits, deletes, folds, racy entries, a racy edit) against
    two git dirs over one work tree, so that the stat data agree: one with the cache, one
    without. Every .git/index and every shared index must come out identical."""
    monkeypatch.setattr(gitindex, "MAX_SPLIT_ENTRIES", 6)
    monkeypatch.setattr(gitindex, "CACHE_ENABLED", True)
    reads = count_reads(monkeypatch)
    repo = make_repo(tmp_path)
    cached, uncached = repo / ".git", tmp_path / "uncached.git"
    uncached.mkdir()
    now = time.time_ns()
    future = now + 3600 * 10**9  # racy: never older than an index we write
    rng = random.Random(3)
    live: set[str] = set()
    racy: set[str] = set()  # live files with a future mtime
    edited = ""  # a racy file whose content we changed behind the index's back
    for step in range(40):
        files: dict[str, Content] = {f"n/{step}.yaml": b"new %d\n" % step}
        others = sorted(live - {edited})
        if others and step % 3 == 0:
            files[rng.choice(others)] = b"edit %d\n" % step
        if len(others) > 4 and step % 5 == 0:
            files[rng.choice(sorted(set(others) - set(files)))] = None
        if edited and step % 7 == 5:
            files[edited], edited = b"fixed\n", ""
        changes = commit(repo, files)
        for path, content in files.items():
            racy.discard(path)
            live.discard(path)
            if content is not None:  # a fixed mtime, else one run folds what the other keeps
                stamp = future if step % 4 == 0 else now - (100 - step) * 10**9
                os.utime(repo / path, ns=(stamp, stamp))
                live.add(path)
                racy.update([path] if stamp == future else [])
        for git_dir, enabled in ((cached, True), (uncached, False)):
            gitindex.CACHE_ENABLED = enabled
            update_index(repo, git_dir, changes)
        assert (cached / "index").read_bytes() == (uncached / "index").read_bytes(), step
        assert {p.name for p in cached.glob("sharedindex.*")} == {
            p.name for p in uncached.glob("sharedindex.*")
        }
        if step % 7 == 3 and step < 35 and racy:  # same size and mtime: only a re-hash sees it
            edited = sorted(racy)[0]
            size = (repo / edited).stat().st_size
            (repo / edited).write_bytes(b"x" * size)
            os.utime(repo / edited, ns=(future, future))
        elif edited:
            listed = git(repo, "ls-files", "--debug", edited).split("size: ")[1].split()[0]
            assert listed == "0"  # smudged, in both (the bytes are equal)
    assert index_reads(reads, cached) == 1  # the first call, when there was nothing to remember
    assert index_reads(reads, uncached) == 40
    assert len(shared_files(repo)) >= 4  # several folds, from cached state
    assert not edited
    assert_clean(repo)


@pytest.mark.parametrize("rewrite", ["status", "add", "no-split-index", "touch"])
def test_index_rewritten_between_updates_is_read_again(
    git_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rewrite: str
) -> None:
    repo = make_repo(tmp_path)
    git_dir = repo / ".git"
    update_index(repo, git_dir, commit(repo, {f"b/{i}": b"%d\n" % i for i in range(40)}))
    fold_all(repo)  # else git sees a split part of 40 additions and writes a new shared index
    update_index(repo, git_dir, commit(repo, {"b/0": b"zero\n"}))
    reads = count_reads(monkeypatch)
    opened: list[bytes] = []
    real_init = gitindex._Shared.__init__

    def counting_init(self: gitindex._Shared, git_dir: Path, sha: bytes) -> None:
        opened.append(sha)
        real_init(self, git_dir, sha)

    monkeypatch.setattr(gitindex._Shared, "__init__", counting_init)
    update_index(repo, git_dir, commit(repo, {"b/1": b"one\n"}))
    assert reads == [] and opened == []  # served from the cache
    before, shared = os.stat(git_dir / "index"), current_shared(repo)
    if rewrite == "status":  # git refreshes the changed stat data and writes the index back
        old = time.time_ns() - 10**12
        os.utime(repo / "b/2", ns=(old, old))
        git(repo, "status", "--porcelain")
    elif rewrite == "add":
        (repo / "user.txt").write_text("mine\n")
        git(repo, "add", "user.txt")
        git(repo, "commit", "-qm", "user")
    elif rewrite == "no-split-index":
        git(repo, "update-index", "--no-split-index")
    else:  # same bytes, but a new mtime: the racy-git reference point moved
        os.utime(git_dir / "index", ns=(before.st_mtime_ns + 1,) * 2)
    after = os.stat(git_dir / "index")
    assert (after.st_ino, after.st_mtime_ns) != (before.st_ino, before.st_mtime_ns)
    update_index(repo, git_dir, commit(repo, {"b/3": b"three\n"}))
    assert index_reads(reads, git_dir) == 1
    if rewrite == "no-split-index":
        assert current_shared(repo) != shared  # folded: git's index was not split
    else:
        assert current_shared(repo) == shared and opened == []  # still mapped: not reopened
    assert_clean(repo)  # may rewrite the index itself, so the next call may read it once more
    reads.clear()
    update_index(repo, git_dir, commit(repo, {"b/4": b"four\n"}))
    update_index(repo, git_dir, commit(repo, {"b/5": b"five\n"}))
    assert index_reads(reads, git_dir) <= 1
    assert_clean(repo)


def test_fold_from_cached_state(
    git_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gitindex, "MAX_SPLIT_ENTRIES", 3)
    repo = make_repo(tmp_path)
    git_dir = repo / ".git"
    update_index(repo, git_dir, commit(repo, {f"b/{i}": b"%d" % i for i in range(10)}))
    reads = count_reads(monkeypatch)
    folds = 0
    for step in range(12):
        before = current_shared(repo)
        files: dict[str, Content] = {f"b/{step % 10}": b"s%d" % step, f"c/{step}": b"c"}
        if step:
            files[f"c/{step - 1}"] = None
        update_index(repo, git_dir, commit(repo, files))
        folds += current_shared(repo) != before
    assert folds >= 3
    assert index_reads(reads, git_dir) == 0  # every fold started from the cached split
    assert {p.name for p in reads} <= shared_files(repo)  # ... reading only the shared index
    assert sorted(read_entries(git_dir)) == [f"b/{i}" for i in range(10)] + ["c/11"]
    assert_clean(repo)


@pytest.mark.parametrize("ahead", [50.0, 0.5])
@pytest.mark.parametrize("where", ["added", "replaced"])
def test_racily_clean_entry_is_smudged_from_cached_state(
    git_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str, ahead: float
) -> None:
    """test_racily_clean_entry_is_smudged, with the racy entry known only from the cache: in
    the split's additions, or replacing a shared index entry. With a small `ahead` the entry's
    mtime is past by the next call, yet not older than the index that call replaces: racy
    only by the old index's mtime, not by the clock."""
    repo = make_repo(tmp_path)
    first: dict[str, Content] = {"base": b"base"}
    if where == "replaced":
        first["racy"] = b"orig"
    update_index(repo, repo / ".git", commit(repo, first))
    fold_all(repo)  # "racy" moves to the shared index, to be replaced below
    changes = commit(repo, {"racy": b"aaaa"})
    future = time.time_ns() + int(ahead * 10**9)
    os.utime(repo / "racy", ns=(future, future))  # not older than the index we are about to write
    update_index(repo, repo / ".git", changes)
    assert os.stat(repo / ".git" / "index").st_mtime_ns <= future
    while ahead < 1 and time.time_ns() <= future + 10**7:  # wait until its mtime is past
        time.sleep(0.05)
    reads = count_reads(monkeypatch)
    (repo / "racy").write_bytes(b"bbbb")
    os.utime(repo / "racy", ns=(future, future))
    update_index(repo, repo / ".git", commit(repo, {"other": b"o"}))
    assert reads == []  # the index was not read: the entry checked was the cached one
    index = (repo / ".git" / "index").read_bytes()
    assert (b"racy" in index) == (where == "added")  # replacements carry no name
    entry = [ln for ln in git(repo, "ls-files", "--debug", "racy").splitlines() if "size" in ln]
    assert entry[0].split()[1] == "0"  # smudged: git will re-hash it
    assert git(repo, "status", "--porcelain") == " M racy\n"


OTHER_WRITER = """
import json, sys
sys.path.insert(0, {root!r})
from gc_polecat.beads import gitindex
gitindex.MAX_SPLIT_ENTRIES = int(sys.argv[2])
changes = {{p: v and (bytes.fromhex(v[0]), v[1]) for p, v in json.loads(sys.argv[3]).items()}}
gitindex.update_index(sys.argv[1], sys.argv[1] + "/.git", changes)
"""


@pytest.mark.parametrize("fold", [False, True])
def test_update_by_another_process_is_read_again(
    git_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fold: bool
) -> None:
    repo = make_repo(tmp_path)
    git_dir = repo / ".git"
    update_index(repo, git_dir, commit(repo, {"a": b"a", "b": b"b"}))
    update_index(repo, git_dir, commit(repo, {"a": b"a2"}))
    reads = count_reads(monkeypatch)
    theirs = commit(repo, {"c": b"c", "b": None})
    encoded = {p: v and (v[0].hex(), v[1]) for p, v in theirs.items()}
    script = OTHER_WRITER.format(root=str(ROOT))
    limit = "0" if fold else "500"
    subprocess.run(
        [sys.executable, "-c", script, str(repo), limit, json.dumps(encoded)], check=True
    )
    assert len(shared_files(repo)) == (2 if fold else 1)
    update_index(repo, git_dir, commit(repo, {"d": b"d"}))
    assert reads == [git_dir / "index"]
    assert sorted(read_entries(git_dir)) == ["a", "c", "d"]
    assert_clean(repo)


def test_cached_state_does_not_hide_a_missing_shared_index(git_env: None, tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    update_index(repo, repo / ".git", commit(repo, {"a": b"a", "b": b"b"}))
    update_index(repo, repo / ".git", commit(repo, {"a": b"a2"}))
    (shared,) = (repo / ".git").glob("sharedindex.*")
    shared.unlink()
    with pytest.raises(IndexFormatError, match=shared.name):
        update_index(repo, repo / ".git", commit(repo, {"b": None}))


def test_cache_is_bounded_and_releases_its_files(
    git_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gitindex, "CACHE_SIZE", 2)
    repos = [make_repo(tmp_path, name=f"r{i}") for i in range(4)]

    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    before = open_fds()
    for step in range(3):
        for repo in repos:
            update_index(repo, repo / ".git", commit(repo, {"a": b"%d" % step}))
    assert len(gitindex._cache) == 2
    assert open_fds() - before <= 2 * 2  # a shared index and its sidecar per remembered dir
    gitindex.clear_cache()
    assert open_fds() == before
    for repo in repos:
        assert_clean(repo)


CHILD = """
import contextlib, os, sys
sys.path.insert(0, {root!r})
from gc_polecat.beads import gitindex
gitindex.MAX_SPLIT_ENTRIES = 4
repo, sha, start = sys.argv[1], bytes.fromhex(sys.argv[2]), int(sys.argv[3])
for i in range(start, start + 100000):
    with open(os.path.join(repo, f"d/f{{i}}"), "w") as f:
        f.write("same\\n")
    changes = {{f"d/f{{i}}": (sha, 0o100644)}}
    if i >= 5:
        with contextlib.suppress(FileNotFoundError):  # a killed run may have done it
            os.unlink(os.path.join(repo, f"d/f{{i - 5}}"))
        changes[f"d/f{{i - 5}}"] = None
    gitindex.update_index(repo, repo + "/.git", changes)
    if i == start:
        print("ready", flush=True)
"""


def test_sigkill_mid_update_leaves_a_readable_index(git_env: None, tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    (repo / "d").mkdir()
    (repo / "d" / "f").write_text("same\n")
    sha = git(repo, "hash-object", "-w", "d/f").strip()
    (repo / "d" / "f").unlink()
    script = CHILD.format(root=str(ROOT))
    rng = random.Random(1)
    start = inside = 0
    for _ in range(30):
        child = subprocess.Popen(
            [sys.executable, "-c", script, str(repo), sha, str(start)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        time.sleep(rng.uniform(0, 0.05))
        child.send_signal(signal.SIGKILL)
        child.wait()
        entries = sorted(int(p[3:]) for p in read_entries(repo / ".git"))
        assert entries == list(range(entries[0], entries[0] + len(entries)))  # old or new
        assert len(entries) == min(5, entries[-1] + 1)
        staged = git(repo, "ls-files", "-s").splitlines()
        assert len(staged) == len(entries)
        fsck = git(repo, "fsck")
        assert "error" not in fsck and "fatal" not in fsck
        lock = repo / ".git" / "index.lock"
        if lock.exists():  # killed inside update_index: its record names the dead child
            inside += 1
        start = entries[-1] + 1
        for stray in (repo / "d").iterdir():  # files written but not yet indexed
            if int(stray.name[1:]) not in entries:
                stray.unlink()
    assert inside >= 5  # the kills really did land in the middle of updates


@pytest.mark.parametrize("split", ["true", None])
def test_staged_agrees_with_a_full_read_of_what_git_wrote(
    git_env: None, tmp_path: Path, split: str | None
) -> None:
    """`staged` (binary search in the split index; the store's check for staged edits) gives
    what a full read gives, for an index git itself edited: additions, replacements and
    deletions against the shared index, a conflict, paths never seen; split or not."""
    repo = make_repo(tmp_path, split=split)
    update_index(repo, repo / ".git", commit(repo, {f"d/f{i}": b"%d" % i for i in range(40)}))
    if split:
        git(repo, "update-index", "--split-index")  # fold: the files above go to the shared part
    (repo / "d" / "f3").write_text("edited\n")
    (repo / "new").write_text("new\n")
    git(repo, "add", "d/f3", "new")
    git(repo, "rm", "-q", "--cached", "d/f7")
    blob = git(repo, "hash-object", "-w", "--stdin", stdin="theirs\n").strip()
    conflict = f"0 {'0' * 40}\td/f9\n100644 {blob} 2\td/f9\n100644 {blob} 3\td/f9\n"
    git(repo, "update-index", "--index-info", stdin=conflict)
    assert len(git(repo, "ls-files", "-s", "d/f9").splitlines()) == 2
    paths = [f"d/f{i}" for i in range(40)] + ["new", "missing", "d/zzz"]
    full = read_entries(repo / ".git")
    got = gitindex.staged(repo / ".git", paths)
    assert got["d/f9"] == gitindex.UNMERGED
    assert got["d/f7"] is None and got["missing"] is None and got["d/zzz"] is None
    for path in paths:
        if path != "d/f9":
            assert got[path] == full.get(path), path
    update_index(repo, repo / ".git", {"d/f3": None})  # and from this process's cache
    assert gitindex.staged(repo / ".git", ["d/f3", "d/f4"]) == {
        "d/f3": None,
        "d/f4": read_entries(repo / ".git")["d/f4"],
    }
