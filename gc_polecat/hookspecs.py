"""The pluggy hook specifications: every extension point of gc-polecat.

Built-in features implement these exactly as third-party plugins do (see `plugins.py`).
Hook names carry the `gc_polecat_` prefix, as pytest's and tox's do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    import click

    from gc_polecat.beads.store import CommitResult, Store
    from gc_polecat.lifecycle.providers import SessionProvider

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


@hookspec
def gc_polecat_settings_sections() -> dict[str, Callable[[Any, str], Any]]:
    """Sections of the settings file this plugin owns, as {name: parse}. `parse(raw, where)`
    gets the section's raw YAML value (None when the file has none) and a prefix for error
    messages, and returns what `store.config()[name]` holds; a bad value raises BadInput.
    Built in: `pools` (pool/config.py) and `refinery` (refinery/config.py)."""


@hookspec
def gc_polecat_controller_pass(
    store: Store, providers: Mapping[str, SessionProvider]
) -> list[tuple[str, str]]:
    """One more level-triggered step of every controller pass, after the waits are repaired;
    returns (subject, what was done) for each change (one commit each), [] when nothing was.
    Built in: the pools' reconcile (pool/reconcile.py)."""
