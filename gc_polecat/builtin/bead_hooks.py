"""Runs bd-compatible `.beads/hooks/on_*` after every commit, as a plugin like any other."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from gc_polecat.hookspecs import hookimpl

if TYPE_CHECKING:
    from gc_polecat.beads.store import CommitResult, Store


@hookimpl
def gc_polecat_bead_committed(store: Store, result: CommitResult) -> None:
    if not os.path.isdir(os.path.join(store.root, ".beads", "hooks")):
        return  # no hook can run (the runner looks only there): skip loading it
    from gc_polecat.interop import bd_hooks_out as beadhooks  # lazy: start-up

    events = [
        (c.id, c.event, c.after)
        for c in result.changes
        if c.event in beadhooks.HOOK_EVENTS and c.after is not None
    ]
    if events:
        beadhooks.fire(store.root, events, log_path=store.state_dir / "hooks.log")
