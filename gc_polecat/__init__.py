"""gc-polecat: same-session refinery feedback on a git-native bead store."""

from __future__ import annotations

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """`from gc_polecat import hookimpl` for plugins, without importing pluggy at start-up."""
    if name in ("hookimpl", "hookspec"):
        from gc_polecat import hookspecs  # lazy: start-up

        return getattr(hookspecs, name)
    raise AttributeError(name)
