"""Keep ``.git/index`` in step with our plumbing commits, at a cost that follows the change size.

We maintain git's *split index* (the ``link`` extension, see git's index-format.txt): a large,
immutable ``sharedindex.<sha1>`` holds most entries and the small ``.git/index`` holds only the
entries that replace, delete or add to it. An update reads and rewrites just the small file and
finds paths in the shared index by binary search over an mmapped sidecar of entry offsets.
When the small part outgrows ``MAX_SPLIT_ENTRIES`` (or the index is not split) everything is
folded into a fresh shared index. Pure Python: git itself must be able to read all of this.

A long-running writer calls update_index once per commit, so each process remembers, per git
dir, the split it last wrote (shared index still mapped) and the identity of that ``.git/index``.
While the file on disk is still exactly that one, the next update starts from memory instead of
re-reading and re-parsing it; anything else (git, another process, a fold) takes the full path.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import mmap
import os
import struct
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from gc_polecat.beads.git import write_all
from gc_polecat.beads.locks import LockBusy, OwnLock
from gc_polecat.errors import GcPolecatError

MAX_SPLIT_ENTRIES = 500  # fold into a new shared index once the split part holds more than this
LOCK_TIMEOUT = 2.0  # seconds to wait for an index.lock someone else holds
SHARED_EXPIRY = 86400.0  # unreferenced shared index files older than this are deleted
SIDECAR_DIR = "gc-polecat"
CACHE_ENABLED = True  # reuse this process's last update while .git/index is unchanged
CACHE_SIZE = 16  # git dirs remembered; each keeps its shared index and sidecar open

_HEADER = struct.Struct(">4sII")  # signature, version, entry count
_EXTENDED, _NAME_MASK, _KEPT_FLAGS = 0x4000, 0x0FFF, 0xB000  # assume-valid + stage are kept
_GITLINK, _MODES = 0o160000, frozenset({0o100644, 0o100755, 0o120000, 0o160000})
_NO_SHA = b"\0" * 20
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL


class IndexLockedError(LockBusy):
    """``index.lock`` is held by another process (or was taken from us); nothing was written."""


class IndexFormatError(GcPolecatError):
    """An index file we cannot parse; the message names the file and the problem (exit 1,
    and since the index is read before the commit point, nothing was written)."""


class _Entry(NamedTuple):
    path: bytes
    head: bytes  # 40 bytes of stat data + 20-byte sha, as on disk
    flags: int  # assume-valid and stage bits; name length and extended bit are derived
    xflags: int = 0  # v3 extended flags (skip-worktree, intent-to-add)
    raw: bytes = b""  # v2/v3 on-disk bytes as read, reused on write; clear it on any edit

    @property
    def stage(self) -> int:
        return (self.flags >> 12) & 3

    @property
    def mtime(self) -> bytes:
        return self.head[8:16]  # big-endian (sec, nsec): compares like the time it encodes


def _mtime_key(ns: int) -> bytes:
    return struct.pack(">II", (ns // 10**9) & 0xFFFFFFFF, ns % 10**9)


class _Index(NamedTuple):
    entries: list[_Entry]
    offsets: list[int]  # byte offset of each entry (meaningful for v2/v3)
    link: bytes | None  # body of the link extension, if any
    mtime_ns: int


# --- entries and whole index files ------------------------------------------------------------


def _pack_entry(e: _Entry) -> bytes:
    if e.raw:
        return e.raw
    flags = e.flags | min(len(e.path), _NAME_MASK) | (_EXTENDED if e.xflags else 0)
    fixed = e.head + (struct.pack(">HH", flags, e.xflags) if e.xflags else struct.pack(">H", flags))
    return fixed + e.path + b"\0" * (8 - (len(fixed) + len(e.path)) % 8)


def _encoded(e: _Entry) -> _Entry:
    """e with its on-disk bytes filled in: entries we keep across calls are encoded only once."""
    return e if e.raw else e._replace(raw=_pack_entry(e))


def _pack_index(entries: list[_Entry], extensions: bytes = b"") -> tuple[bytes, list[int]]:
    """Serialise as v2 (v3 only when extended flags must be kept), with trailing checksum."""
    version = 3 if any(e.xflags for e in entries) else 2
    parts, offsets, pos = [_HEADER.pack(b"DIRC", version, len(entries))], [], _HEADER.size
    for e in entries:
        offsets.append(pos)
        parts.append(_pack_entry(e))
        pos += len(parts[-1])
    body = b"".join(parts) + extensions
    return body + hashlib.sha1(body).digest(), offsets


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """git's offset varint (varint.c), used by v4 path compression."""
    c = data[pos]
    val, pos = c & 127, pos + 1
    while c & 128:
        c = data[pos]
        val, pos = ((val + 1) << 7) | (c & 127), pos + 1
    return val, pos


def _parse_entries(
    data: bytes, pos: int, count: int, version: int
) -> tuple[list[_Entry], list[int], int]:
    entries, offsets, prev = [], [], b""
    for _ in range(count):
        offsets.append(pos)
        flags = data[pos + 60] << 8 | data[pos + 61]
        xflags, name_at = 0, pos + 62
        if flags & _EXTENDED:
            xflags, name_at = data[name_at] << 8 | data[name_at + 1], name_at + 2
        if version == 4:
            strip, name_at = _varint(data, name_at)
            end = data.index(b"\0", name_at)
            if strip > len(prev):
                raise ValueError("bad v4 path compression")
            path = prev[: len(prev) - strip] + data[name_at:end]
            prev, next_pos, raw = path, end + 1, b""
        else:
            n = flags & _NAME_MASK
            end = name_at + n if n < _NAME_MASK else data.index(b"\0", name_at)
            path, next_pos = data[name_at:end], pos + ((end - pos + 8) & ~7)
            raw = data[pos:next_pos] if bool(xflags) == bool(flags & _EXTENDED) else b""
        entries.append(_Entry(path, data[pos : pos + 60], flags & _KEPT_FLAGS, xflags, raw))
        pos = next_pos
    return entries, offsets, pos


def _read_index(path: Path) -> _Index | None:
    """Parse a whole index file (v2-v4), verifying its checksum; None if it does not exist."""
    try:
        with open(path, "rb") as f:
            mtime_ns, data = os.fstat(f.fileno()).st_mtime_ns, f.read()
    except FileNotFoundError:
        return None
    try:
        sig, version, count = _HEADER.unpack_from(data)
        if sig != b"DIRC" or version not in (2, 3, 4):
            raise ValueError(f"not an index file (signature {sig!r}, version {version})")
        if data[-20:] != _NO_SHA and hashlib.sha1(data[:-20]).digest() != data[-20:]:
            raise ValueError("checksum mismatch")
        entries, offsets, pos = _parse_entries(data, _HEADER.size, count, version)
        link = None
        while pos < len(data) - 20:
            sig, size = struct.unpack_from(">4sI", data, pos)
            if sig == b"link":
                link = data[pos + 8 : pos + 8 + size]
            elif not b"A" <= sig[:1] <= b"Z":  # lowercase = required; we cannot drop it
                raise ValueError(f"unsupported required extension {sig!r}")
            pos += 8 + size
        if pos != len(data) - 20:
            raise ValueError("truncated or trailing garbage")
    except (ValueError, IndexError, struct.error) as exc:
        raise IndexFormatError(f"{path}: {exc}") from None
    return _Index(entries, offsets, link, mtime_ns)


# --- EWAH bitmaps (git's ewah/ewah_io.c serialisation) -----------------------------------------


def _ewah_decode(data: bytes, pos: int, limit: int) -> tuple[list[int], int]:
    """Set bit positions (all < limit) of the bitmap at pos, and the position after it."""
    _, nwords = struct.unpack_from(">II", data, pos)
    words = struct.unpack_from(f">{nwords}Q", data, pos + 8)
    end, bits, bit, i = pos + 12 + 8 * nwords, [], 0, 0
    while i < nwords:
        marker, i = words[i], i + 1
        run, literals = ((marker >> 1) & 0xFFFFFFFF) * 64, marker >> 33
        if marker & 1:
            bits.extend(range(bit, min(bit + run, limit + 1)))
        bit += run
        if i + literals > nwords:
            raise ValueError("corrupt ewah bitmap")
        for w in words[i : i + literals]:
            while w:
                low = w & -w
                bits.append(bit + low.bit_length() - 1)
                w ^= low
            bit += 64
        i += literals
    if end > len(data) or (bits and bits[-1] >= limit):
        raise ValueError("ewah bitmap out of range")
    return bits, end


def _ewah_encode(bits: Iterable[int]) -> bytes:
    words: dict[int, int] = {}
    for b in bits:
        words[b >> 6] = words.get(b >> 6, 0) | 1 << (b & 63)
    buf, marker, nxt = [0], 0, 0  # marker: index of the current run-length word
    for w in sorted(words):
        if w > nxt:  # a run of zero words, which must precede the marker's literals
            if buf[marker] >> 33:
                marker = len(buf)
                buf.append(0)
            buf[marker] += (w - nxt) << 1
        buf[marker] += 1 << 33
        buf.append(words[w])
        nxt = w + 1
    nbits = (max(words) * 64 + words[max(words)].bit_length()) if words else 0
    return struct.pack(f">II{len(buf)}QI", nbits, len(buf), *buf, marker)


# --- the shared index, searched through its offsets sidecar ------------------------------------


class _NeedsFold(Exception):
    """The shared index cannot be binary-searched (v4 path compression)."""


class _Shared:
    """A shared index opened for O(log n) lookups: acts as a sorted sequence of entry paths."""

    def __init__(self, git_dir: Path, sha: bytes) -> None:
        self.sha, self.path = sha, git_dir / f"sharedindex.{sha.hex()}"
        try:
            with open(self.path, "rb") as f:
                self.map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
                self.ids = [_file_id(os.fstat(f.fileno()))]  # of the files mapped, for unchanged()
        except (FileNotFoundError, ValueError) as exc:
            raise IndexFormatError(f"{self.path}: cannot open shared index ({exc})") from None
        self.files: list[Path] = [self.path]
        self.offsets: bytes | mmap.mmap = b""
        sig, self.version, self.count = _HEADER.unpack_from(self.map.read(12).ljust(12, b"\0"))
        try:
            if sig != b"DIRC" or self.version not in (2, 3, 4):
                raise IndexFormatError(f"{self.path}: not an index file")
            if self.version == 4:
                raise _NeedsFold
            if self.count:
                sidecar = git_dir / SIDECAR_DIR / f"{self.path.name}.offsets"
                self.offsets, sidecar_id = self._open_offsets(sidecar)
                self.files.append(sidecar)
                self.ids.append(sidecar_id)
        except BaseException:
            self.close()
            raise

    def _open_offsets(self, sidecar: Path) -> tuple[bytes | mmap.mmap, tuple[int, int, int]]:
        try:
            with open(sidecar, "rb") as f:
                st = os.fstat(f.fileno())
                if st.st_size == 4 * self.count:
                    return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ), _file_id(st)
        except FileNotFoundError:
            pass
        index = _read_index(self.path)  # rebuild once per shared index: O(n)
        assert index is not None
        data = struct.pack(f"<{self.count}I", *index.offsets)
        return data, _file_id(_atomic_write(sidecar, data))

    def unchanged(self) -> bool:
        """Whether opening it again would map the same files: someone may have deleted or
        replaced the shared index or its sidecar (which we would then rebuild) since we did."""
        try:
            return self.ids == [_file_id(os.stat(p)) for p in self.files]
        except OSError:
            return False

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> bytes:
        (pos,) = struct.unpack_from("<I", self.offsets, 4 * i)
        (flags,) = struct.unpack_from(">H", self.map, pos + 60)
        start = pos + (64 if flags & _EXTENDED else 62)
        n = flags & _NAME_MASK
        return self.map[start : start + n if n < _NAME_MASK else self.map.find(b"\0", start)]

    def entry(self, i: int) -> _Entry:
        """The i-th entry's stat data, sha and flags (its name is not needed by callers)."""
        (pos,) = struct.unpack_from("<I", self.offsets, 4 * i)
        (flags,) = struct.unpack_from(">H", self.map, pos + 60)
        return _Entry(b"", self.map[pos : pos + 60], flags & _KEPT_FLAGS)

    def find(self, path: bytes) -> range:
        """Positions of all stages of path."""
        lo = hi = bisect.bisect_left(self, path)
        while hi < self.count and self[hi] == path:
            hi += 1
        return range(lo, hi)

    def close(self) -> None:
        for m in (self.map, self.offsets):
            if isinstance(m, mmap.mmap):
                m.close()


def _file_id(st: os.stat_result) -> tuple[int, int, int]:
    """Which file this is, ignoring mtime: we freshen shared indexes with utime ourselves."""
    return st.st_dev, st.st_ino, st.st_size


@dataclass
class _Split:
    """The small ``.git/index``: edits against a shared index, by shared-index position."""

    shared: _Shared
    base: bytes
    replaced: dict[int, _Entry] = field(default_factory=dict)
    deleted: set[int] = field(default_factory=set)
    added: dict[tuple[bytes, int], _Entry] = field(default_factory=dict)

    def size(self) -> int:
        return len(self.replaced) + len(self.deleted) + len(self.added)

    def apply(self, path: bytes, entry: _Entry | None) -> None:
        span = self.shared.find(path)
        for stage in range(4):
            self.added.pop((path, stage), None)
        for pos in span:
            self.replaced.pop(pos, None)
            self.deleted.add(pos)
        if entry is not None and span:
            self.deleted.discard(span[0])
            self.replaced[span[0]] = _encoded(entry._replace(path=b""))  # git wants no names here
        elif entry is not None:
            self.added[(path, 0)] = _encoded(entry)

    def pack(self) -> bytes:
        entries = [self.replaced[p] for p in sorted(self.replaced)]
        entries += [self.added[k] for k in sorted(self.added)]
        link = self.base + _ewah_encode(self.deleted) + _ewah_encode(sorted(self.replaced))
        return _pack_index(entries, b"link" + struct.pack(">I", len(link)) + link)[0]

    def entries_for(self, path: bytes) -> list[_Entry]:
        """Every stage of `path` in the index this split stands for, in O(log n)."""
        found = [self.added[(path, st)] for st in range(4) if (path, st) in self.added]
        stages = {e.stage for e in found}
        for pos in self.shared.find(path):
            if pos not in self.deleted:
                e = self.replaced.get(pos) or self.shared.entry(pos)
                if e.stage not in stages:
                    found.append(e)
        return found

    def resolve(self) -> list[_Entry]:
        """The final, sorted entry list (shared index read in full). O(n): for a fold."""
        shared = _read_shared(self.shared.path)
        return _merge(shared, self.replaced, self.deleted, self.added.values())


def _base(index: _Index | None) -> bytes | None:
    """The shared index an index file depends on, if any."""
    return index.link[:20] if index and index.link and index.link[:20] != _NO_SHA else None


def _parse_link(index: _Index, count: int, where: Path) -> tuple[list[int], list[int]]:
    """Deleted and replaced shared-index positions, checked as strictly as git checks them."""
    assert index.link is not None
    try:
        deleted, replaced, pos = [], [], 20
        if len(index.link) > 20:
            deleted, pos = _ewah_decode(index.link, pos, count)
            replaced, pos = _ewah_decode(index.link, pos, count)
        if pos != len(index.link) or len(replaced) > len(index.entries):
            raise ValueError("corrupt link extension")
        if set(deleted) & set(replaced):
            raise ValueError("an entry is both replaced and deleted")
        if any((i < len(replaced)) != (e.path == b"") for i, e in enumerate(index.entries)):
            raise ValueError("replacements must have empty names, additions must not")
    except (ValueError, struct.error) as exc:
        raise IndexFormatError(f"{where}: {exc}") from None
    return deleted, replaced


def _open_split(git_dir: Path, index: _Index | None, spare: _Shared | None) -> _Split | None:
    """The index as a split over a searchable shared index, or None when it must be folded.
    `spare` is used instead of opening the shared index again when it is still that file."""
    if index is None or (base := _base(index)) is None:
        return None
    try:
        reuse = spare is not None and spare.sha == base and spare.unchanged()
        shared = spare if reuse else _Shared(git_dir, base)
    except _NeedsFold:
        return None
    try:
        deleted, replaced = _parse_link(index, shared.count, git_dir / "index")
    except IndexFormatError:
        shared.close()
        raise
    added = {(e.path, e.stage): e for e in index.entries[len(replaced) :]}
    return _Split(
        shared, base, dict(zip(replaced, index.entries, strict=False)), set(deleted), added
    )


def _read_shared(path: Path) -> list[_Entry]:
    shared = _read_index(path)
    if shared is None:
        raise IndexFormatError(f"{path}: shared index is missing")
    return shared.entries


def _merge(
    shared: list[_Entry],
    replaced: Mapping[int, _Entry],
    deleted: Iterable[int],
    added: Iterable[_Entry],
) -> list[_Entry]:
    """Apply a split part's edits to the shared entries: the sorted final entry list."""
    base = list(shared)
    for p, e in replaced.items():
        base[p] = e._replace(path=base[p].path, raw=b"")
    gone = set(deleted)
    merged = {(e.path, e.stage): e for p, e in enumerate(base) if p not in gone}
    merged.update(((e.path, e.stage), e) for e in added)
    return [e for k, e in sorted(merged.items()) if k[1] == 0 or (k[0], 0) not in merged]


def _resolve(git_dir: Path, index: _Index | None) -> list[_Entry]:
    """The final, sorted entry list of an index (shared + split applied). O(n): not hot path."""
    if index is None or (sha := _base(index)) is None:
        return index.entries if index else []
    shared = _read_shared(git_dir / f"sharedindex.{sha.hex()}")
    deleted, replaced = _parse_link(index, len(shared), git_dir / "index")
    edits = dict(zip(replaced, index.entries, strict=False))
    return _merge(shared, edits, deleted, index.entries[len(replaced) :])


# --- racy git ----------------------------------------------------------------------------------


def _smudge(worktree: Path, path: bytes, e: _Entry) -> _Entry:
    """git's racy-git rule, for an entry not older than the index we read: it may hide a
    same-timestamp edit that git would catch by re-hashing, but that would look clean once we
    write a newer index. So check the content now; if it differs, zero the size so git re-hashes."""
    mode, size = struct.unpack_from(">I", e.head, 24)[0], e.head[36:40]
    full = worktree / os.fsdecode(path)
    try:
        st = os.lstat(full)
        seen = (struct.pack(">I", st.st_size & 0xFFFFFFFF), _mtime_key(st.st_mtime_ns))
        if mode == _GITLINK or seen != (size, e.mtime):
            return e  # git checks gitlinks itself, and a visible stat change needs no help
        data = os.fsencode(os.readlink(full)) if mode == 0o120000 else full.read_bytes()
    except OSError:
        return e
    if hashlib.sha1(b"blob %d\0" % len(data) + data).digest() == e.head[40:]:
        return e
    return e._replace(head=e.head[:36] + b"\0\0\0\0" + e.head[40:], raw=b"")


# --- writing files -----------------------------------------------------------------------------


def _atomic_write(path: Path, data: bytes) -> os.stat_result:
    """Write via a temp file + rename so readers and crashes only ever see whole files.
    Returns the stat of the file written, to recognise it later."""
    tmp_dir = path.parent if path.parent.name == SIDECAR_DIR else path.parent / SIDECAR_DIR
    tmp_dir.mkdir(exist_ok=True)
    tmp = tmp_dir / f"tmp-{os.getpid()}-{os.urandom(4).hex()}"
    fd = os.open(tmp, _CREATE, 0o644)
    try:
        write_all(fd, data)  # no fsync: git's default core.fsync does not sync the index
        st = os.fstat(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink()  # a short index must never be renamed into place, nor left behind
        raise
    os.close(fd)
    os.replace(tmp, path)
    return st


def _write_shared(git_dir: Path, entries: list[_Entry]) -> bytes:
    """Write sharedindex.<sha> (no extensions, as git does) and its offsets sidecar."""
    data, offsets = _pack_index(entries)
    sha = data[-20:]
    path = git_dir / f"sharedindex.{sha.hex()}"
    if not path.exists():
        _atomic_write(path, data)
    sidecar = git_dir / SIDECAR_DIR / f"{path.name}.offsets"
    _atomic_write(sidecar, struct.pack(f"<{len(offsets)}I", *offsets))
    return sha


def _expire(git_dir: Path, keep: set[str]) -> None:
    """Drop shared index files nobody references and nobody has touched for SHARED_EXPIRY."""
    cutoff = time.time() - SHARED_EXPIRY
    side = git_dir / SIDECAR_DIR
    old = [p for p in git_dir.glob("sharedindex.*") if p.name not in keep]
    old += [p for p in side.glob("tmp-*")]
    old += [p for p in side.glob("tmp/*lock-*")]  # lock records of killed writers
    for p in old:
        with contextlib.suppress(FileNotFoundError):
            if p.lstat().st_mtime < cutoff:
                p.unlink()
    for p in side.glob("sharedindex.*.offsets"):
        if not (git_dir / p.name.removesuffix(".offsets")).exists():
            p.unlink(missing_ok=True)


def _fold(git_dir: Path, entries: list[_Entry], hot: bytes, old_base: bytes | None) -> _Split:
    """Put entries into a new shared index. Entries modified at or after `hot` (when our lock
    was taken) stay in the split part, so their racy status is checked again next time."""
    sha = _write_shared(git_dir, [e for e in entries if e.mtime < hot])
    keep = {f"sharedindex.{s.hex()}" for s in (old_base, sha) if s}
    _expire(git_dir, keep)
    added = {(e.path, e.stage): e for e in entries if e.mtime >= hot}
    return _Split(_Shared(git_dir, sha), sha, added=added)


# --- locking -----------------------------------------------------------------------------------


class _IndexLock:
    """git's index.lock, taken as `gc_polecat.beads.locks` describes: created already naming its
    writer, the new index written through a temporary file renamed over ``.git/index`` while
    the lock is still held. A lock this thread already holds (`hold_index_lock`, taken by the
    store before it moves the branch) is used as it is and left held; otherwise the lock is
    taken here and removed when the ``with`` block ends. A lock held by anyone else (git, an
    editor, a live writer) is waited for LOCK_TIMEOUT, never broken; one whose record proves
    its gc-polecat writer dead is removed."""

    def __init__(self, git_dir: Path) -> None:
        self.lock, self.index = git_dir / "index.lock", git_dir / "index"
        held = _held.get(_held_key(git_dir))
        self.own = held is None
        if held is None:
            try:
                held = OwnLock(self.lock, LOCK_TIMEOUT, "the index update", _lock_tmp(git_dir))
            except LockBusy as exc:
                raise IndexLockedError(str(exc)) from None
        self.held = held
        self.mtime = _mtime_key(held.mtime_ns)  # "now" by the file system's clock

    def commit(self, data: bytes) -> os.stat_result:
        """Install data as the index; returns the stat of the file written (our inode, not
        whatever is at the path by the time we could look)."""
        if not self.held.ours():  # someone removed our lock (by hand) and maybe took it
            raise IndexLockedError(f"{self.lock} was removed or taken over while we held it")
        return _atomic_write(self.index, data)

    def __enter__(self) -> _IndexLock:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.own:
            self.held.release()


_held: dict[tuple[str, int], OwnLock] = {}  # (git dir, thread) -> index.lock it holds


def _lock_tmp(git_dir: Path) -> Path:
    """Where lock records are prepared (the store's temporary directory, which its recovery
    empties, so a writer killed while preparing one leaves nothing behind for long)."""
    return git_dir / SIDECAR_DIR / "tmp"


def _held_key(git_dir: Path) -> tuple[str, int]:
    return os.path.abspath(git_dir), threading.get_ident()


@contextlib.contextmanager
def hold_index_lock(git_dir: Path, wait: float | None = None) -> Iterator[OwnLock]:
    """Hold ``.git/index.lock`` for a whole write: every update_index in this thread inside the
    block uses it. Re-entrant. Raises IndexLockedError when someone else holds it."""
    key = _held_key(Path(git_dir))
    if key in _held:
        yield _held[key]
        return
    lock_path = Path(git_dir) / "index.lock"
    try:
        timeout = LOCK_TIMEOUT if wait is None else wait
        lock = OwnLock(lock_path, timeout, "the write", _lock_tmp(Path(git_dir)))
    except LockBusy as exc:
        raise IndexLockedError(str(exc)) from None
    _held[key] = lock
    try:
        yield lock
    finally:
        del _held[key]
        lock.release()


# --- what this process wrote last --------------------------------------------------------------


class _Identity(NamedTuple):
    """Recognises one ``.git/index`` file. Size and checksum pin its content (so parsing it
    would give back the split we kept); mtime is also what racy-git checks compare against."""

    dev: int
    ino: int
    size: int
    mtime_ns: int
    checksum: bytes


class _Cached(NamedTuple):
    identity: _Identity  # the .git/index we wrote ...
    split: _Split  # ... and what parsing it would give, its shared index still open


_cache: dict[str, _Cached] = {}  # by absolute git dir; oldest first
_cache_lock = threading.Lock()  # guards _cache only; the index lock orders the updates


def _identity(path: Path) -> _Identity | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        st = os.fstat(fd)
        os.lseek(fd, max(st.st_size - 20, 0), os.SEEK_SET)
        checksum = os.read(fd, 20)
    finally:
        os.close(fd)
    return _Identity(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, checksum)


def _take_cached(git_dir: Path) -> _Cached | None:
    """Remove our state for git_dir from the cache: the caller owns it (and must close it or
    give it back), so a failed update can never leave half-edited state behind."""
    if not CACHE_ENABLED:
        return None
    with _cache_lock:
        return _cache.pop(os.path.abspath(git_dir), None)


def _remember(git_dir: Path, written: os.stat_result, data: bytes, split: _Split) -> None:
    """Keep split, which is what parsing the index file we just wrote would give."""
    if not CACHE_ENABLED:
        split.shared.close()
        return
    w, key = written, os.path.abspath(git_dir)
    entry = _Cached(_Identity(w.st_dev, w.st_ino, w.st_size, w.st_mtime_ns, data[-20:]), split)
    with _cache_lock:
        dropped = [_cache.pop(key, None)]  # another thread's: either may be stale, use tells
        _cache[key] = entry
        while len(_cache) > CACHE_SIZE:
            dropped.append(_cache.pop(next(iter(_cache))))
    for old in dropped:
        if old is not None:
            old.split.shared.close()


def clear_cache() -> None:
    """Forget every remembered index and close the shared indexes kept open for them."""
    with _cache_lock:
        dropped = list(_cache.values())
        _cache.clear()
    for old in dropped:
        old.split.shared.close()


# --- the update flow ---------------------------------------------------------------------------


def _current_split(
    git_dir: Path, cached: _Cached | None
) -> tuple[_Split | None, _Index | None, int]:
    """The index as a split (None when it must be folded), the parsed index (None when the
    cache stood in for it) and the index file's mtime (0 if there is none)."""
    if (
        cached
        and cached.identity == _identity(git_dir / "index")
        and cached.split.shared.unchanged()
    ):
        # .git/index is byte for byte the file we wrote (same size and checksum) and still has
        # the mtime it had then: parsing it would give exactly cached.split.
        return cached.split, None, cached.identity.mtime_ns
    index = _read_index(git_dir / "index")
    split = _open_split(git_dir, index, cached.split.shared if cached else None)
    return split, index, index.mtime_ns if index else 0


def _editable_split(worktree: Path, git_dir: Path, hot: bytes, cached: _Cached | None) -> _Split:
    """The index as a split we can edit in place (its racy entries checked) or, when the index
    is missing, not split, or its split part is full, everything folded into a new shared index.
    Takes over `cached`: what still matches the files on disk is reused, the rest is closed."""
    split, keep = None, None
    try:
        split, index, index_mtime = _current_split(git_dir, cached)
        # Racy git: an entry not older than the index file we replace may hide a same-size edit
        # made within its timestamp tick, which our newer index would make look clean for good.
        # `since` is that file's mtime whether we just read it or remember it: a cache hit needs
        # the same st_mtime_ns (a touched or rewritten index is a miss), so it is the value a
        # re-read would give, and the cached entries are the ones a re-read would give (earlier
        # smudges included). Only the parse is remembered, never a verdict: the work tree is
        # checked (_smudge) here on every call, as without a cache, since a racy edit can happen
        # between two of our calls.
        since = _mtime_key(index_mtime)
        if split is not None and split.size() <= MAX_SPLIT_ENTRIES:
            for p, e in split.replaced.items():
                if e.mtime >= since:
                    split.replaced[p] = _smudge(worktree, split.shared[p], e)
            for k, e in split.added.items():
                if e.mtime >= since:
                    split.added[k] = _smudge(worktree, e.path, e)
            keep = split.shared
            return split
        entries = split.resolve() if split is not None else _resolve(git_dir, index)
        entries = [_smudge(worktree, e.path, e) if e.mtime >= since else e for e in entries]
        folded = _fold(git_dir, entries, hot, split.base if split else _base(index))
        keep = folded.shared
        return folded
    finally:  # close what we do not hand on (closing twice is harmless)
        for shared in (cached.split.shared if cached else None, split.shared if split else None):
            if shared is not None and shared is not keep:
                shared.close()


# --- public API --------------------------------------------------------------------------------


def _git_path(path: str) -> bytes:
    parts = path.split("/")
    if "" in parts or "." in parts or ".." in parts or "\0" in path or _has_dot_git(path, parts):
        raise ValueError(f"not a work-tree relative POSIX path: {path!r}")
    return os.fsencode(path)


def _has_dot_git(path: str, parts: list[str]) -> bool:
    """Whether a part is `.git` in any case (the substring test spares most paths the loop)."""
    return ".git" in path.lower() and any(p.lower() == ".git" for p in parts)


def _stat_entry(worktree: Path, path: str, sha: bytes, mode: int) -> _Entry:
    """An index entry with stat data taken now (zeroed if the file does not exist)."""
    if len(sha) != 20 or mode not in _MODES:
        raise ValueError(f"bad sha or mode for {path!r}")
    try:
        st = os.lstat(f"{worktree}/{path}")  # a str: pathlib's joins show at thousands of files
        c, m = divmod(st.st_ctime_ns, 10**9), divmod(st.st_mtime_ns, 10**9)
        fields = (*c, *m, st.st_dev, st.st_ino, mode, st.st_uid, st.st_gid, st.st_size)
    except FileNotFoundError:
        fields = (0, 0, 0, 0, 0, 0, mode, 0, 0, 0)
    head = struct.pack(">10I", *(f & 0xFFFFFFFF for f in fields)) + sha
    return _Entry(_git_path(path), head, 0)


def update_index(
    worktree: Path, git_dir: Path, changes: Mapping[str, tuple[bytes, int] | None]
) -> None:
    """Make the index reflect `changes` (path -> (binary sha, git mode), or None if deleted),
    already written to the work tree. Rewrites only the small split part, except on a fold."""
    worktree, git_dir = Path(worktree), Path(git_dir)
    new = _new_entries(worktree, changes)
    with _IndexLock(git_dir) as lock:
        split = _editable_split(worktree, git_dir, lock.mtime, _take_cached(git_dir))
        try:
            for path in sorted(new):
                split.apply(path, new[path])
            data = split.pack()
            written = lock.commit(data)
        except BaseException:
            split.shared.close()
            raise
    with contextlib.suppress(OSError):  # like git: a referenced shared index stays fresh
        os.utime(split.shared.path)
    _remember(git_dir, written, data, split)


def _new_entries(
    worktree: Path, changes: Mapping[str, tuple[bytes, int] | None]
) -> dict[bytes, _Entry | None]:
    """The index entries for `changes` by git path, each path checked and encoded once."""
    new: dict[bytes, _Entry | None] = {}
    for p, v in changes.items():
        if v is None:
            new[_git_path(p)] = None
        else:
            e = _stat_entry(worktree, p, *v)
            new[e.path] = e
    return new


def write_full_index(
    worktree: Path, git_dir: Path, entries: Iterable[tuple[str, bytes, int]]
) -> None:
    """Replace the index with exactly these (path, binary sha, mode) entries: a fresh shared
    index plus a split index (empty, bar entries too recent to trust without a check)."""
    worktree, git_dir = Path(worktree), Path(git_dir)
    by_path: dict[bytes, _Entry] = {}
    for path, sha, mode in entries:
        e = _stat_entry(worktree, path, sha, mode)
        if e.path in by_path:
            raise ValueError(f"duplicate path {path!r}")
        by_path[e.path] = e
    with _IndexLock(git_dir) as lock:
        if cached := _take_cached(git_dir):
            cached.split.shared.close()
        try:  # only to spare the shared index it references from expiry
            old_base = _base(_read_index(lock.index))
        except IndexFormatError:
            old_base = None
        split = _fold(git_dir, [by_path[p] for p in sorted(by_path)], lock.mtime, old_base)
        try:
            data = split.pack()
            written = lock.commit(data)
        except BaseException:
            split.shared.close()
            raise
    _remember(git_dir, written, data, split)


UNMERGED = (b"", 0)  # what `staged` says for a path with conflict stages


def staged(git_dir: Path, paths: Iterable[str]) -> dict[str, tuple[bytes, int] | None]:
    """(binary sha, mode) of each path's entry in the index as it is now, None when the path is
    not in it, UNMERGED when it has conflict stages. Paths are looked up in the split index (a
    binary search in the shared part, and no parse at all while .git/index is still the file
    this process last wrote), so the cost follows len(paths). Call it under index.lock for an
    answer that stays true."""
    git_dir = Path(git_dir)
    with _cache_lock:
        cached = _cache.get(os.path.abspath(git_dir))
    own = None
    if (
        cached
        and cached.identity == _identity(git_dir / "index")
        and cached.split.shared.unchanged()
    ):
        split = cached.split
    else:
        index = _read_index(git_dir / "index")
        split = own = _open_split(git_dir, index, None)
        if split is None:  # not a split index: O(n), as git would read it
            table: dict[bytes, list[_Entry]] = {}
            for e in _resolve(git_dir, index):
                table.setdefault(e.path, []).append(e)
            return {p: _summary(table.get(_git_path(p), [])) for p in paths}
    try:
        return {p: _summary(split.entries_for(_git_path(p))) for p in paths}
    finally:
        if own is not None:
            own.shared.close()


def _summary(entries: list[_Entry]) -> tuple[bytes, int] | None:
    """As `_merge` resolves them: a stage-0 entry wins; conflict stages alone are UNMERGED."""
    for e in entries:
        if e.stage == 0:
            return e.head[40:60], struct.unpack_from(">I", e.head, 24)[0]
    return UNMERGED if entries else None


def read_entries(git_dir: Path) -> dict[str, tuple[bytes, int]]:
    """Resolve the final index to path -> (binary sha, mode); unmerged (stage > 0) entries are
    left out. O(n): for tests and recovery."""
    git_dir = Path(git_dir)
    return {
        os.fsdecode(e.path): (e.head[40:], struct.unpack_from(">I", e.head, 24)[0])
        for e in _resolve(git_dir, _read_index(git_dir / "index"))
        if e.stage == 0
    }
