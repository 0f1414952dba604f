"""The bead record: bd's key names and value rules, and its YAML file form.

A bead is a plain dict keyed exactly as bd writes its JSON, so the same dict is the YAML file,
the `--json` output and the hook payload. `normalize` is the one gate every bead passes through
before it is written: it checks types and ranges, drops empty values the way bd omits them, and
orders keys so files diff cleanly. Keys we do not model (from a bd import) are kept as they are.
"""

from __future__ import annotations

import datetime as _dt
import io
import math
import re
from typing import Any

from gc_polecat.beads.ids import parse_id
from gc_polecat.errors import BadInput, InvalidBead

Bead = dict[str, Any]

STATUSES = ("open", "in_progress", "blocked", "deferred", "closed", "pinned", "hooked")
BUILTIN_TYPES = (
    "bug", "feature", "task", "epic", "chore", "decision", "message", "molecule", "gate",
    "spike", "story", "milestone", "event",
)  # fmt: skip
ORCHESTRATOR_TYPES = ("agent", "role", "rig", "convoy", "merge-request", "slot", "session")
# The types Gas City requires of every store, city and rigs (gascity
# `internal/doctor/checks_custom_types.go`, RequiredCustomTypes): `gc converge` creates
# `convergence` roots, formulas `spec` beads. Kept in that file's order; check it on upgrades.
GASCITY_TYPES = (
    "molecule", "convoy", "message", "event", "gate", "merge-request", "agent", "role", "rig",
    "session", "spec", "convergence",
)  # fmt: skip
TYPES = tuple(dict.fromkeys(BUILTIN_TYPES + ORCHESTRATOR_TYPES + GASCITY_TYPES))
# bd: internal/utils/strings.go issueTypeAliases, applied wherever bd takes a type
TYPE_ALIASES = {"mr": "merge-request", "feat": "feature", "mol": "molecule",
                "enhancement": "feature", "dec": "decision", "adr": "decision"}  # fmt: skip
# the fields `list --sort` and the policies `ready --sort` take (bd: cmd/bd/list.go, internal/types
# SortPolicy): here, not in interop/bd_verbs.py, so the command line's options need no verbs module
SORT_FIELDS = ("priority", "created", "updated", "closed", "status", "id", "title", "type",
               "assignee")  # fmt: skip
READY_SORTS = ("priority", "hybrid", "oldest")
# bd's own vocabulary is only the default: any status or type of this shape is kept as data
# (bd keeps them as configured custom ones: `status.custom`, `types.custom`). Status names
# follow bd's rule for custom statuses (bd: `internal/types/types.go`, statusNameRegexp);
# types are free-form in bd, so ours only exclude what a list, a shell or YAML could misread.
STATUS_RE = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
TYPE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
AWAIT_TYPES = ("human", "timer", "gh:run", "gh:pr", "bead", "mail")
BLOCKING_DEP_TYPES = ("blocks", "parent-child", "conditional-blocks", "waits-for")
DEP_TYPE_RE = re.compile(r"^[a-z][a-z0-9:_-]{0,63}$")
# bd's cross-project dependency target `external:<project>:<id>`: a reference to a bead of
# another repository. It is kept verbatim and never resolved here (never a path, never looked up).
EXTERNAL_REF_RE = re.compile(
    r"^external:[A-Za-z0-9][A-Za-z0-9_.-]{0,63}:[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
)
# bd's categories of statuses (bd: `internal/types/types.go`, StatusCategory and
# BuiltInStatusCategory): only `open` and custom statuses of category `active` are ready work;
# a custom status without a category is valid but never ready (bd's "unspecified").
STATUS_CATEGORIES = ("active", "wip", "done", "frozen")
MAX_CUSTOM_STATUSES = 50  # bd: maxCustomStatuses
NOT_READY_TYPES = ("gate", "merge-request", "molecule", "message", "agent", "role", "rig")

TEXT_KEYS = ("description", "design", "acceptance_criteria", "notes")
STRING_KEYS = ("assignee", "owner", "created_by", "close_reason", "await_type", "await_id")
TIME_KEYS = ("created_at", "updated_at", "started_at", "closed_at")
# bd's `int ... omitempty` fields we keep verbatim: a 0 there is what bd omits, so it is absent.
OMIT_ZERO_KEYS = ("compaction_level", "original_size")
KEY_ORDER = (
    "id", "title", *TEXT_KEYS, "status", "priority", "issue_type", "assignee", "owner",
    "created_at", "created_by", "updated_at", "started_at", "closed_at", "close_reason",
    "labels", "metadata", "dependencies", "ephemeral", "await_type", "await_id", "timeout",
    "waiters",
)  # fmt: skip
ALWAYS_KEYS = ("id", "title", "priority", "created_at", "updated_at")
MAX_TITLE = 500
MAX_EXTRA_VALUES, MAX_EXTRA_DEPTH = 10_000, 32  # per key we do not model
INT_MIN, INT_MAX = -(2**63), 2**63 - 1  # numbers in keys we do not model: Go's int64, as bd
MAX_FILE_BYTES = 1 << 20  # a bead file larger than 1 MiB is refused unread (and never written)
MAX_NESTING = 128  # collections nested in a bead file; normalize allows about 34
MAX_ALIAS_VALUES = 100_000  # values a file with YAML aliases may expand to
# The stored form of a time: RFC 3339 in UTC, the fraction of a second (up to nanoseconds, as Go
# keeps it) without trailing zeros, which is how bd's Go code writes a time after import.
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{0,8}[1-9])?Z$", re.ASCII)
# Any RFC 3339 time bd parses (bd: Go's time.Time JSON decoding), converted to UTC on import.
RFC3339_RE = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?(?:Z|([+-])(\d\d):(\d\d))$",
    re.ASCII,  # `\d` is 0-9 only: Go reads no other digit
)


def now() -> str:
    """The current time in bd's format: RFC 3339, UTC, second precision."""
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _name_list(value: Any) -> list[str]:
    """bd's list syntax: a comma-separated string (or a JSON array in one), or a YAML list."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import json

            try:
                value = json.loads(text)
            except ValueError:
                raise BadInput(f"not a JSON array of names: {value!r}") from None
        else:
            return [part.strip() for part in text.split(",") if part.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadInput(f"must be a comma-separated string or a list of names, not {value!r}")
    return [v.strip() for v in value if v.strip()]


def custom_types(value: Any) -> tuple[str, ...]:
    """The `types.custom` setting: type names, each of the shape any stored type has."""
    names = _name_list(value)
    for name in names:
        if not TYPE_RE.fullmatch(name):
            raise BadInput(f"invalid type name {name!r}")
    return tuple(dict.fromkeys(names))


def custom_statuses(value: Any) -> tuple[tuple[str, str | None], ...]:
    """The `status.custom` setting as (name, category or None), by bd's rules (bd:
    `internal/types/types.go`, ParseCustomStatusConfig): lowercase names, no built-in one, no
    duplicate, at most 50, a category one of active, wip, done, frozen."""
    out: dict[str, str | None] = {}
    for part in _name_list(value):
        name, colon, category = part.partition(":")
        if colon and category not in STATUS_CATEGORIES:
            raise BadInput(f"invalid category {category!r} for status {name!r}: one of "
                           f"{', '.join(STATUS_CATEGORIES)}")  # fmt: skip
        if not STATUS_RE.fullmatch(name):
            raise BadInput(f"invalid status name {name!r}: lowercase, letter first")
        if name in STATUSES or name in out:
            raise BadInput(f"status {name!r} is built in or listed twice")
        out[name] = category if colon else None
    if len(out) > MAX_CUSTOM_STATUSES:
        raise BadInput(f"too many custom statuses ({len(out)}): at most {MAX_CUSTOM_STATUSES}")
    return tuple(out.items())


def ready_statuses(config: dict[str, Any]) -> frozenset[str]:
    """The statuses whose beads are ready work: `open`, and each configured custom status of
    category `active` (bd: `internal/storage/schema/views.go`, the ready_issues view)."""
    custom = config.get("status.custom", ())
    return frozenset(("open", *(name for name, category in custom if category == "active")))


def metadata(bead: Bead) -> dict[str, str]:
    """A copy of the bead's metadata, to read or to change and write back."""
    return dict(bead.get("metadata", {}))


def meta_int(bead: Bead, key: str, default: int) -> int:
    """A whole number kept in string metadata (attempts, epochs, counters). A malformed value
    (a hand edit) is bad input naming the bead and key, not an internal error."""
    raw = bead.get("metadata", {}).get(key)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise _fail(bead["id"], f"metadata.{key}", f"must be a whole number, not {raw!r}") from None


def _fail(bead_id: str, key: str, problem: str) -> InvalidBead:
    return InvalidBead(f"bead {bead_id}: {key} {problem}")


def _check_time(bid: str, key: str, value: Any) -> str:
    """Any RFC 3339 time, returned in the stored form (UTC, sub-second digits kept)."""
    if isinstance(value, _dt.datetime):  # an unquoted timestamp in a hand-edited file
        if value.tzinfo is not None:
            value = value.astimezone(_dt.UTC).replace(tzinfo=None)
        value = value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    m = RFC3339_RE.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        raise _fail(bid, key, f"must be an RFC 3339 time like 2026-04-18T16:19:12Z, not {value!r}")
    try:
        return canonical_time(m)
    except (ValueError, OverflowError):
        raise _fail(bid, key, f"is not a real time: {value!r}") from None


def canonical_time(m: re.Match[str]) -> str:
    """A matched RFC 3339 time in UTC, fraction truncated to nanoseconds as Go parses it, trailing
    zeros dropped as Go's RFC3339Nano writes it. ValueError/OverflowError for impossible times."""
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m = m.groups()
    moment = _dt.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second))
    if sign is None and (fraction is None or (len(fraction) <= 9 and fraction[-1] != "0")):
        return m.group(0)  # already the stored form (a real time: checked just above)
    if sign is not None:
        if int(off_h) > 23 or int(off_m) > 59:
            raise ValueError("offset out of range")
        offset = _dt.timedelta(hours=int(off_h), minutes=int(off_m))
        moment = moment - offset if sign == "+" else moment + offset
    digits = (fraction or "")[:9].rstrip("0")
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:"
        f"{moment.minute:02d}:{moment.second:02d}{'.' + digits if digits else ''}Z"
    )


def time_key(value: str) -> str:
    """A stored time as a string that sorts by instant: stored times are UTC, but `12Z` sorts
    after `12.5Z` as text, so the fraction is padded to nanoseconds first."""
    whole, _, fraction = value[:-1].partition(".")
    return f"{whole}.{fraction:0<9}"


def parse_time(value: str) -> _dt.datetime:
    """A stored (or any RFC 3339) time as an aware datetime, to the microsecond."""
    m = RFC3339_RE.fullmatch(value)
    if m is None:
        raise ValueError(f"not an RFC 3339 time: {value!r}")
    text = canonical_time(m)
    whole, _, fraction = text[:-1].partition(".")
    moment = _dt.datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=_dt.UTC)
    return moment.replace(microsecond=int((fraction + "000000")[:6]))


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


def is_external_ref(target: Any) -> bool:
    """True for bd's `external:<project>:<id>` dependency targets (beads of another repository)."""
    return isinstance(target, str) and EXTERNAL_REF_RE.fullmatch(target) is not None


DEP_KEYS = ("issue_id", "depends_on_id", "type", "created_at", "created_by", "metadata")
DEP_TEXT_KEYS = ("created_by", "metadata", "thread_id")  # bd's `string ... omitempty` fields


def _check_dependencies(bid: str, value: Any) -> list[dict[str, Any]]:
    """bd's Dependency records (bd: `internal/types/types.go`, Dependency): an empty issue_id
    means this bead (bd: `internal/storage/issueops/create.go`, PersistDependencies), empty
    optional strings are absent, and keys we do not model are kept verbatim."""
    if not isinstance(value, list):
        raise _fail(bid, "dependencies", "must be a list")
    deps: dict[tuple[str, str], dict[str, Any]] = {}
    for dep in value:
        if not isinstance(dep, dict):
            raise _fail(bid, "dependencies", "entries must be mappings")
        if dep.get("issue_id") not in (bid, None, ""):
            raise _fail(
                bid, "dependencies", f"entry issue_id must be {bid}, not {dep.get('issue_id')!r}"
            )
        target = dep.get("depends_on_id")
        if not is_external_ref(target):
            try:
                parse_id(target)
            except BadInput as exc:
                raise _fail(
                    bid, "dependencies", f"depends_on_id: {exc} (or external:<project>:<id>)"
                ) from None
        dtype = dep.get("type")
        if not isinstance(dtype, str) or not DEP_TYPE_RE.fullmatch(dtype):
            raise _fail(bid, "dependencies", f"type must be a dependency type, not {dtype!r}")
        clean = {
            "issue_id": bid,
            "depends_on_id": target,
            "type": dtype,
            "created_at": _check_time(bid, "dependencies.created_at", dep.get("created_at")),
        }
        for key in DEP_TEXT_KEYS:
            if dep.get(key) not in (None, ""):
                clean[key] = _check_str(bid, f"dependencies.{key}", dep[key])
        for key in sorted(k for k in dep if k not in DEP_KEYS and k not in DEP_TEXT_KEYS):
            if not isinstance(key, str):
                raise _fail(bid, "dependencies", f"entry has an invalid key {key!r}")
            if not _empty(dep[key]):
                clean[key] = _check_json(bid, f"dependencies.{key}", dep[key])
        deps[(target, dtype)] = clean
    return list(deps.values())


def _check_json(bid: str, key: str, value: Any) -> Any:
    """A key we do not model is kept verbatim, so it must be JSON data (it is the `--json`
    output and the hook payload too), and bounded: YAML anchors could make a small file expand
    to billions of values ("billion laughs"), and deep nesting would exhaust the stack."""
    budget, stack = MAX_EXTRA_VALUES, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        budget -= 1
        if budget < 0 or depth > MAX_EXTRA_DEPTH:
            raise _fail(bid, key, f"is too large (at most {MAX_EXTRA_VALUES} values, nested "
                                  f"{MAX_EXTRA_DEPTH} deep)")  # fmt: skip
        kind = type(item)
        if kind is dict:
            for k, v in item.items():
                if type(k) is not str:
                    raise _fail(bid, key, f"has a key that is not a string: {k!r}")
                stack.append((v, depth + 1))
        elif kind is list:
            stack.extend((v, depth + 1) for v in item)
        elif kind is float and not math.isfinite(item):
            raise _fail(bid, key, f"holds {item}, not a JSON number (NaN and Infinity are refused)")
        elif kind is int and not INT_MIN <= item <= INT_MAX:
            raise _fail(bid, key, "holds an integer out of range (at most 64 bits)")
        elif kind not in (str, int, float, bool) and item is not None:
            raise _fail(bid, key, f"holds a {kind.__name__}, not JSON data")
    return value


_TEXT_AND_STRING_KEYS = TEXT_KEYS + STRING_KEYS
_KEY_SET = frozenset(KEY_ORDER)


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
    for key in _TEXT_AND_STRING_KEYS:
        if not _empty(raw.get(key)):
            out[key] = _check_str(bid, key, raw[key])
    status = raw.get("status", "open")
    if status not in STATUSES and not (isinstance(status, str) and STATUS_RE.fullmatch(status)):
        raise _fail(
            bid, "status", f"must be a status name ({', '.join(STATUSES)}, ...), not {status!r}"
        )
    out["status"] = status
    out["priority"] = _check_int(bid, "priority", raw.get("priority", 2), 0, 4)
    itype = raw.get("issue_type", "task")
    if itype not in TYPES and not (isinstance(itype, str) and TYPE_RE.fullmatch(itype)):
        raise _fail(bid, "issue_type", f"must be a type name ({', '.join(BUILTIN_TYPES)}, ...), "
                                       f"not {itype!r}")  # fmt: skip
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
    extra = set(raw) - _KEY_SET
    for key in extra:
        if not isinstance(key, str):  # before sorting: keys of mixed types do not sort
            raise InvalidBead(f"bead {bid}: invalid key {key!r}")
    for key in sorted(extra):
        if not _empty(raw[key]) and not (key in OMIT_ZERO_KEYS and raw[key] == 0):
            out[key] = _check_json(bid, key, raw[key])  # kept verbatim: a bd field we do not model
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


def _dump_ruamel(bead: Bead) -> bytes:
    """The reference serializer: ruamel.yaml, used for anything the fast emitter declines."""
    buf = io.StringIO()
    _yaml_engine().dump(bead, buf)
    return buf.getvalue().encode("utf-8")


def dump(bead: Bead) -> bytes:
    """The canonical file content of a normalized bead.

    A hand-rolled emitter writes the bead schema in the exact layout ruamel produces, about ten
    times faster (this is on every committed write). Whatever it is not sure about sends the
    whole bead through ruamel instead, so odd values cost time, never correctness.
    """
    try:
        out = _emit_bead(bead).encode("utf-8")
    except _Unsupported:
        out = _dump_ruamel(bead)
    if len(out) > MAX_FILE_BYTES:  # `load` would refuse it: never write what cannot be read
        raise InvalidBead(f"bead {bead.get('id')}: larger than {MAX_FILE_BYTES} bytes as a file")
    return out


# --- the fast emitter ---
#
# It mirrors what ruamel's libyaml emitter does with our representer settings (block style,
# indentless sequences, `|` for text with line breaks, width 4096), restricted to what we can
# state exactly: mappings and lists two levels deep holding str, int and bool. Plain scalars
# are emitted only for a strict safe pattern, so a few odd strings are quoted where ruamel
# would not quote them; both forms load back to the same string.


class _Unsupported(Exception):
    """Raised for any value the fast emitter declines; `dump` then falls back to ruamel."""


_INDENT = 2
_MAX_INLINE = 3800  # libyaml folds quoted/plain lines past 4096 columns; leave that to ruamel
_MAX_KEY_BYTES = 120  # libyaml writes keys over 128 bytes in the `? key` form
_BMP_END = "\uffff"
_NUMBER_START = frozenset("0123456789._")
_PLAIN_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ/($~")
# The keys gc-polecat itself writes: plain identifiers, no analysis needed.
_KNOWN_KEYS = {key: key for key in (*KEY_ORDER, "issue_id", "depends_on_id", "type")}
# Strings YAML 1.1 or 1.2 resolves to bool, null, merge or value; compared in lower case.
_KEYWORDS = frozenset(("y", "n", "yes", "no", "true", "false", "on", "off", "null", "~", "<<", "="))
# A superset of YAML 1.1/1.2 ints, floats (.inf, .nan, 1e3, 1_000, 0x1F, 0o17, 1:20) and dates;
# `_12` is quoted too although ruamel and PyYAML only try numbers after a digit, sign or dot.
_NUMBER_LIKE = re.compile(
    r"[-+]?(?:[0-9][\w.:+-]*|\.[0-9_.][\w.:+-]*|\.|\.(?:inf|nan)|_[0-9_.:eE+-]*)",
    re.IGNORECASE | re.ASCII,
)
_DATE_PREFIX = re.compile(r"[0-9]{4}-")  # timestamps may contain spaces: quote every date
# A time as `normalize` stores it: number-like, so always single-quoted; unique to each bead,
# so written without the scalar cache (where thousands of them would crowd out the repeats).
_STORED_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?Z")
_TIME_KEY_SET = frozenset(TIME_KEYS)
# Ids, statuses, timestamps, labels and keys repeat across beads: remember their rendering.
_SCALAR_CACHE: dict[str, str] = {}
_CACHE_SIZE = 4096
_CACHE_TEXT_LEN = 80
_ESCAPES = {
    "\0": "\\0", "\x07": "\\a", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\v": "\\v", "\f": "\\f",
    "\r": "\\r", "\x1b": "\\e", '"': '\\"', "\\": "\\\\",
}  # fmt: skip


def _emit_bead(bead: Bead) -> str:
    """The YAML text of a bead, or _Unsupported when any part is outside the fast schema."""
    if type(bead) is not dict or not bead:
        raise _Unsupported
    lines: list[str] = []
    known_keys = _KNOWN_KEYS
    for key, value in bead.items():
        # the common entry, `known_key: one-line string`, written here without the general
        # path's calls (the same text: `_emit_entry` would write exactly this)
        known = known_keys.get(key) if type(key) is str else None
        if known is not None and type(value) is str and "\n" not in value:
            if known in _TIME_KEY_SET and _STORED_TIME.fullmatch(value):
                lines.append(known + ": '" + value + "'")  # what `_quote` makes of a date
            else:
                lines.append(known + ": " + _single_line(value))
        else:
            _emit_entry(lines, "", 0, key, value, nested=True)
    lines.append("")
    return "\n".join(lines)


def _emit_entry(
    lines: list[str], prefix: str, indent: int, key: Any, value: Any, nested: bool
) -> None:
    """Append `key: value` at column `indent`; `prefix` replaces the indentation (for `- `)."""
    head = (prefix or " " * indent) + _key(key) + ":"
    kind = type(value)
    if kind is list and nested and value:
        lines.append(head)
        for item in value:
            _emit_item(lines, indent, item)
    elif kind is dict and nested and value:
        lines.append(head)
        for sub_key, sub_value in value.items():
            _emit_entry(lines, "", indent + _INDENT, sub_key, sub_value, nested=False)
    else:
        lines.append(head + " " + _scalar(value, indent))


def _emit_item(lines: list[str], indent: int, item: Any) -> None:
    """Append one item of a block sequence (written at its parent's indentation, as ruamel)."""
    dash = " " * indent + "- "
    if type(item) is dict and item:
        inner = indent + _INDENT
        for n, (key, value) in enumerate(item.items()):
            _emit_entry(lines, dash if n == 0 else "", inner, key, value, nested=False)
    else:
        lines.append(dash + _scalar(item, indent))


def _scalar(value: Any, indent: int) -> str:
    """A scalar value as written after `key: ` or `- ` (literal blocks span several lines)."""
    kind = type(value)
    if kind is str:
        if "\n" in value:
            return _multi_line(value, indent + _INDENT)
        return _single_line(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is int and value.bit_length() <= 64:
        return str(value)
    raise _Unsupported  # float, None, datetime, deeper nesting, subclasses, huge ints


def _key(key: Any) -> str:
    """A mapping key: short, single-line, plain or single-quoted, as libyaml writes simple keys."""
    known = _KNOWN_KEYS.get(key) if type(key) is str else None
    if known is not None:
        return known
    if type(key) is not str:
        raise _Unsupported
    if len(key) * 4 > _MAX_KEY_BYTES and len(key.encode("utf-8")) > _MAX_KEY_BYTES:
        raise _Unsupported
    text = _single_line(key)
    if text[0] == '"':  # control characters or line breaks: ruamel's `? key` territory
        raise _Unsupported
    return text


def _is_safe_text(text: str) -> bool:
    """True for text of printable BMP characters only (no controls, tabs, breaks, BOM, NBSP).

    str.isprintable rejects C0/C1 controls, U+0085, U+2028/9, U+FEFF, non-ASCII spaces,
    surrogates and unassigned code points: everything whose YAML treatment we do not pin down.
    """
    return text.isprintable() and (text.isascii() or max(text) <= _BMP_END)


def _single_line(text: str) -> str:
    """A one-line string: plain when provably a string, else single- or double-quoted."""
    out = _SCALAR_CACHE.get(text)
    if out is None:
        out = _quote(text)
        if len(text) <= _CACHE_TEXT_LEN:
            if len(_SCALAR_CACHE) >= _CACHE_SIZE:
                _SCALAR_CACHE.clear()
            _SCALAR_CACHE[text] = out
    return out


def _quote(text: str) -> str:
    """Choose the style for a one-line string (uncached)."""
    if not _is_safe_text(text):
        return _double_quoted(text)
    out = text if _is_plain_safe(text) else "'" + text.replace("'", "''") + "'"
    if len(out) > _MAX_INLINE:
        raise _Unsupported
    return out


def _is_plain_safe(text: str) -> bool:
    """True when `text` may be written unquoted and still load as this very string.

    Called on safe text only. The pattern is stricter than YAML's: no indicator or space at the
    start, no `: `, ` #`, trailing colon or space, and nothing any YAML 1.1/1.2 resolver could
    read as a bool, null, number or date.
    """
    first = text[:1]
    if first in _NUMBER_START:
        if _NUMBER_LIKE.fullmatch(text) or _DATE_PREFIX.match(text) or text.startswith("..."):
            return False
    elif first not in _PLAIN_START and (not first or first.isascii()):
        return False
    if text[-1] in " :" or ": " in text or " #" in text:
        return False
    return len(text) > 5 or text.lower() not in _KEYWORDS


def _multi_line(text: str, indent: int) -> str:
    """Text with line breaks: a literal block when libyaml allows one, else double-quoted."""
    flat = text.replace("\n", "")
    if not _is_safe_text(flat) or text[-1] == " " or " \n" in text:
        return _double_quoted(text)  # trailing spaces on a line do not survive a literal block
    header = "|"
    if text[0] in " \n":
        header += str(_INDENT)  # an indentation indicator, else the first line sets the indent
    if not text.endswith("\n"):
        header += "-"
        body = text
    elif text.endswith("\n\n") or text == "\n":
        header += "+"
        body = text[:-1]
    else:
        body = text[:-1]
    pad = " " * indent
    return header + "\n" + "\n".join(pad + line if line else "" for line in body.split("\n"))


def _double_quoted(text: str) -> str:
    """A double-quoted scalar with YAML escapes, on one line; _Unsupported for unsure chars."""
    parts = ['"']
    for ch in text:
        if ch in _ESCAPES:
            parts.append(_ESCAPES[ch])
        elif ch.isprintable() and ch <= _BMP_END:
            parts.append(ch)
        elif ch < "\xa0" and ch != "\x85":  # the remaining C0 and C1 controls and DEL
            parts.append(f"\\x{ord(ch):02X}")
        else:
            raise _Unsupported
    parts.append('"')
    out = "".join(parts)
    if len(out) > _MAX_INLINE:
        raise _Unsupported
    return out


# --- loading ---
#
# libyaml's composer (ruamel's C loader) recurses once per nested collection with no limit: a
# 100 KB file of `[` crashed every process that parsed it (SIGSEGV), and its scanner is quadratic
# in the flow depth, so a deep file must be refused before it is parsed, not after. The size is
# capped first; then a cheap bound on the nesting, from the raw bytes, clears every ordinary
# file; the rest are scanned token by token, stopping as soon as the depth passes the limit.
# docs/formats.md ("Limits on bead files") states the rules.

# Where a block collection can start on a line: after the indentation and any compact `- `,
# `? `, `: ` or `--- ` indicators. A new block level needs a deeper such column.
_LINE_LEAD = re.compile(rb"^[ \t]*(?:(?:---|[-?:])[ \t]+)*[^ \t\n]", re.M)
# What the bound does not model: line breaks other than \n (YAML also breaks at \r, NEL,
# LS, PS) and anchors (aliases can nest and multiply what they refer to).
_NEEDS_SCAN = re.compile(rb"\r|\xc2\x85|\xe2\x80[\xa8\xa9]|&[^\s,\[\]{}]")


# The hot path: with at most _FAST_FLOW of flow nesting and no line whose first _FAST_COLUMN
# characters are all blanks or indicators (the only way its content can start that far right),
# the bound is at most _FAST_FLOW + 2 * _FAST_COLUMN = MAX_NESTING.
_FAST_FLOW = MAX_NESTING // 4
_FAST_COLUMN = (MAX_NESTING - _FAST_FLOW) // 2
_DEEP_LINE = re.compile(rb"^[ \t?:-]{%d}" % _FAST_COLUMN, re.M)


def _surely_shallow(data: bytes) -> bool:
    """`_nesting_bound(data) <= MAX_NESTING`, answered for ordinary files by one regex search."""
    if 2 * data.count(b"[") + data.count(b"{") <= _FAST_FLOW and not _DEEP_LINE.search(data):
        return True
    return _nesting_bound(data) <= MAX_NESTING


def _nesting_bound(data: bytes) -> int:
    """An upper bound on how deep the collections of `data` nest, never below the truth.

    Every flow level opens with `[` or `{`, and a `[` may hold single-pair mappings with no
    brace of their own (`[k: [k: v]]`): two levels for each `[`. Every block level starts at a
    column deeper than its parent's (an indentless sequence shares its mapping's column: two
    levels a column), and that column is where a line's content starts, after any compact
    indicators.
    """
    flow = 2 * data.count(b"[") + data.count(b"{")
    if flow > MAX_NESTING:
        return flow
    column = max(map(len, _LINE_LEAD.findall(data)), default=1) - 1
    return flow + 2 * (column + 1)


def _scan_depth(text: str, where: str) -> bool:
    """Scan the tokens of `text` (no composing, so no recursion), refusing it as soon as its
    nesting could pass MAX_NESTING; True if it uses aliases. Cost: about a quarter of a load."""
    from ruamel.yaml import tokens

    opens = (tokens.FlowSequenceStartToken, tokens.FlowMappingStartToken)
    closes = (tokens.FlowSequenceEndToken, tokens.FlowMappingEndToken)
    blocks = (tokens.BlockSequenceStartToken, tokens.BlockMappingStartToken)
    flow = block = 0
    aliases = False
    for token in _tokens(text):
        kind = type(token)
        if kind in opens:
            flow += 1
        elif kind in closes:
            flow -= 1
        elif kind in blocks:
            block += 1
        elif kind is tokens.BlockEndToken:
            block -= 1
        elif kind is tokens.AliasToken:
            aliases = True
        # 2x: single-pair mappings in `[...]` and indentless sequences have no start token
        if 2 * (flow + block) > MAX_NESTING:
            raise InvalidBead(f"{where}: nested deeper than {MAX_NESTING} levels")
    return aliases


def _tokens(text: str):  # noqa: ANN202 - an iterator of ruamel tokens
    """The YAML tokens of `text`, from libyaml's scanner when present (a loop, not recursion)."""
    try:
        from _ruamel_yaml import CParser
    except ImportError:  # pragma: no cover - ruamel.yaml.clib missing
        from ruamel.yaml import YAML

        yield from YAML(typ="safe", pure=True).scan(text)
        return
    parser = CParser(text)
    try:
        while (token := parser.get_token()) is not None:
            yield token
    finally:
        parser.dispose()


def _check_expansion(value: Any, where: str) -> None:
    """Refuse a file whose aliases build a structure too large or too deep to handle (a
    "billion laughs" in any key, not only in the ones normalize walks itself)."""
    budget, stack = MAX_ALIAS_VALUES, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        budget -= 1
        if budget < 0 or depth > MAX_NESTING:
            raise InvalidBead(
                f"{where}: YAML aliases expand past {MAX_ALIAS_VALUES} values or "
                f"{MAX_NESTING} levels"
            )
        if type(item) is dict:
            stack.extend((v, depth + 1) for pair in item.items() for v in pair)
        elif type(item) in (list, tuple, set):
            stack.extend((v, depth + 1) for v in item)


def _parse(data: bytes, where: str) -> Any:
    """The YAML document in `data`, refused unparsed if it is too large or too deep."""
    if len(data) > MAX_FILE_BYTES:
        raise InvalidBead(f"{where}: larger than {MAX_FILE_BYTES} bytes ({len(data)})")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidBead(f"{where}: not UTF-8 text") from None
    try:
        aliases = False
        if _NEEDS_SCAN.search(data) or not _surely_shallow(data):
            aliases = _scan_depth(text, where)
        raw = _yaml_engine().load(text)
    except InvalidBead:
        raise
    except Exception as exc:  # noqa: BLE001 - any parser failure is this file's problem
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidBead(f"{where}: malformed YAML: {first}") from None
    if aliases:
        _check_expansion(raw, where)
    return raw


def load(data: bytes, where: str) -> Bead:
    """Parse and validate a bead file; InvalidBead names `where` and the problem."""
    raw = _parse(data, where)
    try:
        return normalize(raw)
    except InvalidBead as exc:
        raise InvalidBead(f"{where}: {exc}") from None
