"""Gas City's exec beads provider protocol, answered from the git-backed store.

Gas City (`gc`) selects it with `GC_BEADS=exec:<script>` (or `[beads] provider = "exec:..."` in
`city.toml`) and runs `<script> <op> [args]` with JSON on stdin and stdout and a 30 s limit.
`gc-polecat exec-beads <op> [args]` is that script (the pack ships a two-line wrapper,
`pack/scripts/gc-beads-polecat`).

The contract, from gc's side:

- exit 0: success; 1: failure, one line on stderr, and a message containing "not found" means
  the bead does not exist; 2: unknown operation, which gc treats as success (so no failure may
  ever exit 2 here: bad input and internal errors exit 1 too).
- wire keys: `type` (ours: `issue_type`), `parent_id` (ours: a `parent-child` dependency).
- statuses: gc knows `open`, `in_progress`, `closed`; ours map onto them (`STATUS_TO_WIRE`).
- lists are `[]`, never `null`; every mutating operation is one commit, or none at all when it
  changes nothing or fails.

See docs/commands.md, "Gas City exec beads provider", for every operation.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import ids, safejson
from .bead import DEP_TYPE_RE, STATUSES, TYPES, Bead
from .errors import GcPolecatError, NotFound

if TYPE_CHECKING:
    from .cli import AppContext
    from .store import Store

EXIT_OK, EXIT_FAILED, EXIT_UNKNOWN_OP = 0, 1, 2

WIRE_STATUSES = ("open", "in_progress", "closed")
STATUS_TO_WIRE = {
    "open": "open",
    "in_progress": "in_progress",
    "closed": "closed",
    "blocked": "open",  # still a commitment; gc derives blocking from dependencies
    "deferred": "open",  # open, but never in `ready`
    "pinned": "open",  # a standing bead that is never done; never in `ready`
    "hooked": "in_progress",  # on an agent's hook: being worked
}
# What a gc status filter (`list --status=`) matches among our statuses.
WIRE_TO_STATUSES = {
    wire: tuple(s for s in STATUSES if STATUS_TO_WIRE[s] == wire) for wire in WIRE_STATUSES
}
# The types `ready` never lists (the reference's list: bd's, plus session beads).
READY_EXCLUDED_TYPES = (
    "gate", "merge-request", "molecule", "message", "session", "agent", "role", "rig",
)  # fmt: skip
HARD_BLOCKING_DEP_TYPES = ("blocks", "conditional-blocks", "waits-for")
LIST_FLAGS = ("status", "assignee", "type", "limit")
# gc-specific bead fields with no bd equivalent: kept verbatim under their wire names.
GC_TEXT_FIELDS = ("from", "ref")


class ExecError(GcPolecatError):
    """A failed operation: exit 1 with the message on stderr."""

    exit_code = EXIT_FAILED


# --- the wire format -------------------------------------------------------------------------


def wire_dep(dep: dict[str, Any]) -> dict[str, str]:
    return {"issue_id": dep["issue_id"], "depends_on_id": dep["depends_on_id"], "type": dep["type"]}


def parent_of(bead: Bead) -> str:
    """The bead's parent: the target of its `parent-child` dependency, else ''."""
    for dep in bead.get("dependencies", []):
        if dep["type"] == "parent-child":
            return dep["depends_on_id"]
    return ""


def to_wire(bead: Bead) -> dict[str, Any]:
    """Our bead as gc reads it: `type`, `parent_id`, gc's status, and no `null` anywhere."""
    status = bead["status"]
    out: dict[str, Any] = {
        "id": bead["id"],
        "title": bead["title"],
        "status": STATUS_TO_WIRE.get(status, "open"),
        "type": bead["issue_type"],
        "priority": bead["priority"],
        "created_at": bead["created_at"],
        "updated_at": bead["updated_at"],
        "assignee": bead.get("assignee", ""),
        "from": _text(bead.get("from")),
        "parent_id": parent_of(bead),
        "ref": _text(bead.get("ref")),
        "needs": [n for n in bead.get("needs") or [] if isinstance(n, str)],
        "description": bead.get("description", ""),
        "labels": list(bead.get("labels", [])),
        "metadata": dict(bead.get("metadata", {})),
        "dependencies": [wire_dep(d) for d in bead.get("dependencies", [])],
    }
    if out["status"] != status:
        out["status_detail"] = status  # the finer status gc's three cannot say
    if bead.get("ephemeral"):
        out["ephemeral"] = True
    for key in ("closed_at", "close_reason"):
        if bead.get(key):
            out[key] = bead[key]
    return out


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def dumps(value: Any) -> str:
    """One line of JSON; ASCII with escapes, so no locale can garble it on the way to gc."""
    return safejson.dumps(value)


# --- input checks ----------------------------------------------------------------------------


def parse_object(raw: str, allow_empty: bool = False) -> dict[str, Any]:
    """The JSON object an operation reads on stdin."""
    if not raw.strip():
        if allow_empty:
            return {}
        raise ExecError("expected a JSON object on stdin, got nothing")
    value = safejson.loads(raw, "invalid JSON on stdin", error=ExecError)  # docs/formats.md
    if not isinstance(value, dict):
        raise ExecError(f"expected a JSON object on stdin, not {type(value).__name__}")
    return value


def _field(data: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    """data[key] if present and not null, checked against `kind`; None when absent or null."""
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ExecError(f"{key!r} must be {what}, not {json.dumps(value)[:60]}")
    return value


def _str_list(data: dict[str, Any], key: str) -> list[str] | None:
    value = _field(data, key, list, "a list of strings")
    if value is not None and not all(isinstance(v, str) and v for v in value):
        raise ExecError(f"{key!r} must be a list of non-empty strings")
    return value


def _priority(data: dict[str, Any]) -> int | None:
    value = _field(data, "priority", int, "an integer 0..4")
    if value is not None and not 0 <= value <= 4:
        raise ExecError(f"'priority' must be 0..4, not {value}")
    return value


def _type(data: dict[str, Any]) -> str | None:
    value = _field(data, "type", str, "a bead type")
    if value is not None and value not in TYPES:
        raise ExecError(f"invalid type {value!r}: one of {', '.join(TYPES)}")
    return value


def _metadata(data: dict[str, Any]) -> dict[str, str] | None:
    """gc's metadata map; numbers and booleans become their JSON text, as gc reads them."""
    value = _field(data, "metadata", dict, "an object of strings")
    if value is None:
        return None
    out = {}
    for key, item in value.items():
        check_meta_key(key)
        if isinstance(item, str):
            out[key] = item
        elif isinstance(item, (bool, int, float)):
            out[key] = json.dumps(item)
        else:
            raise ExecError(f"metadata {key!r} must be a string, not {json.dumps(item)[:60]}")
    return out


def check_meta_key(key: str) -> str:
    if not key or not key.isprintable() or key.strip() != key:
        raise ExecError(f"invalid metadata key {key!r}")
    return key


def check_id(value: str) -> str:
    try:
        return ids.validate_id(value)
    except GcPolecatError as exc:
        raise ExecError(str(exc)) from None


def wire_status(value: Any) -> str:
    if value not in WIRE_STATUSES:
        raise ExecError(f"invalid status {value!r}: gc statuses are {', '.join(WIRE_STATUSES)}")
    return value


def native_status(current: str, wanted: str) -> str:
    """The status to store for gc's `wanted`: the current one when gc already sees it as
    `wanted` (a `hooked` bead updated to `in_progress` stays `hooked`), else `wanted`."""
    return current if STATUS_TO_WIRE.get(current) == wanted else wanted


def merge_metadata(current: dict[str, str], changes: dict[str, str]) -> dict[str, str]:
    """Merge gc's metadata: an empty value removes the key (gc reads absent and '' alike)."""
    merged = dict(current)
    for key, value in changes.items():
        if value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def parse_limit(value: str) -> int | None:
    """`--limit=N` / `<limit>`: a whole number; 0 means no limit."""
    if not (value.isascii() and value.isdigit()):
        raise ExecError(f"invalid limit {value!r}: a whole number (0 for no limit)")
    return int(value) or None


def parse_flags(args: list[str], allowed: Iterable[str]) -> dict[str, str]:
    """`--key=value` (as gc passes them) or `--key value`; unknown flags are refused."""
    allowed = tuple(allowed)
    out: dict[str, str] = {}
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        key, eq, value = arg.partition("=")
        name = key[2:] if key.startswith("--") else None
        if name not in allowed:
            raise ExecError(f"unexpected argument {arg!r} (flags: --{', --'.join(allowed)})")
        if not eq:
            if not rest:
                raise ExecError(f"{key} needs a value")
            value = rest.pop(0)
        out[name] = value
    return out


def arity(args: list[str], low: int, high: int, usage: str) -> None:
    if not low <= len(args) <= high:
        raise ExecError(f"usage: {usage}")


# --- the operations --------------------------------------------------------------------------


class Provider:
    """One invocation: the store, the environment and stdin, answering one operation."""

    def __init__(self, app: AppContext, env: dict[str, str], read_stdin: Callable[[], str]) -> None:
        self.app = app
        self.env = env
        self._read_stdin = read_stdin
        self._ctx: AppContext | None = None

    # plumbing

    def stdin(self) -> str:
        return self._read_stdin()

    def root(self) -> Path:
        """--repo / GC_POLECAT_REPO, else the beads repository at or above GC_STORE_ROOT (the
        city or rig gc is serving), else the nearest one above the working directory."""
        from .store import find_root, resolve_root

        if self.app.repo:
            return resolve_root(self.app.repo)
        store_root = self.env.get("GC_STORE_ROOT")
        if store_root:
            return find_root(Path(store_root))
        return find_root(Path.cwd())

    def ctx(self) -> AppContext:
        """An AppContext on the resolved repository, for the `bead` command helpers."""
        if self._ctx is None:
            from .cli import AppContext

            self._ctx = AppContext(str(self.root()), True, self.app.pm)
        return self._ctx

    def store(self) -> Store:
        return self.ctx().store()

    def read(self, bead_id: str) -> Bead:
        from .builtin.bead_commands import _read

        return _read(self.ctx(), (check_id(bead_id),))[0]

    def everything(self) -> list[Bead]:
        """Every readable bead at HEAD (unreadable files are named on stderr)."""
        from .catalog import Query

        return self.query(Query())

    def query(self, query: Any) -> list[Bead]:
        catalog = self.store().catalog
        catalog.refresh()
        found = catalog.list(query)
        for path, error in catalog.bad_files():
            print(
                f"gc-polecat: warning: skipped unreadable bead file {path}: {error}",
                file=sys.stderr,
            )
        return found

    def id_prefix(self) -> str | None:
        """GC_BEADS_PREFIX: the ID prefix gc owns for this store (city or rig)."""
        raw = (self.env.get("GC_BEADS_PREFIX") or "").strip().removesuffix("-")
        if not raw:
            return None
        try:
            return ids.validate_prefix(raw)
        except GcPolecatError as exc:
            raise ExecError(f"GC_BEADS_PREFIX: {exc}") from None

    # operations

    def op_create(self, args: list[str]) -> str:
        arity(args, 0, 0, "create (bead JSON on stdin)")
        data = parse_object(self.stdin())
        title = _field(data, "title", str, "a string")
        if not title or not title.strip():
            raise ExecError("'title' is required")
        fields: Bead = {"title": title, "issue_type": _type(data) or "task"}
        if (priority := _priority(data)) is not None:
            fields["priority"] = priority
        for key in ("description", "assignee", *GC_TEXT_FIELDS):
            if (value := _field(data, key, str, "a string")) is not None:
                fields[key] = value
        for key in ("labels", "needs"):
            if (values := _str_list(data, key)) is not None:
                fields[key] = list(dict.fromkeys(values))
        metadata = _metadata(data)
        if metadata:
            fields["metadata"] = merge_metadata({}, metadata)
        if _field(data, "ephemeral", bool, "true or false"):
            fields["ephemeral"] = True
        explicit = _field(data, "id", str, "a bead ID")
        if explicit:
            fields["id"] = check_id(explicit)
        parent = _field(data, "parent_id", str, "a bead ID") or None
        if parent is not None:
            check_id(parent)
        prefix = self.id_prefix()
        with self.store().transaction() as tx:
            if parent and not explicit and tx.exists(parent) and ids.child_depth(parent) < 3:
                created = tx.create(fields, parent=parent)  # `<parent>.<n>`, as bd does
            else:
                if parent:  # gc's parent is a weak reference: carried even if not ours
                    fields["dependencies"] = [
                        {
                            "issue_id": "",
                            "depends_on_id": parent,
                            "type": "parent-child",
                            "created_at": tx.now,
                        }
                    ]
                if prefix and not explicit:
                    fields["prefix"] = prefix
                created = tx.create(fields)
        return dumps(to_wire(created))

    def op_get(self, args: list[str]) -> str:
        arity(args, 1, 1, "get <id>")
        return dumps(to_wire(self.read(args[0])))

    def op_update(self, args: list[str]) -> str:
        arity(args, 1, 1, "update <id> (fields JSON on stdin)")
        bead_id = check_id(args[0])
        data = parse_object(self.stdin(), allow_empty=True)
        changes: Bead = {}
        for key in ("title", "description", "assignee"):
            if (value := _field(data, key, str, "a string")) is not None:
                changes[key] = value
        if changes.get("title") is not None and not changes["title"].strip():
            raise ExecError("'title' cannot be empty")
        if (itype := _type(data)) is not None:
            changes["issue_type"] = itype
        if (priority := _priority(data)) is not None:
            changes["priority"] = priority
        status = data.get("status")
        if status is not None:
            wire_status(status)
        add = _str_list(data, "labels") or []
        remove = set(_str_list(data, "remove_labels") or [])
        metadata = _metadata(data)
        parent = _field(data, "parent_id", str, "a bead ID")
        if parent:
            check_id(parent)
            if parent == bead_id:
                raise ExecError(f"{bead_id} cannot be its own parent")
        with self.store().transaction() as tx:
            current = tx.require(bead_id)
            if status is not None:
                changes["status"] = native_status(current["status"], status)
            if add or remove:
                labels = [x for x in current.get("labels", []) if x not in remove]
                changes["labels"] = labels + [x for x in dict.fromkeys(add) if x not in labels]
            if metadata:
                changes["metadata"] = merge_metadata(current.get("metadata", {}), metadata)
            if parent is not None and parent != parent_of(current):
                deps = [d for d in current.get("dependencies", []) if d["type"] != "parent-child"]
                if parent:
                    deps.append(
                        {
                            "issue_id": bead_id,
                            "depends_on_id": parent,
                            "type": "parent-child",
                            "created_at": tx.now,
                            "created_by": tx.store.actor(),
                        }
                    )
                changes["dependencies"] = deps
            tx.update(bead_id, changes)
        return ""

    def op_close(self, args: list[str]) -> str:
        arity(args, 1, 1, "close <id>")
        bead_id = check_id(args[0])
        with self.store().transaction() as tx:
            if tx.require(bead_id)["status"] != "closed":  # closing twice changes nothing
                tx.close(bead_id)
        return ""

    def op_reopen(self, args: list[str]) -> str:
        arity(args, 1, 1, "reopen <id>")
        bead_id = check_id(args[0])
        with self.store().transaction() as tx:
            if STATUS_TO_WIRE.get(tx.require(bead_id)["status"]) != "open":
                tx.update(bead_id, {"status": "open"})
        return ""

    def op_list(self, args: list[str]) -> str:
        from .catalog import Query

        flags = parse_flags(args, LIST_FLAGS)
        statuses: tuple[str, ...] = ()
        if "status" in flags:
            statuses = WIRE_TO_STATUSES[wire_status(flags["status"])]
        types: tuple[str, ...] = ()
        if "type" in flags:
            types = (str(_type({"type": flags["type"]})),)
        query = Query(
            statuses=statuses,
            types=types,
            assignee=flags.get("assignee") or None,
            include_closed=True,
            limit=parse_limit(flags["limit"]) if "limit" in flags else None,
        )
        return dumps([to_wire(b) for b in self.query(query)])

    def op_ready(self, args: list[str]) -> str:
        for arg in args:  # newer gc asks for wisps too; they are always listed (gc filters)
            if arg != "--include-ephemeral":
                raise ExecError(f"unexpected argument {arg!r}")
        beads = self.everything()
        by_id = {b["id"]: b for b in beads}
        memo: dict[str, bool] = {}
        ready = [
            b
            for b in beads
            if b["status"] == "open"
            and b["issue_type"] not in READY_EXCLUDED_TYPES
            and not is_blocked(b, by_id, memo)
        ]
        return dumps([to_wire(b) for b in ready])

    def op_children(self, args: list[str]) -> str:
        arity(args, 1, 1, "children <parent-id>")
        parent = check_id(args[0])
        found = [b for b in self.everything() if parent_of(b) == parent]
        found.sort(key=lambda b: (b["created_at"], b["id"]))
        return dumps([to_wire(b) for b in found])

    def op_list_by_label(self, args: list[str]) -> str:
        from .catalog import Query

        arity(args, 1, 2, "list-by-label <label> [<limit>]")
        label = args[0]
        if not label:
            raise ExecError("the label is empty")
        limit = parse_limit(args[1]) if len(args) > 1 else None
        found = self.query(Query(labels=(label,), include_closed=True))
        found.sort(key=lambda b: (b["created_at"], b["id"]), reverse=True)  # newest first
        return dumps([to_wire(b) for b in found[:limit]])

    def op_set_metadata(self, args: list[str]) -> str:
        arity(args, 2, 2, "set-metadata <id> <key> (value on stdin)")
        bead_id, key = check_id(args[0]), check_meta_key(args[1])
        value = self.stdin().rstrip("\n")  # as the reference scripts' `$(cat)` reads it
        with self.store().transaction() as tx:
            current = tx.require(bead_id)
            meta = merge_metadata(current.get("metadata", {}), {key: value})
            tx.update(bead_id, {"metadata": meta})
        return ""

    def op_delete(self, args: list[str]) -> str:
        rest = [a for a in args if a != "--force"]
        arity(rest, 1, 1, "delete --force <id>")
        if len(rest) == len(args):
            raise ExecError("refusing without --force")
        bead_id = check_id(rest[0])
        with self.store().transaction() as tx:
            tx.require(bead_id)
            dependents = [b for b in self.everything() if _depends_on(b, bead_id)]
            tx.delete(bead_id)
            for other in dependents:  # no dependency may point at a bead that is gone
                if other["id"] != bead_id and tx.exists(other["id"]):
                    kept = [
                        d
                        for d in tx.require(other["id"])["dependencies"]
                        if d["depends_on_id"] != bead_id
                    ]
                    tx.update(other["id"], {"dependencies": kept})
        return ""

    def op_dep_add(self, args: list[str]) -> str:
        arity(args, 2, 3, "dep-add <id> <depends-on-id> [<type>]")
        bead_id, target = check_id(args[0]), check_id(args[1])
        dep_type = args[2] if len(args) > 2 else "blocks"
        if not DEP_TYPE_RE.fullmatch(dep_type):
            raise ExecError(f"invalid dependency type {dep_type!r}")
        with self.store().transaction() as tx:
            current = tx.require(bead_id)
            if any(
                d["depends_on_id"] == target and d["type"] == dep_type
                for d in current.get("dependencies", [])
            ):
                return ""  # already there: nothing to commit
            tx.add_dependency(bead_id, target, dep_type)
        return ""

    def op_dep_remove(self, args: list[str]) -> str:
        arity(args, 2, 2, "dep-remove <id> <depends-on-id>")
        bead_id, target = check_id(args[0]), check_id(args[1])
        with self.store().transaction() as tx:
            current = tx.require(bead_id)
            if _depends_on(current, target):  # removing what is not there changes nothing
                tx.remove_dependency(bead_id, target)
        return ""

    def op_dep_list(self, args: list[str]) -> str:
        arity(args, 1, 2, "dep-list <id> [down|up]")
        bead = self.read(args[0])
        direction = args[1] if len(args) > 1 else "down"
        if direction == "down":  # what this bead depends on
            deps = [wire_dep(d) for d in bead.get("dependencies", [])]
        elif direction == "up":  # what depends on this bead
            deps = [
                wire_dep(d)
                for other in self.everything()
                for d in other.get("dependencies", [])
                if d["depends_on_id"] == bead["id"]
            ]
        else:
            raise ExecError(f"direction must be down or up, not {direction!r}")
        return dumps(deps)

    def op_init(self, args: list[str]) -> str:
        from .store import Store

        arity(args, 1, 2, "init <dir> [<prefix>]")
        prefix = args[1] if len(args) > 1 else (self.id_prefix() or "gc")
        Store.init(args[0], prefix=prefix.removesuffix("-"), pm=self.app.pm)
        return ""


OPERATIONS: dict[str, Callable[[Provider, list[str]], str]] = {
    "create": Provider.op_create,
    "get": Provider.op_get,
    "update": Provider.op_update,
    "close": Provider.op_close,
    "reopen": Provider.op_reopen,
    "list": Provider.op_list,
    "ready": Provider.op_ready,
    "children": Provider.op_children,
    "list-by-label": Provider.op_list_by_label,
    "set-metadata": Provider.op_set_metadata,
    "delete": Provider.op_delete,
    "dep-add": Provider.op_dep_add,
    "dep-remove": Provider.op_dep_remove,
    "dep-list": Provider.op_dep_list,
    "init": Provider.op_init,
}


def _depends_on(bead: Bead, target: str) -> bool:
    return any(d["depends_on_id"] == target for d in bead.get("dependencies", []))


def is_blocked(bead: Bead, by_id: dict[str, Bead], memo: dict[str, bool]) -> bool:
    """bd's readiness: blocked by a `blocks`, `conditional-blocks` or `waits-for` dependency on
    a bead that is not closed (or not in this store), or through `parent-child` by a parent
    that is itself blocked. An open parent alone blocks nothing (a molecule's steps are ready
    while the molecule is open)."""
    bid = bead["id"]
    if bid in memo:
        return memo[bid]
    memo[bid] = False  # a dependency cycle ends here
    blocked = False
    for dep in bead.get("dependencies", []):
        target = by_id.get(dep["depends_on_id"])
        if dep["type"] in HARD_BLOCKING_DEP_TYPES:
            blocked = target is None or target["status"] != "closed"
        elif dep["type"] == "parent-child" and target is not None:
            blocked = target["status"] != "closed" and is_blocked(target, by_id, memo)
        if blocked:
            break
    memo[bid] = blocked
    return blocked


# --- entry point -----------------------------------------------------------------------------


_NO_BEAD = re.compile(r"^no bead (\S+)$")


def error_message(exc: GcPolecatError) -> str:
    """One line; for a missing bead it says "not found", which is what gc looks for."""
    message = " ".join(str(exc).split())
    if isinstance(exc, NotFound):
        m = _NO_BEAD.match(message)
        if m:
            return f"bead {m.group(1)} not found"
        if "not found" not in message.lower():
            return f"{message}: not found"
    return message


def run(
    app: AppContext,
    op: str | None,
    args: list[str],
    read_stdin: Callable[[], str],
    env: dict[str, str] | None = None,
) -> tuple[int, str, str]:
    """Answer one operation: (exit status, stdout, stderr). Never raises for a failure, so
    that no error can leave with exit 2, the status gc reads as "unknown operation"."""
    if not op:
        return EXIT_FAILED, "", "usage: gc-polecat exec-beads <operation> [args...]"
    handler = OPERATIONS.get(op)
    if handler is None:
        return EXIT_UNKNOWN_OP, "", f"unsupported operation {op!r}"
    provider = Provider(app, dict(os.environ if env is None else env), read_stdin)
    try:
        return EXIT_OK, handler(provider, args), ""
    except GcPolecatError as exc:
        return EXIT_FAILED, "", f"{op}: {error_message(exc)}"
    except OSError as exc:
        return EXIT_FAILED, "", f"{op}: {type(exc).__name__}: {exc}"
    except Exception as exc:
        if os.environ.get("GC_POLECAT_DEBUG"):
            raise
        return EXIT_FAILED, "", f"{op}: internal error: {type(exc).__name__}: {exc}"
