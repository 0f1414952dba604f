"""The `gc.*` metadata keys gc-polecat writes on a work item (the bead a polecat works on),
named once here; docs/formats.md ("Work item metadata") says what each holds.

bd's own keys on the same bead (`merge_result`, `merged_sha`, `rejection_reason`, ...) keep the
names bd gives them, and a wait's, a submission's and a verdict's keys are read through their
typed views (`wait.Wait`, `verdict.Submission`, `verdict.Verdict`). The demo's scripted
polecat (demo/agent.py) spells the keys out on purpose: it stands in for an agent outside this
code, which reads them from `bead show --json` as documented.
"""

SUBMISSION = "gc.submission"  # the current attempt's submission
WAIT = "gc.wait"  # the wait of the current attempt
ATTEMPT = "gc.attempt"  # attempts so far (1, 2, ...)
SESSION = "gc.session"  # the session that holds (or last held) the work
POLECAT = "gc.polecat"  # the polecat whose sandbox holds the work
ROUTED_TO = "gc.routed_to"  # the pool the work belongs to
PREVIOUS_SESSION = "gc.previous_session"  # the assignee before a fallback
FALLBACK_REASON = "gc.fallback_reason"  # why the work last fell back to its pool
FAILURE_TYPE = "gc.failure_type"  # the last fix-needed verdict's type (build, tests, ...)
FAILED_COMMIT = "gc.failed_commit"  # the commit that verdict judged
VERDICT = "gc.verdict"  # the last verdict's ID
ESCALATED = "gc.escalated"  # why the work was escalated (attempt cap)
RESTARTS = "gc.restarts"  # session restarts by the pool for this work
