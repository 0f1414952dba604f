"""`gc-polecat init`: make a directory a beads repository."""

from __future__ import annotations

import click

from ..cli import AppContext, emit_json, json_option
from ..hookspecs import hookimpl


@click.command("init")
@click.argument("path", required=False, type=click.Path(file_okay=False), default=None)
@click.option("--prefix", default="gc", show_default=True, help="ID prefix for new beads.")
@json_option
@click.pass_obj
def init_command(app: AppContext, path: str | None, prefix: str) -> None:
    """Make PATH (default: the current directory) a beads repository; runs git init if needed."""
    from ..store import Store

    store = Store.init(path or app.repo or ".", prefix=prefix, pm=app.pm)
    if app.json:
        emit_json({"root": str(store.root), "prefix": store.prefix})
    else:
        click.echo(f"beads repository ready at {store.root} (prefix {store.prefix})")


@hookimpl
def gc_polecat_register_commands(cli: click.Group) -> None:
    cli.add_command(init_command)
