"""What `sync` accepts from a remote: the beads repository's layout, checked before anything
is written (docs/formats.md, "What sync accepts"; docs/security.md, point 7).

Every tree a remote sends is untrusted. `git fetch` does not check objects by default, so a
crafted tree can hold `.git/hooks/post-commit`, `..`, names with `/` inside, duplicate names,
symlinks where bead files belong or submodules. `check_tree` reads each tree the remote changed
as raw bytes (dulwich's parsed view silently merges duplicates) and refuses:

- names: empty, `.`, `..`, holding `/`, a backslash, NUL or a control character, not UTF-8,
  longer than 255 bytes, or `.git` in any spelling a file system may fold to it; two names
  of one tree that a case-insensitive file system takes for one, or for a layout name;
- modes: submodules, unknown modes, and symlinks, except a hook in `.beads/hooks/` linked to a
  sibling hook; `beads`, `.beads` and `.beads/hooks` must be directories;
- under `beads/`: anything but `README.md`, `memories.jsonl` (bd's memories), the two
  one-character shard levels and, in them, a
  bead file (mode 100644) whose name is a valid ID living at exactly that path;
- paths deeper than 32 directories or longer than 1,024 bytes.

Elsewhere (`.beads/config.yaml`, other files at the root) plain and executable files are
accepted. `check_worktree` refuses a sync that would overwrite or remove what the local work tree
holds beyond the last commit (an untracked file, an uncommitted edit), as git does.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from gc_polecat.beads import ids
from gc_polecat.beads.config import CONFIG_PATH, OWN_CONFIG_PATH
from gc_polecat.beads.git import EXEC_MODE, FILE_MODE, GITLINK_MODE, LINK_MODE, TREE_MODE
from gc_polecat.errors import BadInput

if TYPE_CHECKING:
    from gc_polecat.beads.git import Git


MAX_DEPTH = 32  # path components; a bead is 4 deep
MAX_NAME = 255  # bytes in one component (NAME_MAX on Linux and macOS)
MAX_PATH = 1024  # bytes in a whole path: well under PATH_MAX once the repository root is added
DIRECTORIES = {("beads",), (".beads",), (".beads", "hooks")}  # must stay directories
# The first characters of a bead's hash, lower-cased (ids.id_path); `_` also for a one-character
# hash's second level.
_SHARDS = "0123456789abcdefghijklmnopqrstuvwxyz_"
HOOKS_DIR = (".beads", "hooks")  # the only place a symlink is accepted (to a sibling hook)
# Names of the layout, per directory, that a case-insensitive file system must not see twice.
_LAYOUT_NAMES = {(): ("beads", ".beads"), (".beads",): ("hooks", "config.yaml", "gc-polecat.yaml")}
_MODE_RE = re.compile(rb"[0-7]{5,7}")  # as git writes them, zero-padded or not
# Code points HFS+ ignores in names, so `.g\u200cit` is `.git` there (git: utf8.c, is_hfs_dotgit).
_HFS_IGNORED = dict.fromkeys(
    [0x200C, 0x200D, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x206A, 0x2070), 0xFEFF]
)


def _show(parts: tuple[str, ...] | list[str]) -> str:
    """A path for a one-line message: quoted, every control character escaped."""
    return ascii("/".join(parts))


def name_problem(raw: bytes) -> str | None:
    """Why one tree entry name is refused, or None. `.git` in any case, with trailing dots or
    spaces, an NTFS stream suffix or short name, or HFS-ignored code points inside, is refused
    everywhere (git's `verify_path` refuses the same names when core.protectNTFS/HFS are on)."""
    if raw in (b"", b".", b".."):
        return "an empty, '.' or '..' name"
    if b"/" in raw or b"\0" in raw or b"\\" in raw:
        return "a name holding '/', a backslash or NUL"
    if len(raw) > MAX_NAME:
        return f"a name longer than {MAX_NAME} bytes"
    try:
        name = raw.decode()
    except UnicodeDecodeError:
        return "a name that is not UTF-8"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        return "a name holding a control character"
    if _fold(name) in (".git", "git~1"):
        return "a '.git' component"
    return None


def _fold(name: str) -> str:
    """What a case-insensitive (Windows, macOS) file system may take `name` to be."""
    return name.translate(_HFS_IGNORED).casefold().split(":", 1)[0].rstrip(". ")


def _raw_entries(git: Git, sha: bytes) -> list[tuple[bytes, int, bytes]]:
    """(name, mode, hex sha) of every entry of a tree exactly as stored, duplicates included."""
    from dulwich.objects import sha_to_hex

    kind, text = git.store.get_raw(sha)
    if kind != 2:
        raise BadInput(f"object {sha.decode()} is not a tree")
    out, pos = [], 0
    try:
        while pos < len(text):
            space = text.index(b" ", pos)
            nul = text.index(b"\0", space)
            if nul + 21 > len(text):
                raise ValueError
            if not _MODE_RE.fullmatch(text[pos:space]):
                raise ValueError
            mode = int(text[pos:space], 8)
            out.append((text[space + 1 : nul], mode, sha_to_hex(text[nul + 1 : nul + 21])))
            pos = nul + 21
    except ValueError:
        raise BadInput(f"tree {sha.decode()} is malformed") from None
    return out


def _mode_problem(git: Git, parts: tuple[str, ...], mode: int, sha: bytes) -> str | None:
    """Why an entry of this mode cannot stand at `parts`, or None (see the module docstring
    and docs/formats.md, "What sync accepts")."""
    if parts in DIRECTORIES:
        return None if mode == TREE_MODE else "must be a directory"
    if mode == LINK_MODE and parts[:-1] == HOOKS_DIR:
        target = git.blob(sha)
        if b"/" not in target and name_problem(target) is None:
            return None
        return f"a symlink to {ascii(os.fsdecode(target))}, not to a sibling hook"
    if mode == LINK_MODE:
        return "a symlink (the layout has none outside .beads/hooks)"
    if mode == GITLINK_MODE:
        return "a submodule (gitlink)"
    if mode not in (TREE_MODE, FILE_MODE, EXEC_MODE):
        return f"an entry of unknown mode {mode:o}"
    if parts[0] == ids.BEADS_DIR:
        return _bead_entry_problem(parts, mode)
    return None


def _bead_entry_problem(parts: tuple[str, ...], mode: int) -> str | None:
    """Under `beads/`: README.md, the two one-character shard levels and, in them, only the
    file of a valid ID at its own path (ids.id_path). Anything else would be an unreadable
    file (`bead list` exits 2 on every clone) or a directory where bead files go."""
    depth, name = len(parts), parts[-1]
    if depth == 2 and "/".join(parts) in ids.SIDE_FILES:  # README.md, bd's memories.jsonl
        return None if mode == FILE_MODE else "must be a plain file"
    if depth in (2, 3):
        if mode == TREE_MODE and len(name) == 1 and name in _SHARDS:
            return None
        return "not a bead shard directory (beads/<c1>/<c2>/<id>.yaml)"
    if depth == 4 and mode == FILE_MODE and ids.path_id("/".join(parts)) is not None:
        return None
    return "not a bead file at its own path (beads/<c1>/<c2>/<id>.yaml, mode 100644)"


def check_tree(git: Git, tree: bytes | None, trusted: bytes | None) -> None:
    """Refuse (BadInput, naming the path) any entry of `tree` outside the beads layout. Subtrees
    and entries identical to those at the same place in `trusted` (the local commit, already
    checked out here) are skipped, so the cost follows the size of the remote's change."""
    if tree is None:
        return
    _check_subtree(git, tree, trusted, ())
    for settings in (OWN_CONFIG_PATH, CONFIG_PATH):  # either makes a beads repository
        found = git.lookup(tree, settings)
        if found is not None and found[0] in (FILE_MODE, EXEC_MODE):
            return
    raise BadInput(f"{CONFIG_PATH!r}: missing (every clone would stop being a beads repository)")


def _check_subtree(git: Git, sha: bytes, trusted: bytes | None, parts: tuple[str, ...]) -> None:
    if sha == trusted:
        return
    if len(parts) >= MAX_DEPTH:
        raise BadInput(f"{_show(parts)}: deeper than {MAX_DEPTH} directories")
    known = {}
    if trusted is not None:
        known = {e.path: (e.mode, e.sha) for e in git.tree(trusted).iteritems()}
    seen: dict[str, str] = {}  # folded name -> name
    layout_names = {_fold(n): n for n in _LAYOUT_NAMES.get(parts, ())}
    for raw, mode, child in _raw_entries(git, sha):
        problem = name_problem(raw)
        if problem is not None:
            raise BadInput(f"{_show([*parts, os.fsdecode(raw)])}: {problem}")
        name = raw.decode()
        path = (*parts, name)
        folded = _fold(name)
        if folded in seen:
            other = "listed twice" if seen[folded] == name else f"the same as {seen[folded]!r}"
            raise BadInput(f"{_show(path)}: a name {other} in one tree (to some file systems)")
        seen[folded] = name
        if layout_names.get(folded, name) != name:
            raise BadInput(
                f"{_show(path)}: a case-insensitive file system takes it for "
                f"{layout_names[folded]!r}"
            )
        if known.get(raw) == (mode, child):
            continue
        if len("/".join(path).encode()) > MAX_PATH:
            raise BadInput(f"{_show(path)[:80]}...: a path longer than {MAX_PATH} bytes")
        problem = _mode_problem(git, path, mode, child)
        if problem is not None:
            raise BadInput(f"{_show(path)}: {problem}")
        if mode == TREE_MODE:
            old = known.get(raw)
            _check_subtree(git, child, old[1] if old and old[0] == TREE_MODE else None, path)


# --- the work tree ------------------------------------------------------------------------------


def check_worktree(
    root: Path, git: Git, old_tree: bytes | None, new_tree: bytes | None, paths: list[str]
) -> None:
    """Refuse (BadInput, naming the path) to move the work tree from `old_tree` to `new_tree` at
    `paths` when that would overwrite or remove anything the work tree holds beyond `old_tree`:
    an untracked file where a file arrives, an uncommitted edit or deletion of a file that
    changes, untracked files inside a directory that becomes a file, or a symlink or file where
    a directory is needed. Like git's checkout, nothing local is ever silently lost."""
    changing = set(paths)
    real_dirs: set[str] = set()  # parents already seen to be real directories
    for path in paths:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if parent in real_dirs:
                continue
            st = _lstat(root / parent)
            if st is None:
                break
            if stat.S_ISDIR(st.st_mode):
                real_dirs.add(parent)
                continue
            if parent not in changing:
                raise BadInput(
                    f"{_show(parts[:depth])} is in the way of {_show(parts)}: not a directory; "
                    "move it away, then sync"
                )
            break  # a tracked file or link that changes: checked as its own path
        else:
            _check_one(root, git, path, old_tree, new_tree)


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _content(path: Path, st: os.stat_result) -> bytes | None:
    """What git would record for the file or link at `path` (None for anything else)."""
    if stat.S_ISLNK(st.st_mode):
        return os.fsencode(os.readlink(path))
    if stat.S_ISREG(st.st_mode):
        return path.read_bytes()
    return None


def _check_one(
    root: Path, git: Git, path: str, old_tree: bytes | None, new_tree: bytes | None
) -> None:
    target = root / path
    st = _lstat(target)
    old = git.lookup(old_tree, path)
    if old is not None and old[0] == TREE_MODE:
        old = None
    if st is None and old is None:
        return  # the common case: a file that arrives where nothing is
    new = git.lookup(new_tree, path)
    if st is None:
        if new is not None and new[0] != TREE_MODE:
            raise BadInput(
                f"{_show([path])}: deleted in the work tree but not committed, and "
                "the sync changes it; commit or restore it, then sync"
            )
        return
    if stat.S_ISDIR(st.st_mode):
        if new is not None and new[0] != GITLINK_MODE:
            _check_dir_in_the_way(root, git, target, old_tree)
        return
    here = _content(target, st)
    if old is not None and here == git.blob(old[1]):
        return
    if new is not None and new[0] != TREE_MODE and here == git.blob(new[1]):
        return  # already what the sync brings: nothing is lost
    if old is None:
        raise BadInput(
            f"untracked file {_show([path])} would be overwritten by sync; "
            "move it away or commit it, then sync"
        )
    raise BadInput(
        f"uncommitted changes to {_show([path])} would be overwritten by sync; "
        "commit or restore them, then sync"
    )


def _check_dir_in_the_way(root: Path, git: Git, directory: Path, old_tree: bytes | None) -> None:
    """A directory where a file arrives: everything under it must be tracked (and is then
    removed by the sync, checked as its own path); an untracked file there would be lost."""
    for dirpath, dirnames, filenames in os.walk(directory):
        names = filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        for name in names:
            rel = Path(dirpath, name).relative_to(root).as_posix()
            found = git.lookup(old_tree, rel)
            if found is None or found[0] == TREE_MODE:
                raise BadInput(
                    f"untracked file {_show([rel])} would be removed by sync; "
                    "move it away or commit it, then sync"
                )
