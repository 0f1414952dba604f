"""bd's verbs over beads: claim, comments, labels, close, search and ready, as domain rules.

The `bead ...` command adapters (`builtin/bead_commands.py`) parse flags and print; the rules
live here, each ported from the bd source file it names (gastownhall/beads), so that a bd
user's command line means the same thing on our store. Everything here works on plain bead
dicts and a store `Transaction`; nothing prints.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from gc_polecat.beads.bead import TYPE_ALIASES, Bead
from gc_polecat.errors import BadInput, InvalidBead

if TYPE_CHECKING:
    from gc_polecat.beads.store import Transaction

RESERVED_LABEL_PREFIX = "provides:"  # bd: cmd/bd/label.go, only `bd ship` adds these
HYBRID_WINDOW = _dt.timedelta(hours=48)  # bd: internal/storage/issueops/ready_work.go
COMMENT_KEYS = ("id", "issue_id", "author", "text", "created_at")  # bd: internal/types Comment
MAX_TEXT_FILE = 10 * 1024 * 1024


# --- times and small parsers -----------------------------------------------------------------


def instant(value: Any) -> _dt.datetime | None:
    """An RFC 3339 time (any precision or offset, as imports carry them) as an aware UTC
    datetime; None for anything else, so a malformed imported time never matches a range."""
    if isinstance(value, _dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=_dt.UTC)
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = _dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=_dt.UTC)


def parse_time_flag(text: str, flag: str) -> _dt.datetime:
    """bd's date filters (cmd/bd/list.go parseTimeFlag): YYYY-MM-DD or an RFC 3339 time."""
    parsed = instant(text)
    if parsed is None:
        raise BadInput(f"{flag}: {text!r} is not a date (YYYY-MM-DD) or an RFC 3339 time")
    return parsed


def parse_metadata_json(text: str, flag: str = "--metadata") -> dict[str, Any]:
    """bd's `--metadata` value (cmd/bd/create.go): a JSON object, or `@file.json`."""
    if text.startswith("@"):
        text = read_text_arg(text[1:], flag)
    try:
        value = json.loads(text)
    except ValueError as exc:
        hint = " (for KEY=VALUE use --set-metadata)" if "=" in text[:200] else ""
        raise BadInput(f"invalid JSON in {flag}: {exc}{hint}") from None
    if not isinstance(value, dict):
        raise BadInput(f"{flag} must be a JSON object, not {type(value).__name__}")
    return value


def read_text_arg(path: str, flag: str) -> str:
    """The text of a `--body-file`-style argument: `-` is stdin; at most 10 MiB."""
    try:
        if path == "-":
            data = sys.stdin.buffer.read(MAX_TEXT_FILE + 1)
        else:
            with open(path, "rb") as fh:
                data = fh.read(MAX_TEXT_FILE + 1)
    except OSError as exc:
        raise BadInput(f"{flag}: cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_TEXT_FILE:
        raise BadInput(f"{flag}: {path} is larger than {MAX_TEXT_FILE} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput(f"{flag}: {path} is not UTF-8 text") from None


def canonical_types(values: Iterable[str]) -> tuple[str, ...]:
    """Type names with bd's aliases expanded (`feat` is `feature`, `mr` is `merge-request`)."""
    return tuple(TYPE_ALIASES.get(v.lower(), v) for v in values)


# --- claim (bd: internal/storage/issueops/claim.go) ----------------------------------------


def claim(tx: Transaction, bead_id: str, actor: str) -> Bead:
    """Take an open bead: assignee = actor and status in_progress, in the caller's commit.

    bd's compare-and-swap: it succeeds only while the bead is `open` and unassigned (or
    assigned to the actor); claiming again what the actor already holds in progress is a
    no-op; anything else is refused naming the holder or the status. The store lock and the
    transaction's HEAD make the check and the write one step."""
    bead = tx.require(bead_id)
    holder, status = bead.get("assignee", ""), bead["status"]
    if holder == actor and status == "in_progress":
        return bead
    if holder and holder != actor:
        raise BadInput(f"{bead_id} is already claimed by {holder}")
    if status != "open":
        raise BadInput(f"{bead_id} cannot be claimed: its status is {status}")
    return tx.update(bead_id, {"assignee": actor, "status": "in_progress"})


# --- close (bd: cmd/bd/close.go) ------------------------------------------------------------


def close_beads(tx: Transaction, bead_ids: Iterable[str], reason: str | None) -> list[Bead]:
    """Close each bead in the caller's one commit. A bead that is already closed is left as it
    is (its first closed_at and close_reason are history; bd would stamp them again)."""
    closed = []
    for bead_id in dict.fromkeys(bead_ids):
        bead = tx.require(bead_id)
        closed.append(bead if bead["status"] == "closed" else tx.close(bead_id, reason))
    return closed


# --- labels (bd: cmd/bd/label.go) -----------------------------------------------------------


def change_label(tx: Transaction, bead_ids: Iterable[str], label: str, add: bool) -> list[dict]:
    """Add or remove one label on several beads in one commit; bd's JSON result rows."""
    label = label.strip()
    if not label:
        raise BadInput("label cannot be empty")
    if "," in label:
        raise BadInput(f"label {label!r} holds a comma; labels are comma-separated elsewhere")
    if add and label.startswith(RESERVED_LABEL_PREFIX):
        raise BadInput(f"'{RESERVED_LABEL_PREFIX}' labels are reserved (bd adds them with bd ship)")
    rows = []
    for bead_id in dict.fromkeys(bead_ids):
        labels = list(tx.require(bead_id).get("labels", []))
        if add and label not in labels:
            labels.append(label)
        elif not add:
            labels = [x for x in labels if x != label]
        tx.update(bead_id, {"labels": labels})
        rows.append({"status": "added" if add else "removed", "issue_id": bead_id, "label": label})
    return rows


# --- comments (bd: cmd/bd/comments.go, internal/storage/issueops/comments.go) --------------


def new_comment_id() -> str:
    """A UUIDv7 (RFC 9562), as bd gives each comment: time-ordered to the millisecond, so
    comments added in the same second (our `created_at` precision) still sort in order."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & (2**48 - 1)) << 80 | 0x7 << 76 | (rand >> 68 & 0xFFF) << 64
    value |= 0b10 << 62 | rand & (2**62 - 1)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def comments_of(bead: Bead) -> list[dict[str, Any]]:
    """A bead's comments in bd's JSON shape, oldest first. Comments imported from bd keep
    their values; an integer ID (bd before 1.0) reads as a string, as bd reads it."""
    raw = bead.get("comments") or []
    if not isinstance(raw, list):
        raise InvalidBead(f"bead {bead['id']}: comments must be a list")
    out = []
    for n, item in enumerate(raw):
        where = f"bead {bead['id']}: comments[{n}]"
        if not isinstance(item, dict):
            raise InvalidBead(f"{where} must be a mapping")
        cid = item.get("id", "")
        if isinstance(cid, int) and not isinstance(cid, bool):
            cid = str(cid)
        comment = {"id": cid, "issue_id": item.get("issue_id", bead["id"])}
        comment |= {k: item.get(k, "") for k in COMMENT_KEYS[2:]}
        for key, value in comment.items():
            if not isinstance(value, str):
                raise InvalidBead(f"{where}.{key} must be a string, not {type(value).__name__}")
        out.append(comment)
    return sorted(out, key=lambda c: (instant(c["created_at"]) or _EPOCH, c["id"]))


_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)


def add_comment(tx: Transaction, bead_id: str, author: str, text: str) -> dict[str, Any]:
    """Append a comment to the bead's `comments` list (bd's Comment shape) in the caller's
    commit; returns it as `bd comments add --json` prints it."""
    if not text.strip():
        raise BadInput("comment text cannot be empty")
    if not author:
        raise BadInput("the comment author cannot be empty")
    bead = tx.require(bead_id)
    kept = list(bead.get("comments") or [])
    comments_of(bead)  # refuses a malformed list before we add to it
    comment = {"id": new_comment_id(), "issue_id": bead_id, "author": author, "text": text,
               "created_at": tx.now}  # fmt: skip
    tx.update(bead_id, {"comments": [*kept, comment]})
    return comment


# --- filters (bd: cmd/bd/search.go, list.go, internal/storage/issueops/filters.go) ----------


def _meta_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _contains(haystack: Any, needle: str | None) -> bool:
    return needle is None or needle.lower() in _text(haystack).lower()


def _within(value: Any, after: _dt.datetime | None, before: _dt.datetime | None) -> bool:
    if after is None and before is None:
        return True
    at = instant(value)
    return at is not None and (after is None or at > after) and (before is None or at < before)


def parent_of(bead: Bead) -> str | None:
    return next(
        (d["depends_on_id"] for d in bead.get("dependencies", ()) if d["type"] == "parent-child"),
        None,
    )


@dataclass(frozen=True)
class Filter:
    """bd's IssueFilter as far as `bead list`, `search` and `ready` take it; every set field
    narrows the result."""

    statuses: tuple[str, ...] = ()
    include_closed: bool = False
    types: tuple[str, ...] = ()
    exclude_types: tuple[str, ...] = ()
    assignee: str | None = None
    no_assignee: bool = False
    labels: tuple[str, ...] = ()
    labels_any: tuple[str, ...] = ()
    exclude_labels: tuple[str, ...] = ()
    no_labels: bool = False
    priority: int | None = None
    priority_min: int | None = None
    priority_max: int | None = None
    title_contains: str | None = None
    desc_contains: str | None = None
    notes_contains: str | None = None
    external_contains: str | None = None
    empty_description: bool = False
    created: tuple[_dt.datetime | None, _dt.datetime | None] = (None, None)
    updated: tuple[_dt.datetime | None, _dt.datetime | None] = (None, None)
    closed: tuple[_dt.datetime | None, _dt.datetime | None] = (None, None)
    meta: tuple[tuple[str, str], ...] = ()
    has_meta_key: str | None = None
    ids: tuple[str, ...] = ()
    label_pattern: str | None = None
    spec_prefix: str | None = None
    parent: str | None = None
    no_parent: bool = False

    def matches(self, bead: Bead) -> bool:
        return all(check(self, bead) for check in _CHECKS)


def _by_status(f: Filter, b: Bead) -> bool:
    if f.statuses:
        return b["status"] in f.statuses
    return f.include_closed or b["status"] != "closed"


def _by_people(f: Filter, b: Bead) -> bool:
    assignee = b.get("assignee", "")
    if f.no_assignee:
        return not assignee
    return f.assignee is None or assignee == f.assignee


def _by_labels(f: Filter, b: Bead) -> bool:
    have = set(b.get("labels", ()))
    return (
        set(f.labels) <= have
        and (not f.labels_any or bool(have & set(f.labels_any)))
        and not have & set(f.exclude_labels)
        and (not f.no_labels or not have)
        and (f.label_pattern is None or any(fnmatchcase(x, f.label_pattern) for x in have))
    )


def _by_kind(f: Filter, b: Bead) -> bool:
    p = b["priority"]
    return (
        (not f.types or b["issue_type"] in f.types)
        and b["issue_type"] not in f.exclude_types
        and (f.priority is None or p == f.priority)
        and (f.priority_min is None or p >= f.priority_min)
        and (f.priority_max is None or p <= f.priority_max)
    )


def _by_text(f: Filter, b: Bead) -> bool:
    return (
        _contains(b["title"], f.title_contains)
        and _contains(b.get("description"), f.desc_contains)
        and _contains(b.get("notes"), f.notes_contains)
        and _contains(b.get("external_ref"), f.external_contains)
        and (f.spec_prefix is None or _text(b.get("spec_id")).startswith(f.spec_prefix))
        and (not f.empty_description or not _text(b.get("description")).strip())
    )


def _by_time(f: Filter, b: Bead) -> bool:
    return (
        _within(b.get("created_at"), *f.created)
        and _within(b.get("updated_at"), *f.updated)
        and _within(b.get("closed_at"), *f.closed)
    )


def _by_meta(f: Filter, b: Bead) -> bool:
    meta = b.get("metadata") or {}
    return all(k in meta and _meta_text(meta[k]) == v for k, v in f.meta) and (
        f.has_meta_key is None or f.has_meta_key in meta
    )


def _by_family(f: Filter, b: Bead) -> bool:
    parent = parent_of(b)
    return (
        (not f.ids or b["id"] in f.ids)
        and (f.parent is None or parent == f.parent)
        and (not f.no_parent or parent is None)
    )


_CHECKS: tuple[Callable[[Filter, Bead], bool], ...] = (
    _by_status, _by_people, _by_labels, _by_kind, _by_text, _by_time, _by_meta, _by_family,
)  # fmt: skip


def sort_beads(beads: list[Bead], field: str | None, reverse: bool = False) -> list[Bead]:
    """bd's `--sort` (cmd/bd/list.go sortIssues): priority ascending; created, updated and
    closed newest first (never closed last); text fields ascending; `--reverse` flips it."""
    if not field:
        return beads
    if field in ("created", "updated", "closed"):
        key = f"{field}_at"
        dated = [b for b in beads if instant(b.get(key))]
        dated.sort(key=lambda b: instant(b[key]), reverse=True)  # type: ignore[arg-type,return-value]
        ordered = dated + [b for b in beads if not instant(b.get(key))]
    else:
        getters: dict[str, Callable[[Bead], Any]] = {
            "priority": lambda b: b["priority"],
            "status": lambda b: b["status"],
            "id": lambda b: _natural(b["id"]),
            "title": lambda b: b["title"].lower(),
            "type": lambda b: b["issue_type"],
            "assignee": lambda b: b.get("assignee", ""),
        }
        ordered = sorted(beads, key=getters[field])
    return ordered[::-1] if reverse else ordered


def _natural(bead_id: str) -> list[Any]:
    """gc-2 before gc-10, as bd's NaturalCompareIDs orders IDs."""
    import re

    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", bead_id)]


# --- search (bd: cmd/bd/search.go, internal/storage/issueops/filters.go) -------------------


def looks_like_id(query: str) -> bool:
    """bd's LooksLikeIssueID: a dash inside, no spaces, only letters, digits, `-` and `.`."""
    dash = query.find("-")
    return 0 < dash < len(query) - 1 and all(
        c.isascii() and (c.isalnum() or c in "-.") for c in query
    )


def search(beads: Iterable[Bead], query: str, f: Filter) -> list[Bead]:
    """Beads whose title or ID holds the query (case-insensitive); an ID-like query also
    matches the external reference. bd's order: priority, newest first, then ID."""
    q = query.lower()
    idlike = looks_like_id(query)
    found = [
        b
        for b in beads
        if (q in b["title"].lower() or q in b["id"].lower()
            or (idlike and q in _text(b.get("external_ref")).lower()))
        and f.matches(b)
    ]  # fmt: skip
    found.sort(key=lambda b: b["id"])
    found.sort(key=lambda b: instant(b.get("created_at")) or _EPOCH, reverse=True)
    found.sort(key=lambda b: b["priority"])
    return found


# --- ready (bd: cmd/bd/ready.go, internal/storage/issueops/ready_work.go) ------------------


def _deferred(bead: Bead, now: _dt.datetime) -> bool:
    until = instant(bead.get("defer_until"))
    return until is not None and until > now


def ready(
    beads: list[Bead],
    f: Filter,
    sort: str = "priority",
    include_deferred: bool = False,
    include_ephemeral: bool = False,
    now: _dt.datetime | None = None,
    statuses: frozenset[str] = frozenset(("open",)),
) -> list[Bead]:
    """bd's ready work: beads in a ready status (`open`, and the custom statuses of category
    `active`: bead.ready_statuses, bd's ready_issues view), not pinned, not a wisp,
    not of a workflow or identity type (unless `--type` asks for one), not deferred into the
    future (nor a child of such a parent), and not blocked (execprovider.is_blocked: bd's
    blocking dependency types, and a parent that is itself blocked)."""
    from gc_polecat.interop.gc_exec import READY_EXCLUDED_TYPES, is_blocked  # lazy: start-up

    now = now or _dt.datetime.now(_dt.UTC)
    by_id = {b["id"]: b for b in beads}
    memo: dict[str, bool] = {}
    edges = {
        b["id"]: [(d["depends_on_id"], d["type"]) for d in b.get("dependencies", [])] for b in beads
    }
    status = {b["id"]: b["status"] for b in beads}
    excluded = () if f.types else READY_EXCLUDED_TYPES

    under = None if f.parent is None else descendants(by_id, f.parent)
    if f.parent is not None:
        f = replace(f, parent=None)

    def deferred(b: Bead) -> bool:
        parent = by_id.get(parent_of(b) or "")
        return _deferred(b, now) or (parent is not None and _deferred(parent, now))

    found = [
        b
        for b in beads
        if b["status"] in statuses
        and b.get("pinned") is not True
        and (include_ephemeral or not b.get("ephemeral"))
        and b["issue_type"] not in excluded
        and (include_deferred or not deferred(b))
        and (under is None or b["id"] in under)
        and f.matches(b)
        and not is_blocked(b["id"], edges, status, memo)
    ]
    return _ready_order(found, sort, now)


def descendants(by_id: dict[str, Bead], root: str) -> set[str]:
    """Every bead below `root` through parent-child dependencies (bd: GetDescendantIDsInTx)."""
    children: dict[str, list[str]] = {}
    for bead in by_id.values():
        parent = parent_of(bead)
        if parent is not None:
            children.setdefault(parent, []).append(bead["id"])
    found: set[str] = set()
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def _ready_order(beads: list[Bead], policy: str, now: _dt.datetime) -> list[Bead]:
    def created(b: Bead) -> _dt.datetime:
        return instant(b.get("created_at")) or _EPOCH

    beads = sorted(beads, key=lambda b: b["id"])
    if policy == "oldest":
        return sorted(beads, key=created)
    if policy == "hybrid":  # the last 48 hours by priority first, then the rest oldest first
        recent = lambda b: created(b) >= now - HYBRID_WINDOW  # noqa: E731
        return sorted(
            beads, key=lambda b: (not recent(b), b["priority"] if recent(b) else 999, created(b))
        )
    beads.sort(key=created, reverse=True)
    return sorted(beads, key=lambda b: b["priority"])
