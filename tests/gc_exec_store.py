"""Gas City's exec bead store client, for tests: the Go side of the protocol, which cannot run
here, rewritten in Python from its source so the real provider script is driven exactly as gc
drives it.

Modelled on gascity (mirror HEAD a46ccb1):
- `internal/beads/exec/exec.go`: `Store.run` (argv, stdin only for create/update/set-metadata,
  exit 2 read as success with no output, stdout right-trimmed of newlines, "not found" /
  "no issue found" in the message meaning ErrNotFound), each operation's argv, `List`'s
  dispatch (children / list-by-label with limit "0" / list with --status= --assignee= --type=
  --limit=) followed by `ApplyListQuery`, `Ready`'s client-side type filter, `Ping` (`list`);
- `internal/beads/exec/json.go`: the create and update request shapes (`omitempty`);
- `internal/beads/query.go`: `ListQuery.Matches`, `ApplyListQuery`, the sort orders;
- `cmd/gc/store_target_exec.go` `gcExecStoreEnv` and exec.go `execProcessEnv`: the environment
  of each call (ambient GC_* store keys and BEADS_* removed, then the scope's set);
- `cmd/gc/beads_provider_lifecycle.go` `initBeadsForDir` / `runProviderOp`: lifecycle calls
  with the city runtime environment (`internal/citylayout/runtime.go` `CityRuntimeEnvMap`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .conftest import ROOT, git

SCRIPT = ROOT / "pack" / "scripts" / "gc-beads-polecat"
# gascity internal/beads/beads.go readyExcludeTypes
READY_EXCLUDED = {
    "merge-request", "gate", "molecule", "message", "session", "agent", "role", "rig",
}  # fmt: skip
# exec.go stripExecEnvKey
_STRIPPED = {
    "GC_BEADS_PREFIX", "GC_CITY", "GC_CITY_PATH", "GC_CITY_ROOT", "GC_CITY_RUNTIME_DIR",
    "GC_PROVIDER", "GC_RIG", "GC_RIG_ROOT", "GC_STORE_ROOT", "GC_STORE_SCOPE",
}  # fmt: skip


class NotFoundError(Exception):
    """beads.ErrNotFound."""


class ExecFailed(Exception):
    """Any other failure of the script (exit status not 0 or 2)."""


class ScanRequired(Exception):
    """beads.ErrQueryRequiresScan."""


@dataclass
class ListQuery:
    """gascity `internal/beads/query.go` ListQuery."""

    status: str = ""
    type: str = ""
    label: str = ""
    assignee: str = ""
    parent_id: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    limit: int = 0
    include_closed: bool = False
    allow_scan: bool = False
    sort: str = ""  # "", "created_asc", "created_desc"

    def has_filter(self) -> bool:
        return any((self.status, self.type, self.label, self.assignee, self.parent_id)) or bool(
            self.metadata
        )

    def matches(self, b: dict[str, Any]) -> bool:
        if self.status:
            if b["status"] != self.status:
                return False
        elif not self.include_closed and b["status"] == "closed":
            return False
        meta = b.get("metadata") or {}
        return (
            (not self.type or b["type"] == self.type)
            and (not self.label or self.label in (b.get("labels") or []))
            and (not self.assignee or b.get("assignee", "") == self.assignee)
            and (not self.parent_id or b.get("parent_id", "") == self.parent_id)
            and all(meta.get(k) == v for k, v in self.metadata.items())
        )


def apply_list_query(items: list[dict[str, Any]], q: ListQuery) -> list[dict[str, Any]]:
    """query.go ApplyListQuery: filter, sort (stable, as sort.Slice is not but ties differ only
    by ID there), limit."""
    out = [b for b in items if q.matches(b)]
    if q.sort == "created_asc":
        out.sort(key=lambda b: (b["created_at"], b["id"]))
    elif q.sort == "created_desc":
        out.sort(key=lambda b: (b["created_at"], b["id"]), reverse=True)
    return out[: q.limit] if q.limit > 0 else out


def scope_env(
    city: Path, scope_root: Path, prefix: str, rig: str = "", provider: str = ""
) -> dict[str, str]:
    """gcExecStoreEnv for one scope of a city: a rig when `rig` names it."""
    env = {
        "GC_CITY": str(city),
        "GC_CITY_PATH": str(city),
        "GC_CITY_RUNTIME_DIR": str(city / ".gc" / "runtime"),
        "GC_PROVIDER": provider or f"exec:{SCRIPT}",
        "GC_STORE_ROOT": str(scope_root),
        "GC_STORE_SCOPE": "rig" if rig else "city",
        "GC_BEADS_PREFIX": prefix,
        "GC_RIG": rig,
        "GC_RIG_ROOT": str(scope_root) if rig else "",
        "BEADS_DIR": "",
        "GC_BIN": "",
    }
    return env


def process_env(overrides: dict[str, str], path: str) -> dict[str, str]:
    """exec.go execProcessEnv: the ambient environment without gc's store keys, then ours."""
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in _STRIPPED and not k.startswith(("BEADS_", "GC_DOLT_", "GC_POLECAT_REPO"))
    }
    return {**base, "PATH": path, **overrides}


def city_runtime_env(city: Path) -> dict[str, str]:
    """runProviderOp's environment for lifecycle calls (start, init, health, stop)."""
    return {
        "GC_CITY": str(city),
        "GC_CITY_PATH": str(city),
        "GC_CITY_RUNTIME_DIR": str(city / ".gc" / "runtime"),
    }


def run_script(
    env: dict[str, str], path: str, args: list[str], stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(SCRIPT), *args],
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        env=process_env(env, path),
        timeout=30,
    )


class ExecStore:
    """exec.Store: one script process per call."""

    def __init__(self, env: dict[str, str], path: str) -> None:
        self.env = env
        self.path = path
        self.calls: list[list[str]] = []

    def run(self, args: list[str], stdin: bytes | None = None) -> str:
        self.calls.append(args)
        proc = run_script(self.env, self.path, args, stdin)
        if proc.returncode == 2:
            return ""
        if proc.returncode != 0:
            message = proc.stderr.decode().strip() or f"exit status {proc.returncode}"
            text = f"exec beads {SCRIPT} {' '.join(args)}: {message}"
            if "not found" in text.lower() or "no issue found" in text.lower():
                raise NotFoundError(text)
            raise ExecFailed(text)
        return proc.stdout.decode().rstrip("\n")

    @staticmethod
    def _list(out: str) -> list[dict[str, Any]]:
        return [] if out == "" else json.loads(out)

    # operations, as exec.go makes them

    def create(self, **bead: Any) -> dict[str, Any]:
        bead.setdefault("type", "task")
        request = {k: v for k, v in bead.items() if v not in ("", None, [], {})}
        request.setdefault("title", bead.get("title", ""))
        return json.loads(self.run(["create"], json.dumps(request).encode()))

    def get(self, bead_id: str) -> dict[str, Any]:
        return json.loads(self.run(["get", bead_id]))

    def update(self, bead_id: str, **opts: Any) -> None:
        request = {k: v for k, v in opts.items() if v is not None and v != [] and v != {}}
        self.run(["update", bead_id], json.dumps(request).encode())

    def close(self, bead_id: str) -> None:
        self.run(["close", bead_id])

    def list(self, q: ListQuery) -> list[dict[str, Any]]:
        if not q.has_filter() and not q.allow_scan:
            raise ScanRequired("bead query requires scan")
        if q.parent_id:
            out = self.run(["children", q.parent_id])
        elif q.label:
            out = self.run(["list-by-label", q.label, "0"])
        else:
            args = ["list"]
            for flag, value in (("status", q.status), ("assignee", q.assignee), ("type", q.type)):
                if value:
                    args.append(f"--{flag}={value}")
            if q.limit > 0:
                args.append(f"--limit={q.limit}")
            out = self.run(args)
        return apply_list_query(self._list(out), q)

    def list_open(self, status: str = "") -> list[dict[str, Any]]:
        return self.list(ListQuery(allow_scan=True, status=status))

    def ready(self) -> list[dict[str, Any]]:
        return [b for b in self._list(self.run(["ready"])) if b["type"] not in READY_EXCLUDED]

    def children(self, parent_id: str, include_closed: bool = False) -> list[dict[str, Any]]:
        q = ListQuery(parent_id=parent_id, include_closed=include_closed, sort="created_asc")
        return self.list(q)

    def list_by_label(self, label: str, limit: int) -> list[dict[str, Any]]:
        return self.list(ListQuery(label=label, limit=limit, sort="created_desc"))

    def list_by_assignee(self, assignee: str, status: str, limit: int) -> list[dict[str, Any]]:
        q = ListQuery(assignee=assignee, status=status, limit=limit, sort="created_desc")
        return self.list(q)

    def set_metadata(self, bead_id: str, key: str, value: str) -> None:
        self.run(["set-metadata", bead_id, key], value.encode())

    def delete(self, bead_id: str) -> None:
        self.run(["delete", "--force", bead_id])

    def ping(self) -> None:
        self.run(["list"])

    def dep_add(self, issue_id: str, depends_on: str, dep_type: str) -> None:
        self.run(["dep-add", issue_id, depends_on, dep_type])

    def dep_remove(self, issue_id: str, depends_on: str) -> None:
        self.run(["dep-remove", issue_id, depends_on])

    def dep_list(self, bead_id: str, direction: str) -> list[dict[str, Any]]:
        out = self.run(["dep-list", bead_id, direction])
        return json.loads(out) if out.strip() else []


@pytest.fixture
def gc_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """PATH with `gc-polecat` as an install provides it (the console script next to this
    interpreter, else a shim for `python -m gc_polecat`)."""
    script = Path(sys.executable).with_name("gc-polecat")
    if script.is_file():
        bin_dir = script.parent
    else:
        bin_dir = tmp_path_factory.mktemp("bin")
        shim = bin_dir / "gc-polecat"
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m gc_polecat "$@"\n')
        shim.chmod(0o755)
    return f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"


def user_repo(path: Path) -> str:
    """A rig: the user's code, a git repository with one commit. Returns its HEAD."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    (path / "main.go").write_text("package main\n")
    git(path, "add", "main.go")
    git(path, "-c", "user.name=u", "-c", "user.email=u@x", "commit", "-qm", "code")
    return git(path, "rev-parse", "HEAD").strip()
