#!/usr/bin/env bash
# End-to-end: 408 and 425 retried, responses cut at max_response_bytes while
# they stream, a failing response handler (see test/mock/delivery_responses.py).
set -euo pipefail
# shellcheck source=../lib/common.sh
source "$PLANTSYNC_COMMON"
python3 "$PLANTSYNC_TOP/test/mock/delivery_responses.py"
