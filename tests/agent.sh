#!/bin/sh
# A scripted polecat for the end-to-end tests (a stand-in for the LLM agent, which cannot run
# here). It runs inside a real session (tmux pane or process), submits its work, blocks in
# `gc-polecat await`, and on "fix needed" fixes and resubmits from the same process, same
# epoch, same worktree. Each cycle appends one evidence line:
#   <attempt> <exit of await> <pid> <GC_SESSION_ID> <GC_CONTINUATION_EPOCH> <pwd> <tty or ->
# Usage: agent.sh WORK EVIDENCE_FILE PYTHON
set -u
work=$1 evidence=$2 python=$3
until "$python" -m gc_polecat bead show "$work" --json | grep -q "\"assignee\": \"$GC_SESSION_ID\""; do
  sleep 0.1  # wait for the work to be slung to this session
done
attempt=0
while :; do
  attempt=$((attempt + 1))
  commit=$(printf '%040d' "$attempt")
  out=$("$python" -m gc_polecat submit "$work" --branch "polecat/test/$work" --commit "$commit") || {
    echo "submit-failed $attempt" >> "$evidence"; exit 3; }
  "$python" -m gc_polecat await --work "$work" --timeout 120 > /dev/null
  code=$?
  echo "$attempt $code $$ $GC_SESSION_ID $GC_CONTINUATION_EPOCH $(pwd) $(tty 2>/dev/null || echo -)" >> "$evidence"
  case $code in
    10) continue ;;            # fix needed: fix in place and resubmit
    *) break ;;                # merged, ended, or timed out: stop
  esac
done
sleep 300  # stay alive like an idle agent until the test stops the session
