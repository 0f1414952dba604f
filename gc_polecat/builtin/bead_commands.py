"""`gc-polecat bead ...`: bd's core commands over the file store (the group, `show`, and the
helpers every verb shares; the other verbs are in `bead_verbs.py`, loaded on first use).

Every mutating command is one commit (or none, when it changes nothing). Reads answer from the
catalog when it is at HEAD, which needs neither dulwich nor YAML, and that is what keeps
`bead show` fast from a cold interpreter.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

import click

from gc_polecat import fast
from gc_polecat.beads.bead import Bead
from gc_polecat.cli import AppContext, echo, emit_json, json_option, validate_ids
from gc_polecat.errors import BadInput, InvalidBead, NotFound
from gc_polecat.hookspecs import hookimpl

DURATION_RE = re.compile(r"^([0-9]{1,19})(ns|us|ms|s|m|h|d)?$")
MAX_NS = 2**63 - 1  # bd stores a gate timeout as a Go int64 of nanoseconds
_NS = {
    "ns": 1,
    "us": 10**3,
    "ms": 10**6,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
    "d": 86400 * 10**9,
}


class Priority(click.ParamType):
    """0..4, also written P0..P4 as bd accepts."""

    name = "priority"

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip().upper().removeprefix("P")
        if text in ("0", "1", "2", "3", "4"):  # not isdigit(): it takes '²' and 5000 digits
            return int(text)
        self.fail(f"{value!r} is not a priority (0..4 or P0..P4)", param, ctx)


class Duration(click.ParamType):
    """A duration such as 90s, 30m, 2h, 1d (a bare number is seconds); converted to nanoseconds."""

    name = "duration"

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        if isinstance(value, int):
            return value
        m = DURATION_RE.fullmatch(str(value).strip())
        ns = int(m.group(1)) * _NS[m.group(2) or "s"] if m else MAX_NS + 1
        if ns > MAX_NS:
            self.fail(f"{value!r} is not a duration up to 292 years (e.g. 2h)", param, ctx)
        return ns


class KeyValue(click.ParamType):
    name = "key=value"

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[str, str]:
        key, eq, val = str(value).partition("=")
        if not eq or not key:
            self.fail(f"{value!r} is not key=value", param, ctx)
        return key, val


split_csv = fast.split_csv  # one rule for both paths (the verbs import it from here)


# --- reading ---------------------------------------------------------------------------------


def read_beads(app: AppContext, bead_ids: tuple[str, ...]) -> list[Bead]:
    from gc_polecat.beads.ids import id_path  # lazy: start-up

    validate_ids(*bead_ids)
    store = app.store()
    catalog = store.catalog
    store.recover_if_needed()
    if not catalog.is_fresh():
        catalog.refresh()
    found = []
    for bead_id in bead_ids:
        bead = catalog.get(bead_id)
        if bead is None:
            bad = dict(catalog.bad_files()).get(id_path(bead_id))
            if bad is not None:
                raise InvalidBead(bad)
            raise NotFound(f"no bead {bead_id}")
        found.append(bead)
    return found


def all_beads(app: AppContext, query: Any = None) -> tuple[list[Bead], int]:
    """Every readable bead at HEAD (or those `query` selects) and the exit status: 2 when a
    bead file is unreadable (each is named on stderr; the readable beads still count)."""
    from gc_polecat.beads.catalog import Query  # lazy: start-up

    catalog = app.store().catalog
    catalog.refresh()
    beads = catalog.list(query or Query())
    bad = catalog.bad_files()
    for path, error in bad:
        click.echo(f"gc-polecat: warning: skipped unreadable bead file {path}: {error}", err=True)
    return beads, 2 if bad else 0


def _print_bead(bead: Bead) -> None:
    for line in fast.bead_lines(bead):  # the same lines the click-free `bead show` prints
        echo(line)


list_lines = fast.list_lines  # the click-free `bead list` prints through the same code


def report_beads(app: AppContext, beads: list[Bead], single: bool = False) -> None:
    if app.json:
        emit_json(beads)
        return
    if single:
        for bead in beads:
            _print_bead(bead)
        return
    for line in list_lines(beads):
        echo(line)


# --- commands --------------------------------------------------------------------------------


class LazyGroup(click.Group):
    """A group whose subcommands in `lazy` are imported the first time they are asked for
    (click's lazy-loading pattern): `bead show` stays fast from a cold interpreter, and every
    command's start-up skips the options of verbs it does not run."""

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            module, _, attr = self.lazy[cmd_name].partition(":")
            self.add_command(getattr(importlib.import_module(module), attr), cmd_name)
        return super().get_command(ctx, cmd_name)


_VERBS = "gc_polecat.builtin.bead_verbs"


@click.group(
    "bead",
    cls=LazyGroup,
    lazy={
        name: f"{_VERBS}:{attr}"
        for name, attr in (
            ("create", "create_command"),
            ("list", "list_command"),
            ("update", "update_command"),
            ("close", "close_command"),
            ("ready", "ready_command"),
            ("search", "search_command"),
            ("comments", "comments_group"),
            ("label", "label_group"),
            ("dep", "dep_group"),
        )
    },
)
def bead_group() -> None:
    """Create, show, list, update, claim, search, comment, label and close beads (bd's verbs,
    over git)."""


@bead_group.command("show")
@click.argument("bead_ids", nargs=-1, metavar="ID...")
@click.option("--id", "id_flags", multiple=True, help="An ID (for IDs that look like flags).")
@click.option("--short", is_flag=True, help="One line per bead.")
@click.option("--long", "long_format", is_flag=True, help="Every field (what show prints anyway).")
@click.option("--children", is_flag=True, help="Show the children of each bead instead.")
@json_option
@click.pass_obj
def show_command(
    app: AppContext,
    bead_ids: tuple[str, ...],
    id_flags: tuple[str, ...],
    short: bool,
    long_format: bool,
    children: bool,
) -> int:
    """Show beads (JSON: an array, as bd prints it).

    bd: cmd/bd/show.go.
    """
    wanted = bead_ids + id_flags
    if not wanted:
        raise BadInput("give at least one ID")
    beads, status = read_beads(app, wanted), 0
    if children:
        from gc_polecat.interop.bd_verbs import parent_of  # lazy: start-up

        every, status = all_beads(app)
        beads = [b for p in beads for b in every if parent_of(b) == p["id"]]
    report_beads(app, beads, single=not short)
    return status


def print_comments(bead: Bead, indent: str = "", local: bool = False) -> None:
    for line in fast.comment_lines(bead, indent, local):
        echo(line)


@hookimpl
def gc_polecat_register_commands(cli: click.Group) -> None:
    cli.add_command(bead_group)
