"""The beads repository: one YAML file per bead, every change one git commit.

Write protocol (see docs/formats.md, "Crash safety"):

1. take the repository's write lock (an flock on `.git/gc-polecat/write.lock`; the
   kernel drops it when a holder dies, so a killed writer never wedges the repository);
2. finish any half-done write left by a killed writer (`recover`);
3. write blobs, trees and the commit into the object store (unreferenced until step 8); a
   large commit's pack is written by a worker thread beside steps 4-7, and step 8 waits for it
   (`Git.batch(background=True)`: a failure of that thread fails the write before step 8);
4. check the work tree can be written, then write the journal (`.git/gc-polecat/journal.json`:
   the ref, old and new commit, paths), before the first lock, so that a writer killed while
   holding any lock always leaves a journal for the next command to recover;
5. take git's locks in git's order, `index.lock` then `<ref>.lock`, each holding our writer
   record (gc_polecat.beads.locks); re-read the ref;
6. refuse to overwrite an uncommitted local change to any file of the write (exit 2);
7. write the changed files into the work tree (temp file + rename), then git's index;
8. move the branch (temp file + rename, under its lock): THIS is the commit point; a failure
   before it is undone at once, nothing after it can fail the write;
9. release the locks, empty the journal, release the write lock, then tell observers.

Recovery rule: if the journal is not empty, remove the index and ref locks only if their record
proves their gc-polecat writer dead, make the work tree and index match whatever commit the ref
points at, for the journal's paths, then empty the journal. Before step 8 that restores the old
state; after it there is nothing left to do but the locks. Readers read from git objects at the
ref, so they always see a whole commit, never a half-written one.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gc_polecat.beads import bead as beadmod
from gc_polecat.beads import ids
from gc_polecat.beads.config import (  # the settings files' names stay importable from here
    CONFIG_PATH,  # noqa: F401
    DEFAULT_PREFIX,  # noqa: F401
    OWN_CONFIG_PATH,  # noqa: F401
    has_settings,
    load_config,
    load_prefix,
    plan_init,
    registered_sections,
    settings_path,
)
from gc_polecat.beads.git import (
    EXEC_MODE,
    GITLINK_MODE,
    LINK_MODE,
    TREE_MODE,
    Git,
    RefLock,
    atomic_write,
    read_head,
)
from gc_polecat.errors import (
    BadInput,
    Conflict,
    GcPolecatError,
    NotARepository,
    NotFound,
    ReadOnlyRepository,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    import pluggy

    from gc_polecat.beads.catalog import Catalog

STATE_DIR = "gc-polecat"  # inside .git: derived, never committed
LOCK_TIMEOUT = 60.0
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


def is_repository(root: Path) -> bool:
    """A git work tree holding either settings file (`.beads/gc-polecat.yaml` in a bd project,
    `.beads/config.yaml` otherwise)."""
    return (root / ".git").is_dir() and has_settings(root)


def find_root(start: Path) -> Path:
    """The nearest enclosing directory that is a beads repository."""
    start = start.resolve()
    for candidate in (start, *start.parents):
        if is_repository(candidate):
            return candidate
    raise NotARepository(f"not a beads repository (or any parent): {start}; run `gc-polecat init`")


def resolve_root(repo: str | os.PathLike[str] | None) -> Path:
    """--repo, else GC_POLECAT_REPO, else the nearest enclosing beads repository."""
    if repo is None:
        repo = os.environ.get("GC_POLECAT_REPO") or None
    if repo is None:
        return find_root(Path.cwd())
    root = Path(repo).expanduser().resolve()
    if not is_repository(root):
        raise NotARepository(f"not a beads repository: {root}; run `gc-polecat init {root}`")
    return root


def actor(git_config_name: str | None = None) -> str:
    """Who is acting: GC_AGENT, else BD_ACTOR, else the git user name."""
    return (
        os.environ.get("GC_AGENT") or os.environ.get("BD_ACTOR") or git_config_name or "gc-polecat"
    )


AGENT_EMAIL_DOMAIN = "agents.gc-polecat.invalid"  # RFC 2606: can never be a real address


def author_identity(git_name: str | None, git_email: str | None) -> bytes:
    """Who commits: an agent (GC_AGENT, else BD_ACTOR) as `NAME <NAME@agents.gc-polecat.invalid>`
    unless GC_AGENT_EMAIL names its address, so `git log` tells agents apart; otherwise git's
    own user.name and user.email. Characters git cannot hold in an ident are dropped."""
    agent = os.environ.get("GC_AGENT") or os.environ.get("BD_ACTOR")
    name = _ident(agent or git_name or "gc-polecat")
    if agent:
        local = re.sub(r"[^A-Za-z0-9._+-]+", "-", name).strip("-.") or "agent"
        email = _ident(os.environ.get("GC_AGENT_EMAIL") or f"{local}@{AGENT_EMAIL_DOMAIN}")
    else:
        email = _ident(git_email or "gc-polecat@localhost")
    return f"{name} <{email}>".encode()


def _ident(text: str) -> str:
    """git's ident rules: no angle brackets or line ends (they would forge the header)."""
    return " ".join(re.sub(r"[<>]", "", text).split()) or "unknown"  # split() takes \n, \t


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
        self._config_stamp: tuple[int, int, int, str] | None = None
        self._lock = None

    # --- set-up -----------------------------------------------------------------------------

    @classmethod
    def init(
        cls,
        path: str | os.PathLike[str],
        prefix: str | None = None,
        pm: pluggy.PluginManager | None = None,
    ) -> Store:
        """Make `path` a beads repository (git init if needed). An existing one (a fresh clone
        too) keeps its prefix; a bd project gets `.beads/gc-polecat.yaml` beside bd's files.
        Everything is decided before anything is written; nothing changed, no commit."""
        if prefix is not None:
            ids.validate_prefix(prefix)
        root = Path(path).expanduser().resolve()
        if root.exists() and not root.is_dir():
            raise BadInput(f"not a directory: {root}")
        plan = plan_init(root, prefix, registered_sections(pm))
        root.mkdir(parents=True, exist_ok=True)
        if not (root / ".git").is_dir():
            from dulwich.repo import Repo

            Repo.init(str(root))
        store = cls(root, pm=pm)
        store._configure_git()
        content = plan.content
        if content is None:  # settings kept; committed as they are if nobody committed them yet
            if store.git.lookup(store.head_tree(), plan.path) is not None:
                return store
            content = (root / plan.path).read_bytes()
        readme = f"{ids.BEADS_DIR}/README.md"
        with store.transaction(f"gc-polecat: init beads repository (prefix {plan.prefix})") as tx:
            tx.write_file(plan.path, content)
            if store.git.lookup(tx.base_tree, readme) is None:
                tx.write_file(readme, _BEADS_README.encode())
        return store

    def _configure_git(self) -> None:
        """Split-index mode keeps git's index update proportional to the change."""
        config = self.git.repo.get_config()
        with contextlib.suppress(KeyError):
            if config.get(b"core", b"splitIndex") == b"true":
                return
        config.set(b"core", b"splitIndex", b"true")
        config.write_to_path()

    def settings_path(self) -> Path:
        """The settings file in use: `.beads/gc-polecat.yaml` if it exists (a bd project), else
        `.beads/config.yaml` (docs/formats.md, "Settings")."""
        return settings_path(self.root)

    def settings_name(self) -> str:
        """The settings file as messages name it (`.beads/config.yaml`)."""
        return self.settings_path().relative_to(self.root).as_posix()

    def config(self) -> dict[str, Any]:
        """The settings, validated: unknown keys and bad values are named errors. Re-read when
        the file changes, so a long-running controller sees a pool resized."""
        path = self.settings_path()
        try:
            st = path.stat()
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino, str(path))
        except OSError:
            stamp = None
        if self._config is None or self._config_stamp != stamp:
            self._config = load_config(path, registered_sections(self._pm))
            self._config_stamp = stamp
        return self._config

    @property
    def prefix(self) -> str:
        """The ID prefix of new beads: the settings file's `prefix`, by the same parser."""
        if self._prefix is None:
            self._prefix = load_prefix(self.settings_path(), registered_sections(self._pm))
        return self._prefix

    @property
    def git(self) -> Git:
        if self._git is None:
            self._git = Git(self.root)
        return self._git

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            from gc_polecat.beads.catalog import Catalog  # lazy: start-up

            self._catalog = Catalog(self)
        return self._catalog

    @property
    def pm(self) -> pluggy.PluginManager:
        if self._pm is None:
            from gc_polecat.plugins import get_plugin_manager  # lazy: start-up

            self._pm = get_plugin_manager()
        return self._pm

    def _git_user(self, key: bytes) -> str | None:
        """git's user.name / user.email, read once per Store (this is on the write path)."""
        if key not in self._git_users:
            try:
                value = self.git.config_stack().get((b"user",), key).decode()
            except KeyError:
                value = None
            self._git_users[key] = value
        return self._git_users[key]

    def actor(self) -> str:
        """The acting agent's name: GC_AGENT, else BD_ACTOR, else git's user.name."""
        return actor(self._git_user(b"name"))

    def author(self) -> bytes:
        """Author and committer of our commits: `NAME <EMAIL>` (see `author_identity`)."""
        if self._author is None:
            self._author = author_identity(self._git_user(b"name"), self._git_user(b"email"))
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
        # lazy: this is the warm-up, ahead of the wake that needs it
        from gc_polecat.beads import gitindex, locks  # noqa: F401

        _ = self.git, self.catalog.db, self.pm

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the repository write lock (re-entrant within this Store) and recover first."""
        from gc_polecat.beads.locks import FileLock, LockTimeout  # lazy: start-up

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
        except LockTimeout:
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
            self.notify(result)

    def _commit(self, tx: Transaction) -> CommitResult:
        self._refuse_links(tx.files)
        git = self.git
        base = tx.base
        message = tx.commit_message()
        # one pack, not thousands of loose objects, for a large import, written by a worker
        # thread while the work tree is checked and written; the ref moves after it is done
        with git.batch(background=True) as objects:
            blobs = {
                path: (git.add_blob(data) if data is not None else None)
                for path, data in tx.files.items()
            }
            tree = git.edit_tree(git.commit_tree(base), blobs)
            commit = git.make_commit(tree, base, self.author(), message)
        try:
            commit, base = self._publish_commit(tx, base, commit, blobs, message, objects.wait)
        finally:
            objects.join()  # whatever happened, no writer thread outlives the write
        self._update_catalog(tx.base if base == tx.base else None, commit, tx, blobs)
        return CommitResult(commit.decode(), message, tuple(tx.changes()))

    def _publish_commit(
        self,
        tx: Transaction,
        base: bytes | None,
        commit: bytes,
        blobs: dict[str, bytes | None],
        message: str,
        objects_written: Callable[[], None],
    ) -> tuple[bytes, bytes | None]:
        """Publish `commit`, rebased onto a branch someone moved meanwhile: (commit, base) as
        published. `objects_written` returns once the commit's objects are in the object store
        (or raises): the ref never moves before."""
        git = self.git
        contents = {sha: tx.files[path] for path, sha in blobs.items() if sha is not None}
        for _ in range(CAS_RETRIES):
            crash_point("objects-written")
            reflog = f"gc-polecat: {message}"
            if self.publish(tx.ref, base, commit, list(blobs), reflog, contents, objects_written):
                return commit, base
            try:
                objects_written()  # the rebased commit's new trees name this batch's blobs
            except OSError as exc:
                raise _nothing_written(exc, self.root) from None
            # Someone outside gc-polecat moved the branch (a person's `git commit`): rebase our
            # files onto it unless they touched the same paths.
            moved = git.ref_value(tx.ref)
            moved_tree = git.commit_tree(moved)
            touched = [p for p in blobs if git.lookup(moved_tree, p) != git.lookup(tx.base_tree, p)]
            if touched:
                raise Conflict(f"{touched[0]} changed outside gc-polecat during this write; retry")
            base = moved
            tree = git.edit_tree(git.commit_tree(base), blobs)
            commit = git.make_commit(tree, base, self.author(), message)
        raise Conflict("the branch kept moving during this write; retry")

    def publish(
        self,
        ref: bytes,
        old: bytes | None,
        new: bytes,
        paths: list[str],
        reflog: str,
        contents: dict[bytes, bytes] | None = None,
        objects_written: Callable[[], None] | None = None,
    ) -> bool:
        """The one write path, for ordinary commits (`transaction`) and sync's integrations
        alike: make `new` the branch, with its files in the work tree and the index, or change
        nothing (False: the branch is no longer at `old`). Lock order, as git's `commit`:
        `.git/index.lock`, then `<ref>.lock`; the work tree and the index are written while both
        are held and BEFORE the ref moves, so a `git commit` racing with us either fails on
        index.lock or reads our new index; it can never build on our commit from the old one.
        The ref's rename is the commit point: any failure before it is undone (nothing
        committed), nothing after it can fail the write (docs/formats.md, "Crash safety").
        `objects_written` (a background `Git.batch`'s wait) is called right before it."""
        from gc_polecat.beads.gitindex import hold_index_lock  # lazy: start-up

        git = self.git
        old_tree, new_tree = git.commit_tree(old), git.commit_tree(new)
        self._check_writable(paths)
        # The journal comes before the first lock and is emptied after the last release, so a
        # writer killed while it holds any lock always leaves a journal, and the next command
        # (a reader too) recovers and removes that dead writer's locks.
        self._write_journal(ref, old, new, paths)
        crash_point("journal-written")
        written = False
        try:
            with hold_index_lock(self.git_dir):
                ref_lock = git.lock_ref(ref)
                try:
                    crash_point("locked")
                    if ref_lock.value != old:
                        return False
                    found = self._refuse_local_changes(old_tree, new_tree, paths)
                    written = True
                    self._write_and_move(
                        ref_lock, new, old_tree, new_tree, paths, reflog, contents, found,
                        objects_written,
                    )  # fmt: skip
                    crash_point("ref-moved")
                finally:
                    ref_lock.release()
        finally:
            if not written:  # failed before touching a file: nothing to undo
                self._clear_journal()
        self._clear_journal()
        return True

    def _write_and_move(
        self,
        ref_lock: RefLock,
        new: bytes,
        old_tree: bytes | None,
        new_tree: bytes | None,
        paths: list[str],
        reflog: str,
        written: dict[bytes, bytes] | None = None,
        found: dict[str, tuple[int, bytes] | None] | None = None,
        objects_written: Callable[[], None] | None = None,
    ) -> None:
        """Steps 7 and 8: the files, the index, then the ref. A failure before the ref moved
        is undone here and reported as "nothing was written". `written`: blobs' content by
        SHA, for the work tree (they need not be read back); `found`: each path's entry in
        `new_tree`, already looked up; `objects_written`: returns once the commit's objects
        are in the object store (a pack written beside this), raises if they could not be."""
        try:
            self._sync_worktree(new_tree, paths, written, found)
            crash_point("index-written")
            if objects_written is not None:
                objects_written()
            ref_lock.move(new, self.author(), reflog)  # the commit point
        except BaseException as exc:
            if self.git.ref_value(ref_lock.ref) == new:  # it did move: committed, report success
                return
            self._undo(old_tree, paths)
            if isinstance(exc, OSError):
                raise _nothing_written(exc, self.root) from None
            raise

    def _undo(self, old_tree: bytes | None, paths: list[str]) -> None:
        """A write failed before its commit point: put the work tree and the index back. If
        that fails too, the journal stays and the next command's recovery finishes the job."""
        try:
            stale = self._stale_paths(old_tree, paths)
            if stale:
                self._sync_worktree(old_tree, stale)
        except Exception:  # noqa: BLE001 - the original error is the one to report
            return
        self._clear_journal()

    def _stale_paths(self, tree: bytes | None, paths: list[str]) -> list[str]:
        """The paths whose work-tree file differs from `tree`. Only these need writing to put a
        cut-short write back or forward: the index is written after every file, so when it
        holds the write's entries, every file of the write differs from the state before."""
        git = self.git
        stale = []
        for path in paths:
            found = git.lookup(tree, path)
            if found is not None and found[0] == GITLINK_MODE:
                stale.append(path)
                continue
            want = found[1] if found is not None and found[0] != TREE_MODE else None
            if _worktree_blob(self.root / path) != want:
                stale.append(path)
        return stale

    def _check_writable(self, paths: Iterable[str]) -> None:
        """Refuse, before anything is written, a write whose work-tree files or index could not
        be written after it: that write would otherwise be committed and then reported as a
        failure (and a retry would make it twice)."""
        dirs = {self.git_dir, *(d for d in (self.state_dir, self.state_dir / "tmp") if d.exists())}
        # each directory once: an import writes thousands of files into a few hundred shards
        dirs.update(map(Path, _nearest_dirs(str(self.root), {os.path.dirname(p) for p in paths})))
        for d in sorted(dirs):
            if not os.access(d, os.W_OK | os.X_OK):
                raise GcPolecatError(f"cannot write in {d}: permission denied; nothing was written")

    def _refuse_local_changes(
        self, old_tree: bytes | None, new_tree: bytes | None, paths: list[str]
    ) -> dict[str, tuple[int, bytes] | None]:
        """Like git's checkout, never overwrite an uncommitted change: a work-tree file or an
        index entry that holds neither what the branch has nor what this write puts there is
        someone's edit (BadInput, exit 2, nothing written). Read under index.lock, so git
        cannot change either between this check and our write. Returns each path's entry in
        `new_tree` (the work-tree writer needs them too)."""
        from gc_polecat.beads.gitindex import staged  # lazy: start-up

        git = self.git
        index = staged(self.git_dir, paths)
        # a file cannot exist in a directory that does not: one lstat per new shard directory
        # instead of one per file, with the same answer (_missing_dirs)
        missing = _missing_dirs(str(self.root), paths)
        found = _lookup_many(git, new_tree, paths)
        before = _lookup_many(git, old_tree, paths)
        for path in paths:
            wanted = [before[path], found[path]]
            if any(w and w[0] == GITLINK_MODE for w in wanted):
                continue  # a submodule's directory: git checks those itself
            shas = [w[1] if w and w[0] != TREE_MODE else None for w in wanted]
            # a directory where either side has a tree (a directory becoming a file, or back)
            # is that side's state in the work tree (b"" is how _worktree_blob names one)
            dirs = [b"" for w in wanted if w and w[0] == TREE_MODE]
            seen = None if os.path.dirname(path) in missing else _worktree_blob(self.root / path)
            entry = index[path]
            if seen not in shas + dirs:
                how = "is deleted" if seen is None else "has uncommitted changes"
                how += " in the work tree"
            elif (entry[0].hex().encode() if entry else None) not in shas:
                how = "has staged changes" if entry else "is removed from the index"
            else:
                continue
            raise BadInput(
                f"{path} {how}, which this write would overwrite: commit it with git, or "
                f"discard it (git checkout HEAD -- {path}), then retry"
            )
        return found

    def _refuse_links(self, paths: Iterable[str]) -> None:
        """Refuse, before anything is written, a path whose parent in the work tree is a
        symlink or a file: a committed `beads/4 -> /elsewhere` must never carry a bead file
        out of the repository (docs/security.md)."""
        root = str(self.root)
        checked: set[str] = set()  # directories already seen to be real ones (large imports)
        gone: set[str] = set()  # and missing ones: nothing below them can be in the way
        for path in paths:
            where = ""
            for part in path.split("/")[:-1]:
                where = f"{where}/{part}" if where else part
                if where in checked:
                    continue
                if where in gone:
                    break
                try:
                    mode = os.lstat(f"{root}/{where}").st_mode
                except FileNotFoundError:
                    gone.add(where)
                    break
                if not stat.S_ISDIR(mode):
                    raise BadInput(f"refusing to write {path}: {where} is not a directory")
                checked.add(where)

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

    def _sync_worktree(
        self,
        tree: bytes | None,
        paths: list[str],
        written: dict[bytes, bytes] | None = None,
        found: dict[str, tuple[int, bytes] | None] | None = None,
    ) -> None:
        """Make the work tree files and the index match `tree` for `paths`, modes kept: our
        own writes are bead files, but `sync` and the recovery of its journal also bring in
        what others committed with plain git (executables, symlinks, submodules). `written`
        holds the content of blobs just written (by SHA), which need not be read back; `found`
        each path's entry in `tree` when the caller has looked them up already.

        Removals go first, deepest first, so a directory that becomes a file (or a file that
        becomes a directory) is emptied before its replacement is written. No symlink in the
        work tree is ever followed: a parent that is not a real directory is never written
        through, and anything still in the way of a write (only an untracked leftover can be:
        `sync` refuses those up front, see layout.check_worktree) is moved aside under
        `.git/gc-polecat/displaced/`, never deleted, so this can always finish."""
        from gc_polecat.beads.gitindex import update_index  # lazy: start-up

        git = self.git
        index_changes: dict[str, tuple[bytes, int] | None] = {}
        if found is None:
            found = {path: git.lookup(tree, path) for path in paths}
        gone = [p for p, f in found.items() if f is None or f[0] == TREE_MODE]
        for path in sorted(gone, key=lambda p: p.count("/"), reverse=True):
            target = self.root / path
            if _real_parent(self.root, target):
                with contextlib.suppress(FileNotFoundError, IsADirectoryError, NotADirectoryError):
                    target.unlink()
                _prune_empty_dirs(target.parent, self.root)
            index_changes[path] = None
            crash_point("file-written")
        tmp = str(self.state_dir / "tmp")
        written = written or {}
        checked: set[str] = set()  # directories already made real in this call
        made: set[str] = set()  # and those of them this call created (empty until it writes)
        for path, entry in found.items():
            if entry is None or entry[0] == TREE_MODE:
                continue
            mode, sha = entry
            where = self._clear_way(path, mode == GITLINK_MODE, checked, made)
            target = Path(where) if mode in (GITLINK_MODE, LINK_MODE) else where
            if mode == GITLINK_MODE:
                if not target.is_dir() or target.is_symlink():
                    with contextlib.suppress(FileNotFoundError):
                        self._displace(target)
                    target.mkdir()
            elif mode == LINK_MODE:
                target.unlink(missing_ok=True)
                os.symlink(os.fsdecode(git.blob(sha)), target)
            else:
                mode_bits = 0o755 if mode == EXEC_MODE else 0o644
                data = written.get(sha)
                atomic_write(
                    target, git.blob(sha) if data is None else data, tmp, mode_bits, checked
                )
            index_changes[path] = (bytes.fromhex(sha.decode()), mode)
            crash_point("file-written")
        update_index(self.root, self.git_dir, index_changes)

    def _clear_way(
        self,
        path: str,
        keep_dir: bool = False,
        checked: set[str] | None = None,
        made: set[str] | None = None,
    ) -> str:
        """The work-tree path for `path`, its parents made real directories (a symlink or file
        in their place is moved aside, never followed) and, unless `keep_dir` (a submodule's
        checkout), no directory left at the path itself. `checked` holds directories already
        made real by this caller (thousands of files share a few hundred shard directories),
        `made` those it created: nothing of anyone else's can be in the way there, so the
        path itself is not looked at (the caller's own earlier files are never directories).
        A str, not a Path: building thousands of Paths shows in a large import."""
        parent = str(self.root)
        *dirs, name = path.split("/")
        for part in dirs:
            parent = f"{parent}/{part}"
            if checked is not None and parent in checked:
                continue
            if checked is not None:
                checked.add(parent)
            try:
                mode = os.lstat(parent).st_mode
            except FileNotFoundError:
                os.mkdir(parent)
                if made is not None:
                    made.add(parent)
                continue
            if not stat.S_ISDIR(mode):
                self._displace(Path(parent))
                os.mkdir(parent)
        target = f"{parent}/{name}"
        if made is not None and parent in made:
            return target
        with contextlib.suppress(FileNotFoundError):
            if not keep_dir and stat.S_ISDIR(os.lstat(target).st_mode):
                try:
                    os.rmdir(target)
                except OSError:
                    self._displace(Path(target))
        return target

    def _displace(self, path: Path) -> None:
        """Move something in the way of a write under `.git/gc-polecat/displaced/`."""
        aside = self.state_dir / "displaced" / str(time.time_ns()) / path.relative_to(self.root)
        aside.parent.mkdir(parents=True, exist_ok=True)
        os.rename(path, aside)

    def _recover(self) -> None:
        """Finish a write whose writer died: the ref decides which state wins (module docstring).
        Only locks whose record proves them taken by a gc-polecat writer that is gone are
        removed (gc_polecat.beads.locks): never git's, an editor's or a live process's."""
        from gc_polecat.beads.locks import LockBusy, remove_if_dead  # lazy: start-up

        journal = self._journal_path()
        try:
            data = json.loads(journal.read_text())
            ref, paths = data["ref"].encode(), list(data["paths"])
        except (OSError, ValueError, KeyError, TypeError):
            self._clear_journal()  # torn while written, before the ref moved: nothing committed
            return
        tmp = self.state_dir / "tmp"
        for lock in (self.git_dir / "index.lock", self.git_dir / (ref.decode() + ".lock")):
            remove_if_dead(lock, tmp)
        tree = self.git.commit_tree(self.git.ref_value(ref))
        try:
            stale = self._stale_paths(tree, paths)
            if stale:
                self._sync_worktree(tree, stale)
        except LockBusy as exc:
            raise GcPolecatError(f"cannot finish an interrupted write: {exc}") from None
        except OSError as exc:
            raise GcPolecatError(
                f"cannot finish an interrupted write ({type(exc).__name__}: {exc}); "
                "the commit is safe, the work tree catches up once this is fixed"
            ) from None
        import shutil  # lazy: start-up

        shutil.rmtree(tmp, ignore_errors=True)
        self._clear_journal()
        # The catalog is left as it is: it is only ever moved to a commit after the ref moved,
        # in one SQLite transaction, so it still reflects the commit it records, and the next
        # read catches up from there by tree diff (journal's `old` to `new` at most).

    def recover_if_needed(self) -> bool:
        """For readers: complete a dead writer's half-done write. True if there was one.
        A reader reads git objects, so if the work tree cannot be completed now (a lock held
        by git, a read-only work tree) it warns and reads on; the next command tries again."""
        if not self.journal_pending():
            return False
        try:
            with self.locked():
                pass
        except ReadOnlyRepository:  # readers read git objects at the ref: a writer finishes it
            return False
        except GcPolecatError as exc:
            import sys

            print(f"gc-polecat: warning: {exc}", file=sys.stderr)
        return True

    def _update_catalog(
        self, base: bytes | None, commit: bytes, tx: Transaction, blobs: dict[str, bytes | None]
    ) -> None:
        with contextlib.suppress(Exception):  # derived data: a failure only costs a later refresh
            self.catalog.apply_commit(base, commit, tx, blobs)

    def notify(self, result: CommitResult) -> None:
        """Tell every observer of `gc_polecat_bead_committed` (plugins.call_observers: through
        pluggy, each on its own), after a commit or a sync that changed beads."""
        from gc_polecat.plugins import call_observers  # lazy: start-up (pluggy)

        call_observers(
            self.pm.hook.gc_polecat_bead_committed,
            f"after commit {result.commit[:12]}",
            store=self,
            result=result,
        )


def _nothing_written(exc: OSError, root: Path) -> GcPolecatError:
    """A write that failed before its commit point, in one line."""
    where = exc.filename2 or exc.filename or root
    return GcPolecatError(f"cannot write {where}: {exc.strerror or exc}; nothing was written")


_CRASH_AT = os.environ.get("GC_POLECAT_TEST_CRASH_AT")


def crash_point(name: str) -> None:
    """Die by SIGKILL here when GC_POLECAT_TEST_CRASH_AT names this point (crash tests only)."""
    if name == _CRASH_AT:
        os.kill(os.getpid(), 9)


def _worktree_blob(target: Path) -> bytes | None:
    """The blob SHA (hex) the work-tree file at `target` would have, None if there is none."""
    import hashlib

    try:
        mode = os.lstat(target).st_mode
        if stat.S_ISLNK(mode):
            data = os.fsencode(os.readlink(target))
        elif stat.S_ISREG(mode):
            data = target.read_bytes()
        else:
            return b"" if stat.S_ISDIR(mode) else None
    except (FileNotFoundError, NotADirectoryError):
        return None
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest().encode()


def _lookup_many(
    git: Git, tree: bytes | None, paths: Iterable[str]
) -> dict[str, tuple[int, bytes] | None]:
    """`git.lookup(tree, path)` for each path, each directory's tree looked up once (an import
    puts thousands of files into a few hundred shards)."""
    trees: dict[str, Any] = {}
    found: dict[str, tuple[int, bytes] | None] = {}
    for path in paths:
        rel, _, name = path.rpartition("/")
        if rel not in trees:
            entry = git.lookup(tree, rel) if rel else (tree and (TREE_MODE, tree))
            trees[rel] = git.tree(entry[1]) if entry and entry[0] == TREE_MODE else None
        try:
            found[path] = trees[rel][name.encode()] if trees[rel] is not None else None
        except KeyError:
            found[path] = None
    return found


def _missing_dirs(root: str, paths: Iterable[str]) -> set[str]:
    """Work-tree relative directories of `paths` known not to exist now (lstat: ENOENT or
    ENOTDIR), found with one lstat per directory that holds two paths or more (and per
    missing ancestor), each answer shared with everything below it. For a path in such a
    directory lstat would fail the same way, so a write into new shard directories needs no
    lstat per file, and a directory of one path costs what it did: its file's lstat."""
    count: dict[str, int] = {}
    for path in paths:
        rel = os.path.dirname(path)
        count[rel] = count.get(rel, 0) + 1
    missing: set[str] = set()
    for rel in sorted(count, key=lambda r: count[r] < 2):  # probed ones first, to share
        if not rel:
            continue
        if _below(rel, missing):
            missing.add(rel)
        elif count[rel] > 1 and _gone(f"{root}/{rel}"):
            top = rel
            while (up := os.path.dirname(top)) and _gone(f"{root}/{up}"):
                top = up
            missing.update((rel, top))
    return missing


def _below(rel: str, dirs: set[str]) -> bool:
    """Whether `rel` or one of its ancestors is in `dirs` (no file system access)."""
    while rel:
        if rel in dirs:
            return True
        rel = os.path.dirname(rel)
    return False


def _gone(path: str) -> bool:
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return True
    return False


def _nearest_dirs(root: str, rels: Iterable[str]) -> set[str]:
    """For each of `rels`, the nearest of itself and its ancestors that is a directory now
    (symlinks followed, as the writes would): where a write's new directories (or the
    replacement of a file in the way) would be made. Each directory is looked at once."""
    nearest: dict[str, str] = {"": root}
    found: set[str] = set()
    for rel in rels:
        climbed = []  # not directories: each has its nearest ancestor's answer
        while rel not in nearest:
            full = f"{root}/{rel}"
            if os.path.isdir(full):
                nearest[rel] = full
                break
            climbed.append(rel)
            rel = os.path.dirname(rel)
        nearest.update(dict.fromkeys(climbed, nearest[rel]))
        found.add(nearest[rel])
    return found


def _real_parent(root: Path, target: Path) -> bool:
    """Whether every directory between `root` and `target` is a real directory (no symlink):
    only then does an operation on `target` stay inside the work tree."""
    for parent in reversed(target.relative_to(root).parents[:-1]):
        try:
            if not stat.S_ISDIR(os.lstat(root / parent).st_mode):
                return False
        except FileNotFoundError:
            return False
    return True


def _prune_empty_dirs(directory: Path, root: Path) -> None:
    while directory != root and directory.is_relative_to(root):
        try:
            directory.rmdir()
        except OSError:
            return
        directory = directory.parent


class _Unread:
    """The type of `_UNREAD`: `Transaction.put` was not given the stored bead."""


_UNREAD = _Unread()


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

    def put(
        self,
        new: beadmod.Bead,
        summary: str | None = None,
        *,
        normalized: bool = False,
        stored: beadmod.Bead | None | _Unread = _UNREAD,
    ) -> beadmod.Bead:
        """Stage a whole bead (validated); the building block of every other change.
        `normalized`: the caller passes `normalize`'s own result (a bulk import), not checked
        twice. `stored`: the caller already read the bead at this transaction's base (None:
        absent), so it is not read again; only for a bead this transaction has not staged."""
        clean = new if normalized else beadmod.normalize(new)
        bid = clean["id"]
        if bid not in self._before:
            self._before[bid] = self.get(bid) if stored is _UNREAD else stored
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
        names = self.store.git.list_dir(self.base_tree, leaf_dir)
        siblings = {ids.name_id(n) or n for n in names}
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
