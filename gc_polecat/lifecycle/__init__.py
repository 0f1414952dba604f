"""The polecat lifecycle: sessions, polecats, waits, submissions and verdicts, routing of work,
waking the waiting session, cleanup, and the level-triggered controller that repairs them.

Kept import-free: the slim waiter (`waiter.py`, run with `python -S`) imports `doorbell` through
this package and must not pay for anything else."""
