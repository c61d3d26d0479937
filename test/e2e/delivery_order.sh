#!/usr/bin/env bash
# End-to-end: per-key order at the receiver under 4 concurrent writers, and a
# failing key holding back only itself (see test/mock/delivery_order.py).
set -euo pipefail
# shellcheck source=../lib/common.sh
source "$PLANTSYNC_COMMON"
python3 "$PLANTSYNC_TOP/test/mock/delivery_order.py"
