"""Submitting: attempt N of a work item, one atomic commit.

`submit` records the attempt (a `merge-request` bead), the wait that pins the session to it (a
`gate` bead, see wait.py), the session's `awaiting_verdict` state and the work's resume
metadata (lifecycle/keys.py), all in one commit, and keeps the session's pool within its
`max_waiting` (routing.hold_to_cap). The refinery's answer is verdict.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gc_polecat.beads.bead import Bead, meta_int, metadata
from gc_polecat.beads.ids import check_ref, check_sha
from gc_polecat.errors import BadInput
from gc_polecat.lifecycle import keys, routing
from gc_polecat.lifecycle import polecat as polecats
from gc_polecat.lifecycle import session as sessions
from gc_polecat.lifecycle import wait as waits

if TYPE_CHECKING:
    from gc_polecat.beads.store import Transaction

SUBMISSION_LABEL = "gc:submission"


@dataclass(frozen=True)
class Submission:
    """A submission bead (one attempt at a work item), read as the fields the lifecycle needs."""

    id: str
    work: str
    session: str
    epoch: str
    attempt: int
    branch: str
    commit: str
    target: str
    worktree: str
    pool: str
    wait: str
    verdict: str
    bead: Bead

    @classmethod
    def of(cls, bead: Bead) -> Submission:
        if SUBMISSION_LABEL not in bead.get("labels", []):
            raise BadInput(f"{bead['id']} is not a submission")
        meta = bead.get("metadata", {})
        return cls(
            id=bead["id"],
            attempt=meta_int(bead, "attempt", 1),
            bead=bead,
            **{
                name: meta.get(name, "")
                for name in ("work", "session", "epoch", "branch", "commit", "target")
                + ("worktree", "pool", "wait", "verdict")
            },
        )

    @property
    def open(self) -> bool:
        return self.bead["status"] != "closed"


@dataclass(frozen=True)
class Submitted:
    submission: Bead
    wait: Bead
    attempt: int


def open_submission(tx: Transaction, work: Bead) -> Bead | None:
    """The work's current submission if it is still waiting for a verdict."""
    sid = metadata(work).get(keys.SUBMISSION)
    if not sid:
        return None
    sub = tx.get(sid)
    return sub if sub is not None and sub["status"] != "closed" else None


def submit(
    tx: Transaction,
    work_id: str,
    *,
    session_id: str | None,
    epoch: int | None,
    branch: str,
    commit: str,
    target: str,
    ttl: float,
    worktree: str,
    note: str = "",
) -> Submitted:
    """Attempt N+1 of `work_id` by the calling session; refused (exit 2) when the caller is not
    the assignee, its epoch is stale, or the work already has an open submission."""
    if session_id is None:
        raise BadInput("submit needs the calling session: set GC_SESSION_ID (or --session)")
    check_ref(branch, "branch")
    check_ref(target, "target")
    check_sha(commit, "--commit")
    session = sessions.get(tx, session_id)
    if session.state not in sessions.LIVE_STATES:
        raise BadInput(f"session {session.id} is {session.state}; it cannot submit")
    if epoch is not None and epoch != session.epoch:
        raise BadInput(
            f"stale epoch: the caller is epoch {epoch}, session {session.id} is at {session.epoch}"
        )
    work = tx.require(work_id)
    if work.get("assignee") != session.id:
        raise BadInput(
            f"{work_id} is assigned to {work.get('assignee') or 'nobody'}, "
            f"not to session {session.id}"
        )
    if work["status"] == "closed":
        raise BadInput(f"{work_id} is closed")
    pending = open_submission(tx, work)
    if pending is not None:
        raise BadInput(f"{work_id} already has an open submission {pending['id']}")
    meta = metadata(work)
    attempt = meta_int(work, keys.ATTEMPT, 0) + 1
    cap = tx.store.config()["max_attempts"]
    if attempt > cap:
        raise BadInput(
            f"{work_id} has used its {cap} attempts; it must be escalated, not resubmitted"
        )
    previous = tx.get(meta[keys.WAIT]) if meta.get(keys.WAIT) else None
    if (
        previous is not None
        and waits.state(previous) == "ready"
        and metadata(previous).get("session_id") == session.id
        and metadata(previous).get("registered_epoch") == str(session.epoch)
    ):  # the fix-needed verdict it answers reached it (a nudge) without an `await`
        waits.deliver(tx, previous, f"{session.id} (resubmitted)")
    sub = tx.create(
        {
            "title": f"Merge: {work_id} (attempt {attempt})",
            "issue_type": "merge-request",
            "labels": [SUBMISSION_LABEL],
            "metadata": {
                "work": work_id,
                "session": session.id,
                "epoch": str(session.epoch),
                "attempt": str(attempt),
                "branch": branch,
                "commit": commit,
                "target": target,
                "worktree": worktree,
                "pool": session.pool,
            },
        }
    )
    wait = waits.create(tx, session, sub["id"], work_id, ttl, note)
    sub = tx.update(sub["id"], {"metadata": {**metadata(sub), "wait": wait["id"]}})
    sessions.set_state(tx, session, "awaiting_verdict", work=work_id)
    polecat = polecats.of_session(tx, session.bead)
    if polecat is not None and polecat.work == work_id:
        polecats.update(tx, polecat, "awaiting_verdict", bump=("attempts",))
    meta.update(
        {
            keys.SUBMISSION: sub["id"],
            keys.WAIT: wait["id"],
            keys.ATTEMPT: str(attempt),
            keys.SESSION: session.id,
            "branch": branch,
            "target": target,
            "work_dir": worktree,
        }
    )
    deps = list(work.get("dependencies", []))
    deps.append(
        {
            "issue_id": work_id,
            "depends_on_id": sub["id"],
            "type": "blocks",
            "created_at": tx.now,
            "created_by": session.id,
        }
    )
    tx.update(work_id, {"status": "in_progress", "metadata": meta, "dependencies": deps})
    routing.hold_to_cap(tx, session.pool, wait)
    return Submitted(sub, wait, attempt)
