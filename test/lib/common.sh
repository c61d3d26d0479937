# shellcheck shell=bash disable=SC2119,SC2120
# test/lib/common.sh: shared helpers for plantsync's test and demo scripts.
#
# Sourced, never executed, by test/run.sh, test/demo/run.sh and the
# end-to-end scripts in test/e2e/ (they find it through $PLANTSYNC_COMMON).
# Sourcing only defines functions and variables: it sets no shell options and
# installs no traps, so the sourcing script stays in charge of its own shell
# (every caller runs with `set -euo pipefail` itself).
#
# Provides:
#   logging         log_info, log_warn, log_error, log_section, die
#   setup           ensure_packages, build_and_install, as_root
#   cleanup         on_exit (stacked EXIT hooks, run in reverse order)
#   time limits     run_limited SECONDS CMD...
#   counting        count_pass, count_fail, check, counts_line, counts_ok
#   stages          stage_result, stages_failed, print_summary
#   the cluster     start_cluster, stop_cluster, ... (see cluster.sh)
#
# Functions return non-zero instead of exiting where a caller may want to
# carry on (run.sh keeps going after a failing stage). Bash ignores `set -e`
# inside a function called from an `if` or `||`, so the critical steps below
# check their own status explicitly.

if [[ -n ${_PLANTSYNC_COMMON_LOADED:-} ]]; then
    return 0
fi
_PLANTSYNC_COMMON_LOADED=1

# Repo top derived from this file's location, so the repo can live anywhere
# and the scripts can be started from any directory.
PLANTSYNC_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
PLANTSYNC_COMMON="$PLANTSYNC_TOP/test/lib/common.sh"
export PLANTSYNC_TOP PLANTSYNC_COMMON

# The shared data sits beside the repo (CI lays a copy of shared/ next to its
# clone). Resolve the parent only, so the path is clean even when absent.
PLANTSYNC_SHARED_DATA="$(cd "$PLANTSYNC_TOP/.." && pwd -P)/shared/data"
export PLANTSYNC_SHARED_DATA

# Pin PostgreSQL 15 explicitly: Debian's /usr/bin wrappers pick whatever
# major version is newest, which would be wrong if another one gets installed.
PLANTSYNC_PG_MAJOR=${PLANTSYNC_PG_MAJOR:-15}
PLANTSYNC_PG_BINDIR=${PLANTSYNC_PG_BINDIR:-/usr/lib/postgresql/$PLANTSYNC_PG_MAJOR/bin}
PLANTSYNC_PG_CONFIG=${PLANTSYNC_PG_CONFIG:-$PLANTSYNC_PG_BINDIR/pg_config}
export PLANTSYNC_PG_MAJOR PLANTSYNC_PG_BINDIR PLANTSYNC_PG_CONFIG
# Children (pg_prove calls plain `psql`) must get the same major version.
case ":$PATH:" in
    *":$PLANTSYNC_PG_BINDIR:"*) ;;
    *) PATH="$PLANTSYNC_PG_BINDIR:$PATH"; export PATH ;;
esac

# The extension under test. Only the harness's own self-test overrides it
# (with a throwaway extension), so that it never has to install a fake
# "plantsync" over the real one.
PLANTSYNC_EXTENSION=${PLANTSYNC_EXTENSION:-plantsync}

PLANTSYNC_PACKAGES=(
    postgresql-15
    postgresql-server-dev-15
    postgresql-contrib
    postgresql-15-cron
    postgresql-15-pgtap
    libtap-parser-sourcehandler-pgtap-perl
    libipc-run-perl
    libcurl4-openssl-dev
    pkg-config
    make
    gcc
    python3
    openssl
    libxml2-utils
)

# ---------------------------------------------------------------- logging
# Harness messages go to stderr so that a test's own stdout stays parseable;
# the final summary goes to stdout.

log_info()    { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
log_warn()    { printf '[%s] WARNING: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
log_error()   { printf '[%s] ERROR: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
log_section() { printf '\n===== %s =====\n' "$*" >&2; }
die()         { log_error "$*"; exit 1; }

# ---------------------------------------------------------------- setup

# Run a command as root: directly, through sudo, or not at all.
as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        log_error "needs root, and sudo is not available: $*"
        return 1
    fi
}

# ensure_packages [PKG...]: install the missing Debian packages (default: the
# whole list above). apt-get runs only when something is missing, so repeated
# runs on a prepared machine cost nothing.
ensure_packages() {
    local pkgs=("$@") missing=() p
    if ((${#pkgs[@]} == 0)); then
        pkgs=("${PLANTSYNC_PACKAGES[@]}")
    fi
    if ! command -v dpkg-query >/dev/null 2>&1; then
        log_error "dpkg-query not found: this harness expects Debian 12 (or a derivative)"
        return 1
    fi
    for p in "${pkgs[@]}"; do
        if [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) != "install ok installed" ]]; then
            missing+=("$p")
        fi
    done
    if ((${#missing[@]} == 0)); then
        log_info "packages: all ${#pkgs[@]} present"
        return 0
    fi
    if [[ $EUID -ne 0 ]] && ! command -v sudo >/dev/null 2>&1; then
        log_error "missing packages: ${missing[*]}"
        log_error "not root and no sudo: as root run: apt-get update && apt-get install -y ${missing[*]}"
        return 1
    fi
    log_info "packages: installing ${missing[*]}"
    # env inside as_root because sudo resets the environment.
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q || return 1
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends "${missing[@]}" || return 1
}

# build_and_install: `make` and `make install` in the repo top dir.
build_and_install() {
    local make_cmd=(make --no-print-directory -C "$PLANTSYNC_TOP"
                    -j"${PLANTSYNC_JOBS:-2}" PG_CONFIG="$PLANTSYNC_PG_CONFIG")
    local pkglibdir sharedir
    log_info "build: make -C $PLANTSYNC_TOP"
    "${make_cmd[@]}" || return 1
    pkglibdir=$("$PLANTSYNC_PG_CONFIG" --pkglibdir) || return 1
    sharedir=$("$PLANTSYNC_PG_CONFIG" --sharedir) || return 1
    log_info "install: into $pkglibdir and $sharedir/extension"
    if [[ -w $pkglibdir && -w $sharedir/extension ]]; then
        "${make_cmd[@]}" install || return 1
    else
        as_root "${make_cmd[@]}" install || return 1
    fi
}

# ---------------------------------------------------------------- cleanup

_PLANTSYNC_EXIT_HOOKS=()
PLANTSYNC_EXIT_STATUS=0

# on_exit FUNCTION: run FUNCTION when the script exits, hooks in reverse
# order of registration. One shared trap, so library code never clobbers a
# trap the script (or another part of the library) relies on. Signals are
# turned into exits so that the hooks run on Ctrl-C and kill too.
on_exit() {
    if ((${#_PLANTSYNC_EXIT_HOOKS[@]} == 0)); then
        trap _plantsync_run_exit_hooks EXIT
        trap 'exit 129' HUP
        trap 'exit 130' INT
        trap 'exit 143' TERM
    fi
    _PLANTSYNC_EXIT_HOOKS+=("$1")
}

_plantsync_run_exit_hooks() {
    # Hooks may look at the status the script is exiting with.
    # shellcheck disable=SC2034
    PLANTSYNC_EXIT_STATUS=$?
    local i
    for ((i = ${#_PLANTSYNC_EXIT_HOOKS[@]} - 1; i >= 0; i--)); do
        "${_PLANTSYNC_EXIT_HOOKS[i]}" || true
    done
}

# ---------------------------------------------------------------- time limits

# run_limited SECONDS CMD...: run CMD, killed after SECONDS, so that one hung
# test cannot eat CI's whole time budget. With a controlling terminal the
# command stays in the foreground process group so that Ctrl-C still reaches
# it; without one (CI) timeout gets its own group, so that on expiry the
# whole process tree is killed, not just the direct child.
run_limited() {
    local secs=$1
    shift
    if { : </dev/tty; } 2>/dev/null; then
        timeout --foreground --kill-after=30 "$secs" "$@"
    else
        timeout --kill-after=30 "$secs" "$@"
    fi
}

# ---------------------------------------------------------------- counting
# Individual test results, summed across stages (run.sh) or checks (an e2e
# script that wants to report several checks).

PLANTSYNC_PASSED=0
PLANTSYNC_FAILED=0

count_pass() { PLANTSYNC_PASSED=$((PLANTSYNC_PASSED + ${1:-1})); }
count_fail() { PLANTSYNC_FAILED=$((PLANTSYNC_FAILED + ${1:-1})); }

# check DESCRIPTION CMD...: run CMD, count and print the outcome; returns
# CMD's success so the caller may still stop early if it wants to.
check() {
    local desc=$1
    shift
    if "$@"; then
        count_pass
        log_info "ok - $desc"
    else
        count_fail
        log_error "not ok - $desc"
        return 1
    fi
}

counts_line() { printf '%d passed, %d failed\n' "$PLANTSYNC_PASSED" "$PLANTSYNC_FAILED"; }
counts_ok()   { ((PLANTSYNC_FAILED == 0)); }

# ---------------------------------------------------------------- stages

_PLANTSYNC_STAGE_NAMES=()
_PLANTSYNC_STAGE_STATUS=()
_PLANTSYNC_STAGE_DETAIL=()

# stage_result NAME PASS|FAIL|SKIP DETAIL
stage_result() {
    _PLANTSYNC_STAGE_NAMES+=("$1")
    _PLANTSYNC_STAGE_STATUS+=("$2")
    _PLANTSYNC_STAGE_DETAIL+=("${3:-}")
    log_info "stage $1: $2${3:+ ($3)}"
}

stages_failed() {
    local s
    for s in "${_PLANTSYNC_STAGE_STATUS[@]}"; do
        [[ $s == FAIL ]] && return 0
    done
    return 1
}

# print_summary: the per-stage table, then the totals as the very last line
# (CI reads a closing 'N passed, N failed' line).
print_summary() {
    local i
    printf '\n===== plantsync test summary =====\n'
    for i in "${!_PLANTSYNC_STAGE_NAMES[@]}"; do
        printf '%-12s %-4s  %s\n' "${_PLANTSYNC_STAGE_NAMES[i]}" \
            "${_PLANTSYNC_STAGE_STATUS[i]}" "${_PLANTSYNC_STAGE_DETAIL[i]}"
    done
    printf '==================================\n'
    counts_line
}

# ---------------------------------------------------------------- the cluster
# shellcheck source=cluster.sh
source "$PLANTSYNC_TOP/test/lib/cluster.sh"
