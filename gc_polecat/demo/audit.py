"""The leak audit: what a city must look like once all its work is done, read from git, the
process table and the beads, not from our own records alone.

Used by `gc-polecat demo` for its final verdict and by the pool tests. A clean city has no open
wait, submission or cleanup finalizer; every polecat idle (or retired); every sandbox a clean
worktree detached at the target with none of the polecat's branches, and no other worktree;
no `polecat/*` branch in the code clone or on origin; a session bead open exactly when its
process runs; and a beads repository whose `git status` and `git fsck` are clean.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gc_polecat.beads.store import Store
    from gc_polecat.lifecycle.providers import SessionProvider


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)


def beads_left_open(store: Store) -> list[str]:
    from gc_polecat.beads.catalog import Query  # lazy: start-up
    from gc_polecat.lifecycle.cleanup import CLEANUP_LABEL  # lazy: start-up
    from gc_polecat.lifecycle.submit import SUBMISSION_LABEL  # lazy: start-up
    from gc_polecat.lifecycle.wait import LEGACY_WAIT_LABEL, WAIT_LABEL  # lazy: start-up

    store.catalog.refresh()
    problems = []
    for label, what in ((WAIT_LABEL, "wait"), (LEGACY_WAIT_LABEL, "wait"),
                        (SUBMISSION_LABEL, "submission"),
                        (CLEANUP_LABEL, "cleanup finalizer")):  # fmt: skip
        for bead in store.catalog.list(Query(labels=(label,), include_closed=False)):
            problems.append(f"{what} {bead['id']} is still open")
    return problems


def pool_leaks(store: Store, pool: str) -> list[str]:
    """Polecats, worktrees and branches of one configured pool."""
    from gc_polecat.lifecycle import polecat as polecats  # lazy: start-up
    from gc_polecat.lifecycle import sandbox  # lazy: start-up

    cfg = store.config()["pools"][pool]
    problems = []
    live = polecats.of_pool(store, pool)
    for p in live:
        if p.state != "idle":
            problems.append(f"polecat {p.name} is {p.state}, not idle")
    if not cfg.repo:
        return problems
    code = cfg.code_repo(store.root)
    expected = sorted(Path(p.sandbox).resolve() for p in live if p.sandbox)
    found = sorted(sandbox.worktrees(code))
    for extra in sorted(set(found) - set(expected)):
        problems.append(f"worktree {extra} belongs to no polecat")
    for missing in sorted(set(expected) - set(found)):
        problems.append(f"polecat sandbox {missing} is not a worktree")
    for p in live:  # idle: clean, detached on the target (the tip it synced to, or older)
        st = sandbox.state(Path(p.sandbox), p.name, cfg.target)
        synced = (
            st.branch is None
            and _git(
                Path(p.sandbox), "merge-base", "--is-ancestor", st.head or "HEAD", st.base or "HEAD"
            ).returncode
            == 0
        )
        if st.exists and not (st.clean and synced):
            problems.append(f"sandbox {p.sandbox} is not clean and synced to {cfg.target}")
    local = _git(code, "for-each-ref", "--format=%(refname)", "refs/heads/polecat/").stdout
    problems += [f"local branch {r} left in {code}" for r in local.split()]
    remote = _git(code, "ls-remote", "--heads", "origin", "refs/heads/polecat/*").stdout
    problems += [f"branch {line.split()[1]} left on origin" for line in remote.splitlines()]
    return problems


def session_leaks(store: Store, providers: Mapping[str, SessionProvider]) -> list[str]:
    """A session bead is open exactly when its process (or pane) is alive."""
    from gc_polecat.beads.catalog import Query  # lazy: start-up
    from gc_polecat.lifecycle import session as sessions  # lazy: start-up
    from gc_polecat.lifecycle.providers import ProviderError  # lazy: start-up

    problems = []
    for bead in store.catalog.list(Query(labels=(sessions.SESSION_LABEL,))):
        s = sessions.Session.of(bead)
        provider = providers.get(s.provider)
        try:
            running = bool(provider and s.handle and provider.is_alive(s.handle))
        except ProviderError:  # a handle that names no process (a launch killed half-way)
            running = False
        if running != (s.state in sessions.LIVE_STATES):
            problems.append(
                f"session {s.id} ({s.name}) is {s.state} but its process is "
                f"{'running' if running else 'gone'}"
            )
    return problems


def repository_problems(root: Path) -> list[str]:
    problems = []
    if _git(root, "status", "--porcelain").stdout.strip():
        problems.append("the beads repository has uncommitted changes")
    fsck = _git(root, "fsck", "--no-dangling")
    if fsck.returncode != 0 or "error" in fsck.stderr.lower():
        problems.append(f"git fsck: {(fsck.stderr.strip().splitlines() or ['failed'])[0]}")
    return problems


def audit(store: Store, providers: Mapping[str, SessionProvider]) -> list[str]:
    """Every leak found, one line each; [] when the city is clean."""
    problems = beads_left_open(store)
    for pool in sorted(store.config()["pools"]):
        problems += pool_leaks(store, pool)
    problems += session_leaks(store, providers)
    return problems + repository_problems(store.root)
