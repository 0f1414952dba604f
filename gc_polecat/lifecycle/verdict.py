"""Verdicts: the refinery's side of the polecat/refinery handoff (submit.py is the polecat's),
one atomic commit.

`record_verdict` writes the verdict receipt (a `decision` bead, closed at birth), closes the
submission, readies the wait and routes the work (routing.route_after_verdict) in one commit,
so the work is never left judged but unrouted (gascity #3383).

Routing after a verdict (docs/lifecycle.md):
- merged: the work is closed; the waiter is told so it can clean up;
- fix needed, attempt below the cap, live waiter: the work stays with the same session;
- fix needed, attempt at the cap: the work escalates (status blocked, label gc:escalated);
- fix needed, no live waiter: the work returns to the session's pool with every resume field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gc_polecat.beads.bead import Bead, meta_int, metadata
from gc_polecat.beads.ids import check_sha
from gc_polecat.errors import BadInput, NotFound
from gc_polecat.lifecycle import cleanup, keys, routing
from gc_polecat.lifecycle import polecat as polecats
from gc_polecat.lifecycle import session as sessions
from gc_polecat.lifecycle import wait as waits
from gc_polecat.lifecycle.submit import SUBMISSION_LABEL, Submission

if TYPE_CHECKING:
    from gc_polecat.beads.store import Transaction
    from gc_polecat.lifecycle.providers import SessionProvider

VERDICT_LABEL = "gc:verdict"
OUTCOMES = ("merged", "fix_needed")
FAILURE_TYPES = ("conflict", "tests", "build", "review")
LOG_EXCERPT_BYTES = 4096


@dataclass(frozen=True)
class Verdict:
    """A verdict bead, the durable receipt of one judged submission."""

    id: str
    outcome: str  # merged | fix_needed
    failure_type: str
    submission: str
    work: str
    session: str
    attempt: int
    routed: str  # session | pool | closed | escalated
    merge_commit: str
    bead: Bead

    @classmethod
    def of(cls, bead: Bead) -> Verdict:
        if VERDICT_LABEL not in bead.get("labels", []):
            raise BadInput(f"{bead['id']} is not a verdict")
        meta = bead.get("metadata", {})
        return cls(
            id=bead["id"],
            attempt=meta_int(bead, "attempt", 1),
            bead=bead,
            **{
                name: meta.get(name, "")
                for name in ("outcome", "failure_type", "submission", "work", "session")
                + ("routed", "merge_commit")
            },
        )


@dataclass(frozen=True)
class Judged:
    verdict: Bead
    routed: str  # session | pool | closed | escalated
    noop: bool = False


def _excerpt(log: Path | None) -> str:
    if log is None:
        return ""
    try:
        with open(log, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - LOG_EXCERPT_BYTES))
            data = f.read()
    except OSError as exc:
        raise BadInput(f"cannot read --log {log}: {exc.strerror}") from None
    text = data.decode("utf-8", "replace")
    text = "".join(c if c.isprintable() or c in "\n\t" else "?" for c in text)
    return (
        f"[last {LOG_EXCERPT_BYTES} bytes of {size}]\n" if size > LOG_EXCERPT_BYTES else ""
    ) + text


def record_verdict(
    tx: Transaction,
    submission_id: str,
    outcome: str,
    *,
    providers: Mapping[str, SessionProvider],
    failure_type: str | None = None,
    reason: str = "",
    log: Path | None = None,
    commit: str | None = None,
    merge_commit: str | None = None,
    refinery: str = "",
    via: str = "",
) -> Judged:
    """The refinery's verdict on one submission attempt, with the work routed in the same commit
    (its message: `verdict_message`, naming `via`, the route the verdict came by, if given)."""
    if outcome not in OUTCOMES:
        raise BadInput(f"outcome must be one of {', '.join(OUTCOMES)}")
    if outcome == "fix_needed" and failure_type not in FAILURE_TYPES:
        raise BadInput(f"--fix-needed needs --type {'|'.join(FAILURE_TYPES)}")
    if outcome == "fix_needed" and not reason.strip():
        raise BadInput("--fix-needed needs --reason")
    for value, what in ((commit, "--commit"), (merge_commit, "--merge-commit")):
        if value is not None:
            check_sha(value, what)
    sub = tx.get(submission_id)
    if sub is None or SUBMISSION_LABEL not in sub.get("labels", []):
        raise NotFound(f"no submission {submission_id}")
    meta = metadata(sub)
    if commit is not None and not meta.get("commit", "").startswith(commit):
        raise BadInput(f"{submission_id} submitted commit {meta.get('commit')}, not {commit}")
    if sub["status"] == "closed":
        return _repeat(tx, sub, outcome, failure_type, merge_commit)
    work = tx.require(meta["work"])
    if metadata(work).get(keys.SUBMISSION) != submission_id:
        raise BadInput(
            f"{submission_id} is a superseded attempt of {work['id']} "
            f"(current: {metadata(work).get(keys.SUBMISSION) or 'none'})"
        )
    submission = Submission.of(sub)
    wait = tx.get(submission.wait) if submission.wait else None
    session = routing.find_session(tx, submission.session) if submission.session else None
    live = _live_waiter(wait, session, providers)
    attempt = meta_int(sub, "attempt", 1)
    cap = tx.store.config()["max_attempts"]
    if outcome == "merged":
        routed = "closed"
    elif attempt >= cap:
        routed = "escalated"
    else:
        routed = "session" if live else "pool"
    verdict = tx.create(
        {
            "title": f"verdict: {outcome} for {work['id']} attempt {attempt}",
            "issue_type": "decision",
            "status": "closed",
            "close_reason": outcome,
            "labels": [VERDICT_LABEL],
            "description": reason,
            "notes": _excerpt(log),
            "metadata": {
                k: v
                for k, v in {
                    "outcome": outcome,
                    "failure_type": failure_type or "",
                    "submission": submission_id,
                    "work": work["id"],
                    "session": meta.get("session", ""),
                    "attempt": str(attempt),
                    "commit": meta.get("commit", ""),
                    "target": meta.get("target", ""),
                    "branch": meta.get("branch", ""),
                    "merge_commit": merge_commit or "",
                    "refinery": refinery,
                    "routed": routed,
                    "wait": meta.get("wait", ""),
                }.items()
                if v
            },
        }
    )
    tx.update(
        submission_id,
        {
            "status": "closed",
            "close_reason": outcome,
            "metadata": {**meta, "verdict": verdict["id"]},
        },
    )
    routing.route_after_verdict(tx, work, sub, verdict, routed, reason, failure_type, merge_commit)
    _settle_wait_and_session(tx, wait, session, verdict, routed, live)
    tx.message = verdict_message(submission_id, outcome, failure_type, routed, via)
    _settle_polecat(tx, sub, routed)
    return Judged(verdict, routed)


def verdict_message(
    submission_id: str, outcome: str, failure_type: str | None, routed: str, via: str = ""
) -> str:
    """The commit message of a verdict, whoever recorded it."""
    failure = f" ({failure_type})" if failure_type else ""
    return f"{submission_id}: verdict {outcome}{failure}, work routed to {routed}" + (
        f" ({via})" if via else ""
    )


def _settle_polecat(tx: Transaction, sub: Bead, routed: str) -> None:
    """The submitting polecat's side of the verdict: back to work on a fix, or `done` with a
    cleanup finalizer when the work left it (merged, escalated, or gone to the pool)."""
    view = Submission.of(sub)
    session_id, work_id = view.session, view.work
    if routed == "session":
        session = tx.get(session_id)
        polecat = polecats.of_session(tx, session) if session else None
        if polecat is not None and polecat.work == work_id:
            polecats.update(tx, polecat, "working", bump=("fix_cycles",))
        return
    reason = {"closed": "merged", "escalated": "escalated", "pool": "released"}[routed]
    also = view.commit if routed == "closed" else ""
    cleanup.begin(tx, session_id, work_id, reason, also=also, wait=view.wait)


def _repeat(
    tx: Transaction, sub: Bead, outcome: str, failure_type: str | None, merge_commit: str | None
) -> Judged:
    """A verdict for a judged submission: the same one again is a no-op, another is refused."""
    found = Submission.of(sub).verdict
    bead = tx.get(found) if found else None
    if bead is None:
        why = sub.get("close_reason") or "closed"
        raise BadInput(f"{sub['id']} was {why} without a verdict; it cannot be judged")
    verdict = Verdict.of(bead)
    same = verdict.outcome == outcome and verdict.failure_type == (failure_type or "")
    if same and merge_commit and verdict.merge_commit not in ("", merge_commit):
        same = False
    if not same:
        raise BadInput(
            f"{sub['id']} was already judged {verdict.outcome}"
            f"{' (' + verdict.failure_type + ')' if verdict.failure_type else ''}"
            f" by {verdict.id}; a different verdict is refused"
        )
    return Judged(bead, verdict.routed, noop=True)


def _live_waiter(
    wait: Bead | None, session: sessions.Session | None, providers: Mapping[str, SessionProvider]
) -> bool:
    """A waiter that can take the work back: pending wait, same epoch, process alive."""
    if wait is None or session is None or not waits.is_wait(wait):
        return False  # a bead edited into something else at the wait's ID: nobody waits
    view = waits.Wait.of(wait)
    if view.state != "pending" or str(session.epoch) != view.registered_epoch:
        return False
    return sessions.is_alive(session, providers)


def _settle_wait_and_session(
    tx: Transaction,
    wait: Bead | None,
    session: sessions.Session | None,
    verdict: Bead,
    routed: str,
    live: bool,
) -> None:
    if wait is not None and waits.state(wait) == "pending":
        if live or routed in ("closed", "escalated"):
            waits.make_ready(tx, wait, verdict["id"])
        else:
            waits.cancel(tx, wait, "no-live-waiter")
    if session is not None and session.state == "awaiting_verdict" and live:
        sessions.set_state(tx, session, "active")
