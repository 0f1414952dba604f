"""Pools: their configuration in `.beads/config.yaml`, and what they hold right now.

```yaml
pools:
  polecats:
    min_active: 0          # sessions kept even without work
    max_active: 4          # sessions at most, waiting ones included
    max_waiting: 2         # sessions that may wait on the refinery at once
    wait_ttl: 2h           # default lifetime of this pool's waits (else the global wait_ttl)
    names: [furiosa, nux, toast, slit]   # the name pool for persistent polecats
    worktree_root: ../polecats           # where their sandboxes live (relative to the repo)
    idle_timeout: 30m      # an idle session older than this may be drained
```

Every key is optional except `max_active`; an unknown key or a bad value is an error naming its
path (`pools.polecats.max_waiting`). Waiting sessions count against `max_active` because they
are live sessions holding work; `max_waiting` bounds how much of the pool may sit waiting, so
waiting never becomes dead capacity (docs/lifecycle.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import BadInput

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .bead import Bead
    from .providers import SessionProvider
    from .store import Store

POOL_NAME_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_./-]{0,63}$")
NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
KEYS = (
    "min_active",
    "max_active",
    "max_waiting",
    "wait_ttl",
    "names",
    "worktree_root",
    "idle_timeout",
)


@dataclass(frozen=True)
class PoolConfig:
    name: str
    max_active: int
    min_active: int = 0
    max_waiting: int | None = None  # None: up to max_active
    wait_ttl: float | None = None  # None: the repository's wait_ttl
    names: tuple[str, ...] = ()
    worktree_root: str | None = None
    idle_timeout: float | None = None

    @property
    def waiting_cap(self) -> int:
        return self.max_active if self.max_waiting is None else self.max_waiting


def _int(where: str, value: Any, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise BadInput(f"{where} must be an integer >= {lo}, not {value!r}")
    return value


def parse_pool(name: str, raw: Any, where: str) -> PoolConfig:
    """One pool's settings, checked key by key."""
    from .config import parse_duration

    if not POOL_NAME_RE.fullmatch(str(name)) or ".." in str(name):
        raise BadInput(f"{where}: invalid pool name {name!r}")
    if not isinstance(raw, dict):
        raise BadInput(f"{where} must be a mapping of settings")
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise BadInput(f"{where}.{unknown[0]}: unknown setting (known: {', '.join(KEYS)})")
    if "max_active" not in raw:
        raise BadInput(f"{where}.max_active is required")
    max_active = _int(f"{where}.max_active", raw["max_active"], 1)
    min_active = _int(f"{where}.min_active", raw.get("min_active", 0), 0)
    if min_active > max_active:
        raise BadInput(f"{where}.min_active ({min_active}) is above max_active ({max_active})")
    max_waiting = None
    if "max_waiting" in raw:
        max_waiting = _int(f"{where}.max_waiting", raw["max_waiting"], 0)
        if max_waiting > max_active:
            raise BadInput(
                f"{where}.max_waiting ({max_waiting}) is above max_active ({max_active})"
            )
    names = raw.get("names", [])
    if not isinstance(names, list) or not all(
        isinstance(n, str) and NAME_RE.fullmatch(n) for n in names
    ):
        raise BadInput(f"{where}.names must be a list of names matching [A-Za-z0-9_-]{{1,64}}")
    if len(set(names)) != len(names):
        raise BadInput(f"{where}.names lists a name twice")
    root = raw.get("worktree_root")
    if root is not None and (not isinstance(root, str) or not root.strip() or "\0" in root):
        raise BadInput(f"{where}.worktree_root must be a path")
    durations = {
        k: parse_duration(raw[k], f"{where}.{k}") for k in ("wait_ttl", "idle_timeout") if k in raw
    }
    return PoolConfig(
        name,
        max_active,
        min_active,
        max_waiting,
        durations.get("wait_ttl"),
        tuple(names),
        root,
        durations.get("idle_timeout"),
    )


def parse_pools(raw: Any, where: str) -> dict[str, PoolConfig]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BadInput(f"{where}.pools must be a mapping of pool name to settings")
    return {str(n): parse_pool(str(n), v, f"{where}.pools.{n}") for n, v in raw.items()}


def get_pool(store: Store, name: str) -> PoolConfig | None:
    return store.config()["pools"].get(name)


def status(store: Store, providers: Mapping[str, SessionProvider]) -> list[dict[str, Any]]:
    """Each pool at a glance: sessions by state, waiters against the cap, work in the pool."""
    from . import session as sessions
    from .catalog import Query

    catalog = store.catalog
    catalog.refresh()
    configured = store.config()["pools"]
    rows: dict[str, dict[str, Any]] = {}

    def row(name: str) -> dict[str, Any]:
        if name not in rows:
            cfg = configured.get(name)
            rows[name] = {
                "pool": name,
                "configured": cfg is not None,
                "max_active": cfg.max_active if cfg else None,
                "min_active": cfg.min_active if cfg else None,
                "max_waiting": cfg.waiting_cap if cfg else None,
                "sessions": {},
                "alive": 0,
                "waiting": 0,
                "work_ready": 0,
                "work_blocked": 0,
            }
        return rows[name]

    for name in configured:
        row(name)
    for bead in catalog.list(Query(labels=(sessions.SESSION_LABEL,), include_closed=False)):
        s = sessions.Session.of(bead)
        r = row(s.pool)
        alive = sessions.is_alive(s, providers)
        r["sessions"][s.id] = {"state": s.state, "alive": alive, "name": s.name}
        r["alive"] += alive
        r["waiting"] += s.state == "awaiting_verdict"
    for work in catalog.list(Query(statuses=("open",))):
        routed = work.get("metadata", {}).get("gc.routed_to")
        if routed and not work.get("assignee"):
            key = "work_blocked" if _blocked(catalog, work) else "work_ready"
            row(routed)[key] += 1
    return [rows[n] for n in sorted(rows)]


def _blocked(catalog: Any, work: Bead) -> bool:
    from .bead import BLOCKING_DEP_TYPES

    for dep in work.get("dependencies", []):
        if dep["type"] in BLOCKING_DEP_TYPES:
            other = catalog.get(dep["depends_on_id"])
            if other is None or other["status"] != "closed":
                return True
    return False
