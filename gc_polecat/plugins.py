"""The plugin manager: built-in plugins first, then entry points in the `gc_polecat` group.

An external distribution extends gc-polecat by declaring, in its pyproject.toml:

    [project.entry-points.gc_polecat]
    myplugin = "myplugin"

and implementing hooks from `gc_polecat.hookspecs` with `gc_polecat.hookimpl`.
Set GC_POLECAT_LOAD_PLUGINS to a comma-separated list of distribution names to load only
those (an empty value loads none), which is how to rule a broken plugin out.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

import pluggy

from gc_polecat import hookspecs

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
)

_pm: pluggy.PluginManager | None = None


def make_plugin_manager(load_entrypoints: bool = True) -> pluggy.PluginManager:
    """A fresh manager with the built-ins and (optionally) installed plugins registered."""
    pm = pluggy.PluginManager("gc_polecat")
    pm.add_hookspecs(hookspecs)
    for name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(name), name=name)
    if load_entrypoints:
        _load_entrypoints(pm)
    return pm


def _load_entrypoints(pm: pluggy.PluginManager) -> None:
    allowed = os.environ.get("GC_POLECAT_LOAD_PLUGINS")
    if allowed is None:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        return
    from importlib.metadata import entry_points

    names = {n.strip() for n in allowed.split(",") if n.strip()}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else None
        if dist in names and pm.get_plugin(ep.name) is None:
            pm.register(ep.load(), name=ep.name)


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide manager, built on first use."""
    global _pm
    if _pm is None:
        _pm = make_plugin_manager()
    return _pm


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
