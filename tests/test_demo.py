"""`gc-polecat demo` end to end (real tmux and real processes), and its judge on bad evidence."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gc_polecat.beads.store import Store
from gc_polecat.demo.city import City, _evidence


@pytest.mark.parametrize("provider", ["tmux", "process"])
def test_the_demo_tells_the_whole_story_and_exits_0(provider: str, tmp_path: Path) -> None:
    if provider == "tmux" and shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (.ci/run installs it)")
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "gc_polecat", "demo", "--keep"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "GC_POLECAT_DEMO_PROVIDER": provider},
    )
    took = time.monotonic() - started
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert took < 60
    assert f"sessions: {provider}" in out
    assert out.count("fixed and merged by the same session, process and worktree") == 2
    assert re.search(r"killed: session gc-\w+ died waiting; a fresh session gc-\w+ resumed", out)
    assert "verdict fix_needed (conflict), work routed to session" in out
    assert "verdict fix_needed (tests), work routed to pool" in out
    assert "audit: no leaked session, worktree, branch, wait or finalizer" in out
    kept = Path(re.search(r"the city is kept at (\S+)", out).group(1))
    try:
        assert (kept / "beads" / ".beads" / "config.yaml").exists()
        lines = (kept / "evidence.jsonl").read_text().splitlines()
        assert len(lines) >= 6
        if provider == "tmux":
            assert all(json.loads(x)["pane"].startswith("%") for x in lines)
    finally:
        shutil.rmtree(kept, ignore_errors=True)


def test_the_demo_judge_rejects_a_fix_made_by_another_session(repo: Path, tmp_path: Path) -> None:
    """The demo exits 0 only on real evidence: a 'same session' fix by a different session, or a
    killed item finished by the very session that was killed, is a problem it reports."""
    store = Store(repo)
    city = City(tmp_path, lambda line: None)
    with store.transaction() as tx:
        for key in ("clean", "conflict", "tests", "killed"):
            city.works[key] = tx.create({"title": key})["id"]
    city.killed_session = "gc-dead"

    def line(key: str, attempt: int, code: int, session: str) -> str:
        return json.dumps({"work": city.works[key], "attempt": attempt, "exit": code,
                           "session": session, "epoch": "1", "polecat": "nux", "pid": 1,
                           "pane": "", "cwd": "/w"})  # fmt: skip

    (tmp_path / "evidence.jsonl").write_text(
        "\n".join([
            line("conflict", 1, 10, "gc-a"), line("conflict", 2, 0, "gc-b"),
            line("tests", 1, 10, "gc-c"), line("tests", 2, 0, "gc-c"),
            line("killed", 1, 10, "gc-dead"), line("killed", 2, 0, "gc-dead"),
        ]) + "\n"
    )  # fmt: skip
    problems = "\n".join(_evidence(city, store))
    assert "conflict: expected fix needed then merged in one session" in problems
    assert "tests:" not in problems
    assert "killed: not merged" in problems
    assert "clean: not merged" in problems
