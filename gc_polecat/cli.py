"""The `gc-polecat` command line: a click group built by a factory, filled in by plugins.

`make_cli()` asks every plugin (built-ins included) to add its commands through the
`gc_polecat_register_commands` hook, so tests build a fresh group with their own plugin
manager and never reload modules. Errors become one line on stderr: exit 2 for bad input and
usage errors (nothing was written), 1 for anything else.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from . import __version__
from .errors import GcPolecatError

if TYPE_CHECKING:
    import pluggy

    from .store import Store


class AppContext:
    """What every command gets as `ctx.obj`: the repository choice, output mode and store."""

    def __init__(self, repo: str | None, json_output: bool, pm: pluggy.PluginManager) -> None:
        self.repo = repo
        self.json = json_output
        self.pm = pm
        self._store: Store | None = None

    def store(self) -> Store:
        if self._store is None:
            from .store import Store, resolve_root

            self._store = Store(resolve_root(self.repo), pm=self.pm)
        return self._store


def fail(message: str, code: int) -> None:
    click.echo(f"gc-polecat: error: {' '.join(message.split())}", err=True)
    sys.exit(code)


class PolecatGroup(click.Group):
    """A group whose errors are one line each, with exit status 2 for bad input."""

    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            rv = super().main(
                args, prog_name or "gc-polecat", complete_var, standalone_mode=False, **extra
            )
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            fail("aborted", 1)
        except click.UsageError as exc:
            fail(exc.format_message(), 2)
        except click.ClickException as exc:
            fail(exc.format_message(), exc.exit_code)
        except GcPolecatError as exc:
            fail(str(exc), exc.exit_code)
        except BrokenPipeError:
            sys.exit(1)
        except Exception as exc:
            if os.environ.get("GC_POLECAT_DEBUG"):
                raise
            fail(
                f"internal error: {type(exc).__name__}: {exc} "
                "(set GC_POLECAT_DEBUG=1 for a traceback)",
                1,
            )
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)


def json_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """`--json` on a command; the global `gc-polecat --json` works as well."""

    @click.option("--json", "json_flag", is_flag=True, help="Print machine-readable JSON.")
    @functools.wraps(func)
    def wrapper(*args: Any, json_flag: bool, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        if json_flag:
            ctx.find_object(AppContext).json = True
        return func(*args, **kwargs)

    return wrapper


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def make_cli(pm: pluggy.PluginManager | None = None) -> click.Group:
    """Build the command line; `pm` defaults to the process-wide plugin manager."""
    if pm is None:
        from .plugins import get_plugin_manager

        pm = get_plugin_manager()
    manager = pm

    @click.group(cls=PolecatGroup, context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(__version__, prog_name="gc-polecat")
    @click.option(
        "--repo",
        metavar="PATH",
        envvar="GC_POLECAT_REPO",
        help="Beads repository (default: $GC_POLECAT_REPO, else the nearest enclosing one).",
    )
    @click.option("--json", "json_output", is_flag=True, help="Machine-readable JSON output.")
    @click.pass_context
    def cli(ctx: click.Context, repo: str | None, json_output: bool) -> None:
        """Same-session refinery feedback for polecats, on a git-native bead store."""
        ctx.obj = AppContext(repo, json_output, manager)

    pm.hook.gc_polecat_register_commands(cli=cli)
    return cli
