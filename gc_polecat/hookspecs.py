"""The pluggy hook specifications: every extension point of gc-polecat.

Built-in features implement these exactly as third-party plugins do (see `plugins.py`).
Hook names carry the `gc_polecat_` prefix, as pytest's and tox's do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from collections.abc import Callable

    import click

    from .providers import SessionProvider
    from .store import CommitResult, Store

hookspec = pluggy.HookspecMarker("gc_polecat")
hookimpl = pluggy.HookimplMarker("gc_polecat")


@hookspec
def gc_polecat_register_commands(cli: click.Group) -> None:
    """Add commands or command groups to the `gc-polecat` command line."""


@hookspec
def gc_polecat_bead_committed(store: Store, result: CommitResult) -> None:
    """Observe a committed change: `result.commit`, `result.message` and `result.changes`
    (each a BeadChange with id, event create|update|close|delete, before and after).

    Called after the commit is durable and the write lock is released; an exception here is
    reported on stderr and never undoes or fails the write.
    """


@hookspec
def gc_polecat_register_session_providers(register: Callable[[SessionProvider], None]) -> None:
    """Register session providers (`register(provider)`): how polecat sessions are started,
    checked for liveness, nudged and stopped. Built in: `tmux` and `process`."""
