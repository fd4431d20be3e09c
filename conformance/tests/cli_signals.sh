#!/bin/sh
# xarm conformance and signals, with a case hung in the switch's xa_forget:
#  - two signals at once (timeout(1) sends one to its command and one to its process
#    group) are one request: the report is still written, exit status 128 + the first;
#  - a second signal a second or more after the first ends the program at once, even
#    when the run itself is stuck (--in-process: the hung call is the suite's own).
# Usage: cli_signals.sh <xarm> <faulty switch library> <database path>
set -u
xarm=$1 lib=$2 db=$3
out=$(mktemp)
trap 'rm -f "$out"' EXIT
fail() { echo "FAIL: $*"; echo "--- output:"; cat "$out"; exit 1; }

# Starts the run in the background ($pid) and waits until the switch hangs.
start() {
    # The previous run's output goes first: it says "hanging" too.
    rm -f "$db" "$out"
    FAULTY_SWITCH_HANG=xa_forget "$xarm" conformance --switch "$lib" --open "path=$db" \
        --case 'state.*' "$@" >"$out" 2>&1 &
    pid=$!
    i=0
    until grep -qs 'faulty switch: hanging' "$out"; do
        i=$((i + 1))
        [ $i -le 600 ] || fail "the switch never hung"
        kill -0 $pid 2>/dev/null || fail "the run ended before the switch hung"
        sleep 0.1
    done
}

# Both signals arrive while the process is stopped, so they are handled back to back.
start
kill -STOP $pid; kill -INT $pid; kill -TERM $pid; kill -CONT $pid
wait $pid; rc=$?
[ $rc -eq 130 ] || fail "two signals at once: exit status $rc, not 130"
grep -q 'interrupted by SIGINT after 1 of' "$out" || fail "two signals at once: no report"
grep -q 'state.calls_before_open' "$out" || fail "two signals at once: the case is not named"

# In process, the hung call blocks the run: the first signal cannot end it, a prompt
# second one is the same request, one a second later ends the program.
start --in-process
kill -STOP $pid; kill -INT $pid; kill -TERM $pid; kill -CONT $pid
sleep 0.5
kill -0 $pid 2>/dev/null || fail "in process: a prompt second signal ended the program"
sleep 0.7
kill -INT $pid
i=0
while kill -0 $pid 2>/dev/null; do
    i=$((i + 1))
    [ $i -le 100 ] || { kill -9 $pid; fail "in process: a later second signal did not end it"; }
    sleep 0.1
done
wait $pid; rc=$?
[ $rc -eq 130 ] || fail "in process: exit status $rc after the second SIGINT, not 130"
echo "OK"
