"""Filtered listing from the catalog at 10,000 beads: warm, through the CLI, cold and catching up.

`bead list --type gate --status open` is what a controller polls, so it is measured four ways:

- in process with a warm catalog: `Catalog.list(Query(...))` alone (target median <= 100 ms),
  and with the `refresh()` freshness check the CLI does before every list;
- the CLI in a subprocess, `python -m gc_polecat --repo R bead list ... --json` (wall time);
- a cold full rebuild (catalog.sqlite deleted): every bead file is read from git and parsed
  (target <= 1.5 s, issue 17), beside its floor: reading every bead blob from git, nothing else;
- an incremental catch-up after 10 commits made with plain git (a person editing files):
  the catalog diffs its commit's tree against HEAD, so the cost should follow the change.

Only functional breakage fails this script (wrong result count, a stale bead after catch-up).
"""

from __future__ import annotations

import json
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import _common as c

from gc_polecat.beads import ids
from gc_polecat.beads.catalog import FILENAME, Query
from gc_polecat.beads.store import Store

SIZE = 10_000
QUERY = Query(types=("gate",), statuses=("open",))
IN_PROCESS_RUNS, CLI_RUNS = 50, 20
REBUILDS = 3
CATCH_UP_ROUNDS, CLI_CATCH_UP_ROUNDS = 5, 3
EDITS_PER_ROUND = 10
LIST_TARGET_MS = 100.0
REBUILD_TARGET_S = 1.5  # issue 17, point 3
BD_READY_MS = 30.0  # bd's ready query, storage level, 10K issues, Apple M2 Pro


def expected_open_gates(n: int) -> int:
    """make_bead() makes every 10th bead a gate and every other gate open: i % 20 == 0."""
    return len(range(0, n, 20))


def check_gates(beads: Sequence[dict], n: int) -> None:
    if len(beads) != expected_open_gates(n) or any(
        b["issue_type"] != "gate" or b["status"] != "open" for b in beads
    ):
        raise SystemExit(f"FAIL: expected {expected_open_gates(n)} open gates, got {len(beads)}")


def time_calls(call: Callable[[], object], runs: int, warmup: int = 5) -> list[float]:
    """Milliseconds per call, after untimed warm-up calls (SQLite page cache, JSON decoder)."""
    samples = []
    for k in range(warmup + runs):
        start = time.perf_counter()
        call()
        if k >= warmup:
            samples.append((time.perf_counter() - start) * 1000)
    return samples


def remove_catalog(repo: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        (repo / ".git" / "gc-polecat" / f"{FILENAME}{suffix}").unlink(missing_ok=True)


def edit_with_git(repo: Path, bead_ids: Sequence[str], tag: str) -> dict[str, str]:
    """One plain-git commit per bead: rewrite its title line, `git commit -am`. New titles."""
    titles = {}
    for bead_id in bead_ids:
        path = repo / ids.id_path(bead_id)
        text = path.read_text()
        match = re.search(r"^title: (.*)$", text, re.M)
        if match is None or match.group(1)[:1] in "'\"":
            raise SystemExit(f"FAIL: {path} has no plain title line to edit")
        titles[bead_id] = f"{match.group(1)} edited {tag}"
        new = text[: match.start(1)] + titles[bead_id] + text[match.end(1) :]
        c.replace_file(path, new.encode())
        c.git(repo, "commit", "-qam", f"hand edit of {bead_id}")
    return titles


def read_every_blob(repo: Path) -> None:
    """The floor of a rebuild: every bead file's blob read from git, nothing parsed."""
    store = Store(repo)
    git = store.git
    found = git.lookup(git.commit_tree(store.head()[1]), ids.BEADS_DIR)
    if found is None:
        raise SystemExit("FAIL: no beads directory")
    for path, blob in git.walk_blobs(found[1], ids.BEADS_DIR + "/"):
        if ids.path_id(path):
            git.blob(blob)


def rebuild_once(repo: Path) -> tuple[float, float]:
    """(wall ms, CPU ms) of one cold rebuild in a new Store (no tree cache, no database)."""
    remove_catalog(repo)
    cold = Store(repo)
    start, cpu = time.perf_counter(), time.process_time()
    cold.catalog.refresh()
    took = ((time.perf_counter() - start) * 1000, (time.process_time() - cpu) * 1000)
    check_gates(cold.catalog.list(QUERY), SIZE)
    cold.catalog.close()
    return took


def measure_rebuilds(repo: Path) -> list[c.Figure]:
    """Cold rebuilds taking turns with their floor, so load lands on both alike."""
    rebuilds, cpus, floors = [], [], []
    for _ in range(REBUILDS):
        wall, cpu = rebuild_once(repo)
        rebuilds.append(wall)
        cpus.append(cpu)
        floors.append(time_calls(lambda: read_every_blob(repo), runs=1, warmup=0)[0])
    rebuild, floor = statistics.median(rebuilds), statistics.median(floors)
    print(
        f"  cold full rebuild ({REBUILDS} runs)           "
        + ", ".join(f"{r / 1000:.2f} s" for r in rebuilds)
        + f"  ({rebuild * 1000 / SIZE:.0f} us/bead; CPU {statistics.median(cpus) / 1000:.2f} s)"
    )
    print(f"  floor: read every bead blob            {', '.join(c.fmt_ms(f) for f in floors)}")
    return [
        c.Figure(
            f"cold catalog rebuild @ {SIZE:,}",
            f"{rebuild / 1000:.2f} s ({rebuild * 1000 / SIZE:.0f} us/bead)",
            f"<= {REBUILD_TARGET_S:g} s",
            f"floor: blob reads {c.fmt_ms(floor)}",
            rebuild <= REBUILD_TARGET_S * 1000,
        )
    ]


def run(keep: bool = False) -> list[c.Figure]:
    """Measure everything, print the details, return the summary figures."""
    c.section(f"list: open gates at {SIZE:,} beads (catalog)")
    template = c.template(SIZE, keep)
    known = c.bead_ids(template)
    figures: list[c.Figure] = []
    with c.scratch_copy(template) as repo:
        store = Store(repo)
        catalog = store.catalog
        catalog.refresh()
        check_gates(catalog.list(QUERY), SIZE)

        warm = c.Stats.of(time_calls(lambda: catalog.list(QUERY), IN_PROCESS_RUNS))
        print(f"  Catalog.list, warm, in process        {warm.line()}")

        def refresh_and_list() -> None:
            catalog.refresh()
            catalog.list(QUERY)

        checked = c.Stats.of(time_calls(refresh_and_list, IN_PROCESS_RUNS))
        print(f"  refresh() + Catalog.list, in process  {checked.line()}")
        figures.append(
            c.Figure(
                f"list open gates @ {SIZE:,}, in process (p90)",
                f"{c.fmt_ms(warm.median)} ({c.fmt_ms(warm.p90)})",
                f"<= {LIST_TARGET_MS:g} ms",
                f"bd ready {BD_READY_MS:g} ms @ 10K",
                warm.median <= LIST_TARGET_MS,
            )
        )
        figures.append(
            c.Figure(
                f"refresh check + list @ {SIZE:,}, in process",
                c.fmt_ms(checked.median),
            )
        )

        argv = c.cli_argv(module=True) + ["--repo", str(repo), "bead", "list"]
        argv += ["--type", "gate", "--status", "open", "--json"]
        samples, out = c.time_process(argv, CLI_RUNS)
        check_gates(json.loads(out), SIZE)
        cli = c.Stats.of(samples)
        print(f"  CLI `python -m gc_polecat bead list`  {cli.line()}")
        figures.append(
            c.Figure(
                f"CLI list open gates @ {SIZE:,}, wall (p90)",
                f"{c.fmt_ms(cli.median)} ({c.fmt_ms(cli.p90)})",
            )
        )

        catalog.close()
        figures += measure_rebuilds(repo)

        store = Store(repo)
        catalog = store.catalog
        catalog.refresh()
        pool = iter(known[1::7])  # distinct beads for every round
        catch_ups = []
        for round_ in range(CATCH_UP_ROUNDS):
            titles = edit_with_git(repo, [next(pool) for _ in range(EDITS_PER_ROUND)], f"r{round_}")
            start = time.perf_counter()
            catalog.refresh()
            catch_ups.append((time.perf_counter() - start) * 1000)
            for bead_id, title in titles.items():
                if (catalog.get(bead_id) or {}).get("title") != title:
                    raise SystemExit(f"FAIL: catalog did not catch up with the edit of {bead_id}")
        catch_up = c.Stats.of(catch_ups)
        print(
            f"  catch-up after {EDITS_PER_ROUND} git commits, in process  "
            + ", ".join(c.fmt_ms(s) for s in catch_ups)
        )
        figures.append(
            c.Figure(
                f"catalog catch-up, {EDITS_PER_ROUND} git commits @ {SIZE:,}",
                f"{c.fmt_ms(catch_up.median)} (median of {CATCH_UP_ROUNDS})",
            )
        )
        catalog.close()

        cli_catch_ups = []
        for round_ in range(CLI_CATCH_UP_ROUNDS):
            edit_with_git(repo, [next(pool) for _ in range(EDITS_PER_ROUND)], f"cli{round_}")
            samples, out = c.time_process(argv, runs=1, warmup=0)
            check_gates(json.loads(out), SIZE)
            cli_catch_ups.append(samples[0])
        print(
            f"  CLI list right after {EDITS_PER_ROUND} git commits      "
            + ", ".join(c.fmt_ms(s) for s in cli_catch_ups)
        )
        figures.append(
            c.Figure(
                f"CLI list after {EDITS_PER_ROUND} git commits @ {SIZE:,}",
                c.fmt_ms(statistics.median(cli_catch_ups)),
            )
        )
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    return c.script_main(run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
