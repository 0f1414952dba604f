"""Polecat identities: the long-lived half of a polecat (seed 001), one agent bead each.

A polecat has three lifecycles kept apart: the identity (this bead: a name in a pool and its
record of work), the sandbox (a git worktree kept between assignments, sandbox.py) and the
session (a session bead, ephemeral). The identity's `state` is the pool's view of it:

    idle -> working -> awaiting_verdict -> working (fix needed) | done (merged or released)
    done -> idle (cleanup verified) | retired (an ephemeral polecat, its sandbox removed)

`done` means the work has left the polecat and a cleanup finalizer (cleanup.py) is pending;
only `idle` polecats are given work. The record (`cv.*` counters and a ledger in `notes`)
survives every session and sandbox, as Gas Town's CV does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gc_polecat.beads.bead import Bead, meta_int
from gc_polecat.errors import BadInput

if TYPE_CHECKING:
    from gc_polecat.beads.locks import FileLock
    from gc_polecat.beads.store import Store, Transaction

POLECAT_LABEL = "gc:polecat"
STATES = ("idle", "working", "awaiting_verdict", "done", "retired")
BUSY_STATES = ("working", "awaiting_verdict", "done")
COUNTERS = ("completed", "attempts", "fix_cycles", "fallbacks")
LEDGER_LINES = 100  # the ledger keeps the newest entries; the counters keep the totals


@dataclass(frozen=True)
class Polecat:
    id: str
    name: str
    pool: str
    state: str
    ephemeral: bool
    sandbox: str
    work: str
    branch: str
    session: str
    bead: Bead

    @classmethod
    def of(cls, bead: Bead) -> Polecat:
        if bead.get("issue_type") != "agent" or POLECAT_LABEL not in bead.get("labels", []):
            raise BadInput(f"{bead['id']} is not a polecat")
        meta = bead.get("metadata", {})
        state = "retired" if bead["status"] == "closed" else meta.get("state", "idle")
        return cls(
            id=bead["id"],
            name=meta.get("name", ""),
            pool=meta.get("pool", ""),
            state=state,
            ephemeral=meta.get("ephemeral") == "1",
            sandbox=meta.get("sandbox", ""),
            work=meta.get("work", ""),
            branch=meta.get("branch", ""),
            session=meta.get("session", ""),
            bead=bead,
        )

    def count(self, counter: str) -> int:
        return meta_int(self.bead, f"cv.{counter}", 0)


def fields(name: str, pool: str, sandbox: str, *, ephemeral: bool) -> Bead:
    """A new identity, idle, with an empty record."""
    return {
        "title": f"polecat:{pool}/{name}",
        "issue_type": "agent",
        "labels": [POLECAT_LABEL, f"pool:{pool}"],
        "metadata": {
            "name": name,
            "pool": pool,
            "state": "idle",
            "sandbox": sandbox,
            "ephemeral": "1" if ephemeral else "0",
            **{f"cv.{c}": "0" for c in COUNTERS},
        },
    }


def of_pool(store: Store, pool: str, *, include_retired: bool = False) -> list[Polecat]:
    """The pool's polecats, oldest first (the catalog's order: priority, created_at, id)."""
    from gc_polecat.beads.catalog import Query  # lazy: start-up

    store.catalog.refresh()
    beads = store.catalog.list(
        Query(labels=(POLECAT_LABEL, f"pool:{pool}"), include_closed=include_retired)
    )
    return [Polecat.of(b) for b in beads]


def get(reader: Transaction | Store, polecat_id: str) -> Polecat | None:
    """The polecat, or None when the ID names nothing or something else."""
    from gc_polecat.errors import NotFound  # lazy: start-up

    try:
        bead = reader.require(polecat_id) if hasattr(reader, "require") else reader.get(polecat_id)
    except NotFound:
        return None
    if bead.get("issue_type") != "agent" or POLECAT_LABEL not in bead.get("labels", []):
        return None
    return Polecat.of(bead)


def update(
    tx: Transaction,
    polecat: Polecat,
    state: str | None = None,
    *,
    bump: tuple[str, ...] = (),
    ledger: str = "",
    **meta: str,
) -> Polecat:
    """Change the identity's state and fields; `bump` counts events on its record."""
    current = Polecat.of(tx.require(polecat.id))
    merged = dict(current.bead.get("metadata", {}))
    if state is not None:
        assert state in STATES, state
        merged["state"] = state
    merged.update(meta)
    for counter in bump:
        assert counter in COUNTERS, counter
        merged[f"cv.{counter}"] = str(current.count(counter) + 1)
    changes: Bead = {"metadata": merged}
    if ledger:
        lines = [*current.bead.get("notes", "").splitlines(), f"{tx.now} {ledger}"]
        changes["notes"] = "\n".join(lines[-LEDGER_LINES:])
    if state == "retired":
        changes.update({"status": "closed", "close_reason": "retired"})
    return Polecat.of(tx.update(polecat.id, changes))


def of_session(tx: Transaction, session_bead: Bead) -> Polecat | None:
    """The polecat a session belongs to (sessions started by the pool name it)."""
    polecat_id = session_bead.get("metadata", {}).get("polecat")
    return get(tx, polecat_id) if polecat_id else None


def env(polecat: Polecat) -> dict[str, str]:
    """What a polecat's session is told about its identity (beside GC_SESSION_ID & co)."""
    return {
        "GC_POLECAT_ID": polecat.id,
        "GC_POLECAT_NAME": polecat.name,
        "GC_POOL": polecat.pool,
        "GC_AGENT": f"{polecat.pool}/{polecat.name}",
    }


def sandbox_lock(store: Store, pool: str, name: str) -> FileLock:
    """One lock per sandbox: sling and cleanup never run git in the same worktree at once."""
    from gc_polecat.beads.locks import FileLock  # lazy: start-up

    locks = store.state_dir / "sandboxes"
    locks.mkdir(parents=True, exist_ok=True)
    return FileLock(locks / f"{pool.replace('/', '-')}--{name}.lock")
