"""Routing work: where a work item goes when it leaves the session that held it.

The one place for it, whatever ended the session's hold:

- a verdict (merged, fix needed, escalated, no live waiter): `route_after_verdict`;
- a wait that ends without a verdict (expired, session dead or stale, cancelled, session
  stopped): `end_wait_and_fall_back` (`stop_session` for a stop);
- a session that can no longer finish the work (pool restart limit, drained): `fall_back`;
- a pool over `max_waiting` (at submit, or lowered by hand): `hold_to_cap` /
  `release_for_capacity`.

"Falls back" means: unassigned, routed to the session's pool with every resume field kept
(`pool_fields`), and the polecat's sandbox cleanup begun (cleanup.py). Everything here runs
inside the caller's transaction: one commit per event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gc_polecat.beads.bead import metadata
from gc_polecat.errors import BadInput, NotFound
from gc_polecat.lifecycle import cleanup, keys
from gc_polecat.lifecycle import session as sessions
from gc_polecat.lifecycle import wait as waits

if TYPE_CHECKING:
    from collections.abc import Mapping

    from gc_polecat.beads.bead import Bead
    from gc_polecat.beads.store import Store, Transaction
    from gc_polecat.lifecycle.providers import SessionProvider

ESCALATED_LABEL = "gc:escalated"


def find_session(tx: Transaction, session_id: str) -> sessions.Session | None:
    """The session, or None when it is unknown or its bead is not one."""
    try:
        return sessions.get(tx, session_id)
    except (NotFound, BadInput):
        return None


def pool_fields(work: Bead, meta: dict[str, str], pool: str) -> Bead:
    """The fallback: unassigned, routed to the pool, every resume field kept. Readiness stays
    governed by the work's dependencies: a pending submission still blocks it."""
    meta[keys.ROUTED_TO] = pool
    if work.get("assignee"):
        meta[keys.PREVIOUS_SESSION] = work["assignee"]
    return {"status": "open", "assignee": "", "metadata": meta}


def fall_back(tx: Transaction, work_id: str, session_id: str, reason: str) -> bool:
    """Take the work from a session that can no longer finish it; False if it was not its."""
    work = tx.get(work_id) if work_id else None
    if work is None or work["status"] == "closed" or work.get("assignee") != session_id:
        return False
    meta = dict(work.get("metadata", {}))
    meta[keys.FALLBACK_REASON] = reason
    pool = ""
    found = find_session(tx, session_id)
    if found is not None:
        pool = found.pool
    tx.update(work_id, pool_fields(work, meta, pool or meta.get(keys.ROUTED_TO, "")))
    cleanup.begin(tx, session_id, work_id, "released", wait=meta.get(keys.WAIT, ""))
    return True


def end_wait_and_fall_back(
    tx: Transaction,
    wait: Bead,
    why: str,
    *,
    expire: bool = False,
    fall_back_why: str | None = None,
) -> None:
    """End a wait that will get no verdict (cancelled with `why`, or expired) and take its work
    back from its session to the pool (`gc.fallback_reason`: `fall_back_why`, else `why`)."""
    view = waits.Wait.of(wait)
    if expire:
        waits.expire(tx, wait)
    else:
        waits.cancel(tx, wait, why)
    fall_back(tx, view.work, view.session_id, fall_back_why or why)


def release_for_capacity(tx: Transaction, wait: Bead) -> None:
    """Release a pending waiter for capacity: its wait is cancelled (`released-capacity`) and
    its work falls back to the pool with its resume fields; the submission stays open."""
    end_wait_and_fall_back(tx, wait, "released-capacity")
    session = tx.get(waits.Wait.of(wait).session_id)
    if session is not None and sessions.state_of(session) == "awaiting_verdict":
        sessions.set_state(tx, sessions.Session.of(session), "active")


def hold_to_cap(tx: Transaction, pool: str, new_wait: Bead) -> list[str]:
    """Release the pool's oldest pending waiters so that `new_wait` keeps it within
    `max_waiting`, in the submitting transaction: no commit ever holds more waiters than the
    cap (a cap lowered by hand is the plan's step 1). Every pending wait counts, live or not;
    a dead waiter's work falls back to the pool either way. Returns the released wait IDs."""
    cfg = tx.store.config()["pools"].get(pool) if pool else None  # pool/config.py PoolConfig
    if cfg is None:
        return []
    catalog = tx.store.catalog
    catalog.refresh()  # at this transaction's base: the write lock is held
    pending = [new_wait]
    for listed in waits.list_waits(catalog, pool=pool):
        if listed["id"] == new_wait["id"] or not waits.is_wait(listed):
            continue
        if waits.state(listed) != "pending":
            continue
        wait = tx.get(listed["id"]) if tx.changed(listed["id"]) else listed
        if wait is not None and waits.state(wait) == "pending":
            pending.append(wait)
    # oldest first; the new wait last among waits of the same second
    pending.sort(key=lambda w: (w["created_at"], w["id"] == new_wait["id"], w["id"]))
    released = pending[: max(0, len(pending) - cfg.waiting_cap)]
    for wait in released:
        release_for_capacity(tx, wait)
    return [w["id"] for w in released]


def route_after_verdict(
    tx: Transaction,
    work: Bead,
    sub: Bead,
    verdict: Bead,
    routed: str,
    reason: str,
    failure_type: str | None,
    merge_commit: str | None,
) -> None:
    """Where the work goes with its verdict: closed (merged), escalated (blocked, unassigned),
    back to the pool with its resume fields, or kept by the session (in progress)."""
    meta = metadata(work)
    meta[keys.VERDICT] = verdict["id"]
    deps = [d for d in work.get("dependencies", []) if d["depends_on_id"] != sub["id"]]
    changes: Bead = {"dependencies": deps, "metadata": meta}
    if routed == "closed":
        meta.update({"merge_result": "merged", "merged_target": metadata(sub).get("target", "")})
        if merge_commit:
            meta["merged_sha"] = merge_commit
        changes.update({"status": "closed", "close_reason": "merged"})
    else:
        meta.update(
            {
                "rejection_reason": reason,
                keys.FAILURE_TYPE: failure_type or "",
                keys.FAILED_COMMIT: metadata(sub).get("commit", ""),
            }
        )
        if routed == "escalated":
            labels = [*work.get("labels", []), ESCALATED_LABEL]
            meta[keys.ESCALATED] = f"attempt cap reached at attempt {metadata(sub).get('attempt')}"
            changes.update({"status": "blocked", "assignee": "", "labels": labels})
        elif routed == "pool":
            changes.update(pool_fields(work, meta, metadata(sub).get("pool", "")))
        else:
            changes["status"] = "in_progress"
    tx.update(work["id"], changes)


def stop_session(
    store: Store, session_id: str, reason: str, providers: Mapping[str, SessionProvider]
) -> str:
    """Stop a session: its process ends (this machine's record only; a session gc started is
    gc's to stop), its open waits end `session-closed`, their work falls back to the pool, and
    the session is recorded stopped with `reason`. Returns why the process was not signalled
    ("" when it was, or when there was none to signal)."""
    target = sessions.get(store, session_id)
    why = "" if target.gc_owned else sessions.stop_process(store, target, providers)
    store.catalog.refresh()
    found = waits.list_waits(store.catalog, session_id=session_id, open_only=True)
    mine = [w for w in found if waits.is_wait(w)]  # never a wait gc made (`gc session wait`)
    with store.transaction(f"{session_id}: stopped ({reason})") as tx:
        for wait in mine:
            current = tx.require(wait["id"])
            if current["status"] != "closed":
                end_wait_and_fall_back(tx, current, "session-closed")
        sessions.set_state(tx, sessions.get(tx, session_id), "stopped", stop_reason=reason)
    return "" if why in (sessions.NOT_HERE, sessions.REGISTERED) else why
