"""Wakes the waiting session when a commit makes its wait ready: a plugin like any other.

The policy (doorbell, nudge, record, re-delivery) is `gc_polecat/lifecycle/wakeup.py`; this
adapter only subscribes it to every commit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gc_polecat.hookspecs import hookimpl

if TYPE_CHECKING:
    from gc_polecat.beads.store import CommitResult, Store


@hookimpl
def gc_polecat_bead_committed(store: Store, result: CommitResult) -> None:
    if not any(c.after is not None and c.after.get("issue_type") == "gate" for c in result.changes):
        return  # only a wait (a gate bead) is ever woken: most commits need no wake policy
    from gc_polecat.lifecycle.wakeup import on_commit  # lazy: start-up

    on_commit(store, result)
