#!/usr/bin/env bash
# End-to-end: polling a system that does not push (see
# test/mock/delivery_poll.py).
set -euo pipefail
# shellcheck source=../lib/common.sh
source "$PLANTSYNC_COMMON"
python3 "$PLANTSYNC_TOP/test/mock/delivery_poll.py"
