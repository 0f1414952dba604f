"""Repository settings, read by one YAML parser and checked so a typo is an error, not a default.

Where they live (docs/formats.md, "Settings"): `.beads/gc-polecat.yaml` when it exists (a bd
project: bd never reads that file), else `.beads/config.yaml` (a repository of our own, where
bd's and Gas City's keys are ignored so the file can be shared with them).

| key | default | meaning |
|---|---|---|
| `prefix` | `gc` | ID prefix of new beads |
| `max_attempts` | 3 | submission attempts per work item before it escalates |
| `wait_ttl` | `2h` | how long a wait for a verdict lives before it expires |
| `delivery_timeout` | `30s` | a ready wait not delivered by then is woken again by the controller |
| `submission_ttl` | `24h` | an unjudged submission whose wait has ended is withdrawn then |
| `types.custom` | none | issue types beyond bd's built-in ones, bd's syntax (`parse_custom`) |
| `status.custom` | none | statuses beyond bd's built-in ones, `name[:category]` (`parse_custom`) |

Sections owned by other layers are parsed by the module that owns them, registered through the
`gc_polecat_settings_sections` hook rather than imported here: `pools` (`gc_polecat/pool/
config.py`) and `refinery` (`gc_polecat/refinery/config.py`), both registered by
builtin/settings_sections.py. A plugin may add its own section the same way.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from gc_polecat.errors import BadInput

CONFIG_PATH = ".beads/config.yaml"  # ours in a repository of our own; bd's in a bd project
OWN_CONFIG_PATH = ".beads/gc-polecat.yaml"  # ours alone: bd never reads it
DEFAULT_PREFIX = "gc"
MAX_CONFIG_BYTES = 1 << 20  # settings are a few lines; a megabyte is a mistake or an attack
DURATION_RE = re.compile(r"^([0-9]{1,12})(ms|s|m|h|d)?$")
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_DURATION = 100 * 365 * 86400.0  # 100 years: beyond it a deadline overflows the calendar
DEFAULTS: dict[str, Any] = {
    "prefix": DEFAULT_PREFIX,
    "max_attempts": 3,
    "wait_ttl": 7200.0,
    "delivery_timeout": 30.0,
    "submission_ttl": 86400.0,
    "types.custom": (),  # type names (parse_custom)
    "status.custom": (),  # (name, category) pairs (parse_custom)
}

# Keys bd reads from `.beads/config.yaml`, as top-level names or as the first part of a nested
# or dotted key (`dolt: {auto-start: ..}` or `dolt.auto-start: ..`). bd: internal/config/config.go
# (the viper defaults and the lists it reads), internal/config/yaml_config.go (YamlOnlyKeys and
# its nested-key prefixes), cmd/bd/init_templates.go (the template `bd init` writes), and the
# tracker integrations under internal/ (ado, github, gitlab, jira, linear, notion).
BD_KEYS = frozenset(
    ("actor", "db", "events-export", "external_projects", "identity", "issue-prefix", "json",
     "no-db", "no-git-ops", "no-hooks", "no-push", "readonly")
)  # fmt: skip
BD_SECTIONS = frozenset(
    ("ado", "agents", "ai", "backup", "create", "directory", "dolt", "export", "federation", "git",
     "github", "gitlab", "hierarchy", "jira", "linear", "notion", "output", "repos", "routing",
     "status", "sync", "types", "validation")
)  # fmt: skip
# Gas City writes these into the same file (gascity: cmd/gc/cmd_rig.go `readBeadsPrefix`,
# engdocs/design/beads-dolt-contract-redesign.md "`.beads/config.yaml`").
GASCITY_KEYS = frozenset(("issue_prefix",))
GASCITY_SECTIONS = frozenset(("gc",))

SectionParser = Callable[[Any, str], Any]  # (raw value or None, where) -> the parsed section


def registered_sections(pm: Any = None) -> dict[str, SectionParser]:
    """The settings sections plugins own ({name: parser}), from `gc_polecat_settings_sections`
    of `pm` (`plugins.settings_plugin_manager()` when None); a name claimed twice is an error."""
    if pm is None:
        from gc_polecat.plugins import settings_plugin_manager  # lazy: start-up (pluggy)

        pm = settings_plugin_manager()
    sections: dict[str, SectionParser] = {}
    for found in pm.hook.gc_polecat_settings_sections():
        for name, parse in found.items():
            if name in sections or name in DEFAULTS:
                raise ValueError(f"settings section {name!r} is registered twice")
            sections[name] = parse
    return sections


def parse_duration(value: object, what: str) -> float:
    """`90s`, `30m`, `2h`, `1d`, `250ms` or a bare number of seconds -> seconds."""
    if isinstance(value, bool):
        raise BadInput(f"{what}: not a duration: {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value) if 0 <= value <= MAX_DURATION else -1.0  # NaN fails both
    else:
        m = DURATION_RE.fullmatch(str(value).strip())
        if not m:
            raise BadInput(f"{what}: not a duration (e.g. 90s, 30m, 2h): {value!r}")
        seconds = int(m.group(1)) * _SECONDS[m.group(2) or "s"]
    if not 0 <= seconds <= MAX_DURATION:
        raise BadInput(f"{what}: not a duration between 0 and 100 years: {value!r}")
    return seconds


# --- where the settings are ------------------------------------------------------------------


def settings_path(root: Path) -> Path:
    """The settings file of the repository at `root`: ours alone if it exists, else the shared
    `.beads/config.yaml` (which may not exist either: then every setting is its default)."""
    own = root / OWN_CONFIG_PATH
    return own if os.path.lexists(own) else root / CONFIG_PATH


def has_settings(root: Path) -> bool:
    """Root detection: either settings file marks a beads repository."""
    return (root / OWN_CONFIG_PATH).is_file() or (root / CONFIG_PATH).is_file()


def is_shared(path: Path) -> bool:
    """`.beads/config.yaml` is shared with bd and Gas City; `.beads/gc-polecat.yaml` is ours."""
    return path.name != Path(OWN_CONFIG_PATH).name


def is_foreign_key(key: object) -> bool:
    """A key bd or Gas City reads from `.beads/config.yaml` (and we ignore there)."""
    if not isinstance(key, str):
        return False
    head = key.split(".", 1)[0]
    return key in BD_KEYS or key in GASCITY_KEYS or head in BD_SECTIONS or head in GASCITY_SECTIONS


# --- the one parser ------------------------------------------------------------------------

# The fast path reads only what `gc-polecat init` writes: comment lines, blank lines and at most
# one `prefix: <word>` line, in printable ASCII. A word starting with a letter that is not a YAML
# keyword is a plain string to every YAML resolver, so the answer is the parser's answer; any other
# text (numbers, quotes, tabs, other keys, a second prefix line, non-ASCII) goes to the parser.
# tests/test_config.py compares both on generated files.
_FAST_LINE = re.compile(
    r"(?: *(?:#[ -~]*)?|prefix: +(?P<value>[A-Za-z][A-Za-z0-9_-]*)(?: +(?:#[ -~]*)?)?)",
    re.ASCII,
)
_YAML_WORDS = frozenset(("y", "n", "yes", "no", "true", "false", "on", "off", "null"))


def _fast_parse(text: str) -> dict[str, Any] | None:
    """The YAML parser's answer for the simplest settings files, or None (ask the parser)."""
    found: dict[str, Any] = {}
    for line in text.split("\n"):
        m = _FAST_LINE.fullmatch(line)
        if m is None:
            return None
        value = m.group("value")
        if value is not None:
            if found or value.lower() in _YAML_WORDS:
                return None
            found["prefix"] = value
    return found


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_settings(path: Path) -> dict[Any, Any]:
    """The settings file's mapping (empty when the file does not exist); any file that is not a
    readable, UTF-8, well-formed YAML mapping is one BadInput naming it."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise BadInput(f"{path}: cannot read: {exc.strerror or _first_line(exc)}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise BadInput(f"{path}: larger than {MAX_CONFIG_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput(f"{path}: not UTF-8 text") from None
    fast = _fast_parse(text)
    if fast is not None:
        return fast
    from ruamel.yaml import YAML

    try:
        raw = YAML(typ="safe", pure=True).load(text)
    except RecursionError:
        raise BadInput(f"{path}: malformed YAML: nested too deeply") from None
    except Exception as exc:  # noqa: BLE001 - any parser error is the file's problem
        raise BadInput(f"{path}: malformed YAML: {_first_line(exc)}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BadInput(f"{path}: must be a mapping of settings")
    return raw


def _check_keys(raw: dict[Any, Any], path: Path, sections: Mapping[str, SectionParser]) -> None:
    """Unknown keys are errors; in the shared `.beads/config.yaml`, bd's and Gas City's are not."""
    shared = is_shared(path)
    unknown = sorted(
        (
            k
            for k in raw
            if k not in DEFAULTS and k not in sections and not (shared and is_foreign_key(k))
        ),
        key=str,
    )  # keys may be numbers, lists, ...
    if unknown:
        known = ", ".join([*DEFAULTS, *sections])
        hint = "; bd's and Gas City's keys are ignored here" if shared else ""
        raise BadInput(f"{path}: unknown setting {unknown[0]!r} (known: {known}{hint})")


def _prefix(raw: dict[Any, Any], path: Path) -> str:
    if "prefix" not in raw:
        return DEFAULT_PREFIX
    from gc_polecat.beads.ids import validate_prefix  # lazy: start-up

    value = raw["prefix"]
    try:
        return validate_prefix(value)
    except BadInput as exc:
        quote = '; quote it: prefix: "..."' if isinstance(value, (int, float, bool)) else ""
        raise BadInput(f"{path}: prefix: {exc}{quote}") from None


def load_prefix(path: Path, sections: Mapping[str, SectionParser] | None = None) -> str:
    """Only the ID prefix (what `bead create` needs), by the same parser and key check as
    `load_config`; the other values are checked by the commands that use them."""
    raw = read_settings(path)
    _check_keys(raw, path, registered_sections() if sections is None else sections)
    return _prefix(raw, path)


def load_config(path: Path, sections: Mapping[str, SectionParser] | None = None) -> dict[str, Any]:
    """Every setting of the file at `path` (`settings_path(root)`), validated; each registered
    section (`registered_sections`) parsed by its owner, also when absent (its defaults)."""
    sections = registered_sections() if sections is None else sections
    raw = read_settings(path)
    _check_keys(raw, path, sections)
    config = dict(DEFAULTS)
    config["prefix"] = _prefix(raw, path)
    if "max_attempts" in raw:
        value = raw["max_attempts"]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
            raise BadInput(f"{path}: max_attempts must be an integer 1..100, not {value!r}")
        config["max_attempts"] = value
    for key in ("wait_ttl", "delivery_timeout", "submission_ttl"):
        if key in raw:
            config[key] = parse_duration(raw[key], f"{path}: {key}")
    for name, parse in sections.items():
        config[name] = parse(raw.get(name), f"{path}:")
    config.update(parse_custom(raw, f"{path}:"))
    return config


def parse_custom(raw: dict[Any, Any], where: str) -> dict[str, tuple[Any, ...]]:
    """`types.custom` and `status.custom` as bd configures them (bd: `docs/CONFIG.md`,
    `internal/types/types.go` ParseCustomStatusConfig, `internal/storage/issueops/
    config_helpers.go`): a comma-separated string (or a YAML list) of names; a status may
    carry a category, `name:active|wip|done|frozen`, which decides whether `ready` lists it."""
    from gc_polecat.beads.bead import custom_statuses, custom_types  # lazy: start-up

    out: dict[str, tuple[Any, ...]] = {}
    for key, parse in (("types.custom", custom_types), ("status.custom", custom_statuses)):
        if raw.get(key) is not None:
            try:
                out[key] = parse(raw[key])
            except BadInput as exc:
                raise BadInput(f"{where} {key}: {exc}") from None
    return out


# --- init ----------------------------------------------------------------------------------


class InitPlan(NamedTuple):
    """What `gc-polecat init` will do, decided before anything is written."""

    path: str  # the settings file, relative to the root
    prefix: str
    content: bytes | None  # None: the settings exist already, nothing to commit


def _bd_prefix(raw: dict[Any, Any], path: Path) -> str | None:
    """bd's `issue-prefix` (else Gas City's `issue_prefix`) from bd's config.yaml, trimmed of
    trailing dashes as `bd init` trims it (bd: cmd/bd/init.go); None when not set."""
    for key in ("issue-prefix", "issue_prefix"):
        value = raw.get(key)
        if value is None or value == "":
            continue
        from gc_polecat.beads.ids import validate_prefix  # lazy: start-up

        try:
            return validate_prefix(value.rstrip("-") if isinstance(value, str) else value)
        except BadInput as exc:
            raise BadInput(f"{path}: {key}: {exc}; give gc-polecat's own with --prefix") from None
    return None


def _adopt(
    root: Path, path: Path, wanted: str | None, sections: Mapping[str, SectionParser]
) -> InitPlan:
    """An existing repository keeps its prefix; asking for another one changes nothing."""
    existing = load_prefix(path, sections)
    if wanted is not None and wanted != existing:
        raise BadInput(f"{root} is already a beads repository with prefix {existing!r}")
    return InitPlan(path.relative_to(root).as_posix(), existing, None)


def plan_init(
    root: Path, wanted: str | None, sections: Mapping[str, SectionParser] | None = None
) -> InitPlan:
    """Where `init` puts the settings and with which prefix; BadInput (nothing written) when
    the repository's settings are unreadable or its prefix is not `wanted`.

    - `.beads/gc-polecat.yaml` exists, or `.beads/config.yaml` holds any key of ours: an
      existing repository (a fresh clone too); its prefix is kept.
    - `.beads/` holds anything else (a bd project: bd's config.yaml, metadata.json, hooks/,
      issues.jsonl, its database): our settings go to `.beads/gc-polecat.yaml`, with `--prefix`,
      else bd's `issue-prefix`; bd's files are not touched.
    - otherwise a new repository: `.beads/config.yaml`, prefix `--prefix` or `gc`.
    """
    sections = registered_sections() if sections is None else sections
    for name in (".beads", "beads"):  # a link or a file there would fail the commit, later
        if os.path.lexists(root / name) and not stat.S_ISDIR(os.lstat(root / name).st_mode):
            raise BadInput(f"{root / name} is not a directory")
    own, shared = root / OWN_CONFIG_PATH, root / CONFIG_PATH
    if os.path.lexists(own):
        return _adopt(root, own, wanted, sections)
    raw = read_settings(shared) if os.path.lexists(shared) else {}
    if any(key in DEFAULTS or key in sections for key in raw):
        return _adopt(root, shared, wanted, sections)
    beads_dir = root / ".beads"
    if beads_dir.is_dir() and any(beads_dir.iterdir()):
        prefix = wanted or _bd_prefix(raw, shared)
        if prefix is None:
            raise BadInput(
                f"{beads_dir} is a bd project whose config.yaml names no issue-prefix (bd keeps "
                "it in its database): give it with --prefix (`bd config get issue_prefix`)"
            )
        return InitPlan(OWN_CONFIG_PATH, prefix, _settings_text(prefix, bd_project=True))
    prefix = wanted or DEFAULT_PREFIX
    return InitPlan(CONFIG_PATH, prefix, _settings_text(prefix, bd_project=False))


def _settings_text(prefix: str, bd_project: bool) -> bytes:
    """The file `init` writes: the prefix plain where YAML reads it back as that string (`gc`),
    quoted where it would not (`"3c"`, `"1e5"`, `"true"`)."""
    where = " (bd's settings stay in config.yaml)" if bd_project else ""
    value = prefix if _fast_parse(f"prefix: {prefix}") == {"prefix": prefix} else f'"{prefix}"'
    return f"# gc-polecat beads repository{where}\nprefix: {value}\n".encode()
