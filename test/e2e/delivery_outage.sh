#!/usr/bin/env bash
# Fault test: the ERP down (503) while the plant keeps writing (see
# test/mock/delivery_outage.py).
set -euo pipefail
# shellcheck source=../lib/common.sh
source "$PLANTSYNC_COMMON"
python3 "$PLANTSYNC_TOP/test/mock/delivery_outage.py"
