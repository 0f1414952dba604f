"""The life of one work item, read back from git history: `gc-polecat timeline WORK`.

Everything the lifecycle does is a commit, and every bead it makes for a work item (its
submissions, waits, verdicts and cleanup finalizers) carries `metadata.work`. So the story is:

1. the commits that touch the work's file, and the beads they *add* that name the work;
2. every commit that touches any of those files, oldest first;
3. for each, what changed in each of those beads (before and after, read from git), turned
   into one event: slung, submitted, verdict, woken, delivered, fell back, resumed, cleaned up.

Cost grows with the work's own history, not the repository's: two path-limited `git log`s and
one `git cat-file --batch` for the bead versions.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gc_polecat.beads import bead as beadmod
from gc_polecat.beads import ids
from gc_polecat.errors import InvalidBead, NotFound
from gc_polecat.lifecycle import keys

Bead = dict[str, Any]


@dataclass
class Event:
    """One step of the story: when, which commit and author, what kind, and what happened."""

    at: dt.datetime
    commit: str
    author: str
    kind: str
    text: str
    bead: str
    details: dict[str, str] = field(default_factory=dict)

    def as_json(self, start: dt.datetime, previous: dt.datetime) -> dict[str, Any]:
        return {
            "at": self.at.isoformat().replace("+00:00", "Z"),
            "since_start": round((self.at - start).total_seconds(), 3),
            "since_previous": round((self.at - previous).total_seconds(), 3),
            "commit": self.commit,
            "author": self.author,
            "kind": self.kind,
            "bead": self.bead,
            "text": self.text,
            **({"details": self.details} if self.details else {}),
        }


def timeline(root: Path, work_id: str) -> list[Event]:
    """Every event of WORK's life, oldest first. NotFound if git never saw the work."""
    work_path = ids.id_path(work_id)
    history = _Git(root)
    related = {work_path: work_id}
    for commit, added in history.added_with(work_path):
        for path in added:
            bead = history.bead(commit, path)
            if bead and bead.get("metadata", {}).get("work") == work_id:
                related[path] = bead["id"]
    commits = history.commits_touching(list(related))
    if not commits:
        raise NotFound(f"no history for {work_id}: git never saw {work_path}")
    events: list[Event] = []
    for sha, when, author, paths in commits:  # git's order: each commit after its parent
        found = []
        for path in paths:
            if path in related:
                before, after = history.bead(f"{sha}^", path), history.bead(sha, path)
                for kind, text, details in describe(work_id, before, after):
                    found.append((kind, text, details, related[path]))
        found.sort(key=lambda f: _ORDER.get(f[0], 50))
        for kind, text, details, bead_id in found:
            # a bead's own time is finer than the commit's second, but never before the step
            # that came first
            at = _moment(details.pop("at", ""), when)
            at = max(at, events[-1].at) if events else at
            events.append(Event(at, sha, author, kind, text, bead_id, details))
    return events


# --- what a change means --------------------------------------------------------------------

_ORDER = {
    "created": 0,
    "queued": 1,
    "slung": 2,
    "resumed": 2,
    "submitted": 3,
    "verdict": 4,
    "woken": 5,
    "delivered": 6,
    "wait ended": 7,
    "fell back": 8,
    "closed": 9,
    "cleanup": 10,
}


def describe(work_id: str, before: Bead | None, after: Bead | None) -> list[tuple[str, str, Any]]:
    """The events one bead's change makes, as (kind, text, details); details may hold `at`,
    a finer moment than the commit's (bead times carry what precision they have)."""
    if after is None:
        return []
    labels = after.get("labels", [])
    if after["id"] == work_id:
        return _work_events(before, after)
    if "gc:submission" in labels and before is None:
        m = after.get("metadata", {})
        return [
            (
                "submitted",
                f"submitted attempt {m.get('attempt', '?')}: commit "
                f"{m.get('commit', '')[:12]} on {m.get('branch', '?')} as {after['id']} "
                f"(wait {m.get('wait', '?')})",
                {
                    "attempt": m.get("attempt", ""),
                    "commit": m.get("commit", ""),
                    "session": m.get("session", ""),
                    "at": after.get("created_at", ""),
                },
            )
        ]
    if "gc:verdict" in labels and before is None:
        return [_verdict_event(after)]
    if "polecat:wait" in labels or "gc:wait" in labels:
        return _wait_events(before, after)
    if "gc:cleanup" in labels:
        return _cleanup_events(before, after)
    return []


def _work_events(before: Bead | None, after: Bead) -> list[tuple[str, str, Any]]:
    m, was = after.get("metadata", {}), (before or {}).get("metadata", {})
    if before is None:
        return [
            (
                "created",
                f"created ({after.get('issue_type', 'task')}) '{after.get('title', '')}'",
                {"at": after.get("created_at", "")},
            )
        ]
    out: list[tuple[str, str, Any]] = []
    who, had = after.get("assignee", ""), before.get("assignee", "")
    if who and who != had:
        branch = m.get("branch", "")
        previous = m.get(keys.PREVIOUS_SESSION, "")
        if previous and previous != who and m.get(keys.FALLBACK_REASON):
            why = m.get(keys.FAILURE_TYPE) or m.get(keys.FALLBACK_REASON)
            out.append(
                (
                    "resumed",
                    f"resumed by session {who} (after {previous}: "
                    f"{m.get(keys.FALLBACK_REASON)}) from its {why} state on {branch}",
                    {"session": who, "previous_session": previous},
                )
            )
        else:
            out.append(("slung", f"slung to session {who} on {branch or '-'}", {"session": who}))
    elif had and not who and m.get(keys.FALLBACK_REASON) != was.get(keys.FALLBACK_REASON, ""):
        out.append(
            (
                "fell back",
                f"fell back to pool {m.get(keys.ROUTED_TO, '?')}: session "
                f"{had} {m.get(keys.FALLBACK_REASON)}",
                {"reason": m.get(keys.FALLBACK_REASON, ""), "session": had},
            )
        )
    elif not who and m.get(keys.ROUTED_TO) and m.get(keys.ROUTED_TO) != was.get(keys.ROUTED_TO):
        out.append(("queued", f"queued in pool {m[keys.ROUTED_TO]}", {}))
    if after.get("status") == "closed" and before.get("status") != "closed":
        out.append(
            (
                "closed",
                f"closed ({after.get('close_reason', '')})",
                {"at": after.get("closed_at", "")},
            )
        )
    return out


def _verdict_event(verdict: Bead) -> tuple[str, str, Any]:
    m = verdict.get("metadata", {})
    outcome = m.get("outcome", "?")
    kind = f" ({m['failure_type']})" if m.get("failure_type") else ""
    reason = f": {verdict['description']!r}" if verdict.get("description") else ""
    return (
        "verdict",
        f"verdict {outcome}{kind}{reason} on attempt {m.get('attempt', '?')} "
        f"by {m.get('refinery', '?')}, work routed to {m.get('routed', '?')}",
        {
            "outcome": outcome,
            "failure_type": m.get("failure_type", ""),
            "routed": m.get("routed", ""),
            "at": verdict.get("created_at", ""),
        },
    )


def _wait_events(before: Bead | None, after: Bead) -> list[tuple[str, str, Any]]:
    m, was = after.get("metadata", {}), (before or {}).get("metadata", {})
    ready = _parse(m.get("ready_at", ""))
    out: list[tuple[str, str, Any]] = []

    def late(stamp: str) -> str:
        moment = _parse(stamp)
        if ready is None or moment is None:
            return ""
        return f", {(moment - ready).total_seconds():.3g} s after the verdict"

    if m.get("woken_at") and m.get("woken_at") != was.get("woken_at"):
        out.append(
            (
                "woken",
                f"wait {after['id']} woken by {m.get('woken_by', '?')}{late(m['woken_at'])}",
                {"how": m.get("woken_by", ""), "at": m["woken_at"]},
            )
        )
    if m.get("delivered_at") and m.get("delivered_at") != was.get("delivered_at"):
        out.append(
            (
                "delivered",
                f"verdict delivered to {m.get('delivered_to', '?')}{late(m['delivered_at'])}",
                {"at": m["delivered_at"]},
            )
        )
    state = m.get("state", "")
    if state in ("canceled", "expired") and was.get("state") != state:
        why = m.get("last_error") or m.get("reason") or state  # `reason`: waits before last_error
        out.append(("wait ended", f"wait {after['id']} {state} ({why})", {"reason": why}))
    return out


def _cleanup_events(before: Bead | None, after: Bead) -> list[tuple[str, str, Any]]:
    m = after.get("metadata", {})
    if before is None:
        return [
            (
                "cleanup",
                f"cleanup {after['id']} pending ({m.get('reason', '')}) for {m.get('branch', '?')}",
                {"at": after.get("created_at", "")},
            )
        ]
    if after.get("status") == "closed" and before.get("status") != "closed":
        return [
            (
                "cleanup",
                f"cleaned up: sandbox synced to {m.get('target', '?')}, branch "
                f"deleted ({after.get('close_reason', '')})",
                {"at": after.get("closed_at", "")},
            )
        ]
    if m.get("last_error") and m.get("last_error") != (before.get("metadata") or {}).get(
        "last_error"
    ):
        return [("cleanup", f"cleanup failed: {m['last_error']}", {})]
    return []


def _parse(stamp: str) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        return None


def _moment(stamp: str, commit_time: dt.datetime) -> dt.datetime:
    """The bead's own time when it has one within the commit's second, else the commit's."""
    moment = _parse(stamp)
    if moment is None or abs((moment - commit_time).total_seconds()) >= 1.0:
        return commit_time
    return moment


# --- reading git ----------------------------------------------------------------------------


class _Git:
    """Path-limited history and bead versions, through real git (history is git's job)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._cat: subprocess.Popen[bytes] | None = None
        self._cache: dict[tuple[str, str], Bead | None] = {}

    def _log(self, *args: str) -> str:
        proc = subprocess.run(
            ["git", "-C", str(self.root), "log", "--no-renames", *args],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            return ""  # an empty repository has no history yet
        return proc.stdout

    def added_with(self, path: str) -> list[tuple[str, list[str]]]:
        """For each commit touching `path`: the files it added."""
        out = self._log("--full-diff", "--format=\x1e%H", "--name-status", "--", path)
        result = []
        for chunk in out.split("\x1e")[1:]:
            lines = chunk.strip().splitlines()
            added = [ln.split("\t", 1)[1] for ln in lines[1:] if ln.startswith("A\t")]
            result.append((lines[0], added))
        return result

    def commits_touching(self, paths: list[str]) -> list[tuple[str, dt.datetime, str, list[str]]]:
        out = self._log(
            "--reverse",
            "--topo-order",
            "--format=\x1e%H\x1f%at\x1f%an",
            "--name-only",
            "--",
            *paths,
        )
        commits = []
        for chunk in out.split("\x1e")[1:]:
            head, _, files = chunk.partition("\n")
            sha, at, author = head.split("\x1f", 2)
            when = dt.datetime.fromtimestamp(int(at), dt.UTC)
            commits.append((sha, when, author, [f for f in files.split("\n") if f]))
        return commits

    def bead(self, rev: str, path: str) -> Bead | None:
        """The bead at `rev:path`, None where it does not exist or cannot be read."""
        key = (rev, path)
        if key not in self._cache:
            data = self._blob(f"{rev}:{path}")
            try:
                self._cache[key] = beadmod.load(data, path) if data is not None else None
            except InvalidBead:
                self._cache[key] = None
        return self._cache[key]

    def _blob(self, spec: str) -> bytes | None:
        if self._cat is None:
            self._cat = subprocess.Popen(
                ["git", "-C", str(self.root), "cat-file", "--batch"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
        assert self._cat.stdin is not None and self._cat.stdout is not None
        self._cat.stdin.write(spec.encode() + b"\n")
        self._cat.stdin.flush()
        header = self._cat.stdout.readline().split()
        if len(header) != 3:
            return None  # "<spec> missing"
        data = self._cat.stdout.read(int(header[2]))
        self._cat.stdout.read(1)  # the newline after the object
        return data if header[1] == b"blob" else None

    def __del__(self) -> None:
        if self._cat is not None:
            self._cat.stdin.close()  # type: ignore[union-attr]
            self._cat.wait()


def summary(work_id: str, events: list[Event]) -> str:
    """One line over the whole story: where it ended, how long, how many attempts, sessions."""
    attempts = sum(e.kind == "submitted" for e in events)
    sessions = {e.details.get("session") for e in events if e.details.get("session")}
    last = [e for e in events if e.kind == "closed"]
    took = (events[-1].at - events[0].at).total_seconds()
    state = last[-1].text if last else "open"
    return (
        f"{work_id}: {state} after {_span(took)}, {attempts} attempt(s), {len(sessions)} session(s)"
    )


def _span(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.3g} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def lines(work_id: str, events: list[Event]) -> list[str]:
    """The human form: a summary, then `+T  (+gap)  kind  text  [author, commit]` per event."""
    out = [summary(work_id, events)]
    start = previous = events[0].at
    for e in events:
        since, gap = (e.at - start).total_seconds(), (e.at - previous).total_seconds()
        out.append(
            f"  +{since:>7.1f}s  (+{gap:>6.1f}s)  {e.kind:<10}  {e.text}  "
            f"[{e.author}, {e.commit[:8]}]"
        )
        previous = e.at
    return out
