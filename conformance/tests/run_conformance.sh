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
# The development servers may be restarted (the durability.restart case); the test is
# a SERVER test, so no other server test runs meanwhile.
if [ -n "${XARM_DEVSERVERS-}" ]; then
    # The variable names the development server (XARM_TEST_PQ, XARM_TEST_ODBC_MYSQL,
    # XARM_TEST_ODBC_VIRTUOSO).
    case "$var" in
        *_PQ) server=pq ;;
        *_MYSQL) server=mysql ;;
        *_VIRTUOSO) server=virtuoso ;;
        *) server= ;;
    esac
    if [ -n "$server" ]; then
        exec "$xarm" conformance --driver "$driver" --open "$info" \
            --allow-restart "\"$XARM_DEVSERVERS\" restart $server >/dev/null 2>&1"
    fi
fi
exec "$xarm" conformance --driver "$driver" --open "$info"
