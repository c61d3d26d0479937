#!/usr/bin/env bash
# End-to-end: the delivery workers against the mock ERP server (see
# test/mock/delivery_outcomes.py for what is checked).
set -euo pipefail
# shellcheck source=../lib/common.sh
source "$PLANTSYNC_COMMON"
export PLANTSYNC_SERVER_LOG
python3 "$PLANTSYNC_TOP/test/mock/delivery_outcomes.py"
