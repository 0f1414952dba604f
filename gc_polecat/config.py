"""Repository settings in `.beads/config.yaml`, checked so a typo is an error, not a default.

| key | default | meaning |
|---|---|---|
| `prefix` | `gc` | ID prefix of new beads |
| `max_attempts` | 3 | submission attempts per work item before it escalates |
| `wait_ttl` | `2h` | how long a wait for a verdict lives before it expires |
| `delivery_timeout` | `30s` | a ready wait not delivered by then is woken again by the controller |
| `submission_ttl` | `24h` | an unjudged submission whose wait has ended is withdrawn then |
| `pools` | none | per-pool settings (`gc_polecat/pool.py`, `docs/commands.md`) |
| `refinery` | none | the merge queue's clone, gates and limits (`gc_polecat/refinery.py`) |
| `types.custom` | none | issue types beyond bd's built-in ones, bd's syntax (`parse_custom`) |
| `status.custom` | none | statuses beyond bd's built-in ones, `name[:category]` (`parse_custom`) |
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .errors import BadInput

DURATION_RE = re.compile(r"^([0-9]{1,12})(ms|s|m|h|d)?$")
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_DURATION = 100 * 365 * 86400.0  # 100 years: beyond it a deadline overflows the calendar
DEFAULTS: dict[str, Any] = {
    "prefix": "gc",
    "max_attempts": 3,
    "wait_ttl": 7200.0,
    "delivery_timeout": 30.0,
    "submission_ttl": 86400.0,
    "pools": {},
    "refinery": None,
    "types.custom": (),  # type names (parse_custom)
    "status.custom": (),  # (name, category) pairs (parse_custom)
}


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


def load_config(path: Path) -> dict[str, Any]:
    from ruamel.yaml import YAML

    try:
        raw = YAML(typ="safe", pure=True).load(path.read_text()) or {}
    except Exception as exc:
        raise BadInput(f"{path}: malformed YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise BadInput(f"{path}: must be a mapping of settings")
    unknown = sorted(set(raw) - set(DEFAULTS), key=str)  # keys may be numbers, lists, ...
    if unknown:
        raise BadInput(f"{path}: unknown setting {unknown[0]!r} (known: {', '.join(DEFAULTS)})")
    config = dict(DEFAULTS)
    if "prefix" in raw:
        from .ids import validate_prefix

        try:
            config["prefix"] = validate_prefix(raw["prefix"])
        except BadInput as exc:
            raise BadInput(f"{path}: prefix: {exc}") from None
    if "max_attempts" in raw:
        value = raw["max_attempts"]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
            raise BadInput(f"{path}: max_attempts must be an integer 1..100, not {value!r}")
        config["max_attempts"] = value
    for key in ("wait_ttl", "delivery_timeout", "submission_ttl"):
        if key in raw:
            config[key] = parse_duration(raw[key], f"{path}: {key}")
    from .pool import parse_pools

    config["pools"] = parse_pools(raw.get("pools"), f"{path}:")
    from .refinery import parse_refinery

    config["refinery"] = parse_refinery(raw.get("refinery"), f"{path}: ")
    config.update(parse_custom(raw, f"{path}:"))
    return config


def parse_custom(raw: dict[Any, Any], where: str) -> dict[str, tuple[Any, ...]]:
    """`types.custom` and `status.custom` as bd configures them (bd: `docs/CONFIG.md`,
    `internal/types/types.go` ParseCustomStatusConfig, `internal/storage/issueops/
    config_helpers.go`): a comma-separated string (or a YAML list) of names; a status may
    carry a category, `name:active|wip|done|frozen`, which decides whether `ready` lists it."""
    from .bead import custom_statuses, custom_types

    out: dict[str, tuple[Any, ...]] = {}
    for key, parse in (("types.custom", custom_types), ("status.custom", custom_statuses)):
        if raw.get(key) is not None:
            try:
                out[key] = parse(raw[key])
            except BadInput as exc:
                raise BadInput(f"{where} {key}: {exc}") from None
    return out
