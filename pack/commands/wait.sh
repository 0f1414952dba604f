#!/bin/sh
# gc polecat wait ... -> gc-polecat wait ...: the arguments pass through untouched ("$@"),
# never re-parsed by a shell, never eval'd.
command -v gc-polecat >/dev/null 2>&1 || {
    echo "gc polecat wait: gc-polecat is not on PATH (pip install gc-polecat)" >&2
    exit 127
}
exec gc-polecat wait "$@"
