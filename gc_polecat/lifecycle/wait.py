"""Wait beads: a session pinned to a submission until its verdict is delivered.

Shaped like Gas City's waits (`cmd/gc/cmd_wait.go`): `issue_type: gate`, metadata
`session_id`, `kind`, `state`, `dep_ids`, `dep_mode`, `registered_epoch`, `delivery_attempt`,
`expires_at`, `last_error`, ... States: pending -> ready -> closed (delivered), or the terminal
canceled / expired / failed. A terminal wait's bead is closed. Unlike Gas City, every wait gets
an expiry (lessons.md #6), and readiness comes from the verdict's own commit rather than a
controller tick.

The labels are ours, `polecat:wait` and `polecat:session:<id>`, not gc's `gc:wait` and
`session:<id>`: gc's controller drives every open gate that gc's `IsWaitBead`
(`internal/session/waits.go`) accepts, i.e. a gate labelled `gc:wait`, or labelled
`session:<metadata session_id>`. A verdict wait must be delivered once, by `await`, and
expired or canceled only by our controller (docs/interop.md, "Sharing a store with gc's
controller"). Waits written before that (labels `gc:wait`, `session:<id>`) are still read, and
rewritten to our labels by any transition and by every controller pass (`migrate_legacy`).
"""

from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gc_polecat.beads import bead as beadmod
from gc_polecat.beads.bead import Bead
from gc_polecat.errors import BadInput, NotFound
from gc_polecat.lifecycle import keys, waitview
from gc_polecat.lifecycle.waitview import (  # the pure half, shared with the fast `await`
    ENDED,  # noqa: F401 - re-exported
    EXIT_ENDED,  # noqa: F401 - re-exported
    EXIT_FIX_NEEDED,  # noqa: F401 - re-exported
    EXIT_MERGED,  # noqa: F401 - re-exported
    EXIT_PENDING,
    LEGACY_SESSION_LABEL_PREFIX,
    LEGACY_WAIT_LABEL,
    SESSION_LABEL_PREFIX,
    STATES,  # noqa: F401 - re-exported
    TERMINAL,
    WAIT_LABEL,
    AwaitResult,
    is_wait,
    state,
)

if TYPE_CHECKING:
    from gc_polecat.beads.store import Store, Transaction
    from gc_polecat.lifecycle.session import Session

RECHECK = 5.0  # a missed doorbell costs at most this much latency, never correctness


@dataclass(frozen=True)
class Wait:
    """A wait bead, read as the fields the lifecycle needs (its metadata is gc's wait shape)."""

    id: str
    state: str  # pending | ready | delivered | canceled | expired | failed
    session_id: str
    work: str
    submission: str
    registered_epoch: str
    verdict: str
    expires_at: str
    bead: Bead

    @classmethod
    def of(cls, bead: Bead) -> Wait:
        if not is_wait(bead):
            raise BadInput(f"{bead['id']} is not a wait")
        meta = bead.get("metadata", {})
        return cls(
            id=bead["id"],
            state=state(bead),
            session_id=meta.get("session_id", ""),
            work=meta.get("work", ""),
            submission=meta.get("submission", ""),
            registered_epoch=meta.get("registered_epoch", ""),
            verdict=meta.get("verdict", ""),
            expires_at=meta.get("expires_at", ""),
            bead=bead,
        )

    @property
    def open(self) -> bool:
        return self.bead["status"] != "closed"


def session_label(session_id: str) -> str:
    return SESSION_LABEL_PREFIX + session_id


def is_legacy(bead: Bead) -> bool:
    """A wait that still carries a label gc's `IsWaitBead` selects (`gc:wait`, or
    `session:<its session_id>`): gc's controller would ready, cancel, expire and close it."""
    labels = bead.get("labels", [])
    sid = bead.get("metadata", {}).get("session_id", "")
    return is_wait(bead) and (
        LEGACY_WAIT_LABEL in labels or (bool(sid) and LEGACY_SESSION_LABEL_PREFIX + sid in labels)
    )


def our_labels(bead: Bead) -> list[str]:
    """The wait's labels with gc's wait labels replaced by ours (order kept)."""
    sid = bead.get("metadata", {}).get("session_id", "")
    swap = {LEGACY_WAIT_LABEL: WAIT_LABEL}
    if sid:
        swap[LEGACY_SESSION_LABEL_PREFIX + sid] = session_label(sid)
    out: list[str] = []
    for label in bead.get("labels", []):
        label = swap.get(label, label)
        if label not in out:
            out.append(label)
    return out


def list_waits(
    catalog: Any, *, session_id: str | None = None, pool: str | None = None, open_only: bool = False
) -> list[Bead]:
    """Beads labelled as waits in the catalog (refreshed by the caller), both shapes, oldest
    first; `is_wait` tells a real one (a gate) apart."""
    from gc_polecat.beads.catalog import Query  # lazy: start-up

    found: dict[str, Bead] = {}
    for wait_label, prefix in (
        (WAIT_LABEL, SESSION_LABEL_PREFIX),
        (LEGACY_WAIT_LABEL, LEGACY_SESSION_LABEL_PREFIX),
    ):
        labels = (wait_label,) + ((prefix + session_id,) if session_id else ())
        labels += (f"pool:{pool}",) if pool else ()
        for bead in catalog.list(Query(labels=labels, include_closed=not open_only)):
            found.setdefault(bead["id"], bead)
    return sorted(found.values(), key=lambda b: (b["created_at"], b["id"]))


def migrate_legacy(store: Store) -> list[str]:
    """Give every open wait still in gc's shape our labels, in one commit, so gc's controller
    stops driving it; returns their IDs. Closed ones are left as they are: gc skips them."""
    store.catalog.refresh()
    legacy = [w["id"] for w in list_waits(store.catalog, open_only=True) if is_legacy(w)]
    if not legacy:
        return []
    with store.transaction(f"waits: {len(legacy)} given polecat:wait labels") as tx:
        done = []
        for wid in legacy:
            wait = tx.get(wid)
            if wait is not None and wait["status"] != "closed" and is_legacy(wait):
                tx.update(wid, {"labels": our_labels(wait)})
                done.append(wid)
    return done


def at(seconds_from_now: float = 0.0) -> str:
    moment = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds_from_now)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def create(
    tx: Transaction, session: Session, submission_id: str, work_id: str, ttl: float, note: str = ""
) -> Bead:
    now = beadmod.now()
    return tx.create(
        {
            "title": f"wait:{session.bead['title']}",
            "issue_type": "gate",
            "description": note or f"verdict on {submission_id} for {work_id}",
            "labels": [WAIT_LABEL, session_label(session.id)]
            + ([f"pool:{session.pool}"] if session.pool else []),
            "await_type": "bead",
            "await_id": submission_id,
            "timeout": int(ttl * 1e9),
            "waiters": [session.id],
            "dependencies": [
                {
                    "issue_id": "",
                    "depends_on_id": submission_id,
                    "type": "waits-for",
                    "created_at": now,
                }
            ],
            "metadata": {
                "session_id": session.id,
                "session_name": session.name,
                "kind": "deps",
                "state": "pending",
                "dep_ids": submission_id,
                "dep_mode": "all",
                "registered_epoch": str(session.epoch),
                "delivery_attempt": "1",
                "created_by_session": session.id,
                "created_at": now,
                "expires_at": at(ttl),
                "work": work_id,
                "submission": submission_id,
            },
        }
    )


def why(wait: Bead) -> str:
    """Why a wait ended: gc's `last_error`, or `reason` as waits written before it hold."""
    meta = wait.get("metadata", {})
    return meta.get("last_error") or meta.get("reason", "")


def _transition(
    tx: Transaction, wait: Bead, new_state: str, close_reason: str = "", **meta: str
) -> Bead:
    merged = {**wait.get("metadata", {}), "state": new_state, **meta}
    merged.pop("reason", None)  # the legacy key: `last_error` (gc's) says why
    fields: Bead = {"metadata": merged}
    if is_legacy(wait):  # any write gives a legacy wait our labels (gc stops driving it)
        fields["labels"] = our_labels(wait)
    if new_state in TERMINAL:
        fields.update({"status": "closed", "close_reason": close_reason or new_state})
    return tx.update(wait["id"], fields)


def make_ready(tx: Transaction, wait: Bead, verdict_id: str) -> Bead:
    return _transition(tx, wait, "ready", ready_at=beadmod.now(), verdict=verdict_id)


def cancel(tx: Transaction, wait: Bead, reason: str) -> Bead:
    """Canceled, with why in `last_error` (as gc's continuation-stale cancel writes it)."""
    return _transition(tx, wait, "canceled", reason, canceled_at=beadmod.now(), last_error=reason)


def expire(tx: Transaction, wait: Bead) -> Bead:
    return _transition(tx, wait, "expired", "expired", expired_at=beadmod.now())


def deliver(tx: Transaction, wait: Bead, to: str) -> Bead:
    """Closed on delivery: gc's `closed_at`, plus who took it (`delivered_to`, ours)."""
    now = beadmod.now()
    return _transition(
        tx, wait, "closed", "delivered", closed_at=now, delivered_at=now, delivered_to=to
    )


RETRY_CLEARS = (
    "ready_at", "delivered_at", "delivered_to", "closed_at", "canceled_at", "expired_at",
    "failed_at", "reason", "last_error", "nudge_id", "commit_boundary", "woken_by",
    "redelivered_at",
)  # fmt: skip


def retry(tx: Transaction, wait: Bead) -> Bead:
    """`wait ready` on a closed wait: a new wait, delivery_attempt + 1, registered at the
    session's current epoch (gc's `retryClosedWait`, cmd/gc/cmd_wait.go). gc's retry starts
    `ready`; ours does when the verdict is known (a re-delivery), else `pending`: our
    `ready` promises a verdict to hand over (docs/interop.md)."""
    from gc_polecat.lifecycle import session as sessions  # lazy: start-up

    meta = dict(wait.get("metadata", {}))
    attempt = beadmod.meta_int(wait, "delivery_attempt", 1) + 1
    for key in RETRY_CLEARS:
        meta.pop(key, None)
    now = beadmod.now()
    meta.update(
        {
            "state": "pending",
            "delivery_attempt": str(attempt),
            "retried_from_wait": wait["id"],
            "created_at": now,
        }
    )
    verdict = meta.get("verdict") or verdict_of(tx, meta.get("submission", ""))
    if verdict:
        meta.update({"state": "ready", "ready_at": now, "verdict": verdict})
    try:
        session = sessions.get(tx, meta.get("session_id", ""))
        meta["registered_epoch"] = str(session.epoch)
    except (BadInput, NotFound):
        pass  # no session bead to read an epoch from: the wait keeps the one it had
    fields = {
        k: v
        for k, v in wait.items()
        if k
        not in (
            "id",
            "status",
            "created_at",
            "updated_at",
            "closed_at",
            "close_reason",
            "dependencies",
            "created_by",
        )
    }
    fields["metadata"] = meta
    fields["labels"] = our_labels(wait)
    fields["dependencies"] = [{**d, "issue_id": ""} for d in wait.get("dependencies", [])]
    return tx.create(fields)


def verdict_of(tx: Transaction, submission_id: str) -> str:
    sub = tx.get(submission_id) if submission_id else None
    return (sub or {}).get("metadata", {}).get("verdict", "")


def expired(wait: Bead, now: dt.datetime | None = None) -> bool:
    expires = wait.get("metadata", {}).get("expires_at")
    if not expires:
        return False
    moment = dt.datetime.strptime(expires, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    return (now or dt.datetime.now(dt.UTC)) >= moment


# --- await ---------------------------------------------------------------------------------


def find_wait(
    store: Store, wait_id: str | None, work_id: str | None, session_id: str | None
) -> Bead:
    """The wait named, or the work's current wait, or the session's newest open wait."""
    if wait_id:
        found = store.get(wait_id)
        if not is_wait(found):
            raise BadInput(f"{wait_id} is not a wait")
        return found
    if work_id:
        work = store.get(work_id)
        wid = work.get("metadata", {}).get(keys.WAIT)
        if not wid:
            raise NotFound(f"{work_id} has no wait (was it submitted?)")
        return store.get(wid)
    if session_id:
        store.catalog.refresh()
        mine = list_waits(store.catalog, session_id=session_id, open_only=True)
        if mine:
            return mine[-1]
        raise NotFound(f"session {session_id} has no open wait")
    raise BadInput("await needs a WAIT, --work W, or GC_SESSION_ID")


def _payload(store: Store, wait: Bead, code: int, verdict: Bead | None) -> dict[str, Any]:
    return waitview.payload(store.get, wait, code, verdict)


def moved_on(store: Store, wait: Bead) -> bool:
    """See `waitview.moved_on`: the session read at HEAD."""
    return waitview.moved_on(store.get, wait)


def settled(store: Store, wait: Bead, epoch: int | None, me: str) -> AwaitResult | None:
    """The answer if the wait has one for this caller, else None (still pending); a `ready`
    wait's delivery to `me` is recorded first (the one write `await` makes)."""
    result = waitview.answer(store.get, wait, epoch)
    if result is None or not waitview.needs_delivery(wait, result):
        return result
    with store.transaction(f"{wait['id']}: delivered to {me}") as tx:
        current = tx.require(wait["id"])
        if state(current) == "ready":
            wait = deliver(tx, current, me)
    return AwaitResult(result.code, _payload(store, wait, result.code, result.payload["verdict"]))


def await_verdict(
    store: Store, wait: Bead, *, timeout: float | None, epoch: int | None, session_id: str | None
) -> AwaitResult:
    """Block until the wait settles; doorbell first, then read git, so no ring is lost."""
    from gc_polecat.lifecycle.doorbell import Doorbell  # lazy: start-up

    me = f"{session_id or 'pid'}:{os.getpid()}"
    if state(wait) == "pending":  # one that has settled writes at once: no wake path to warm
        store.warm_write_path()
    keys = [wait["id"]] + ([session_id] if session_id else [])
    deadline = None if timeout is None else time.monotonic() + timeout
    with Doorbell(store.state_dir / "wake", keys) as bell:
        while True:
            current = store.get(wait["id"])
            result = settled(store, current, epoch, me)
            if result is not None:
                return result
            if deadline is not None and time.monotonic() >= deadline:
                return AwaitResult(EXIT_PENDING, _payload(store, current, EXIT_PENDING, None))
            left = RECHECK if deadline is None else min(RECHECK, deadline - time.monotonic())
            bell.wait(max(left, 0.0))
