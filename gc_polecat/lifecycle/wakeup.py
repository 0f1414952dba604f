"""Waking the waiting session: the one place for wake-up policy.

The doorbell (`doorbell.py`) reaches an `await` blocked in the session at once. When no one is
listening (the agent sits idle at its prompt), the session is nudged through its provider (a
line typed into the tmux pane, or the process's inbox) and the nudge is recorded on the wait.
A ready wait nobody collected within `delivery_timeout` is re-delivered by the controller
(`redeliver_if_overdue`, lessons.md #9). The commit observer (builtin/wake_plugin.py) and the
controller both call this module.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from gc_polecat.beads import bead as beadmod
from gc_polecat.lifecycle.wait import ENDED, at, is_wait, moved_on, state

if TYPE_CHECKING:
    from gc_polecat.beads.bead import Bead
    from gc_polecat.beads.store import CommitResult, Store, Transaction


def ring_for(state_dir: os.PathLike[str], wait: Bead) -> int:
    """Wake whoever blocks on this wait or its session; returns how many listeners heard."""
    from gc_polecat.lifecycle.doorbell import ring  # lazy: start-up (a submit rings nobody)

    meta: Mapping[str, str] = wait.get("metadata", {})
    heard = ring(Path(state_dir) / "wake", wait["id"], "ready")
    if meta.get("session_id"):
        heard += ring(Path(state_dir) / "wake", meta["session_id"], wait["id"])
    return heard


def nudge_line(wait: Bead, outcome: str) -> str:
    """One printable line naming the work and the outcome, and what to run next."""
    meta = wait.get("metadata", {})
    said = {"merged": "merged", "fix_needed": "fix needed"}.get(outcome, outcome or "in")
    return (
        f"gc-polecat: refinery verdict on {meta.get('work', '?')}: {said} "
        f"(wait {wait['id']}); run: gc-polecat await {wait['id']}"
    )


def _outcome(store: Store, wait: Bead) -> str:
    verdict_id = wait.get("metadata", {}).get("verdict", "")
    try:
        return store.get(verdict_id).get("metadata", {}).get("outcome", "") if verdict_id else ""
    except Exception:  # noqa: BLE001 - the nudge still goes out without it
        return ""


def wake(store: Store, wait: Bead) -> str:
    """Ring, and nudge if nobody heard; returns how the session was reached."""
    if moved_on(store, wait):
        return "stale"  # an earlier incarnation's wait: its later one is never woken for it
    if ring_for(store.state_dir, wait):
        return "doorbell"
    from gc_polecat.lifecycle import session as sessions  # lazy: start-up (only for a nudge)
    from gc_polecat.lifecycle.providers import get_providers  # lazy: start-up

    sid = wait.get("metadata", {}).get("session_id", "")
    try:
        target = sessions.get(store, sid)
    except Exception:  # noqa: BLE001 - a missing session is the controller's to handle
        return "unreachable"
    if target.gc_owned:  # gc's runtime, not ours: its process hears the doorbell only
        return "unreachable"
    try:
        # through this machine's record of the session only: another machine's session is
        # re-delivered by its own controller, a registered one is never nudged, and the
        # bead's handle (untrusted) never names the process or the inbox (docs/security.md)
        line = nudge_line(wait, _outcome(store, wait))
        return (
            "nudge"
            if sessions.nudge(store, target, get_providers(store.pm), line)
            else ("unreachable")
        )
    except Exception:  # noqa: BLE001 - a failed nudge must not fail the write that fired it
        return "unreachable"


def record(store: Store, wait_id: str, how: str) -> None:
    with store.transaction(f"{wait_id}: woken by {how}") as tx:
        current = tx.require(wait_id)
        if state(current) != "ready":
            return
        meta = dict(current.get("metadata", {}))
        meta.update(
            {
                "woken_by": how,
                "woken_at": beadmod.now(),
                "wake_count": str(beadmod.meta_int(current, "wake_count", 0) + 1),
            }
        )
        tx.update(wait_id, {"metadata": meta})


def _overdue(meta: Mapping[str, str], timeout: float, now: dt.datetime) -> bool:
    last = meta.get("redelivered_at") or meta.get("ready_at")
    if not last:
        return True
    moment = dt.datetime.strptime(last, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    return (now - moment).total_seconds() >= timeout


def redeliver_if_overdue(
    tx: Transaction, wait: Bead, timeout: float, now: dt.datetime
) -> Bead | None:
    """A ready wait not collected within `timeout`: count the attempt and return the wait to
    `wake` once the transaction commits; None when it is not yet due."""
    meta = wait.get("metadata", {})
    if not _overdue(meta, timeout, now):
        return None
    attempt = beadmod.meta_int(wait, "delivery_attempt", 1) + 1
    return tx.update(
        wait["id"],
        {"metadata": {**meta, "delivery_attempt": str(attempt), "redelivered_at": at()}},
    )


def on_commit(store: Store, result: CommitResult) -> None:
    """The observer of every commit: ring for a wait that ended while pending (its `await`
    exits now), wake the session of a wait that became ready, and record a nudge."""

    for change in result.changes:
        after, before = change.after, change.before
        if after is None or not is_wait(after):
            continue
        if state(after) in ENDED and before is not None and state(before) == "pending":
            if not moved_on(store, after):  # a stale epoch is never rung (docs/security.md)
                ring_for(store.state_dir, after)  # its `await` exits 20 now, not at its re-read
            continue
        if state(after) != "ready":
            continue
        if before is not None and state(before) == "ready":
            continue  # already woken for this readiness
        how = wake(store, after)
        if how == "nudge":
            record(store, after["id"], how)
