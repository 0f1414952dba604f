"""The click-free hot paths: `bead show`, `bead list` and a settled `await` without the CLI.

An agent runs these as fresh processes, many times per work item. Importing click, pluggy and
every built-in command costs more than the work, so `__main__` first offers the command line to
`run()`. It answers only a command line it knows exactly, and only when no third-party plugin
would load (a plugin may override any command or hook):

    [--repo PATH] [--json] bead show ID... [--json]
    [--repo PATH] [--json] bead list [-s S] [-t T] [-a A] [-l L] [--all] [--include-gates]
                                     [--include-infra] [-n N] [--json]
    [--repo PATH] [--json] await WAIT [--timeout T] [--json]

Everything else steps aside, before anything is printed, to the full command line, which then
does the same work itself: another option, a malformed or missing bead, a bead file the catalog
could not read, a crash journal to complete, a plugin, a stdout that is not UTF-8, and for
`await` a wait that is still pending (the full command line hands it to the slim waiter) or
`ready` (its delivery is a commit). So an error is always reported in the full command line's
words, and `GC_POLECAT_FAST=0` turns this module off (docs/performance.md, "Start-up").

The text helpers (`bead_lines`, `comment_lines`, `list_lines`, and output.py's `printable` and
`json_text`) and the decisions (`lifecycle/waitview.py` for `await`, `list_selection` for `bead
list`) are click-free so that both paths print and decide through the same code.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gc_polecat.output import json_text, printable

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from gc_polecat.beads.catalog import Catalog, Query

_HEADER_KEYS = ("id", "title", "issue_type", "priority", "status")
FAST_ENV = "GC_POLECAT_FAST"  # "0": every command goes through the full command line
INFRA_TYPES = ("agent", "rig", "role", "message")  # bd: internal/storage/infra_types.go


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


# --- how `bead list` selects and prints -------------------------------------------------------


def split_csv(values: Iterable[str]) -> list[str]:
    """Repeated and comma-separated values of one option, as bd takes them."""
    return [part.strip() for v in values for part in v.split(",") if part.strip()]


def list_selection(
    statuses: Iterable[str],
    types: Iterable[str],
    assignee: str | None,
    labels: Iterable[str],
    include_closed: bool,
    include_gates: bool,
    include_infra: bool,
) -> tuple[Query, tuple[str, ...]]:
    """`bead list`'s catalog query and the types it hides: as bd's `list` (cmd/bd/list.go),
    gates and the infrastructure types unless --type names one or --include-* asks for them."""
    from gc_polecat.beads.catalog import Query  # lazy: start-up
    from gc_polecat.interop.bd_verbs import canonical_types  # lazy: start-up

    types_t = canonical_types(split_csv(types))
    query = Query(
        statuses=tuple(split_csv(statuses)),
        types=types_t,
        assignee=assignee,
        labels=tuple(split_csv(labels)),
        include_closed=include_closed,
    )
    hidden = () if include_gates or "gate" in types_t else ("gate",)
    if not include_infra and not set(types_t) & set(INFRA_TYPES):
        hidden += INFRA_TYPES
    return query, hidden


def _cells(bead: dict[str, Any]) -> tuple[str, ...]:
    return (
        bead["id"],
        f"[{bead['issue_type']}]",
        f"P{bead['priority']}",
        bead["status"],
        bead.get("assignee") or "-",
    )


def list_lines(beads: list[dict[str, Any]]) -> list[str]:
    """One line per bead, columns as wide as this listing's widest cell (a long custom type or
    assignee widens its column instead of pushing the titles out of line)."""
    rows = [_cells(b) for b in beads]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))] if rows else []
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + "  " + b["title"]
        for row, b in zip(rows, beads, strict=True)
    ]


# --- reading the command line ------------------------------------------------------------------


class StepAside(Exception):
    """What the full command line must answer (an error in its words, a write, a plugin)."""


def _split_globals(argv: list[str]) -> tuple[str | None, bool, list[str]] | None:
    """(--repo, --json, the command's words) of `[--repo PATH] [--json] COMMAND...`."""
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
        elif word.startswith("-"):
            return None
        else:
            return repo, json_output, [word, *words]
    return None


def _options(
    words: list[str], takes_value: dict[str, str], flags: dict[str, str]
) -> tuple[dict[str, list[str]], list[str]] | None:
    """The values of the options given (by canonical name) and the positional words; None
    for anything else (a cluster `-sx`, `--`, an option not listed, a value missing)."""
    values: dict[str, list[str]] = {}
    positional: list[str] = []
    it = iter(words)
    for word in it:
        name, eq, inline = word.partition("=") if word.startswith("--") else (word, "", "")
        if name in takes_value:
            value = inline if eq else next(it, None)
            if value is None:
                return None
            values.setdefault(takes_value[name], []).append(value)
        elif name in flags and not eq:
            values.setdefault(flags[name], []).append("")
        elif word.startswith("-"):
            return None
        else:
            positional.append(word)
    return values, positional


def show_request(argv: list[str]) -> tuple[str | None, bool, list[str]] | None:
    """(--repo, --json, IDs) of `[--repo PATH] [--json] bead show ID... [--json]`; None for any
    other command line, which the full command line parses (and judges) itself."""
    split = _split_globals(argv)
    if split is None or split[2][:2] != ["bead", "show"]:
        return None
    repo, json_output, words = split
    parsed = _options(words[2:], {}, {"--json": "json"})
    if parsed is None or not parsed[1]:
        return None
    return repo, json_output or "json" in parsed[0], parsed[1]


_LIST_VALUES = {
    "-s": "status", "--status": "status", "--state": "status", "-t": "type", "--type": "type",
    "-a": "assignee", "-l": "label", "--label": "label", "--assignee": "assignee",
    "-n": "limit", "--limit": "limit",
}  # fmt: skip
_LIST_FLAGS = {
    "--all": "all", "--include-gates": "include_gates", "--include-infra": "include_infra",
    "--json": "json",
}  # fmt: skip


def list_request(argv: list[str]) -> tuple[str | None, bool, dict[str, list[str]]] | None:
    """(--repo, --json, options) of `bead list` with the filters above; None otherwise."""
    split = _split_globals(argv)
    if split is None or split[2][:2] != ["bead", "list"]:
        return None
    repo, json_output, words = split
    parsed = _options(words[2:], _LIST_VALUES, _LIST_FLAGS)
    if parsed is None or parsed[1]:
        return None
    opts = parsed[0]
    if "limit" in opts:
        try:  # as click.IntRange(min=0): int() of the last one given
            if int(opts["limit"][-1]) < 0:
                return None
        except ValueError:
            return None
    return repo, json_output or "json" in opts, opts


def await_request(argv: list[str]) -> tuple[str | None, bool, str] | None:
    """(--repo, --json, WAIT) of `await WAIT [--timeout T] [--json]`; None otherwise (a
    `--work`, no WAIT: those find their wait through the full command line)."""
    split = _split_globals(argv)
    if split is None or split[2][0] != "await":
        return None
    repo, json_output, words = split
    parsed = _options(words[1:], {"--timeout": "timeout"}, {"--json": "json"})
    if parsed is None or len(parsed[1]) != 1:
        return None
    for timeout in parsed[0].get("timeout", []):
        try:  # as cli.Seconds: a float from 0 to 1e9 (NaN fails the comparison)
            if not 0.0 <= float(timeout) <= 1e9:
                return None
        except ValueError:
            return None
    return repo, json_output or "json" in parsed[0], parsed[1][0]


def _utf8(argv: list[str]) -> bool:
    """Every argument encodes as UTF-8 and stdout writes UTF-8, as the full path expects."""
    try:
        "".join(argv).encode("utf-8")
    except UnicodeEncodeError:
        return False
    encoding = getattr(sys.stdout, "encoding", None) or ""
    return encoding.lower().replace("-", "").replace("_", "") == "utf8"


# --- answering ---------------------------------------------------------------------------------


def _catalog(repo: str | None) -> Catalog:
    """The repository's catalog at HEAD; StepAside when a crash journal waits to be completed
    (the full command line completes it and reports what it must)."""
    from gc_polecat.beads.store import Store, resolve_root  # lazy: start-up

    store = Store(resolve_root(repo))
    if store.journal_pending():
        raise StepAside
    catalog = store.catalog
    if not catalog.is_fresh():
        catalog.refresh()
    return catalog


def _reader(repo: str | None) -> tuple[Callable[[str], dict[str, Any]], Callable[[], None]]:
    """(`get(id)`, `close()`) over the beads at HEAD: SQLite alone when the catalog is fresh
    and the repository named (beads/snapshot.py), else the store's catalog, caught up first.
    `get` steps aside for a bead the catalog does not hold (missing, or a file it could not
    read: the full command line names the error)."""
    from gc_polecat.beads import snapshot  # lazy: start-up
    from gc_polecat.beads.config import has_settings  # lazy: start-up
    from gc_polecat.beads.ids import validate_id  # lazy: start-up

    named = repo if repo is not None else (os.environ.get("GC_POLECAT_REPO") or None)
    db = None
    if named:  # as store.resolve_root; else find_root, through the store
        root = os.path.realpath(os.path.expanduser(named))
        if os.path.isdir(os.path.join(root, ".git")) and has_settings(Path(root)):
            db = snapshot.fresh_catalog(root)
    if db is not None:
        fetch: Callable[[str], dict[str, Any] | None] = functools.partial(snapshot.get, db)
        close = db.close
    else:
        catalog = _catalog(repo)
        fetch, close = catalog.get, catalog.close

    def get(bead_id: str) -> dict[str, Any]:
        validate_id(bead_id)
        bead = fetch(bead_id)
        if bead is None:
            raise StepAside
        return bead

    return get, close


def show_lines(repo: str | None, json_output: bool, bead_ids: list[str]) -> list[str]:
    """`bead show`'s output."""
    get, close = _reader(repo)
    try:
        beads = [get(bead_id) for bead_id in bead_ids]
    finally:
        close()
    if json_output:
        return [json_text(beads)]
    return [printable(line) for bead in beads for line in bead_lines(bead)]


def list_output(repo: str | None, json_output: bool, opts: dict[str, list[str]]) -> list[str]:
    """`bead list`'s output with the filters `list_request` knows (the others' defaults)."""
    from gc_polecat.interop.bd_verbs import Filter  # lazy: start-up

    include_closed = "all" in opts
    query, hidden = list_selection(
        opts.get("status", ()), opts.get("type", ()), (opts.get("assignee") or [None])[-1],
        opts.get("label", ()), include_closed, "include_gates" in opts, "include_infra" in opts,
    )  # fmt: skip
    flt = Filter(query.statuses, include_closed=include_closed, exclude_types=hidden)
    catalog = _catalog(repo)
    try:
        beads = catalog.list(query)
        if catalog.bad_files():  # each is a warning on stderr, and exit 2: the full command
            raise StepAside
    finally:
        catalog.close()
    found = [b for b in beads if flt.matches(b)]
    limit = int(opts["limit"][-1]) if "limit" in opts else None
    found = found[:limit] if limit else found
    if json_output:
        return [json_text(found)]
    return [printable(line) for line in list_lines(found)]


def await_output(repo: str | None, json_output: bool, wait_id: str) -> tuple[list[str], int]:
    """`await`'s output and exit status for a wait that has settled without a write to make."""
    from gc_polecat.beads.ids import validate_id  # lazy: start-up
    from gc_polecat.lifecycle import waitview  # lazy: start-up

    raw_epoch = os.environ.get("GC_CONTINUATION_EPOCH")
    epoch = int(raw_epoch) if raw_epoch else None  # ValueError: the full command line's error
    session_id = os.environ.get("GC_SESSION_ID")
    if session_id:  # the full `await` listens on it: a bad one is its error (doorbell keys)
        validate_id(session_id)
        if len(session_id) > 100:  # doorbell.MAX_KEY_LEN
            raise StepAside
    get, close = _reader(repo)
    try:
        wait = get(wait_id)
        if not waitview.is_wait(wait):
            raise StepAside
        result = waitview.answer(get, wait, epoch)
    finally:
        close()
    if result is None or waitview.needs_delivery(wait, result):
        raise StepAside  # pending (the slim waiter), or ready (delivery is a commit)
    text = json_text(result.payload) if json_output else printable(result.summary())
    return [text], result.code


def _answer(argv: list[str]) -> tuple[list[str], int] | None:
    """The lines to print and the exit status, or None when this is not a fast command."""
    request = show_request(argv)
    if request is not None:
        return show_lines(*request), 0
    listing = list_request(argv)
    if listing is not None:
        return list_output(*listing), 0
    waiting = await_request(argv)
    if waiting is not None:
        return await_output(*waiting)
    return None


def run(argv: list[str]) -> int | None:
    """Answer a fast command here and return its exit status, or None to step aside."""
    if os.environ.get(FAST_ENV) == "0" or not _utf8(argv):
        return None
    if not (show_request(argv) or list_request(argv) or await_request(argv)):
        return None
    from gc_polecat.plugins import selected_entry_points  # lazy: start-up

    if selected_entry_points():
        return None  # a plugin may override the command or observe: build the whole CLI
    os.umask(os.umask(0o002) | 0o002)  # as PolecatGroup.main: see cli.private_umask
    try:
        try:
            answered = _answer(argv)
        except Exception:  # noqa: BLE001 - StepAside, or an error the full CLI words itself
            return None
        if answered is None:
            return None
        lines, code = answered
        try:
            sys.stdout.write("".join(line + "\n" for line in lines))
            sys.stdout.flush()
        except BrokenPipeError:
            return 1
        return code
    except KeyboardInterrupt:  # as click: a blank line, then the one-line error
        sys.stderr.write("\ngc-polecat: error: aborted\n")
        return 1
