"""Pool configuration (validated, errors name the key) and `pool status` over real sessions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gc_polecat.errors import BadInput
from gc_polecat.pool.config import parse_pools

from .conftest import configure, run_cli, submitted_ids

GOOD = {
    "polecats": {
        "min_active": 1,
        "max_active": 4,
        "max_waiting": 2,
        "wait_ttl": "30m",
        "names": ["furiosa", "nux"],
        "worktree_root": "../polecats",
        "idle_timeout": "10m",
    }
}


def test_a_full_pool_config_parses() -> None:
    pool = parse_pools(GOOD, "config.yaml:")["polecats"]
    assert (pool.min_active, pool.max_active, pool.waiting_cap) == (1, 4, 2)
    assert pool.wait_ttl == 1800 and pool.idle_timeout == 600
    assert pool.names == ("furiosa", "nux") and pool.worktree_root == "../polecats"
    assert parse_pools({"p": {"max_active": 3}}, "c:")["p"].waiting_cap == 3


@pytest.mark.parametrize(
    ("settings", "needle"),
    [
        ({"max_active": 0}, "pools.polecats.max_active must be an integer >= 1"),
        ({}, "pools.polecats.max_active is required"),
        ({"max_active": 2, "min_active": 3}, "min_active (3) is above max_active (2)"),
        ({"max_active": 2, "max_waiting": -1}, "pools.polecats.max_waiting must be an integer"),
        ({"max_active": 2, "command": "sh agent.sh"}, "pools.polecats.command must be a list"),
        ({"max_active": 2, "command": ["sh", 3]}, "pools.polecats.command must be a list"),
        ({"max_active": 2, "provider": "a b"}, "pools.polecats.provider must be a provider"),
        ({"max_active": 2, "target": "ma in"}, "pools.polecats.target: invalid branch name"),
        ({"max_active": 2, "repo": ""}, "pools.polecats.repo must be a path"),
        ({"max_active": "4"}, "pools.polecats.max_active must be an integer"),
        ({"max_active": 2, "max_wait": 1}, "pools.polecats.max_wait: unknown setting"),
        ({"max_active": 2, "names": ["ok", "not ok"]}, "pools.polecats.names must be a list"),
        ({"max_active": 2, "names": ["a", "a"]}, "lists a name twice"),
        ({"max_active": 2, "wait_ttl": "soon"}, "pools.polecats.wait_ttl: not a duration"),
        ({"max_active": 2, "worktree_root": ""}, "pools.polecats.worktree_root must be a path"),
        ("four", "pools.polecats must be a mapping"),
    ],
)
def test_bad_pool_settings_name_the_key(settings: object, needle: str) -> None:
    with pytest.raises(BadInput) as err:
        parse_pools({"polecats": settings}, "config.yaml:")
    assert needle in str(err.value)


@pytest.mark.parametrize("name", ["../x", "a b", "", "-" * 70])
def test_bad_pool_names(name: str) -> None:
    with pytest.raises(BadInput, match="invalid pool name"):
        parse_pools({name: {"max_active": 1}}, "c:")


def test_bad_config_is_exit_2_on_the_command_line(repo: Path) -> None:
    configure(repo, "pools:\n  polecats:\n    max_active: 2\n    min_active: 5\n")
    proc = run_cli("--repo", str(repo), "pool", "status")
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1
    assert "pools.polecats.min_active (5) is above max_active (2)" in proc.stderr


def test_pool_status_and_the_pools_wait_ttl(repo: Path) -> None:
    configure(
        repo, "pools:\n  polecats:\n    max_active: 3\n    max_waiting: 1\n    wait_ttl: 15m\n"
    )
    env = {"GC_POLECAT_REPO": str(repo)}
    sid = run_cli(
        "session",
        "start",
        "--pool",
        "polecats",
        "--provider",
        "process",
        "--",
        "sleep",
        "120",
        env=env,
    ).stdout.strip()
    try:
        work = run_cli("bead", "create", "w", env=env).stdout.strip()
        run_cli("bead", "update", work, "--status", "in_progress", "--assignee", sid, env=env)
        out = run_cli(
            "submit",
            work,
            "--branch",
            "b",
            "--commit",
            "a" * 40,
            env={**env, "GC_SESSION_ID": sid, "GC_CONTINUATION_EPOCH": "1"},
        )
        assert out.returncode == 0, out.stderr
        _, wait = submitted_ids(out.stdout)
        shown = json.loads(run_cli("bead", "show", wait, "--json", env=env).stdout)[0]
        assert shown["timeout"] == 15 * 60 * 10**9  # the pool's wait_ttl, not the global 2 h
        rows = json.loads(run_cli("pool", "status", "--json", env=env).stdout)
        (row,) = rows
        assert row["pool"] == "polecats" and row["configured"] and row["max_waiting"] == 1
        assert row["waiting"] == 1 and row["alive"] == 1
        assert row["sessions"][sid]["state"] == "awaiting_verdict"
        text = run_cli("pool", "status", env=env).stdout
        assert "waiting 1/1" in text
    finally:
        run_cli("session", "stop", sid, env=env)
    rows = json.loads(run_cli("pool", "status", "--json", env=env).stdout)
    assert rows[0]["alive"] == 0 and rows[0]["work_blocked"] == 1  # pending submission blocks it
