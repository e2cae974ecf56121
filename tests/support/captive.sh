#!/usr/bin/env bash
# Runs a test's server: `captive.sh PARENT LIMIT COMMAND...` starts COMMAND in the background and waits
# while the test process PARENT lives, COMMAND runs and fewer than LIMIT seconds have passed; then it
# kills its whole process group. Tests start it as the leader of a new process group and kill that
# group themselves when they are done; this is the backstop for a test that panics or is killed, so no
# key server or TPM simulator outlives its test.
parent=${1:?usage: captive.sh PARENT LIMIT COMMAND...}
limit=${2:?usage: captive.sh PARENT LIMIT COMMAND...}
shift 2
"$@" &
child=$!
end=$((SECONDS + limit))
while kill -0 "$parent" 2>/dev/null && kill -0 "$child" 2>/dev/null && ((SECONDS < end)); do
  sleep 0.5
done
kill -KILL 0
