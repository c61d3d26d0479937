#!/usr/bin/env bash
# test/demo/run.sh: the plantsync demo (the README's `bash test/demo/run.sh`).
#
# Installs missing packages, builds and installs the extension, starts a
# throwaway cluster with normal durability (fsync on, unlike the test suite,
# so that what the demo shows is what a real server does), creates database
# plantsync_demo and plays test/demo/scenario.sql in it with psql, whose
# output is the demo; then runs the workflow against ERPNext- and SAP-style
# mock ERPs (test/mock/scenario_dialects.py) and shows what each received.
# Exits non-zero if any statement or check fails.
#
# PLANTSYNC_KEEP_CLUSTER=1 leaves the cluster running afterwards, with the
# demo database in it to explore, and prints how to connect.

set -euo pipefail

# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
SCENARIO=test/demo/scenario.sql

[[ -f $PLANTSYNC_TOP/$SCENARIO ]] || die "missing $PLANTSYNC_TOP/$SCENARIO"

log_section "setup"
ensure_packages || die "could not install the required packages"
build_and_install || die "make or make install failed"
start_cluster || die "the throwaway cluster did not start"

psql -X -q -v ON_ERROR_STOP=1 -d postgres -c 'CREATE DATABASE plantsync_demo' ||
    die "could not create database plantsync_demo"
export PGDATABASE=plantsync_demo

log_section "demo: $SCENARIO"
# From the repo top so that \i and \copy paths in the scenario are relative to
# it. Exit status through die so the exit hook also shows the server log.
(cd "$PLANTSYNC_TOP" && psql -X -v ON_ERROR_STOP=1 -f "$SCENARIO") ||
    die "the demo scenario failed"

log_section "demo: the same workflow against an ERPNext-style and a SAP-style ERP"
# A pass and a fail at two plants whose ERPs speak different dialects (only
# the endpoints and routes differ), against local mock servers; each line
# below is a document the delivery workers sent.
PLANTSYNC_DEMO=1 PLANTSYNC_SERVER_LOG=${PLANTSYNC_SERVER_LOG:-} python3 "$PLANTSYNC_TOP/test/mock/scenario_dialects.py" ||
    die "the dialect scenario failed"
log_info "demo finished"
