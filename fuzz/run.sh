#!/bin/sh
# fuzz/run.sh - build Lathe's libFuzzer targets and fuzz them.
#
#   sh fuzz/run.sh                 every target for 15 s (what test.sh runs)
#   sh fuzz/run.sh 1800            every target for 30 minutes
#   sh fuzz/run.sh 60 desc text    only those targets
#
# Targets (fuzz/fuzz_*.c): text (the text IR parser, verifier and printer),
# desc (the description parser, tracing, autodiff, simplify), safetensors
# (reading a file), checkpoint (loading one into a model), idx (IDX images
# and labels, raw and gzip).  Each is built with Debian's clang 14 and
# -fsanitize=fuzzer,address,undefined into build-fuzz/, starts from its seeds
# (tests/data for text, examples for desc, fuzz/corpus/NAME for the file
# formats) and replays every input that ever crashed
# (fuzz/regressions/NAME); new inputs it finds go to build-fuzz/corpus/NAME,
# never into the repository.  A crash stops with the input saved as
# build-fuzz/crash-*: add it to fuzz/regressions/NAME once fixed.
# Exit status 0 when every target ran clean.
set -eu
cd "$(dirname "$0")/.."
secs=${1:-15}
[ $# -gt 0 ] && shift
targets=${*:-"text desc safetensors checkpoint idx"}
CC=${FUZZ_CC:-clang}
command -v "$CC" >/dev/null || { echo "fuzz: $CC not found (apt-get install clang)" >&2; exit 1; }

out=build-fuzz
mkdir -p "$out"
flags="-g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all"
inc="-Iir -Icompiler -Iruntime -I$(llvm-config-19 --includedir) $(pkg-config --cflags libcjson zlib)"
ir=$(ls ir/*.c)
desc="compiler/desc.c compiler/desc_builtins.c compiler/autodiff.c compiler/simplify.c"
st="runtime/safetensors.c runtime/fileerr.c runtime/tensors.c"

status=0
for t in $targets; do
    seeds=fuzz/corpus/$t
    case $t in
    text) src="$ir" seeds=tests/data ;;       # the golden cases' IR
    desc) src="$ir $desc" seeds=examples ;;   # the example models
    safetensors) src="$st" ;;
    checkpoint) src="$st runtime/checkpoint.c runtime/optim.c" ;;
    idx) src="$st runtime/dataset.c" ;;
    *) echo "fuzz: unknown target '$t'" >&2; exit 2 ;;
    esac
    bin=$out/fuzz_$t
    # shellcheck disable=SC2086
    $CC $flags $inc -fopenmp=libgomp fuzz/fuzz_$t.c $src -o "$bin" -lcjson -lz -lm -lgomp
    mkdir -p "$out/corpus/$t" fuzz/regressions/$t
    dict=""
    [ -f fuzz/$t.dict ] && dict="-dict=fuzz/$t.dict"
    echo "fuzz: $t for ${secs}s"
    # shellcheck disable=SC2086
    if ! "$bin" -max_total_time="$secs" -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 \
        -artifact_prefix="$out/" $dict "$out/corpus/$t" "$seeds" fuzz/regressions/$t \
        >"$out/$t.log" 2>&1; then
        echo "fuzz: $t FAILED (log: $out/$t.log)" >&2
        tail -40 "$out/$t.log" >&2
        status=1
    else
        grep -E 'stat::number_of_executed_units|stat::new_units_added' "$out/$t.log" | sed "s/^/fuzz: $t: /"
    fi
done
exit $status
