# shellcheck shell=bash
# test/bench/lib.sh: what the benchmarks share: a throwaway cluster with a
# small plant, and A/B runs of pgbench that alternate the two sides so that
# machine noise hits both. Sourced by the test/bench/*.sh scripts.

# shellcheck source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"

BENCH_SECONDS=${PLANTSYNC_BENCH_SECONDS:-20}
BENCH_CLIENTS=${PLANTSYNC_BENCH_CLIENTS:-2}
BENCH_ROUNDS=${PLANTSYNC_BENCH_ROUNDS:-3}
BENCH_WORK=$(mktemp -d)
_bench_remove_work() { rm -rf "$BENCH_WORK"; }
on_exit _bench_remove_work

# bench_start DB: packages, build, cluster (durable, as in production), and
# database DB with a plant: site P1, location L1, material RM (KG) with 1000
# unrestricted lots, an order O-1 with operation 0010, and one ERP endpoint.
bench_start() {
    local db=$1
    ensure_packages || die "could not install the required packages"
    build_and_install || die "make or make install failed"
    start_cluster || die "the throwaway cluster did not start"
    BENCH_DB=$db
    bench_plant "$db"
}

# bench_plant DB [SETTINGS]: creates database DB (with SETTINGS, e.g.
# "plantsync.delivery_enabled = off", set on it before the extension is
# created) and in it the extension and the plant bench_start describes.
bench_plant() {
    local db=$1 settings=${2:-}
    psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE $db"
    if [[ -n $settings ]]; then
        psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "ALTER DATABASE $db SET $settings"
    fi
    psql -X -q -v ON_ERROR_STOP=1 -d "$db" <<SQL
CREATE EXTENSION plantsync;
SET plantsync.source_system = 'hub';
INSERT INTO plantsync.site (site_id, name) VALUES ('P1', 'Plant');
INSERT INTO plantsync.storage_location (site_id, location_code, name) VALUES ('P1', 'L1', 'Store');
INSERT INTO plantsync.equipment (site_id, equipment_code, name, equipment_level) VALUES ('P1', 'WC1', 'Work center', 'WorkCenter');
INSERT INTO plantsync.endpoint (endpoint_id, system_code, base_url, allow_plain_http) VALUES ('erp', 'erp', 'http://127.0.0.1:9/', true);
SET plantsync.source_system = 'erp';
INSERT INTO plantsync.material (site_id, material_number, description, base_uom) VALUES ('P1', 'RM', 'Raw', 'KG');
INSERT INTO plantsync.production_order (site_id, order_number, material_id, quantity, uom, status, due_date)
SELECT 'P1', 'O-1', id, 100000, 'KG', 'released', '2027-01-01' FROM plantsync.material;
INSERT INTO plantsync.production_operation (site_id, order_id, operation_number, work_center_id, process_segment, planned_quantity)
SELECT 'P1', o.id, '0010', e.id, 'MIX', 100000 FROM plantsync.production_order o, plantsync.equipment e;
SET plantsync.source_system = 'mes';
INSERT INTO plantsync.lot (site_id, material_id, lot_number, disposition)
SELECT 'P1', m.id, 'LOT-' || g, 'unrestricted' FROM plantsync.material m, generate_series(1, 1000) g;
SELECT count(*) FROM plantsync.maintain_partitions(2);
ALTER DATABASE $db SET plantsync.source_system = 'mes';
SQL
}

bench_median() {
    printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'
}

# bench_tps SCRIPT: one pgbench run of a custom script; prints tps.
bench_tps() {
    pgbench -n -c "$BENCH_CLIENTS" -j "$BENCH_CLIENTS" -T "$BENCH_SECONDS" -f "$1" "$BENCH_DB" 2>&1 |
        sed -n 's/^tps = \([0-9.]*\) .*/\1/p'
}

# bench_ab LABEL SCRIPT SWITCH_A SWITCH_B: BENCH_ROUNDS rounds of SCRIPT,
# running the SQL SWITCH_A before each A run and SWITCH_B before each B run;
# prints "LABEL: A <tps> tps, B <tps> tps -> ratio <B/A>" from the medians.
bench_ab() {
    local label=$1 script=$2 switch_a=$3 switch_b=$4 a b r
    local as=() bs=()
    for ((r = 1; r <= BENCH_ROUNDS; r++)); do
        psql -X -q -d "$BENCH_DB" -c "$switch_a"; a=$(bench_tps "$script"); as+=("$a")
        psql -X -q -d "$BENCH_DB" -c "$switch_b"; b=$(bench_tps "$script"); bs+=("$b")
        log_info "$label, round $r: A $a tps, B $b tps"
    done
    a=$(bench_median "${as[@]}")
    b=$(bench_median "${bs[@]}")
    BENCH_A=$a
    BENCH_B=$b
    BENCH_RATIO=$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2f", b / a}')
}
