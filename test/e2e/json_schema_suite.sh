#!/usr/bin/env bash
# End-to-end: the official JSON Schema test suite (draft 2020-12, from
# ../shared/data) against the C validator. Every case of every supported
# keyword file must pass; the few skips are listed by name in
# test/contracts/json_schema_suite.py. When the suite is absent this script
# says so and fails, so that it never passes silently.
set -euo pipefail
# shellcheck source=../lib/common.sh
source "$PLANTSYNC_COMMON"

SUITE=$PLANTSYNC_SHARED_DATA/json-schema-test-suite/tests/draft2020-12
if [[ ! -d $SUITE ]]; then
    log_error "the JSON Schema test suite is not at $SUITE: this suite was SKIPPED (not passed)"
    exit 1
fi
DB=e2e_json_schema
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -c "CREATE EXTENSION plantsync"
rc=0
python3 "$PLANTSYNC_TOP/test/contracts/json_schema_suite.py" "$SUITE" "$DB" || rc=$?
psql -X -q -d postgres -c "DROP DATABASE $DB WITH (FORCE)"
exit $rc
