"""The click-free hot path: `gc-polecat bead show ID...` answered without building the CLI.

An agent runs `bead show` as a fresh process, many times per work item. Importing click, pluggy
and every built-in command costs more than reading the bead, so `__main__` first offers the
command line to `run()`. It answers only a command line it knows exactly (`[--repo PATH]
[--json] bead show ID... [--json]`) and only when no third-party plugin would load (a plugin may
override `bead show` or any hook). Everything else steps aside, before anything is printed, to
the full command line, which then does the same work itself: another option, a malformed or
missing bead, a crash journal to complete, a plugin, a stdout that is not UTF-8. So an error is
always reported in the full command line's words (docs/performance.md, "Start-up").

The text helpers (`bead_lines`, `comment_lines`, and output.py's `printable` and `json_text`)
are click-free so that both paths print through the same code.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from gc_polecat.output import json_text, printable

_HEADER_KEYS = ("id", "title", "issue_type", "priority", "status")


# --- how `bead show` prints a bead -------------------------------------------------------------


def plain(value: Any) -> str:
    """A field value as people read it: text as is, lists comma-separated, anything nested
    as JSON (never a Python repr)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ", ".join(value)
    return json.dumps(value, ensure_ascii=False)


def block_lines(label: str, text: str, indent: str = "  ") -> list[str]:
    """`label: text` on one line, or the label and the text's lines indented below it."""
    if "\n" not in text:
        return [f"{indent}{label}: {text}"]
    return [f"{indent}{label}:"] + [f"{indent}  {line}" for line in text.rstrip("\n").splitlines()]


def bead_lines(bead: dict[str, Any]) -> list[str]:
    """`bead show`'s lines for one bead (not yet made printable)."""
    lines = [
        f"{bead['id']}  [{bead['issue_type']}] P{bead['priority']} {bead['status']}  "
        f"{bead['title']}"
    ]
    for key, value in bead.items():
        if key in _HEADER_KEYS:
            continue
        if key == "comments" and isinstance(value, list):
            lines += ["  comments:", *comment_lines(bead, indent="  ")]
            continue
        if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        elif isinstance(value, list) and key == "dependencies":
            value = ", ".join(f"{d['type']}:{d['depends_on_id']}" for d in value)
        lines += block_lines(key, plain(value))
    return lines


def comment_lines(bead: dict[str, Any], indent: str = "", local: bool = False) -> list[str]:
    """A bead's comments as `bead show` and `bead comments` print them."""
    from gc_polecat.interop.bd_verbs import comments_of  # lazy: start-up

    comments = comments_of(bead)
    lines = []
    if not indent:
        lines.append(f"Comments on {bead['id']}:" if comments else f"No comments on {bead['id']}")
    for comment in comments:
        lines.append(f"{indent}  [{comment['author']}] at {when(comment['created_at'], local)}")
        text = comment["text"].rstrip("\n").splitlines() or [""]
        lines += [f"{indent}    {line}" for line in text]
    return lines


def when(stamp: str, local: bool) -> str:
    """A comment's time as bd prints it: minutes, in UTC (or local with --local-time)."""
    import datetime as _dt  # lazy: start-up

    from gc_polecat.interop.bd_verbs import instant  # lazy: start-up

    at = instant(stamp)
    if at is None:
        return stamp
    return at.astimezone(None if local else _dt.UTC).strftime("%Y-%m-%d %H:%M")


# --- the fast path -----------------------------------------------------------------------------


def show_request(argv: list[str]) -> tuple[str | None, bool, list[str]] | None:
    """(--repo, --json, IDs) of `[--repo PATH] [--json] bead show ID... [--json]`; None for any
    other command line, which the full command line parses (and judges) itself."""
    repo, json_output, words = None, False, iter(argv)
    for word in words:
        if word == "--repo":
            repo = next(words, None)
            if repo is None:
                return None
        elif word.startswith("--repo="):
            repo = word.removeprefix("--repo=")
        elif word == "--json":
            json_output = True
        elif word == "bead":
            break
        else:
            return None
    if next(words, None) != "show":
        return None
    ids = []
    for word in words:
        if word == "--json":
            json_output = True
        elif word.startswith("-"):
            return None
        else:
            ids.append(word)
    return (repo, json_output, ids) if ids else None


def _utf8(argv: list[str]) -> bool:
    """Every argument encodes as UTF-8 and stdout writes UTF-8, as the full path expects."""
    try:
        "".join(argv).encode("utf-8")
    except UnicodeEncodeError:
        return False
    encoding = getattr(sys.stdout, "encoding", None) or ""
    return encoding.lower().replace("-", "").replace("_", "") == "utf8"


def read_beads(repo: str | None, bead_ids: list[str]) -> list[dict[str, Any]] | None:
    """The beads from the catalog (refreshed if behind HEAD); None when any is missing or a
    crash journal waits to be completed: the full command line handles those."""
    from gc_polecat.beads.ids import validate_id  # lazy: start-up
    from gc_polecat.beads.store import Store, resolve_root  # lazy: start-up

    for bead_id in bead_ids:
        validate_id(bead_id)
    store = Store(resolve_root(repo))
    if store.journal_pending():
        return None
    catalog = store.catalog
    try:
        if not catalog.is_fresh():
            catalog.refresh()
        beads = [catalog.get(bead_id) for bead_id in bead_ids]
    finally:
        catalog.close()
    return None if any(b is None for b in beads) else beads  # type: ignore[return-value]


def run(argv: list[str]) -> int | None:
    """Answer `bead show` here and return its exit status, or None to step aside."""
    request = show_request(argv)
    if request is None or not _utf8(argv):
        return None
    from gc_polecat.plugins import selected_entry_points  # lazy: start-up

    if selected_entry_points():
        return None  # a plugin may override `bead show` or observe: build the whole CLI
    repo, json_output, bead_ids = request
    os.umask(os.umask(0o002) | 0o002)  # as PolecatGroup.main: see cli.private_umask
    try:
        return _answer(repo, json_output, bead_ids)
    except KeyboardInterrupt:  # as click: a blank line, then the one-line error
        sys.stderr.write("\ngc-polecat: error: aborted\n")
        return 1


def _answer(repo: str | None, json_output: bool, bead_ids: list[str]) -> int | None:
    """Read and print the beads; None (nothing printed) when the full command line must."""
    try:
        beads = read_beads(repo, bead_ids)
        if beads is None:
            return None
        if json_output:
            lines = [json_text(beads)]
        else:
            lines = [printable(line) for bead in beads for line in bead_lines(bead)]
    except Exception:  # noqa: BLE001 - the full command line reports it in its own words
        return None
    try:
        sys.stdout.write("".join(line + "\n" for line in lines))
        sys.stdout.flush()
    except BrokenPipeError:
        return 1
    return 0
