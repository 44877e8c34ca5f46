# checks.sh - sourced by the shell tests: count checks, report failures.
#   check NAME COMMAND...   run COMMAND; a failure prints "FAIL: NAME"
#   contains FILE TEXT      whether FILE holds TEXT (fixed string)
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
