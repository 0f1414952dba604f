"""bd's event hooks (`.beads/hooks/on_create|on_update|on_close`): our chained section, and the
ingestion of verdicts that a bd-only refinery writes with `bd update`.

**Install.** Each hook file keeps whatever is in it (Gas City rewrites these files on every
lifecycle pass with its own `gc event emit` lines). Our code is one marked section placed right
after the shebang:

    # --- BEGIN GC-POLECAT v1 ---
    ...
    # --- END GC-POLECAT ---

The files hold this machine's interpreter path, so install lists `/.beads/hooks/` in
`.git/info/exclude`. Installing again replaces the section in place (idempotent); after
another tool rewrote the file without it, installing adds it back once. Uninstall removes only
the section. The section reads bd's JSON payload from stdin, hands it on to the rest of the
file unchanged (a here-doc on fd 0), and starts Python only when the payload mentions a
verdict key, so a hook run for an ordinary write costs a few milliseconds (~13 ms measured).
It never fails the bd write: `|| true`, output to /dev/null. Writes made by gc-polecat itself
(its own hook runner sets `GC_POLECAT_WRITER=1`) are never ingested back: they already went
through `verdict`.

**Ingest** (`hooks run <hook> <id> <event>`). A bd work bead (or merge-request bead) whose
metadata carries a verdict becomes our verdict bead for that work's open submission, with the
routing and the wake that `gc-polecat verdict` does, so a refinery that only runs `bd update`
still wakes the same polecat. The keys read (Gas City's and Gas Town's vocabulary):

- `gc.verdict` = `merged` / `fix_needed` (any case, `-` or `_`): the outcome (a bead ID in
  that key is ours, written by `verdict`: ignored);
- `merge_result` = `merged`, with `merged_sha`: merged, and the merge commit;
- `rejection_reason`: fix needed, with this reason;
- `gc.failure_type`: `conflict`, `tests`, `build` or `review` (default: `conflict` when the
  reason starts with "Conflicts", else `review`).

The work's submission is its `gc.submission` (ours); an MR bead may name the work in `work`
or `source_issue`. Nothing to judge (no open submission, already judged the same way) is a no-op.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gc_polecat.errors import BadInput
from gc_polecat.lifecycle import keys

if TYPE_CHECKING:
    from collections.abc import Mapping

    from gc_polecat.beads.store import Store
    from gc_polecat.lifecycle.providers import SessionProvider

HOOKS = ("on_create", "on_update", "on_close")
BEGIN, END = "# --- BEGIN GC-POLECAT v1 ---", "# --- END GC-POLECAT ---"
_SECTION_RE = re.compile(r"# --- BEGIN GC-POLECAT v\d+ ---\n.*?# --- END GC-POLECAT ---\n?", re.S)
VERDICT_KEYS = (keys.VERDICT, "merge_result", "rejection_reason")
FAILURE_TYPES = ("conflict", "tests", "build", "review")


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def section(repo_root: Path) -> str:
    """The shell lines we own in each hook file."""
    keys = "|".join(f"*'\"{k}\"'*" for k in VERDICT_KEYS)
    return (
        f"{BEGIN}\n"
        "# gc-polecat: turn verdicts written with bd into gc-polecat verdicts (docs/interop.md)\n"
        "__gc_polecat_in=$(cat)\n"
        'if [ -z "${GC_POLECAT_WRITER:-}" ]; then\n'
        '  case "$__gc_polecat_in" in\n'
        f"    {keys})\n"
        f"      printf '%s\\n' \"$__gc_polecat_in\" | {_quote(sys.executable)} -P -m gc_polecat"
        f' --repo {_quote(str(repo_root))} hooks run "$(basename "$0")" "$@"'
        " >/dev/null 2>&1 || true ;;\n"
        "  esac\n"
        "fi\n"
        "exec 0<<__GC_POLECAT_EOF\n"
        "$__gc_polecat_in\n"
        "__GC_POLECAT_EOF\n"
        f"{END}\n"
    )


def _with_section(text: str, ours: str) -> str:
    if _SECTION_RE.search(text):
        return _SECTION_RE.sub(lambda _m: ours, text, count=1)
    if text.startswith("#!"):
        first, _, rest = text.partition("\n")
        return f"{first}\n{ours}{rest}"
    return f"#!/bin/sh\n{ours}{text}"


def install(repo_root: Path) -> list[dict[str, str]]:
    """Add (or refresh) our section in the three hook files; returns what changed."""
    hooks = repo_root / ".beads" / "hooks"
    hooks.mkdir(parents=True, exist_ok=True)
    _exclude(repo_root)
    ours, changes = section(repo_root), []
    for name in HOOKS:
        path = hooks / name
        if path.is_symlink() or (path.exists() and not path.is_file()):
            raise BadInput(f"{path} is not a regular file; refusing to edit it")
        old = path.read_text() if path.exists() else ""
        new = _with_section(old, ours)
        mode = path.stat().st_mode if path.exists() else 0o755
        executable = mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH
        if new != old:
            _write(path, new, executable)
            changes.append({"action": "updated" if old else "created", "path": str(path)})
        elif mode != executable:
            path.chmod(executable & 0o7777)
            changes.append({"action": "made executable", "path": str(path)})
    return changes


def _exclude(repo_root: Path) -> None:
    """Our section names this machine's interpreter and path: keep the hook files out of git
    (`.git/info/exclude`), unless someone already tracks them."""
    exclude = repo_root / ".git" / "info" / "exclude"
    line = "/.beads/hooks/"
    current = exclude.read_text() if exclude.exists() else ""
    if line not in current.splitlines():
        exclude.parent.mkdir(parents=True, exist_ok=True)
        exclude.write_text(current + ("" if current.endswith("\n") or not current else "\n")
                           + line + "\n")  # fmt: skip


def uninstall(repo_root: Path) -> list[dict[str, str]]:
    changes = []
    for name in HOOKS:
        path = repo_root / ".beads" / "hooks" / name
        if not path.is_file() or path.is_symlink():
            continue
        old = path.read_text()
        new = _SECTION_RE.sub("", old, count=1)
        if new != old:
            _write(path, new, path.stat().st_mode)
            changes.append({"action": "section removed", "path": str(path)})
    return changes


def _write(path: Path, text: str, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.gc-polecat.tmp")
    tmp.write_text(text)
    tmp.chmod(mode & 0o7777 & ~0o022)  # never group- or world-writable
    os.replace(tmp, path)


# --- ingest --------------------------------------------------------------------------------


def verdict_of(meta: Mapping[str, str]) -> tuple[str, str | None, str, str | None] | None:
    """(outcome, failure type, reason, merge commit) read from bd metadata, or None."""
    said = str(meta.get(keys.VERDICT, "")).strip().lower().replace("-", "_")
    reason = str(meta.get("rejection_reason", "")).strip()
    if said == "merged" or str(meta.get("merge_result", "")).lower() == "merged":
        return "merged", None, "", str(meta.get("merged_sha", "")) or None
    if said == "fix_needed" or (reason and not said):
        failure = str(meta.get(keys.FAILURE_TYPE, "")).strip().lower()
        if failure not in FAILURE_TYPES:
            failure = "conflict" if reason.lower().startswith("conflict") else "review"
        return "fix_needed", failure, reason or f"{failure} failed (recorded with bd)", None
    return None


def ingest(
    store: Store, providers: Mapping[str, SessionProvider], payload: dict[str, Any]
) -> str | None:
    """Record our verdict for what a bd write says; returns the verdict ID, or None."""
    from gc_polecat.beads.ids import validate_id  # lazy: start-up
    from gc_polecat.lifecycle.submit import SUBMISSION_LABEL  # lazy: start-up
    from gc_polecat.lifecycle.verdict import record_verdict  # lazy: start-up

    if not isinstance(payload, dict) or not isinstance(payload.get("metadata", {}), dict):
        raise BadInput("the hook payload is not a bd issue object")
    meta = payload.get("metadata") or {}
    found = verdict_of(meta)
    if found is None:
        return None
    outcome, failure, reason, merged_sha = found
    bead_id = validate_id(str(payload.get("id", "")))
    labels = payload.get("labels") or []
    if not isinstance(labels, list):
        raise BadInput("the hook payload's labels are not a list")
    store.catalog.refresh()
    if SUBMISSION_LABEL in labels:
        sub_id = bead_id
    else:
        work_id = meta.get("work") or meta.get("source_issue") or bead_id
        work = store.catalog.get(validate_id(str(work_id))) if store.exists(str(work_id)) else None
        sub_id = (work or {}).get("metadata", {}).get(keys.SUBMISSION, "")
    sub = store.catalog.get(sub_id) if sub_id else None
    if sub is None or sub["status"] == "closed":
        return None
    if merged_sha is not None and not re.fullmatch(r"[0-9a-f]{4,64}", merged_sha):
        merged_sha = None
    with store.transaction() as tx:
        judged = record_verdict(
            tx, sub_id, outcome, providers=providers, failure_type=failure, reason=reason,
            merge_commit=merged_sha, refinery="bd-hook", via=f"a bd write on {bead_id}",
        )  # fmt: skip
    return judged.verdict["id"]
