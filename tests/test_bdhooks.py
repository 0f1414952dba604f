"""bd's event hooks: our chained section in .beads/hooks/on_*, and verdicts written with
`bd update` turned into our verdicts and wakes. bd itself cannot run here: the tests run the
hook files exactly as bd does (`<hook> <id> <event>`, the issue JSON on stdin)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from .conftest import City, Cli, assert_clean, git, wait_for

GC_EMIT = '#!/bin/sh\n# written by gc\ncat > "$(dirname "$0")/../../gc-saw-$1"\n'


def run_hook(repo: Path, hook: str, bead_id: str, event: str, payload: dict) -> float:
    """Run `.beads/hooks/<hook>` as bd does; returns its wall time."""
    started = time.monotonic()
    proc = subprocess.run(
        [str(repo / ".beads" / "hooks" / hook), bead_id, event],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        cwd=repo,
        timeout=30,
        env={k: v for k, v in os.environ.items() if k != "GC_POLECAT_WRITER"},
    )
    assert proc.returncode == 0, proc.stderr
    return time.monotonic() - started


def test_install_chains_is_idempotent_and_survives_a_rewrite(cli: Cli, repo: Path) -> None:
    hooks = repo / ".beads" / "hooks"
    hooks.mkdir(parents=True, exist_ok=True)
    (hooks / "on_update").write_text(GC_EMIT)
    (hooks / "on_update").chmod(0o755)
    assert cli("hooks", "install", "--beads").exit_code == 0
    text = (hooks / "on_update").read_text()
    assert text.startswith("#!/bin/sh\n# --- BEGIN GC-POLECAT v1 ---")
    assert text.endswith(GC_EMIT.split("\n", 1)[1])  # their lines kept, after ours
    for name in ("on_create", "on_close"):
        assert os.access(hooks / name, os.X_OK)
    files = {p.name: p.read_text() for p in hooks.iterdir()}
    again = cli("hooks", "install", "--beads")
    assert again.exit_code == 0 and "nothing to do" in again.output
    assert {p.name: p.read_text() for p in hooks.iterdir()} == files
    (hooks / "on_update").write_text(GC_EMIT)  # gc rewrites the file on its next pass
    assert cli("hooks", "install", "--beads").exit_code == 0
    assert (hooks / "on_update").read_text() == files["on_update"]  # restored, not doubled
    assert (hooks / "on_update").read_text().count("BEGIN GC-POLECAT") == 1
    assert cli("hooks", "uninstall", "--beads").exit_code == 0
    assert (hooks / "on_update").read_text() == GC_EMIT
    assert cli("hooks", "uninstall", "--beads").output.strip() == "nothing to do"


def test_the_chained_hook_still_gets_the_whole_payload(cli: Cli, repo: Path) -> None:
    hooks = repo / ".beads" / "hooks"
    hooks.mkdir(parents=True, exist_ok=True)
    (hooks / "on_update").write_text(GC_EMIT)
    (hooks / "on_update").chmod(0o755)
    cli("hooks", "install", "--beads")
    payload = {"id": "gc-zz1", "title": "quotes ' \" $(touch pwned) `x`", "metadata": {}}
    run_hook(repo, "on_update", "gc-zz1", "update", payload)
    assert json.loads((repo / "gc-saw-gc-zz1").read_text()) == payload
    assert not (repo / "pwned").exists()


def test_a_verdict_written_with_bd_wakes_the_same_session(city: City, repo: Path) -> None:
    assert city.cli("hooks", "install", "--beads").exit_code == 0
    work, sub = city.submit("polecat/x/w", "a" * 40)
    waiter = subprocess.Popen(
        [sys.executable, "-m", "gc_polecat", "--repo", str(repo), "await", "--work", work],
        env={**os.environ, "GC_SESSION_ID": city.session, "GC_CONTINUATION_EPOCH": "1"},
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(1.0)  # let it block on its doorbell
    bd_view = city.bead(work)  # what `bd update --set-metadata ...` would hand the hook
    bd_view["metadata"].update(
        {"gc.verdict": "FIX_NEEDED", "gc.failure_type": "tests", "rejection_reason": "test_x"}
    )
    took = run_hook(repo, "on_update", work, "update", bd_view)
    assert waiter.wait(timeout=30) == 10
    verdict = city.bead(city.bead(sub)["metadata"]["verdict"])
    assert verdict["metadata"]["failure_type"] == "tests"
    assert verdict["metadata"]["refinery"] == "bd-hook" and verdict["description"] == "test_x"
    assert city.bead(work)["assignee"] == city.session  # routed back to the same session
    assert took < 10
    # the same write again (bd re-fires, or our own later writes) judges nothing twice
    head = git(repo, "rev-parse", "HEAD")
    run_hook(repo, "on_update", work, "update", bd_view)
    assert git(repo, "rev-parse", "HEAD") == head
    assert_clean(repo)


def test_merge_result_from_bd_records_merged_with_the_sha(city: City, repo: Path) -> None:
    city.cli("hooks", "install", "--beads")
    work, sub = city.submit("polecat/x/m", "b" * 40)
    bd_view = city.bead(work)
    bd_view["status"] = "closed"
    bd_view["metadata"].update({"merge_result": "merged", "merged_sha": "c" * 40})
    run_hook(repo, "on_close", work, "close", bd_view)
    verdict = city.bead(city.bead(sub)["metadata"]["verdict"])
    assert verdict["metadata"]["outcome"] == "merged"
    assert verdict["metadata"]["merge_commit"] == "c" * 40
    assert city.bead(work)["status"] == "closed"


def record_python_starts(repo: Path, tmp: Path) -> Path:
    """Point the installed sections' interpreter at a recorder that notes each start (its
    arguments) and then runs the real interpreter; returns the file the starts go to."""
    starts, recorder = tmp / "python-starts", tmp / "python-recorder"
    note, real_python = shlex.quote(str(starts)), shlex.quote(sys.executable)
    recorder.write_text(f'#!/bin/sh\necho "$@" >> {note}\nexec {real_python} "$@"\n')
    recorder.chmod(0o755)
    real, ours = f"'{sys.executable}' -P -m gc_polecat", f"'{recorder}' -P -m gc_polecat"
    for hook in (repo / ".beads" / "hooks").iterdir():
        text = hook.read_text()
        assert text.count(real) == 1, hook
        hook.write_text(text.replace(real, ours))
    return starts


def test_ordinary_writes_and_our_own_writes_start_no_python(
    city: City, repo: Path, tmp_path: Path
) -> None:
    """No verdict key in the payload: the section never starts Python. gc-polecat's own hook
    runner marks its writes, so they are never ingested back (no Python either, though the
    work bead's payload then carries a verdict key). The interpreter the section names is a
    recorder here, so a start is seen, not guessed from the wall time."""
    work, sub = city.submit("polecat/x/o", "d" * 40)  # before install: no hook runs yet
    city.cli("hooks", "install", "--beads")
    starts = record_python_starts(repo, tmp_path)
    head = git(repo, "rev-parse", "HEAD")
    times = [run_hook(repo, "on_update", work, "update", city.bead(work)) for _ in range(5)]
    assert git(repo, "rev-parse", "HEAD") == head
    assert not starts.exists()
    print(f"ordinary bd write, hook wall time: min {min(times) * 1000:.1f} ms")
    # our own verdict fires our hook runner with GC_POLECAT_WRITER=1: nothing re-ingested
    result = city.cli("verdict", sub, "--fix-needed", "--type", "review", "--reason", "style")
    assert result.exit_code == 0
    log = repo / ".git" / "gc-polecat" / "hooks.log"
    ran = f" on_update {work} update exit=0 "
    wait_for(lambda: log.exists() and ran in log.read_text(), "our hook runner's on_update")
    assert "gc.verdict" in json.dumps(city.bead(work)["metadata"])
    assert not starts.exists()
    assert git(repo, "log", "-1", "--format=%s").startswith(f"{sub}: verdict fix_needed")
    # the recorder does see a start: a bd write that carries a verdict key starts Python once
    bd_view = city.bead(work)
    bd_view["metadata"]["gc.verdict"] = "fix_needed"
    run_hook(repo, "on_update", work, "update", bd_view)
    expected = f"-P -m gc_polecat --repo {repo} hooks run on_update {work} update"
    assert starts.read_text().splitlines() == [expected]


def test_a_bad_payload_never_fails_the_write(city: City, repo: Path) -> None:
    city.cli("hooks", "install", "--beads")
    head = git(repo, "rev-parse", "HEAD")
    for payload in ('{"id": "../etc", "metadata": {"gc.verdict": "merged"}}', "[1, 2]", "{"):
        proc = subprocess.run(
            [sys.executable, "-m", "gc_polecat", "--repo", str(repo), "hooks", "run",
             "on_update", "gc-x", "update"],
            input=payload, capture_output=True, text=True,
        )  # fmt: skip
        assert proc.returncode == 0
        assert len(proc.stderr.strip().splitlines()) <= 1 and "Traceback" not in proc.stderr
    assert git(repo, "rev-parse", "HEAD") == head
