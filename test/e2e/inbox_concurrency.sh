#!/usr/bin/env bash
# End-to-end: the process APIs' inbox under concurrent senders (see
# test/mock/inbox_concurrency.py).
set -euo pipefail
# shellcheck source=../lib/common.sh
source "$PLANTSYNC_COMMON"
python3 "$PLANTSYNC_TOP/test/mock/inbox_concurrency.py"
