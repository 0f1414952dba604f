"""`sync` treats every tree a remote sends as untrusted (issue 12, points 1, 2 and 12).

The hostile remote is real: commits crafted with dulwich objects in an attacker's clone (git's
own tools refuse to build such trees), pushed with real `git push` to a real bare repository
(`receive.fsckObjects` is off by default, as on most hosts), then the real `gc-polecat sync`
runs in a real process on a victim clone. A refused commit must leave the victim exactly as it
was (HEAD, refs, index, work tree, journal, `.git/hooks`), write nothing outside it, exit 2 with
one line, and the victim must stay fully usable.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
from pathlib import Path

import pytest
from dulwich.objects import Blob, Commit, Tree
from dulwich.repo import Repo

from gc_polecat.beads.layout import name_problem

from .conftest import assert_clean, git, run_cli
from .test_sync import World, world  # noqa: F401 - the two-clone fixture

FILE, EXEC, LINK, GITLINK, TREE = 0o100644, 0o100755, 0o120000, 0o160000, 0o040000
Entry = tuple[tuple[bytes, ...], int, bytes]  # path parts, mode, blob data (gitlink: a hex sha)


# --- the attacker ---------------------------------------------------------------------------------


def _insert(repo: Repo, tree_sha: bytes | None, parts: tuple[bytes, ...], mode: int, data: bytes):
    """A copy of the tree at `tree_sha` with `parts` set; names are taken as they are."""
    tree = Tree()
    if tree_sha is not None:
        for entry in repo[tree_sha].iteritems():
            tree.add(entry.path, entry.mode, entry.sha)
    name = parts[0]
    if len(parts) == 1:
        if mode == GITLINK:
            sha = data
        else:
            blob = Blob.from_string(data)
            repo.object_store.add_object(blob)
            sha = blob.id
        tree.add(name, mode, sha)
    else:
        below = tree[name][1] if name in tree and tree[name][0] == TREE else None
        tree.add(name, TREE, _insert(repo, below, parts[1:], mode, data))
    repo.object_store.add_object(tree)
    return tree.id


def _raw_tree(repo: Repo, raw: bytes) -> bytes:
    """A tree object from raw bytes (for what dulwich's Tree cannot express: duplicates)."""
    tree = Tree.from_raw_string(Tree.type_num, raw)
    repo.object_store.add_object(tree)
    return tree.id


def push_hostile(w: World, entries: list[Entry], root: bytes | None = None) -> str:
    """Commit `entries` on top of the remote's branch in the attacker's clone, with dulwich,
    and push it with real git; `root` replaces the whole root tree. Returns the commit."""
    attacker = w.tmp / "attacker"
    if not attacker.exists():
        git(w.tmp, "clone", "-q", str(w.origin), str(attacker))
    git(attacker, "fetch", "-q", "origin")
    git(attacker, "reset", "-q", "--hard", "origin/master")
    repo = Repo(str(attacker))
    parent = repo[b"refs/remotes/origin/master"]
    tree = parent.tree
    for parts, mode, data in entries:
        tree = _insert(repo, tree, parts, mode, data)
    commit = Commit()
    commit.tree, commit.parents = root or tree, [parent.id]
    commit.author = commit.committer = b"Mallory <m@example.com>"
    commit.author_time = commit.commit_time = 1_900_000_000
    commit.author_timezone = commit.commit_timezone = 0
    commit.message = b"hostile\n"
    repo.object_store.add_object(commit)
    git(attacker, "push", "-q", "origin", f"{commit.id.decode()}:refs/heads/master")
    return commit.id.decode()


# --- what "untouched" means -----------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, object]:
    """Everything a refused sync must leave as it was."""
    files = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == root:
            dirnames.remove(".git")
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            if path.is_symlink():
                files[str(path)] = ("link", os.readlink(path))
            elif path.is_file():
                st = path.stat()
                files[str(path)] = (st.st_mode, hashlib.sha1(path.read_bytes()).hexdigest())
            else:
                files[str(path)] = "dir"
    journal = root / ".git" / "gc-polecat" / "journal.json"
    return {
        "refs": git(root, "for-each-ref"),
        "head": git(root, "rev-parse", "HEAD"),
        "index": git(root, "ls-files", "-s"),
        "index-file": (root / ".git" / "index").read_bytes(),
        "status": git(root, "--no-optional-locks", "status", "--porcelain", "--ignored"),
        "files": files,
        "hooks": sorted(os.listdir(root / ".git" / "hooks")),
        "journal": journal.read_bytes() if journal.exists() else b"",
    }


def refused(root: Path, *args: str) -> str:
    """Run `gc-polecat sync` for real; it must exit 2 with one line and change nothing."""
    before = snapshot(root)
    proc = run_cli("--repo", str(root), "sync", *args)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert proc.stdout == "" and len(proc.stderr.splitlines()) == 1, proc.stderr
    after = snapshot(root)
    assert after == before, {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    return proc.stderr


def still_usable(root: Path) -> None:
    """A later write and a later read both work, and every invariant holds."""
    made = run_cli("--repo", str(root), "bead", "create", "after the refusal")
    assert made.returncode == 0, made.stderr
    listed = run_cli("--repo", str(root), "bead", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert made.stdout.strip() in listed.stdout
    assert git(root, "status", "--porcelain") == ""
    assert git(root, "rev-list", "--merges", "HEAD") == ""
    # fsck reads every object, the refused ones that fetch stored included: their faults are
    # the remote's (warned), and nothing reachable here may hold any
    fsck = subprocess.run(
        ["git", "-C", str(root), "-c", "fsck.duplicateEntries=warn", "fsck", "--no-dangling"],
        capture_output=True,
        text=True,
    )
    assert fsck.returncode == 0 and "error" not in fsck.stderr.lower(), fsck.stderr
    assert git(root, "fsck", "--connectivity-only", "--no-dangling") == ""


# --- point 1: paths and modes outside the layout --------------------------------------------------

HOOK = b'#!/bin/sh\ntouch "$PWNED"\n'
BLOB = Blob.from_string(b"x").id
HOSTILE: dict[str, tuple[list[Entry], str]] = {
    "hook in .git": ([((b".git", b"hooks", b"post-commit"), EXEC, HOOK)], "'.git' component"),
    "dot-dot escape": ([((b"..", b"ESCAPED.txt"), FILE, b"out\n")], "'..'"),
    "dot component": ([((b"beads", b".", b"x.yaml"), FILE, b"x\n")], "'.'"),
    ".GIT upper case": ([((b".GIT", b"hooks", b"post-commit"), EXEC, HOOK)], "'.git'"),
    ".git trailing dot": ([((b".git.", b"config"), FILE, b"[core]\n")], "'.git'"),
    ".git trailing space": ([((b".git ", b"config"), FILE, b"[core]\n")], "'.git'"),
    "NTFS short name": ([((b"GIT~1", b"config"), FILE, b"[core]\n")], "'.git'"),
    "HFS ignorable": ([((".g\u200cit".encode(), b"config"), FILE, b"[core]\n")], "'.git'"),
    "nested .git": ([((b"beads", b"4", b".git", b"config"), FILE, b"x\n")], "'.git'"),
    "slash in a name": ([((b"beads", b"../../SLASH.txt"), FILE, b"x\n")], "'/'"),
    "absolute name": ([((b"/tmp/ABSOLUTE.txt",), FILE, b"x\n")], "'/'"),
    "backslash": ([((b"..\\BACK.txt",), FILE, b"x\n")], "backslash"),
    "control character": ([((b"beads", b"a\nb"), FILE, b"x\n")], "control character"),
    "not UTF-8": ([((b"beads", b"\xff.yaml"), FILE, b"x\n")], "not UTF-8"),
    "symlinked bead file": (
        [((b"beads", b"4", b"f", b"gc-4f2.yaml"), LINK, b"/etc/passwd")],
        "a symlink (the layout has none outside .beads/hooks)",
    ),
    "symlinked shard": ([((b"beads", b"7"), LINK, b"/tmp")], "a symlink"),
    "symlinked config": ([((b".beads", b"config.yaml"), LINK, b"/etc/passwd")], "symlink"),
    "hook linked outside": (
        [((b".beads", b"hooks", b"on_create"), LINK, b"../../../../bin/sh")],
        "not to a sibling hook",
    ),
    "gitlink": ([((b"beads", b"5"), GITLINK, BLOB)], "submodule"),
    "beads a file": ([((b"beads",), FILE, b"x\n")], "must be a directory"),
    "hooks dir a link": ([((b".beads", b"hooks"), LINK, b"/tmp")], "must be a directory"),
    "file as a shard": ([((b"beads", b"q"), FILE, b"x\n")], "not a bead shard directory"),
    "long shard name": ([((b"beads", b"qq", b"a", b"gc-qqa.yaml"), FILE, b"x\n")], "shard"),
    "stray file": ([((b"beads", b"4", b"f", b"notes.txt"), FILE, b"x\n")], "not a bead file"),
    "wrong shard": ([((b"beads", b"4", b"f", b"gc-zz9.yaml"), FILE, b"x\n")], "not a bead file"),
    "exec bead": ([((b"beads", b"4", b"f", b"gc-4f2.yaml"), EXEC, b"x\n")], "mode 100644"),
    "too deep in beads": ([((b"beads", b"4", b"f", b"g", b"x.yaml"), FILE, b"x\n")], "bead file"),
    "case twin of beads": ([((b"Beads", b"4", b"f", b"x"), FILE, b"x\n")], "for 'beads'"),
    "case twin of .beads": ([((b".BEADS", b"config.yaml"), FILE, b"x\n")], "for '.beads'"),
    "case twin of hooks": ([((b".beads", b"Hooks", b"on_create"), EXEC, HOOK)], "for 'hooks'"),
    "case twins": (
        [((b"Notes",), FILE, b"x\n"), ((b"notes",), FILE, b"y\n")],
        "the same as 'Notes'",
    ),
    "unknown mode": ([((b"beads", b"odd.yaml"), 0o100664, b"x\n")], "unknown mode"),
    "too deep": ([(tuple(b"d" for _ in range(40)), FILE, b"x\n")], "deeper than"),
    "name too long": ([((b"beads", b"n" * 300), FILE, b"x\n")], "longer than 255"),
}


def test_a_hostile_remote_commit_is_refused_and_changes_nothing(world: World) -> None:  # noqa: F811
    """Every case from HOSTILE, one after the other, through the real CLI on clone B: exit 2,
    one line naming the path, B untouched; the `.git` hook never runs, nothing lands next to
    the repository. Then B still writes, reads and syncs honest changes."""
    b = world.b.root
    marker = world.tmp / "PWNED"
    good = git(world.origin, "rev-parse", "master").strip()
    for case, (entries, reason) in HOSTILE.items():
        sha = push_hostile(world, entries)
        err = refused(b)
        assert err.startswith(f"gc-polecat: error: refusing origin's commit {sha[:12]}"), err
        assert "outside the beads layout" in err and reason in err, (case, err)
        git(world.origin, "update-ref", "refs/heads/master", good)
    assert not (b / ".git" / "hooks" / "post-commit").exists()
    hand = subprocess.run(
        ["git", "-C", str(b), "commit", "-q", "--allow-empty", "-m", "runs any post-commit"],
        env={**os.environ, "PWNED": str(marker)},
    )
    assert hand.returncode == 0
    git(b, "reset", "-q", "--hard", "HEAD~1")
    assert not marker.exists()
    assert not {"ESCAPED.txt", "SLASH.txt", "BACK.txt"} & set(os.listdir(world.tmp))
    assert not Path("/tmp/ABSOLUTE.txt").exists()
    still_usable(b)
    done = run_cli("--repo", str(b), "sync")  # an honest remote still syncs both ways
    assert done.returncode == 0, done.stderr
    assert git(world.origin, "rev-parse", "master").strip() == git(b, "rev-parse", "HEAD").strip()


GIT = "a '.git' component"
SLASH = "a name holding '/', a backslash or NUL"


@pytest.mark.parametrize(
    ("name", "why"),
    [(b"", "an empty, '.' or '..' name"), (b".", "an empty, '.' or '..' name"),
     (b"..", "an empty, '.' or '..' name"), (b".git", GIT), (b".Git", GIT), (b".GIT..", GIT),
     (b".git. .", GIT), (b"git~1", GIT), (b".git::$DATA", GIT), (".g\u200cit".encode(), GIT),
     (".git\ufeff".encode(), GIT), (b"a/b", SLASH), (b"a\\b", SLASH), (b"a\0b", SLASH),
     (b"\xff", "a name that is not UTF-8"), (b"x" * 256, "a name longer than 255 bytes"),
     (b"tab\there", "a name holding a control character")],
)  # fmt: skip
def test_names_no_tree_may_hold(name: bytes, why: str) -> None:
    """Every name refused in every tree, for its own reason (an empty name cannot even cross
    `git push`, whose pack-objects refuses it, but a hostile server's own pack can hold one)."""
    assert name_problem(name) == why


@pytest.mark.parametrize("name", [b"gc-4f2.yaml", b"README.md", b".gitignore", b".github", b"git"])
def test_names_the_layout_accepts(name: bytes) -> None:
    assert name_problem(name) is None


def test_a_tree_listing_a_name_twice_is_refused(world: World) -> None:  # noqa: F811
    """dulwich's parsed Tree keeps only one of two entries with the same name; the raw check
    sees both."""
    repo_b = world.b.root
    attacker = world.tmp / "attacker"
    git(world.tmp, "clone", "-q", str(world.origin), str(attacker))
    repo = Repo(str(attacker))
    head_tree = repo[repo[b"HEAD"].tree]
    blob = Blob.from_string(b"one\n")
    repo.object_store.add_object(blob)
    entry = b"100644 twice.txt\0" + bytes.fromhex(blob.id.decode())
    raw = b"".join(
        f"{e.mode:o} ".encode() + e.path + b"\0" + bytes.fromhex(e.sha.decode())
        for e in head_tree.iteritems()
    )
    root = _raw_tree(repo, raw + entry + entry)
    push_hostile(world, [], root=root)
    err = refused(repo_b)
    assert "'twice.txt': a name listed twice in one tree" in err
    still_usable(repo_b)


def test_a_commit_without_the_configuration_is_refused(world: World) -> None:  # noqa: F811
    """Deleting `.beads/config.yaml` would turn every clone into "not a beads repository"."""
    attacker = world.tmp / "attacker"
    git(world.tmp, "clone", "-q", str(world.origin), str(attacker))
    repo = Repo(str(attacker))
    root = Tree()
    for entry in repo[repo[b"HEAD"].tree].iteritems():
        if entry.path != b".beads":
            root.add(entry.path, entry.mode, entry.sha)
    repo.object_store.add_object(root)
    push_hostile(world, [], root=root.id)
    err = refused(world.b.root)
    assert "'.beads/config.yaml': missing" in err
    still_usable(world.b.root)


def test_a_hostile_commit_is_refused_before_local_commits_are_replayed(
    world: World,  # noqa: F811
) -> None:
    """With an unpushed local bead, the refusal comes before the replay: the local commit is
    kept as it was and nothing is pushed."""
    b = world.b.root
    local = run_cli("--repo", str(b), "bead", "create", "mine, not pushed")
    assert local.returncode == 0, local.stderr
    pushed = push_hostile(world, [((b".git", b"hooks", b"pre-commit"), EXEC, HOOK)])
    err = refused(b)
    assert "outside the beads layout: '.git': a '.git' component" in err
    assert git(world.origin, "rev-parse", "master").strip() == pushed
    assert not (b / ".git" / "hooks" / "pre-commit").exists()
    controller = run_cli("--repo", str(b), "controller", "run", "--once", "--sync")
    assert controller.returncode == 2 and "refusing origin's commit" in controller.stderr
    still_usable(b)


def test_a_hook_linked_to_a_sibling_is_accepted(world: World) -> None:  # noqa: F811
    """The one symlink the layout has: `.beads/hooks/on_close -> on_create` (bd's hooks may
    share a file). It arrives as a link, and `git status` stays clean."""
    push_hostile(
        world,
        [
            ((b".beads", b"hooks", b"on_create"), EXEC, b"#!/bin/sh\nexit 0\n"),
            ((b".beads", b"hooks", b"on_close"), LINK, b"on_create"),
        ],
    )
    done = run_cli("--repo", str(world.b.root), "sync")
    assert done.returncode == 0, done.stderr
    assert os.readlink(world.b.root / ".beads" / "hooks" / "on_close") == "on_create"
    assert_clean(world.b.root)
    # an accepted tip moves the remote-tracking ref, as the fetch itself used to
    head = git(world.b.root, "rev-parse", "HEAD")
    assert git(world.b.root, "rev-parse", "refs/remotes/origin/master") == head


# --- point 2: a directory that becomes a file or a symlink ----------------------------------------


def _two_dirs(w: World) -> list[str]:
    """On A: two beads in shard `beads/q/` and two files in a directory `notes/` (the layout
    leaves files outside `beads/` and `.beads/` to you); synced to both clones."""
    a = w.a.root
    with w.a.store.transaction() as tx:
        made = [tx.create({"id": bid, "title": bid})["id"] for bid in ("gc-qa1", "gc-qb2")]
    (a / "notes" / "deep").mkdir(parents=True)
    (a / "notes" / "one.md").write_text("one\n")
    (a / "notes" / "deep" / "two.md").write_text("two\n")
    git(a, "add", "notes")
    git(a, "commit", "-qm", "notes")
    for m in (w.a, w.b):
        assert run_cli("--repo", str(m.root), "sync").returncode == 0
    return made


def _replace_dir(w: World, where: str, how: str) -> None:
    """On A, with plain git, turn the directory `where` into a file or a symlink; push."""
    a = w.a.root
    git(a, "rm", "-rq", where)
    if how == "file":
        (a / where).write_text("now a file\n")
    else:
        (a / where).symlink_to(w.tmp)
    git(a, "add", where)
    git(a, "commit", "-qm", f"{where} becomes a {how}")
    git(a, "push", "-q", "origin", "HEAD:master")


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("file", "'beads/q': not a bead shard directory"),
        ("symlink", "'beads/q': a symlink (the layout has none outside .beads/hooks)"),
    ],
)
def test_a_shard_that_becomes_a_file_or_a_symlink_is_refused(
    world: World,  # noqa: F811
    how: str,
    reason: str,
) -> None:
    """`beads/q` is a shard directory in the layout; the old code wrote the new `beads/q`
    before removing the beads under it: IsADirectoryError on every later command."""
    made = _two_dirs(world)
    _replace_dir(world, "beads/q", how)
    b = world.b.root
    err = refused(b)
    assert reason in err
    shown = run_cli("--repo", str(b), "bead", "show", made[0], "--json")
    assert shown.returncode == 0, shown.stderr
    still_usable(b)


def test_a_directory_that_becomes_a_file_is_applied(world: World) -> None:  # noqa: F811
    """Outside `beads/` a directory may become a file: the files under it are removed
    (deepest first) before the file is written (the old writer wrote the file first and
    failed with IsADirectoryError, on every later command too)."""
    _two_dirs(world)
    _replace_dir(world, "notes", "file")
    b = world.b.root
    done = run_cli("--repo", str(b), "sync")
    assert done.returncode == 0, done.stderr
    assert (b / "notes").read_text() == "now a file\n"
    assert git(b, "rev-parse", "HEAD") == git(world.a.root, "rev-parse", "HEAD")
    still_usable(b)


def test_a_sync_killed_while_a_directory_becomes_a_file_recovers(world: World) -> None:  # noqa: F811
    """SIGKILL after the first path of the directory-to-file change (the crash point
    `file-written`, before the commit point: the store writes the work tree before it moves
    the ref, docs/formats.md "Crash safety"), and again in the change back: each time the next
    command, a reader, undoes the half-written work tree from the journal; nothing is wedged,
    `git status` is clean, and the next sync makes the change."""
    made = _two_dirs(world)
    _replace_dir(world, "notes", "file")
    b = world.b.root
    crash = {"GC_POLECAT_TEST_CRASH_AT": "file-written"}
    killed = run_cli("--repo", str(b), "sync", env=crash)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (b / ".git" / "gc-polecat" / "journal.json").stat().st_size > 0
    listed = run_cli("--repo", str(b), "bead", "list", "--json")  # recovers first
    assert listed.returncode == 0, listed.stderr
    assert (b / "notes" / "deep" / "two.md").read_text() == "two\n"  # undone: the old state
    assert git(b, "status", "--porcelain") == ""
    assert run_cli("--repo", str(b), "sync").returncode == 0
    assert (b / "notes").read_text() == "now a file\n"
    # and back: the file becomes a directory again
    a = world.a.root
    git(a, "revert", "--no-edit", "HEAD")
    git(a, "push", "-q", "origin", "HEAD:master")
    killed = run_cli("--repo", str(b), "sync", env=crash)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    shown = run_cli("--repo", str(b), "bead", "show", made[0], "--json")
    assert shown.returncode == 0, shown.stderr
    assert (b / "notes").read_text() == "now a file\n"  # undone again
    assert git(b, "status", "--porcelain") == ""
    assert run_cli("--repo", str(b), "sync").returncode == 0
    assert (b / "notes" / "deep" / "two.md").read_text() == "two\n"
    assert not (b / ".git" / "gc-polecat" / "displaced").exists()
    still_usable(b)


def test_recovery_keeps_an_untracked_file_that_appeared_after_the_kill(
    world: World,  # noqa: F811
) -> None:
    """A sync killed while `notes/` becomes a file, then an untracked file appears in
    `notes/deep/` before any other command runs: recovery (the ref never moved) puts the old
    state back around it and deletes nothing; the next sync refuses to remove it, as git
    would."""
    _two_dirs(world)
    _replace_dir(world, "notes", "file")
    b = world.b.root
    killed = run_cli("--repo", str(b), "sync", env={"GC_POLECAT_TEST_CRASH_AT": "file-written"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    (b / "notes" / "deep").mkdir(parents=True, exist_ok=True)
    (b / "notes" / "deep" / "mine.txt").write_text("mine\n")
    listed = run_cli("--repo", str(b), "bead", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert (b / "notes" / "deep" / "mine.txt").read_text() == "mine\n"
    assert (b / "notes" / "deep" / "two.md").read_text() == "two\n"
    assert git(b, "status", "--porcelain") == "?? notes/deep/mine.txt\n"
    assert "untracked file 'notes/deep/mine.txt' would be removed by sync" in refused(b)
    (b / "notes" / "deep" / "mine.txt").unlink()
    still_usable(b)


# --- point 12: nothing local is overwritten -------------------------------------------------------


def _remote_creates(w: World, bead_id: str) -> Path:
    """A creates `bead_id` and pushes it; returns its path in B's work tree."""
    with w.a.store.transaction() as tx:
        tx.create({"id": bead_id, "title": "from a"})
    assert run_cli("--repo", str(w.a.root), "sync").returncode == 0
    return w.b.root / "beads" / bead_id.split("-")[1][0] / bead_id.split("-")[1][1]


def test_an_untracked_file_is_not_overwritten_by_sync(world: World) -> None:  # noqa: F811
    b = world.b.root
    shard = _remote_creates(world, "gc-u7x")
    shard.mkdir(parents=True)
    (shard / "gc-u7x.yaml").write_text("my notes, never committed\n")
    err = refused(b)
    assert "untracked file 'beads/u/7/gc-u7x.yaml' would be overwritten by sync" in err
    assert (shard / "gc-u7x.yaml").read_text() == "my notes, never committed\n"
    (shard / "gc-u7x.yaml").unlink()
    done = run_cli("--repo", str(b), "sync")
    assert done.returncode == 0, done.stderr
    still_usable(b)


def test_an_uncommitted_edit_is_not_overwritten_by_sync(world: World) -> None:  # noqa: F811
    b = world.b.root
    (bid,) = [run_cli("--repo", str(world.a.root), "bead", "create", "shared").stdout.strip()]
    for m in (world.a, world.b):
        assert run_cli("--repo", str(m.root), "sync").returncode == 0
    assert run_cli("--repo", str(world.a.root), "bead", "close", bid).returncode == 0
    assert run_cli("--repo", str(world.a.root), "sync").returncode == 0
    path = next(b.joinpath("beads").rglob(f"{bid}.yaml"))
    edited = path.read_text().replace("title: shared", "title: edited by hand")
    path.write_text(edited)
    err = refused(b)
    assert f"uncommitted changes to '{path.relative_to(b)}' would be overwritten" in err
    assert path.read_text() == edited


def test_untracked_files_inside_a_directory_that_becomes_a_file_are_kept(
    world: World,  # noqa: F811
) -> None:
    _two_dirs(world)
    _replace_dir(world, "notes", "file")
    b = world.b.root
    mine = b / "notes" / "deep" / "mine.txt"
    mine.write_text("mine\n")
    err = refused(b)
    assert "untracked file 'notes/deep/mine.txt' would be removed by sync" in err
    assert mine.read_text() == "mine\n"
    mine.unlink()
    assert run_cli("--repo", str(b), "sync").returncode == 0
    still_usable(b)


def test_an_untracked_symlink_never_carries_a_synced_file_outside(
    world: World,  # noqa: F811
    tmp_path: Path,
) -> None:
    """B has a hand-made `beads/u -> outside`; the remote adds a bead under `beads/u/`."""
    outside = tmp_path / "outside"
    outside.mkdir()
    b = world.b.root
    _remote_creates(world, "gc-u7x")
    (b / "beads" / "u").symlink_to(outside)
    err = refused(b)
    assert "'beads/u' is in the way of 'beads/u/7/gc-u7x.yaml': not a directory" in err
    assert list(outside.iterdir()) == []
