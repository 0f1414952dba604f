"""A wait bead read, and the answer `await` gives for it, without writing anything.

The pure half of `lifecycle/wait.py`: what a wait's state is, whether a bead is a verdict wait,
and what `await` answers for a wait that has settled. Kept free of the store (dulwich,
filelock), click and dataclasses so that both the full `await` (through `wait.settled`, which
adds the one write: recording a `ready` wait's delivery) and the click-free `await` in
`gc_polecat/fast.py` decide through the same code. Beads are read through a `get(id)` the
caller gives: `Store.get` in the full command line (it raises NotFound or InvalidBead, as
`await` reports them), a catalog read in the fast path (which steps aside instead).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gc_polecat.beads.bead import meta_int
from gc_polecat.errors import BadInput, NotFound

if TYPE_CHECKING:
    from collections.abc import Callable

    from gc_polecat.beads.bead import Bead

    Reader = Callable[[str], Bead]

WAIT_LABEL = "polecat:wait"
SESSION_LABEL_PREFIX = "polecat:session:"
# the shape gc's own controller drives (internal/session/waits.go IsWaitBead): read, migrated
LEGACY_WAIT_LABEL = "gc:wait"
LEGACY_SESSION_LABEL_PREFIX = "session:"
STATES = ("pending", "ready", "closed", "canceled", "expired", "failed")
TERMINAL = ("closed", "canceled", "expired", "failed")  # gc: IsWaitTerminalState
ENDED = ("canceled", "expired", "failed")  # terminal without a verdict: `await` exits 20
# `await` exit statuses (PRODUCT.md)
EXIT_MERGED, EXIT_FIX_NEEDED, EXIT_ENDED, EXIT_PENDING = 0, 10, 20, 30
SESSION_BEAD_LABEL = "gc:session"  # as lifecycle/session.py SESSION_LABEL (gc's session beads)


def state(wait: Bead) -> str:
    return wait.get("metadata", {}).get("state", "pending")


def is_wait(bead: Bead) -> bool:
    """A verdict wait: ours, or ours in the legacy shape (gc's labels, and a `submission`,
    which gc's own waits, `gc session wait`, never have: those stay gc's)."""
    labels = bead.get("labels", [])
    return bead.get("issue_type") == "gate" and (
        WAIT_LABEL in labels
        or (LEGACY_WAIT_LABEL in labels and "submission" in bead.get("metadata", {}))
    )


class AwaitResult:
    """What `await` prints and exits with: the exit status and the JSON payload."""

    __slots__ = ("code", "payload")

    def __init__(self, code: int, payload: dict[str, Any]) -> None:
        self.code = code
        self.payload = payload

    def __repr__(self) -> str:
        return f"AwaitResult(code={self.code!r}, payload={self.payload!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AwaitResult):
            return NotImplemented
        return (self.code, self.payload) == (other.code, other.payload)

    __hash__ = None  # type: ignore[assignment]  # mutable, as the dataclass it replaces

    def summary(self) -> str:
        """The one line `await` prints: `gc-rb2: fix needed (tests): test_login fails`."""
        words = {0: "merged", 10: "fix needed", 20: "ended without a verdict", 30: "still pending"}
        line = f"{self.payload['wait']}: {words[self.code]}"
        if self.code == EXIT_FIX_NEEDED:
            verdict = self.payload.get("verdict") or {}
            kind = verdict.get("metadata", {}).get("failure_type")
            line += f" ({kind}): {verdict.get('description', '')}"
        return line


def payload(get: Reader, wait: Bead, code: int, verdict: Bead | None) -> dict[str, Any]:
    """`await --json`'s object: the wait, its state, the exit, the verdict and the work."""
    meta = wait.get("metadata", {})
    work = None
    if meta.get("work"):
        try:
            work = get(meta["work"])
        except NotFound:
            work = None
    outcome = verdict.get("metadata", {}).get("outcome") if verdict else None
    return {
        "wait": wait["id"],
        "state": state(wait),
        "exit": code,
        "outcome": outcome,
        "verdict": verdict,
        "work": work,
    }


def session_epoch(bead: Bead) -> int:
    """A session bead's `continuation_epoch` (as `session.Session.of` reads it); BadInput for
    a bead that is no session or holds a malformed epoch."""
    if bead.get("issue_type") != "session" or SESSION_BEAD_LABEL not in bead.get("labels", []):
        raise BadInput(f"{bead['id']} is not a session bead")
    return meta_int(bead, "continuation_epoch", 1)


def moved_on(get: Reader, wait: Bead) -> bool:
    """The waiting session's epoch is no longer the one that registered the wait: the wait
    belongs to an earlier incarnation, which must not be woken or handed the verdict."""
    meta = wait.get("metadata", {})
    if not meta.get("session_id"):
        return False
    try:
        epoch = session_epoch(get(meta["session_id"]))
    except BadInput:  # NotFound, or not a session bead: nothing to compare with
        return False
    return str(epoch) != meta.get("registered_epoch")


def answer(get: Reader, wait: Bead, epoch: int | None) -> AwaitResult | None:
    """`await`'s answer for this caller (its continuation epoch), None while pending. For a
    `ready` wait with a verdict this is the answer *before* the delivery is recorded: the
    caller (`wait.settled`) records it and builds the payload from the delivered wait."""
    meta = wait.get("metadata", {})
    st = state(wait)
    if st == "pending":
        return None
    if st in ENDED:
        return AwaitResult(EXIT_ENDED, payload(get, wait, EXIT_ENDED, None))
    if (epoch is not None and str(epoch) != meta.get("registered_epoch")) or moved_on(get, wait):
        # registered by an earlier incarnation: never delivered to a later one, nor to the
        # earlier one once the session's epoch has moved on (it may linger, not be gone)
        return AwaitResult(
            EXIT_ENDED, {**payload(get, wait, EXIT_ENDED, None), "reason": "continuation-stale"}
        )
    verdict = get(meta["verdict"]) if meta.get("verdict") else None
    if verdict is None:
        return AwaitResult(EXIT_ENDED, payload(get, wait, EXIT_ENDED, None))
    outcome = verdict["metadata"].get("outcome")
    code = EXIT_MERGED if outcome == "merged" else EXIT_FIX_NEEDED
    return AwaitResult(code, payload(get, wait, code, verdict))


def needs_delivery(wait: Bead, result: AwaitResult | None) -> bool:
    """The answer hands over a verdict of a `ready` wait: recording that is a write."""
    return result is not None and state(wait) == "ready" and result.payload["verdict"] is not None
