"""Sandboxes against real git: a bare origin, a clone, and polecat worktrees of that clone."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gc_polecat.lifecycle import sandbox as sb
from gc_polecat.lifecycle.sandbox import SandboxError

from .conftest import Code, git


def commit(wt: Path, name: str, text: str = "work\n") -> str:
    (wt / name).write_text(text)
    git(wt, "add", name)
    git(wt, "commit", "-qm", f"add {name}")
    return git(wt, "rev-parse", "HEAD").strip()


def sha(repo: Path, rev: str) -> str:
    return git(repo, "rev-parse", rev).strip()


def local_branches(repo: Path, prefix: str = "polecat/") -> list[str]:
    out = git(repo, "for-each-ref", "--format=%(refname:strip=2)", f"refs/heads/{prefix}")
    return out.split()


def test_branch_name() -> None:
    assert sb.branch_name("furiosa", "gc-1", 0) == "polecat/furiosa/gc-1@0"
    assert sb.branch_name("furiosa", "gc-1", 36 * 36 + 35) == "polecat/furiosa/gc-1@10z"
    stamp = sb.branch_name("nux", "gc-2").rsplit("@", 1)[1]
    assert int(stamp, 36) > 1_700_000_000_000


def test_create_is_idempotent_and_refuses_foreign_paths(code: Code, tmp_path: Path) -> None:
    wt = tmp_path / "polecats" / "furiosa"
    st = sb.create(code.clone, wt, "main")
    assert (st.exists, st.clean, st.branch, st.on_base) == (True, True, None, True)
    assert st.head == st.base == sha(code.clone, "origin/main")
    assert sb.base_ref(wt, "main") == "origin/main"
    assert sb.create(code.clone, wt, "main") == st
    assert sb.worktrees(code.clone) == [wt.resolve()]
    foreign = tmp_path / "polecats" / "nux"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine\n")
    with pytest.raises(SandboxError, match="not a worktree"):
        sb.create(code.clone, foreign, "main")
    afile = tmp_path / "polecats" / "slit"
    afile.write_text("a file\n")
    with pytest.raises(SandboxError, match="not a worktree"):
        sb.create(code.clone, afile, "main")
    assert [p.name for p in foreign.iterdir()] == ["keep.txt"]
    assert afile.read_text() == "a file\n"
    assert sb.worktrees(code.clone) == [wt.resolve()]
    with pytest.raises(SandboxError, match="neither origin/nope nor nope"):
        sb.base_ref(code.clone, "nope")


def test_new_assignment_is_a_branch_switch_in_place(code: Code, tmp_path: Path) -> None:
    wt = tmp_path / "polecats" / "furiosa"
    sb.create(code.clone, wt, "main")
    inode = os.stat(wt).st_ino
    first = sb.branch_name("furiosa", "gc-1", 1)
    assert sb.start_branch(wt, first, "main") == sha(code.clone, "origin/main")
    assert sb.state(wt, "furiosa", "main").branch == first
    head = commit(wt, "one.txt")
    assert sb.start_branch(wt, first, "main") == head  # resuming in the same sandbox
    sb.push_branch(wt, first)
    assert sb.sync(wt, "main") == sha(code.clone, "origin/main")
    second = sb.branch_name("furiosa", "gc-2", 2)
    sb.start_branch(wt, second, "main")
    assert sb.state(wt, "furiosa", "main").branch == second
    assert sb.worktrees(code.clone) == [wt.resolve()]
    assert os.stat(wt).st_ino == inode
    assert local_branches(code.clone) == [first, second]


@pytest.mark.parametrize("change", ["modified", "untracked"])
def test_start_branch_refuses_a_dirty_tree(code: Code, tmp_path: Path, change: str) -> None:
    wt = tmp_path / "wt"
    sb.create(code.clone, wt, "main")
    (wt / ("README" if change == "modified" else "new.txt")).write_text("dirty\n")
    before = git(wt, "status", "--porcelain")
    with pytest.raises(SandboxError, match="uncommitted changes"):
        sb.start_branch(wt, "polecat/furiosa/gc-1@1", "main")
    with pytest.raises(SandboxError, match="uncommitted changes"):
        sb.sync(wt, "main")
    st = sb.state(wt, "furiosa", "main")
    assert (st.clean, st.branch, st.on_base, st.branches) == (False, None, True, ())
    assert git(wt, "status", "--porcelain") == before


def test_resume_from_a_pushed_branch(code: Code, tmp_path: Path) -> None:
    one, two = tmp_path / "furiosa", tmp_path / "nux"
    sb.create(code.clone, one, "main")
    sb.create(code.clone, two, "main")
    branch = "polecat/furiosa/gc-1@1"
    sb.start_branch(one, branch, "main")
    pushed = commit(one, "one.txt")
    sb.push_branch(one, branch)
    assert sb.start_branch(two, "polecat/nux/gc-1@2", "main", resume_from=branch) == pushed
    assert (two / "one.txt").read_text() == "work\n"
    # A local branch ahead of its pushed copy keeps its extra commit when resumed elsewhere.
    ahead = commit(one, "two.txt")
    sb.sync(one, "main")
    sb.sync(two, "main")
    assert sb.start_branch(two, branch, "main", resume_from=branch) == ahead
    with pytest.raises(SandboxError, match="checked out in"):
        sb.start_branch(one, branch, "main", resume_from=branch)


def test_an_existing_branch_is_resumed_never_reset(code: Code, tmp_path: Path) -> None:
    wt, other = tmp_path / "wt", tmp_path / "other"
    sb.create(code.clone, wt, "main")
    git(tmp_path, "clone", "-q", str(code.origin), str(other))
    mine, theirs = "polecat/furiosa/gc-1@1", "polecat/furiosa/gc-2@2"
    sb.start_branch(wt, mine, "main")
    commit(wt, "pushed.txt")
    sb.push_branch(wt, mine)
    unpushed = commit(wt, "unpushed.txt")
    sb.sync(wt, "main")
    commit(other, "main-moved.txt")
    git(other, "push", "-q", "origin", "main")
    assert sb.has_branch(wt, mine) and not sb.has_branch(wt, "polecat/furiosa/nope@0")
    assert sb.start_branch(wt, mine, "main") == unpushed  # not reset to the new main
    sb.sync(wt, "main")
    git(other, "fetch", "-q", "origin", mine)
    git(other, "checkout", "-q", "-b", "diverged", f"origin/{mine}")
    commit(other, "diverged.txt")
    git(other, "push", "-q", "origin", f"HEAD:{mine}")
    assert sb.start_branch(wt, mine, "main", resume_from=mine) == unpushed  # kept, not reset
    sb.sync(wt, "main")
    sb.start_branch(wt, theirs, "main")
    behind = commit(wt, "behind.txt")
    sb.push_branch(wt, theirs)
    sb.sync(wt, "main")
    git(other, "fetch", "-q", "origin", theirs)
    git(other, "checkout", "-q", "-b", "ahead", f"origin/{theirs}")
    ahead = commit(other, "ahead.txt")
    git(other, "push", "-q", "origin", f"HEAD:{theirs}")
    assert sha(code.clone, theirs) == behind
    assert sb.start_branch(wt, theirs, "main", resume_from=theirs) == ahead  # fast-forwarded


def test_sync_lands_on_the_merged_main(code: Code, tmp_path: Path) -> None:
    wt = tmp_path / "wt"
    sb.create(code.clone, wt, "main")
    branch = "polecat/furiosa/gc-1@1"
    sb.start_branch(wt, branch, "main")
    commit(wt, "one.txt")
    sb.push_branch(wt, branch)
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(code.origin), str(other))
    commit(other, "elsewhere.txt")
    git(other, "merge", "-q", "--no-ff", "-m", "land", f"origin/{branch}")
    git(other, "push", "-q", "origin", "main")
    tip = sha(other, "HEAD")
    assert sb.sync(wt, "main") == tip
    st = sb.state(wt, "furiosa", "main")
    assert (st.head, st.branch, st.on_base, st.clean) == (tip, None, True, True)
    assert (wt / "one.txt").exists() and (wt / "elsewhere.txt").exists()
    assert sb.prune(wt, "furiosa") == [branch]
    assert sb.state(wt, "furiosa", "main").branches == ()


def test_delete_branch_never_loses_unpushed_work(code: Code, tmp_path: Path) -> None:
    wt = tmp_path / "wt"
    sb.create(code.clone, wt, "main")
    local, pushed = "polecat/furiosa/gc-1@1", "polecat/furiosa/gc-2@2"
    sb.start_branch(wt, local, "main")
    work = commit(wt, "local.txt")
    sb.sync(wt, "main")
    assert not sb.is_safe(wt, work)
    with pytest.raises(SandboxError, match="unpushed"):
        sb.delete_branch(wt, local)
    with pytest.raises(SandboxError, match="unpushed"):
        sb.delete_branch(wt, local, also=["no-such-ref"])
    assert local_branches(code.clone) == [local]
    assert sb.delete_branch(wt, local, also=[work]) is True
    assert sb.delete_branch(wt, local) is False
    sb.start_branch(wt, pushed, "main")
    commit(wt, "pushed.txt")
    sb.push_branch(wt, pushed)
    with pytest.raises(SandboxError, match="checked out in"):
        sb.delete_branch(code.clone, pushed)
    assert local_branches(code.clone) == [pushed]
    sb.sync(wt, "main")
    assert sb.delete_branch(wt, pushed) is True
    assert local_branches(code.clone) == []
    assert sb.is_safe(wt, work, also=[work]) and not sb.is_safe(wt, "0" * 40)


def test_prune_deletes_only_this_polecats_safe_branches(code: Code, tmp_path: Path) -> None:
    wt = tmp_path / "wt"
    sb.create(code.clone, wt, "main")
    main = sha(code.clone, "origin/main")
    orphan = git(code.clone, "commit-tree", f"{main}^{{tree}}", "-p", main, "-m", "x").strip()
    f = "polecat/furiosa/"
    for name, at in [("safe", main), ("keep", main), ("unsafe", orphan), ("busy", main)]:
        git(code.clone, "branch", f + name, at)
    git(code.clone, "branch", "polecat/nux/other", main)
    git(wt, "checkout", "-q", f + "busy")
    assert sb.prune(wt, "furiosa", keep={f + "keep"}) == [f + "safe"]
    assert local_branches(code.clone) == [f + "busy", f + "keep", f + "unsafe", "polecat/nux/other"]
    assert sb.prune(wt, "furiosa", also=[orphan]) == [f + "keep", f + "unsafe"]


def test_state_reports_the_sandbox(code: Code, tmp_path: Path) -> None:
    wt = tmp_path / "wt"
    assert sb.state(wt, "furiosa", "main") == sb.SandboxState(
        str(wt.resolve()), False, False, "", None, "", False, (), ()
    )
    (tmp_path / "plain" / "sub").mkdir(parents=True)
    assert not sb.state(tmp_path / "plain", "furiosa", "main").exists
    sb.create(code.clone, wt, "main")
    (wt / "sub").mkdir()
    assert not sb.state(wt / "sub", "furiosa", "main").exists
    branch = "polecat/furiosa/gc-1@1"
    sb.start_branch(wt, branch, "main")
    st = sb.state(wt, "furiosa", "main")
    assert (st.clean, st.on_base, st.branch) == (True, False, branch)
    assert (st.branches, st.unpushed) == ((branch,), ())
    work = commit(wt, "one.txt")
    (wt / "untracked.txt").write_text("x\n")
    st = sb.state(wt, "furiosa", "main")
    assert (st.clean, st.head, st.unpushed) == (False, work, (branch,))
    assert sb.state(wt, "furiosa", "main", also=[work]).unpushed == ()
    assert sb.state(wt, "nux", "main").branches == ()
    (wt / "untracked.txt").unlink()
    sb.push_branch(wt, branch)
    assert sb.state(wt, "furiosa", "main").unpushed == ()


def test_remove_refuses_dirty_and_unpushed_then_retires(code: Code, tmp_path: Path) -> None:
    wt = tmp_path / "polecats" / "furiosa"
    sb.create(code.clone, wt, "main")
    branch = "polecat/furiosa/gc-1@1"
    sb.start_branch(wt, branch, "main")
    commit(wt, "one.txt")
    (wt / "scratch.txt").write_text("x\n")
    with pytest.raises(SandboxError, match="uncommitted"):
        sb.remove(code.clone, wt, "furiosa", "main")
    (wt / "scratch.txt").unlink()
    with pytest.raises(SandboxError, match="unpushed branches polecat/furiosa/gc-1@1"):
        sb.remove(code.clone, wt, "furiosa", "main")
    assert wt.is_dir() and local_branches(code.clone) == [branch]
    sb.push_branch(wt, branch)
    sb.remove(code.clone, wt, "furiosa", "main")
    assert not wt.exists()
    assert str(wt) not in git(code.clone, "worktree", "list")
    assert sb.worktrees(code.clone) == [] and local_branches(code.clone) == []
    sb.remove(code.clone, wt, "furiosa", "main")
    with pytest.raises(SandboxError, match="not a worktree"):
        sb.remove(code.clone, code.origin, "furiosa", "main")


def test_detached_commits_are_never_left_behind(code: Code, tmp_path: Path) -> None:
    wt = tmp_path / "wt"
    sb.create(code.clone, wt, "main")
    commit(wt, "adrift.txt")
    with pytest.raises(SandboxError, match="detached HEAD"):
        sb.sync(wt, "main")
    with pytest.raises(SandboxError, match="detached HEAD"):
        sb.start_branch(wt, "polecat/furiosa/gc-1@1", "main")
    with pytest.raises(SandboxError, match="detached HEAD"):
        sb.remove(code.clone, wt, "furiosa", "main")
    assert (wt / "adrift.txt").exists()


def test_shell_metacharacters_never_reach_a_shell(
    code: Code, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    wt = tmp_path / "p;touch pwned" / "$(touch pwned)`touch pwned`"
    sb.create(code.clone, wt, "main")
    with pytest.raises(SandboxError, match="git checkout failed"):
        sb.start_branch(wt, sb.branch_name("furiosa", "gc-1;touch pwned", 1), "main")
    odd = sb.branch_name("furiosa", "gc-1;touch${IFS}pwned|$(id)", 2)
    sb.start_branch(wt, odd, "main")
    sb.push_branch(wt, odd)
    sb.sync(wt, "main")
    assert sb.delete_branch(wt, odd) is True
    sb.remove(code.clone, wt, "furiosa", "main")
    assert list(tmp_path.rglob("pwned")) == [] and not Path("pwned").exists()


def test_no_remote_at_all(tmp_path: Path) -> None:
    repo = tmp_path / "solo"
    git(tmp_path, "init", "-q", "-b", "main", str(repo))
    commit(repo, "README")
    wt = tmp_path / "wt"
    st = sb.create(repo, wt, "main")
    assert sb.base_ref(wt, "main") == "main"
    assert st.on_base and st.base == sha(repo, "main")
    sb.fetch(wt)
    branch = "polecat/furiosa/gc-1@1"
    sb.start_branch(wt, branch, "main")
    work = commit(wt, "one.txt")
    with pytest.raises(SandboxError, match="no origin remote"):
        sb.push_branch(wt, branch)
    assert sb.state(wt, "furiosa", "main").unpushed == (branch,)
    assert sb.sync(wt, "main") == sha(repo, "main")
    with pytest.raises(SandboxError, match="unpushed"):
        sb.delete_branch(wt, branch)
    assert sb.prune(wt, "furiosa") == []
    assert sb.prune(wt, "furiosa", also=[work]) == [branch]
    sb.remove(repo, wt, "furiosa", "main")
    assert sb.worktrees(repo) == [] and not wt.exists()
