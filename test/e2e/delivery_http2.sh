#!/usr/bin/env bash
# End-to-end: HTTP/2 where the server offers it, kept-alive HTTP/1.1
# connections where it does not (nginx; see test/mock/delivery_http2.py).
set -euo pipefail
# shellcheck source=../lib/common.sh
source "$PLANTSYNC_COMMON"
ensure_packages nginx-light || die "could not install nginx"
python3 "$PLANTSYNC_TOP/test/mock/delivery_http2.py"
