"""bd JSONL: export beads as lines `bd import` accepts; import bd's export as an upsert.

A bead file already holds bd's record under bd's key names, so a line is mostly the bead itself,
re-ordered the way bd's Go structs order their fields. What bd computes when it exports
(`dependency_count`, `dependent_count`, `parent`, and `comment_count` as far as we can) is derived
here from the dependencies of all beads on export and never stored on import, so it cannot go
stale. docs/formats.md ("bd JSONL") states every rule.

Import reads the whole input, validates every line (a bad one is an error naming its line
number), and writes the beads that differ from what is stored in ONE transaction: one commit, or
none at all when nothing differs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import bead as beadmod
from . import safejson
from .errors import BadInput, InvalidBead
from .ids import parse_id

if TYPE_CHECKING:
    from .store import Store

# Keys bd adds to each exported line (types.IssueWithCounts); recomputed on export, dropped on
# import (comment_count is the exception, see `_split_computed`).
COMPUTED_KEYS = ("dependency_count", "dependent_count", "comment_count", "parent")

# bd's field order (internal/types.Issue, union of recent versions). Keys we model and bd
# fields we keep verbatim all have their place; any other key follows them, sorted.
BD_KEY_ORDER = (
    "id", "title", "description", "design", "acceptance_criteria", "notes", "spec_id",
    "status", "priority", "issue_type", "assignee", "owner", "estimated_minutes",
    "created_at", "created_by", "updated_at", "started_at", "closed_at", "close_reason",
    "closed_by_session", "due_at", "defer_until", "external_ref", "source_system", "metadata",
    "compaction_level", "compacted_at", "compacted_at_commit", "original_size",
    "labels", "dependencies", "comments", "sender", "ephemeral", "no_history", "wisp_type",
    "pinned", "is_template", "bonded_from", "creator", "validations", "quality_score",
    "crystallizes", "await_type", "await_id", "timeout", "waiters", "holder",
    "source_formula", "source_location", "hook_bead", "role_bead", "agent_state",
    "last_activity", "role_type", "rig", "mol_type", "work_type", "event_kind", "actor",
    "target", "payload",
)  # fmt: skip
_BD_RANK = {key: n for n, key in enumerate(BD_KEY_ORDER)}
DEP_KEY_ORDER = ("issue_id", "depends_on_id", "type", "created_at", "created_by", "metadata")
COUNTED_DEP_TYPE = "blocks"  # bd's counts: `blocks` edges of its durable dependencies table
PARENT_DEP_TYPE = "parent-child"
SKIPPED_STATUS = "tombstone"  # bd import skips deleted rows
SCHEMA_KEY = "_schema"  # bd may start an export with a {"_schema": ...} header line

# Go's encoding/json escapes these inside strings by default (HTML safety); so do we, so that
# our lines read like bd's own.
_GO_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


# --- export ---------------------------------------------------------------------------------


def dependency_counts(beads: Iterable[beadmod.Bead]) -> Counter[str]:
    """How many beads depend on each ID, counted as bd counts `dependent_count`: `blocks`
    edges of non-ephemeral beads (a wisp's edges live in bd's separate wisp table)."""
    dependents: Counter[str] = Counter()
    for bead in beads:
        if bead.get("ephemeral"):
            continue
        for dep in bead.get("dependencies", ()):
            if dep["type"] == COUNTED_DEP_TYPE:
                dependents[dep["depends_on_id"]] += 1
    return dependents


def to_bd(bead: beadmod.Bead, dependent_count: int) -> dict[str, Any]:
    """One bead as bd's export record: bd's key order plus the computed keys."""
    record: dict[str, Any] = {}
    for key in sorted(
        (k for k in bead if k not in COMPUTED_KEYS),
        key=lambda k: (_BD_RANK.get(k, len(BD_KEY_ORDER)), k),
    ):
        value = bead[key]
        if key == "dependencies":
            value = [_dep_to_bd(dep) for dep in value]
        record[key] = value
    deps = bead.get("dependencies", ())
    record["dependency_count"] = (
        0 if bead.get("ephemeral") else sum(1 for d in deps if d["type"] == COUNTED_DEP_TYPE)
    )
    record["dependent_count"] = dependent_count
    comments = bead.get("comments")
    record["comment_count"] = (
        len(comments) if isinstance(comments, list) else _stored_comment_count(bead)
    )
    parent = next((d["depends_on_id"] for d in deps if d["type"] == PARENT_DEP_TYPE), None)
    if parent is not None:
        record["parent"] = parent
    return record


def _stored_comment_count(bead: beadmod.Bead) -> int:
    count = bead.get("comment_count", 0)
    return count if type(count) is int and count >= 0 else 0


def _dep_to_bd(dep: dict[str, Any]) -> dict[str, Any]:
    ordered = {key: dep[key] for key in DEP_KEY_ORDER if key in dep}
    ordered.update((key, value) for key, value in dep.items() if key not in ordered)
    return ordered


def export_records(beads: Iterable[beadmod.Bead]) -> list[dict[str, Any]]:
    """Every bead as a bd record, sorted by ID as `bd export` sorts."""
    beads = sorted(beads, key=lambda b: b["id"])
    dependents = dependency_counts(beads)
    return [to_bd(bead, dependents[bead["id"]]) for bead in beads]


def dumps_line(record: dict[str, Any]) -> str:
    """One compact JSON object, formatted as Go's json.Encoder writes it (no trailing newline)."""
    return safejson.dumps(record, ensure_ascii=False, separators=(",", ":")).translate(_GO_ESCAPES)


def export_text(beads: Iterable[beadmod.Bead]) -> str:
    """The whole JSONL document: one line per bead, each ending in a newline."""
    return "".join(dumps_line(record) + "\n" for record in export_records(beads))


def read_all(store: Store) -> list[beadmod.Bead]:
    """Every bead at HEAD (from the catalog); an unreadable bead file is bad input, so an export
    never silently leaves a bead out."""
    from .catalog import Query

    catalog = store.catalog
    catalog.refresh()
    bad = catalog.bad_files()
    if bad:
        path, error = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise InvalidBead(f"cannot export: unreadable bead file {path}{more}: {error}")
    return catalog.list(Query(include_closed=True))


# --- import ---------------------------------------------------------------------------------


@dataclass
class ImportResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: int = 0
    skipped: int = 0  # _schema header lines and tombstones
    commit: str | None = None

    def as_json(self, source: str) -> dict[str, Any]:
        return {
            "source": source,
            "created": len(self.created),
            "updated": len(self.updated),
            "unchanged": self.unchanged,
            "skipped": self.skipped,
            "commit": self.commit,
        }


@dataclass(frozen=True)
class Line:
    number: int
    record: dict[str, Any]


def parse(data: bytes, source: str) -> tuple[list[Line], int]:
    """The records of a JSONL document with their line numbers, and how many lines were skipped
    (a `_schema` header, tombstones). Blank lines are ignored. Any malformed line is BadInput
    naming `source` and the line number."""
    lines: list[Line] = []
    skipped = 0
    data = data.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte order mark, as editors may write
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        where = f"{source} line {number}"
        record = safejson.loads(raw, where)  # depth, number and NaN limits: docs/formats.md
        if not isinstance(record, dict):
            raise BadInput(f"{where}: expected a JSON object, not {_json_type(record)}")
        if SCHEMA_KEY in record or record.get("status") == SKIPPED_STATUS:
            skipped += 1
            continue
        lines.append(Line(number, record))
    return lines, skipped


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    return "a boolean" if isinstance(value, bool) else "a number"


def _split_computed(record: dict[str, Any], where: str) -> dict[str, Any]:
    """The record without bd's computed keys (checked for type, then dropped). comment_count
    counts bd's comments, which its export does not carry: a non-zero count is kept verbatim
    unless the record carries the comments themselves."""
    out = dict(record)
    for key in ("dependency_count", "dependent_count", "comment_count"):
        value = out.get(key)
        if value is not None and (type(value) is not int or value < 0):
            raise BadInput(f"{where}: {key} must be a whole number >= 0, not {value!r}")
    parent = out.get("parent")
    if parent is not None and not isinstance(parent, str):
        raise BadInput(f"{where}: parent must be a string, not {parent!r}")
    if "comments" in out and out["comments"] is not None and not isinstance(out["comments"], list):
        raise BadInput(f"{where}: comments must be an array")
    for key in ("dependency_count", "dependent_count", "parent"):
        out.pop(key, None)
    if not out.get("comment_count") or isinstance(out.get("comments"), list):
        out.pop("comment_count", None)
    return out


def _describe(before: beadmod.Bead | None, after: beadmod.Bead) -> str:
    if before is None:
        return f"{after['id']}: created ({after['issue_type']})"
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    return f"{after['id']}: replaced ({', '.join(changed)} changed)"


def import_lines(store: Store, lines: list[Line], skipped: int, source: str) -> ImportResult:
    """Upsert the parsed records in one transaction: new IDs are created, beads that differ are
    replaced by bd's record, equal ones are left alone. Nothing changes: no commit."""
    result = ImportResult(skipped=skipped)
    body: list[str] = []
    # A catalog at HEAD lets the transaction read stored beads without parsing YAML, and lets
    # the commit feed its changes straight in, so the next reader needs no catch-up either.
    store.catalog.refresh()
    with store.transaction() as tx:
        final: dict[str, tuple[beadmod.Bead, beadmod.Bead | None]] = {}
        for line in lines:
            where = f"{source} line {line.number}"
            record = _split_computed(line.record, where)
            try:
                parse_id(record.get("id"))
            except BadInput as exc:
                raise BadInput(f"{where}: {exc}") from None
            bid = record["id"]
            try:
                existing = tx.get(bid)
            except InvalidBead as exc:
                raise BadInput(f"{where}: the stored bead cannot be read: {exc}") from None
            try:
                clean = _with_timestamps(record, existing, tx.now)
            except InvalidBead as exc:
                raise BadInput(f"{where}: {exc}") from None
            final[bid] = (clean, existing)  # a later line for the same ID wins, as in bd
        for bid, (clean, existing) in final.items():
            if clean == existing:
                result.unchanged += 1
                continue
            tx.put(clean)
            (result.created if existing is None else result.updated).append(bid)
            body.append(_describe(existing, clean))
        if body:
            tx.message = (
                f"import: {len(body)} beads from {source} "
                f"({len(result.created)} created, {len(result.updated)} updated)\n\n"
                + "\n".join(body)
            )
    if tx.result is not None:
        result.commit = tx.result.commit
    return result


def _with_timestamps(
    record: dict[str, Any], existing: beadmod.Bead | None, now: str
) -> beadmod.Bead:
    """Normalize a record; bd import needs neither timestamp, so a missing `created_at` keeps the
    stored one (else now) and a missing `updated_at` keeps the stored one unless the content
    changes. Importing the same lines again therefore changes nothing."""
    record = dict(record)
    if record.get("created_at") in (None, ""):
        record["created_at"] = existing["created_at"] if existing else now
    if record.get("updated_at") not in (None, ""):
        return beadmod.normalize(record)
    record["updated_at"] = existing["updated_at"] if existing else record["created_at"]
    clean = beadmod.normalize(record)
    if existing is not None and clean != existing:
        clean["updated_at"] = now
    return clean


def import_jsonl(store: Store, data: bytes, source: str) -> ImportResult:
    lines, skipped = parse(data, source)
    return import_lines(store, lines, skipped, source)
