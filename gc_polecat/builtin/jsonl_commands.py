"""`gc-polecat export` / `gc-polecat import`: bd JSONL in and out (gc_polecat/interop/bd_jsonl.py).

`export [--jsonl FILE]` writes every bead as one line `bd import` accepts (stdout by default or
with `-`; a file is replaced atomically). `import FILE` (or `-` for stdin) upserts bd's export in
one commit, or none when nothing differs; a bad line exits 2 naming its line number.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from gc_polecat.cli import AppContext, emit_json, json_option
from gc_polecat.errors import BadInput, GcPolecatError
from gc_polecat.hookspecs import hookimpl

STDIO = "-"


@click.command("export")
@click.option(
    "--jsonl",
    "target",
    metavar="FILE",
    default=STDIO,
    show_default=True,
    help="Write the JSONL here ('-' is stdout).",
)
@json_option
@click.pass_obj
def export_command(app: AppContext, target: str) -> None:
    """Write every bead as bd JSONL (one object per line, sorted by ID)."""
    from gc_polecat.interop.bd_jsonl import export_text, read_all, read_memories  # lazy: start-up

    store = app.store()
    beads = read_all(store)
    text = export_text(beads, read_memories(store))
    if target == STDIO:
        click.echo(text, nl=False)
        return
    path = Path(target).expanduser()
    if path.is_dir():
        raise BadInput(f"--jsonl {target}: is a directory")
    if not path.parent.is_dir():
        raise BadInput(f"--jsonl {target}: no such directory {path.parent}")
    from gc_polecat.beads.git import atomic_write  # lazy: start-up

    try:
        atomic_write(path, text.encode("utf-8"), path.parent)
    except OSError as exc:
        raise GcPolecatError(f"cannot write {target}: {exc.strerror or exc}") from None
    if app.json:
        emit_json({"path": str(path), "exported": len(beads)})
    else:
        click.echo(f"exported {len(beads)} beads to {target}")


@click.command("import")
@click.argument("source", metavar="FILE")
@json_option
@click.pass_obj
def import_command(app: AppContext, source: str) -> None:
    """Upsert bd JSONL from FILE ('-' is stdin): one commit, or none if nothing differs."""
    from gc_polecat.interop.bd_jsonl import import_jsonl  # lazy: start-up

    if source == STDIO:
        data, name = sys.stdin.buffer.read(), "stdin"
    else:
        try:
            data, name = Path(source).expanduser().read_bytes(), source
        except OSError as exc:
            raise BadInput(f"cannot read {source}: {exc.strerror or exc}") from None
    result = import_jsonl(app.store(), data, name)
    if app.json:
        emit_json(result.as_json(name))
        return
    click.echo(
        f"imported {name}: {len(result.created)} created, {len(result.updated)} updated, "
        f"{result.unchanged} unchanged, {result.skipped} skipped"
        + (f", {result.memories} memories" if result.memories else "")
        + (f" (commit {result.commit[:12]})" if result.commit else " (no commit)")
    )
    for key, bd_key in (("custom_types", "types.custom"), ("custom_statuses", "status.custom")):
        if key in result.custom:  # bd accepts these only once configured (docs/interop.md)
            click.echo(f'for bd: bd config set {bd_key} "{",".join(result.custom[key])}"')


@hookimpl
def gc_polecat_register_commands(cli: click.Group) -> None:
    cli.add_command(export_command)
    cli.add_command(import_command)
