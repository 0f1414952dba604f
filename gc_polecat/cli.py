"""The `gc-polecat` command line: a click group built by a factory, filled in by plugins.

`make_cli()` asks every plugin (built-ins included) to add its commands through the
`gc_polecat_register_commands` hook, so tests build a fresh group with their own plugin
manager and never reload modules. Errors become one line on stderr: exit 2 for bad input and
usage errors (nothing was written), 1 for anything else.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from gc_polecat import __version__
from gc_polecat.errors import GcPolecatError
from gc_polecat.output import json_text, printable  # the adapters print through these

if TYPE_CHECKING:
    import pluggy

    from gc_polecat.beads.store import Store


OWN_PROCESS = False  # True only in the `gc-polecat` process itself, never in a host's


class AppContext:
    """What every command gets as `ctx.obj`: the repository choice, output mode and store."""

    def __init__(self, repo: str | None, json_output: bool, pm: pluggy.PluginManager) -> None:
        self.repo = repo
        self.json = json_output
        self.pm = pm
        self._store: Store | None = None

    def providers(self) -> dict[str, Any]:
        """The session providers the plugins registered (tmux, process, a plugin's)."""
        from gc_polecat.lifecycle.providers import get_providers  # lazy: start-up

        return get_providers(self.pm)

    def store(self) -> Store:
        if self._store is None:
            from gc_polecat.beads.store import Store, resolve_root  # lazy: start-up

            self._store = Store(resolve_root(self.repo), pm=self.pm)
        return self._store


def validate_ids(*bead_ids: str | None) -> None:
    """Refuse (exit 2) an ID from the command line that is no bead ID: before any read."""
    from gc_polecat.beads.ids import validate_id  # lazy: start-up

    for bead_id in bead_ids:
        if bead_id is not None:
            validate_id(bead_id)


def private_umask() -> None:
    """Keep the world-write bit out of the umask, so nothing gc-polecat creates (or git, tmux,
    sessions and hooks that it starts create) is world-writable, even under umask 000; the
    rest of the caller's umask, e.g. group-writable 002, is kept (docs/security.md)."""
    os.umask(os.umask(0o002) | 0o002)


def _is_utf8(text: str) -> bool:
    """False for text holding lone surrogates (how Python decodes argv bytes that are not
    UTF-8): such text can be neither written to a bead file nor printed."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _command_of(argv: list[str]) -> str | None:
    """The command word of a command line: the first word after the global options."""
    words = iter(argv)
    for word in words:
        if word == "--repo":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


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
        private_umask()
        argv = [str(a) for a in (sys.argv[1:] if args is None else args)]
        for arg in argv:
            if not _is_utf8(arg):  # argv bytes that are not UTF-8
                # exec-beads never exits 2: Gas City reads 2 as "unknown operation, fine"
                code = 1 if _command_of(argv) == "exec-beads" else 2
                fail(f"an argument is not valid UTF-8: {arg!r}", code)
        try:
            rv = super().main(
                args, prog_name or "gc-polecat", complete_var, standalone_mode=False, **extra
            )
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            fail("aborted", 1)
        except click.exceptions.NoArgsIsHelpError as exc:
            # `gc-polecat bead` alone asks for the group's help, as with git: stdout, exit 0
            click.echo(exc.ctx.get_help())
            sys.exit(0)
        except click.UsageError as exc:
            fail(exc.format_message(), 2)
        except click.ClickException as exc:
            fail(exc.format_message(), exc.exit_code)
        except GcPolecatError as exc:
            fail(str(exc), exc.exit_code)
        except BrokenPipeError:
            sys.exit(1)
        except Exception as exc:
            if isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG:
                fail(f"{exc.strerror}: {exc.filename}", 2)  # a path given on the command line
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


class Seconds(click.FloatRange):
    """A number of seconds from `min` up to about 31 years. Unlike click.FloatRange it refuses
    NaN (a NaN deadline never passes, `time.sleep(nan)` raises) and infinity."""

    def __init__(self, min: float = 0.0) -> None:  # noqa: A002 - click's own keyword
        super().__init__(min=min, max=1e9)

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        seconds = super().convert(value, param, ctx)
        if seconds != seconds:
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        return seconds


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


def echo(text: str) -> None:
    """Print human-readable output that may hold bead text (see `printable`)."""
    click.echo(printable(text))


def emit_json(value: Any) -> None:
    """Print JSON output; never NaN or Infinity, which are not JSON (docs/formats.md)."""
    click.echo(json_text(value))


def make_cli(pm: pluggy.PluginManager | None = None) -> click.Group:
    """Build the command line; `pm` defaults to the process-wide plugin manager."""
    if pm is None:
        from gc_polecat.plugins import get_plugin_manager  # lazy: start-up

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
    _whole_short_help(cli)
    return cli


def first_sentence(text: str) -> str:
    """The first sentence of a docstring's first paragraph (up to `. `), whole."""
    paragraph = " ".join(text.strip().split("\n\n")[0].split())
    return re.split(r"(?<=\.) (?=[A-Z`])", paragraph, maxsplit=1)[0]  # not at "e.g. the"


def _whole_short_help(command: click.Command) -> None:
    """Give every command (plugins' included) its whole first sentence as the line its group's
    help lists: click would cut it at the terminal's width with `...`, mid-sentence; the help
    formatter wraps a long line instead."""
    if command.short_help is None and command.help:
        command.short_help = first_sentence(command.help)
    if isinstance(command, click.Group) and not getattr(command, "_whole_help", False):
        command._whole_help = True  # type: ignore[attr-defined]  # plugins' groups are shared
        for sub in command.commands.values():
            _whole_short_help(sub)
        get_command = command.get_command

        def get_whole(ctx: click.Context, name: str) -> click.Command | None:
            found = get_command(ctx, name)  # a lazy group imports its command here
            if found is not None:
                _whole_short_help(found)
            return found

        command.get_command = get_whole  # type: ignore[method-assign]
