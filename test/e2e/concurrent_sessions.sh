#!/usr/bin/env bash
# End-to-end: two sessions doing the same thing at once (the inbox, parked
# messages, reconciliation runs; see test/mock/concurrent_sessions.py).
set -euo pipefail
# shellcheck source=../lib/common.sh
source "$PLANTSYNC_COMMON"
python3 "$PLANTSYNC_TOP/test/mock/concurrent_sessions.py"
