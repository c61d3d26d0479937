#!/usr/bin/env bash
# End-to-end: TLS and mutual TLS to endpoints (see test/mock/delivery_tls.py).
set -euo pipefail
# shellcheck source=../lib/common.sh
source "$PLANTSYNC_COMMON"
python3 "$PLANTSYNC_TOP/test/mock/delivery_tls.py"
