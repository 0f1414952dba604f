"""Pool reconcile at 1,000 sessions, 1,000 waits and 10,000 beads: the cost of a quiet pass.

The controller runs `pool reconcile` on every pass (controller.one_pass), so what a pass costs
when there is nothing to do is the pool's standing overhead. The scenario is the 10,000-bead
template plus one pool, `bench` (max_active 1000, max_waiting 1000), holding 1,000 polecats that
all await a verdict, each with: a live session (every handle names one `sleep` process this
script starts, so each liveness check reads /proc as in production), its work bead assigned
and in progress, a merge-request submission and a pending wait (made by `submit.submit`).
That adds 5,000 beads (work, polecat, session, submission, wait) in 2 commits. The pool sits
exactly at its caps with every session an owner, so its desired state is its current state
and the plan is empty.

Measured, each with a median and p90 (target: median <= 200 ms, warm, issue 4):
- in process, warm catalog, the two taking turns pass by pass:
  `reconcile(store, providers, dry_run=True)` (plan only) and `reconcile(store, providers)`
  (plan and apply, nothing to apply: the realistic controller pass);
- the CLI in a subprocess, `python -m gc_polecat --repo R pool reconcile --dry-run --json`
  (wall time, interpreter start-up included).

Only functional breakage fails this script: a plan that is not empty at steady state, an
apply pass that writes a commit, a CLI that reports actions. Timings are printed, never
judged. `--profile` prints cProfile's top entries for one apply pass (also printed when the
apply median misses the target).
"""

from __future__ import annotations

import contextlib
import cProfile
import io
import json
import pstats
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

import _common as c

from gc_polecat.beads.catalog import Query
from gc_polecat.beads.store import Store
from gc_polecat.lifecycle import polecat as polecats
from gc_polecat.lifecycle import session as sessions
from gc_polecat.lifecycle import submit as submitting
from gc_polecat.lifecycle import wait as waits
from gc_polecat.lifecycle.providers import SessionProvider, get_providers
from gc_polecat.pool.reconcile import reconcile
from gc_polecat.procs import process_start_time

SIZE = 10_000  # template beads
POOL = "bench"
POLECATS = 1_000  # sessions, polecats, work items, submissions, pending waits: one each
PER_COMMIT = 500  # polecats set up per build transaction
IN_PROCESS_RUNS, IN_PROCESS_WARMUP = 30, 3
CLI_RUNS, CLI_WARMUP = 10, 2
TARGET_MS = 200.0
PROFILE_LINES = 15
CONFIG = f"pools:\n  {POOL}:\n    max_active: {POLECATS}\n    max_waiting: {POLECATS}\n"


@contextlib.contextmanager
def live_process() -> Iterator[int]:
    """One long-lived process in its own group, standing in for every session's agent."""
    proc = subprocess.Popen(
        ["sleep", "3600"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def handle_for(pid: int, name: str) -> dict[str, str]:
    """A ProcessProvider handle (what ProcessProvider.start returns) for a running pid."""
    start = process_start_time(pid)
    if start is None:
        raise SystemExit(f"FAIL: process {pid} is gone before the build")
    return {
        "provider": "process",
        "name": name,
        "pid": str(pid),
        "pid_start": start,
        "pgid": str(pid),
        "inbox": f"/tmp/{name}.inbox",
        "nudge_signal": "0",
        "log": f"/tmp/{name}.log",
    }


def build_pool(store: Store, pid: int) -> None:
    """The pool config (one commit), then POLECATS polecats awaiting a verdict, PER_COMMIT per
    commit: work in progress, its polecat, its session (alive), submission and pending wait."""
    config = (store.root / ".beads" / "config.yaml").read_text()
    with store.transaction("bench: pool config") as tx:
        tx.write_file(".beads/config.yaml", (config.rstrip("\n") + "\n" + CONFIG).encode())
    if store.config()["pools"][POOL].waiting_cap != POLECATS:
        raise SystemExit("FAIL: the pool configuration was not picked up")
    for first in range(0, POLECATS, PER_COMMIT):
        last = min(POLECATS, first + PER_COMMIT)
        with store.transaction(f"bench: polecats {first}..{last - 1}") as tx:
            for i in range(first, last):
                name = f"{POOL}-{i}"
                work = tx.create({"title": f"Pool work item {i}", "issue_type": "task"})
                fields = sessions.session_fields(
                    name, POOL, "process", "/tmp", handle_for(pid, name)
                )
                sid = fields["id"] = tx.new_id(fields)
                identity = polecats.fields(f"p{i}", POOL, f"/nonexistent/p{i}", ephemeral=False)
                branch = f"polecat/p{i}/{work['id']}"
                identity["metadata"].update(
                    {"state": "working", "session": sid, "work": work["id"], "branch": branch}
                )
                polecat = tx.create(identity)
                fields["metadata"]["polecat"] = polecat["id"]
                tx.create(fields)
                tx.update(work["id"], {"status": "in_progress", "assignee": sid})
                submitting.submit(
                    tx,
                    work["id"],
                    session_id=sid,
                    epoch=None,
                    branch=branch,
                    commit=f"{i:040x}",
                    target="main",
                    ttl=7200,
                    worktree=f"/nonexistent/p{i}",
                )


def check_scenario(store: Store) -> dict[str, int]:
    """Count what the build made, from the catalog; fail if the shape is not the intended one."""
    catalog = store.catalog
    catalog.refresh()
    every = catalog.list(Query())
    pool_label = f"pool:{POOL}"
    found = {
        "beads": len(every),
        "sessions awaiting a verdict": sum(
            b.get("issue_type") == "session"
            and pool_label in b.get("labels", [])
            and sessions.state_of(b) == "awaiting_verdict"  # ours, beside gc's state name
            for b in every
        ),
        "polecats awaiting a verdict": sum(
            b.get("issue_type") == "agent"
            and pool_label in b.get("labels", [])
            and b.get("metadata", {}).get("state") == "awaiting_verdict"
            for b in every
        ),
        "pending waits": sum(
            waits.is_wait(b) and b["status"] != "closed" and waits.state(b) == "pending"
            for b in every
        ),
        "open submissions": sum(
            submitting.SUBMISSION_LABEL in b.get("labels", []) and b["status"] != "closed"
            for b in every
        ),
    }
    wanted = {"beads": SIZE + 5 * POLECATS} | {k: POLECATS for k in list(found)[1:]}
    if found != wanted:
        raise SystemExit(f"FAIL: the scenario is not what was built: {found} != {wanted}")
    return found


def fail_on_actions(done: Sequence[tuple[object, str | None]], what: str) -> None:
    if done:
        for action, outcome in done[:20]:
            print(f"    {action} -> {outcome}")
        raise SystemExit(
            f"FAIL: {what} planned {len(done)} actions at steady state (expected none); the "
            "first 20 are above: either the scenario is wrong or the planner is"
        )


def time_pass(call: Callable[[], list], head: Callable[[], bytes | None], what: str) -> float:
    """Milliseconds of one reconcile pass; fail if it planned anything or moved HEAD."""
    before = head()
    start = time.perf_counter()
    done = call()
    elapsed = (time.perf_counter() - start) * 1000
    fail_on_actions(done, what)
    if head() != before:
        raise SystemExit(f"FAIL: {what} wrote a commit at steady state (HEAD moved)")
    return elapsed


def print_profile(store: Store, providers: Mapping[str, SessionProvider]) -> None:
    """cProfile of one apply pass: where the time of a quiet pass goes."""
    profiler = cProfile.Profile()
    done = profiler.runcall(reconcile, store, providers)
    fail_on_actions(done, "the profiled pass")
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(PROFILE_LINES)
    lines = out.getvalue().splitlines()
    start = next((k for k, line in enumerate(lines) if "ncalls" in line), 0)
    print(f"\n  cProfile of one apply pass, top {PROFILE_LINES} by cumulative time:")
    print("\n".join("    " + line for line in lines[start:] if line.strip()))


def target_figure(metric: str, stats: c.Stats, target: bool = True) -> c.Figure:
    ratio = f"median/target {stats.median / TARGET_MS:.2f}"
    return c.Figure(
        metric,
        f"{c.fmt_ms(stats.median)} ({c.fmt_ms(stats.p90)})",
        f"<= {TARGET_MS:g} ms" if target else "-",
        ratio if target else f"{ratio} (start-up included)",
        stats.median <= TARGET_MS if target else None,
    )


def run(keep: bool = False, profile: bool = False) -> list[c.Figure]:
    """Measure everything, print the details, return the summary figures."""
    scale = f"{POLECATS:,} sessions, {POLECATS:,} waits, {SIZE:,} beads"
    c.section(f"pool reconcile: {scale}, steady state")
    template = c.template(SIZE, keep)
    figures: list[c.Figure] = []
    with c.scratch_copy(template) as repo, live_process() as pid:
        start = time.perf_counter()
        store = Store(repo)  # the process-wide plugin manager, as the CLI and controller use
        store.catalog.refresh()
        build_pool(store, pid)
        built = time.perf_counter() - start
        counts = check_scenario(store)
        print(f"  scenario built in {built:.1f} s (on a scratch copy of the template):")
        for what, n in counts.items():
            print(f"    {n:>6,} {what}")
        providers = get_providers(store.pm)

        def head() -> bytes | None:
            return store.head()[1]

        plan = reconcile(store, providers, dry_run=True)
        fail_on_actions(plan, "the first dry run")
        first = time_pass(lambda: reconcile(store, providers), head, "the first apply pass")
        print(f"  plan at steady state: {len(plan)} actions; first apply pass {c.fmt_ms(first)}")

        samples: dict[str, list[float]] = {"dry": [], "apply": []}
        calls = {
            "dry": lambda: reconcile(store, providers, dry_run=True),
            "apply": lambda: reconcile(store, providers),
        }
        for k in range(IN_PROCESS_WARMUP + IN_PROCESS_RUNS):
            for label, call in calls.items():  # taking turns: drifting load hits both alike
                elapsed = time_pass(call, head, f"reconcile ({label})")
                if k >= IN_PROCESS_WARMUP:
                    samples[label].append(elapsed)
        dry, applied = c.Stats.of(samples["dry"]), c.Stats.of(samples["apply"])
        print(f"  reconcile --dry-run, in process, warm   {dry.line()}")
        print(f"  reconcile (apply), in process, warm     {applied.line()}")

        argv = c.cli_argv(module=True) + ["--repo", str(repo), "pool", "reconcile"]
        argv += ["--dry-run", "--json"]
        before = head()
        cli_samples, out = c.time_process(argv, CLI_RUNS, CLI_WARMUP)
        if json.loads(out) != [] or head() != before:
            raise SystemExit(f"FAIL: the CLI dry run reported actions or moved HEAD: {out[:500]}")
        cli = c.Stats.of(cli_samples)
        print(f"  CLI `pool reconcile --dry-run --json`   {cli.line()}")
        for label, stats in (("dry run", dry), ("apply", applied), ("CLI", cli)):
            print(
                f"    {label:<8} median / {TARGET_MS:g} ms target = {stats.median / TARGET_MS:.2f}"
            )

        figures += [
            target_figure(f"pool reconcile --dry-run @ {POLECATS:,} sessions (p90)", dry),
            target_figure(f"pool reconcile, apply, nothing to do @ {POLECATS:,} (p90)", applied),
            target_figure(f"CLI pool reconcile --dry-run @ {POLECATS:,}, wall (p90)", cli, False),
            c.Figure(f"pool reconcile plan at steady state @ {POLECATS:,}", f"{len(plan)} actions"),
            c.Figure(f"reconcile scenario build ({POLECATS:,} polecats)", f"{built:.1f} s"),
        ]
        if profile or applied.median > TARGET_MS:
            print_profile(store, providers)
        store.catalog.close()
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    return c.script_main(run, __doc__, argv, profile_help="cProfile one apply pass")


if __name__ == "__main__":
    sys.exit(main())
