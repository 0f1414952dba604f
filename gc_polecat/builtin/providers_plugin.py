"""The built-in session providers, registered through the same hook as a plugin's."""

from __future__ import annotations

from collections.abc import Callable

from gc_polecat.hookspecs import hookimpl
from gc_polecat.lifecycle.providers import ProcessProvider, SessionProvider, TmuxProvider


@hookimpl
def gc_polecat_register_session_providers(register: Callable[[SessionProvider], None]) -> None:
    register(ProcessProvider())
    register(TmuxProvider())
