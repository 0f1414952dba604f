"""What the command line prints that may hold bead text: terminal controls made visible, and
JSON as `--json` writes it. Here, below every layer, because the waiter daemon
(lifecycle/waiterd.py) prints an `await`'s answer without the command line."""

from __future__ import annotations

import json
from typing import Any

# What a terminal can act on: C0 controls but tab and newline, DEL, and the C1 block (CSI,
# OSC...). Bead text is written by agents, other tools and other machines.
_TERMINAL_CONTROLS = {
    c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0)) if c not in (0x09, 0x0A)
}
# json.dumps escapes C0 itself; with ensure_ascii=False it leaves DEL and C1 raw.
_JSON_CONTROLS = {c: f"\\u{c:04x}" for c in (0x7F, *range(0x80, 0xA0))}


def printable(text: str) -> str:
    """`text` with every terminal control written as a visible `\\xNN`, so a bead's title or
    description cannot move the cursor, retitle the window or answer back through a pane."""
    return text.translate(_TERMINAL_CONTROLS)


def json_text(value: Any) -> str:
    """What `--json` prints: indented, UTF-8 as is, DEL and C1 escaped."""
    return json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False).translate(
        _JSON_CONTROLS
    )
