#!/usr/bin/env bash
# Benchmark: delivery to a local HTTP sink (nginx answering 200), in one run:
#   1. the sink's ceiling, measured with wrk (POSTs of the same size);
#   1b. the same POSTs from a libcurl multi client alone (curl_ceiling.c:
#      the way a worker sends, no database), one process and two: what the
#      HTTP client itself gets from the sink on these cores;
#   2. sustained durable delivery of a 100k-event backlog through plantsync
#      (rate, and as a share of the wrk ceiling; target >= 40%);
#   2b. the database's share alone: the same claims and settles called
#      from SQL in a database without workers, nothing sent (CPU a delivery);
#   3. commit-to-receipt latency at 1,000 events/s (pgbench -R), p50/p99
#      (target p99 < 50 ms), written one event a transaction and ten;
#   4. the worker's private memory over many deliveries (target: growth
#      < 10 MB after warm-up).
#
#   bash test/bench/delivery.sh   (PLANTSYNC_BENCH_BACKLOG=100000, PLANTSYNC_BENCH_RSS_DELIVERIES=1000000,
#                                  PLANTSYNC_BENCH_WORKERS=1, PLANTSYNC_BENCH_SQL_ONLY=50000,
#                                  PLANTSYNC_BENCH_PARTITIONS_AHEAD=2, PLANTSYNC_BENCH_RATE=1000)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BACKLOG=${PLANTSYNC_BENCH_BACKLOG:-100000}
WORKERS=${PLANTSYNC_BENCH_WORKERS:-1}
RSS_DELIVERIES=${PLANTSYNC_BENCH_RSS_DELIVERIES:-1000000}
SQL_ONLY=${PLANTSYNC_BENCH_SQL_ONLY:-50000}
# daily delivery partitions made ahead in the database of step 2b (a plant
# keeping 30 days and making 7 ahead has 39): a claim searches every one
PARTITIONS_AHEAD=${PLANTSYNC_BENCH_PARTITIONS_AHEAD:-2}
# events a second the writers of step 3 ask for
RATE=${PLANTSYNC_BENCH_RATE:-1000}
ensure_packages nginx-light wrk || die "could not install nginx and wrk"

# The sink: nginx on a free loopback port, one worker process, keep-alive.
SINK_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$BENCH_WORK/nginx"
cat >"$BENCH_WORK/nginx/nginx.conf" <<NGINX
worker_processes 1;
pid $BENCH_WORK/nginx/nginx.pid;
error_log $BENCH_WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $BENCH_WORK/nginx;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$SINK_PORT;
        location / { client_max_body_size 1m; return 200 '{"data": {"name": "DOC"}}'; }
    }
}
NGINX
nginx -c "$BENCH_WORK/nginx/nginx.conf"
stop_nginx() { [[ -f $BENCH_WORK/nginx/nginx.pid ]] && kill "$(cat "$BENCH_WORK/nginx/nginx.pid")" 2>/dev/null || true; }
on_exit stop_nginx

bench_start bench_delivery
# commit timestamps: the latency is measured from each event's commit
psql -X -q -d postgres -c "ALTER SYSTEM SET plantsync.workers_per_database = $WORKERS" \
    -c "ALTER SYSTEM SET track_commit_timestamp = on" >/dev/null
restart_cluster || die "the cluster did not restart"
psql -X -q -v ON_ERROR_STOP=1 -d "$BENCH_DB" <<SQL
ALTER DATABASE $BENCH_DB SET plantsync.delivery_enabled = on;
SET plantsync.source_system = 'hub';
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, allow_plain_http, max_in_flight, enabled)
VALUES ('sink', 'erp', 'http://127.0.0.1:$SINK_PORT/stock', true, 128, false);
INSERT INTO plantsync.route (route_id, event_type_pattern, endpoint_id) VALUES ('sink', 'material_movement.*', 'sink');
SELECT plantsync.wake_workers();
SQL
# the workers start with the database setting on
sleep 2

log_section "1. the sink's ceiling (wrk, 10 s, 64 connections)"
body=$(psql -X -At -d "$BENCH_DB" -c "SELECT repeat('x', 1200)")
cat >"$BENCH_WORK/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"pad": "$body"}'
wrk.headers["Content-Type"] = "application/json"
LUA
wrk -t1 -c64 -d10s -s "$BENCH_WORK/post.lua" "http://127.0.0.1:$SINK_PORT/stock" | tee "$BENCH_WORK/wrk.txt"
ceiling=$(sed -n 's/^Requests\/sec: *\([0-9.]*\)/\1/p' "$BENCH_WORK/wrk.txt")

log_section "1b. the same POSTs from libcurl alone (no database), 128 in flight"
gcc -O2 -o "$BENCH_WORK/curl_ceiling" "$(dirname "${BASH_SOURCE[0]}")/curl_ceiling.c" -lcurl || die "could not build curl_ceiling"
curl_one=$("$BENCH_WORK/curl_ceiling" "http://127.0.0.1:$SINK_PORT/stock" 200000 128 1212 | awk '{print $3}')
"$BENCH_WORK/curl_ceiling" "http://127.0.0.1:$SINK_PORT/stock" 100000 64 1212 >"$BENCH_WORK/cc1.txt" &
"$BENCH_WORK/curl_ceiling" "http://127.0.0.1:$SINK_PORT/stock" 100000 64 1212 >"$BENCH_WORK/cc2.txt"
wait
curl_two=$(awk '{s += $3} END {printf "%.0f", s}' "$BENCH_WORK/cc1.txt" "$BENCH_WORK/cc2.txt")
log_info "libcurl alone: $curl_one requests/s in one process, $curl_two in two"

log_section "2. draining a backlog of $BACKLOG events"
psql -X -q -v ON_ERROR_STOP=1 -d "$BENCH_DB" <<SQL
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, to_location_id, source_system, external_id)
SELECT 'P1', 'goods_receipt', l.material_id, l.id, 1, 'KG', s.id, 'mes', 'BL-' || g
  FROM generate_series(1, $BACKLOG) g
  JOIN plantsync.lot l ON l.lot_number = 'LOT-' || (g % 1000 + 1)
  CROSS JOIN plantsync.storage_location s;
SQL
pending() { psql -X -At -d "$BENCH_DB" -c "SELECT count(*) FROM plantsync.delivery WHERE status IN ('pending', 'retrying', 'in_flight')"; }
# While draining, the workers' own counters (shared memory) say how far they
# are: counting the delivery table instead would scan it several times a
# second and take a core from the workers being measured.
settled() { psql -X -At -d "$BENCH_DB" -c "SELECT coalesce(sum(delivered + dead), 0) FROM plantsync.worker_status"; }
# wait_settled TARGET: until the workers have settled TARGET in all, and
# nothing is left.
wait_settled() {
    while (($(settled) < $1)); do sleep 0.1; done
    while [[ $(pending) != 0 ]]; do sleep 0.5; done
}
log_info "backlog: $(pending) pending deliveries; enabling the endpoint"
target=$(($(settled) + BACKLOG))
start=$(date +%s.%N)
psql -X -q -d "$BENCH_DB" -c "SET plantsync.source_system = 'hub'" -c "UPDATE plantsync.endpoint SET enabled = true WHERE endpoint_id = 'sink'"
while (($(settled) < target)); do sleep 0.1; done
end=$(date +%s.%N)
while [[ $(pending) != 0 ]]; do sleep 0.5; done
delivered=$(psql -X -At -d "$BENCH_DB" -c "SELECT count(*) FROM plantsync.delivery WHERE status = 'delivered'")
rate=$(awk -v n="$delivered" -v a="$start" -v b="$end" 'BEGIN {printf "%.0f", n / (b - a)}')
share=$(awk -v r="$rate" -v c="$ceiling" 'BEGIN {printf "%.0f", 100 * r / c}')

log_section "2b. claiming and settling alone (SQL, no HTTP), $SQL_ONLY deliveries"
# a database of its own where no worker runs: the worker's two statements,
# 128 deliveries at a time as the worker asks, each cycle committed
bench_plant bench_sql "plantsync.delivery_enabled = off"
psql -X -q -v ON_ERROR_STOP=1 -d bench_sql <<SQL
CREATE TEMP TABLE made AS SELECT * FROM plantsync.maintain_partitions($PARTITIONS_AHEAD);
SET plantsync.source_system = 'hub';
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, allow_plain_http, max_in_flight)
VALUES ('sink', 'erp', 'http://127.0.0.1:$SINK_PORT/stock', true, 128);
INSERT INTO plantsync.route (route_id, event_type_pattern, endpoint_id) VALUES ('sink', 'material_movement.*', 'sink');
SET plantsync.source_system = 'mes';
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, to_location_id, source_system, external_id)
SELECT 'P1', 'goods_receipt', l.material_id, l.id, 1, 'KG', s.id, 'mes', 'SQL-' || g
  FROM generate_series(1, $SQL_ONLY) g
  JOIN plantsync.lot l ON l.lot_number = 'LOT-' || (g % 1000 + 1)
  CROSS JOIN plantsync.storage_location s;
VACUUM ANALYZE;
SQL
sql_share=$(psql -X -At -v ON_ERROR_STOP=1 -d bench_sql <<'SQL' 2>&1
SET plantsync.source_system = 'hub';
CREATE TEMP TABLE sql_share (claim_us float8, settle_us float8);
DO $$
DECLARE
    t0 timestamptz;
    n bigint := 0;
    k integer;
    ids uuid[];
    created timestamptz[];
    bodies text[];
    claim_s float8 := 0;
    settle_s float8 := 0;
BEGIN
    LOOP
        t0 := clock_timestamp();
        -- the payload as text, as the worker reads it
        SELECT array_agg(c.delivery_id), array_agg(c.created_at), array_agg(c.payload::text)
          INTO ids, created, bodies
          FROM plantsync.claim_deliveries('sink', 128, '60 s', pg_backend_pid()) c;
        claim_s := claim_s + extract(epoch FROM clock_timestamp() - t0);
        EXIT WHEN ids IS NULL;
        k := cardinality(ids);
        t0 := clock_timestamp();
        PERFORM plantsync.settle_deliveries(ids, created, array_fill('delivered'::text, ARRAY[k]), array_fill(200, ARRAY[k]),
                                            array_fill(NULL::text, ARRAY[k]), array_fill(NULL::timestamptz, ARRAY[k]),
                                            array_fill(now(), ARRAY[k]), array_fill(1, ARRAY[k]),
                                            array_fill('{"data": {"name": "DOC"}}'::text, ARRAY[k]));
        COMMIT;
        settle_s := settle_s + extract(epoch FROM clock_timestamp() - t0);
        n := n + k;
    END LOOP;
    INSERT INTO sql_share VALUES (claim_s * 1e6 / n, settle_s * 1e6 / n);
END
$$;
SELECT round(claim_us::numeric, 1) || ' ' || round(settle_us::numeric, 1) FROM sql_share;
SQL
)
read -r claim_us settle_us <<<"$(tail -1 <<<"$sql_share")"
log_info "claim $claim_us us a delivery, settle (with the commit) $settle_us us"

log_section "3. commit-to-receipt latency at $RATE events/s for 20 s"
# latency_at NAME EVENTS_PER_TX: four writers (pgbench -R) asking for $RATE
# events a second, in transactions of EVENTS_PER_TX movements (on distinct
# lots); sets LAT_P50, LAT_P99, LAT_N (deliveries measured) and LAT_RATE (the
# events a second the writers reached: pgbench -R falls behind its schedule
# when the machine cannot keep the rate, and the latency is of that rate).
latency_at() {
    local name=$1 per_tx=$2 i lots="" mark written latency
    for ((i = 0; i < per_tx; i++)); do
        echo "\\set l$i random($((i * 1000 / per_tx + 1)), $(((i + 1) * 1000 / per_tx)))"
        lots+="${lots:+, }'LOT-' || :l$i"
    done >"$BENCH_WORK/$name.sql"
    cat >>"$BENCH_WORK/$name.sql" <<SQL
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, to_location_id, source_system, external_id)
SELECT 'P1', 'goods_receipt', l.material_id, l.id, 1, 'KG', s.id, 'mes', gen_random_uuid()::text
  FROM plantsync.lot l, plantsync.storage_location s
 WHERE l.site_id = 'P1' AND l.lot_number IN ($lots) AND s.site_id = 'P1' AND s.location_code = 'L1';
SQL
    mark=$(psql -X -At -d "$BENCH_DB" -c "SELECT now()")
    pgbench -n -c 4 -j 2 -R $((RATE / per_tx)) -T 20 -f "$BENCH_WORK/$name.sql" "$BENCH_DB" >"$BENCH_WORK/$name.txt" 2>&1 || true
    echo "$per_tx event(s) a transaction:"
    grep -E "^(tps|latency average|number of transactions actually)" "$BENCH_WORK/$name.txt" || true
    written=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$BENCH_WORK/$name.txt")
    LAT_RATE=$(awk -v n="${written:-0}" -v k="$per_tx" 'BEGIN {printf "%.0f", n * k / 20}')
    while [[ $(pending) != 0 ]]; do sleep 0.2; done
    latency=$(psql -X -At -F ' ' -d "$BENCH_DB" <<SQL
SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1), round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1), count(*)
  FROM (SELECT extract(epoch FROM (a.attempted_at + make_interval(secs => a.latency_ms / 1000.0))
                                   - pg_xact_commit_timestamp(e.xmin)) * 1000 AS ms
          FROM plantsync.delivery_attempt a
          JOIN plantsync.delivery d ON d.id = a.delivery_id
          JOIN plantsync.event e ON e.id = d.event_id AND e.recorded_at = d.event_recorded_at
         WHERE e.recorded_at >= '$mark' AND a.attempt = 1) s;
SQL
    )
    read -r LAT_P50 LAT_P99 LAT_N <<<"$latency"
}
# one movement a commit: the dearest way to write
latency_at single 1
single="at $RATE events/s asked, one a transaction ($LAT_RATE events/s written): p50 ${LAT_P50} ms, p99 ${LAT_P99} ms over $LAT_N deliveries"
# an MES posting a few at a time: ten movements a transaction
latency_at tens 10
tens="at $RATE events/s asked, ten a transaction ($LAT_RATE events/s written): p50 ${LAT_P50} ms, p99 ${LAT_P99} ms over $LAT_N deliveries"

log_section "4. worker memory over $RSS_DELIVERIES deliveries"
wpid=$(psql -X -At -d "$BENCH_DB" -c "SELECT pid FROM plantsync.worker_status ORDER BY worker_index LIMIT 1")
# RssAnon: the worker's private memory. VmRSS would also count the shared
# buffers it touches, which grow with the tables, not with any leak.
rss() { awk '/^RssAnon/ {print $2}' "/proc/$wpid/status"; }
rss_start=$(rss)
done_so_far=0
chunk=100000
while ((done_so_far < RSS_DELIVERIES)); do
    target=$(($(settled) + chunk))
    psql -X -q -v ON_ERROR_STOP=1 -d "$BENCH_DB" -c "
INSERT INTO plantsync.material_movement (site_id, movement_type, material_id, lot_id, quantity, uom, to_location_id, source_system, external_id)
SELECT 'P1', 'goods_receipt', l.material_id, l.id, 1, 'KG', s.id, 'mes', 'RSS-$done_so_far-' || g
  FROM generate_series(1, $chunk) g
  JOIN plantsync.lot l ON l.lot_number = 'LOT-' || (g % 1000 + 1)
  CROSS JOIN plantsync.storage_location s"
    wait_settled "$target"
    done_so_far=$((done_so_far + chunk))
    log_info "$done_so_far deliveries: worker private memory (RssAnon) $(rss) kB"
done
rss_end=$(rss)

echo
echo "delivery to a local nginx sink, $(nproc) cores, $WORKERS delivery worker(s):"
echo "  wrk ceiling of the sink: $(printf '%.0f' "$ceiling") requests/s (64 connections, 1.2 kB POSTs)"
echo "  libcurl multi client alone, no database (sent as a worker sends): $curl_one requests/s in one process ($(awk -v r="$curl_one" -v c="$ceiling" 'BEGIN {printf "%.0f", 100 * r / c}')% of wrk), $curl_two in two ($(awk -v r="$curl_two" -v c="$ceiling" 'BEGIN {printf "%.0f", 100 * r / c}')%)"
echo "  plantsync: $delivered deliveries of a $BACKLOG-event backlog in $(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.1f", b - a}') s = $rate deliveries/s, durable (settled in committed transactions) -> ${share}% of the wrk ceiling (target >= 40%), $(awk -v r="$rate" -v c="$curl_one" 'BEGIN {printf "%.0f", 100 * r / c}')% of libcurl alone"
echo "  the database's share alone (the same SQL, no HTTP, $SQL_ONLY deliveries, $(psql -X -At -d bench_sql -c "SELECT count(*) FROM pg_inherits WHERE inhparent = 'plantsync.delivery'::regclass") delivery partitions): claim $claim_us us, settle with the commit $settle_us us of one core a delivery"
echo "  commit-to-receipt latency (target p99 < 50 ms) $single"
echo "  commit-to-receipt latency $tens"
echo "  worker private memory (RssAnon): $rss_start kB after the backlog, $rss_end kB after $RSS_DELIVERIES more deliveries (growth $(( (rss_end - rss_start) / 1024 )) MB; target < 10 MB)"
