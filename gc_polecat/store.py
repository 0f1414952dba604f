"""The beads repository: one YAML file per bead, every change one git commit.

Write protocol (see docs/formats.md, "Crash safety"):

1. take the repository's write lock (filelock on `.git/gc-polecat/write.lock`; the kernel
   drops it when a holder dies, so a killed writer never wedges the repository);
2. finish any half-done write left by a killed writer (`recover`);
3. write blobs, trees and the commit into the object store (unreferenced until step 5);
4. write the journal (`.git/gc-polecat/journal.json`: the ref, old and new commit, paths);
5. move the branch from old to new by compare-and-swap: THIS is the commit point;
6. write the changed files into the work tree (temp file + rename) and update git's index;
7. empty the journal, release the lock, then tell observers (plugins, bead hooks).

Recovery rule: if the journal is not empty, make the work tree and index match whatever commit
the ref points at, for the journal's paths, then empty the journal. Before step 5 that restores
the old state; after it, it completes the new one. Readers read from git objects at the ref,
so they always see a whole commit, never a half-written one.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import stat
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import bead as beadmod
from . import ids
from .errors import BadInput, Conflict, GcPolecatError, NotARepository, NotFound, ReadOnlyRepository
from .git import EXEC_MODE, GITLINK_MODE, LINK_MODE, TREE_MODE, Git, atomic_write, read_head

if TYPE_CHECKING:
    import pluggy

    from .catalog import Catalog

CONFIG_PATH = ".beads/config.yaml"
STATE_DIR = "gc-polecat"  # inside .git: derived, never committed
LOCK_TIMEOUT = 60.0
DEFAULT_PREFIX = "gc"
CAS_RETRIES = 5


@dataclass(frozen=True)
class BeadChange:
    """One bead's change inside a commit, as observers and hooks see it."""

    id: str
    event: str  # create | update | close | delete
    before: beadmod.Bead | None
    after: beadmod.Bead | None


@dataclass(frozen=True)
class CommitResult:
    commit: str
    message: str
    changes: tuple[BeadChange, ...]


def find_root(start: Path) -> Path:
    """The nearest enclosing directory that is a beads repository."""
    start = start.resolve()
    for candidate in (start, *start.parents):
        if (candidate / CONFIG_PATH).is_file() and (candidate / ".git").is_dir():
            return candidate
    raise NotARepository(f"not a beads repository (or any parent): {start}; run `gc-polecat init`")


def resolve_root(repo: str | os.PathLike[str] | None) -> Path:
    """--repo, else GC_POLECAT_REPO, else the nearest enclosing beads repository."""
    if repo is None:
        repo = os.environ.get("GC_POLECAT_REPO") or None
    if repo is None:
        return find_root(Path.cwd())
    root = Path(repo).expanduser().resolve()
    if not (root / CONFIG_PATH).is_file() or not (root / ".git").is_dir():
        raise NotARepository(f"not a beads repository: {root}; run `gc-polecat init {root}`")
    return root


def actor(git_config_name: str | None = None) -> str:
    """Who is acting: GC_AGENT, else BD_ACTOR, else the git user name."""
    return (
        os.environ.get("GC_AGENT") or os.environ.get("BD_ACTOR") or git_config_name or "gc-polecat"
    )


class Store:
    """A beads repository on disk. Cheap to construct; heavy parts load on first use."""

    def __init__(
        self, root: str | os.PathLike[str], pm: pluggy.PluginManager | None = None
    ) -> None:
        self.root = Path(root).resolve()
        self.git_dir = self.root / ".git"
        self.state_dir = self.git_dir / STATE_DIR
        self._pm = pm
        self._git: Git | None = None
        self._catalog: Catalog | None = None
        self._prefix: str | None = None
        self._author: bytes | None = None
        self._git_users: dict[bytes, str | None] = {}
        self._config: dict[str, Any] | None = None
        self._config_stamp: tuple[int, int, int] | None = None
        self._lock = None

    # --- set-up -----------------------------------------------------------------------------

    @classmethod
    def init(
        cls,
        path: str | os.PathLike[str],
        prefix: str = DEFAULT_PREFIX,
        pm: pluggy.PluginManager | None = None,
    ) -> Store:
        """Make `path` a beads repository (git init if needed); idempotent for the same prefix."""
        ids.validate_prefix(prefix)
        root = Path(path).expanduser().resolve()
        if root.exists() and not root.is_dir():
            raise BadInput(f"not a directory: {root}")
        root.mkdir(parents=True, exist_ok=True)
        if not (root / ".git").is_dir():
            from dulwich.repo import Repo

            Repo.init(str(root))
        store = cls(root, pm=pm)
        store._configure_git()
        existing = store._read_config(missing_ok=True)
        if existing is not None:
            if existing.get("prefix") != prefix:
                raise BadInput(
                    f"{root} is already a beads repository with prefix {existing.get('prefix')!r}"
                )
            return store
        content = f"# gc-polecat beads repository\nprefix: {prefix}\n".encode()
        with store.transaction(f"gc-polecat: init beads repository (prefix {prefix})") as tx:
            tx.write_file(CONFIG_PATH, content)
            tx.write_file(f"{ids.BEADS_DIR}/README.md", _BEADS_README.encode())
        return store

    def _configure_git(self) -> None:
        """Split-index mode keeps git's index update proportional to the change."""
        config = self.git.repo.get_config()
        with contextlib.suppress(KeyError):
            if config.get(b"core", b"splitIndex") == b"true":
                return
        config.set(b"core", b"splitIndex", b"true")
        config.write_to_path()

    def _read_config(self, missing_ok: bool = False) -> dict[str, Any] | None:
        path = self.root / CONFIG_PATH
        if not path.is_file():
            if missing_ok:
                return None
            raise NotARepository(f"not a beads repository: {self.root}")
        text = path.read_text()
        match = re.search(r"^prefix:\s*['\"]?([a-z][a-z0-9-]*)['\"]?\s*$", text, re.M)
        return {"prefix": match.group(1) if match else None}

    def config(self) -> dict[str, Any]:
        """`.beads/config.yaml`, validated: unknown keys and bad values are named errors.
        Re-read when the file changes, so a long-running controller sees a pool resized."""
        path = self.root / CONFIG_PATH
        try:
            st = path.stat()
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            stamp = None
        if self._config is None or self._config_stamp != stamp:
            from .config import load_config

            self._config = load_config(path)
            self._config_stamp = stamp
        return self._config

    @property
    def prefix(self) -> str:
        if self._prefix is None:
            cfg = self._read_config() or {}
            self._prefix = ids.validate_prefix(cfg.get("prefix") or DEFAULT_PREFIX)
        return self._prefix

    @property
    def git(self) -> Git:
        if self._git is None:
            self._git = Git(self.root)
        return self._git

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            from .catalog import Catalog

            self._catalog = Catalog(self)
        return self._catalog

    @property
    def pm(self) -> pluggy.PluginManager:
        if self._pm is None:
            from .plugins import get_plugin_manager

            self._pm = get_plugin_manager()
        return self._pm

    def _git_user(self, key: bytes) -> str | None:
        """git's user.name / user.email, read once per Store (this is on the write path)."""
        if key not in self._git_users:
            try:
                value = self.git.repo.get_config_stack().get((b"user",), key).decode()
            except KeyError:
                value = None
            self._git_users[key] = value
        return self._git_users[key]

    def actor(self) -> str:
        """The acting agent's name: GC_AGENT, else BD_ACTOR, else git's user.name."""
        return actor(self._git_user(b"name"))

    def author(self) -> bytes:
        """Author and committer of our commits: the actor, with git's user.email."""
        if self._author is None:
            email = self._git_user(b"email") or "gc-polecat@localhost"
            self._author = f"{self.actor()} <{email}>".encode()
        return self._author

    # --- reading ----------------------------------------------------------------------------

    def head(self) -> tuple[bytes, bytes | None]:
        """(ref to move, current commit) — the ref is the branch HEAD points at, or HEAD."""
        ref, sha = read_head(self.git_dir)
        return (ref or "HEAD").encode(), sha.encode() if sha else None

    def head_tree(self) -> bytes | None:
        return self.git.commit_tree(self.head()[1])

    def get(self, bead_id: str, tree: bytes | None = None) -> beadmod.Bead:
        """The bead at HEAD (or in `tree`); NotFound if absent, InvalidBead if its file is bad."""
        path = ids.id_path(bead_id)
        entry = self.git.lookup(self.head_tree() if tree is None else tree, path)
        if entry is None or entry[0] == TREE_MODE:
            raise NotFound(f"no bead {bead_id}")
        cached = self.catalog.get_by_blob(bead_id, entry[1])
        if cached is not None:
            return cached
        found = beadmod.load(self.git.blob(entry[1]), path)
        if found["id"] != bead_id:
            raise beadmod.InvalidBead(f"{path}: holds id {found['id']!r}, expected {bead_id!r}")
        return found

    def exists(self, bead_id: str, tree: bytes | None = None) -> bool:
        return (
            self.git.lookup(self.head_tree() if tree is None else tree, ids.id_path(bead_id))
            is not None
        )

    # --- writing ----------------------------------------------------------------------------

    def warm_write_path(self) -> None:
        """Load what a commit needs now. A process that blocks and then writes (await records
        delivery right after its wake) would otherwise pay these imports on the wake path."""
        import filelock  # noqa: F401

        from . import beadhooks, gitindex  # noqa: F401

        _ = self.git, self.catalog.db

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the repository write lock (re-entrant within this Store) and recover first."""
        from filelock import FileLock, Timeout

        try:
            if self._lock is None:
                self.state_dir.mkdir(parents=True, exist_ok=True)
                self._lock = FileLock(str(self.state_dir / "write.lock"), timeout=LOCK_TIMEOUT)
            self._lock.acquire()
        except OSError as exc:  # the first thing every write writes: nothing was written yet
            if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise
            raise ReadOnlyRepository(
                f"cannot write to {self.root}: {exc.strerror} ({exc.filename})"
            ) from None
        except Timeout:
            raise GcPolecatError(
                f"repository busy: could not take the write lock in {LOCK_TIMEOUT:.0f} s"
            ) from None
        try:
            if self.journal_pending():
                self._recover()
            yield
        finally:
            self._lock.release()

    @contextlib.contextmanager
    def transaction(self, message: str | None = None) -> Iterator[Transaction]:
        """All-or-nothing change of any number of beads: one commit, or nothing at all."""
        result: CommitResult | None = None
        with self.locked():
            ref, base = self.head()
            tx = Transaction(self, ref, base, message)
            yield tx
            if tx.has_changes():
                result = self._commit(tx)
        if result is not None:
            tx.result = result
            self._notify(result)

    def _commit(self, tx: Transaction) -> CommitResult:
        self._refuse_links(tx.files)
        git = self.git
        blobs = {
            path: (git.add_blob(data) if data is not None else None)
            for path, data in tx.files.items()
        }
        base = tx.base
        message = tx.commit_message()
        for _ in range(CAS_RETRIES):
            tree = git.edit_tree(git.commit_tree(base), blobs)
            commit = git.make_commit(tree, base, self.author(), message)
            crash_point("objects-written")
            self._write_journal(tx.ref, base, commit, list(blobs))
            crash_point("journal-written")
            if git.cas_ref(tx.ref, base, commit, self.author(), f"gc-polecat: {message}"):
                crash_point("ref-moved")
                break
            # Someone outside gc-polecat moved the branch (a person's `git commit`): rebase our
            # files onto it unless they touched the same paths.
            self._clear_journal()
            moved = git.ref_value(tx.ref)
            moved_tree = git.commit_tree(moved)
            touched = [p for p in blobs if git.lookup(moved_tree, p) != git.lookup(tx.base_tree, p)]
            if touched:
                raise Conflict(f"{touched[0]} changed outside gc-polecat during this write; retry")
            base = moved
        else:
            raise Conflict("the branch kept moving during this write; retry")
        self._sync_worktree(git.commit_tree(commit), list(blobs))
        crash_point("index-written")
        self._clear_journal()
        self._update_catalog(tx.base if base == tx.base else None, commit, tx, blobs)
        return CommitResult(commit.decode(), message, tuple(tx.changes()))

    def _refuse_links(self, paths: Iterable[str]) -> None:
        """Refuse, before anything is written, a path whose parent in the work tree is a
        symlink or a file: a committed `beads/4 -> /elsewhere` must never carry a bead file
        out of the repository (docs/security.md)."""
        for path in paths:
            parent = self.root
            for part in path.split("/")[:-1]:
                parent = parent / part
                try:
                    mode = os.lstat(parent).st_mode
                except FileNotFoundError:
                    break
                if not stat.S_ISDIR(mode):
                    where = parent.relative_to(self.root)
                    raise BadInput(f"refusing to write {path}: {where} is not a directory")

    def _journal_path(self) -> Path:
        return self.state_dir / "journal.json"

    def journal_pending(self) -> bool:
        """A write was cut short. The journal file is kept and emptied between writes, because
        truncating a file costs less than creating and unlinking one on every commit."""
        try:
            return self._journal_path().stat().st_size > 0
        except FileNotFoundError:
            return False

    def _clear_journal(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.truncate(self._journal_path(), 0)

    def _write_journal(self, ref: bytes, old: bytes | None, new: bytes, paths: list[str]) -> None:
        """Written in place: a journal torn by a kill can only exist before the ref moved, and
        recovery treats an unparsable journal as "nothing was committed"."""
        data = {
            "ref": ref.decode(),
            "old": old.decode() if old else None,
            "new": new.decode(),
            "paths": paths,
        }
        self._journal_path().write_bytes(json.dumps(data).encode())

    def _sync_worktree(self, tree: bytes | None, paths: list[str]) -> None:
        """Make the work tree files and the index match `tree` for `paths`, modes kept: our
        own writes are bead files, but `sync` and the recovery of its journal also bring in
        what others committed with plain git (executables, symlinks, submodules)."""
        from .gitindex import update_index

        git = self.git
        index_changes: dict[str, tuple[bytes, int] | None] = {}
        tmp = self.state_dir / "tmp"
        for path in paths:
            target = self.root / path
            found = git.lookup(tree, path)
            if found is None or found[0] == TREE_MODE:
                with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                    target.unlink()
                _prune_empty_dirs(target.parent, self.root)
                index_changes[path] = None
            else:
                mode, sha = found
                if mode == GITLINK_MODE:
                    target.mkdir(parents=True, exist_ok=True)
                elif mode == LINK_MODE:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.unlink(missing_ok=True)
                    os.symlink(os.fsdecode(git.blob(sha)), target)
                else:
                    mode_bits = 0o755 if mode == EXEC_MODE else 0o644
                    atomic_write(target, git.blob(sha), tmp, mode_bits)
                index_changes[path] = (bytes.fromhex(sha.decode()), mode)
            crash_point("file-written")
        update_index(self.root, self.git_dir, index_changes)

    def _recover(self) -> None:
        """Finish a write whose writer died: the ref decides which state wins (module docstring)."""
        journal = self._journal_path()
        try:
            data = json.loads(journal.read_text())
            ref, paths = data["ref"].encode(), list(data["paths"])
        except (OSError, ValueError, KeyError, TypeError):
            self._clear_journal()  # torn while written, before the ref moved: nothing committed
            return
        for stale in (self.git_dir / "index.lock", self.git_dir / (ref.decode() + ".lock")):
            stale.unlink(missing_ok=True)  # ours: the journal proves a gc-polecat writer held them
        self._sync_worktree(self.git.commit_tree(self.git.ref_value(ref)), paths)
        shutil.rmtree(self.state_dir / "tmp", ignore_errors=True)
        self._clear_journal()
        if self._catalog is not None:
            self._catalog.invalidate()

    def recover_if_needed(self) -> bool:
        """For readers: complete a dead writer's half-done write. True if there was one."""
        if not self.journal_pending():
            return False
        try:
            with self.locked():
                pass
        except ReadOnlyRepository:  # readers read git objects at the ref: a writer finishes it
            return False
        return True

    def _update_catalog(
        self, base: bytes | None, commit: bytes, tx: Transaction, blobs: dict[str, bytes | None]
    ) -> None:
        with contextlib.suppress(Exception):  # derived data: a failure only costs a later refresh
            self.catalog.apply_commit(base, commit, tx, blobs)

    def _notify(self, result: CommitResult) -> None:
        """Tell every observer, each on its own: one that raises is reported and skipped, so a
        broken plugin can neither fail a committed write nor starve the observers after it."""
        import sys

        for impl in reversed(self.pm.hook.gc_polecat_bead_committed.get_hookimpls()):
            try:
                kwargs = {"store": self, "result": result}
                impl.function(*(kwargs[name] for name in impl.argnames))  # as pluggy calls it
            except Exception as exc:  # noqa: BLE001 - the write is durable; report and go on
                print(
                    f"gc-polecat: warning: plugin {impl.plugin_name} failed after commit "
                    f"{result.commit[:12]}: {type(exc).__name__}: {exc}",
                    file=sys.stderr,
                )


_CRASH_AT = os.environ.get("GC_POLECAT_TEST_CRASH_AT")


def crash_point(name: str) -> None:
    """Die by SIGKILL here when GC_POLECAT_TEST_CRASH_AT names this point (crash tests only)."""
    if name == _CRASH_AT:
        os.kill(os.getpid(), 9)


def _prune_empty_dirs(directory: Path, root: Path) -> None:
    while directory != root and directory.is_relative_to(root):
        try:
            directory.rmdir()
        except OSError:
            return
        directory = directory.parent


class Transaction:
    """Pending changes to beads (and a few repository files), committed as one."""

    def __init__(self, store: Store, ref: bytes, base: bytes | None, message: str | None) -> None:
        self.store = store
        self.ref = ref
        self.base = base
        self.base_tree = store.git.commit_tree(base)
        self.message = message
        self.files: dict[str, bytes | None] = {}
        self._beads: dict[str, beadmod.Bead | None] = {}
        self._before: dict[str, beadmod.Bead | None] = {}
        self._base: dict[str, beadmod.Bead | None] = {}
        self._summaries: list[str] = []
        self.result: CommitResult | None = None
        self.now = beadmod.now()

    # --- reading through pending changes ----------------------------------------------------

    def get(self, bead_id: str) -> beadmod.Bead | None:
        ids.validate_id(bead_id)
        if bead_id in self._beads:
            pending = self._beads[bead_id]
        else:
            if bead_id not in self._base:  # parse each base bead once per transaction
                try:
                    self._base[bead_id] = self.store.get(bead_id, self.base_tree)
                except NotFound:
                    self._base[bead_id] = None
            pending = self._base[bead_id]
        return None if pending is None else dict(pending)

    def changed(self, bead_id: str) -> bool:
        """Whether this transaction wrote or deleted the bead (the catalog's row is its base)."""
        return bead_id in self._beads

    def require(self, bead_id: str) -> beadmod.Bead:
        found = self.get(bead_id)
        if found is None:
            raise NotFound(f"no bead {bead_id}")
        return found

    def exists(self, bead_id: str) -> bool:
        if bead_id in self._beads:
            return self._beads[bead_id] is not None
        return self.store.exists(bead_id, self.base_tree)

    # --- staging ----------------------------------------------------------------------------

    def write_file(self, path: str, data: bytes | None) -> None:
        """Stage a non-bead repository file (config, README)."""
        self.files[path] = data

    def put(self, new: beadmod.Bead, summary: str | None = None) -> beadmod.Bead:
        """Stage a whole bead (validated); the building block of every other change."""
        clean = beadmod.normalize(new)
        bid = clean["id"]
        if bid not in self._before:
            self._before[bid] = self.get(bid)
        self._beads[bid] = clean
        self.files[ids.id_path(bid)] = beadmod.dump(clean)
        self._summaries.append(summary or _describe(self._before[bid], clean))
        return dict(clean)

    def delete(self, bead_id: str) -> None:
        before = self.require(bead_id)
        self._before.setdefault(bead_id, before)
        self._beads[bead_id] = None
        self.files[ids.id_path(bead_id)] = None
        self._summaries.append(f"{bead_id}: deleted")

    def create(self, fields: beadmod.Bead, parent: str | None = None) -> beadmod.Bead:
        """A new bead with a fresh ID (or the one given), timestamps and bd's defaults."""
        fields = dict(fields)
        if fields.get("id"):
            if self.exists(fields["id"]):
                raise BadInput(f"bead {fields['id']} already exists")
        elif parent is not None:
            fields["id"] = self._child_id(parent)
        else:
            fields["id"] = self._new_id(fields)
        if fields.get("dependencies"):  # a new bead's own dependencies may leave issue_id empty
            fields["dependencies"] = [
                {**d, "issue_id": d.get("issue_id") or fields["id"]} for d in fields["dependencies"]
            ]
        fields.setdefault("created_at", self.now)
        fields.setdefault("updated_at", fields["created_at"])
        fields.setdefault("created_by", self.store.actor())
        if fields.get("status") == "closed":
            fields.setdefault("closed_at", self.now)
        if parent is not None:
            deps = list(fields.get("dependencies") or [])
            deps.append(
                {
                    "issue_id": fields["id"],
                    "depends_on_id": parent,
                    "type": "parent-child",
                    "created_at": self.now,
                }
            )
            fields["dependencies"] = deps
        kind, title = fields.get("issue_type", "task"), fields.get("title", "")
        return self.put(fields, f"{fields['id']}: created ({kind}) {title!r}"[:200])

    def update(self, bead_id: str, changes: beadmod.Bead) -> beadmod.Bead:
        """Apply field changes with bd's rules for closed_at, started_at and updated_at."""
        current = self.require(bead_id)
        new = dict(current)
        for key, value in changes.items():
            if key == "id":
                raise BadInput("the id of a bead cannot change")
            new[key] = value
        old_status, status = current.get("status"), new.get("status")
        if status != old_status:
            if status == "closed":
                new.setdefault("closed_at", self.now)
                if "closed_at" not in changes:
                    new["closed_at"] = self.now
            else:
                new.pop("closed_at", None)
                if old_status == "closed":
                    new.pop("close_reason", None)
            if status == "in_progress" and not new.get("started_at"):
                new["started_at"] = self.now
        if new == current:
            return current
        new["updated_at"] = self.now
        return self.put(new)

    def close(self, bead_id: str, reason: str | None = None) -> beadmod.Bead:
        changes: beadmod.Bead = {"status": "closed"}
        if reason:
            changes["close_reason"] = reason
        return self.update(bead_id, changes)

    def add_dependency(
        self, bead_id: str, depends_on: str, dep_type: str = "blocks"
    ) -> beadmod.Bead:
        ids.validate_id(depends_on)
        if depends_on == bead_id:
            raise BadInput(f"{bead_id} cannot depend on itself")
        if not self.exists(depends_on):
            raise NotFound(f"no bead {depends_on}")
        current = self.require(bead_id)
        deps = [
            d
            for d in current.get("dependencies", [])
            if not (d["depends_on_id"] == depends_on and d["type"] == dep_type)
        ]
        deps.append(
            {
                "issue_id": bead_id,
                "depends_on_id": depends_on,
                "type": dep_type,
                "created_at": self.now,
                "created_by": self.store.actor(),
            }
        )
        return self.update(bead_id, {"dependencies": deps})

    def remove_dependency(
        self, bead_id: str, depends_on: str, dep_type: str | None = None
    ) -> beadmod.Bead:
        ids.validate_id(depends_on)
        current = self.require(bead_id)
        deps = current.get("dependencies", [])
        kept = [
            d
            for d in deps
            if not (d["depends_on_id"] == depends_on and dep_type in (None, d["type"]))
        ]
        if len(kept) == len(deps):
            raise NotFound(f"{bead_id} has no dependency on {depends_on}")
        return self.update(bead_id, {"dependencies": kept})

    # --- IDs --------------------------------------------------------------------------------

    def new_id(self, fields: beadmod.Bead) -> str:
        """A fresh top-level ID, for callers that must know it before the bead exists."""
        return self._new_id(dict(fields))

    def _new_id(self, fields: beadmod.Bead) -> str:
        prefix = fields.pop("prefix", None) or self.store.prefix
        ids.validate_prefix(prefix)
        seed = "|".join(str(fields.get(k, "")) for k in ("title", "description", "created_by"))
        seed += f"|{self.now}|{time.time_ns()}|{os.getpid()}"
        count = self.store.catalog.count_top_level() + sum(1 for b in self._beads if "." not in b)
        return ids.generate_id(prefix, seed, count, self.exists)

    def _child_id(self, parent: str) -> str:
        self.require(parent)
        if ids.child_depth(parent) >= 3:
            raise BadInput(f"{parent} is already three levels deep; children cannot nest further")
        leaf_dir = ids.id_path(parent).rsplit("/", 1)[0]
        siblings = {n[: -len(".yaml")] for n in self.store.git.list_dir(self.base_tree, leaf_dir)}
        siblings |= {b for b, v in self._beads.items() if v is not None}
        numbers = [
            int(s[len(parent) + 1 :])
            for s in siblings
            if s.startswith(parent + ".") and s[len(parent) + 1 :].isdigit()
        ]
        return f"{parent}.{max(numbers, default=0) + 1}"

    # --- commit ----------------------------------------------------------------------------

    def has_changes(self) -> bool:
        return bool(self.files)

    def changes(self) -> list[BeadChange]:
        out = []
        for bid, after in self._beads.items():
            before = self._before.get(bid)
            if after is None:
                event = "delete"
            elif before is None:
                event = "create"
            elif after.get("status") == "closed" and before.get("status") != "closed":
                event = "close"
            else:
                event = "update"
            out.append(BeadChange(bid, event, before, after))
        return out

    def commit_message(self) -> str:
        if self.message:
            return self.message
        lines = list(dict.fromkeys(self._summaries)) or ["gc-polecat: update repository files"]
        if len(lines) == 1:
            return lines[0]
        return f"{len(self._beads)} beads: {lines[0]} (+{len(lines) - 1} more)\n\n" + "\n".join(
            lines
        )


_DERIVED_KEYS = ("updated_at", "closed_at", "started_at")  # implied by the status change


def _describe(before: beadmod.Bead | None, after: beadmod.Bead) -> str:
    """`gc-4f2: status open -> closed; assignee set` — what a commit message says."""
    bid = after["id"]
    if before is None:
        return f"{bid}: created"
    parts = []
    for key in sorted(set(before) | set(after), key=lambda k: (k != "status", k)):
        if key in _DERIVED_KEYS or before.get(key) == after.get(key):
            continue
        old, new = before.get(key), after.get(key)
        if (
            isinstance(old, (str, int))
            and isinstance(new, (str, int))
            and len(str(old)) + len(str(new)) < 60
            and "\n" not in str(old) + str(new)
        ):
            parts.append(f"{key} {old} -> {new}")
        elif old is None:
            parts.append(f"{key} set")
        elif new is None:
            parts.append(f"{key} cleared")
        else:
            parts.append(f"{key} changed")
    return f"{bid}: " + ("; ".join(parts) if parts else "touched")


_BEADS_README = """\
# Beads

One YAML file per bead. The path follows from the ID: `gc-4f2` lives at `beads/4/f/gc-4f2.yaml`
(the first two characters after the last dash, one directory each). Every change is one git
commit: `git log -p beads/4/f/gc-4f2.yaml` is a bead's history. Change beads with
`gc-polecat bead ...`, not by hand; see docs/formats.md in gc-polecat for every key.
"""
