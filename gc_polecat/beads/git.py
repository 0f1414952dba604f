"""Git plumbing over dulwich: read paths at a commit, edit trees, commit, move refs by CAS.

Everything here touches only the trees on the path from the root to a changed file, so the cost
of a commit follows the size of the change, not the size of the repository. Parsed trees are
cached by SHA (git objects are immutable, so the cache can never be stale). dulwich is imported
lazily: `read_head` works from the ref files alone so read-only commands can skip it.
"""

from __future__ import annotations

import contextlib
import os
import struct
import time
import zlib
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable

    from dulwich.config import ConfigFile, StackedConfig
    from dulwich.object_store import DiskObjectStore
    from dulwich.objects import ShaFile, Tree
    from dulwich.repo import Repo

FILE_MODE = 0o100644
EXEC_MODE = 0o100755
LINK_MODE = 0o120000
GITLINK_MODE = 0o160000
TREE_MODE = 0o040000
ZERO = b"0" * 40
# A batch of at least this many new objects is written as one pack instead of loose files (git
# itself keeps pushes under `transfer.unpackLimit`, 100 objects, loose): a large import would
# otherwise create one file per bead and per tree.
PACK_MIN_OBJECTS = 256
MAX_PACK_BYTES = 2**31 - 1  # a version-2 index without the large-offset table


def read_ref(git_dir: Path, ref: str) -> str | None:
    """A ref's commit SHA (loose file, else packed-refs), or None when it does not exist."""
    try:
        return (git_dir / ref).read_text().strip() or None
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        pass
    try:
        for line in (git_dir / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref) and not line.startswith(("#", "^")):
                return line.split(" ", 1)[0]
    except FileNotFoundError:
        pass
    return None


def read_head(git_dir: Path) -> tuple[str | None, str | None]:
    """(ref name or None when detached, commit SHA hex or None when unborn), without dulwich."""
    head = (git_dir / "HEAD").read_text().strip()
    if not head.startswith("ref: "):
        return None, head or None
    ref = head[5:]
    return ref, read_ref(git_dir, ref)


class Git:
    """A dulwich object store with a tree cache and the few operations the store needs.

    A plain repository (`.git` a directory, format 0, no extensions, not shared) opens only
    dulwich's object store and config: its whole `Repo` (refs, hooks, reflog, worktrees: ~10 ms
    of imports) is made on first use of `repo`, which the write path never needs. Anything
    else is opened as dulwich's `Repo` at once, which validates it as before."""

    def __init__(self, root: Path, tree_cache: int = 4096) -> None:
        self.root = Path(root)
        self._repo: Repo | None = None
        self.git_dir = self.root / ".git"
        self.config = _plain_config(self.git_dir)
        if self.config is None:
            self.git_dir = Path(self.repo.controldir())
            self.config = self.repo.get_config()
            self.store: DiskObjectStore = self.repo.object_store
        else:
            from dulwich.object_store import DiskObjectStore  # lazy: start-up

            self.store = DiskObjectStore.from_config(str(self.git_dir / "objects"), self.config)
        self._trees: OrderedDict[bytes, Tree] = OrderedDict()
        self._commit_trees: dict[bytes, bytes] = {}
        self._tree_cache = tree_cache
        self._pending: dict[bytes, ShaFile] | None = None
        # objects a background batch is still writing (`Batch`): read from here until it ends
        self._unwritten: dict[bytes, ShaFile] = {}

    @property
    def repo(self) -> Repo:
        """dulwich's whole `Repo` (sharing this object store), made on first use."""
        if self._repo is None:
            from dulwich.repo import Repo  # lazy: start-up

            store = getattr(self, "store", None)
            self._repo = Repo(str(self.root), object_store=store)
        return self._repo

    def config_stack(self) -> StackedConfig:
        """The repository's config over the user's and the system's, as `Repo` stacks them."""
        if self._repo is not None:
            return self._repo.get_config_stack()
        from dulwich.config import StackedConfig  # lazy: start-up

        return StackedConfig([self.config, *StackedConfig.default_backends()], self.config)

    # --- reading ---------------------------------------------------------------------------

    def _object(self, sha: bytes) -> ShaFile:
        """An object by SHA: one a background batch is still writing, else the store's."""
        obj = self._unwritten.get(sha)
        return self.store[sha] if obj is None else obj

    def tree(self, sha: bytes) -> Tree:
        cached = self._trees.get(sha)
        if cached is not None:
            self._trees.move_to_end(sha)
            return cached
        tree = self._object(sha)
        self._trees[sha] = tree
        if len(self._trees) > self._tree_cache:
            self._trees.popitem(last=False)
        return tree

    def commit_tree(self, commit: bytes | None) -> bytes | None:
        """The root tree of a commit (cached: every write reads its base commit twice)."""
        if commit is None:
            return None
        tree = self._commit_trees.get(commit)
        if tree is None:
            tree = self._commit_trees[commit] = self._object(commit).tree
            if len(self._commit_trees) > self._tree_cache:
                self._commit_trees.clear()
        return tree

    def lookup(self, root_tree: bytes | None, path: str) -> tuple[int, bytes] | None:
        """(mode, sha) of `path` in a tree, or None."""
        sha = root_tree
        mode = TREE_MODE
        for part in path.encode().split(b"/"):
            if sha is None or mode != TREE_MODE:
                return None
            try:
                mode, sha = self.tree(sha)[part]
            except KeyError:
                return None
        return mode, sha

    def blob(self, sha: bytes) -> bytes:
        return self._object(sha).as_raw_string()

    def list_dir(self, root_tree: bytes | None, path: str) -> list[str]:
        found = self.lookup(root_tree, path)
        if found is None or found[0] != TREE_MODE:
            return []
        return [name.decode() for name in self.tree(found[1])]

    def walk_blobs(self, tree_sha: bytes, prefix: str = "") -> Iterator[tuple[str, bytes]]:
        """Every (path, blob sha) under a tree; used only for full rebuilds."""
        for entry in self.tree(tree_sha).iteritems():
            path = f"{prefix}{entry.path.decode()}"
            if entry.mode == TREE_MODE:
                yield from self.walk_blobs(entry.sha, path + "/")
            else:
                yield path, entry.sha

    def changed_paths(
        self, old_tree: bytes | None, new_tree: bytes | None
    ) -> Iterator[tuple[str, bytes | None]]:
        """(path, new blob sha or None when deleted), skipping identical subtrees."""
        from dulwich.diff_tree import tree_changes

        for change in tree_changes(self.store, old_tree, new_tree):
            new = change.new
            if new is not None and new.path is not None:
                yield new.path.decode(), new.sha
            else:  # a deletion: dulwich reports it as new=None or as an entry without a path
                yield change.old.path.decode(), None

    # --- writing ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def batch(self, background: bool = False) -> Iterator[Batch]:
        """Objects added inside are written when it ends (nothing when it raises): as one pack
        when there are many (`PACK_MIN_OBJECTS`), else loose. With `background`, a pack is
        written by a worker thread (zlib and SHA-1 release the GIL, so the caller's next steps
        run beside it): the objects are readable here at once, but in the object store only
        once the yielded `Batch.wait()` returns, which the caller must reach before anything
        outside this process may see them (the ref moves)."""
        batch = Batch(self)
        self._pending = batch.pending
        try:
            yield batch
        finally:
            self._pending = None
        objects = list(batch.pending.values())
        if len(objects) < PACK_MIN_OBJECTS:
            self._write_all_loose(objects)
        elif background:
            self._unwritten = batch.pending
            batch.start(self._write_pack_or_loose, objects)
        else:
            self._write_pack_or_loose(objects)

    def _write_pack_or_loose(self, objects: list[ShaFile]) -> None:
        if not self.write_pack(objects):
            self._write_all_loose(objects)

    def _write_all_loose(self, objects: list[ShaFile]) -> None:
        for obj in objects:
            self._write_loose(obj)

    def add_object(self, obj: ShaFile) -> bytes:
        """Write (or queue, inside `batch`) an object; its hex SHA, computed once here."""
        sha = obj.id
        if self._pending is not None:
            self._pending[sha] = obj
        else:
            self._write_loose(obj)
        return sha

    def write_pack(self, objects: list[ShaFile]) -> bool:
        """Write objects as one pack and its index (git's pack format, version 2, undeltified).
        The pack is renamed into place first and the index last: git and dulwich use a pack only
        once its index exists, so a writer killed midway leaves an unused file, never a missing
        object. False (nothing written) when the pack would be too large for this index form."""
        import hashlib  # lazy: start-up

        chunks = [b"PACK", struct.pack(">II", 2, len(objects))]
        entries: list[tuple[bytes, int, int]] = []
        offset = 12
        for obj in objects:
            raw = obj.as_raw_string()
            data = _pack_header(obj.type_num, len(raw)) + zlib.compress(raw, 1)
            entries.append((obj.sha().digest(), zlib.crc32(data), offset))
            chunks.append(data)
            offset += len(data)
        if offset > MAX_PACK_BYTES:
            return False
        body = b"".join(chunks)
        pack_sha = hashlib.sha1(body).digest()  # noqa: S324 - git's object format, not security
        entries.sort()
        counts = [0] * 256
        for sha, _, _ in entries:
            counts[sha[0]] += 1
        fanout, total = [], 0
        for count in counts:
            total += count
            fanout.append(total)
        index = b"".join(
            [
                b"\xfftOc",
                struct.pack(">I", 2),
                struct.pack(">256I", *fanout),
                *(sha for sha, _, _ in entries),
                struct.pack(f">{len(entries)}I", *(crc for _, crc, _ in entries)),
                struct.pack(f">{len(entries)}I", *(off for _, _, off in entries)),
                pack_sha,
            ]
        )
        index += hashlib.sha1(index).digest()  # noqa: S324
        pack_dir = Path(self.store.path) / "pack"
        pack_dir.mkdir(exist_ok=True)
        base = pack_dir / f"pack-{pack_sha.hex()}"
        for suffix, data in ((".pack", body + pack_sha), (".idx", index)):
            tmp = pack_dir / f"tmp_{suffix[1:]}_{os.getpid()}"
            tmp.unlink(missing_ok=True)  # left by a killed writer that had this PID
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
            with open(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, base.with_suffix(suffix))
        return True

    def _write_loose(self, obj: ShaFile) -> None:
        """Write a loose object as git does: into a temporary file, renamed into place. dulwich's
        own writer creates `<object>.lock` exclusively first, and a writer killed while it holds
        it leaves a lock that refuses that very object (same content, same name) to every later
        writer. Objects are immutable, so a rename over an existing one changes nothing."""
        path = Path(self.store.path) / obj.id[:2].decode() / obj.id[2:].decode()
        if path.exists():
            with contextlib.suppress(OSError):  # fresh mtime: not a candidate for pruning
                os.utime(path)
            return
        tmp = path.parent / f"tmp_obj_{os.getpid()}_{obj.id[2:10].decode()}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        try:
            fd = os.open(tmp, flags, 0o444)
        except FileNotFoundError:  # the first object of its fan-out directory
            path.parent.mkdir(exist_ok=True)
            fd = os.open(tmp, flags, 0o444)
        except FileExistsError:  # left by a killed writer that had this PID
            tmp.unlink()
            fd = os.open(tmp, flags, 0o444)
        with open(fd, "wb") as f:
            f.writelines(obj.as_legacy_object_chunks())
        os.replace(tmp, path)

    def add_blob(self, data: bytes) -> bytes:
        from dulwich.objects import Blob

        return self.add_object(Blob.from_string(data))

    def edit_tree(self, root_tree: bytes | None, changes: Mapping[str, bytes | None]) -> bytes:
        """Write the trees for `changes` (path -> blob sha, None deletes); return the new root."""
        nested: dict = {}
        for path, sha in changes.items():
            node = nested
            *dirs, name = path.split("/")
            for d in dirs:
                node = node.setdefault(d.encode(), {})
            node[name.encode()] = sha
        return self._edit(root_tree, nested) or self._write_tree_obj(self._empty_tree())

    def _empty_tree(self) -> Tree:
        from dulwich.objects import Tree

        return Tree()

    def _edit(self, tree_sha: bytes | None, nested: dict) -> bytes | None:
        from dulwich.objects import Tree

        tree = Tree()
        if tree_sha is not None:
            for entry in self.tree(tree_sha).iteritems():
                tree.add(entry.path, entry.mode, entry.sha)
        for name, value in nested.items():
            if isinstance(value, dict):
                current = tree[name][1] if name in tree and tree[name][0] == TREE_MODE else None
                sub = self._edit(current, value)
                if sub is None:
                    if name in tree:
                        del tree[name]
                else:
                    tree[name] = (TREE_MODE, sub)
            elif value is None:
                if name in tree:
                    del tree[name]
            else:
                tree[name] = (FILE_MODE, value)
        if not len(tree):
            return None
        return self._write_tree_obj(tree)

    def _write_tree_obj(self, tree: Tree) -> bytes:
        sha = self.add_object(tree)
        self._trees[sha] = tree
        return sha

    def make_commit(self, tree: bytes, parent: bytes | None, author: bytes, message: str) -> bytes:
        from dulwich.objects import Commit

        commit = Commit()
        commit.tree = tree
        commit.parents = [parent] if parent else []
        commit.author = commit.committer = author
        commit.author_time = commit.commit_time = int(time.time())
        commit.author_timezone = commit.commit_timezone = 0
        commit.encoding = b"UTF-8"
        commit.message = (
            message.encode("utf-8") if message.endswith("\n") else (message + "\n").encode()
        )
        self.add_object(commit)
        return commit.id

    def lock_ref(self, ref: bytes) -> RefLock:
        """Take `<ref>.lock` (git's ref-lock protocol, see gc_polecat.beads.locks); LockBusy when
        git or another process holds it for more than REF_LOCK_WAIT."""
        return RefLock(self, ref)

    def cas_ref(self, ref: bytes, old: bytes | None, new: bytes, who: bytes, message: str) -> bool:
        """Move `ref` from `old` (None: unborn) to `new`: lock, re-read the ref under the lock,
        rename. Like git by default, no fsync: the rename is atomic against process death."""
        lock = self.lock_ref(ref)
        try:
            if lock.value != old:
                return False
            lock.move(new, who, message)
            return True
        finally:
            lock.release()

    def _append_reflog(self, ref: str, old: bytes | None, new: bytes, who: bytes, msg: str) -> None:
        """One line in .git/logs/<ref>, so `git reflog` shows our commits like any other."""
        log = self.git_dir / "logs" / ref
        log.parent.mkdir(parents=True, exist_ok=True)
        line = b"%s %s %s %d +0000\t%s\n" % (
            old or ZERO,
            new,
            who,
            int(time.time()),
            msg.splitlines()[0].encode("utf-8"),
        )
        with open(log, "ab") as f:
            f.write(line)

    def ref_value(self, ref: bytes) -> bytes | None:
        try:
            return self.repo.refs[ref]
        except KeyError:
            return None


def _plain_config(git_dir: Path) -> ConfigFile | None:
    """`.git/config` of a plain repository (see `Git`), else None."""
    if not (git_dir / "objects").is_dir():
        return None  # `.git` is a file (a linked worktree, a submodule) or no repository
    from dulwich.config import ConfigFile  # lazy: start-up

    try:
        config = ConfigFile.from_path(str(git_dir / "config"))
    except FileNotFoundError:
        config = ConfigFile()
    core = {key.lower(): value for key, value in config.items((b"core",))}
    if core.get(b"repositoryformatversion", b"0").strip() not in (b"0", b""):
        return None
    if b"worktree" in core or b"sharedrepository" in core:
        return None
    if any(True for _ in config.items((b"extensions",))):
        return None
    return config


class Batch:
    """The objects of one `Git.batch`, and the worker thread writing them when it writes in
    the background. `wait` is where the caller learns the outcome: it returns once every object
    is in the object store and raises the worker's error (each time it is called) otherwise."""

    def __init__(self, git: Git) -> None:
        self.git = git
        self.pending: dict[bytes, ShaFile] = {}
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self, write: Callable[[list[ShaFile]], None], objects: list[ShaFile]) -> None:
        import threading  # lazy: start-up (only a large import writes in the background)

        def run() -> None:
            try:
                write(objects)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
                self._error = exc

        self._thread = threading.Thread(target=run, name="gc-polecat pack writer")
        self._thread.start()

    def wait(self) -> None:
        """Block until the objects are written; the writer's error if they were not."""
        self.join()
        if self._error is not None:
            raise self._error

    def join(self) -> None:
        """Block until the writer has ended, whatever its outcome (no thread outlives a write);
        from then on the objects are read from the object store, or nowhere."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            if self.git._unwritten is self.pending:
                self.git._unwritten = {}


REF_LOCK_WAIT = 2.0
TMP_DIR = "gc-polecat/tmp"  # under .git: where our lock and ref temporary files are made


class RefLock:
    """`<ref>.lock` held by us, and the ref's value read under it. `move` is the commit point
    of a write: the new value goes into a temporary file renamed over the ref while the lock
    still holds our record (so a lock left by a killed writer is provably ours)."""

    def __init__(self, git: Git, ref: bytes) -> None:
        from gc_polecat.beads.locks import OwnLock  # lazy: start-up

        self.git, self.ref, self.name = git, ref, ref.decode()
        self.path = git.git_dir / self.name
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp_dir = git.git_dir / TMP_DIR
        lock = self.path.with_name(self.path.name + ".lock")
        self.lock = OwnLock(lock, REF_LOCK_WAIT, f"moving {self.name}", self.tmp_dir)
        value = read_ref(git.git_dir, self.name)
        self.value = value.encode() if value else None

    def move(self, new: bytes, who: bytes, message: str) -> None:
        from gc_polecat.beads.locks import LockBusy  # lazy: start-up

        if not self.lock.ours():
            raise LockBusy(f"{self.lock.path} was removed or taken over while we held it")
        atomic_write(self.path, new + b"\n", self.tmp_dir)
        try:
            self.git._append_reflog(self.name, self.value, new, who, message)
        except OSError as exc:  # the ref moved: the write is done, only its log line is missing
            import sys

            print(f"gc-polecat: warning: no reflog line for {self.name}: {exc}", file=sys.stderr)
        self.value = new

    def release(self) -> None:
        self.lock.release()


def _pack_header(type_num: int, size: int) -> bytes:
    """A pack entry's header: type and size, the size in little-endian groups of 7 bits."""
    out = bytearray()
    byte = (type_num << 4) | (size & 0x0F)
    size >>= 4
    while size:
        out.append(byte | 0x80)
        byte = size & 0x7F
        size >>= 7
    out.append(byte)
    return bytes(out)


def write_all(fd: int, data: bytes) -> None:
    """Write all of data: os.write may write less than asked (a full disk, a file size limit)
    and says so only in its return value; the next write then raises."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def atomic_write(
    path: Path | str,
    data: bytes,
    tmp_dir: Path | str,
    mode: int = 0o644,
    made: set[str] | None = None,
) -> None:
    """Write a file so a reader or a crash sees the old content or the new, never a mix.
    `made` remembers directories known to exist, for callers writing many files (who may pass
    plain strings: pathlib's overhead shows at thousands of files)."""
    path, tmp_dir = os.fspath(path), os.fspath(tmp_dir)
    parent, name = os.path.split(path)
    if made is None or tmp_dir not in made:
        os.makedirs(tmp_dir, exist_ok=True)
    tmp = f"{tmp_dir}/{name}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        write_all(fd, data)
        os.fchmod(fd, mode)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)  # a short file must never be renamed into place, nor left behind
        raise
    os.close(fd)
    if made is None or parent not in made:
        os.makedirs(parent, exist_ok=True)
    if made is not None:
        made.update((tmp_dir, parent))
    os.replace(tmp, path)
