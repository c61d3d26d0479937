#!/usr/bin/env bash
# End-to-end: the reference scenario (order release to quality release, a
# pass and a fail) against an ERPNext-style and a SAP-style ERP chosen by
# configuration only; see test/mock/scenario_dialects.py for what is checked.
set -euo pipefail
# shellcheck source=../lib/common.sh
source "$PLANTSYNC_COMMON"
export PLANTSYNC_SERVER_LOG
python3 "$PLANTSYNC_TOP/test/mock/scenario_dialects.py"
