"""`python -m gc_polecat` and the `gc-polecat` console script."""

from __future__ import annotations

import os
import sys

_FAST_WORDS = frozenset(("show", "list", "await"))
_SERVED_WORDS = frozenset(("verdict", "submit", "import", "create", "update", "close"))


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "exec-beads":  # gc's store calls: no click
        if sys.argv[2] != "start" and not sys.argv[2].startswith("-"):  # start may replace it
            from gc_polecat.interop.gc_exec_client import call_server  # lazy: start-up

            served = call_server(sys.argv[2:])  # the city's warm server, if `start` ran
            if served is not None:
                sys.exit(served)
        from gc_polecat.interop.gc_exec import is_fast_call  # lazy: start-up
        from gc_polecat.interop.gc_exec import main as exec_main  # lazy: start-up

        if is_fast_call(sys.argv[1:]):
            sys.exit(exec_main(sys.argv[1:]))

    if _FAST_WORDS.intersection(sys.argv[1:]) and os.environ.get("GC_POLECAT_FAST") != "0":
        # the hottest commands, answered without click if nothing overrides them (fast.py)
        from gc_polecat.fast import run as run_fast  # lazy: start-up

        answered = run_fast(sys.argv[1:])
        if answered is not None:
            sys.exit(answered)

    if _SERVED_WORDS.intersection(sys.argv[1:]):
        from gc_polecat.cmdserver import call, served  # lazy: start-up

        if served(sys.argv[1:]):  # a write command: forked from a warm server, if one runs
            code = call(sys.argv[1:])
            if code is not None:
                sys.exit(code)

    from gc_polecat import cli as cli_module  # lazy: start-up
    from gc_polecat.cli import make_cli  # lazy: start-up

    cli_module.OWN_PROCESS = True  # commands may exec (the slim waiter): we are the process

    try:
        cli = make_cli()
    except Exception as exc:  # a plugin that fails to load or register
        if os.environ.get("GC_POLECAT_DEBUG"):
            raise
        print(
            f"gc-polecat: error: loading plugins failed: {type(exc).__name__}: {exc} "
            "(set GC_POLECAT_LOAD_PLUGINS to the plugins to load, '' for none)",
            file=sys.stderr,
        )
        sys.exit(1)
    cli.main(prog_name="gc-polecat")


if __name__ == "__main__":
    main()
