"""Worker processes for the concurrency and crash tests (run as `python -m tests.workers ...`).

Each worker opens the real store in its own process, the way separate agents do.
"""

from __future__ import annotations

import sys

from gc_polecat.beads.store import Store
from gc_polecat.plugins import make_plugin_manager


def _store(repo: str) -> Store:
    return Store(repo, pm=make_plugin_manager(load_entrypoints=False))


def counter_writer(repo: str, name: str, writes: int, counter_id: str) -> None:
    """Each write is one read-modify-write transaction: bump the shared counter, add a bead.

    A lost update shows as a counter below the number of beads made.
    """
    store = _store(repo)
    for i in range(writes):
        with store.transaction() as tx:
            counter = tx.require(counter_id)
            meta = dict(counter.get("metadata", {}))
            meta["count"] = str(int(meta.get("count", "0")) + 1)
            tx.update(counter_id, {"metadata": meta})
            tx.create({"title": f"{name}-{i}", "labels": [name]})


def pair_writer(repo: str, name: str, counter_id: str) -> None:
    """Forever: one transaction makes a pair (b depends on a) and bumps the counter.

    The parent kills this process at random; a torn transaction would leave an `a` without
    its `b`, or a counter that disagrees with the number of pairs.
    """
    store = _store(repo)
    i = 0
    while True:
        with store.transaction() as tx:
            a = tx.create({"title": f"{name}-{i}-a", "labels": ["pair"]})
            tx.create({"title": f"{name}-{i}-b", "labels": ["pair"], "description": "x\n" * 200})
            b_id = [c.id for c in tx.changes() if c.id != a["id"] and c.before is None][0]
            tx.add_dependency(b_id, a["id"])
            counter = tx.require(counter_id)
            meta = dict(counter.get("metadata", {}))
            meta["count"] = str(int(meta.get("count", "0")) + 1)
            tx.update(counter_id, {"metadata": meta})
        i += 1


def hold_lock(repo: str) -> None:
    """Take the write lock, say so, and sleep until killed."""
    import time

    store = _store(repo)
    with store.locked():
        print("locked", flush=True)
        time.sleep(600)


def creator(repo: str, name: str, writes: int) -> None:
    """Create beads one commit at a time; print each ID once its write has returned."""
    store = _store(repo)
    for i in range(writes):
        with store.transaction() as tx:
            bead_id = tx.create({"title": f"{name}-{i}"})["id"]
        print(bead_id, flush=True)


def one_write(repo: str, title: str) -> None:
    with _store(repo).transaction() as tx:
        tx.create({"title": title})


if __name__ == "__main__":
    fn = globals()[sys.argv[1]]
    args = [int(a) if a.isdigit() else a for a in sys.argv[2:]]
    fn(*args)
