"""gc-polecat-hello: the smallest complete gc-polecat plugin.

It adds a `hello` command (which reads the repository through the store, as any plugin may) and
observes every commit, appending one JSON line per changed bead to $HELLO_EVENTS_FILE.
"""

from __future__ import annotations

import json
import os

import click

from gc_polecat.beads.catalog import Query
from gc_polecat.beads.store import CommitResult, Store
from gc_polecat.cli import AppContext
from gc_polecat.hookspecs import hookimpl


@click.command("hello")
@click.argument("names", nargs=-1)
@click.option("--count", is_flag=True, help="Also say how many beads this repository holds.")
@click.pass_obj
def hello_command(app: AppContext, names: tuple[str, ...], count: bool) -> None:
    """Greet NAMES (default: the world)."""
    click.echo(f"Hello, {' and '.join(names) or 'world'}!")
    if count:
        catalog = app.store().catalog  # the same store the built-in commands use
        catalog.refresh()
        click.echo(f"{len(catalog.list(Query()))} beads")


@hookimpl
def gc_polecat_register_commands(cli: click.Group) -> None:
    cli.add_command(hello_command)


@hookimpl
def gc_polecat_bead_committed(store: Store, result: CommitResult) -> None:
    path = os.environ.get("HELLO_EVENTS_FILE")
    if not path:
        return
    with open(path, "a", encoding="utf-8") as events:
        for change in result.changes:
            line = {"commit": result.commit, "id": change.id, "event": change.event}
            events.write(json.dumps(line) + "\n")
