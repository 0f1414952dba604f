"""Sessions on another machine: liveness is judged only on the session's own host, so a verdict
recorded on one machine routes the work back to a polecat waiting on another, and only the
polecat's own machine may declare it dead. The two machines are one host here, told apart by
GC_POLECAT_HOST (which exists for this, and for containers that share a host name)."""

from __future__ import annotations

import json
import subprocess

import pytest

from .conftest import Cli, submitted_ids


def test_a_waiter_on_another_host_is_judged_only_there(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, sleeper: int
) -> None:
    def js(*args: str):  # noqa: ANN202
        result = cli(*args, "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    monkeypatch.setenv("GC_POLECAT_HOST", "machine-b")
    session = js("session", "register", "--pool", "p", "--pid", str(sleeper))["id"]
    work = cli("bead", "create", "w").output.strip()
    cli("bead", "update", work, "--status", "in_progress", "--assignee", session)
    sub = cli("submit", work, "--branch", "b", "--commit", "a" * 40, "--session", session)
    sub_id, wait_id = submitted_ids(sub.output)
    subprocess.run(["kill", "-9", str(sleeper)])  # the process dies on machine b

    monkeypatch.setenv("GC_POLECAT_HOST", "machine-a")  # the refinery's machine
    assert js("session", "show", session)["alive"] is True  # presumed: not ours to judge
    assert cli("controller", "run", "--once").output == ""  # a's controller leaves it alone
    routed = js("verdict", sub_id, "--fix-needed", "--type", "tests", "--reason", "x")["routed"]
    assert routed == "session"  # the work goes back to the polecat on machine b
    assert js("bead", "show", wait_id)[0]["metadata"]["state"] == "ready"

    monkeypatch.setenv("GC_POLECAT_HOST", "machine-b")  # b's controller sees the truth
    assert js("session", "show", session)["alive"] is False
    assert "canceled (session-dead)" in cli("controller", "run", "--once").output
    assert js("bead", "show", work)[0]["metadata"]["gc.routed_to"] == "p"
