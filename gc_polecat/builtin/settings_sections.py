"""The settings sections the built-in layers own, registered like a plugin's: `pools`
(gc_polecat/pool/config.py) and `refinery` (gc_polecat/refinery/config.py).

A module of its own, with no command line in it, so that reading the settings
(`plugins.settings_plugin_manager`) loads neither click nor the command modules.
"""

from __future__ import annotations

from typing import Any

from gc_polecat.hookspecs import hookimpl


def _parse_pools(raw: Any, where: str) -> Any:
    from gc_polecat.pool.config import parse_pools  # lazy: start-up (read with the settings)

    return parse_pools(raw, where)


def _parse_refinery(raw: Any, where: str) -> Any:
    from gc_polecat.refinery.config import parse_refinery  # lazy: start-up (read with settings)

    return parse_refinery(raw, f"{where} ")


@hookimpl
def gc_polecat_settings_sections() -> dict[str, Any]:
    return {"pools": _parse_pools, "refinery": _parse_refinery}
