# checks.sh - sourced by the shell tests: count checks, report failures.
#   check NAME COMMAND...   run COMMAND; a failure prints "FAIL: NAME"
#   contains FILE TEXT      whether FILE holds TEXT (fixed string)
#   have_open_mpi WHAT      whether Open MPI's mpirun is here; if not, says on
#                           standard error that WHAT was skipped, and why
# The caller reports $pass and $fail at the end and exits non-zero on any
# failure.
pass=0
fail=0
check() { # NAME CONDITION...
    name=$1
    shift
    if "$@"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $name"; fi
}
contains() { grep -qF -- "$2" "$1"; }
have_open_mpi() { # WHAT
    if ! command -v mpirun >/dev/null 2>&1; then
        echo "SKIP: mpirun not found: $1 (install openmpi-bin)" >&2
        return 1
    fi
    if ! mpirun --version 2>&1 | grep -q "Open MPI"; then
        echo "SKIP: mpirun is not Open MPI's ($(mpirun --version 2>&1 | head -1)): $1" >&2
        return 1
    fi
}
