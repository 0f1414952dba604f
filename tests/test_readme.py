"""The README's walkthrough, run word for word (issue 16): every `sh` block between
"## Walkthrough" and the next `##` heading, in order, in one bash process, in a temporary HOME.

`claude` cannot run here, so the pool's `command: [claude]` finds a stand-in on PATH: a bash
script whose body is the README's own "inside the session" block (the one that starts with
`gc-polecat next`), followed by a `sleep` that keeps the session alive as an idle agent would.
Between blocks the test waits, with bounded loops of its own, for what a reader would see happen
(the polecat's submission, its resubmission, its cleanup); those waits are the test's, never
the README's. The test fails when the README drifts from the product: a flag renamed, an output
changed that a `$(...)` captures, a step that no longer works."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from .conftest import ROOT, assert_clean, git

AGENT_START = "work=$(gc-polecat next)"


def request_cleanup(home: Path) -> None:
    """Remove the short HOME at exit (pytest's own tmp_path is kept; this one is ours)."""
    import atexit

    atexit.register(shutil.rmtree, home, True)


def walkthrough_blocks(readme: str) -> list[str]:
    section = readme.split("\n## Walkthrough", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def _wait(what: str, check: str) -> str:
    """A bounded wait of the test's own between two README blocks."""
    return (
        f"for _ in $(seq 600); do {check} && break; sleep 0.2; done\n"
        f'{check} || {{ echo "timed out waiting for {what}" >&2; exit 99; }}\n'
    )


def _script(blocks: list[str]) -> str:
    """The README's blocks (without the agent's) with the test's waits after the ones that
    hand over to the polecat."""
    waits = {
        "gc-polecat sling": _wait(
            "the first submission", '[ -n "$(gc-polecat refinery queue -q)" ]'
        ),
        "gc-polecat verdict": _wait(
            "the resubmission", "gc-polecat refinery queue | grep -q 'attempt 2'"
        ),
        "gc-polecat refinery process": _wait(
            "the cleanup",
            "gc-polecat pool status --json | python3 -c 'import json, sys; "
            'r = json.load(sys.stdin)[0]; sys.exit(r["cleanups"] or any('
            'p["state"] != "idle" for p in r["polecats"].values()))\'',
        ),
    }
    out = ["set -euo pipefail"]
    for block in blocks:
        out.append(block)
        for trigger, wait in waits.items():
            if trigger in block:
                out.append(wait)
    return "\n".join(out)


@pytest.mark.skipif(not (ROOT / "README.md").is_file(), reason="no README")
def test_the_readme_walkthrough_runs_word_for_word(tmp_path: Path) -> None:
    blocks = walkthrough_blocks((ROOT / "README.md").read_text())
    agent = [b for b in blocks if b.startswith(AGENT_START)]
    assert len(agent) == 1, "the README lost its inside-the-session block"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stand_in = bin_dir / "claude"  # a stand-in for claude: the README's agent block
    stand_in.write_text("#!/bin/bash\n# stand-in for claude (tests/test_readme.py)\n"
                        + agent[0] + "exec sleep 600\n")  # fmt: skip
    stand_in.chmod(0o755)
    # a short HOME, as a person's is: tmux socket paths (~/city/beads/.git/...) have a limit
    home = Path(tempfile.mkdtemp(prefix="readme-", dir="/tmp"))
    shutil.copy(Path(os.environ["HOME"]) / ".gitconfig", home / ".gitconfig")
    env = {
        **os.environ,
        "HOME": str(home),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{bin_dir}{os.pathsep}"
        + os.environ["PATH"],
    }
    env.pop("GC_POLECAT_TMUX_SOCKET", None)
    beads = home / "city" / "beads"
    script = _script([b for b in blocks if b is not agent[0]])
    try:
        proc = subprocess.run(["bash", "-c", script], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
    finally:
        subprocess.run(["tmux", "-S", str(beads / ".git/gc-polecat/sessions/tmux.sock"),
                        "kill-server"], capture_output=True)  # fmt: skip
        request_cleanup(home)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"

    # what the reader was promised: merged, by the session that also fixed it, cleaned up
    listed = subprocess.run(
        [sys.executable, "-m", "gc_polecat", "--repo", str(beads), "bead", "list", "--all",
         "--json"], capture_output=True, text=True, env=env,
    )  # fmt: skip
    work = next(b for b in json.loads(listed.stdout) if b["title"] == "Fix the login test")
    assert work["status"] == "closed" and work["close_reason"] == "merged"
    timeline = subprocess.run(
        [sys.executable, "-m", "gc_polecat", "--repo", str(beads), "timeline", work["id"],
         "--json"], capture_output=True, text=True, env=env,
    )  # fmt: skip
    events = json.loads(timeline.stdout)["events"]
    submitted = [e for e in events if e["kind"] == "submitted"]
    assert [e["details"]["attempt"] for e in submitted] == ["1", "2"]
    assert len({e["details"]["session"] for e in submitted}) == 1  # the same session fixed it
    assert [e["details"]["outcome"] for e in events if e["kind"] == "verdict"] == [
        "fix_needed",
        "merged",
    ]
    assert events[-1]["kind"] == "cleanup" and "cleaned up" in events[-1]["text"]
    assert "login works" in git(home / "city" / "origin.git", "show", "main:login.txt")
    assert_clean(beads)
