"""The bead record: bd's key names and value rules, and its YAML file form.

A bead is a plain dict keyed exactly as bd writes its JSON, so the same dict is the YAML file,
the `--json` output and the hook payload. `normalize` is the one gate every bead passes through
before it is written: it checks types and ranges, drops empty values the way bd omits them, and
orders keys so files diff cleanly. Keys we do not model (from a bd import) are kept as they are.
"""

from __future__ import annotations

import datetime as _dt
import io
import re
from typing import Any

from .errors import BadInput, InvalidBead
from .ids import parse_id

Bead = dict[str, Any]

STATUSES = ("open", "in_progress", "blocked", "deferred", "closed", "pinned", "hooked")
BUILTIN_TYPES = (
    "bug", "feature", "task", "epic", "chore", "decision", "message", "molecule", "gate",
    "spike", "story", "milestone", "event",
)  # fmt: skip
ORCHESTRATOR_TYPES = ("agent", "role", "rig", "convoy", "merge-request", "slot", "session")
TYPES = BUILTIN_TYPES + ORCHESTRATOR_TYPES
AWAIT_TYPES = ("human", "timer", "gh:run", "gh:pr", "bead", "mail")
BLOCKING_DEP_TYPES = ("blocks", "parent-child", "conditional-blocks", "waits-for")
DEP_TYPE_RE = re.compile(r"^[a-z][a-z0-9:_-]{0,63}$")
NOT_READY_TYPES = ("gate", "merge-request", "molecule", "message", "agent", "role", "rig")

TEXT_KEYS = ("description", "design", "acceptance_criteria", "notes")
STRING_KEYS = ("assignee", "owner", "created_by", "close_reason", "await_type", "await_id")
TIME_KEYS = ("created_at", "updated_at", "started_at", "closed_at")
KEY_ORDER = (
    "id", "title", *TEXT_KEYS, "status", "priority", "issue_type", "assignee", "owner",
    "created_at", "created_by", "updated_at", "started_at", "closed_at", "close_reason",
    "labels", "metadata", "dependencies", "ephemeral", "await_type", "await_id", "timeout",
    "waiters",
)  # fmt: skip
ALWAYS_KEYS = ("id", "title", "priority", "created_at", "updated_at")
MAX_TITLE = 500
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def now() -> str:
    """The current time in bd's format: RFC 3339, UTC, second precision."""
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fail(bead_id: str, key: str, problem: str) -> InvalidBead:
    return InvalidBead(f"bead {bead_id}: {key} {problem}")


def _check_time(bid: str, key: str, value: Any) -> str:
    if isinstance(value, _dt.datetime):  # an unquoted timestamp in a hand-edited file
        if value.tzinfo is not None:
            value = value.astimezone(_dt.UTC).replace(tzinfo=None)
        value = value.strftime("%Y-%m-%dT%H:%M:%SZ")
    if not isinstance(value, str) or not TIME_RE.fullmatch(value):
        raise _fail(
            bid, key, f"must be an RFC 3339 UTC time like 2026-04-18T16:19:12Z, not {value!r}"
        )
    try:
        _dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        raise _fail(bid, key, f"is not a real time: {value!r}") from None
    return value


def _check_str(bid: str, key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _fail(bid, key, f"must be a string, not {type(value).__name__}")
    return value


def _check_str_list(bid: str, key: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _fail(bid, key, "must be a list of non-empty strings")
    return list(dict.fromkeys(value))


def _check_int(bid: str, key: str, value: Any, lo: int, hi: int | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(bid, key, f"must be an integer, not {value!r}")
    if value < lo or (hi is not None and value > hi):
        bound = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise _fail(bid, key, f"must be {bound}, not {value}")
    return value


def _check_metadata(bid: str, value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _fail(bid, "metadata", "must be a mapping of strings")
    for k, v in value.items():
        if not isinstance(k, str) or not k:
            raise _fail(bid, "metadata", f"has an invalid key {k!r}")
        if not isinstance(v, str):
            raise _fail(bid, f"metadata.{k}", f"must be a string, not {type(v).__name__}")
    return dict(sorted(value.items()))


def _check_dependencies(bid: str, value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise _fail(bid, "dependencies", "must be a list")
    deps: dict[tuple[str, str], dict[str, Any]] = {}
    for dep in value:
        if not isinstance(dep, dict):
            raise _fail(bid, "dependencies", "entries must be mappings")
        if dep.get("issue_id") != bid:
            raise _fail(
                bid, "dependencies", f"entry issue_id must be {bid}, not {dep.get('issue_id')!r}"
            )
        try:
            parse_id(dep.get("depends_on_id"))
        except BadInput as exc:
            raise _fail(bid, "dependencies", f"depends_on_id: {exc}") from None
        dtype = dep.get("type")
        if not isinstance(dtype, str) or not DEP_TYPE_RE.fullmatch(dtype):
            raise _fail(bid, "dependencies", f"type must be a dependency type, not {dtype!r}")
        clean = {
            "issue_id": bid,
            "depends_on_id": dep["depends_on_id"],
            "type": dtype,
            "created_at": _check_time(bid, "dependencies.created_at", dep.get("created_at")),
        }
        for key in ("created_by", "metadata"):
            if dep.get(key) not in (None, ""):
                clean[key] = _check_str(bid, f"dependencies.{key}", dep[key])
        extra = set(dep) - {
            "issue_id",
            "depends_on_id",
            "type",
            "created_at",
            "created_by",
            "metadata",
        }
        if extra:
            raise _fail(bid, "dependencies", f"entry has unknown keys {sorted(extra)}")
        deps[(clean["depends_on_id"], dtype)] = clean
    return list(deps.values())


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {} or value is False


def normalize(raw: Any) -> Bead:
    """Validate a bead and return it in canonical form (key order, empties dropped)."""
    if not isinstance(raw, dict):
        raise InvalidBead(f"a bead must be a mapping, not {type(raw).__name__}")
    bid = raw.get("id")
    try:
        parse_id(bid)
    except Exception as exc:
        raise InvalidBead(str(exc)) from None
    out: Bead = {"id": bid}
    title = raw.get("title")
    if not isinstance(title, str) or not title.strip():
        raise _fail(bid, "title", "is required")
    if len(title) > MAX_TITLE:
        raise _fail(bid, "title", f"is longer than {MAX_TITLE} characters")
    out["title"] = title
    for key in TEXT_KEYS + STRING_KEYS:
        if not _empty(raw.get(key)):
            out[key] = _check_str(bid, key, raw[key])
    status = raw.get("status", "open")
    if status not in STATUSES:
        raise _fail(bid, "status", f"must be one of {', '.join(STATUSES)}, not {status!r}")
    out["status"] = status
    out["priority"] = _check_int(bid, "priority", raw.get("priority", 2), 0, 4)
    itype = raw.get("issue_type", "task")
    if itype not in TYPES:
        raise _fail(bid, "issue_type", f"must be one of {', '.join(TYPES)}, not {itype!r}")
    out["issue_type"] = itype
    for key in TIME_KEYS:
        if not _empty(raw.get(key)):
            out[key] = _check_time(bid, key, raw[key])
    for key in ("created_at", "updated_at"):
        if key not in out:
            raise _fail(bid, key, "is required")
    if (status == "closed") != ("closed_at" in out):
        raise _fail(bid, "closed_at", "must be set exactly when status is closed")
    if not _empty(raw.get("labels")):
        out["labels"] = _check_str_list(bid, "labels", raw["labels"])
    if not _empty(raw.get("metadata")):
        out["metadata"] = _check_metadata(bid, raw["metadata"])
    if not _empty(raw.get("dependencies")):
        out["dependencies"] = _check_dependencies(bid, raw["dependencies"])
    if raw.get("ephemeral") not in (None, False):
        if raw["ephemeral"] is not True:
            raise _fail(bid, "ephemeral", "must be true or false")
        out["ephemeral"] = True
    if "await_type" in out and out["await_type"] not in AWAIT_TYPES:
        raise _fail(bid, "await_type", f"must be one of {', '.join(AWAIT_TYPES)}")
    if raw.get("timeout") not in (None, 0):
        out["timeout"] = _check_int(bid, "timeout", raw["timeout"], 0, None)
    if not _empty(raw.get("waiters")):
        out["waiters"] = _check_str_list(bid, "waiters", raw["waiters"])
    for key in sorted(set(raw) - set(KEY_ORDER)):
        if not isinstance(key, str):
            raise InvalidBead(f"bead {bid}: invalid key {key!r}")
        if not _empty(raw[key]):
            out[key] = raw[key]  # kept verbatim: a bd field we do not model
    return {k: out[k] for k in KEY_ORDER if k in out} | {
        k: v for k, v in out.items() if k not in KEY_ORDER
    }


# --- YAML -------------------------------------------------------------------------------

_yaml = None


def _yaml_engine():  # noqa: ANN202 - ruamel is imported lazily to keep CLI start-up lean
    global _yaml
    if _yaml is None:
        from ruamel.yaml import YAML
        from ruamel.yaml.representer import SafeRepresenter

        try:
            engine = YAML(typ="safe", pure=False)
        except Exception:  # pragma: no cover - ruamel.yaml.clib missing
            engine = YAML(typ="safe", pure=True)
        engine.default_flow_style = False
        engine.sort_base_mapping_type_on_output = False
        engine.width = 4096
        engine.allow_unicode = True

        def text(rep: SafeRepresenter, data: str):  # noqa: ANN202
            style = "|" if "\n" in data else None
            return rep.represent_scalar("tag:yaml.org,2002:str", data, style=style)

        engine.representer.add_representer(str, text)
        _yaml = engine
    return _yaml


def dump(bead: Bead) -> bytes:
    """The canonical file content of a normalized bead."""
    buf = io.StringIO()
    _yaml_engine().dump(bead, buf)
    return buf.getvalue().encode("utf-8")


def load(data: bytes, where: str) -> Bead:
    """Parse and validate a bead file; InvalidBead names `where` and the problem."""
    try:
        raw = _yaml_engine().load(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidBead(f"{where}: not UTF-8 text") from None
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidBead(f"{where}: malformed YAML: {first}") from None
    try:
        return normalize(raw)
    except InvalidBead as exc:
        raise InvalidBead(f"{where}: {exc}") from None
