#!/bin/sh
# A scripted pool polecat for the pool tests (a stand-in for the LLM agent, which cannot run
# here). It runs in a real session (process or tmux pane) started by the pool, in its sandbox:
# it waits for work (`gc-polecat next`), commits and pushes on the branch sling checked out,
# submits, blocks in `await`, fixes and resubmits on "fix needed", and runs its own cleanup
# after a merge. Then it waits for the next assignment in the same process. One evidence
# line per verdict:  <work> <await exit> <pid> <GC_SESSION_ID> <GC_POLECAT_NAME> <pwd>
# Environment: GC_TEST_PYTHON (the interpreter), EVIDENCE (the file to append to).
set -u
py=$GC_TEST_PYTHON
while :; do
  work=$("$py" -m gc_polecat next --timeout 300) || exit 0   # 20: session ended; 30: idle too long
  branch=$(git rev-parse --abbrev-ref HEAD)
  while :; do
    echo "$work $$" >> "work-$work.txt"
    git add -A && git commit -qm "polecat: $work" && git push -q origin "$branch" 2>/dev/null
    commit=$(git rev-parse HEAD)
    out=$("$py" -m gc_polecat submit "$work" --branch "$branch" --commit "$commit") || break
    "$py" -m gc_polecat await --work "$work" --timeout 300 > /dev/null
    code=$?
    echo "$work $code $$ $GC_SESSION_ID $GC_POLECAT_NAME $(pwd)" >> "$EVIDENCE"
    case $code in
      10) continue ;;                                         # fix in place, resubmit
      0) "$py" -m gc_polecat cleanup > /dev/null 2>&1; break ;; # merged: clean up, go idle
      *) break ;;                                             # released or ended: next work
    esac
  done
done
