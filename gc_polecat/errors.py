"""Errors with the exit status the command line reports for them.

Bad input (a usage error, an invalid ID, an unknown bead, a malformed bead file) exits 2 and
changes nothing; anything else that goes wrong inside gc-polecat exits 1.
"""

from __future__ import annotations


class GcPolecatError(Exception):
    """Base class; `exit_code` is what the CLI exits with."""

    exit_code = 1


class BadInput(GcPolecatError):
    """The caller asked for something invalid; nothing was written."""

    exit_code = 2


class NotFound(BadInput):
    """An ID or path that names nothing."""


class InvalidBead(BadInput):
    """A bead record (from a file, a flag or an import) that breaks the format rules."""


class NotARepository(BadInput):
    """No beads repository where one was expected."""


class ReadOnlyRepository(BadInput):
    """A write to a repository this process cannot write (read-only mount, another user's):
    refused before anything is written; readers still work (docs/security.md)."""


class Conflict(GcPolecatError):
    """The repository moved under a writer in a way that cannot be rebased automatically."""
