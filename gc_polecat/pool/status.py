"""What each pool holds now: its polecats and their health, its routed work, its pending
cleanups (`pool status`), and `pool init`, which creates the persistent polecats and their
sandboxes (docs/pool.md)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from gc_polecat.beads.bead import BLOCKING_DEP_TYPES, parse_time
from gc_polecat.beads.catalog import Query
from gc_polecat.errors import BadInput
from gc_polecat.lifecycle import cleanup, keys, sandbox
from gc_polecat.lifecycle import polecat as polecats
from gc_polecat.lifecycle import session as sessions
from gc_polecat.pool.config import require_pool

if TYPE_CHECKING:
    from collections.abc import Mapping

    from gc_polecat.beads.bead import Bead
    from gc_polecat.beads.store import Store
    from gc_polecat.lifecycle.providers import SessionProvider


def blocked_by(catalog: Any, work: Bead) -> list[str]:
    """The open beads this one waits for through a blocking dependency."""
    found = []
    for dep in work.get("dependencies", []):
        if dep["type"] in BLOCKING_DEP_TYPES and dep["depends_on_id"] != work["id"]:
            other = catalog.get(dep["depends_on_id"])
            if other is None or other["status"] != "closed":
                found.append(dep["depends_on_id"])
    return found


def routed_work(store: Store, pool: str) -> tuple[list[Bead], list[Bead]]:
    """(ready, blocked): open, unassigned work routed to the pool (`gc.routed_to`)."""
    store.catalog.refresh()
    ready, blocked = [], []
    for work in store.catalog.list(Query(statuses=("open",), meta=((keys.ROUTED_TO, pool),))):
        if not work.get("assignee"):
            (blocked if blocked_by(store.catalog, work) else ready).append(work)
    return ready, blocked


def init_pool(store: Store, name: str, size: int) -> list[Any]:
    """Create persistent polecats (identity + worktree) until the pool has `size` of them;
    sandboxes of existing ones that went missing are recreated. One commit for the identities."""
    cfg = require_pool(store, name)
    if not 1 <= size <= cfg.max_active:
        raise BadInput(f"--size must be 1..{cfg.max_active} (pools.{name}.max_active)")
    repo = cfg.code_repo(store.root)
    if not (repo / ".git").exists() and not (repo / "HEAD").exists():
        raise BadInput(f"pools.{name}.repo: {repo} is not a git repository")
    existing = [p for p in polecats.of_pool(store, name) if not p.ephemeral]
    for p in existing:
        sandbox.create(repo, cfg.sandbox_path(store.root, p.sandbox), cfg.target)
    taken = {p.name for p in polecats.of_pool(store, name)}
    names = [n for n in cfg.names if n not in taken]
    base, n = name.replace("/", "-"), 1
    while len(names) < size - len(existing):
        if f"{base}-{n}" not in taken:
            names.append(f"{base}-{n}")
        n += 1
    names = names[: max(0, size - len(existing))]
    root = cfg.sandbox_root(store.root)
    for new in names:
        sandbox.create(repo, root / new, cfg.target)
    if names:
        with store.transaction(f"pool {name}: init {len(names)} polecats") as tx:
            for new in names:
                tx.create(polecats.fields(new, name, str(root / new), ephemeral=False))
    return sorted(
        (p for p in polecats.of_pool(store, name) if not p.ephemeral), key=lambda p: (p.name, p.id)
    )


def health(
    polecat: Any, alive: bool, finalizer: Bead | None, grace: float, now: dt.datetime
) -> str:
    """The patrol's verdict on one polecat (seed 002's states, plus Gas Town's waiting one):
    working, awaiting_verdict (healthy, never a zombie), stalled (session dead, work
    unfinished: restart first), cleanup (work gone, cleanup pending), zombie (work gone,
    cleanup failed or overdue), idle, retired."""
    state = polecat.state
    if state in ("working", "awaiting_verdict"):
        return state if alive else "stalled"
    if state == "done":
        if finalizer is None or finalizer.get("metadata", {}).get("last_error"):
            return "zombie"
        born = parse_time(finalizer["created_at"])  # any stored time: imports keep sub-seconds
        return "zombie" if (now - born).total_seconds() > 10 * grace else "cleanup"
    return state


def status(store: Store, providers: Mapping[str, SessionProvider]) -> list[dict[str, Any]]:
    """Each pool at a glance: polecats and their health, sessions, waiters against the cap,
    work routed to the pool, pending cleanups."""
    catalog = store.catalog
    catalog.refresh()
    configured = store.config()["pools"]
    grace = store.config()["delivery_timeout"]
    now = dt.datetime.now(dt.UTC)
    rows: dict[str, dict[str, Any]] = {}

    def row(name: str) -> dict[str, Any]:
        if name not in rows:
            cfg = configured.get(name)
            ready, blocked = routed_work(store, name)
            rows[name] = {
                "pool": name,
                "configured": cfg is not None,
                "max_active": cfg.max_active if cfg else None,
                "min_active": cfg.min_active if cfg else None,
                "max_waiting": cfg.waiting_cap if cfg else None,
                "polecats": {},
                "sessions": {},
                "alive": 0,
                "waiting": 0,
                "work_ready": len(ready),
                "work_blocked": len(blocked),
                "queue": [w["id"] for w in ready],
                "cleanups": 0,
            }
        return rows[name]

    for name in configured:
        row(name)
    alive_of: dict[str, bool] = {}
    for bead in catalog.list(Query(labels=(sessions.SESSION_LABEL,), include_closed=False)):
        s = sessions.Session.of(bead, store.state_dir)
        r = row(s.pool)
        alive = alive_of[s.id] = sessions.is_alive(s, providers)
        r["sessions"][s.id] = {"state": s.state, "alive": alive, "name": s.name}
        r["alive"] += alive
        r["waiting"] += s.state == "awaiting_verdict"
    finalizers = {f["metadata"].get("polecat"): f for f in cleanup.pending(store)}
    for bead in catalog.list(Query(labels=(polecats.POLECAT_LABEL,), include_closed=False)):
        p = polecats.Polecat.of(bead)
        fin = finalizers.get(p.id)
        alive = alive_of.get(p.session, False)
        r = row(p.pool)
        r["cleanups"] += fin is not None
        r["polecats"][p.id] = {
            "name": p.name,
            "state": p.state,
            "health": health(p, alive, fin, grace, now),
            "ephemeral": p.ephemeral,
            "session": p.session,
            "alive": alive,
            "work": p.work,
            "branch": p.branch,
            "sandbox": p.sandbox,
            "cleanup": fin["id"] if fin else "",
            "record": {c: p.count(c) for c in polecats.COUNTERS},
            "since": bead.get("updated_at", ""),
        }
    for r in rows.values():  # by name, as a person scans them
        r["polecats"] = dict(sorted(r["polecats"].items(), key=lambda kv: (kv[1]["name"], kv[0])))
    return [rows[n] for n in sorted(rows)]
