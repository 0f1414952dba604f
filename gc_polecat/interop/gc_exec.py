"""Gas City's exec beads provider protocol, answered from the git-backed store.

Gas City (`gc`) selects it with `GC_BEADS=exec:<script>` (or `[beads] provider = "exec:..."` in
`city.toml`) and runs `<script> <op> [args]` with JSON on stdin and stdout and a 30 s limit, a
fresh process for every store call (gascity: `internal/beads/exec/exec.go`).
`gc-polecat exec-beads <op> [args]` is that script (the pack ships a two-line wrapper,
`pack/scripts/gc-beads-polecat`). `main()` answers it without click or the plugin manager, so a
read costs little more than the interpreter's start (`__main__.py` dispatches here).

The contract, from gc's side:

- exit 0: success; 1: failure, one line on stderr, and a message containing "not found" means
  the bead does not exist; 2: unknown operation, which gc treats as success (so no failure may
  ever exit 2 here: bad input and internal errors exit 1 too).
- wire keys: `type` (ours: `issue_type`), `parent_id` (ours: a `parent-child` dependency),
  `needs` (ours: dependencies, `<id>` blocks, `<type>:<id>` otherwise, as gc's bd store makes).
- statuses: gc knows `open`, `in_progress`, `closed`; ours map onto them (`STATUS_TO_WIRE`).
- lists are `[]`, never `null`; every mutating operation is one commit, or none at all when it
  changes nothing or fails.
- where the store lives: `store_location()` (GC_POLECAT_REPO, else one repository per scope under
  the city's `.gc/runtime/packs/polecat/stores/`, never inside a rig's work tree).

See docs/commands.md, "Gas City exec beads provider", and docs/interop.md, "A Gas City city".
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gc_polecat.beads import ids, safejson
from gc_polecat.beads.bead import DEP_TYPE_RE, STATUSES, TYPES, Bead
from gc_polecat.beads.snapshot import (  # noqa: F401 - the layout names stay importable here
    CATALOG_FILE,
    CATALOG_SCHEMA,
    STATE_DIR,
    fresh_catalog,
)
from gc_polecat.errors import GcPolecatError, InvalidBead, NotARepository, NotFound

if TYPE_CHECKING:
    import sqlite3

    import pluggy

    from gc_polecat.beads.store import Store

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
# The types `ready` never lists (gascity `beads.IsReadyExcludedType`: bd's, plus sessions).
READY_EXCLUDED_TYPES = (
    "gate", "merge-request", "molecule", "message", "session", "agent", "role", "rig",
)  # fmt: skip
HARD_BLOCKING_DEP_TYPES = ("blocks", "conditional-blocks", "waits-for")
LIST_FLAGS = ("status", "assignee", "type", "limit")
# gc-specific bead fields with no bd equivalent: kept verbatim under their wire names.
GC_TEXT_FIELDS = ("from", "ref")
# Nanoseconds of a bead's creation, an extra bead key: created_at has bd's second precision,
# and gc lists beads created within one second in creation order (RunCreationOrderTests).
CREATED_NS = "created_at_ns"
# The store's layout, read here without importing the store (a test pins each to its source):
CONFIG_PATH = ".beads/config.yaml"  # store.CONFIG_PATH
# Where stores live under a city (gascity `citylayout.PackStateDir(city, "polecat")`).
PACK_STATE = (".gc", "runtime", "packs", "polecat", "stores")
# Lifecycle operations gc runs around a city's life (`cmd/gc/beads_provider_lifecycle.go`):
# a git store has no service to check or recover, so these answer "fine" (exit 0); `start` and
# `stop` run the optional warm server (`exec_server`).
LIFECYCLE_OPS = ("health", "probe", "recover")


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
    """The JSON object an operation reads on stdin (the one place stdin JSON is decoded)."""
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
    """The status to store for gc's `wanted`. `open` is always stored as `open`: a bead gc
    opens must become ready, and blocked, deferred and pinned ones never are. `in_progress`
    keeps a `hooked` bead hooked (gc already sees it in progress)."""
    if wanted == "open":
        return "open"
    return current if STATUS_TO_WIRE.get(current) == wanted else wanted


def merge_metadata(current: dict[str, str], changes: dict[str, str]) -> dict[str, str]:
    """gc's metadata merge: every key given is set, an empty value included (gc tells an
    absent key from an empty one: beadstest `RunMetadataTests`)."""
    return {**current, **changes}


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


def parse_need(need: str) -> tuple[str, str]:
    """One `needs` entry as gc's molecule pouring writes it (gascity
    `internal/molecule/molecule.go`): `<id>` is a `blocks` dependency, `<type>:<id>` another
    type; what follows the first colon is the target (bd's `--deps` form)."""
    dep_type, colon, target = need.partition(":")
    if not colon:
        dep_type, target = "blocks", need
    if not DEP_TYPE_RE.fullmatch(dep_type):
        raise ExecError(f"invalid dependency type {dep_type!r} in needs entry {need!r}")
    return dep_type, check_id(target)


# --- where the store lives -------------------------------------------------------------------


def city_of(env: dict[str, str]) -> Path | None:
    """The city gc is serving (gascity `citylayout.CityRuntimeEnvMap`), if it said."""
    city = (env.get("GC_CITY_PATH") or env.get("GC_CITY") or "").strip()
    return Path(city) if city else None


def _same_path(a: Path, b: Path) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def scope_store(city: Path, scope_root: Path | None, scope: str = "") -> Path:
    """The store of one scope of a city: `stores/city`, or `stores/rigs/<name>-<hash>` for a
    rig, keyed by the rig directory's real path (the one thing `init <dir>` and the store calls
    both know). Under the city's own runtime directory, never in a rig's work tree."""
    base = city.joinpath(*PACK_STATE)
    if scope_root is None or scope == "city" or _same_path(scope_root, city):
        return base / "city"
    real = os.path.realpath(scope_root)
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", os.path.basename(real))[:40].lstrip(".") or "rig"
    digest = hashlib.sha256(real.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return base / "rigs" / f"{name}-{digest}"


def is_store(root: Path) -> bool:
    return (root / CONFIG_PATH).is_file() and (root / ".git").is_dir()


def store_location(repo: str | None, env: dict[str, str]) -> tuple[Path, bool]:
    """(the repository, whether it was named explicitly). --repo / GC_POLECAT_REPO name one
    store for every scope; else, in a city, the scope's own store (`scope_store`); else the
    beads repository at or above GC_STORE_ROOT, or the working directory (by hand)."""
    explicit = repo or env.get("GC_POLECAT_REPO") or None
    if explicit:
        return Path(explicit).expanduser().resolve(), True
    scope_root = (env.get("GC_STORE_ROOT") or "").strip()
    city = city_of(env)
    if city is not None:
        root = Path(scope_root) if scope_root else None
        return scope_store(city, root, env.get("GC_STORE_SCOPE", "")), False
    from gc_polecat.beads.store import find_root  # lazy: start-up

    return find_root(Path(scope_root) if scope_root else Path.cwd()), True


# --- the operations --------------------------------------------------------------------------


class Provider:
    """One invocation: the store, the environment and stdin, answering one operation."""

    def __init__(
        self,
        repo: str | None,
        env: dict[str, str],
        read_stdin: Callable[[], str],
        pm: pluggy.PluginManager | None = None,
    ) -> None:
        self.repo = repo
        self.env = env
        self.pm = pm
        self._read_stdin = read_stdin
        self._store: Store | None = None
        self._db: sqlite3.Connection | None = None

    # plumbing

    def stdin(self) -> str:
        return self._read_stdin()

    def root(self) -> Path | None:
        """The store's directory; None when gc's city names one that does not exist yet."""
        root, explicit = store_location(self.repo, self.env)
        if is_store(root):
            return root
        if explicit:
            raise NotARepository(f"not a beads repository: {root}; run `gc-polecat init {root}`")
        return None

    def store(self) -> Store:
        """The scope's store; one gc names by its city is made on first use if gc's `init`
        never ran (gc's own conformance suite calls `create` on a fresh scope)."""
        if self._store is None:
            from gc_polecat.beads.store import Store  # lazy: start-up

            root = self.root()
            if root is None:
                root = store_location(self.repo, self.env)[0]
                Store.init(root, prefix=self.id_prefix() or "gc", pm=self.pm)
            self._store = Store(root, pm=self.pm)
        return self._store

    def db(self) -> sqlite3.Connection:
        """The catalog at HEAD: SQLite alone when it is fresh (`fresh_catalog`), else through
        the store, which recovers, catches the catalog up or rebuilds it from git."""
        if self._db is None:
            root = self.root() if self._store is None else self._store.root
            db = fresh_catalog(root) if root is not None else None
            if db is None:
                store = self.store()
                store.recover_if_needed()
                if not store.catalog.is_fresh():
                    store.catalog.refresh()
                db = store.catalog.db
            for path, error in db.execute("SELECT path, error FROM bad ORDER BY path"):
                print(
                    f"gc-polecat: warning: skipped unreadable bead file {path}: {error}",
                    file=sys.stderr,
                )
            self._db = db
        return self._db

    def rows(self, sql: str, args: Iterable[Any] = ()) -> list[Bead]:
        return [json.loads(row[0]) for row in self.db().execute(sql, tuple(args))]

    def wire_list(self, sql: str, args: Iterable[Any] = ()) -> str:
        return wire_array(self.db().execute(sql, tuple(args)))

    def read(self, bead_id: str) -> Bead:
        """One bead; a file that does not parse is named (as `bead show` does), not missing."""
        check_id(bead_id)
        found = self.rows("SELECT json FROM beads WHERE id = ?", [bead_id])
        if found:
            return found[0]
        bad = self.db().execute("SELECT error FROM bad WHERE path = ?", (ids.id_path(bead_id),))
        row = bad.fetchone()
        if row is not None:
            raise InvalidBead(row[0])
        raise NotFound(f"no bead {bead_id}")

    def id_prefix(self) -> str | None:
        """GC_BEADS_PREFIX: the ID prefix gc owns for this store (city or rig)."""
        raw = (self.env.get("GC_BEADS_PREFIX") or "").strip().removesuffix("-")
        if not raw:
            return None
        try:
            return ids.validate_prefix(raw)
        except GcPolecatError as exc:
            raise ExecError(f"GC_BEADS_PREFIX: {exc}") from None

    def is_foreign(self, bead_id: str) -> bool:
        """An ID of another scope's store (the city's from a rig, another rig's): its prefix is
        neither this store's nor the one gc gave this scope."""
        prefix = ids.parse_id(bead_id).group("prefix")
        return prefix not in (self.store().prefix, self.id_prefix())

    def foreign_status(self, wanted: set[str]) -> dict[str, str]:
        """Statuses of other scopes' beads, read from the city's other stores (the default
        layout; with GC_POLECAT_REPO every scope shares one store and there is nothing else)."""
        from gc_polecat.beads.store import Store  # lazy: start-up

        city = city_of(self.env)
        root, explicit = store_location(self.repo, self.env)
        if not wanted or explicit or city is None:
            return {}
        base = city.joinpath(*PACK_STATE)
        found: dict[str, str] = {}
        for other in [base / "city", *sorted((base / "rigs").glob("*"))]:
            if len(found) == len(wanted):
                break
            if other == root or not is_store(other):
                continue
            catalog = Store(other, pm=self.pm).catalog
            try:
                if not catalog.is_fresh():
                    catalog.refresh()
                found.update(_select_status(catalog.db, wanted - found.keys()))
            finally:
                catalog.close()
        return found

    def dependency_target(self, tx: Any, bead_id: str, target: str) -> None:
        """A target must exist here, unless it belongs to another scope: then it is kept as an
        reference, as bd keeps external ones; `ready` looks it up in the city's other stores."""
        if target == bead_id:
            raise ExecError(f"{bead_id} cannot depend on itself")
        if not tx.exists(target) and not self.is_foreign(target):
            raise NotFound(f"no bead {target}")

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
        needs = [parse_need(n) for n in fields.get("needs", [])]
        metadata = _metadata(data)
        if metadata:
            fields["metadata"] = metadata
        if _field(data, "ephemeral", bool, "true or false"):
            fields["ephemeral"] = True
        explicit = _field(data, "id", str, "a bead ID")
        if explicit:
            fields["id"] = check_id(explicit)
        parent = _field(data, "parent_id", str, "a bead ID") or None
        if parent is not None:
            check_id(parent)
        prefix = self.id_prefix()
        fields[CREATED_NS] = time.time_ns()
        with self.store().transaction() as tx:
            deps = []
            for dep_type, target in dict.fromkeys(needs):
                self.dependency_target(tx, explicit or "", target)
                deps.append(
                    {
                        "issue_id": "",
                        "depends_on_id": target,
                        "type": dep_type,
                        "created_at": tx.now,
                    }
                )
            if parent and not explicit and tx.exists(parent) and ids.child_depth(parent) < 3:
                fields["dependencies"] = deps
                created = tx.create(fields, parent=parent)  # `<parent>.<n>`, as bd does
            else:
                if parent:  # gc's parent is a weak reference: carried even if not ours
                    deps.append(
                        {
                            "issue_id": "",
                            "depends_on_id": parent,
                            "type": "parent-child",
                            "created_at": tx.now,
                        }
                    )
                fields["dependencies"] = deps
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
        """gc's `list [--status= --assignee= --type= --limit=]` (gascity exec.go `List`): every
        filter applied, oldest first; with a limit, the newest N matches (gc's limited queries,
        e.g. an agent's newest in-progress bead in `internal/api/handler_agents.go`, sort
        newest first and keep the head). Closed beads are listed: gc filters them itself."""
        flags = parse_flags(args, LIST_FLAGS)
        where, params = [], []
        if "status" in flags:
            statuses = WIRE_TO_STATUSES[wire_status(flags["status"])]
            where.append(f"status IN ({','.join('?' * len(statuses))})")
            params += statuses
        if "type" in flags:
            where.append("issue_type = ?")
            params.append(_type({"type": flags["type"]}))
        if flags.get("assignee"):
            where.append("assignee = ?")
            params.append(flags["assignee"])
        limit = parse_limit(flags["limit"]) if "limit" in flags else None
        sql = f"SELECT {_WIRE_COLUMNS} FROM beads" + (
            " WHERE " + " AND ".join(where) if where else ""
        )
        if limit is None:
            return self.wire_list(sql + _ORDER_CREATED, params)
        newest = self.db().execute(f"{sql}{_ORDER_CREATED_DESC} LIMIT ?", [*params, limit])
        return wire_array(reversed(newest.fetchall()))

    def op_ready(self, args: list[str]) -> str:
        """Open beads of work types with nothing open blocking them: by priority, then
        creation. Built from the catalog's dependency rows, parsing only what is listed."""
        for arg in args:  # newer gc asks for wisps too; they are always listed (gc filters)
            if arg != "--include-ephemeral":
                raise ExecError(f"unexpected argument {arg!r}")
        ready_states = _ready_states(self)  # open + custom `active`
        db = self.db()
        if WARM:  # the warm server: from its view, changed beads re-read only
            answer = _ready_from_view(self, db, ready_states)
            if answer is not None:
                return answer
        excluded = ",".join("?" * len(READY_EXCLUDED_TYPES))
        states = ",".join("?" * len(ready_states))
        candidates = db.execute(
            f"SELECT {_WIRE_COLUMNS} FROM beads WHERE status IN ({states})"
            f" AND issue_type NOT IN ({excluded})"
            f" ORDER BY priority,{_ORDER_CREATED.removeprefix(' ORDER BY')}",
            (*ready_states, *READY_EXCLUDED_TYPES),
        ).fetchall()
        edges: dict[str, list[tuple[str, str]]] = {}
        for bid, target, dep_type in db.execute(_SQL_OPEN_EDGES):
            edges.setdefault(bid, []).append((target, dep_type))
        targets = {t for deps in edges.values() for t, _ in deps}
        status = dict(_select_status(db, targets))
        status.update(
            self.foreign_status({t for t in targets - status.keys() if _foreign(self, t)})
        )
        memo: dict[str, bool] = {}
        return wire_array(row for row in candidates if not is_blocked(row[0], edges, status, memo))

    def op_children(self, args: list[str]) -> str:
        """Beads whose parent is the given ID, oldest first; an ID that cannot be a bead's
        simply has none (beadstest `ChildrenEmpty`)."""
        arity(args, 1, 1, "children <parent-id>")
        if ids.ID_RE.fullmatch(args[0]) is None:
            return "[]"
        return self.wire_list(_SQL_CHILDREN + _ORDER_CREATED, [args[0]])

    def op_list_by_label(self, args: list[str]) -> str:
        arity(args, 1, 2, "list-by-label <label> [<limit>]")
        label = args[0]
        if not label:
            raise ExecError("the label is empty")
        limit = parse_limit(args[1]) if len(args) > 1 else None
        sql = (
            f"SELECT {_WIRE_COLUMNS} FROM beads WHERE id IN (SELECT id FROM labels WHERE label = ?)"
        )
        return self.wire_list(f"{sql}{_ORDER_CREATED_DESC} LIMIT ?", [label, limit or -1])

    def op_set_metadata(self, args: list[str]) -> str:
        """The value is stdin, byte for byte (gc writes it exactly; '' is a value too)."""
        arity(args, 2, 2, "set-metadata <id> <key> (value on stdin)")
        bead_id, key = check_id(args[0]), check_meta_key(args[1])
        value = self.stdin()
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
            catalog = tx.store.catalog
            catalog.refresh()  # under the write lock: no dependent can slip in unseen
            dependents = [
                json.loads(row[0])["id"] for row in catalog.db.execute(_SQL_DEPENDENTS, (bead_id,))
            ]
            tx.delete(bead_id)
            for other in dependents:  # no dependency may point at a bead that is gone
                if other != bead_id and tx.exists(other):
                    kept = [
                        d
                        for d in tx.require(other)["dependencies"]
                        if d["depends_on_id"] != bead_id
                    ]
                    tx.update(other, {"dependencies": kept})
        return ""

    def op_dep_add(self, args: list[str]) -> str:
        """One edge per pair: adding it again with another type changes its type
        (beadstest `RunDepTests` "DepAddUpdatesType")."""
        arity(args, 2, 3, "dep-add <id> <depends-on-id> [<type>]")
        bead_id, target = check_id(args[0]), check_id(args[1])
        dep_type = args[2] if len(args) > 2 else "blocks"
        if not DEP_TYPE_RE.fullmatch(dep_type):
            raise ExecError(f"invalid dependency type {dep_type!r}")
        with self.store().transaction() as tx:
            current = tx.require(bead_id)
            self.dependency_target(tx, bead_id, target)
            deps = current.get("dependencies", [])
            same = [d for d in deps if d["depends_on_id"] == target]
            if [d["type"] for d in same] == [dep_type]:
                return ""  # already there: nothing to commit
            kept = [d for d in deps if d["depends_on_id"] != target]
            edge = {**(same[0] if same else {}), "issue_id": bead_id, "depends_on_id": target}
            edge.setdefault("created_at", tx.now)
            edge.setdefault("created_by", tx.store.actor())
            tx.update(bead_id, {"dependencies": [*kept, {**edge, "type": dep_type}]})
        return ""

    def op_dep_remove(self, args: list[str]) -> str:
        """Removing an edge that is not there, of a bead that is not there either, changes
        nothing and succeeds (beadstest `RunDepTests` "DepRemoveNonexistent")."""
        arity(args, 2, 2, "dep-remove <id> <depends-on-id>")
        if not all(ids.ID_RE.fullmatch(a) for a in args):
            return ""  # no bead can have such an edge
        bead_id, target = args
        with self.store().transaction() as tx:
            current = tx.get(bead_id)
            if current is not None and _depends_on(current, target):
                tx.remove_dependency(bead_id, target)
        return ""

    def op_dep_list(self, args: list[str]) -> str:
        """`down`: what the bead depends on; `up`: what in this store depends on it, which may
        be another scope's bead. A bead not here has no edges here: `[]` (beadstest
        `RunDepTests` "DepListEmpty")."""
        arity(args, 1, 2, "dep-list <id> [down|up]")
        direction = args[1] if len(args) > 1 else "down"
        if direction not in ("down", "up"):
            raise ExecError(f"direction must be down or up, not {direction!r}")
        bead_id = args[0]
        if ids.ID_RE.fullmatch(bead_id) is None:
            return "[]"
        if direction == "down":
            found = self.rows("SELECT json FROM beads WHERE id = ?", [bead_id])
            return dumps([wire_dep(d) for b in found for d in b.get("dependencies", [])])
        return dumps(
            [
                wire_dep(d)
                for other in self.rows(_SQL_DEPENDENTS, [bead_id])
                for d in other.get("dependencies", [])
                if d["depends_on_id"] == bead_id
            ]
        )

    def op_init(self, args: list[str]) -> str:
        """gc's `init <dir> <prefix> [<database>]` for the city and each rig on every start
        (gascity `cmd/gc/beads_provider_lifecycle.go`, `initBeadsForDir`). It makes the scope's
        store where `store_location` puts it and never writes into <dir> (a rig is the user's
        code); idempotent: an existing store is kept as it is."""
        from gc_polecat.beads.store import Store  # lazy: start-up

        arity(args, 1, 3, "init <dir> [<prefix> [<database>]]")
        directory = Path(args[0]).expanduser()
        if directory.exists() and not directory.is_dir():
            raise ExecError(f"not a directory: {directory}")
        prefix = (args[1] if len(args) > 1 else "") or self.id_prefix() or "gc"
        prefix = prefix.removesuffix("-")
        ids.validate_prefix(prefix)
        explicit = self.repo or self.env.get("GC_POLECAT_REPO") or None
        if explicit:
            root = Path(explicit).expanduser().resolve()
        else:
            city = city_of(self.env) or (directory if (directory / "city.toml").is_file() else None)
            if city is None:
                raise ExecError(
                    f"cannot tell which city {directory} belongs to: gc sets GC_CITY_PATH; "
                    "set it, or GC_POLECAT_REPO to name the store"
                )
            root = scope_store(city, directory)
        if not is_store(root):
            Store.init(root, prefix=prefix, pm=self.pm)
        return ""

    def op_start(self, args: list[str]) -> str:
        """gc's `start` (every `gc start`): the city's warm server (`exec_server`), so later
        calls skip the interpreter's imports. Failing to start it fails nothing."""
        from gc_polecat.interop.gc_exec_launch import start  # lazy: start-up

        warning = start(self.env)
        if warning:
            print(f"gc-polecat: warning: {warning}", file=sys.stderr)
        return ""

    def op_stop(self, args: list[str]) -> str:
        """gc's `stop`: ask the city's server, if one answers, to end."""
        from gc_polecat.interop.gc_exec_client import safe_dir, socket_path  # lazy: start-up
        from gc_polecat.interop.gc_exec_launch import ask  # lazy: start-up

        path = socket_path(self.env)
        if path is not None and safe_dir(path):
            ask(path, ["stop"])
        return ""

    def op_lifecycle(self, args: list[str]) -> str:
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
    "start": Provider.op_start,
    "stop": Provider.op_stop,
    **dict.fromkeys(LIFECYCLE_OPS, Provider.op_lifecycle),
}

# Creation order: bd's second-precision time, then our nanoseconds, then the ID.
_ORDER_CREATED = f" ORDER BY created_at, COALESCE(json_extract(json, '$.{CREATED_NS}'), 0), id"
_ORDER_CREATED_DESC = (
    f" ORDER BY created_at DESC, COALESCE(json_extract(json, '$.{CREATED_NS}'), 0) DESC, id DESC"
)
_SQL_CHILDREN = (
    "SELECT id, blob, json FROM beads b WHERE EXISTS"
    " (SELECT 1 FROM json_each(b.json, '$.dependencies') d"
    " WHERE json_extract(d.value, '$.type') = 'parent-child'"
    " AND json_extract(d.value, '$.depends_on_id') = ?)"
)
_SQL_DEPENDENTS = (
    "SELECT json FROM beads b WHERE EXISTS (SELECT 1 FROM json_each(b.json, '$.dependencies') d"
    " WHERE json_extract(d.value, '$.depends_on_id') = ?)"
)
# Every blocking-relevant edge out of a bead that is not closed (a closed bead blocks nothing).
_SQL_OPEN_EDGES = (
    "SELECT b.id, json_extract(d.value, '$.depends_on_id'), json_extract(d.value, '$.type')"
    " FROM beads b, json_each(b.json, '$.dependencies') d WHERE b.status != 'closed'"
    " AND json_extract(d.value, '$.type') IN ('blocks', 'conditional-blocks', 'waits-for',"
    " 'parent-child')"
)


_WIRE_COLUMNS = "id, blob, json"
# id -> (the catalog's blob of the bead, its wire JSON). Filled and reused only by a long-lived
# process (the warm server): keyed by content, so a changed bead is never answered stale.
_WIRE_CACHE: dict[str, tuple[str, str]] = {}
_WIRE_CACHE_MAX = 200_000


def wire_array(rows: Iterable[tuple[str, str, str]]) -> str:
    """The JSON array of the beads of (id, blob, bead JSON) catalog rows, as `dumps` of
    their `to_wire` would print it, converting only the beads not converted before."""
    parts = []
    for bead_id, blob, raw in rows:
        hit = _WIRE_CACHE.get(bead_id)
        if hit is not None and hit[0] == blob:
            parts.append(hit[1])
            continue
        parts.append(_wire_text(bead_id, blob, raw))
    return "[" + ", ".join(parts) + "]"


def _wire_text(bead_id: str, blob: str, raw: str) -> str:
    """One bead's wire JSON from its catalog JSON, remembered for its blob."""
    text = dumps(to_wire(json.loads(raw)))
    if len(_WIRE_CACHE) >= _WIRE_CACHE_MAX:
        _WIRE_CACHE.clear()
    _WIRE_CACHE[bead_id] = (blob, text)
    return text


def _select_status(db: Any, wanted: set[str]) -> Iterable[tuple[str, str]]:
    """(id, status) of the given beads that exist, a few hundred IDs per query."""
    ordered = sorted(wanted)
    for start in range(0, len(ordered), 500):
        chunk = ordered[start : start + 500]
        yield from db.execute(
            f"SELECT id, status FROM beads WHERE id IN ({','.join('?' * len(chunk))})", chunk
        )


def _depends_on(bead: Bead, target: str) -> bool:
    return any(d["depends_on_id"] == target for d in bead.get("dependencies", []))


def is_blocked(
    bid: str, edges: dict[str, list[tuple[str, str]]], status: dict[str, str], memo: dict[str, bool]
) -> bool:
    """bd's readiness: blocked by a `blocks`, `conditional-blocks` or `waits-for` dependency on
    a bead that is not closed (or that no store of the city holds), or through `parent-child`
    by a parent that is itself blocked. An open parent alone blocks nothing (a molecule's steps
    are ready while it is open)."""
    if bid in memo:
        return memo[bid]
    memo[bid] = False  # a dependency cycle ends here
    blocked = False
    for target, dep_type in edges.get(bid, ()):
        found = status.get(target)
        if dep_type in HARD_BLOCKING_DEP_TYPES:
            blocked = found != "closed"
        elif dep_type == "parent-child" and found is not None:
            blocked = found != "closed" and is_blocked(target, edges, status, memo)
        if blocked:
            break
    memo[bid] = blocked
    return blocked


def _foreign(provider: Provider, target: str) -> bool:
    try:
        return provider.is_foreign(target)
    except GcPolecatError:  # not an ID at all (a hand edit): nothing to look up
        return False


# --- the warm server's view for `ready` --------------------------------------------------------

# Set by the warm server (`exec_server.serve`): only a long-lived process keeps `ReadyView`s;
# a cold call would pay a full scan to build one it never reuses.
WARM = False
_READY_VIEWS: dict[str, ReadyView] = {}
_READY_VIEWS_MAX = 16  # stores (city, rigs) one server answers for
_VIEW_COLUMNS = (
    "b.id, b.blob, b.status, b.issue_type, b.priority, b.created_at,"
    f" COALESCE(json_extract(b.json, '$.{CREATED_NS}'), 0)"
)
_VIEW_EDGES = (
    "SELECT b.id, json_extract(d.value, '$.depends_on_id'), json_extract(d.value, '$.type')"
    " FROM beads b, json_each(b.json, '$.dependencies') d WHERE"
    " json_extract(d.value, '$.type') IN ('blocks', 'conditional-blocks', 'waits-for',"
    " 'parent-child')"
)


def _sql_key(value: Any) -> tuple[int, Any]:
    """A sort key that orders values as SQLite does (NULL, numbers, text, blobs), so the view
    lists in exactly the order of `op_ready`'s ORDER BY."""
    if value is None:
        return (0, 0)
    if isinstance(value, int | float):
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    return (3, bytes(value))


class ReadyView:
    """What `ready` needs of every bead of one store (status, type, order, blocking edges),
    kept by the warm server and brought to the catalog's commit on each call by a tree diff:
    only the changed beads are re-read, and the sorted candidates are patched, so a `ready`
    after a write neither scans 10,000 rows nor parses every open bead's dependencies again.
    Keyed by the commit the call's catalog snapshot is at: it answers what that snapshot holds."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.open_git()
        self.reset()

    def open_git(self) -> None:
        from gc_polecat.beads.git import Git  # lazy: start-up

        self.git = Git(self.root)

    def reset(self) -> None:
        self.commit: str | None = None
        self.rows: dict[str, tuple[str, str, str, tuple[Any, ...]]] = {}  # blob, status, type, key
        self.edges: dict[str, list[tuple[str, str]]] = {}  # of beads not closed
        self.order: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}  # states -> sorted keys

    def catch_up(self, db: Any, commit: str) -> None:
        """Bring the view to `commit` (the catalog's, in `db`'s snapshot)."""
        if commit == self.commit:
            return
        changed = self.changed_ids(commit) if self.commit is not None else None
        if changed is None:
            if self.commit is not None:
                self.open_git()  # the repository may have been repacked or replaced
            self.reset()
            self.load(db, "", ())
        else:
            old = {bid: self.forget(bid) for bid in changed}
            for start in range(0, len(changed), 500):
                chunk = changed[start : start + 500]
                self.load(db, f" WHERE b.id IN ({','.join('?' * len(chunk))})", chunk)
            for states, keys in self.order.items():
                self.patch(states, keys, old)
        self.commit = commit

    def changed_ids(self, commit: str) -> list[str] | None:
        """The beads whose files differ between the view's commit and `commit`; None when that
        cannot be told (an object gone after a history rewrite): then the view is rebuilt."""
        try:
            old = self.git.commit_tree(str(self.commit).encode())
            new = self.git.commit_tree(commit.encode())
            paths = [path for path, _ in self.git.changed_paths(old, new)]
        except Exception:  # noqa: BLE001 - any doubt means a rebuild, never a stale answer
            return None
        found = {ids.path_id(path) for path in paths}  # the catalog holds no other path
        return sorted(bid for bid in found if bid is not None)

    def forget(self, bead_id: str) -> tuple[str, str, str, tuple[Any, ...]] | None:
        self.edges.pop(bead_id, None)
        return self.rows.pop(bead_id, None)

    def load(self, db: Any, where: str, params: Iterable[Any]) -> None:
        params = tuple(params)
        for bid, blob, status, kind, priority, created, ns in db.execute(
            f"SELECT {_VIEW_COLUMNS} FROM beads b{where}", params
        ):
            key = (_sql_key(priority), _sql_key(created), _sql_key(ns), bid)
            self.rows[bid] = (blob, status, kind, key)
            self.edges.pop(bid, None)
        extra = where.replace(" WHERE", " AND")
        for bid, target, dep_type in db.execute(_VIEW_EDGES + extra, params):
            row = self.rows.get(bid)
            if row is not None and row[1] != "closed":
                self.edges.setdefault(bid, []).append((target, dep_type))

    def patch(self, states: tuple[str, ...], keys: list[tuple[Any, ...]], old: dict) -> None:
        """Move the changed beads in one sorted candidate list."""
        import bisect  # lazy: start-up

        for bid, was in old.items():
            if was is not None and _is_candidate(was, states):
                at = bisect.bisect_left(keys, was[3])
                if at < len(keys) and keys[at] == was[3]:
                    del keys[at]
            now = self.rows.get(bid)
            if now is not None and _is_candidate(now, states):
                bisect.insort(keys, now[3])

    def candidates(self, ready_states: tuple[str, ...]) -> list[str]:
        """Open beads of work types, by priority then creation (`op_ready`'s ORDER BY)."""
        keys = self.order.get(ready_states)
        if keys is None:
            keys = sorted(row[3] for row in self.rows.values() if _is_candidate(row, ready_states))
            self.order[ready_states] = keys
        return [key[3] for key in keys]


def _is_candidate(row: tuple[str, str, str, tuple[Any, ...]], states: tuple[str, ...]) -> bool:
    return row[1] in states and row[2] not in READY_EXCLUDED_TYPES


def _ready_from_view(provider: Provider, db: Any, ready_states: tuple[str, ...]) -> str | None:
    """`ready`'s answer from the store's `ReadyView`, brought to the catalog's commit first;
    None when the catalog names no commit (an empty store) or a bead changed under the call:
    the SQL path answers."""
    found = db.execute("SELECT value FROM meta WHERE key = 'commit'").fetchone()
    if not found or not found[0]:
        return None
    root = str(provider.store().root)
    view = _READY_VIEWS.get(root)
    if view is None:
        if len(_READY_VIEWS) >= _READY_VIEWS_MAX:
            _READY_VIEWS.clear()
        view = _READY_VIEWS[root] = ReadyView(Path(root))
    view.catch_up(db, str(found[0]))
    targets = {t for deps in view.edges.values() for t, _ in deps}
    status = {t: view.rows[t][1] for t in targets if t in view.rows}
    status.update(
        provider.foreign_status({t for t in targets - status.keys() if _foreign(provider, t)})
    )
    memo: dict[str, bool] = {}
    edges, rows = view.edges, view.rows
    candidates = view.candidates(ready_states)
    blocked = {bid for bid in candidates if bid in edges and is_blocked(bid, edges, status, memo)}
    return _wire_by_id(db, [(bid, rows[bid][0]) for bid in candidates if bid not in blocked])


_READY_STATES: dict[str, tuple[tuple[str, bytes | None], tuple[str, ...]]] = {}


def _ready_states(provider: Provider) -> tuple[str, ...]:
    """The statuses `ready` lists (open + custom `active`). The warm server parses the
    settings again only when the file's bytes differ from the ones it parsed (a read of a
    small file, not a YAML parse and validation per call)."""
    from gc_polecat.beads.bead import ready_statuses  # lazy: start-up

    store = provider.store()
    if not WARM:
        return tuple(ready_statuses(store.config()))
    path = store.settings_path()
    seen = (str(path), _file_bytes(path))
    hit = _READY_STATES.get(str(store.root))
    if hit is not None and hit[0] == seen:
        return hit[1]
    states = tuple(ready_statuses(store.config()))
    if _file_bytes(path) == seen[1]:  # unchanged while parsed: these states are its own
        if len(_READY_STATES) >= _READY_VIEWS_MAX:
            _READY_STATES.clear()
        _READY_STATES[str(store.root)] = (seen, states)
    return states


def _file_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _wire_by_id(db: Any, listed: list[tuple[str, str]]) -> str | None:
    """`wire_array` of (id, blob) pairs, reading from the catalog only the beads whose wire
    JSON is not cached for that blob; None if one changed under the call (a catalog read
    outside a snapshot): the caller then answers from SQL alone."""
    parts: list[str | None] = []
    missing: list[str] = []
    for bid, blob in listed:
        hit = _WIRE_CACHE.get(bid)
        if hit is not None and hit[0] == blob:
            parts.append(hit[1])
        else:
            parts.append(None)
            missing.append(bid)
    raw: dict[str, str] = {}
    wanted = dict(listed) if missing else {}
    for start in range(0, len(missing), 500):
        chunk = missing[start : start + 500]
        marks = ",".join("?" * len(chunk))
        found = db.execute(f"SELECT id, blob, json FROM beads WHERE id IN ({marks})", chunk)
        raw.update((bid, text) for bid, blob, text in found if blob == wanted[bid])
    for at, (bid, blob) in enumerate(listed):
        if parts[at] is None:
            if bid not in raw:
                return None
            parts[at] = _wire_text(bid, blob, raw[bid])
    return "[" + ", ".join(parts) + "]"  # type: ignore[arg-type]


# --- entry points ----------------------------------------------------------------------------


_NO_BEAD = re.compile(r"^no bead (\S+)$")


def error_message(exc: GcPolecatError) -> str:
    """One line; for a missing bead it says "not found", which is what gc looks for."""
    message = " ".join(str(exc).split())
    if isinstance(exc, NotFound) and not isinstance(exc, NotARepository):
        m = _NO_BEAD.match(message)
        if m:
            return f"bead {m.group(1)} not found"
        if "not found" not in message.lower():
            return f"{message}: not found"
    return message


def run(
    repo: str | None,
    op: str | None,
    args: list[str],
    read_stdin: Callable[[], str],
    env: dict[str, str] | None = None,
    pm: pluggy.PluginManager | None = None,
) -> tuple[int, str, str]:
    """Answer one operation: (exit status, stdout, stderr). Never raises for a failure, so
    that no error can leave with exit 2, the status gc reads as "unknown operation"."""
    if not op:
        return EXIT_FAILED, "", "usage: gc-polecat exec-beads <operation> [args...]"
    handler = OPERATIONS.get(op)
    if handler is None:
        return EXIT_UNKNOWN_OP, "", f"unsupported operation {op!r}"
    provider = Provider(repo, dict(os.environ if env is None else env), read_stdin, pm)
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


def read_stdin_utf8() -> str:
    data = sys.stdin.buffer.read() if sys.stdin is not None else b""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ExecError("stdin is not UTF-8 text") from None


def is_fast_call(argv: list[str]) -> bool:
    """`gc-polecat exec-beads <op> ...` as gc runs it: answered by `main` without click."""
    return len(argv) >= 2 and argv[0] == "exec-beads" and argv[1] in OPERATIONS


def main(argv: list[str]) -> int:
    """`exec-beads <op> [args]` without click or the plugin manager (loaded only if a write
    has observers to tell): gc starts a process per store call, so start-up is the cost."""
    os.umask(os.umask(0o002) | 0o002)  # as cli.private_umask: nothing world-writable
    op, args = argv[1], argv[2:]
    for arg in args:
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            print(f"gc-polecat: error: an argument is not valid UTF-8: {arg!r}", file=sys.stderr)
            return EXIT_FAILED
    status, out, err = run(None, op, args, read_stdin_utf8)
    if out:
        sys.stdout.write(out + "\n")
    if err:
        print(f"gc-polecat: error: {' '.join(err.split())}", file=sys.stderr)
    return status
