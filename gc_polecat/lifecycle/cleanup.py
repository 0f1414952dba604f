"""Cleanup finalizers: the pending cleanup of a polecat's sandbox is a bead until it is verified.

When work leaves a polecat (merged, released to the pool, escalated), the commit that moves the
work also opens a finalizer bead (`chore`, labels `gc:cleanup`, `polecat:<id>`) and marks the
polecat `done`. `run()` then does the git work in the sandbox and closes the finalizer only
after checking every step from git itself:

- the tree is clean (uncommitted changes stop the cleanup: nothing dirty is ever reset);
- nothing is unpushed: a released branch with commits the remote lacks is pushed first, so the
  next polecat can resume it; a merged branch may only carry the merged commit;
- the sandbox is synced to the target (detached at its tip) and the polecat's branches are gone;
- a persistent polecat's worktree is in place (recreated if someone deleted it); an ephemeral
  polecat's worktree is removed and the identity retired.

A step that fails leaves the finalizer open with `last_error`; the controller runs it again on
its next pass (level-triggered, idempotent). The session runs its own cleanup after `await`
exits 0; the controller does it when the session is gone, or after `delivery_timeout`.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gc_polecat.beads.bead import Bead, parse_time
from gc_polecat.errors import BadInput
from gc_polecat.lifecycle import keys
from gc_polecat.lifecycle import polecat as polecats

if TYPE_CHECKING:
    from gc_polecat.beads.store import Store, Transaction
    from gc_polecat.lifecycle.providers import SessionProvider

CLEANUP_LABEL = "gc:cleanup"
REASONS = ("merged", "released", "escalated")


def open_for(tx: Transaction, polecat_id: str) -> Bead | None:
    """The polecat's open finalizer, if any (at most one exists: see `begin`)."""
    from gc_polecat.beads.catalog import Query  # lazy: start-up

    tx.store.catalog.refresh()
    for bead in tx.store.catalog.list(
        Query(labels=(CLEANUP_LABEL, f"polecat:{polecat_id}"), include_closed=False)
    ):
        current = tx.get(bead["id"])
        if current is not None and current["status"] != "closed":
            return current
    return None


def begin(
    tx: Transaction,
    session_id: str,
    work_id: str,
    reason: str,
    *,
    also: str = "",
    wait: str = "",
) -> Bead | None:
    """The work left the session's polecat: open its finalizer and mark it `done`, in the
    caller's commit. Nothing when the session is not a pool polecat's, or the polecat has
    already moved on to other work."""
    assert reason in REASONS, reason
    session = tx.get(session_id) if session_id else None
    polecat = polecats.of_session(tx, session) if session else None
    if polecat is None or polecat.state not in polecats.BUSY_STATES or polecat.work != work_id:
        return _remote_only(tx, session, work_id, also) if reason == "merged" else None
    existing = open_for(tx, polecat.id)
    if existing is not None:
        meta = existing.get("metadata", {})
        if reason == "merged" and meta.get("work") == work_id and meta.get("reason") != "merged":
            # merged before the release's cleanup ran: clean up as after a merge, so the
            # work's branches on origin go too
            existing = tx.update(
                existing["id"], {"metadata": {**meta, "reason": "merged", "also": also}}
            )
        return existing
    cfg = tx.store.config()["pools"].get(polecat.pool)
    fin = tx.create(
        {
            "title": f"cleanup: polecat {polecat.name} after {work_id} ({reason})",
            "issue_type": "chore",
            "labels": [CLEANUP_LABEL, f"polecat:{polecat.id}", f"pool:{polecat.pool}"],
            "metadata": {
                k: v
                for k, v in {
                    "polecat": polecat.id,
                    "pool": polecat.pool,
                    "work": work_id,
                    "reason": reason,
                    "session": session_id,
                    "branch": polecat.branch,
                    "sandbox": polecat.sandbox,
                    "repo": str(cfg.code_repo(tx.store.root)) if cfg and cfg.repo else "",
                    "target": cfg.target if cfg else "main",
                    "also": also,
                    "wait": wait,
                    "retire": "1" if polecat.ephemeral else "0",
                }.items()
                if v
            },
        }
    )
    bump = {"merged": ("completed",), "released": ("fallbacks",), "escalated": ()}[reason]
    polecats.update(tx, polecat, "done", bump=bump, ledger=f"{work_id} {reason}", cleanup=fin["id"])
    return fin


def _remote_only(tx: Transaction, session: Bead | None, work_id: str, also: str) -> Bead | None:
    """A merge that reached the work after it had left its polecat (a late verdict on
    released work): no polecat's cleanup will delete the work's branches on origin, so a
    finalizer without a polecat or sandbox does (`_git_steps`)."""
    work = tx.get(work_id) if work_id else None
    meta = (work or {}).get("metadata", {})
    pool = meta.get(keys.ROUTED_TO) or (session or {}).get("metadata", {}).get("pool", "")
    cfg = tx.store.config()["pools"].get(pool)
    if not also or not meta.get(keys.POLECAT) or cfg is None or not cfg.repo:
        return None
    return tx.create(
        {
            "title": f"cleanup: branches of {work_id} on origin (merged)",
            "issue_type": "chore",
            "labels": [CLEANUP_LABEL, f"pool:{pool}"],
            "metadata": {
                "pool": pool,
                "work": work_id,
                "reason": "merged",
                "repo": str(cfg.code_repo(tx.store.root)),
                "target": cfg.target,
                "also": also,
            },
        }
    )


@dataclass(frozen=True)
class Outcome:
    finalizer: str
    result: str  # verified | failed | busy | closed
    detail: str = ""


def pending(store: Store, pool: str | None = None) -> list[Bead]:
    from gc_polecat.beads.catalog import Query  # lazy: start-up

    store.catalog.refresh()
    labels = (CLEANUP_LABEL,) + ((f"pool:{pool}",) if pool else ())
    return store.catalog.list(Query(labels=labels, include_closed=False))


def _places(store: Store, meta: Mapping[str, str]) -> tuple[Path | None, Path | None]:
    """(sandbox, code clone) a finalizer names, each only if it is its pool's as configured:
    its metadata is bead content, untrusted, and git runs in both (docs/security.md,
    section 10). BadInput for one that is not."""
    if not meta.get("sandbox") and not meta.get("repo"):
        return None, None
    pool = meta.get("pool", "")
    cfg = store.config()["pools"].get(pool)
    if cfg is None or not cfg.repo:
        raise BadInput(f"pool {pool!r} is not configured with a repo: its sandboxes are unknown")
    repo = cfg.code_repo(store.root)
    if meta.get("repo") and Path(meta["repo"]) != repo:
        raise BadInput(f"repo {meta['repo']!r} is not pools.{pool}.repo ({repo})")
    box = cfg.sandbox_path(store.root, meta["sandbox"]) if meta.get("sandbox") else None
    return box, repo if meta.get("repo") else None


def _git_steps(meta: Mapping[str, str], name: str, box: Path | None, repo: Path | None) -> str:
    """Bring the sandbox to its documented state; '' when verified, else why not."""
    from gc_polecat.lifecycle import sandbox  # lazy: start-up
    from gc_polecat.lifecycle.sandbox import SandboxError  # lazy: start-up

    path = box or Path()
    target = meta.get("target", "main")
    also = [meta["also"]] if meta.get("also") else []
    retire = meta.get("retire") == "1"
    if box is None:  # nothing local to clean; after a merge, origin's branches
        if meta.get("reason") == "merged" and also and repo is not None and meta.get("work"):
            try:
                sandbox.prune_remote(repo, meta["work"], also)
            except SandboxError as exc:
                return str(exc)
        return ""
    try:
        st = sandbox.state(path, name, target, also)
        if st.exists:
            if not st.clean:
                return f"uncommitted changes in {path}; commit or discard them by hand"
            if meta.get("reason") != "merged":
                for branch in st.unpushed:  # keep the work for the next polecat
                    sandbox.push_branch(path, branch)
            sandbox.sync(path, target)
            sandbox.prune(path, name, also=also)
            if meta.get("reason") == "merged" and meta.get("work"):
                sandbox.prune_remote(path, meta["work"], also)
            if retire and repo is not None:
                sandbox.remove(repo, path, name, target, also)
        elif not retire and repo is not None:
            sandbox.create(repo, path, target)
        st = sandbox.state(path, name, target, also)
    except SandboxError as exc:
        return str(exc)
    if retire:
        if st.exists or (repo is not None and path.resolve() in sandbox.worktrees(repo)):
            return f"worktree {path} is still there"
        return ""
    if st.unpushed:
        return f"unpushed commits on {', '.join(st.unpushed)}; they are never deleted"
    if not (st.clean and st.on_base and not st.branches):
        left = ", ".join(st.branches) or "none"
        return (
            f"sandbox {path} not synced (clean={st.clean}, on_base={st.on_base}, branches={left})"
        )
    return ""


def run(
    store: Store, finalizer_id: str, providers: Mapping[str, SessionProvider] | None = None
) -> Outcome:
    """Do and verify one cleanup; closes the finalizer only when every check holds."""
    from gc_polecat.beads.locks import LockTimeout  # lazy: start-up

    fin = store.get(finalizer_id)
    if fin["status"] == "closed":
        return Outcome(finalizer_id, "closed")
    meta = fin.get("metadata", {})
    polecat = polecats.get(store, meta["polecat"]) if meta.get("polecat") else None
    name = polecat.name if polecat else ""
    try:
        with polecats.sandbox_lock(store, meta.get("pool", ""), name).acquire(timeout=0):
            try:
                box, repo = _places(store, meta)
            except BadInput as exc:
                return _record(store, finalizer_id, str(exc), providers)
            return _record(store, finalizer_id, _git_steps(meta, name, box, repo), providers)
    except LockTimeout:
        return Outcome(finalizer_id, "busy", "another cleanup of this sandbox is running")


def _record(
    store: Store, finalizer_id: str, error: str, providers: Mapping[str, SessionProvider] | None
) -> Outcome:
    from gc_polecat.lifecycle import session as sessions  # lazy: start-up
    from gc_polecat.lifecycle import wait as waits  # lazy: start-up

    stop: sessions.Session | None = None
    with store.transaction() as tx:
        fin = tx.require(finalizer_id)
        meta = dict(fin.get("metadata", {}))
        if fin["status"] == "closed":
            return Outcome(finalizer_id, "closed")
        if error:
            if meta.get("last_error") != error:
                meta.update({"last_error": error, "failed_at": tx.now})
                tx.update(finalizer_id, {"metadata": meta})
                tx.message = f"{finalizer_id}: cleanup failed: {error}"[:200]
            return Outcome(finalizer_id, "failed", error)
        wait = tx.get(meta["wait"]) if meta.get("wait") else None
        if wait is not None and wait["status"] != "closed":
            waits.cancel(tx, wait, "cleanup")
        polecat = polecats.get(tx, meta["polecat"]) if meta.get("polecat") else None
        retire = meta.get("retire") == "1"
        if polecat is not None and polecat.state != "retired":
            state = "retired" if retire else "idle"
            polecats.update(tx, polecat, state, work="", branch="", cleanup="")
            if retire and polecat.session:
                stop = _end_session(tx, polecat.session)
        if stop is not None and providers is not None:
            # the process ends before the commit that records it stopped: killed in between,
            # this leaves a live bead over a dead process, which the controller reaps, never
            # a stopped bead over a process nobody would stop again
            sessions.stop_process(store, stop, providers, grace=1.0)  # its record only
        meta.pop("last_error", None)
        meta["verified_at"] = tx.now
        tx.update(finalizer_id, {"status": "closed", "close_reason": "verified", "metadata": meta})
        tx.message = f"{finalizer_id}: cleanup verified ({meta.get('reason')})"
    return Outcome(finalizer_id, "verified")


def _end_session(tx: Transaction, session_id: str):  # noqa: ANN202 - Session | None
    """A retired polecat's session ends with it; when the caller *is* that session, its own
    process is left to exit (killing it mid-command would kill the caller)."""
    from gc_polecat.errors import GcPolecatError  # lazy: start-up
    from gc_polecat.lifecycle import session as sessions  # lazy: start-up

    try:
        session = sessions.get(tx, session_id)
    except GcPolecatError:
        return None
    if session.state not in sessions.LIVE_STATES:
        return None
    sessions.set_state(tx, session, "stopped", stop_reason="polecat retired")
    return None if os.environ.get("GC_SESSION_ID") == session_id else session


def due(fin: Bead, session_alive: bool, grace: float, now: dt.datetime) -> bool:
    """Whether the controller should run this finalizer now: its session is gone, the work was
    not merged (nobody else will clean), an attempt failed (retry every pass), or the session
    has had `grace` seconds to do it."""
    meta = fin.get("metadata", {})
    if not session_alive or meta.get("reason") != "merged" or meta.get("last_error"):
        return True
    born = parse_time(fin["created_at"])  # any stored time: imports keep sub-seconds
    return (now - born).total_seconds() >= grace
