"""Sandboxes: the git worktree a persistent polecat keeps between assignments.

A sandbox is a worktree of the code repository (a clone whose `origin` is the shared bare
repository), one per polecat, reused for every assignment rather than added and removed each
time: an assignment is a branch `polecat/<name>/<work>@<stamp>` checked out in place. All the
worktrees share the clone's refs, so a polecat's branches are the local ones under
`polecat/<name>/`.

Idle ("synced to main"), a sandbox is detached at the tip of `origin/<target>` (local `<target>`
when there is no `origin`), with a clean tree and none of the polecat's branches left.

Safety rule: nothing with unpushed work is ever deleted, and a dirty tree is never reset or
switched. A commit is safe when a remote-tracking ref contains it or it is an ancestor of a
commit the caller vouches for (`also`, e.g. the commit that landed it); a deletion is a
compare-and-swap on the very tip that was checked, and any doubt is a refusal.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gc_polecat.errors import GcPolecatError

PREFIX = "polecat/"
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


class SandboxError(GcPolecatError):
    """A sandbox operation failed, or was refused because it could lose work (exit 1)."""


@dataclass(frozen=True)
class SandboxState:
    path: str
    exists: bool  # a directory that is a registered worktree (git rev-parse works)
    clean: bool  # `git status --porcelain` empty (untracked files count as dirty)
    head: str  # HEAD sha ("" if not exists)
    branch: str | None  # the checked-out branch name, None when detached
    base: str  # sha of the base ref for `target` ("" if unknown)
    on_base: bool  # detached (branch is None) and head == base
    branches: tuple[str, ...]  # this polecat's local branches (refs/heads/polecat/<name>/...)
    unpushed: tuple[str, ...]  # those of `branches` whose tip is not safe (see is_safe)


def _git(
    cwd: Path, *args: str, check: bool = True, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run git in `cwd` as an argv (never a shell), never prompting; a failure is one line."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    argv = ["git", "-C", str(cwd), *args]
    try:
        proc = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, errors="replace", env=env
        )
    except OSError as exc:  # no git on PATH
        raise SandboxError(f"git {args[0]} failed in {cwd}: {exc}") from exc
    if check and proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        why = lines[0].strip() if lines else f"exit status {proc.returncode}"
        raise SandboxError(f"git {args[0]} failed in {cwd}: {why}")
    return proc


def _refs(cwd: Path, *patterns: str) -> dict[str, str]:
    """refname -> sha of the refs named by, or under, `patterns` (one for-each-ref)."""
    out = _git(cwd, "for-each-ref", "--format=%(refname) %(objectname)", *patterns).stdout
    pairs = (line.rsplit(" ", 1) for line in out.splitlines())
    return {ref: sha for ref, sha in pairs}


def _resolve(cwd: Path, names: Iterable[str]) -> list[str]:
    """The commit SHAs of those `names` that exist here, read from stdin so no name is an option."""
    names = [n for n in names if n and "\n" not in n]
    if not names:
        return []
    query = "".join(f"{n}^{{commit}}\n" for n in names)
    out = _git(cwd, "cat-file", "--batch-check=%(objectname) %(objecttype)", stdin=query).stdout
    return [p[0] for p in (line.split() for line in out.splitlines()) if p[1:] == ["commit"]]


def _unsafe(cwd: Path, tips: Collection[str], also: Sequence[str] = ()) -> set[str]:
    """Those of `tips` (SHAs) that no remote-tracking ref and no existing `also` commit contains.

    One rev-list walks only what the tips have beyond the safe refs, not the whole history."""
    if not tips:
        return set()
    vouched = _resolve(cwd, also)
    if not vouched and not _git(cwd, "for-each-ref", "--count=1", "refs/remotes").stdout:
        return set(tips)
    out = _git(cwd, "rev-list", *tips, "--not", "--remotes", *vouched).stdout
    return set(tips) & set(out.split())


def _is_ancestor(cwd: Path, commit: str, of: str) -> bool:
    return _git(cwd, "merge-base", "--is-ancestor", commit, of, check=False).returncode == 0


def _worktree_list(repo: Path) -> list[tuple[Path, str | None]]:
    """(path, checked-out ref or None) of every worktree of the repository, the main one first."""
    entries: list[tuple[Path, str | None]] = []
    for record in _git(repo, "worktree", "list", "--porcelain", "-z").stdout.split("\0\0"):
        fields = record.strip("\0").split("\0")
        if fields[0].startswith("worktree "):
            ref = next((f[7:] for f in fields if f.startswith("branch ")), None)
            entries.append((Path(fields[0][9:]).resolve(), ref))
    return entries


def _is_worktree(path: Path) -> bool:
    if not path.is_dir():
        return False
    proc = _git(path, "rev-parse", "--show-toplevel", check=False)
    return proc.returncode == 0 and Path(proc.stdout.strip()).resolve() == path.resolve()


def _require_worktree(worktree: Path) -> Path:
    path = Path(worktree).resolve()
    if not _is_worktree(path):
        raise SandboxError(f"{path} is not a git worktree")
    return path


def _require_clean(path: Path, doing: str) -> None:
    if _git(path, "status", "--porcelain").stdout:
        raise SandboxError(f"{path} has uncommitted changes; refusing to {doing}")


def _head(path: Path) -> tuple[str, str | None]:
    """(HEAD sha, checked-out branch or None when detached); ("", None) on an unborn HEAD."""
    proc = _git(path, "rev-parse", "HEAD", "--symbolic-full-name", "HEAD", check=False)
    lines = proc.stdout.split() if proc.returncode == 0 else []
    if len(lines) < 2:
        return "", None
    ref = lines[1]
    return lines[0], ref.removeprefix("refs/heads/") if ref.startswith("refs/heads/") else None


def _guard_detached(path: Path, also: Sequence[str]) -> None:
    """Refuse to move a detached HEAD whose commits are on no branch, remote or `also`."""
    head, branch = _head(path)
    if branch is None and head and _unsafe(path, [head], also):
        raise SandboxError(f"{path}: detached HEAD {head[:12]} holds unpushed commits; refusing")


def _base(cwd: Path, target: str) -> tuple[str, str]:
    remote, local = f"refs/remotes/origin/{target}", f"refs/heads/{target}"
    refs = _refs(cwd, remote, local)
    if remote in refs:
        return f"origin/{target}", refs[remote]
    if local in refs:
        return target, refs[local]
    raise SandboxError(f"neither origin/{target} nor {target} exists in {cwd}")


def _delete(cwd: Path, tips: dict[str, str]) -> None:
    """Delete branches in one transaction, each only if it still points where it was checked."""
    _git(
        cwd,
        "update-ref",
        "--stdin",
        stdin="".join(f"delete refs/heads/{b} {s}\n" for b, s in tips.items()),
    )


def branch_name(polecat: str, work_id: str, millis: int | None = None) -> str:
    """`polecat/<polecat>/<work_id>@<stamp>`; the base-36 millisecond stamp keeps reruns apart."""
    n = int(time.time() * 1000) if millis is None else millis
    if n < 0:
        raise ValueError(f"negative stamp {n}")
    stamp = ""
    while True:
        n, digit = divmod(n, 36)
        stamp = _DIGITS[digit] + stamp
        if not n:
            return f"{PREFIX}{polecat}/{work_id}@{stamp}"


def base_ref(worktree: Path, target: str) -> str:
    """`origin/<target>` when that remote-tracking branch exists, else the local `<target>`."""
    return _base(Path(worktree), target)[0]


def fetch(worktree: Path) -> None:
    """Bring the remote-tracking refs up to date (pruning deleted ones) when there is an origin."""
    if "origin" not in _git(Path(worktree), "remote").stdout.split():
        return
    for delay in (0.1, 0.3, 0.0):  # sandboxes share one clone: concurrent fetches race on
        try:  # the remote-tracking ref locks, and the loser fails; it is safe to try again
            _git(Path(worktree), "fetch", "-q", "--prune", "origin")
            return
        except SandboxError:
            if not delay:
                raise
            time.sleep(delay)


def worktrees(repo: Path) -> list[Path]:
    """Every worktree of the repository except the main one, resolved."""
    return [path for path, _ in _worktree_list(Path(repo))[1:]]


def is_safe(worktree: Path, commit: str, also: Sequence[str] = ()) -> bool:
    """Whether losing every local ref to `commit` would lose nothing (see the module docstring).

    With no remotes only `also` counts: a local target branch proves nothing was shared."""
    shas = _resolve(Path(worktree), [commit])
    return bool(shas) and not _unsafe(Path(worktree), shas, also)


def _state(worktree: Path, polecat: str | None, target: str, also: Sequence[str]) -> SandboxState:
    path = Path(worktree).resolve()
    if not _is_worktree(path):
        return SandboxState(str(path), False, False, "", None, "", False, (), ())
    clean = not _git(path, "status", "--porcelain").stdout
    head, branch = _head(path)
    remote, local = f"refs/remotes/origin/{target}", f"refs/heads/{target}"
    owned = [f"refs/heads/{PREFIX}{polecat}/"] if polecat is not None else []
    refs = _refs(path, remote, local, *owned)
    base = refs.get(remote) or refs.get(local, "")
    tips = {
        r.removeprefix("refs/heads/"): s
        for r, s in refs.items()
        if owned and r.startswith(owned[0])
    }
    bad = _unsafe(path, set(tips.values()), also)
    branches = tuple(sorted(tips))
    unpushed = tuple(b for b in branches if tips[b] in bad)
    on_base = branch is None and bool(head) and head == base
    return SandboxState(str(path), True, clean, head, branch, base, on_base, branches, unpushed)


def state(worktree: Path, polecat: str, target: str, also: Sequence[str] = ()) -> SandboxState:
    """Where the sandbox stands, from a handful of git calls none of which walk all history."""
    return _state(worktree, polecat, target, also)


def create(repo: Path, path: Path, target: str) -> SandboxState:
    """Add the sandbox detached at the base; a no-op when it is already a worktree of `repo`.

    The state returned lists no branches: which polecat owns the sandbox is not known here."""
    repo, path = Path(repo).resolve(), Path(path).resolve()
    if path in worktrees(repo) and _is_worktree(path):
        return _state(path, None, target, ())
    if (path.exists() or path.is_symlink()) and (not path.is_dir() or any(path.iterdir())):
        raise SandboxError(f"{path} exists and is not a worktree of {repo}; refusing to touch it")
    fetch(repo)
    sha = _base(repo, target)[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    _git(repo, "worktree", "add", "-q", "--detach", str(path), sha)
    return _state(path, None, target, ())


def start_branch(worktree: Path, branch: str, target: str, resume_from: str | None = None) -> str:
    """Check out the assignment's branch in place; returns the new HEAD sha.

    The start point only places a new branch. An existing local `branch` is resumed as it is,
    or fast-forwarded to the resume point when that is strictly ahead of it: it is never moved
    backwards or sideways, so no commit ever leaves it."""
    path = _require_worktree(worktree)
    _require_clean(path, f"start {branch}")
    fetch(path)
    head, current = _head(path)
    if current == branch:
        return head
    own = f"refs/heads/{branch}"
    wanted: list[str] = []
    if resume_from:
        wanted = [f"refs/remotes/origin/{resume_from}", f"refs/heads/{resume_from}"]
    refs = _refs(path, own, *wanted)
    resumed = next((refs[r] for r in wanted if r in refs), None)
    old = refs.get(own)
    if old is None:
        start = resumed or _base(path, target)[1]
    else:
        start = resumed if resumed and _is_ancestor(path, old, resumed) else old
    _guard_detached(path, [start, f"refs/heads/{target}"])
    for where, ref in _worktree_list(path):
        if ref == own:
            raise SandboxError(f"branch {branch} is checked out in {where}; refusing to move it")
    _git(path, "checkout", "-q", "-B", branch, start)
    return _head(path)[0]


def has_branch(worktree: Path, branch: str) -> bool:
    """Whether the local branch exists (in the clone every sandbox shares)."""
    return f"refs/heads/{branch}" in _refs(Path(worktree), f"refs/heads/{branch}")


def push_branch(worktree: Path, branch: str) -> None:
    """Publish `branch` to origin under the same name (never forced)."""
    path = Path(worktree)
    if "origin" not in _git(path, "remote").stdout.split():
        raise SandboxError(f"no origin remote in {path}; cannot push {branch}")
    _git(path, "push", "-q", "origin", f"refs/heads/{branch}:refs/heads/{branch}")


def sync(worktree: Path, target: str) -> str:
    """Go idle: detach at the freshly fetched base tip; returns the new HEAD sha."""
    path = _require_worktree(worktree)
    _require_clean(path, "sync")
    fetch(path)
    sha = _base(path, target)[1]
    _guard_detached(path, [sha, f"refs/heads/{target}"])
    _git(path, "checkout", "-q", "--detach", sha)
    return _head(path)[0]


def delete_branch(worktree: Path, branch: str, also: Sequence[str] = ()) -> bool:
    """Delete a local branch whose tip is safe and which no worktree has checked out."""
    path = Path(worktree)
    own = f"refs/heads/{branch}"
    tip = _refs(path, own).get(own)
    if tip is None:
        return False
    for where, ref in _worktree_list(path):
        if ref == own:
            raise SandboxError(f"branch {branch} is checked out in {where}; refusing to delete it")
    if _unsafe(path, [tip], also):
        raise SandboxError(
            f"branch {branch} has unpushed commits ({tip[:12]}); refusing to delete it"
        )
    _delete(path, {branch: tip})
    return True


def prune(
    worktree: Path, polecat: str, keep: Collection[str] = (), also: Sequence[str] = ()
) -> list[str]:
    """Delete the polecat's safe, unused branches except `keep`; unsafe ones stay, silently."""
    path = Path(worktree)
    prefix = f"refs/heads/{PREFIX}{polecat}/"
    busy = {ref for _, ref in _worktree_list(path) if ref}
    tips = {
        r.removeprefix("refs/heads/"): s
        for r, s in _refs(path, prefix).items()
        if r.startswith(prefix) and r not in busy and r.removeprefix("refs/heads/") not in keep
    }
    bad = _unsafe(path, set(tips.values()), also)
    gone = {b: s for b, s in sorted(tips.items()) if s not in bad}
    if gone:
        _delete(path, gone)
    return list(gone)


def remove(repo: Path, path: Path, polecat: str, target: str, also: Sequence[str] = ()) -> None:
    """Retire a clean sandbox with nothing unpushed, and the polecat's branches with it."""
    repo, path = Path(repo).resolve(), Path(path).resolve()
    if not path.exists() and not path.is_symlink():
        _git(repo, "worktree", "prune")
        return
    if path not in worktrees(repo) or not _is_worktree(path):
        raise SandboxError(f"{path} is not a worktree of {repo}; refusing to remove it")
    st = state(path, polecat, target, also)
    if not st.clean:
        raise SandboxError(f"{path} has uncommitted changes; refusing to remove it")
    if st.unpushed:
        raise SandboxError(
            f"{path}: unpushed branches {', '.join(st.unpushed)}; refusing to remove it"
        )
    _guard_detached(path, [st.base, f"refs/heads/{target}", *also])
    _git(repo, "worktree", "remove", str(path))
    _git(repo, "worktree", "prune")
    prune(repo, polecat, also=also)


def prune_remote(worktree: Path, work_id: str, also: Sequence[str]) -> list[str]:
    """After a merge: delete the work's polecat branches on origin (`polecat/*/<work>@*`,
    earlier polecats' attempts) whose tips the merged commit contains; returns their names.
    A branch with anything the merge lacks is left alone."""
    path = Path(worktree)
    if not also or "origin" not in _git(path, "remote").stdout.split():
        return []
    fetch(path)
    refs = _refs(path, f"refs/remotes/origin/{PREFIX}*/{work_id}@*")
    vouched = _resolve(path, also)
    names = [
        ref.removeprefix("refs/remotes/origin/")
        for ref, sha in refs.items()
        if any(_is_ancestor(path, sha, v) for v in vouched)
    ]
    if names:
        _git(path, "push", "-q", "origin", *(f":refs/heads/{n}" for n in names))
    return names
