"""Formulas parse, their steps form a DAG, and every `gc-polecat` line they mention is real."""

from __future__ import annotations

import re
import shlex
import tomllib
import warnings
from pathlib import Path

import click
import pytest

from gc_polecat.cli import make_cli
from gc_polecat.plugins import make_plugin_manager

from .conftest import ROOT

FORMULAS = sorted((ROOT / "formulas").glob("*.toml"))
COMMAND_RE = re.compile(r"^\s*(gc-polecat\s.+?)\s*$", re.M)


def commands_in(formula: dict) -> list[str]:
    texts = [formula.get("description", "")] + [s.get("description", "") for s in formula["steps"]]
    return [m.group(1) for text in texts for m in COMMAND_RE.finditer(text)]


def check_command_line(cli: click.Group, line: str) -> None:
    """Resolve subcommands, then parse the rest with click itself (unknown flags fail)."""
    argv = shlex.split(re.sub(r"\{\{(\w+)\}\}", r"gc-var\1", line))[1:]
    ctx = cli.make_context("gc-polecat", list(argv), resilient_parsing=False)
    command: click.Command = cli
    while isinstance(command, click.Group) and (remaining := _unparsed(ctx)):
        name, *rest = remaining
        sub = command.get_command(ctx, name)
        assert sub is not None, f"{line!r}: no command {name!r}"
        ctx = sub.make_context(name, rest, parent=ctx)
        command = sub


def _unparsed(ctx: click.Context) -> list[str]:
    """What a group left for its subcommand (click 8 splits it in two; click 9 will not)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return [*getattr(ctx, "protected_args", []), *ctx.args]


def test_the_formulas_are_the_ones_the_readme_documents() -> None:
    """formulas/README.md's table names every formula file, and nothing else: a formula added,
    renamed or lost (an empty glob would check nothing at all) fails here."""
    table = (ROOT / "formulas" / "README.md").read_text()
    documented = set(re.findall(r"^\| `([\w.-]+\.toml)` \|", table, re.M))
    assert {"mol-bead-work.toml", "mol-polecat-work.toml"} <= documented
    assert [p.name for p in FORMULAS] == sorted(documented)


@pytest.mark.parametrize("path", FORMULAS, ids=[p.name for p in FORMULAS])
def test_formula_schema_and_commands(path: Path) -> None:
    formula = tomllib.loads(path.read_text())
    assert formula["formula"] == path.stem and formula["description"]
    assert formula["type"] == "workflow"
    ids = [s["id"] for s in formula["steps"]]
    assert len(ids) == len(set(ids))
    for i, step in enumerate(formula["steps"]):
        assert step["title"] and step["description"]
        needs = set(step.get("needs", []))
        assert needs <= set(ids[:i]), f"{step['id']} needs a later or unknown step"
    text = "\n".join(line for line in path.read_text().splitlines() if not line.startswith("#"))
    used = set(re.findall(r"\{\{(\w+)\}\}", text))
    assert used <= set(formula.get("vars", {})), f"undeclared vars {used - set(formula['vars'])}"
    lines = commands_in(formula)
    assert lines, "a formula that names no gc-polecat command checks nothing"
    cli = make_cli(make_plugin_manager(load_entrypoints=False))
    for line in lines:
        check_command_line(cli, line)


def test_the_checker_rejects_unknown_commands_and_flags() -> None:
    cli = make_cli(make_plugin_manager(load_entrypoints=False))
    check_command_line(cli, "gc-polecat bead update gc-1 --status open")
    with pytest.raises(AssertionError, match="no command"):
        check_command_line(cli, "gc-polecat bead frob gc-1")
    with pytest.raises(click.UsageError):
        check_command_line(cli, "gc-polecat bead update gc-1 --no-such-flag")
