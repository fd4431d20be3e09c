#!/bin/sh
# run_conformance.sh XARM DRIVER VAR: runs `xarm conformance` for DRIVER with the info
# string in $VAR and prints the text report (kept in the CTest log). Unset VAR: skipped
# (exit 77), or a failure under CI=true.
xarm=$1 driver=$2 var=$3
eval "info=\${$var-}"
if [ -z "$info" ]; then
    if [ "${CI-}" = true ]; then echo "$var is not set but CI=true: server missing" >&2; exit 1; fi
    echo "$var is not set (start servers with tools/devservers): skipped"; exit 77
fi
exec "$xarm" conformance --driver "$driver" --open "$info"
