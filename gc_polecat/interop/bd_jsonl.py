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

from gc_polecat.beads import bead as beadmod
from gc_polecat.beads import safejson
from gc_polecat.beads.ids import MEMORIES_PATH, parse_id
from gc_polecat.errors import BadInput, InvalidBead

if TYPE_CHECKING:
    from collections.abc import Callable

    from gc_polecat.beads.store import Store, Transaction

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
DEP_KEY_ORDER = (
    "issue_id", "depends_on_id", "type", "created_at", "created_by", "metadata", "thread_id",
)  # fmt: skip
COUNTED_DEP_TYPE = "blocks"  # bd's counts: `blocks` edges of its durable dependencies table
PARENT_DEP_TYPE = "parent-child"
SKIPPED_STATUS = "tombstone"  # bd import skips deleted rows
SCHEMA_KEY = "_schema"  # bd may start an export with a {"_schema": ...} header line
TYPE_TAG = "_type"  # bd tags lines "issue" or "memory" (bd: `cmd/bd/export.go`); never stored
MEMORY_TAG = "memory"
MEMORY_PATH = MEMORIES_PATH  # bd's memories (`bd remember`), one line each as bd exports them
WISP_KEY = "wisp"  # bd v0.35-v0.37's name for `ephemeral` (bd: `cmd/bd/import_shared.go`)

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


def export_text(beads: Iterable[beadmod.Bead], memories: dict[str, str] | None = None) -> str:
    """The whole JSONL document: one line per bead, then one per memory sorted by key (as
    `bd export` writes them), each ending in a newline."""
    lines = [dumps_line(record) for record in export_records(beads)]
    lines += [memory_line(key, value) for key, value in sorted((memories or {}).items())]
    return "".join(line + "\n" for line in lines)


def read_all(store: Store) -> list[beadmod.Bead]:
    """Every bead at HEAD (from the catalog); an unreadable bead file is bad input, so an export
    never silently leaves a bead out."""
    from gc_polecat.beads.catalog import Query  # lazy: start-up

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
    memories: int = 0  # memory lines that set or changed a memory
    custom: dict[str, list[str]] = field(default_factory=dict)  # types/statuses bd must know
    commit: str | None = None

    def as_json(self, source: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "source": source,
            "created": len(self.created),
            "updated": len(self.updated),
            "unchanged": self.unchanged,
            "skipped": self.skipped,
        }
        if self.memories:
            out["memories"] = self.memories
        out.update(self.custom)
        out["commit"] = self.commit
        return out


@dataclass(frozen=True)
class Line:
    number: int
    record: dict[str, Any]


@dataclass
class Parsed:
    """A JSONL document: its bead records, its memories (key -> value) and skipped lines."""

    lines: list[Line] = field(default_factory=list)
    memories: dict[str, str] = field(default_factory=dict)
    skipped: int = 0


def decode_line(raw: bytes, where: str) -> dict[str, Any]:
    """One line as a JSON object; BadInput naming `where` for anything else (safejson: depth,
    number, NaN and surrogate limits, docs/formats.md)."""
    record = safejson.loads(raw, where)
    if not isinstance(record, dict):
        raise BadInput(f"{where}: expected a JSON object, not {_json_type(record)}")
    return record


def parse(data: bytes, source: str) -> Parsed:
    """The records of a JSONL document with their line numbers, its memory lines, and how many
    lines were skipped (a `_schema` header, tombstones). Blank lines are ignored. Any malformed
    line is BadInput naming `source` and the line number. The line rules are bd's
    (bd: `cmd/bd/import.go`, runImportFromReader; `cmd/bd/import_shared.go`, parseJSONLFile)."""
    parsed = Parsed()
    data = data.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte order mark, as editors may write
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        where = f"{source} line {number}"
        record = decode_line(raw, where)
        tag = record.pop(TYPE_TAG, None)
        if tag == MEMORY_TAG:
            _add_memory(parsed.memories, record, where)
            continue
        if SCHEMA_KEY in record or record.get("status") == SKIPPED_STATUS:
            parsed.skipped += 1
            continue
        parsed.lines.append(Line(number, record))
    return parsed


def _add_memory(memories: dict[str, str], record: dict[str, Any], where: str) -> None:
    """A `{"_type":"memory","key":K,"value":V}` line: bd keeps it as a memory (`bd remember`)
    unless key or value is empty; a later line for the same key wins."""
    key, value = record.get("key", ""), record.get("value", "")
    if not isinstance(key, str) or not isinstance(value, str):
        raise BadInput(f"{where}: a memory's key and value must be strings")
    if key and value:
        memories[key] = value


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


def as_bd_reads_it(record: dict[str, Any]) -> dict[str, Any]:
    """The record as bd's import reads it, before validation: `wisp: true` is `ephemeral`
    (bd: `cmd/bd/import_shared.go`), a missing or null `priority` is Go's zero value 0, not
    our default 2 (bd: `internal/types/types.go`, SetDefaults), dependencies without a target
    are dropped (bd: `internal/storage/issueops/create.go`, PersistDependencies skips targets
    that do not exist), and a closed issue without `closed_at` is closed one second after its
    last timestamp (bd: `internal/storage/issueops/create.go`, PrepareIssueForInsert)."""
    if record.pop(WISP_KEY, None) is True and not record.get("ephemeral"):
        record["ephemeral"] = True
    if record.get("priority") is None:
        record["priority"] = 0
    deps = record.get("dependencies")
    if isinstance(deps, list):
        kept = [d for d in deps if not (isinstance(d, dict) and not d.get("depends_on_id"))]
        for dep in kept:
            if isinstance(dep, dict) and dep.get("created_at") in (None, ""):
                dep["created_at"] = record.get("created_at")  # bd: now; ours repeats
        record["dependencies"] = kept
    if record.get("status") == "closed" and record.get("closed_at") in (None, ""):
        record["closed_at"] = _one_second_after(record)
    return record


def _one_second_after(record: dict[str, Any]) -> str | None:
    """max(created_at, updated_at) + 1 s, or None when either is not a time (normalize says so)."""
    try:
        moments = [beadmod.parse_time(record[k]) for k in ("created_at", "updated_at")]
    except (KeyError, TypeError, ValueError, OverflowError):
        return None
    import datetime as dt

    later = max(moments) + dt.timedelta(seconds=1)
    return later.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _describe(before: beadmod.Bead | None, after: beadmod.Bead) -> str:
    if before is None:
        return f"{after['id']}: created ({after['issue_type']})"
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    return f"{after['id']}: replaced ({', '.join(changed)} changed)"


def import_lines(store: Store, parsed: Parsed, source: str) -> ImportResult:
    """Upsert the parsed records (and memories) in one transaction: new IDs are created, beads
    that differ are replaced by bd's record, equal ones are left alone. Nothing changes: no
    commit."""
    result = ImportResult(skipped=parsed.skipped)
    body: list[str] = []
    # A catalog at HEAD lets the transaction read stored beads without parsing YAML, and lets
    # the commit feed its changes straight in, so the next reader needs no catch-up either.
    store.catalog.refresh()
    with store.transaction() as tx:
        stored = _stored_reader(store, tx, parsed)
        final: dict[str, tuple[beadmod.Bead, beadmod.Bead | None]] = {}
        for line in parsed.lines:
            where = f"{source} line {line.number}"
            record = as_bd_reads_it(_split_computed(line.record, where))
            try:
                parse_id(record.get("id"))
            except BadInput as exc:
                raise BadInput(f"{where}: {exc}") from None
            bid = record["id"]
            try:
                existing = stored(bid)
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
            line = _describe(existing, clean)
            tx.put(clean, line, normalized=True, stored=existing)  # read above: not again
            (result.created if existing is None else result.updated).append(bid)
            body.append(line)
        result.memories = _stage_memories(tx, parsed.memories)
        result.custom = custom_vocabulary(clean for clean, _ in final.values())
        if body or result.memories:
            tx.message = (
                f"import: {len(body)} beads from {source} "
                f"({len(result.created)} created, {len(result.updated)} updated"
                + (f", {result.memories} memories" if result.memories else "")
                + ")\n\n"
                + "\n".join(body)
            )
    if tx.result is not None:
        result.commit = tx.result.commit
    return result


def _stored_reader(
    store: Store, tx: Transaction, parsed: Parsed
) -> Callable[[str], beadmod.Bead | None]:
    """How to read a stored bead: from the catalog when it holds exactly the transaction's base
    and no unreadable file (no git tree walk; every record's ID in a few queries, not one
    each), else through the transaction (which reports an unreadable file as InvalidBead)."""
    catalog = store.catalog
    base = tx.base.decode() if tx.base else None
    if catalog.commit() == base and not catalog.bad_files():
        wanted = (line.record.get("id") for line in parsed.lines)
        return catalog.get_many(bid for bid in wanted if isinstance(bid, str)).get
    return tx.get


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
    return import_lines(store, parse(data, source), source)


# --- memories and the custom vocabulary -----------------------------------------------------


def memory_line(key: str, value: str) -> str:
    """A memory as bd exports it (bd: `cmd/bd/export.go`): Go sorts a map's keys."""
    return dumps_line({TYPE_TAG: MEMORY_TAG, "key": key, "value": value})


def read_memories(store: Store, tree: bytes | None = None) -> dict[str, str]:
    """The memories kept in `beads/memories.jsonl` (key -> value); none when it is absent."""
    tree = store.head_tree() if tree is None else tree
    entry = store.git.lookup(tree, MEMORY_PATH) if tree is not None else None
    if entry is None:
        return {}
    parsed = parse(store.git.blob(entry[1]), MEMORY_PATH)
    if parsed.lines:
        raise InvalidBead(f"{MEMORY_PATH} line {parsed.lines[0].number}: not a memory line")
    return parsed.memories


def _stage_memories(tx: Transaction, incoming: dict[str, str]) -> int:
    """Merge imported memories into the side file (bd upserts each key); how many changed."""
    if not incoming:
        return 0
    stored = read_memories(tx.store, tx.base_tree)
    changed = sum(1 for key, value in incoming.items() if stored.get(key) != value)
    if changed:
        merged = stored | incoming
        text = "".join(memory_line(key, merged[key]) + "\n" for key in sorted(merged))
        tx.write_file(MEMORY_PATH, text.encode("utf-8"))
    return changed


def custom_vocabulary(beads: Iterable[beadmod.Bead]) -> dict[str, list[str]]:
    """The statuses and types outside bd's built-in lists, which bd accepts only once they are
    configured (`status.custom`, `types.custom`; bd: `internal/types/types.go`,
    ValidateWithCustom): {"custom_types": [...], "custom_statuses": [...]}, empty ones left out."""
    types_: set[str] = set()
    statuses: set[str] = set()
    for bead in beads:
        if bead["issue_type"] not in beadmod.BUILTIN_TYPES:
            types_.add(bead["issue_type"])
        if bead["status"] not in beadmod.STATUSES:
            statuses.add(bead["status"])
    out = {}
    if types_:
        out["custom_types"] = sorted(types_)
    if statuses:
        out["custom_statuses"] = sorted(statuses)
    return out
