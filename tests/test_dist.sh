#!/bin/sh
# test_dist.sh - lathe_dist.h's layer (runtime/dist.c) as one process and
# under Open MPI's mpirun:
#   - one process, with this build's runtime and with dist.c built without
#     MPI (test_dist_nompi): the collectives are copies, the values right;
#   - without MPI, launcher environments refused with the message that says
#     how to rebuild, and for real under mpirun -np 2; with MPI, another
#     MPI's launcher (PMI_SIZE=2, faked) refused;
#   - with MPI, under mpirun -np 1, 2 and 3: all-reduce, all-gather (equal
#     and unequal blocks) and broadcast give the hand-computed values;
#   - with MPI, rank 1 of 3 killed by SIGKILL, exiting with status 4, or
#     calling lathe_dist_abort at step 50 while the others wait in an
#     all-reduce: mpirun ends them all within $BOUND s, non-zero, saying so.
# Exits 77 (skipped) after the one-process checks when there is no Open MPI
# mpirun to run the rest.
#   test_dist.sh TEST_DIST TEST_DIST_NOMPI
set -u
T=${1:?usage: test_dist.sh TEST_DIST TEST_DIST_NOMPI}
STUB=${2:?usage: test_dist.sh TEST_DIST TEST_DIST_NOMPI}
BOUND=20        # seconds within which a failed rank must end the run
TMP=$(mktemp -d "${TMPDIR:-/tmp}/lathe-dist.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
. "$(dirname "$0")/checks.sh"
lines() { grep -c -- "$2" "$1"; }   # FILE PATTERN: how many lines match
finish() { # STATUS-WHEN-NOTHING-FAILED
    echo "test_dist: $pass passed, $fail failed"
    [ "$fail" -eq 0 ] || exit 1
    exit "$1"
}
# run NAME CMD...: CMD's output in $TMP/NAME, its status in $rc, seconds in $secs
run() {
    out=$TMP/$1
    shift
    t0=$(date +%s)
    "$@" >"$out" 2>&1
    rc=$?
    secs=$(($(date +%s) - t0))
}

"$T" info >"$TMP/info" 2>&1
check "test_dist info runs" contains "$TMP/info" "have_mpi="
have_mpi=$(sed -n 's/^have_mpi=\([01]\).*/\1/p' "$TMP/info")
check "test_dist_nompi is built without MPI" sh -c "'$STUB' info | grep -q '^have_mpi=0'"

# ---- one process ------------------------------------------------------------------
for exe in "$T" "$STUB"; do
    n=${exe##*/}
    run "$n.one" env -u OMPI_COMM_WORLD_SIZE -u OMPI_COMM_WORLD_RANK -u PMI_SIZE -u PMI_RANK -u PMIX_RANK "$exe" check
    check "$n, one process: status 0 ($rc)" [ "$rc" -eq 0 ]
    check "$n, one process: checks pass as rank 0 of 1" contains "$TMP/$n.one" "rank 0 of 1:"
    [ "$rc" -eq 0 ] || cat "$TMP/$n.one"
done

# ---- with MPI, another MPI's launcher (faked): MPI sees one process ------------
if [ "$have_mpi" = 1 ]; then
    run foreign env -u OMPI_COMM_WORLD_SIZE -u OMPI_COMM_WORLD_RANK -u PMIX_RANK PMI_SIZE=2 PMI_RANK=0 \
        timeout 60 "$T" check
    check "another MPI's launcher: refused ($rc)" [ "$rc" -eq 1 ]
    check "another MPI's launcher: says so" contains "$TMP/foreign" \
        "the launcher started 2 processes (PMI_SIZE=2) but MPI sees 1: start this program with the mpirun of"
    [ "$fail" -eq 0 ] || cat "$TMP/foreign"
fi

# ---- without MPI: launchers refused ---------------------------------------------
run nompi-env "$STUB" nompi-env
check "without MPI: launcher environments refused or accepted ($rc)" [ "$rc" -eq 0 ]
[ "$rc" -eq 0 ] || cat "$TMP/nompi-env"

# ---- under mpirun -----------------------------------------------------------------
have_open_mpi "nothing ran under a launcher" || finish 77
# root needs --allow-run-as-root; --oversubscribe: more ranks than cores
MPIRUN="mpirun --allow-run-as-root --oversubscribe"

# without MPI, started as one of two: each process refuses, saying why
run nompi-mpirun timeout 60 $MPIRUN -np 2 "$STUB" check
check "without MPI, mpirun -np 2: exits non-zero ($rc)" [ "$rc" -ne 0 -a "$rc" -ne 124 ]
check "without MPI, mpirun -np 2: says it was built without MPI" contains "$TMP/nompi-mpirun" \
    "built without MPI support, but an MPI launcher started it as one of 2 processes (OMPI_COMM_WORLD_SIZE=2)"
check "without MPI, mpirun -np 2: says how to rebuild" contains "$TMP/nompi-mpirun" "-Dmpi=enabled"
check "without MPI, mpirun -np 2: no checks ran" sh -c "! grep -q 'checks passed' '$TMP/nompi-mpirun'"
[ "$fail" -eq 0 ] || cat "$TMP/nompi-mpirun"

if [ "$have_mpi" != 1 ]; then
    echo "NOTE: this build has no MPI (-Dmpi=disabled, or MPI not found): the collectives under mpirun were not run"
    finish 0
fi

for np in 1 2 3; do
    run "np$np" timeout 60 $MPIRUN -np $np "$T" check
    check "mpirun -np $np: status 0 ($rc)" [ "$rc" -eq 0 ]
    check "mpirun -np $np: every rank's checks pass" [ "$(lines "$TMP/np$np" "of $np: [0-9]* checks passed, 0 failed")" -eq $np ]
    [ "$rc" -eq 0 ] || cat "$TMP/np$np"
done

# A rank that dies, exits non-zero or aborts while the others wait in a
# collective: mpirun ends the others (they never finish their loop) within
# $BOUND s; `timeout` ends a hang after twice that.
for how in kill exit abort; do
    run "$how" timeout $((2 * BOUND)) $MPIRUN -np 3 "$T" $how
    check "rank 1 $how: the run ends non-zero ($rc)" [ "$rc" -ne 0 ]
    check "rank 1 $how: within $BOUND s, not by timeout ($secs s, status $rc)" [ "$secs" -le $BOUND -a "$rc" -ne 124 ]
    check "rank 1 $how: it failed at step 50" contains "$TMP/$how" "rank 1 fails ($how) at step 50"
    check "rank 1 $how: no rank went on to the end" sh -c "! grep -q 'never stopped' '$TMP/$how'"
    # Open MPI 4.1 kills the survivors in their all-reduce (shared memory or
    # TCP alike) rather than return an error from it; either ends the run
    grep -q 'all-reduce of' "$TMP/$how" && echo "NOTE: rank 1 $how: a survivor saw its all-reduce fail"
    case $how in
    kill)
        check "rank 1 kill: mpirun names the signal" contains "$TMP/$how" "exited on signal 9 (Killed)"
        check "rank 1 kill: status 137" [ "$rc" -eq 137 ] ;;
    exit)
        check "rank 1 exit: mpirun names the exit code" contains "$TMP/$how" "Exit code:    4"
        check "rank 1 exit: status 4" [ "$rc" -eq 4 ] ;;
    abort)
        check "rank 1 abort: the message, with its rank" contains "$TMP/$how" \
            "lathe: rank 1 of 3: rank 1 gives up at step 50 (on purpose)"
        # mpirun's own "MPI_ABORT was invoked on rank 1" banner is lost now
        # and then (Open MPI 4.1.4: "ORTE_ERROR_LOG: Data unpack would read
        # past end of buffer in file show_help.c"), so only ours is checked
        check "rank 1 abort: status 3" [ "$rc" -eq 3 ] ;;
    esac
    echo "rank 1 $how: the run ended after $secs s with status $rc"
    [ "$fail" -eq 0 ] || cat "$TMP/$how"
done

finish 0
