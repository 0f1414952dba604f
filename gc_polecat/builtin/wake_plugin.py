"""Wakes the waiting session when a commit makes its wait ready: a plugin like any other.

The doorbell reaches an `await` blocked in the session at once. When no one is listening (the
agent sits idle at its prompt), the session is nudged through its provider (a line typed into
the tmux pane, or the process's inbox) and the nudge is recorded on the wait. Missed wakes are
the controller's job: it re-delivers ready waits that nobody collected (lessons.md #9).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..hookspecs import hookimpl

if TYPE_CHECKING:
    from ..bead import Bead
    from ..store import CommitResult, Store


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
    from ..wait import moved_on, ring_for

    if moved_on(store, wait):
        return "stale"  # an earlier incarnation's wait: its later one is never woken for it
    if ring_for(store.state_dir, wait):
        return "doorbell"
    from .. import session as sessions  # lazy: start-up
    from ..providers import get_providers  # lazy: start-up

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
    from .. import bead as beadmod
    from ..wait import state

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


@hookimpl
def gc_polecat_bead_committed(store: Store, result: CommitResult) -> None:
    from ..wait import ENDED, is_wait, moved_on, ring_for, state

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
