#!/usr/bin/env bash
# End-to-end: the dialects. Every transform of the fixture's events compared
# field by field with its golden file (test/dialects/golden/), every B2MML
# export validated with xmllint against the 0701 schemas, B2MML imports of
# the three namespaces (the real V0401 examples from ../shared/data and the
# samples in test/dialects/samples/), ERPNext and SAP shaped releases, round
# trips canonical -> dialect -> canonical, and the documents on the wire
# (test/mock/dialect_delivery.py). Where ../shared/data is absent the parts
# that need it say they were SKIPPED and the script fails.
# The Business To Manufacturing Markup Language (B2MML) is used courtesy of
# MESA International.
set -euo pipefail
# shellcheck source=../lib/common.sh
source "$PLANTSYNC_COMMON"

D=$PLANTSYNC_TOP/test/dialects
SCHEMAS=$PLANTSYNC_SHARED_DATA/b2mml/schema
EXAMPLES=$PLANTSYNC_SHARED_DATA/b2mml/examples
DB=e2e_dialects
failed=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -c "CREATE EXTENSION plantsync"
psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -f "$D/fixture.sql" >/dev/null

# the sample documents, as psql variables for the SQL below
vars=()
for f in "$D"/samples/schedule-*.xml "$D"/samples/performance-*.xml; do
    b=$(basename "$f" .xml)
    vars+=(-v "${b/schedule-/sched_}")
    vars[-1]="${vars[-1]/performance-/perf_}=$(cat "$f")"
done
vars+=(-v "erpnext_wo=$(cat "$D/samples/erpnext-work-order.json")" -v "sap_po=$(cat "$D/samples/sap-production-order.json")")
if [[ -d $EXAMPLES ]]; then
    vars+=(-v have_examples=1
           -v "ex_MAT=$(cat "$EXAMPLES/MAT-20121210170256-CRBN0001.xml")"
           -v "ex_LOT=$(cat "$EXAMPLES/LOT-20121210170718-0001L0001.xml")"
           -v "ex_INV=$(cat "$EXAMPLES/INV-20121210175555-0001L0001_01.xml")")
else
    vars+=(-v have_examples=0)
    log_error "the B2MML examples are not at $EXAMPLES: the V0401 example imports were SKIPPED (not passed)"
    failed=1
fi

# 1. golden files
psql -X -At -v ON_ERROR_STOP=1 "${vars[@]}" -F $'\x1f' -R $'\x1e' -d "$DB" -f "$D/documents.sql" >"$work/documents"
if ! python3 "$D/golden.py" "$D/golden" <"$work/documents"; then
    log_error "dialect documents differ from their golden files"
    failed=1
fi

# 2. xmllint: every B2MML export, and the 0700+ samples, against the 0701 schemas
if [[ -d $SCHEMAS ]]; then
    python3 - "$work" <<'PY'
import sys
for row in open(f'{sys.argv[1]}/documents').read().split('\x1e'):
    if row.strip():
        name, kind, doc = row.lstrip('\n').split('\x1f', 2)
        if kind == 'xml':
            open(f'{sys.argv[1]}/{name}.xml', 'w').write(doc)
PY
    for f in "$work"/*.xml "$D"/samples/*-0700.xml; do
        xsd=
        case $(basename "$f") in
            *performance*) xsd=B2MML-OperationsPerformance.xsd ;;
            *schedule*) xsd=B2MML-OperationsSchedule.xsd ;;
            *material_lot*) xsd=B2MML-Material.xsd ;;
        esac
        if out=$(xmllint --noout --schema "$SCHEMAS/$xsd" "$f" 2>&1); then
            echo "ok - $(basename "$f") validates against $xsd"
        else
            echo "not ok - $(basename "$f") does not validate against $xsd:"
            grep -v 'parser warning' <<<"$out" || true
            failed=1
        fi
    done
else
    log_error "the B2MML schemas are not at $SCHEMAS: xmllint validation was SKIPPED (not passed)"
    failed=1
fi

# 3. imports and round trips
if ! psql -X -q "${vars[@]}" -d "$DB" -f "$D/roundtrip.sql" >"$work/roundtrip" 2>&1; then
    cat "$work/roundtrip"
    log_error "round trips and imports stopped with an error"
    failed=1
fi
while IFS='|' read -r status what detail; do
    [[ -z $status ]] && continue
    if [[ $status == ok ]]; then
        echo "ok - $what"
    else
        echo "not ok - $what: $detail"
        failed=1
    fi
done <"$work/roundtrip"
[[ $(grep -c '^ok|' "$work/roundtrip" || true) -ge 20 ]] || { log_error "fewer round trip checks ran than written"; failed=1; }

psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null

# 4. on the wire
export PLANTSYNC_SERVER_LOG
python3 "$PLANTSYNC_TOP/test/mock/dialect_delivery.py" || failed=1

exit $failed
