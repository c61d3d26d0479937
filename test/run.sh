#!/usr/bin/env bash
# test/run.sh: plantsync's whole test suite (the README's `bash test/run.sh`,
# and what CI runs through .ci/run).
#
# Installs missing packages, builds and installs the extension, starts a
# throwaway cluster (fsync off), then runs, in order:
#   1. pg_regress   `make installcheck` (REGRESS in the Makefile)
#   2. pgTAP        test/pgtap/*.sql through pg_prove, in database
#                   plantsync_tap (each file wraps itself in BEGIN..ROLLBACK)
#   3. e2e          test/e2e/*.sh, each with bash; exit 0 means pass
#   4. shared data  reports whether ../shared/data is there
# A failing stage does not stop the later ones. Ends with a summary whose
# last line is `N passed, N failed`; exits non-zero if anything failed.
#
# Environment knobs:
#   PLANTSYNC_KEEP_CLUSTER=1      leave the cluster running, print how to connect
#   PLANTSYNC_STAGE_TIMEOUT=secs  limit for pg_regress and for pg_prove (1800)
#   PLANTSYNC_E2E_TIMEOUT=secs    limit per e2e script (900)
#
# e2e scripts get the cluster in PGHOST/PGPORT/PGUSER/PGDATABASE, the repo in
# PLANTSYNC_TOP, the helpers via `source "$PLANTSYNC_COMMON"`, the server log
# in PLANTSYNC_SERVER_LOG and the data in PLANTSYNC_SHARED_DATA. They share
# one cluster, so each one should create (and drop) its own databases.

set -euo pipefail

# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
TOP=$PLANTSYNC_TOP
STAGE_TIMEOUT=${PLANTSYNC_STAGE_TIMEOUT:-1800}
E2E_TIMEOUT=${PLANTSYNC_E2E_TIMEOUT:-900}

# Captured tool output, parsed for the counts.
WORK=$(mktemp -d)
# shellcheck disable=SC2317  # called by the exit hook
cleanup_work() { rm -rf "$WORK"; }
on_exit cleanup_work

# Quiet: the NOTICEs of DROP ... IF EXISTS are not worth anyone's attention.
psql_admin() { PGOPTIONS='-c client_min_messages=warning' psql -X -q -v ON_ERROR_STOP=1 "$@"; }

# A stage that failed without any individual failure we could parse (a
# crash, a connection error) still has to show in the totals.
record() {
    local name=$1 status=$2 passed=$3 failed=$4 detail=$5
    if [[ $status == FAIL && $failed -eq 0 ]]; then
        failed=1
    fi
    count_pass "$passed"
    count_fail "$failed"
    stage_result "$name" "$status" "$detail"
}

finish() {
    # Stop the cluster before the summary so that the totals line stays the
    # very last line of output.
    if stages_failed; then
        stop_cluster --show-log
    else
        stop_cluster
    fi
    print_summary
    if counts_ok && ! stages_failed; then
        exit 0
    fi
    exit 1
}

stage_regress() {
    log_section "1. pg_regress (make installcheck)"
    local out=$WORK/installcheck.out rc=0 passed failed
    run_limited "$STAGE_TIMEOUT" make --no-print-directory -C "$TOP" \
        PG_CONFIG="$PLANTSYNC_PG_CONFIG" installcheck 2>&1 | tee "$out" || rc=$?
    # pg_regress 15 prints one "test NAME ... ok|FAILED" line per test.
    passed=$(grep -cE '\.\.\. +ok( |$)' "$out" || true)
    failed=$(grep -cE '\.\.\. +FAILED( |$)' "$out" || true)
    if ((rc == 0)); then
        record pg_regress PASS "$passed" "$failed" "$passed passed, $failed failed"
        return
    fi
    if [[ -s $TOP/regression.diffs ]]; then
        log_error "pg_regress failed; first 300 lines of $TOP/regression.diffs ($(wc -l <"$TOP/regression.diffs") lines):"
        head -n 300 "$TOP/regression.diffs"
    fi
    record pg_regress FAIL "$passed" "$failed" "$passed passed, $failed failed (exit $rc)"
}

stage_pgtap() {
    log_section "2. pgTAP (pg_prove)"
    local files=() out=$WORK/pg_prove.out rc=0 total failed failed_ran
    mapfile -t files < <(cd "$TOP" && compgen -G 'test/pgtap/*.sql' | sort)
    if ((${#files[@]} == 0)); then
        log_info "no test/pgtap/*.sql files yet: pgTAP stage SKIPPED"
        stage_result pgtap SKIP "no test/pgtap/*.sql files"
        return
    fi
    if ! psql_admin -d postgres -c 'DROP DATABASE IF EXISTS plantsync_tap' \
            -c 'CREATE DATABASE plantsync_tap' ||
        ! psql_admin -d plantsync_tap -c 'CREATE EXTENSION pgtap' \
            -c "CREATE EXTENSION $PLANTSYNC_EXTENSION"; then
        record pgtap FAIL 0 1 "could not set up database plantsync_tap"
        return
    fi
    (cd "$TOP" && run_limited "$STAGE_TIMEOUT" pg_prove -d plantsync_tap "${files[@]}") \
        2>&1 | tee "$out" || rc=$?
    # prove closes with "Files=N, Tests=M, ..." where M counts the tests
    # that ran; each failing file gets "Failed X/Y subtests" (X includes
    # planned tests that never ran) and a "Tests: R Failed: F" report line
    # (F only among those that ran).
    total=$(sed -nE 's/^Files=[0-9]+, Tests=([0-9]+),.*/\1/p' "$out" | tail -n 1)
    total=${total:-0}
    failed=$(sed -nE 's/.*Failed ([0-9]+)\/[0-9]+ subtests.*/\1/p' "$out" |
        awk '{ s += $1 } END { print s + 0 }')
    failed_ran=$(sed -nE 's/.*Tests: [0-9]+ Failed: ([0-9]+)\)$/\1/p' "$out" |
        awk '{ s += $1 } END { print s + 0 }')
    if ((failed_ran > total)); then
        failed_ran=$total
    fi
    if ((rc == 0)); then
        record pgtap PASS "$total" 0 "${#files[@]} files, $total tests"
    else
        record pgtap FAIL "$((total - failed_ran))" "$failed" \
            "${#files[@]} files, $((total - failed_ran)) passed, $failed failed or not run (exit $rc)"
    fi
}

stage_e2e() {
    log_section "3. end-to-end scripts"
    local files=() f rc passed=0 failed=0 failed_names=()
    mapfile -t files < <(cd "$TOP" && compgen -G 'test/e2e/*.sh' | sort)
    if ((${#files[@]} == 0)); then
        log_info "no test/e2e/*.sh scripts yet: e2e stage SKIPPED"
        stage_result e2e SKIP "no test/e2e/*.sh scripts"
        return
    fi
    for f in "${files[@]}"; do
        log_info "e2e: $f"
        rc=0
        # A fresh PGDATABASE each time: a script cannot leak its choice to the
        # next one anyway, but it should not depend on what ran before.
        (cd "$TOP" && PGDATABASE=postgres run_limited "$E2E_TIMEOUT" bash "$f" </dev/null) || rc=$?
        if ((rc == 0)); then
            passed=$((passed + 1))
            log_info "e2e: $f passed"
        else
            failed=$((failed + 1))
            failed_names+=("$(basename "$f")")
            if ((rc == 124)); then
                log_error "e2e: $f FAILED (timed out after ${E2E_TIMEOUT}s)"
            else
                log_error "e2e: $f FAILED (exit $rc)"
            fi
        fi
    done
    if ((failed == 0)); then
        record e2e PASS "$passed" 0 "$passed scripts passed"
    else
        record e2e FAIL "$passed" "$failed" "$passed passed, $failed failed: ${failed_names[*]}"
    fi
}

stage_shared_data() {
    log_section "4. shared data"
    if [[ -d $PLANTSYNC_SHARED_DATA ]]; then
        log_info "shared data found at $PLANTSYNC_SHARED_DATA"
        stage_result shared-data PASS "found at $PLANTSYNC_SHARED_DATA"
    else
        echo "shared data not found at $PLANTSYNC_SHARED_DATA: suites that need it were SKIPPED"
        stage_result shared-data SKIP "not found at $PLANTSYNC_SHARED_DATA: suites that need it were SKIPPED"
    fi
}

log_section "setup"
if ! ensure_packages; then
    record setup FAIL 0 1 "could not install the required packages"
    finish
fi
if ! build_and_install; then
    record build FAIL 0 1 "make or make install failed"
    finish
fi
stage_result build PASS "built and installed"
if ! start_cluster --fsync-off; then
    record cluster FAIL 0 1 "the throwaway cluster did not start"
    finish
fi
stage_result cluster PASS "PostgreSQL $PLANTSYNC_PG_MAJOR on $PGHOST port $PGPORT"
# Delivery workers would send the regression tests' deliveries while the
# tests look at them: off by default here; the end-to-end tests of delivery
# switch them on for their own databases.
psql_admin -d postgres -c "ALTER SYSTEM SET plantsync.delivery_enabled = off" -c "SELECT pg_reload_conf()" >/dev/null

stage_regress
stage_pgtap
stage_e2e
stage_shared_data
finish
