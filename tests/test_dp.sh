#!/bin/sh
# test_dp.sh - data-parallel training (runtime/trainer.c) under Open MPI's
# mpirun: P processes on a global batch give the bits of one process.
#   - the hand-written trainer (test_dp_model.c, whose programs for 2 and 3
#     processes gather their shards' partials as a data-parallel compile's
#     do), on 1, 2 and 3 processes: the same checkpoint, byte for byte, and
#     the same evaluations (shuffled, --accumulate 2, Adam, --eval); resumed
#     on another process count; batch norm per process (local) differs on
#     2 and not on 1; process counts it has no program for, or that do not
#     divide its batch or shards, refused saying how to compile for them;
#     step refused; a rank that gets SIGTERM stops every rank after the same
#     step, and the run resumes exactly; SIGTERM to mpirun too (with the
#     time to save that odls_base_sigkill_timeout gives); a rank killed
#     with SIGKILL ends the run within $BOUND s and the last checkpoint
#     loads; a NaN loss stops every rank; a process that cannot start
#     stops them all; built without MPI, refused under mpirun -np 2;
#   - lathe compile --ranks and lathe train on a description with batch norm
#     (when this lathe has --ranks; the compiler side of issue 15), and on
#     a GPT with dropout.
# Exits 77 (skipped) when there is no Open MPI mpirun.
#   test_dp.sh LATHE TEST_DP_MODEL TEST_DP_MODEL_NOMPI
set -u
LATHE=${1:?usage: test_dp.sh LATHE TEST_DP_MODEL TEST_DP_MODEL_NOMPI}
M=${2:?usage: test_dp.sh LATHE TEST_DP_MODEL TEST_DP_MODEL_NOMPI}
NOMPI=${3:?usage: test_dp.sh LATHE TEST_DP_MODEL TEST_DP_MODEL_NOMPI}
BOUND=20        # seconds within which a failed rank must end the run
TMP=$(mktemp -d "${TMPDIR:-/tmp}/lathe-dp.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
. "$(dirname "$0")/checks.sh"
finish() { # STATUS-WHEN-NOTHING-FAILED
    echo "test_dp: $pass passed, $fail failed"
    [ "$fail" -eq 0 ] || exit 1
    exit "$1"
}
# run NAME CMD...: CMD's output in $TMP/NAME.out (in $out), its status in $rc, seconds in $secs
run() {
    out=$TMP/$1.out
    shift
    t0=$(date +%s)
    "$@" >"$out" 2>&1
    rc=$?
    secs=$(($(date +%s) - t0))
}
show() { [ "$fail" -eq "$1" ] || cat "$out"; }    # FAILS-BEFORE: the output when a check failed since
lines() { grep -c -- "$2" "$1"; }                  # FILE PATTERN: how many lines match
# evals FILE: a --log-file's evaluation lines
evals() { grep test_loss "$1"; }
# bg NAME CMD...: CMD in the background, its output in $TMP/NAME.out, its pid in $bgpid
bg() {
    out=$TMP/$1.out
    shift
    "$@" >"$out" 2>&1 &
    bgpid=$!
}
# started FILE: wait up to $BOUND s for FILE to be written (a --log-file
# line: a step done; a checkpoint: a save); false if nothing came
started() {
    i=0
    while [ ! -s "$1" ] && [ $i -lt $((BOUND * 10)) ]; do sleep 0.1; i=$((i + 1)); done
    [ -s "$1" ]
}
# never_started WHAT: the background job $job did not get going: a failed
# check, and the job killed
never_started() {
    check "$1" false
    kill -9 $job 2>/dev/null
    wait $job
}
# finished PID: wait up to 2 x $BOUND s for the background job PID; its
# status in $rc (124 when it had to be killed), seconds in $secs
finished() {
    t0=$(date +%s)
    i=0
    while kill -0 "$1" 2>/dev/null && [ $i -lt $((BOUND * 20)) ]; do sleep 0.1; i=$((i + 1)); done
    if kill -0 "$1" 2>/dev/null; then
        kill -9 "$1"
        wait "$1"
        rc=124
    else
        wait "$1"
        rc=$?
    fi
    secs=$(($(date +%s) - t0))
}

"$M" data "$TMP/train.safetensors" 60 && "$M" data "$TMP/test.safetensors" 25 && "$M" data "$TMP/nan.safetensors" 60 30
check "test data written" [ $? -eq 0 ]
# 3 epochs of 2 steps of 2 x 12 samples, evaluated after each (3 batches
# of 12, the last padded)
F="--data $TMP/train.safetensors --eval-data $TMP/test.safetensors --epochs 3 --shuffle --seed 3 --accumulate 2
   --optimizer adam --lr 0.05 --log-every 1"
LONG="--data $TMP/train.safetensors --steps 1000000000 --lr 0.001 --log-every 0"

# ---- one process -----------------------------------------------------------------
run ref "$M" sync $F --save "$TMP/ref" --log-file "$TMP/ref.log"
check "one process: status 0 ($rc)" [ "$rc" -eq 0 ]
check "one process: evaluated 3 times" [ "$(lines "$TMP/ref.log" test_loss)" -eq 3 ]
check "one process: the startup line as before" contains "$out" "batch 24 (2 x 12 accumulated), 60 samples"
show 0
run ref-nompi "$NOMPI" sync $F --save "$TMP/ref-nompi"
check "built without MPI, one process: the same bits" cmp -s "$TMP/ref" "$TMP/ref-nompi"
run local1 "$M" local $F --save "$TMP/local1"
check "batch norm per process, one process: the same bits" cmp -s "$TMP/ref" "$TMP/local1"

# ---- under mpirun -----------------------------------------------------------------
have_open_mpi "nothing ran on several processes" || finish 77
# root needs --allow-run-as-root; --oversubscribe: more ranks than cores;
# --bind-to none: 3 ranks on one core would take turns
MPIRUN="mpirun --allow-run-as-root --oversubscribe --bind-to none"

run nompi timeout 60 $MPIRUN -np 2 "$NOMPI" sync $F
check "built without MPI, mpirun -np 2: exits non-zero ($rc)" [ "$rc" -ne 0 -a "$rc" -ne 124 ]
check "built without MPI, mpirun -np 2: says so" contains "$out" "built without MPI support"
check "built without MPI, mpirun -np 2: nothing trained" sh -c "! grep -q 'steps/epoch' '$out'"
show 0
if [ "${LATHE_MPI:-1}" != 1 ]; then
    echo "NOTE: this build has no MPI (-Dmpi=disabled, or MPI not found): nothing trained on several processes"
    finish 0
fi

for np in 1 2 3; do
    f0=$fail
    run "np$np" timeout 120 $MPIRUN -np $np "$M" sync $F --save "$TMP/np$np" --log-file "$TMP/np$np.log"
    check "np $np: status 0 ($rc)" [ "$rc" -eq 0 ]
    check "np $np: the checkpoint of one process, byte for byte" cmp -s "$TMP/ref" "$TMP/np$np"
    check "np $np: the evaluations of one process" sh -c "[ \"\$(grep test_loss '$TMP/ref.log')\" = \"\$(grep test_loss '$TMP/np$np.log')\" ]"
    check "np $np: one startup line" [ "$(lines "$out" "steps/epoch")" -eq 1 ]
    check "np $np: one summary" [ "$(lines "$out" "saved $TMP/np$np at step 6")" -eq 1 ]
    check "np $np: one log" [ "$(lines "$TMP/np$np.log" '"step"')" -eq "$(lines "$TMP/ref.log" '"step"')" ]
    [ $np -eq 1 ] || check "np $np: the startup line says the shards and the processes" \
        contains "$out" "batch 24 (2 x 12 accumulated, 6 shards), 60 samples, 2 steps/epoch, adam lr 0.05 weight decay 0, $np processes x"
    show $f0
done

# resumed on another process count: 2 then 3, and 3 then one
f0=$fail
run half2 timeout 120 $MPIRUN -np 2 "$M" sync $F --steps 3 --save "$TMP/res23"
check "resume: 3 steps on 2 processes ($rc)" [ "$rc" -eq 0 ]
run rest3 timeout 120 $MPIRUN -np 3 "$M" sync $F --load "$TMP/res23" --save "$TMP/res23"
check "resume: the rest on 3 processes ($rc)" [ "$rc" -eq 0 ]
check "resume: 2 then 3 processes give one process's bits" cmp -s "$TMP/ref" "$TMP/res23"
run half3 timeout 120 $MPIRUN -np 3 "$M" sync $F --steps 4 --save "$TMP/res31"
run rest1 "$M" sync $F --load "$TMP/res31" --save "$TMP/res31"
check "resume: 3 processes then one give one process's bits" cmp -s "$TMP/ref" "$TMP/res31"
show $f0

# batch norm per process: its mean over each process's samples
f0=$fail
run local2 timeout 120 $MPIRUN -np 2 "$M" local $F --save "$TMP/local2"
check "local: status 0 ($rc)" [ "$rc" -eq 0 ]
check "local: the startup line says so" contains "$out" "batch norm per process"
check "local: 2 processes train other parameters than synchronized ones" sh -c "! '$M' same '$TMP/ref' '$TMP/local2' 2>/dev/null"
show $f0

# process counts without a program
f0=$fail
run one2 timeout 60 $MPIRUN -np 2 "$M" one $F
check "no program for 2: status 1 ($rc)" [ "$rc" -eq 1 ]
check "no program for 2: says so once" [ "$(lines "$out" "dp_toy was compiled for 1 process, and this run has 2")" -eq 1 ]
check "no program for 2: says how to compile one" contains "$out" "lathe compile dp_toy.lathe -o TRAINER --ranks 1,2"
check "no program for 2: and lathe train" contains "$out" "train it with lathe train"
run sync4 timeout 60 $MPIRUN -np 4 "$M" sync $F
check "4 processes, 6 shards: status 1 ($rc)" [ "$rc" -eq 1 ]
check "4 processes, 6 shards: says why" contains "$out" "ordered sums of 6 shards, which 4 processes do not divide"
check "4 processes, 6 shards: says how to compile" contains "$out" "--ranks 1,2,3,4 --shards S"
run sync5 timeout 60 $MPIRUN -np 5 "$M" sync $F
check "5 processes, batch 12: says why ($rc)" contains "$out" "5 processes do not split dp_toy's batch of 12"
run step2 timeout 60 $MPIRUN -np 2 "$M" step --inputs "$TMP/train.safetensors" -o "$TMP/step.out"
check "step under mpirun -np 2: status 1 ($rc)" [ "$rc" -eq 1 ]
check "step under mpirun -np 2: says it runs as one process" contains "$out" "but step runs as one process"
show $f0

# a process that cannot start (rank 0 cannot take the checkpoint's lock):
# they all stop, none trains
if command -v flock >/dev/null 2>&1; then
    f0=$fail
    flock "$TMP/locked.lock" sleep 30 &
    holder=$!
    sleep 0.5
    run locked timeout 60 $MPIRUN -np 2 "$M" sync $F --save "$TMP/locked"
    check "rank 0 cannot start: status 1 ($rc)" [ "$rc" -eq 1 ]
    check "rank 0 cannot start: says why" contains "$out" "another trainer is saving to it"
    check "rank 0 cannot start: nothing trained" sh -c "! grep -q 'steps/epoch' '$out'"
    kill "$holder"
    wait "$holder" 2>/dev/null
    show $f0
else
    echo "NOTE: no flock(1): the refused start was not tried"
fi

# a NaN loss (sample 30: step 3, on rank 1 of 3) stops every process
f0=$fail
run nan timeout 120 $MPIRUN -np 3 "$M" sync --data "$TMP/nan.safetensors" --epochs 2 --save-every 1 --save "$TMP/nan.ck"
check "NaN: status 1 ($rc)" [ "$rc" -eq 1 ]
check "NaN: said once, naming the step" [ "$(lines "$out" "the loss is NaN at step 3")" -eq 1 ]
check "NaN: the checkpoint of step 2 is kept" [ "$("$M" at "$TMP/nan.ck")" = 2 ]
show $f0

# SIGTERM to rank 1 of 3 only: the ranks agree to stop after the same step,
# rank 0 saves it, and the run resumes exactly (on 2 processes)
f0=$fail
bg term1 $MPIRUN -np 3 "$M" sync $LONG --save "$TMP/term.ck" --log-file "$TMP/term.log"
job=$bgpid
if started "$TMP/term.log" && rank1=$(pgrep -P $job | sed -n 2p) && [ -n "$rank1" ]; then
    kill -TERM "$rank1"
    finished $job
    check "SIGTERM to rank 1: the run ends within $BOUND s ($secs s, status $rc)" [ "$secs" -le $BOUND -a "$rc" -ne 124 ]
    check "SIGTERM to rank 1: status 143 ($rc)" [ "$rc" -eq 143 ]
    at=$(sed -n 's/.*interrupted by SIGTERM at step \([0-9]*\);.*/\1/p' "$out")
    check "SIGTERM to rank 1: rank 0 says where, once" [ "$(lines "$out" "interrupted by SIGTERM at step")" -eq 1 ]
    check "SIGTERM to rank 1: the checkpoint holds that step ($at)" [ -n "$at" -a "$("$M" at "$TMP/term.ck")" = "$at" ]
    if [ -n "$at" ]; then
        run term-rest timeout 120 $MPIRUN -np 2 "$M" sync $LONG --steps $((at + 7)) --load "$TMP/term.ck" --save "$TMP/term.ck"
        run term-ref "$M" sync $LONG --steps $((at + 7)) --save "$TMP/term.ref"
        check "SIGTERM to rank 1: resumed, the bits of one process" cmp -s "$TMP/term.ref" "$TMP/term.ck"
    fi
else
    never_started "SIGTERM to rank 1: the run started"
fi
show $f0

# SIGTERM (or Ctrl-C) to mpirun: Open MPI 4.1 sends the processes SIGCONT,
# SIGTERM odls_base_sigkill_timeout seconds later, and SIGKILL as long after
# that: given 5 s, they save and stop
f0=$fail
bg termrun $MPIRUN --mca odls_base_sigkill_timeout 5 -np 2 "$M" sync $LONG --save "$TMP/termrun.ck" --log-file "$TMP/termrun.log"
job=$bgpid
if started "$TMP/termrun.log"; then
    kill -TERM $job
    finished $job
    at=$(sed -n 's/.*interrupted by SIGTERM at step \([0-9]*\);.*/\1/p' "$out")
    check "SIGTERM to mpirun: the run ends within $BOUND s ($secs s, status $rc)" [ "$secs" -le $BOUND -a "$rc" -ne 124 -a "$rc" -ne 0 ]
    check "SIGTERM to mpirun: rank 0 saved where it stopped ($at)" [ -n "$at" -a "$("$M" at "$TMP/termrun.ck")" = "$at" ]
else
    never_started "SIGTERM to mpirun: the run started"
fi
show $f0

# rank 1 of 3 killed: mpirun ends the others; the last checkpoint is whole
f0=$fail
bg kill $MPIRUN -np 3 "$M" sync $LONG --save-every 200 --save "$TMP/kill.ck" --log-file "$TMP/kill.log"
job=$bgpid
if started "$TMP/kill.ck" && rank1=$(pgrep -P $job | sed -n 2p) && [ -n "$rank1" ]; then
    kill -9 "$rank1"
    finished $job
    check "rank 1 killed: the run ends within $BOUND s ($secs s, status $rc)" [ "$secs" -le $BOUND -a "$rc" -ne 124 ]
    check "rank 1 killed: status non-zero ($rc)" [ "$rc" -ne 0 ]
    check "rank 1 killed: mpirun says so" contains "$out" "exited on signal 9 (Killed)"
    at=$("$M" at "$TMP/kill.ck")
    run kill-load "$M" sync $LONG --steps $((at + 1)) --load "$TMP/kill.ck"
    check "rank 1 killed: the last checkpoint (step $at) loads and trains on ($rc)" [ "$rc" -eq 0 ]
else
    never_started "rank 1 killed: the run started and saved"
fi
show $f0

# ---- lathe compile --ranks, lathe train -------------------------------------------
if ! "$LATHE" compile --help 2>&1 | grep -q -- "--ranks"; then
    echo "SKIP: lathe compile has no --ranks (the compiler side of data-parallel training is not here yet):" \
         "lathe compile --ranks and lathe train under mpirun were not run"
    finish 0
fi
cat >"$TMP/dp_small.lathe" <<'EOF'
model dp_small
batch N = 12
input image: f32[N, 1, 8, 8]
input label: i64[N]

h = relu(batch_norm(conv2d(image, 4, 3, padding=1) as conv1) as bn1)
h = max_pool2d(h, 2)
logits = linear(flatten(h), 5) as fc
output logits
loss cross_entropy(logits, label)
EOF
"$M" images "$TMP/im.safetensors" 60 && "$M" images "$TMP/imt.safetensors" 25
check "image data written" [ $? -eq 0 ]
S="--shards 6"
IF="--data $TMP/im.safetensors --eval-data $TMP/imt.safetensors --epochs 2 --shuffle --momentum 0.9 --lr 0.05
    --log-every 1"
f0=$fail
run compile "$LATHE" compile "$TMP/dp_small.lathe" -o "$TMP/T" --ranks 1,2,3 $S
check "lathe compile --ranks 1,2,3: status 0 ($rc)" [ "$rc" -eq 0 ]
run compile-local "$LATHE" compile "$TMP/dp_small.lathe" -o "$TMP/TL" --ranks 1,2,3 $S --local-bn
check "lathe compile --ranks 1,2,3 --local-bn: status 0 ($rc)" [ "$rc" -eq 0 ]
run compile-one "$LATHE" compile "$TMP/dp_small.lathe" -o "$TMP/T1" --ranks 1 $S
check "lathe compile --ranks 1: status 0 ($rc)" [ "$rc" -eq 0 ]
show $f0
if [ "$fail" -ne 0 ]; then finish 0; fi

# (a) the native trainer on 1, 2 and 3 processes
f0=$fail
run cref "$TMP/T" $IF --save "$TMP/cref" --log-file "$TMP/cref.log"
check "native, one process: status 0 ($rc)" [ "$rc" -eq 0 ]
for np in 2 3; do
    run "c$np" timeout 300 $MPIRUN -np $np "$TMP/T" $IF --save "$TMP/c$np" --log-file "$TMP/c$np.log"
    check "native, np $np: status 0 ($rc)" [ "$rc" -eq 0 ]
    check "native, np $np: its program for $np processes" contains "$out" "$np processes x"
    check "native, np $np: the tensors of one process" "$M" same "$TMP/cref" "$TMP/c$np"
    check "native, np $np: the evaluations of one process" sh -c "[ \"\$(grep test_loss '$TMP/cref.log')\" = \"\$(grep test_loss '$TMP/c$np.log')\" ]"
done
show $f0

# the gathers done at once where they start (no overlap): the same bits
f0=$fail
run c2n timeout 300 $MPIRUN -np 2 "$TMP/T" $IF --no-overlap --save "$TMP/c2n"
check "native, np 2, --no-overlap: status 0 ($rc)" [ "$rc" -eq 0 ]
check "native, np 2, --no-overlap: the tensors of one process" "$M" same "$TMP/cref" "$TMP/c2n"
show $f0

# (b) lathe train (JIT) under mpirun: the native trainer's bits
f0=$fail
run jit2 timeout 300 $MPIRUN -np 2 "$LATHE" train "$TMP/dp_small.lathe" $S $IF --save "$TMP/jit2"
check "lathe train, np 2: status 0 ($rc)" [ "$rc" -eq 0 ]
check "lathe train, np 2: a program for 2 processes" contains "$out" "2 processes x"
check "lathe train, np 2: the native trainer's tensors" "$M" same "$TMP/cref" "$TMP/jit2"
show $f0

# (c) resumed: 3 steps on 2 processes, the rest on 3, as one process
f0=$fail
run cres2 timeout 300 $MPIRUN -np 2 "$TMP/T" $IF --steps 3 --save "$TMP/cres"
run cres3 timeout 300 $MPIRUN -np 3 "$TMP/T" $IF --load "$TMP/cres" --save "$TMP/cres"
check "native resumed, 2 then 3 processes: status 0 ($rc)" [ "$rc" -eq 0 ]
check "native resumed, 2 then 3 processes: the tensors of one process" "$M" same "$TMP/cref" "$TMP/cres"
show $f0

# (d) a rank killed: the run ends, the last checkpoint loads
f0=$fail
bg ckill $MPIRUN -np 2 "$TMP/T" --data "$TMP/im.safetensors" --steps 1000000000 --log-every 0 --save-every 20 \
    --save "$TMP/ckill.ck"
job=$bgpid
if started "$TMP/ckill.ck" && rank1=$(pgrep -P $job | sed -n 2p) && [ -n "$rank1" ]; then
    kill -9 "$rank1"
    finished $job
    check "native, rank 1 killed: the run ends within $BOUND s, non-zero ($secs s, status $rc)" \
        [ "$secs" -le $BOUND -a "$rc" -ne 124 -a "$rc" -ne 0 ]
    at=$("$M" at "$TMP/ckill.ck")
    run ckill-load "$TMP/T" --data "$TMP/im.safetensors" --steps $((at + 1)) --load "$TMP/ckill.ck"
    check "native, rank 1 killed: the last checkpoint (step $at) loads ($rc)" [ "$rc" -eq 0 ]
else
    never_started "native, rank 1 killed: the run started and saved"
fi
show $f0

# (e) batch norm per process: the same on one process, not on 2
f0=$fail
run lref "$TMP/TL" $IF --save "$TMP/lref"
check "--local-bn, one process: the synchronized trainer's tensors" "$M" same "$TMP/cref" "$TMP/lref"
run l2 timeout 300 $MPIRUN -np 2 "$TMP/TL" $IF --save "$TMP/l2"
check "--local-bn, np 2: status 0 ($rc)" [ "$rc" -eq 0 ]
check "--local-bn, np 2: other parameters than synchronized batch norm" sh -c "! '$M' same '$TMP/cref' '$TMP/l2' 2>/dev/null"
show $f0

# (g) a GPT with dropout (each process's masks are its part of the global
# batch's) through lathe train: one process's bits on 2
f0=$fail
GPT="$(dirname "$0")/../examples/char_gpt.lathe"
awk 'BEGIN { for (i = 0; i < 300; i++) printf "the quick brown fox %d jumps over the lazy dog\n", i }' >"$TMP/text.txt"
G="-D layers=1 -D width=32 -D heads=2 -D context=16 --batch 8 --data text:$TMP/text.txt --steps 3 --lr 0.01"
run gref "$LATHE" train "$GPT" $G --save "$TMP/gref"
check "char_gpt, one process: status 0 ($rc)" [ "$rc" -eq 0 ]
run g2 timeout 300 $MPIRUN -np 2 "$LATHE" train "$GPT" $G --save "$TMP/g2"
check "char_gpt, np 2: status 0 ($rc)" [ "$rc" -eq 0 ]
check "char_gpt, np 2: the tensors of one process" "$M" same "$TMP/gref" "$TMP/g2"
show $f0

# (f) compiled for one process, started on 2
f0=$fail
run c1on2 timeout 60 $MPIRUN -np 2 "$TMP/T1" $IF
check "--ranks 1 on 2 processes: status 1 ($rc)" [ "$rc" -eq 1 ]
check "--ranks 1 on 2 processes: says so" contains "$out" "was compiled for 1 process, and this run has 2"
check "--ranks 1 on 2 processes: says how to compile for them" contains "$out" "--ranks 1,2"
show $f0

finish 0
