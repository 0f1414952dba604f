"""Pools: their section of the settings file (`Store.settings_path`), parsed here and registered
with the base settings parser by builtin/pool_commands.py; what they hold now is status.py.

```yaml
pools:
  polecats:
    min_active: 0          # sessions kept even without work
    max_active: 4          # sessions at most, waiting ones included
    max_waiting: 2         # sessions that may wait on the refinery at once (default max_active)
    wait_ttl: 2h           # default lifetime of this pool's waits (else the global wait_ttl)
    names: [furiosa, nux, toast, slit]   # the name pool for persistent polecats
    worktree_root: ../polecats           # where their sandboxes live (relative to the repo)
    idle_timeout: 30m      # an idle session older than this may be drained
    repo: ../code          # the code clone whose worktrees are the sandboxes
    target: main           # the branch sandboxes sync to between assignments
    command: [sh, agent.sh]  # argv of a polecat session (never run through a shell)
    provider: tmux         # session provider for the pool's sessions
```

Every key is optional except `max_active`; an unknown key or a bad value is an error naming its
path (`pools.polecats.max_waiting`). Waiting sessions are owners of their work: a shrink below
them never drains them (docs/pool.md). `max_waiting` bounds how many may wait at once, on its
own (a pool shrunk to `max_active: 1` may keep three waiters if `max_waiting` is 3); past it
the oldest waiter is released through the fallback, so waiting never becomes dead capacity.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gc_polecat.errors import BadInput

if TYPE_CHECKING:
    from gc_polecat.beads.store import Store

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
    "repo",
    "target",
    "command",
    "provider",
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
    repo: str | None = None
    target: str = "main"
    command: tuple[str, ...] = ()
    provider: str = "tmux"

    def code_repo(self, root: Path) -> Path:
        """The code clone, resolved against the beads repository; an error when unset."""
        if not self.repo:
            raise BadInput(f"pools.{self.name}.repo is not set: sandboxes need a code repository")
        return (root / self.repo).resolve()

    def sandbox_root(self, root: Path) -> Path:
        """Where sandboxes live: worktree_root, else `polecats/<pool>` beside the code clone."""
        if self.worktree_root:
            return (root / self.worktree_root).resolve()
        return self.code_repo(root).parent / "polecats" / self.name.replace("/", "-")

    def sandbox_path(self, root: Path, recorded: str) -> Path:
        """The sandbox a bead names (a polecat's or a finalizer's `sandbox`), checked before
        any git or session runs there: bead content is untrusted (docs/security.md, section
        10), so it must be one of this pool's, an entry named like a polecat directly under
        sandbox_root and not a symbolic link. BadInput otherwise."""
        path, base = Path(recorded), self.sandbox_root(root)
        if not (path.is_absolute() and path.parent == base and NAME_RE.fullmatch(path.name)):
            raise BadInput(f"sandbox {recorded!r} is not one of pool {self.name}'s (under {base})")
        if path.is_symlink():
            raise BadInput(f"sandbox {recorded!r} is a symbolic link")
        return path

    @property
    def waiting_cap(self) -> int:
        return self.max_active if self.max_waiting is None else self.max_waiting


def _int(where: str, value: Any, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise BadInput(f"{where} must be an integer >= {lo}, not {value!r}")
    return value


def parse_pool(name: str, raw: Any, where: str) -> PoolConfig:
    """One pool's settings, checked key by key."""
    from gc_polecat.beads.config import parse_duration  # lazy: start-up

    if not POOL_NAME_RE.fullmatch(str(name)) or ".." in str(name):
        raise BadInput(f"{where}: invalid pool name {name!r}")
    if not isinstance(raw, dict):
        raise BadInput(f"{where} must be a mapping of settings")
    unknown = sorted(set(raw) - set(KEYS), key=str)  # keys may be numbers, lists, ...
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
    repo = raw.get("repo")
    if repo is not None and (not isinstance(repo, str) or not repo.strip() or "\0" in repo):
        raise BadInput(f"{where}.repo must be a path")
    target = raw.get("target", "main")
    if not isinstance(target, str):
        raise BadInput(f"{where}.target must be a branch name")
    from gc_polecat.beads.ids import check_ref  # lazy: start-up

    try:
        check_ref(target, "branch")
    except BadInput:
        raise BadInput(f"{where}.target: invalid branch name {target!r}") from None
    command = raw.get("command", [])
    if not isinstance(command, list) or not all(
        isinstance(a, str) and "\0" not in a for a in command
    ):
        raise BadInput(f"{where}.command must be a list of strings (argv; no shell is used)")
    provider = raw.get("provider", "tmux")
    if not isinstance(provider, str) or not NAME_RE.fullmatch(provider):
        raise BadInput(f"{where}.provider must be a provider name such as tmux or process")
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
        repo,
        target,
        tuple(command),
        provider,
    )


def parse_pools(raw: Any, where: str) -> dict[str, PoolConfig]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BadInput(f"{where}.pools must be a mapping of pool name to settings")
    return {str(n): parse_pool(str(n), v, f"{where}.pools.{n}") for n, v in raw.items()}


def get_pool(store: Store, name: str) -> PoolConfig | None:
    return store.config()["pools"].get(name)


def require_pool(store: Store, name: str) -> PoolConfig:
    cfg = get_pool(store, name)
    if cfg is None:
        known = ", ".join(sorted(store.config()["pools"])) or "none"
        raise BadInput(f"unknown pool {name!r} (configured in {store.settings_name()}: {known})")
    return cfg
