"""Pool reconciliation: bring each pool's sessions and polecats to their desired state.

The desired number of live sessions (Gas City's rule, with waiting counted as ownership):

    owners  = live sessions that hold work: assigned work, a pending wait (pinned), or a
              polecat that is working, awaiting a verdict or cleaning up
    desired = max(min_active, owners + min(demand, max(0, max_active - owners)))

where demand is the ready, unassigned work routed to the pool. The plan, in the order applied:

1. release: live waiters beyond `max_waiting` (a cap lowered by hand: `submit` itself keeps
   new waiters within it, `hold_to_cap`), oldest wait first: the wait is cancelled
   (`released-capacity`) and the work falls back to the pool, where its verdict finds it;
2. reap: sessions whose process is gone and which own nothing are closed (`process-gone`);
3. restart: a working polecat whose session died gets a new session on the same sandbox and
   branch (restart first, never nuke); after 3 restarts of one work item it falls back;
4. cleanup: pending cleanup finalizers that are due (cleanup.py);
5. sling: ready routed work, while an idle polecat or room under `max_active` exists;
6. drain: idle live sessions beyond the desired number, longest idle first (past
   `idle_timeout`, unless the pool is above `max_active`). Owners are never drained: a pinned
   waiter is released only by step 1, through the fallback, never by a shrink. Only sessions
   the pool launched for a polecat are drained: one started by hand (`session start`,
   `session register`) counts as live but is the person's to stop;
7. start: sessions for idle polecats while fewer than `min_active` are alive;
8. orphan: worktrees under the pool's sandbox root that no polecat owns (a crash between
   `git worktree add` and the commit) are removed when clean and fully pushed.

`plan()` only reads; `apply()` carries out one action in its own commit after checking again
that it still holds, so a stale plan, a concurrent controller or a crash never does harm.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gc_polecat.beads.catalog import Query
from gc_polecat.errors import GcPolecatError
from gc_polecat.lifecycle import cleanup, keys, routing, sandbox
from gc_polecat.lifecycle import polecat as polecats
from gc_polecat.lifecycle import session as sessions
from gc_polecat.lifecycle import wait as waits
from gc_polecat.lifecycle.controller import open_waits
from gc_polecat.pool.sling import launch_for, sling
from gc_polecat.pool.status import routed_work

if TYPE_CHECKING:
    from gc_polecat.beads.bead import Bead
    from gc_polecat.beads.store import Store
    from gc_polecat.lifecycle.providers import SessionProvider
    from gc_polecat.pool.config import PoolConfig

MAX_RESTARTS = 3  # per work item (Gas Town's respawn breaker)
KINDS = ("release", "reap", "restart", "cleanup", "sling", "drain", "start", "orphan")


@dataclass(frozen=True)
class Action:
    kind: str
    target: str  # a wait, session, polecat, finalizer, work ID, or a sandbox path
    why: str


@dataclass
class Snapshot:
    """What one pool holds right now, read once from the catalog and the providers."""

    cfg: PoolConfig
    sessions: dict[str, sessions.Session] = field(default_factory=dict)
    alive: dict[str, bool] = field(default_factory=dict)
    polecats: list[polecats.Polecat] = field(default_factory=list)
    waits: list[Bead] = field(default_factory=list)  # pending, of this pool's live sessions
    assignees: set[str] = field(default_factory=set)
    ready: list[Bead] = field(default_factory=list)
    finalizers: list[Bead] = field(default_factory=list)


def snapshot(
    store: Store, cfg: PoolConfig, providers: Mapping[str, SessionProvider], open_waits: list[Bead]
) -> Snapshot:
    snap = Snapshot(cfg)
    labels = (sessions.SESSION_LABEL, f"pool:{cfg.name}")
    for bead in store.catalog.list(Query(labels=labels, include_closed=False)):
        s = sessions.Session.of(bead, store.state_dir)
        snap.sessions[s.id] = s
        snap.alive[s.id] = sessions.is_alive(s, providers)
    snap.polecats = polecats.of_pool(store, cfg.name)
    snap.waits = [
        w
        for w in open_waits
        if waits.state(w) == "pending" and snap.alive.get(w["metadata"].get("session_id", ""))
    ]
    snap.assignees = store.catalog.assignees()
    snap.ready, _ = routed_work(store, cfg.name)
    snap.finalizers = cleanup.pending(store, cfg.name)
    return snap


def _owners(snap: Snapshot) -> set[str]:
    busy = {p.session for p in snap.polecats if p.state in polecats.BUSY_STATES}
    waiting = {w["metadata"].get("session_id") for w in snap.waits}
    return {
        sid
        for sid, alive in snap.alive.items()
        if alive and (sid in busy or sid in waiting or sid in snap.assignees)
    }


def plan(snap: Snapshot, now: dt.datetime, grace: float) -> list[Action]:
    """Every action the pool needs, in the order `apply` should run them. Reads only."""
    cfg, actions = snap.cfg, []
    by_age = sorted(snap.waits, key=lambda w: (w["created_at"], w["id"]))
    for w in by_age[: max(0, len(by_age) - cfg.waiting_cap)]:
        actions.append(Action("release", w["id"], f"{len(by_age)} waiting > max {cfg.waiting_cap}"))
    owners = _owners(snap)
    polecat_sessions = {p.session: p for p in snap.polecats}
    for sid, s in snap.sessions.items():
        if s.state in sessions.LIVE_STATES and not snap.alive[sid] and sid not in snap.assignees:
            p = polecat_sessions.get(sid)
            if p is None or p.state not in polecats.BUSY_STATES:
                actions.append(Action("reap", sid, "process gone, owns nothing"))
    for p in snap.polecats:
        if p.state == "working" and not snap.alive.get(p.session, False):
            actions.append(Action("restart", p.id, f"session {p.session or '-'} is gone"))
    for fin in snap.finalizers:
        session_alive = snap.alive.get(fin["metadata"].get("session", ""), False)
        if cleanup.due(fin, session_alive, grace, now):
            actions.append(Action("cleanup", fin["id"], fin["metadata"].get("reason", "")))
    idle = [p for p in snap.polecats if p.state == "idle"]
    room = len(idle) + max(0, cfg.max_active - len(snap.polecats))
    for work in snap.ready[:room]:
        actions.append(Action("sling", work["id"], "ready work routed to the pool"))
    live = [sid for sid, a in snap.alive.items() if a]
    demand = min(len(snap.ready), room)
    desired = max(cfg.min_active, len(owners) + min(demand, max(0, cfg.max_active - len(owners))))
    idle_live = sorted(  # another machine drains its own; a person stops what they started
        (
            snap.sessions[sid]
            for sid in live
            if sid not in owners
            and sessions.is_local(snap.sessions[sid])
            and _started_by_pool(snap.sessions[sid])
        ),
        key=lambda s: (s.bead.get("updated_at", ""), s.id),
    )
    # idle sessions that will take the ready work are not drained
    spare = idle_live[min(demand, len(idle_live)) :] if demand else idle_live
    for s in spare[: max(0, len(live) - desired)]:
        idle_for = (now - _at(s.bead.get("updated_at", ""), now)).total_seconds()
        if len(live) > cfg.max_active or cfg.idle_timeout is None or idle_for >= cfg.idle_timeout:
            actions.append(Action("drain", s.id, f"{len(live)} live > desired {desired}"))
    if cfg.command:
        sessionless = [p for p in idle if not snap.alive.get(p.session, False)]
        for p in sessionless[: max(0, cfg.min_active - len(live))]:
            actions.append(Action("start", p.id, f"{len(live)} live < min {cfg.min_active}"))
    return actions


def _started_by_pool(s: sessions.Session) -> bool:
    """Sessions the pool launched for a polecat (sling, a restart, `min_active`) carry the
    polecat's ID; `session start` and `session register` by hand do not, and are never drained."""
    return bool(s.bead.get("metadata", {}).get("polecat"))


def _at(stamp: str, default: dt.datetime) -> dt.datetime:
    try:
        return dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return default


def orphans(store: Store, snap: Snapshot) -> list[Action]:
    """Worktrees under the pool's sandbox root that no polecat owns (one git call)."""
    cfg = snap.cfg
    if not cfg.repo:
        return []
    repo, root = cfg.code_repo(store.root), cfg.sandbox_root(store.root)
    if not repo.exists():
        return []
    owned = {str(Path(p.sandbox).resolve()) for p in snap.polecats if p.sandbox}
    try:
        trees = sandbox.worktrees(repo)
    except sandbox.SandboxError:
        return []
    return [
        Action("orphan", str(t), "worktree owned by no polecat")
        for t in trees
        if t.parent == root and str(t) not in owned
    ]


def apply(
    store: Store, action: Action, cfg: PoolConfig, providers: Mapping[str, SessionProvider]
) -> str | None:
    """Carry out one action if it still holds; returns what was done, or None."""
    handler = {
        "release": _release,
        "reap": _reap,
        "restart": _restart,
        "cleanup": _cleanup,
        "sling": _sling,
        "drain": _drain,
        "start": _start,
        "orphan": _orphan,
    }[action.kind]
    return handler(store, action.target, cfg, providers)


def reconcile(
    store: Store,
    providers: Mapping[str, SessionProvider],
    pools: list[str] | None = None,
    *,
    dry_run: bool = False,
) -> list[tuple[Action, str | None]]:
    """Plan (and unless `dry_run`, apply) every configured pool; (action, outcome) pairs."""
    configured = store.config()["pools"]
    grace = store.config()["delivery_timeout"]
    now = dt.datetime.now(dt.UTC)
    pending_waits = open_waits(store)
    done: list[tuple[Action, str | None]] = []
    for name in pools or sorted(configured):
        cfg = configured[name]
        snap = snapshot(store, cfg, providers, pending_waits)
        actions = plan(snap, now, grace) + orphans(store, snap)
        for action in actions:
            done.append((action, None if dry_run else _safely(store, action, cfg, providers)))
    return done


def _safely(
    store: Store, action: Action, cfg: PoolConfig, providers: Mapping[str, SessionProvider]
) -> str:
    """One failing action (a sandbox git refuses, a provider that cannot start) must not stop
    the pass: it is reported, and the next pass tries again."""
    try:
        return apply(store, action, cfg, providers) or "skipped (no longer needed)"
    except GcPolecatError as exc:
        return f"failed: {exc}"


# --- the actions, each one commit ------------------------------------------------------------


def _release(store: Store, wait_id: str, cfg: PoolConfig, providers: Any) -> str | None:
    with store.transaction(f"pool {cfg.name}: {wait_id} released (max_waiting)") as tx:
        wait = tx.get(wait_id)
        if wait is None or waits.state(wait) != "pending":
            return None
        routing.release_for_capacity(tx, wait)
    return "released"  # the wake plugin rings the wait's doorbell: its `await` exits 20


def _reap(store: Store, session_id: str, cfg: PoolConfig, providers: Any) -> str | None:
    with store.transaction(f"pool {cfg.name}: {session_id} reaped (process gone)") as tx:
        s = sessions.get(tx, session_id)
        if s.state not in sessions.LIVE_STATES or sessions.is_alive(s, providers):
            return None
        sessions.set_state(tx, s, "stopped", stop_reason="process-gone")
    return "reaped"


def _restart(store: Store, polecat_id: str, cfg: PoolConfig, providers: Any) -> str | None:
    """Restart first: a new session on the same sandbox and branch takes the work over."""
    with sessions.stop_on_failure(providers) as launched, store.transaction() as tx:
        p = polecats.get(tx, polecat_id)
        if p is None or p.state != "working":
            return None
        old = sessions.get(tx, p.session) if p.session else None
        if old is not None and sessions.is_alive(old, providers):
            return None
        work = tx.get(p.work) if p.work else None
        if work is None or work["status"] == "closed":
            polecats.update(tx, p, "idle", work="", branch="")
            tx.message = f"pool {cfg.name}: polecat {p.name} had no open work; idle"
            return "idle (no work)"
        if old is not None and old.state in sessions.LIVE_STATES:
            sessions.set_state(tx, old, "dead")
        restarts = int(work.get("metadata", {}).get(keys.RESTARTS, "0") or 0)
        if restarts >= MAX_RESTARTS or not cfg.command:
            why = "restart-limit" if cfg.command else "no-command"
            routing.fall_back(tx, work["id"], p.session, f"session-dead ({why})")
            tx.message = f"pool {cfg.name}: {work['id']} fell back ({why})"
            return f"fell back ({why})"
        new = launch_for(tx, providers, cfg, p, work=work["id"])
        launched.append(new)
        meta = {**work.get("metadata", {}), keys.SESSION: new.id, keys.RESTARTS: str(restarts + 1)}
        tx.update(work["id"], {"assignee": new.id, "metadata": meta})
        polecats.update(tx, p, session=new.id)
        tx.message = f"pool {cfg.name}: polecat {p.name} restarted as {new.id} on {work['id']}"
    return f"restarted as {new.id}"


def _cleanup(store: Store, finalizer_id: str, cfg: PoolConfig, providers: Any) -> str | None:
    outcome = cleanup.run(store, finalizer_id, providers)
    return None if outcome.result == "closed" else f"{outcome.result} {outcome.detail}".strip()


def _sling(store: Store, work_id: str, cfg: PoolConfig, providers: Any) -> str | None:
    work = store.get(work_id)
    if work["status"] != "open" or work.get("assignee"):
        return None
    done = sling(store, providers, work_id, cfg.name)
    return None if done.queued else f"slung to {done.name} ({done.session})"


def _pins(wait: Bead) -> bool:
    """A wait that keeps its session from being drained: ours while pending; one of gc's own
    (`gc session wait`, no `submission`) until gc ends it, since stopping the session would
    strand it (Gas City: `internal/session/waits.go`, `IsWaitTerminalState`)."""
    if waits.is_wait(wait):
        return waits.state(wait) == "pending"
    return waits.state(wait) not in waits.TERMINAL


def _drain(store: Store, session_id: str, cfg: PoolConfig, providers: Any) -> str | None:
    """Stop an idle session; its polecat stays (identity and sandbox persist)."""
    s = sessions.get(store, session_id)
    if s.state not in sessions.LIVE_STATES or session_id in store.catalog.assignees():
        return None
    for p in polecats.of_pool(store, cfg.name):
        if p.session == session_id and p.state != "idle":
            return None  # it took work since the plan was made

    store.catalog.refresh()
    held = waits.list_waits(store.catalog, session_id=session_id, open_only=True)
    if any(_pins(w) for w in held):
        return None  # a waiter is pinned: never drained
    held = [w for w in held if waits.is_wait(w)]  # gc's own waits are gc's to end
    sessions.stop_process(store, s, providers, grace=2.0)  # this machine's record only
    with store.transaction(f"pool {cfg.name}: {session_id} drained (idle)") as tx:
        current = sessions.get(tx, session_id)
        if current.state in sessions.LIVE_STATES:
            sessions.set_state(tx, current, "stopped", stop_reason="drained")
        for wait in held:  # an uncollected verdict: nobody is left to collect it
            wait = tx.require(wait["id"])
            if wait["status"] != "closed":
                waits.cancel(tx, wait, "session-closed")
                meta = wait.get("metadata", {})
                routing.fall_back(tx, meta.get("work", ""), session_id, "session-closed")
    return "drained"


def _start(store: Store, polecat_id: str, cfg: PoolConfig, providers: Any) -> str | None:
    with sessions.stop_on_failure(providers) as launched, store.transaction() as tx:
        p = polecats.get(tx, polecat_id)
        if p is None or p.state != "idle":
            return None
        if p.session:
            try:
                if sessions.is_alive(sessions.get(tx, p.session), providers):
                    return None
            except GcPolecatError:
                pass
        new = launch_for(tx, providers, cfg, p)
        launched.append(new)
        polecats.update(tx, p, session=new.id)
        tx.message = f"pool {cfg.name}: session {new.id} started for idle polecat {p.name}"
    return f"started {new.id}"


def _orphan(store: Store, path: str, cfg: PoolConfig, providers: Any) -> str | None:
    name = Path(path).name
    if any(p.name == name for p in polecats.of_pool(store, cfg.name)):
        return None
    with polecats.sandbox_lock(store, cfg.name, name):
        sandbox.remove(cfg.code_repo(store.root), Path(path), name, cfg.target)
    return "removed"
