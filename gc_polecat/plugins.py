"""The plugin manager: built-in plugins first, then entry points in the `gc_polecat` group.

An external distribution extends gc-polecat by declaring, in its pyproject.toml:

    [project.entry-points.gc_polecat]
    myplugin = "myplugin"

and implementing hooks from `gc_polecat.hookspecs` with `gc_polecat.hookimpl`.
Set GC_POLECAT_LOAD_PLUGINS to a comma-separated list of distribution names to load only
those (an empty value loads none), which is how to rule a broken plugin out.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import os
import sys
import time
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pluggy

ENTRY_POINT_GROUP = "gc_polecat"
DEFAULT_PLUGINS = (
    "gc_polecat.builtin.init_command",
    "gc_polecat.builtin.exec_commands",
    "gc_polecat.builtin.bead_commands",
    "gc_polecat.builtin.jsonl_commands",
    "gc_polecat.builtin.bead_hooks",
    "gc_polecat.builtin.demo",
    "gc_polecat.builtin.providers_plugin",
    "gc_polecat.builtin.lifecycle_commands",
    "gc_polecat.builtin.sync_commands",
    "gc_polecat.builtin.pool_commands",
    "gc_polecat.builtin.hooks_commands",
    "gc_polecat.builtin.refinery_commands",
    "gc_polecat.builtin.timeline_command",
    "gc_polecat.builtin.wake_plugin",
    "gc_polecat.builtin.settings_sections",
)
SETTINGS_PLUGINS = ("gc_polecat.builtin.settings_sections",)

_pm: pluggy.PluginManager | None = None
_settings_pm: pluggy.PluginManager | None = None


def make_plugin_manager(
    load_entrypoints: bool = True, builtins: tuple[str, ...] = DEFAULT_PLUGINS
) -> pluggy.PluginManager:
    """A fresh manager with the built-ins and (optionally) installed plugins registered."""
    import pluggy  # lazy: start-up

    from gc_polecat import hookspecs  # lazy: start-up

    pm = pluggy.PluginManager("gc_polecat")
    pm.add_hookspecs(hookspecs)
    for name in builtins:
        pm.register(importlib.import_module(name), name=name)
    if load_entrypoints:
        _load_entrypoints(pm)
    return pm


def _load_entrypoints(pm: pluggy.PluginManager) -> None:
    """Register the `gc_polecat` entry points, as pluggy's `load_setuptools_entrypoints` does
    (or only those of the distributions in GC_POLECAT_LOAD_PLUGINS), from the cached list."""
    for name, value in selected_entry_points():
        if pm.has_plugin(name) or pm.is_blocked(name):
            continue
        pm.register(load_entry_point(value), name=name)


def selected_entry_points() -> list[tuple[str, str]]:
    """(name, value) of each entry point a command loads: all, or those of the distributions
    GC_POLECAT_LOAD_PLUGINS names (importlib's entry_points() keeps a name's first one)."""
    allowed = os.environ.get("GC_POLECAT_LOAD_PLUGINS")
    names = None if allowed is None else {n.strip() for n in allowed.split(",") if n.strip()}
    return [
        (name, value)
        for dist, name, value, first in entry_point_rows()
        if names is None or (first and dist in names)
    ]


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide manager, built on first use."""
    global _pm
    if _pm is None:
        _pm = make_plugin_manager()
    return _pm


def settings_plugin_manager() -> pluggy.PluginManager:
    """What reading the settings needs: the process-wide manager once it exists, else one with
    the built-in sections and the installed plugins (which may own sections) but not the
    command modules, so a command that only reads (exec-beads) loads no click."""
    global _settings_pm
    if _pm is not None:
        return _pm
    if _settings_pm is None:
        _settings_pm = make_plugin_manager(builtins=SETTINGS_PLUGINS)
    return _settings_pm


# What the observers are being told about, for the warning an isolated observer prints.
_OBSERVED: ContextVar[str] = ContextVar("gc_polecat_observed", default="")


def _isolated(function: Callable[..., Any], plugin_name: str) -> Callable[..., Any]:
    """`function` as an observer that reports its own failure instead of raising it."""

    @functools.wraps(function)
    def observer(*args: Any) -> Any:
        try:
            return function(*args)
        except Exception as exc:  # noqa: BLE001 - what it observes is done; report and go on
            print(
                f"gc-polecat: warning: plugin {plugin_name} failed {_OBSERVED.get()}: "
                f"{type(exc).__name__}: {exc}",
                file=sys.stderr,
            )
            return None

    observer.gc_polecat_isolated = True  # type: ignore[attr-defined]
    return observer


def call_observers(hook: pluggy.HookCaller, what: str, **kwargs: Any) -> None:
    """Call an observer hook through pluggy, so hook wrappers and pluggy's order hold, with
    each observer on its own: one that raises is reported on stderr (naming `what`) and
    skipped, and can neither fail what it observes nor starve the observers after it."""
    for impl in hook.get_hookimpls():
        if not (impl.hookwrapper or impl.wrapper) and not hasattr(
            impl.function, "gc_polecat_isolated"
        ):
            impl.function = _isolated(impl.function, impl.plugin_name)
    token = _OBSERVED.set(what)
    try:
        hook(**kwargs)
    except Exception as exc:  # noqa: BLE001 - a failing hook wrapper: the same rule
        print(f"gc-polecat: warning: a hook wrapper failed {what}: {exc}", file=sys.stderr)
    finally:
        _OBSERVED.reset(token)


# --- the entry-point cache -------------------------------------------------------------------
# Scanning every installed distribution's metadata (importlib.metadata) costs more than the rest
# of a `bead show`. The list of `gc_polecat` entry points changes only when a distribution is
# installed or removed, which adds or removes an entry in a directory on sys.path and so changes
# that directory's mtime: the cache is keyed on sys.path and those mtimes (docs/plugins.md).

_CACHE_VERSION = 2
RACY_SECONDS = 2.0  # a directory changed this recently may change again in the same tick
CACHE_ENTRIES = 16  # script directories (working directories under `python -m`) per file
EntryRow = tuple[str, str, str, bool]  # distribution, entry-point name, value, first of its name


def entry_point_cache_dir() -> Path:
    """$XDG_CACHE_HOME/gc-polecat, else ~/.cache/gc-polecat."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gc-polecat"


def entry_point_cache_file() -> Path:
    """One file per environment (sys.prefix: `python` and `python3.11` of one venv share it)
    and sys.path (PYTHONPATH...). sys.path[0], the script's directory or, for `python -m`, the
    working directory, is left out of the name: the file holds one entry per sys.path[0], the
    CACHE_ENTRIES most recent, so commands run in many directories share one bounded file."""
    import zlib  # lazy: start-up

    key = json.dumps([_CACHE_VERSION, sys.prefix, sys.version, sys.path[1:]]).encode()
    digest = f"{zlib.crc32(key):08x}{zlib.adler32(key):08x}"  # a clash only costs a rescan
    return entry_point_cache_dir() / f"entry-points-{digest}.json"


def path_stamp() -> list[list[Any]]:
    """Each sys.path entry (as an absolute path) with its directory's mtime, inode and ctime,
    or None where it cannot be read: what an install or uninstall changes."""
    stamp: list[list[Any]] = []
    for entry in sys.path:
        where = os.path.abspath(entry or ".")
        try:
            st = os.stat(where)
        except (OSError, ValueError):
            stamp.append([where, None])
            continue
        stamp.append([where, st.st_mtime_ns, st.st_ino, st.st_ctime_ns])
    return stamp


def entry_point_rows() -> list[EntryRow]:
    """The `gc_polecat` entry points of the installed distributions, from the cache when
    sys.path and its directories are as they were when it was written, else scanned (and the
    cache rewritten). The stamp is taken before the scan, so a change during it is seen."""
    stamp = path_stamp()
    cache = entry_point_cache_file()
    rows = _read_rows(cache, stamp)
    if rows is None:
        rows = scan_entry_points()
        if _settled(stamp):
            _write_rows(cache, stamp, rows)
    return rows


def scan_entry_points() -> list[EntryRow]:
    """Every distribution's `gc_polecat` entry points, in importlib.metadata's order."""
    from importlib.metadata import distributions  # lazy: start-up

    rows: list[EntryRow] = []
    seen: set[str] = set()
    for dist in distributions():
        name = dist.metadata["Name"] or ""
        normal = "-".join(name.replace("_", "-").replace(".", "-").split("-")).lower()
        first = normal not in seen
        seen.add(normal)
        for ep in dist.entry_points:
            if ep.group == ENTRY_POINT_GROUP:
                rows.append((name, ep.name, ep.value, first))
    return rows


def load_entry_point(value: str) -> Any:
    """The object an entry point's `module:attr.attr [extras]` names (as EntryPoint.load)."""
    module, _, attrs = value.split("[", 1)[0].partition(":")
    loaded = importlib.import_module(module.strip())
    for attr in filter(None, attrs.strip().split(".")):
        loaded = getattr(loaded, attr)
    return loaded


def _settled(stamp: list[list[Any]]) -> bool:
    """False while a directory on sys.path changed within RACY_SECONDS: a second change in the
    same clock tick would leave its mtime as the cache recorded it (git's racy-index rule)."""
    now = time.time_ns()
    return all(s[1] is None or now - s[1] > RACY_SECONDS * 1e9 for s in stamp)


def _entries(cache: Path) -> list[dict[str, Any]]:
    """The cache file's entries, one per sys.path[0] (most recent first); [] if unreadable."""
    try:
        data = json.loads(cache.read_bytes())
    except (OSError, ValueError):
        return []
    entries = data.get("entries") if isinstance(data, dict) else None
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def _read_rows(cache: Path, stamp: list[list[Any]]) -> list[EntryRow] | None:
    """The cached rows of the entry whose stamp is `stamp`, if well-formed; else None."""
    for entry in _entries(cache):
        if entry.get("stamp") == stamp:
            return _valid_rows(entry.get("rows"))
    return None


def _valid_rows(rows: Any) -> list[EntryRow] | None:
    if not isinstance(rows, list):
        return None
    out: list[EntryRow] = []
    for row in rows:
        if not (isinstance(row, list) and len(row) == 4 and isinstance(row[3], bool)):
            return None
        if not all(isinstance(cell, str) for cell in row[:3]):
            return None
        out.append((row[0], row[1], row[2], row[3]))
    return out


def _first_path(entry: dict[str, Any]) -> Any:
    """The sys.path[0] row of an entry's stamp (None if it has none)."""
    stamp = entry.get("stamp")
    return stamp[0] if isinstance(stamp, list) and stamp else None


def _write_rows(cache: Path, stamp: list[list[Any]], rows: list[EntryRow]) -> None:
    """Put this sys.path[0]'s entry first (replacing its old one, keeping CACHE_ENTRIES) and
    write the file atomically (temp file, rename). Two writers at once may lose one entry,
    which only costs a scan; a cache that cannot be written is a slower start, never an error."""
    others = [e for e in _entries(cache) if _first_path(e) != stamp[0]]
    entries = [{"stamp": stamp, "rows": [list(r) for r in rows]}, *others][:CACHE_ENTRIES]
    tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
    try:
        cache.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp.write_text(json.dumps({"entries": entries}), encoding="utf-8")
        os.replace(tmp, cache)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
