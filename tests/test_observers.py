"""Observers are called through pluggy (issue 15, point 4): hook wrappers around
`gc_polecat_bead_committed` see every commit, before and after the observers, while each
observer stays isolated (one that raises is reported, never fails the write, never starves the
others), and a wrapper that raises is reported the same way (plugins.call_observers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pluggy
import pytest

from gc_polecat.beads.store import CommitResult, Store
from gc_polecat.hookspecs import hookimpl
from gc_polecat.plugins import make_plugin_manager

from .conftest import git


class Log:
    """Records what each plugin saw, in order."""

    def __init__(self) -> None:
        self.lines: list[str] = []


class Wrapper:
    def __init__(self, log: Log) -> None:
        self.log = log

    @hookimpl(wrapper=True)
    def gc_polecat_bead_committed(self, store: Store, result: CommitResult) -> Iterator[None]:
        self.log.lines.append(f"wrapper before {result.commit[:7]}")
        outcome = yield
        self.log.lines.append(f"wrapper after {len(outcome)} results")
        return outcome


class OldStyleWrapper:
    def __init__(self, log: Log) -> None:
        self.log = log

    @hookimpl(hookwrapper=True)
    def gc_polecat_bead_committed(self, store: Store, result: CommitResult) -> Iterator[None]:
        self.log.lines.append("old wrapper before")
        yield
        self.log.lines.append("old wrapper after")


class Observer:
    def __init__(self, log: Log, name: str) -> None:
        self.log, self.name = log, name

    @hookimpl
    def gc_polecat_bead_committed(self, store: Store, result: CommitResult) -> None:
        self.log.lines.append(f"{self.name} saw {result.changes[0].event}")


class Exploding:
    @hookimpl
    def gc_polecat_bead_committed(self, store: Store, result: CommitResult) -> None:
        raise RuntimeError("observer exploded")


class ExplodingWrapper:
    @hookimpl(wrapper=True)
    def gc_polecat_bead_committed(self, store: Store, result: CommitResult) -> Iterator[None]:
        yield
        raise RuntimeError("wrapper exploded")


@pytest.fixture
def pm() -> pluggy.PluginManager:
    return make_plugin_manager(load_entrypoints=False)


def test_wrappers_see_the_commit_around_the_observers(pm: pluggy.PluginManager, repo: Path) -> None:
    log = Log()
    pm.register(Observer(log, "first"), name="first")
    pm.register(Wrapper(log), name="wrapper")
    pm.register(OldStyleWrapper(log), name="old")
    store = Store(repo, pm=pm)
    with store.transaction() as tx:
        tx.create({"title": "watched"})
    commit = git(repo, "rev-parse", "HEAD")
    assert log.lines == [
        "old wrapper before",
        f"wrapper before {commit[:7]}",
        "first saw create",
        "wrapper after 0 results",  # observers answer None, which pluggy leaves out
        "old wrapper after",
    ]


def test_an_observer_that_raises_inside_a_wrapped_call_is_isolated(
    pm: pluggy.PluginManager, repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = Log()
    pm.register(Observer(log, "before"), name="before")
    pm.register(Exploding(), name="exploding")
    pm.register(Observer(log, "after"), name="after")
    pm.register(Wrapper(log), name="wrapper")
    store = Store(repo, pm=pm)
    with store.transaction() as tx:
        bead = tx.create({"title": "survives"})
    assert store.get(bead["id"])["title"] == "survives"
    assert [line.split()[0] for line in log.lines] == ["wrapper", "after", "before", "wrapper"]
    err = capsys.readouterr().err
    assert "plugin exploding failed after commit" in err and "observer exploded" in err
    # a second commit: the isolation is not applied twice, the warning names the new commit
    with store.transaction() as tx:
        tx.update(bead["id"], {"title": "again"})
    err = capsys.readouterr().err
    assert err.count("observer exploded") == 1
    assert git(repo, "rev-parse", "HEAD")[:12] in err


def test_a_wrapper_that_raises_is_reported_and_the_write_stands(
    pm: pluggy.PluginManager, repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = Log()
    pm.register(Observer(log, "observer"), name="observer")
    pm.register(ExplodingWrapper(), name="bad-wrapper")
    store = Store(repo, pm=pm)
    with store.transaction() as tx:
        bead = tx.create({"title": "stands"})
    assert store.get(bead["id"])["title"] == "stands"
    assert log.lines == ["observer saw create"]
    assert "wrapper exploded" in capsys.readouterr().err
    assert git(repo, "status", "--porcelain") == ""
