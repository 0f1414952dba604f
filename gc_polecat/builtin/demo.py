"""`gc-polecat demo`: the whole story on a temporary city (gc_polecat/demo/city.py)."""

from __future__ import annotations

import click

from gc_polecat.hookspecs import hookimpl


@click.command("demo")
@click.option("--keep", is_flag=True, help="Leave the city on disk for inspection; print where.")
def demo_command(keep: bool) -> None:
    """Run a pool of 3 polecats, the controller and the refinery on a temporary city: a clean
    merge, a conflict and a test failure each fixed by the same session, and a polecat killed
    while it waits whose work a fresh session finishes. Prints the timeline, the evidence and
    a leak audit; exits 0 only if all of it holds, within 60 s."""
    import shutil  # lazy: start-up

    from gc_polecat.demo.city import main  # lazy: start-up

    if shutil.which("git") is None:
        raise click.ClickException("the demo needs git on PATH")
    code = main(keep, click.echo)
    if code:
        raise SystemExit(code)


@hookimpl
def gc_polecat_register_commands(cli: click.Group) -> None:
    cli.add_command(demo_command)
