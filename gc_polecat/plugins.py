"""The plugin manager: built-in plugins first, then entry points in the `gc_polecat` group.

An external distribution extends gc-polecat by declaring, in its pyproject.toml:

    [project.entry-points.gc_polecat]
    myplugin = "myplugin"

and implementing hooks from `gc_polecat.hookspecs` with `gc_polecat.hookimpl`.
Set GC_POLECAT_LOAD_PLUGINS to a comma-separated list of distribution names to load only
those (an empty value loads none), which is how to rule a broken plugin out.
"""

from __future__ import annotations

import importlib
import os

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
