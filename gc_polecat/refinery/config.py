"""The refinery's section of the settings file, parsed here and registered with the base
settings parser through the `gc_polecat_settings_sections` hook (builtin/settings_sections.py).

```yaml
refinery:
  repo: ../refinery        # the refinery's own clone of the shared origin
  build: [make]            # argv of the build gate (optional; never run through a shell)
  test: [make, test]       # argv of the test gate (optional)
  build_timeout: 10m
  test_timeout: 20m
  claim_ttl: 15m           # a claim older than this is stale and may be taken over
  push_retries: 3          # times to rebase and retry when the target moved under the push
```
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gc_polecat.beads.config import parse_duration, settings_path
from gc_polecat.errors import BadInput

KEYS = ("repo", "build", "test", "build_timeout", "test_timeout", "claim_ttl", "push_retries")


@dataclass(frozen=True)
class RefineryConfig:
    repo: str | None = None
    build: tuple[str, ...] = ()
    test: tuple[str, ...] = ()
    build_timeout: float = 600.0
    test_timeout: float = 1200.0
    claim_ttl: float = 900.0
    push_retries: int = 3

    def clone(self, root: Path) -> Path:
        if not self.repo:
            where = settings_path(root).relative_to(root).as_posix()
            raise BadInput(f"refinery.repo is not set in {where} (the refinery's clone)")
        path = (root / self.repo).resolve()
        if not (path / ".git").exists():
            raise BadInput(f"refinery.repo: {path} is not a git clone")
        return path


def parse_refinery(raw: Any, where: str) -> RefineryConfig:
    if raw is None:
        return RefineryConfig()
    if not isinstance(raw, dict):
        raise BadInput(f"{where}refinery must be a mapping of settings")
    unknown = sorted(set(raw) - set(KEYS), key=str)  # keys may be numbers, lists, ...
    if unknown:
        raise BadInput(f"{where}refinery.{unknown[0]}: unknown setting (known: {', '.join(KEYS)})")
    for gate in ("build", "test"):
        argv = raw.get(gate, [])
        if not isinstance(argv, list) or not all(isinstance(a, str) and a for a in argv):
            raise BadInput(f"{where}refinery.{gate} must be a list of strings (argv; no shell)")
    repo = raw.get("repo")
    if repo is not None and (not isinstance(repo, str) or not repo.strip()):
        raise BadInput(f"{where}refinery.repo must be a path")
    retries = raw.get("push_retries", 3)
    if isinstance(retries, bool) or not isinstance(retries, int) or not 1 <= retries <= 20:
        raise BadInput(f"{where}refinery.push_retries must be an integer 1..20")
    times = {
        k: parse_duration(raw[k], f"{where}refinery.{k}")
        for k in ("build_timeout", "test_timeout", "claim_ttl")
        if k in raw
    }
    return RefineryConfig(repo, tuple(raw.get("build", [])), tuple(raw.get("test", [])),
                          push_retries=retries, **times)  # fmt: skip
