#!/bin/sh
# test_cli.sh - the lathe command line: help, dump in text and DOT, exit
# statuses and error locations.  Usage: test_cli.sh PATH/TO/lathe
set -u
LATHE=$1
DATA=$(dirname "$0")/data
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
pass=0
fail=0
check() { # NAME CONDITION...
    name=$1
    shift
    if "$@"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $name"; fi
}
contains() { grep -qF -- "$2" "$1"; }

"$LATHE" --help >"$TMP/help" 2>&1
check "help exits 0" [ $? -eq 0 ]
check "help lists dump" contains "$TMP/help" "dump FILE"
"$LATHE" dump --help >"$TMP/dhelp" 2>&1
check "dump help exits 0" [ $? -eq 0 ]
check "dump help lists --format" contains "$TMP/dhelp" "--format text|dot"
check "dump help lists -o" contains "$TMP/dhelp" "--output OUT"
"$LATHE" >/dev/null 2>&1
check "no verb exits 2" [ $? -eq 2 ]
"$LATHE" frobnicate >"$TMP/out" 2>&1
check "unknown verb exits 2" [ $? -eq 2 ]
check "unknown verb is named" contains "$TMP/out" "unknown verb 'frobnicate'"
"$LATHE" --version >"$TMP/out" 2>&1
check "version" contains "$TMP/out" "lathe 0.1.0"

# text dump: canonical form, ops in dependency order, idempotent
"$LATHE" dump "$DATA/seed_q.ir" >"$TMP/q1.ir"
check "dump exits 0" [ $? -eq 0 ]
check "dump keeps grad flag" contains "$TMP/q1.ir" 'input "a" f32[2] grad'
check "dump annotates types" contains "$TMP/q1.ir" "= pow_scalar %0 exponent=3 : f32[2]"
check "dump keeps the output" contains "$TMP/q1.ir" 'output "Q" %'
"$LATHE" dump "$TMP/q1.ir" >"$TMP/q2.ir"
check "dump of a dump is identical" cmp -s "$TMP/q1.ir" "$TMP/q2.ir"
"$LATHE" dump - <"$DATA/seed_q.ir" >"$TMP/q3.ir"
check "dump reads stdin" cmp -s "$TMP/q1.ir" "$TMP/q3.ir"
"$LATHE" dump "$DATA/seed_q.ir" -o "$TMP/q4.ir"
check "dump -o writes the file" cmp -s "$TMP/q1.ir" "$TMP/q4.ir"

# DOT: forward edges, blue leaves
"$LATHE" dump "$DATA/seed_q.ir" --format dot >"$TMP/q.dot"
check "dot exits 0" [ $? -eq 0 ]
check "dot is a digraph" contains "$TMP/q.dot" "digraph"
check "dot marks leaves that require grad" contains "$TMP/q.dot" "lightblue"
check "dot has forward edges" grep -q -- "->" "$TMP/q.dot"

# errors: exit 1 with FILE:LINE:COL, usage errors exit 2
"$LATHE" dump "$DATA/bad_shape.ir" >"$TMP/out" 2>&1
check "bad shape exits 1" [ $? -eq 1 ]
check "bad shape names file:line:col" contains "$TMP/out" "bad_shape.ir:3:"
check "bad shape names op and shapes" contains "$TMP/out" "add: cannot broadcast f32[2,3], f32[4]"
"$LATHE" dump "$TMP/missing.ir" >"$TMP/out" 2>&1
check "missing file exits 1" [ $? -eq 1 ]
check "missing file is named" contains "$TMP/out" "missing.ir"
"$LATHE" dump "$DATA/seed_q.ir" --format svg >"$TMP/out" 2>&1
check "unknown format exits 2" [ $? -eq 2 ]
check "unknown format is named" contains "$TMP/out" "unknown format 'svg'"
"$LATHE" dump >"$TMP/out" 2>&1
check "dump without FILE exits 2" [ $? -eq 2 ]
printf '%%x = input "x" f32[2]\n%%y = relu %%x\n%%z = add %%y,' >"$TMP/trunc.ir"
"$LATHE" dump "$TMP/trunc.ir" >"$TMP/out" 2>&1
check "truncated file exits 1" [ $? -eq 1 ]
check "truncated file says end of file" contains "$TMP/out" "end of file"

echo "cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
