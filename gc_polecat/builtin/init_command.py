"""`gc-polecat init`: make a directory a beads repository, or adopt one (a clone, a bd project)."""

from __future__ import annotations

import click

from gc_polecat.cli import AppContext, emit_json, json_option
from gc_polecat.hookspecs import hookimpl


@click.command("init")
@click.argument("path", required=False, type=click.Path(file_okay=False), default=None)
@click.option(
    "--prefix",
    default=None,
    help="ID prefix for new beads. Default: the repository's own; in a bd project bd's "
    "issue-prefix; else gc. A different prefix than an existing repository's is refused.",
)
@json_option
@click.pass_obj
def init_command(app: AppContext, path: str | None, prefix: str | None) -> None:
    """Make PATH (default: the current directory) a beads repository; runs git init if needed.
    Idempotent: on a clone of a beads repository it only sets this clone's git options."""
    from gc_polecat.beads.store import Store  # lazy: start-up

    store = Store.init(path or app.repo or ".", prefix=prefix, pm=app.pm)
    settings = store.settings_name()
    if app.json:
        emit_json({"root": str(store.root), "prefix": store.prefix, "settings": settings})
    else:
        click.echo(f"beads repository ready at {store.root} (prefix {store.prefix}, {settings})")


@hookimpl
def gc_polecat_register_commands(cli: click.Group) -> None:
    cli.add_command(init_command)
