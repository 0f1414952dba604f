"""`gc-polecat demo`: the whole product on a temporary city, with evidence and an audit.

The city: a bare origin with a test gate, the clone the sandboxes hang off, the refinery's own
clone, a beads repository with pool `polecats` (3 persistent polecats, real sessions in tmux
when it is installed, else plain processes, each running the scripted agent
`gc_polecat.demo.agent`), the controller as a background process, and the refinery (run here,
pass by pass). Four work items:

1. clean: merged on the first attempt;
2. conflict: edits the same line as item 1, which lands first; the refinery reports the
   conflict and the *same session* rebases and resubmits;
3. tests: the first attempt breaks the test gate; the *same session* fixes it;
4. killed: waits for its verdict when its polecat's session is killed; the controller releases
   the work; the verdict routes it to the pool; a *fresh session* resumes it from the branch and
   failure recorded on the work, and it merges.

Sessions run in tmux when it is installed, else as plain processes
(`GC_POLECAT_DEMO_PROVIDER=process` forces processes). The timeline is the beads repository's
own history, printed as it is written. The demo exits 0
only if every item merged the way it should, the evidence shows the same session (ID, epoch,
process, worktree) where it should, and the final audit (gc_polecat/demo/audit.py) finds no leaked
session, worktree, branch, wait or finalizer.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gc_polecat.lifecycle import keys

GATE = """#!/bin/sh
# the code repository's test gate: fails while a file named BROKEN-tests exists
if [ -e BROKEN-tests ]; then echo "FAIL: test_app (BROKEN-tests is present)"; exit 1; fi
echo "tests pass"
"""
ITEMS = (  # key, title, priority, metadata for the scripted agent
    ("clean", "Add the greeting", 0, {"demo.file": "app.txt", "demo.text": "hello, world"}),
    ("conflict", "Reword the greeting", 1, {"demo.file": "app.txt", "demo.text": "hi, city"}),
    ("tests", "Add the farewell", 1,
     {"demo.file": "bye.txt", "demo.text": "goodbye", "demo.break_tests": "1"}),
    ("killed", "Add the changelog", 2,
     {"demo.file": "CHANGES.txt", "demo.text": "v1", "demo.break_tests": "1"}),
)  # fmt: skip
DEADLINE = 55.0


class DemoFailed(Exception):
    pass


@dataclass
class City:
    root: Path
    say: Callable[[str], None]
    started: float = field(default_factory=time.monotonic)
    works: dict[str, str] = field(default_factory=dict)  # key -> work ID
    controller: subprocess.Popen[bytes] | None = None
    seen: str = ""  # the last beads commit printed
    killed_session: str = ""

    @property
    def beads(self) -> Path:
        return self.root / "beads"

    def clock(self) -> str:
        return f"[{time.monotonic() - self.started:5.1f}s]"

    def git(self, cwd: Path, *args: str) -> str:
        proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise DemoFailed(f"git {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout


def _identity() -> None:
    """Commits in the demo need an author even on a machine with no git identity."""
    for who in ("AUTHOR", "COMMITTER"):
        os.environ.setdefault(f"GIT_{who}_NAME", "gc-polecat demo")
        os.environ.setdefault(f"GIT_{who}_EMAIL", "demo@gc-polecat.invalid")


def build(city: City) -> None:
    """Origin, clones, beads repository, configuration, 3 polecats."""
    from gc_polecat.beads.store import Store  # lazy: start-up
    from gc_polecat.plugins import make_plugin_manager  # lazy: start-up

    root = city.root
    seed = root / "seed"
    city.git(root, "init", "-q", "-b", "main", str(seed))
    (seed / "gate.sh").write_text(GATE)
    (seed / "app.txt").write_text("hello\n")
    city.git(seed, "add", "-A")
    city.git(seed, "commit", "-qm", "initial: app and its test gate")
    city.git(root, "clone", "-q", "--bare", str(seed), str(root / "origin.git"))
    shutil.rmtree(seed)
    for clone in ("code", "refinery"):
        city.git(root, "clone", "-q", str(root / "origin.git"), str(root / clone))
    Store.init(city.beads, prefix="gc", pm=make_plugin_manager())
    provider = os.environ.get("GC_POLECAT_DEMO_PROVIDER") or (
        "tmux" if shutil.which("tmux") else "process"
    )
    agent = json.dumps([sys.executable, "-m", "gc_polecat.demo.agent"])
    (city.beads / ".beads" / "config.yaml").write_text(
        "prefix: gc\ndelivery_timeout: 3s\n"
        "pools:\n  polecats:\n    max_active: 3\n    names: [furiosa, nux, toast]\n"
        f"    repo: ../code\n    command: {agent}\n    provider: {provider}\n"
        "refinery:\n  repo: ../refinery\n  test: [sh, gate.sh]\n  test_timeout: 30s\n"
    )
    city.git(city.beads, "commit", "-qam", "configure pool polecats and the refinery")
    city.say(
        f"{city.clock()} city at {root}: origin.git, code, refinery, beads; sessions: {provider}"
    )


def _cli(city: City, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "gc_polecat", "--repo", str(city.beads), *args],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise DemoFailed(f"gc-polecat {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def timeline(city: City) -> None:
    """Print the beads commits written since the last call: the story, as git recorded it."""
    head = city.git(city.beads, "rev-parse", "HEAD").strip()
    if head == city.seen:
        return
    span = f"{city.seen}..{head}" if city.seen else head
    for subject in reversed(city.git(city.beads, "log", "--format=%s", span).splitlines()):
        if "claimed by" not in subject and "released by the refinery" not in subject:
            city.say(f"{city.clock()} {subject}")
    city.seen = head


def run(root: Path, say: Callable[[str], None]) -> list[str]:
    """The whole demo in `root`; returns the problems found ([] means it all held)."""
    from gc_polecat.beads.store import Store  # lazy: start-up
    from gc_polecat.lifecycle import wait as waits  # lazy: start-up
    from gc_polecat.lifecycle.providers import get_providers  # lazy: start-up
    from gc_polecat.plugins import make_plugin_manager  # lazy: start-up
    from gc_polecat.refinery.queue import Refinery  # lazy: start-up

    _identity()
    evidence_file = root / "evidence.jsonl"
    os.environ["GC_DEMO_EVIDENCE"] = str(evidence_file)
    city = City(root, say)
    build(city)
    say(f"{city.clock()} " + _cli(city, "pool", "init", "polecats", "--size", "3").count("\n")
        * "." + " 3 polecats, each with its own worktree")  # fmt: skip
    pm = make_plugin_manager()
    store = Store(city.beads, pm=pm)
    providers = get_providers(pm)
    with open(root / "controller.log", "wb") as log:
        city.controller = subprocess.Popen(
            [sys.executable, "-m", "gc_polecat", "--repo", str(city.beads), "controller", "run",
             "--interval", "0.3"],
            stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
    try:
        for key, title, priority, meta in ITEMS:
            with store.transaction() as tx:
                city.works[key] = tx.create(
                    {"title": title, "priority": priority, "metadata": dict(meta)}
                )["id"]
        for key in ("clean", "conflict", "tests", "killed"):
            _cli(city, "sling", city.works[key], "--pool", "polecats")
        refinery = Refinery(store, providers, store.config()["refinery"])
        _drive(city, store, refinery, waits)
        return _finish(city, store, providers)
    finally:
        if city.controller is not None:
            city.controller.terminate()
            city.controller.wait()
        _stop_sessions(store, providers)


def _attempt_open(store: Any, work: str, attempt: int) -> dict[str, Any] | None:
    meta = store.get(work).get("metadata", {})
    if meta.get(keys.ATTEMPT) != str(attempt) or not meta.get(keys.SUBMISSION):
        return None
    sub = store.get(meta[keys.SUBMISSION])
    return sub if sub["status"] != "closed" else None


def _drive(city: City, store: Any, refinery: Any, waits: Any) -> None:
    """Play the refinery until every item is merged; kill item 4's waiter at the right time."""
    first_round = ("clean", "conflict", "tests")
    while True:
        timeline(city)
        if all(store.get(w)["status"] == "closed" for w in city.works.values()):
            return
        if time.monotonic() - city.started > DEADLINE:
            raise DemoFailed("the work did not finish within the demo's time limit")
        if not all(store.get(city.works[k]).get("metadata", {}).get(keys.ATTEMPT)
                   for k in first_round):  # fmt: skip
            time.sleep(0.2)  # let the first three submit, so item 1 lands before item 2
            continue
        held = _attempt_open(store, city.works["killed"], 1)
        if held is None and not city.killed_session:  # not submitted yet: never judge it first
            refinery.pass_once(lambda sub: sub["metadata"].get("work") != city.works["killed"])
            time.sleep(0.1)
            continue
        if held is not None and not city.killed_session:
            wait = store.get(held["metadata"]["wait"])
            if waits.state(wait) != "pending":
                time.sleep(0.1)
                continue
            city.killed_session = held["metadata"]["session"]
            _kill(city, store, city.killed_session)
        if held is not None and waits.state(store.get(held["metadata"]["wait"])) == "pending":
            time.sleep(0.1)  # the controller has not noticed the kill yet: judge it after
            continue
        refinery.pass_once()
        time.sleep(0.1)


def _kill(city: City, store: Any, session_id: str) -> None:
    from gc_polecat.lifecycle import session as sessions  # lazy: start-up

    s = sessions.get(store, session_id)
    handle, why = sessions.acting_handle(store, s, "demo kill")  # the record, not the bead
    if handle is None:
        raise DemoFailed(f"cannot kill {session_id}: {why}")
    if handle["provider"] == "tmux":
        os.killpg(os.getpgid(int(handle["pane_pid"])), signal.SIGKILL)
    else:
        os.killpg(int(handle["pgid"]), signal.SIGKILL)
    city.say(f"{city.clock()} demo: killed {s.name} ({session_id}) while it waits for a verdict")


def _stop_sessions(store: Any, providers: Any) -> None:
    from gc_polecat.beads.catalog import Query  # lazy: start-up
    from gc_polecat.lifecycle import session as sessions  # lazy: start-up

    store.catalog.refresh()
    for bead in store.catalog.list(Query(labels=(sessions.SESSION_LABEL,), include_closed=False)):
        s = sessions.Session.of(bead)
        sessions.stop_process(store, s, providers, grace=0.5)
        with store.transaction(f"{s.id}: stopped (demo over)") as tx:
            current = sessions.get(tx, s.id)
            if current.state in sessions.LIVE_STATES:
                sessions.set_state(tx, current, "stopped", stop_reason="demo over")


def _finish(city: City, store: Any, providers: Any) -> list[str]:
    """Wait for the cleanups, show the evidence, stop the sessions, audit."""
    from gc_polecat.beads.catalog import Query  # lazy: start-up
    from gc_polecat.demo.audit import audit  # lazy: start-up
    from gc_polecat.lifecycle.cleanup import CLEANUP_LABEL  # lazy: start-up

    while store.catalog.list(Query(labels=(CLEANUP_LABEL,), include_closed=False)):
        if time.monotonic() - city.started > DEADLINE:
            break
        time.sleep(0.2)
        store.catalog.refresh()
    timeline(city)
    problems = _evidence(city, store)
    _story(city, city.works["killed"])
    city.controller.terminate()
    city.controller.wait()
    city.controller = None
    _stop_sessions(store, providers)
    timeline(city)
    problems += audit(store, providers)
    return problems


def _story(city: City, work_id: str) -> None:
    """End on one work item's whole life, as `gc-polecat timeline` tells it."""
    city.say("")
    city.say(f"the killed polecat's work, as `gc-polecat timeline {work_id}` tells it:")
    for line in _cli(city, "timeline", work_id).splitlines():
        city.say(f"  {line}")


def _evidence(city: City, store: Any) -> list[str]:
    lines = [json.loads(x) for x in (city.root / "evidence.jsonl").read_text().splitlines()]
    problems: list[str] = []
    city.say("")
    city.say("evidence (one line per verdict the polecats received):")
    for e in lines:
        key = next(k for k, w in city.works.items() if w == e["work"])
        where = f"pane {e['pane']}" if e["pane"] else f"pid {e['pid']}"
        city.say(f"  {key:<9} {e['work']} attempt {e['attempt']} exit {e['exit']:>2}  "
                 f"session {e['session']} epoch {e['epoch']} {where} {e['polecat']} "
                 f"{e['cwd']}")  # fmt: skip
    for key in ("conflict", "tests"):
        mine = [e for e in lines if e["work"] == city.works[key]]
        same = {(e["session"], e["epoch"], e["pid"], e["pane"], e["cwd"]) for e in mine}
        codes = [e["exit"] for e in mine]
        if codes != [10, 0] or len(same) != 1:
            problems.append(f"{key}: expected fix needed then merged in one session, got {mine}")
        else:
            city.say(f"  {key}: fixed and merged by the same session, process and worktree")
    killed = city.works["killed"]
    work = store.get(killed)
    mine = [e for e in lines if e["work"] == killed]
    if work.get("metadata", {}).get("merge_result") != "merged" or not mine:
        problems.append(f"killed: not merged ({work['status']})")
    elif mine[-1]["session"] == city.killed_session or mine[-1]["attempt"] != 2:
        problems.append(f"killed: expected a fresh session's attempt 2, got {mine[-1]}")
    else:
        city.say(f"  killed: session {city.killed_session} died waiting; a fresh session "
                 f"{mine[-1]['session']} resumed from {work['metadata'][keys.FAILURE_TYPE]} "
                 f"failure on the recorded branch and merged attempt 2")  # fmt: skip
    clean = store.get(city.works["clean"])
    if clean.get("metadata", {}).get("merge_result") != "merged":
        problems.append("clean: not merged")
    return problems


def main(keep: bool, say: Callable[[str], None]) -> int:
    root = Path(tempfile.mkdtemp(prefix="gc-polecat-demo-"))
    os.environ["GC_POLECAT_TMUX_SOCKET"] = str(root / "tmux.sock")
    started = time.monotonic()
    try:
        problems = run(root, say)
    except DemoFailed as exc:
        problems = [str(exc)]
    finally:
        subprocess.run(["tmux", "-S", str(root / "tmux.sock"), "kill-server"],
                       capture_output=True)  # fmt: skip
    took = time.monotonic() - started
    say("")
    if problems:
        say(f"audit: {len(problems)} problem(s) after {took:.1f} s:")
        for p in problems:
            say(f"  - {p}")
    else:
        say(f"audit: no leaked session, worktree, branch, wait or finalizer; {took:.1f} s")
    if keep:
        say(f"the city is kept at {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if problems or took > 60 else 0
