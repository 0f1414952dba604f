"""Sling: give a work item to an idle polecat of a pool, or to a new one under the maximum.

The choice, in order: the polecat that last held this work (its identity and sandbox keep the
most context), an idle polecat whose session is alive (no start-up), any idle polecat, then a
new ephemeral polecat while the pool has fewer than `max_active` polecats. A polecat that is
working, awaiting a verdict or cleaning up is never chosen. With no capacity the work is queued:
routed to the pool (`gc.routed_to`) for `pool reconcile` to assign when a polecat frees up.

The git side (a branch `polecat/<name>/<work>@<stamp>` in the polecat's existing worktree, or a
new worktree for a new polecat) happens first, under the sandbox's lock; the bead side (the
work assigned to the polecat's session, the polecat `working`, a session started if it has
none) is one commit. A crash between the two leaves an idle polecat with a branch that has no
commits of its own; the next sync or cleanup prunes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gc_polecat.beads.bead import NOT_READY_TYPES, Bead
from gc_polecat.errors import BadInput, Conflict
from gc_polecat.lifecycle import keys
from gc_polecat.lifecycle import polecat as polecats
from gc_polecat.lifecycle import session as sessions

if TYPE_CHECKING:
    from gc_polecat.beads.store import Store, Transaction
    from gc_polecat.lifecycle.providers import SessionProvider
    from gc_polecat.pool.config import PoolConfig

ATTEMPTS = 5  # another sling may take the chosen polecat first; choose again this many times


@dataclass(frozen=True)
class Slung:
    work: str
    pool: str
    polecat: str = ""  # polecat ID ("" when queued)
    name: str = ""
    session: str = ""
    branch: str = ""
    sandbox: str = ""
    allocated: bool = False  # a new ephemeral polecat
    started: bool = False  # a new session was launched

    @property
    def queued(self) -> bool:
        return not self.polecat


def _check_work(store: Store, work: Bead, providers: Mapping[str, SessionProvider]) -> None:
    from gc_polecat.pool.status import blocked_by  # lazy: start-up

    wid = work["id"]
    if work["status"] == "closed":
        raise BadInput(f"{wid} is closed")
    if work.get("issue_type") in NOT_READY_TYPES or work.get("issue_type") == "session":
        raise BadInput(f"{wid} is a {work.get('issue_type')} bead, not work")
    owner = work.get("assignee")
    if owner:
        try:
            alive = sessions.is_alive(sessions.get(store, owner), providers)
        except BadInput:
            alive = False  # assigned to a person, or to a session bead that is gone
        if alive:
            raise BadInput(f"{wid} is already assigned to live session {owner}")
    blockers = blocked_by(store.catalog, work)
    if blockers:
        raise BadInput(f"{wid} is blocked by {', '.join(blockers)}")


def _alive(p: polecats.Polecat, store: Store, providers: Mapping[str, SessionProvider]) -> bool:
    if not p.session:
        return False
    try:
        return sessions.is_alive(sessions.get(store, p.session), providers)
    except BadInput:
        return False


def choose(
    store: Store, cfg: PoolConfig, work: Bead, providers: Mapping[str, SessionProvider]
) -> tuple[polecats.Polecat | None, str | None]:
    """(an idle polecat, None), or (None, a name for a new one), or (None, None): no capacity."""
    pool = polecats.of_pool(store, cfg.name)
    idle = [p for p in pool if p.state == "idle"]
    previous = work.get("metadata", {}).get(keys.POLECAT)
    for p in idle:
        if p.id == previous:
            return p, None
    for p in idle:
        if _alive(p, store, providers):
            return p, None
    if idle:
        return idle[0], None
    if len(pool) >= cfg.max_active:
        return None, None
    taken = {p.name for p in pool}
    for name in cfg.names:
        if name not in taken:
            return None, name
    base = cfg.name.replace("/", "-")
    n = 1
    while f"{base}-{n}" in taken:
        n += 1
    return None, f"{base}-{n}"


def sling(
    store: Store,
    providers: Mapping[str, SessionProvider],
    work_id: str,
    pool_name: str,
) -> Slung:
    """Assign `work_id` to a polecat of `pool_name` (one commit), or queue it in the pool."""
    from gc_polecat.pool.config import require_pool  # lazy: start-up

    cfg = require_pool(store, pool_name)
    for _ in range(ATTEMPTS):
        work = store.get(work_id)
        _check_work(store, work, providers)
        chosen, new_name = choose(store, cfg, work, providers)
        if chosen is None and new_name is None:
            return _queue(store, work_id, cfg)
        name = chosen.name if chosen else new_name
        assert name is not None
        with polecats.sandbox_lock(store, cfg.name, name):
            if chosen is not None:
                fresh = polecats.get(store, chosen.id)
                if fresh is None or fresh.state != "idle":
                    continue  # taken by another sling meanwhile
                chosen = fresh
            elif any(p.name == name for p in polecats.of_pool(store, cfg.name)):
                continue  # allocated by another sling meanwhile
            return _assign(store, providers, cfg, work, chosen, name)
    raise Conflict(f"could not sling {work_id}: pool {cfg.name} kept changing; try again")


def _queue(store: Store, work_id: str, cfg: PoolConfig) -> Slung:
    with store.transaction(f"{work_id}: queued in pool {cfg.name} (no idle polecat)") as tx:
        work = tx.require(work_id)
        meta = {**work.get("metadata", {}), keys.ROUTED_TO: cfg.name}
        if (work["status"], work.get("assignee", ""), work.get("metadata")) != ("open", "", meta):
            tx.update(work_id, {"status": "open", "assignee": "", "metadata": meta})
    return Slung(work_id, cfg.name)


def _branch_for(path: Path, name: str, work: Bead, target: str) -> str:
    """Resume the polecat's own branch for this work if it still has it; otherwise a new
    branch, started from the work's previous branch when another polecat pushed one."""
    from gc_polecat.lifecycle import sandbox  # lazy: start-up

    prior = work.get("metadata", {}).get("branch", "")
    if prior.startswith(f"polecat/{name}/") and sandbox.has_branch(path, prior):
        sandbox.start_branch(path, prior, target)
        return prior
    branch = sandbox.branch_name(name, work["id"])
    sandbox.start_branch(path, branch, target, resume_from=prior or None)
    return branch


def _assign(
    store: Store,
    providers: Mapping[str, SessionProvider],
    cfg: PoolConfig,
    work: Bead,
    chosen: polecats.Polecat | None,
    name: str,
) -> Slung:
    from gc_polecat.lifecycle import sandbox  # lazy: start-up

    repo = cfg.code_repo(store.root)
    if chosen and chosen.sandbox:  # bead content: used only if it is one of the pool's
        path = cfg.sandbox_path(store.root, chosen.sandbox)
    else:
        path = cfg.sandbox_root(store.root) / name
    sandbox.create(repo, path, cfg.target)
    branch = _branch_for(path, name, work, cfg.target)
    live = chosen is not None and _alive(chosen, store, providers)
    allocated = chosen is None
    with sessions.stop_on_failure(providers) as launched, store.transaction() as tx:
        if chosen is None:
            bead = tx.create(polecats.fields(name, cfg.name, str(path), ephemeral=True))
            chosen = polecats.Polecat.of(bead)
        if live:
            session_id = chosen.session
        else:
            launched.append(launch_for(tx, providers, cfg, chosen))
            session_id = launched[-1].id
        _hand_over(tx, work["id"], chosen, session_id, branch, path, cfg)
        tx.message = f"{work['id']}: slung to polecat {name} (session {session_id}, {branch})"
    if live:
        _tell(store, providers, session_id, work["id"], branch)
    return Slung(
        work["id"],
        cfg.name,
        chosen.id,
        name,
        session_id,
        branch,
        str(path),
        allocated=allocated,
        started=not live,
    )


def launch_for(
    tx: Transaction,
    providers: Mapping[str, SessionProvider],
    cfg: PoolConfig,
    polecat: polecats.Polecat,
    **meta: str,
) -> sessions.Session:
    """A new session for a polecat: the pool's command, in its sandbox, told who it is.
    Used by sling, and by the reconciler's restart and min_active starts."""
    if not cfg.command:
        raise BadInput(
            f"polecat {polecat.name} has no live session and pools.{cfg.name}.command is not set"
        )
    suffix = tx.new_id({"title": polecat.name}).rsplit("-", 1)[1]
    return sessions.launch(
        tx,
        providers,
        pool=cfg.name,
        name=f"{cfg.name.replace('/', '-')}-{polecat.name}-{suffix}",
        provider_name=cfg.provider,
        argv=cfg.command,
        work_dir=cfg.sandbox_path(tx.store.root, polecat.sandbox),
        extra_env=polecats.env(polecat),
        extra_meta={"polecat": polecat.id, **meta},
    )


def _hand_over(
    tx: Transaction,
    work_id: str,
    polecat: polecats.Polecat,
    session_id: str,
    branch: str,
    path: Path,
    cfg: PoolConfig,
) -> None:
    """The assignment itself: work, polecat and session agree on who holds what."""
    work = tx.require(work_id)
    if work["status"] == "closed":
        raise BadInput(f"{work_id} was closed meanwhile")
    meta = dict(work.get("metadata", {}))
    meta.update(
        {
            keys.ROUTED_TO: cfg.name,
            keys.POLECAT: polecat.id,
            keys.SESSION: session_id,
            "branch": branch,
            "work_dir": str(path),
        }
    )
    meta.setdefault("target", cfg.target)
    tx.update(work_id, {"status": "in_progress", "assignee": session_id, "metadata": meta})
    polecats.update(
        tx, polecat, "working", work=work_id, branch=branch, session=session_id, sandbox=str(path)
    )
    session = sessions.get(tx, session_id)
    tx.update(
        session_id,
        {"metadata": {**session.bead.get("metadata", {}), "work": work_id, "polecat": polecat.id}},
    )


def _tell(
    store: Store,
    providers: Mapping[str, SessionProvider],
    session_id: str,
    work_id: str,
    branch: str,
) -> None:
    """Wake a live idle session: ring `next`'s doorbell, and nudge it in case nobody listens."""
    from gc_polecat.lifecycle.doorbell import ring  # lazy: start-up

    if ring(store.state_dir / "wake", session_id, work_id):
        return
    line = f"gc-polecat: work {work_id} slung to you on {branch}; run: gc-polecat next"
    sessions.nudge(store, sessions.get(store, session_id), providers, line)  # its record only


def assigned_work(store: Store, session_id: str) -> Bead | None:
    """The oldest unfinished work assigned to the session and not waiting on the refinery."""
    from gc_polecat.beads.catalog import Query  # lazy: start-up

    store.catalog.refresh()
    for work in store.catalog.list(Query(assignee=session_id, include_closed=False)):
        if work.get("issue_type") in NOT_READY_TYPES:
            continue
        sub_id = work.get("metadata", {}).get(keys.SUBMISSION)
        sub = store.catalog.get(sub_id) if sub_id else None
        if sub is None or sub["status"] == "closed":
            return work
    return None


def await_work(store: Store, session_id: str, timeout: float | None) -> tuple[int, Bead | None]:
    """`next`: block until work is slung to the session. (0, work); (20, None) when the session
    ended; (30, None) at the timeout. Doorbell first, then git, as `await` does."""
    import time

    from gc_polecat.lifecycle.doorbell import Doorbell  # lazy: start-up
    from gc_polecat.lifecycle.wait import EXIT_ENDED, EXIT_PENDING, RECHECK  # lazy: start-up

    deadline = None if timeout is None else time.monotonic() + timeout
    with Doorbell(store.state_dir / "wake", [session_id]) as bell:
        while True:
            if sessions.get(store, session_id).state not in sessions.LIVE_STATES:
                return EXIT_ENDED, None
            work = assigned_work(store, session_id)
            if work is not None:
                return 0, work
            if deadline is not None and time.monotonic() >= deadline:
                return EXIT_PENDING, None
            left = RECHECK if deadline is None else min(RECHECK, deadline - time.monotonic())
            bell.wait(max(left, 0.0))
