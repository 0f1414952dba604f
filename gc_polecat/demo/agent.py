"""The scripted polecat of `gc-polecat demo`: a stand-in for the LLM agent, which cannot run in
a demo. It runs inside a real session the pool started (tmux pane or process), in its sandbox,
and drives the real commands a polecat formula names (formulas/mol-polecat-work.toml):

    next -> implement -> commit, push -> submit -> await
      fix needed (10): fix (conflict: rebase onto the target; tests: remove the breakage),
                       push, resubmit, await again
      merged (0):      cleanup, then next
      ended (20):      the work went back to the pool; next

What to implement comes from the work bead's metadata: `demo.file` and `demo.text` (write the
file), `demo.break_tests` = 1 (also add `BROKEN-tests` on the first attempt, so the refinery's
test gate fails). A polecat that picks up work which fell back to the pool fixes the recorded
failure first (`gc.failure_type`), on the branch `sling` resumed for it. Each verdict appends
one JSON line of evidence to $GC_DEMO_EVIDENCE: the work, attempt, exit status, session ID,
epoch, PID, tmux pane and working directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

GC = [sys.executable, "-m", "gc_polecat"]


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc


def git(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return sh("git", *args, check=check)


def implement(work_id: str, meta: dict[str, str]) -> None:
    Path(meta["demo.file"]).write_text(meta["demo.text"] + "\n")
    if meta.get("demo.break_tests") == "1":
        Path("BROKEN-tests").write_text(f"{work_id}: a first attempt that breaks the tests\n")


def fix(failure: str, target: str) -> None:
    if failure == "conflict":
        git("fetch", "-q", "origin")
        # keep our side of the conflicting lines: the polecat's change wins over the target's
        if git("rebase", "-q", "-X", "theirs", f"origin/{target}", check=False).returncode:
            git("rebase", "--abort", check=False)
            raise RuntimeError("could not resolve the conflict")
    elif Path("BROKEN-tests").exists():
        Path("BROKEN-tests").unlink()


def publish(branch: str, message: str) -> str:
    git("add", "-A")
    if git("diff", "--cached", "--quiet", check=False).returncode:
        git("commit", "-qm", message)
    git("push", "-q", "--force-with-lease", "origin", f"HEAD:refs/heads/{branch}")
    return git("rev-parse", "HEAD").stdout.strip()


def evidence(work: str, attempt: int, code: int) -> None:
    line = {
        "work": work,
        "attempt": attempt,
        "exit": code,
        "session": os.environ.get("GC_SESSION_ID", ""),
        "epoch": os.environ.get("GC_CONTINUATION_EPOCH", ""),
        "polecat": os.environ.get("GC_POLECAT_NAME", ""),
        "pid": os.getpid(),
        "pane": os.environ.get("TMUX_PANE", ""),
        "cwd": os.getcwd(),
    }
    with open(os.environ["GC_DEMO_EVIDENCE"], "a") as f:
        f.write(json.dumps(line) + "\n")


def work_on(work: dict[str, Any]) -> None:
    meta = work.get("metadata", {})
    wid, branch, target = work["id"], meta["branch"], meta.get("target", "main")
    if meta.get("gc.failure_type"):  # resumed from the pool: fix what the refinery found
        fix(meta["gc.failure_type"], target)
    else:
        implement(wid, meta)
    while True:
        attempt = int(meta.get("gc.attempt", "0") or 0) + 1
        commit = publish(branch, f"{wid}: attempt {attempt}")
        sub = sh(*GC, "submit", wid, "--branch", branch, "--commit", commit, check=False)
        if sub.returncode != 0:
            return
        waited = sh(*GC, "await", "--work", wid, "--json", check=False)
        evidence(wid, attempt, waited.returncode)
        if waited.returncode == 10:
            verdict = json.loads(waited.stdout)["verdict"]
            if verdict["metadata"].get("routed") != "session":
                return  # escalated at the attempt cap: the work is no longer ours
            fix(verdict["metadata"].get("failure_type", ""), target)
            meta = {**meta, "gc.attempt": str(attempt)}
            continue
        if waited.returncode == 0:
            sh(*GC, "cleanup", check=False)
        return


def main() -> int:
    os.environ.setdefault("GIT_EDITOR", "true")
    while True:
        got = sh(*GC, "next", "--timeout", "120", "--json", check=False)
        if got.returncode != 0:
            return 0  # the session ended (drained, retired) or no work came
        try:
            work_on(json.loads(got.stdout)["work"])
        except RuntimeError as exc:
            print(f"demo agent: {exc}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
