"""The built-in session providers, registered through the same hook as a plugin's."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from gc_polecat.hookspecs import hookimpl

if TYPE_CHECKING:
    from gc_polecat.lifecycle.providers import SessionProvider


@hookimpl
def gc_polecat_register_session_providers(register: Callable[[SessionProvider], None]) -> None:
    from gc_polecat.lifecycle.providers import ProcessProvider, TmuxProvider  # lazy: start-up

    register(ProcessProvider())
    register(TmuxProvider())
