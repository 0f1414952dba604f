"""The catalog: a derived SQLite index of the beads at one commit, for fast filtered reads.

Never the source of truth. It records the commit it reflects; a reader that finds it behind
catches up by diffing that commit's tree against HEAD (cost follows the change), and one that
finds it missing, corrupt or pointing at an unknown commit rebuilds it from git. Writers feed
their own changes in directly so the next read needs no catch-up at all. Bead files that fail
to parse are recorded in `bad`, so `bead list` can name them instead of failing outright.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gc_polecat.beads import bead as beadmod
from gc_polecat.beads import ids
from gc_polecat.beads.canonical import load as load_bead
from gc_polecat.beads.git import read_head
from gc_polecat.errors import Conflict, InvalidBead

if TYPE_CHECKING:
    from collections.abc import Iterable

    from gc_polecat.beads.store import Store, Transaction

SCHEMA_VERSION = "3"
FILENAME = "catalog.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS beads (
    id TEXT PRIMARY KEY, path TEXT NOT NULL, blob TEXT NOT NULL, status TEXT NOT NULL,
    issue_type TEXT NOT NULL,
    priority INTEGER NOT NULL, assignee TEXT, top INTEGER NOT NULL, created_at TEXT NOT NULL,
    json TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS beads_type_status ON beads (issue_type, status);
CREATE INDEX IF NOT EXISTS beads_status ON beads (status);
CREATE INDEX IF NOT EXISTS beads_assignee ON beads (assignee);
CREATE TABLE IF NOT EXISTS labels (id TEXT NOT NULL, label TEXT NOT NULL, PRIMARY KEY (id, label))
    WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS labels_label ON labels (label);
CREATE TABLE IF NOT EXISTS bad (path TEXT PRIMARY KEY, error TEXT NOT NULL);
"""


BUSY_TIMEOUT = 30.0  # seconds SQLite waits for another process's lock before "database is locked"


def _damaged(exc: sqlite3.DatabaseError) -> bool:
    """Whether the catalog file itself is bad (not a database, corrupt, another schema), so
    removing it and rebuilding from git is the cure. A busy lock or a failing disk
    (OperationalError) is not: the file is sound, and removing it from under the processes
    that have it open would only make each of them rebuild."""
    return not isinstance(exc, sqlite3.OperationalError)


def _prepare(db: sqlite3.Connection) -> None:
    """Create the tables if missing; DatabaseError for a catalog of another schema version."""
    db.executescript(_SCHEMA)
    version = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
    if version is None:
        db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
    elif version[0] != SCHEMA_VERSION:
        raise sqlite3.DatabaseError("old catalog schema")


@dataclass(frozen=True)
class Query:
    """Filters for `bead list`; every field narrows the result."""

    statuses: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    assignee: str | None = None
    labels: tuple[str, ...] = ()
    include_closed: bool = True
    limit: int | None = None
    meta: tuple[tuple[str, str], ...] = ()  # (key, value) pairs the metadata must hold


class Catalog:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.path = store.state_dir / FILENAME
        self._db: sqlite3.Connection | None = None
        self._top_delta = 0  # change to the top-level count within the open SQLite transaction

    # --- connection -------------------------------------------------------------------------

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = self._open()
        return self._db

    def _open(self) -> sqlite3.Connection:
        if not self._writable():  # SQLite might open the file read-only and fail later
            return self._open_in_memory()
        try:
            return self._open_file()
        except (OSError, sqlite3.OperationalError):
            if self._writable():
                raise
            return self._open_in_memory()

    def _writable(self) -> bool:
        """Whether this process may write the catalog's directory (False on a read-only
        mount, an immutable or another user's repository)."""
        where = self.path.parent if self.path.parent.is_dir() else self.store.git_dir
        return os.access(where, os.W_OK)

    def _open_file(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(2):
            try:
                db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=OFF")  # derived data: rebuilt if ever lost
                _prepare(db)
                return db
            except sqlite3.DatabaseError as exc:
                if attempt or not _damaged(exc):
                    raise
                with contextlib.suppress(Exception):
                    db.close()
                self._remove_files()
        raise AssertionError("unreachable")

    def _open_in_memory(self) -> sqlite3.Connection:
        """A read-only repository is still readable: the catalog lives in this process's
        memory, seeded from the file on disk when there is one (then the catch-up costs only
        the commits since), else built from git. Nothing is written (docs/formats.md)."""
        db = sqlite3.connect(":memory:", isolation_level=None)
        wal = Path(f"{self.path}-wal")
        try:
            # Without its WAL (closed cleanly) the file is whole; with one, its pages may be
            # half checkpointed, and `immutable` would read them as they are: build from git.
            if self.path.is_file() and not (wal.exists() and wal.stat().st_size):
                uri = f"{self.path.as_uri()}?mode=ro&immutable=1"
                source = sqlite3.connect(uri, uri=True)
                try:
                    source.backup(db)
                finally:
                    source.close()
            _prepare(db)
        except (OSError, sqlite3.DatabaseError):
            db.close()
            db = sqlite3.connect(":memory:", isolation_level=None)
            _prepare(db)
        return db

    def _remove_files(self) -> None:
        with contextlib.suppress(OSError):  # nothing to remove in a read-only repository
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    def invalidate(self) -> None:
        """Forget the recorded commit so the next read re-derives from git."""
        with contextlib.suppress(sqlite3.Error):
            self.db.execute("DELETE FROM meta WHERE key='commit'")

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def commit(self) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key='commit'").fetchone()
        return row[0] if row else None

    # --- keeping up with git ----------------------------------------------------------------

    def is_fresh(self) -> bool:
        """True when the catalog reflects HEAD; reads only ref files and SQLite (no dulwich)."""
        try:
            return self.commit() == read_head(self.store.git_dir)[1]
        except sqlite3.DatabaseError:
            return False

    def refresh(self) -> None:
        """Bring the catalog to HEAD: incremental by tree diff, or a full rebuild."""
        store = self.store
        store.recover_if_needed()
        try:
            self._refresh()
        except sqlite3.DatabaseError as exc:
            if not _damaged(exc):
                raise Conflict(
                    f"the catalog could not be brought up to date ({exc}); retry"
                ) from exc
            self.close()
            self._remove_files()
            self._refresh()

    def _refresh(self) -> None:
        head = self.store.head()[1]
        head_hex = head.decode() if head else None
        if self.commit() == head_hex:
            return
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            known = self.commit()  # re-read under the write lock: another reader may have won
            if known != head_hex:
                self._top_delta = 0
                self._catch_up(known, head)
                self._save_top_count()
                db.execute("INSERT OR REPLACE INTO meta VALUES ('commit', ?)", (head_hex or "",))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _catch_up(self, known: str | None, head: bytes | None) -> None:
        git = self.store.git
        new_tree = git.commit_tree(head)
        old_tree = None
        if known:
            try:
                old_tree = git.commit_tree(known.encode())
            except KeyError:  # history rewritten under us
                old_tree = None
        if old_tree is None:
            self._rebuild(new_tree)
            return
        for path, blob in git.changed_paths(old_tree, new_tree):
            if _indexed(path):
                self._apply_path(path, blob, None if blob is None else git.blob(blob))

    def _rebuild(self, tree: bytes | None) -> None:
        """Everything from git, in one pass: rows are collected and inserted with executemany
        (the caller's transaction), and files in `bead.dump`'s layout skip the YAML parser
        (gc_polecat.canonical). The result is the one `_apply_path` builds file by file."""
        db, git = self.db, self.store.git
        for table in ("beads", "labels", "bad"):
            db.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
        db.execute("DELETE FROM meta WHERE key='top_count'")
        rows, labels, bad = [], [], []
        for path, blob in self._all_bead_blobs(tree):
            if not _indexed(path):
                continue
            bead, error = _read_bead(path, git.blob(blob))
            if bead is None:
                bad.append((path, error))
                continue
            rows.append(_row(bead, path, blob))
            labels += [(bead["id"], label) for label in bead.get("labels", [])]
        db.executemany("INSERT INTO beads VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        db.executemany("INSERT OR IGNORE INTO labels VALUES (?, ?)", labels)
        db.executemany("INSERT INTO bad VALUES (?, ?)", bad)
        self._top_delta = sum(row[7] for row in rows)
        db.execute("INSERT OR REPLACE INTO meta VALUES ('built', ?)", (os.urandom(8).hex(),))

    def build_id(self) -> str | None:
        """A token that changes with every full rebuild (and with a new file): how tests
        observe that a recovery caught up instead of rebuilding."""
        row = self.db.execute("SELECT value FROM meta WHERE key='built'").fetchone()
        return row[0] if row else None

    def _all_bead_blobs(self, tree: bytes | None) -> Iterator[tuple[str, bytes]]:
        found = self.store.git.lookup(tree, ids.BEADS_DIR)
        if found is not None:
            yield from self.store.git.walk_blobs(found[1], ids.BEADS_DIR + "/")

    def _remove(self, bead_id: str, path: str) -> None:
        db = self.db
        db.execute("DELETE FROM bad WHERE path=?", (path,))
        if db.execute("DELETE FROM beads WHERE id=?", (bead_id,)).rowcount and "." not in bead_id:
            self._top_delta -= 1
        db.execute("DELETE FROM labels WHERE id=?", (bead_id,))

    def _remove_many(self, bead_ids: list[str]) -> None:
        """`_remove` for many beads, a statement each for all of them (a large import)."""
        db = self.db
        db.executemany("DELETE FROM bad WHERE path=?", [(ids.id_path(b),) for b in bead_ids])
        top = [(b,) for b in bead_ids if "." not in b]
        if top:
            self._top_delta -= db.executemany("DELETE FROM beads WHERE id=?", top).rowcount
        db.executemany("DELETE FROM beads WHERE id=?", [(b,) for b in bead_ids if "." in b])
        db.executemany("DELETE FROM labels WHERE id=?", [(b,) for b in bead_ids])

    def _insert_many(self, beads: list[beadmod.Bead], blobs: dict[str, bytes | None]) -> None:
        """`_insert` for many beads (their blobs by path), with executemany."""
        rows, labels = [], []
        for bead in beads:
            path = ids.id_path(bead["id"])
            rows.append(_row(bead, path, blobs.get(path)))
            labels += [(bead["id"], label) for label in bead.get("labels", [])]
        self.db.executemany("INSERT INTO beads VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        self.db.executemany("INSERT OR IGNORE INTO labels VALUES (?, ?)", labels)
        self._top_delta += sum(row[7] for row in rows)

    def _apply_path(self, path: str, blob: bytes | None, data: bytes | None) -> None:
        db = self.db
        bead_id = ids.path_id(path)
        if bead_id is None:
            db.execute("DELETE FROM bad WHERE path=?", (path,))
        else:
            self._remove(bead_id, path)
        if data is None:
            return
        bead, error = _read_bead(path, data)
        if bead is None:
            db.execute("INSERT INTO bad VALUES (?, ?)", (path, error))
            return
        self._insert(bead, path, blob)

    def _insert(self, bead: beadmod.Bead, path: str, blob: bytes | None) -> None:
        self._top_delta += "." not in bead["id"]
        row = _row(bead, path, blob)
        self.db.execute("INSERT INTO beads VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
        self.db.executemany(
            "INSERT OR IGNORE INTO labels VALUES (?, ?)",
            [(bead["id"], label) for label in bead.get("labels", [])],
        )

    def apply_commit(
        self, base: bytes | None, commit: bytes, tx: Transaction, blobs: dict[str, bytes | None]
    ) -> None:
        """A writer's shortcut: apply its own changes if the catalog was at its base commit."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            if base is None or self.commit() != base.decode():
                db.execute("ROLLBACK")
                return
            self._top_delta = 0
            changes = tx.changes()
            # A bead absent at the base (None before) has no row: the catalog is at the base,
            # and a bad file at its path would have failed the read. Were a row left, the
            # INSERT below would fail and roll back, and the next refresh catches up.
            self._remove_many([change.id for change in changes if change.before is not None])
            after = [change.after for change in changes if change.after is not None]
            self._insert_many(after, blobs)
            self._save_top_count()
            db.execute("INSERT OR REPLACE INTO meta VALUES ('commit', ?)", (commit.decode(),))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    # --- queries ----------------------------------------------------------------------------

    def get(self, bead_id: str) -> beadmod.Bead | None:
        row = self.db.execute("SELECT json FROM beads WHERE id=?", (bead_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def get_many(self, bead_ids: Iterable[str]) -> dict[str, beadmod.Bead]:
        """`get` for many IDs at once (a bulk import): the beads found, by ID. A query per 500
        IDs, not one each (SQLite's older builds allow 999 parameters a statement)."""
        wanted = list(dict.fromkeys(bead_ids))
        found: dict[str, beadmod.Bead] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))  # placeholders only: the IDs are parameters
            rows = self.db.execute(f"SELECT id, json FROM beads WHERE id IN ({marks})", chunk)
            found.update((bead_id, json.loads(text)) for bead_id, text in rows)
        return found

    def get_by_blob(self, bead_id: str, blob: bytes) -> beadmod.Bead | None:
        """The parsed bead if the catalog holds exactly this blob for it. Keyed by content, so
        the answer is right even when the catalog lags HEAD; writers use it to skip YAML."""
        row = self.db.execute(
            "SELECT json FROM beads WHERE id=? AND blob=?", (bead_id, blob.decode())
        ).fetchone()
        return json.loads(row[0]) if row else None

    def bad_files(self) -> list[tuple[str, str]]:
        return list(self.db.execute("SELECT path, error FROM bad ORDER BY path"))

    def _save_top_count(self) -> None:
        """Keep the number of top-level beads in meta: ID length needs it on every create,
        and counting rows would make creates cost the size of the repository."""
        self.db.execute(
            "INSERT OR REPLACE INTO meta VALUES ('top_count', ?)",
            (str(self._stored_top_count() + self._top_delta),),
        )
        self._top_delta = 0

    def _stored_top_count(self) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE key='top_count'").fetchone()
        return int(row[0]) if row else 0

    def count_top_level(self) -> int:
        self.refresh()
        return self._stored_top_count()

    def assignees(self) -> set[str]:
        """Everyone who holds open work: what the pool reconciler treats as ownership."""
        self.refresh()
        rows = self.db.execute(
            "SELECT DISTINCT assignee FROM beads WHERE status != 'closed' AND assignee != ''"
        )
        return {row[0] for row in rows}

    def list(self, query: Query) -> list[beadmod.Bead]:
        where, args = [], []
        if query.statuses:
            where.append(f"status IN ({','.join('?' * len(query.statuses))})")
            args += query.statuses
        elif not query.include_closed:
            where.append("status != 'closed'")
        if query.types:
            where.append(f"issue_type IN ({','.join('?' * len(query.types))})")
            args += query.types
        if query.assignee is not None:
            where.append("assignee = ?")
            args.append(query.assignee)
        for label in query.labels:
            where.append("id IN (SELECT id FROM labels WHERE label = ?)")
            args.append(label)
        for key, value in query.meta:
            where.append("json_extract(json, ?) = ?")
            args += ['$.metadata."' + key.replace('"', "") + '"', value]
        sql = "SELECT json FROM beads"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY priority, created_at, id"
        if query.limit is not None:
            sql += " LIMIT ?"
            args.append(min(query.limit, 2**63 - 1))  # SQLite's largest integer: no limit
        return [json.loads(row[0]) for row in self.db.execute(sql, args)]


def _indexed(path: str) -> bool:
    """Whether a path under the tree is the catalog's business (bead files and strays)."""
    return path.startswith(ids.BEADS_DIR + "/") and path not in ids.SIDE_FILES


def _read_bead(path: str, data: bytes) -> tuple[beadmod.Bead | None, str]:
    """The bead a file holds, or None and the reason it goes into `bad`."""
    bead_id = ids.path_id(path)
    if bead_id is None:
        return None, "not a bead file name (expected beads/<c>/<c>/<id>.yaml)"
    try:
        bead = load_bead(data, path)
    except InvalidBead as exc:
        return None, str(exc)
    if bead["id"] != bead_id:
        return None, f"{path}: holds id {bead['id']!r}, expected {bead_id!r}"
    return bead, ""


def _row(bead: beadmod.Bead, path: str, blob: bytes | None) -> tuple[str | int | None, ...]:
    """The `beads` row of a bead (column order of the schema)."""
    return (
        bead["id"],
        path,
        blob.decode() if blob else "",
        bead["status"],
        bead["issue_type"],
        bead["priority"],
        bead.get("assignee"),
        int("." not in bead["id"]),
        bead["created_at"],
        _JSON.encode(bead),
    )


# json.dumps with these options, made once (dumps builds an encoder per call otherwise).
_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
