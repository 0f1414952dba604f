"""The catalog read straight from SQLite, when it is at HEAD: no store module, no dulwich.

A read that finds the derived catalog (`.git/gc-polecat/catalog.sqlite`) at the branch's
commit, with no crash journal waiting, can answer from SQLite alone. That is most reads, and
it spares a fresh process the store's imports (dataclasses, the settings, the git layer).
Everything else (no catalog, a stale or older-schema one, a write cut short) goes through the
store, which recovers, catches the catalog up or rebuilds it. Used by gc's exec provider
(`interop/gc_exec.py`) and the click-free commands (`fast.py`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite3

# The store's layout, read here without importing the store (a test pins each to its source):
STATE_DIR = "gc-polecat"  # store.STATE_DIR, inside .git
CATALOG_FILE = "catalog.sqlite"  # catalog.FILENAME
CATALOG_SCHEMA = "3"  # catalog.SCHEMA_VERSION: the tables the SQL here reads
JOURNAL_FILE = "journal.json"  # store's crash journal, emptied between writes


def fresh_catalog(root: os.PathLike[str] | str) -> sqlite3.Connection | None:
    """The store's catalog straight from SQLite, in a read transaction (one snapshot for every
    query of the call), when it is at HEAD and no write was cut short; None otherwise."""
    import sqlite3  # lazy: start-up (gc's exec calls that write never read SQLite this way)

    from gc_polecat.beads.git import read_head  # lazy: start-up

    git_dir = os.path.join(root, ".git")
    state = os.path.join(git_dir, STATE_DIR)
    try:
        if os.stat(os.path.join(state, JOURNAL_FILE)).st_size > 0:
            return None  # a writer died mid-commit: the store's recovery must run first
    except FileNotFoundError:
        pass
    except OSError:
        return None
    path = os.path.join(state, CATALOG_FILE)
    if not os.path.isfile(path):
        return None
    db = None
    try:
        db = sqlite3.connect(path, timeout=30, isolation_level=None)
        db.execute("BEGIN")
        meta = dict(db.execute("SELECT key, value FROM meta WHERE key IN ('schema', 'commit')"))
        head = read_head(Path(git_dir))[1] or ""
        if meta.get("schema") == CATALOG_SCHEMA and meta.get("commit") == head:
            return db
    except (sqlite3.Error, OSError):
        pass
    if db is not None:
        db.close()
    return None


def get(db: sqlite3.Connection, bead_id: str) -> dict | None:
    """The bead's catalog row (as `Catalog.get` reads it), or None when the catalog holds none."""
    import json  # lazy: start-up

    row = db.execute("SELECT json FROM beads WHERE id=?", (bead_id,)).fetchone()
    return json.loads(row[0]) if row else None
