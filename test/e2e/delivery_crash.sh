#!/usr/bin/env bash
# Fault test: SIGKILL of the postmaster, three times, while the delivery
# worker drains a backlog (see test/mock/delivery_crash.py). Restarts the
# shared test cluster.
set -euo pipefail
# shellcheck source=../lib/common.sh
source "$PLANTSYNC_COMMON"
export PLANTSYNC_SERVER_LOG PLANTSYNC_CLUSTER_DIR PLANTSYNC_COMMON PLANTSYNC_PG_OS_USER
python3 "$PLANTSYNC_TOP/test/mock/delivery_crash.py"
