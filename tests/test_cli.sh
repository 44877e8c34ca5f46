#!/bin/sh
# test_cli.sh - the lathe command line: help, dump in text and DOT, plot, exit
# statuses and error locations.  Usage: test_cli.sh PATH/TO/lathe
set -u
LATHE=$1
DATA=$(dirname "$0")/data
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
. "$(dirname "$0")/checks.sh"

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
check "dot shows node ids" contains "$TMP/q.dot" 'label="%0 input a'
check "dot shows a pow_scalar's exponent" contains "$TMP/q.dot" "exponent=3"
check "dot numbers the operands of a binary op" contains "$TMP/q.dot" '[label="1"]'
"$LATHE" dump "$(dirname "$0")/../examples/mlp.lathe" --stage grad --format dot >"$TMP/m.dot"
check "dot draws backward nodes apart" contains "$TMP/m.dot" "darkorange"
check "dot groups a layer's nodes" contains "$TMP/m.dot" 'subgraph cluster_0 {'
check "dot names the layer" contains "$TMP/m.dot" 'label="fc1";'

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

# stages: grad appends the backward pass, opt simplifies it
"$LATHE" dump "$DATA/seed_q_grad.ir" --stage grad >"$TMP/g.ir"
check "grad exits 0" [ $? -eq 0 ]
check "grad names a.grad" contains "$TMP/g.ir" 'output "grad.a" %'
check "grad names b.grad" contains "$TMP/g.ir" 'output "grad.b" %'
check "grad consumes the backward mark" sh -c "! grep -q '^backward' '$TMP/g.ir'"
"$LATHE" dump "$TMP/g.ir" >"$TMP/g2.ir"
check "the backward graph parses back" cmp -s "$TMP/g.ir" "$TMP/g2.ir"
"$LATHE" dump "$DATA/seed_q_grad.ir" --stage opt >"$TMP/o.ir"
check "opt exits 0" [ $? -eq 0 ]
check "opt is smaller than grad" [ "$(grep -c ' = ' "$TMP/o.ir")" -lt "$(grep -c ' = ' "$TMP/g.ir")" ]
check "opt keeps the gradients" contains "$TMP/o.ir" 'output "grad.b" %'
"$LATHE" dump "$DATA/seed_q_grad.ir" --stage grad --format dot >"$TMP/g.dot"
check "grad as dot" contains "$TMP/g.dot" "digraph"
"$LATHE" dump "$DATA/mlp_loss.ir" --stage opt --loss loss >"$TMP/m.ir"
check "--loss exits 0" [ $? -eq 0 ]
check "--loss trains fc2" contains "$TMP/m.ir" 'output "grad.fc2.weight" %'
check "frozen fc1 gets no gradient" sh -c "! grep -q 'grad.fc1' '$TMP/m.ir'"
"$LATHE" dump "$DATA/mlp_loss.ir" --stage grad >"$TMP/out" 2>&1
check "grad without a loss exits 1" [ $? -eq 1 ]
check "grad without a loss says so" contains "$TMP/out" "nothing is marked for differentiation"
"$LATHE" dump "$DATA/mlp_loss.ir" --stage grad --loss nope >"$TMP/out" 2>&1
check "unknown --loss exits 1" [ $? -eq 1 ]
check "unknown --loss is named" contains "$TMP/out" "no output named 'nope'"
# compiler stages: kernels, memory plan, LLVM IR, assembly
"$LATHE" dump "$DATA/mlp_loss.ir" --loss loss --stage fused >"$TMP/f.txt"
check "fused exits 0" [ $? -eq 0 ]
check "fused lists kernels" contains "$TMP/f.txt" "kernel k0: writes"
check "fused marks backward nodes" contains "$TMP/f.txt" "matmul(B)"
check "fused shows an epilogue in one kernel" contains "$TMP/f.txt" "matmul(F) %8 add(F) %9 relu(F)"
check "fused names what a kernel reads" contains "$TMP/f.txt" "[#2 param 'fc1.weight' f32[5,3]]"
# golden fusion cases: tests/data/fuse_*.ir, each with the kernels derived by
# hand from the rules in compiler/fuse.c's opening comment beside it
# (fuse_*.expected).  Only the kernel, nodes and reads lines count: the space
# line of a contraction depends on the host's vector width.  A kernel's nodes
# are compared as a set, sorted by id: the order they are listed in follows
# the order the fuser visits operands, which is not a fusion decision (and
# which C leaves to the compiler where operands are built as arguments).
kernels() {
    awk '/^kernel |^  reads:/ { print }
         /^  nodes:/ {
             n = (NF - 1) / 2
             for (i = 1; i <= n; i++) { id[i] = substr($(2 * i), 2) + 0; op[i] = $(2 * i + 1) }
             for (i = 2; i <= n; i++)
                 for (j = i; j > 1 && id[j - 1] > id[j]; j--) {
                     t = id[j]; id[j] = id[j - 1]; id[j - 1] = t
                     t = op[j]; op[j] = op[j - 1]; op[j - 1] = t
                 }
             line = "  nodes:"
             for (i = 1; i <= n; i++) line = line " %" id[i] " " op[i]
             print line
         }' "$1"
}
for ir in "$DATA"/fuse_*.ir; do
    case=$(basename "$ir" .ir)
    "$LATHE" dump "$ir" --stage fused >"$TMP/$case.txt" 2>&1
    check "$case: fused exits 0" [ $? -eq 0 ]
    kernels "$TMP/$case.txt" >"$TMP/$case.got"
    kernels "$DATA/$case.expected" >"$TMP/$case.want"
    check "$case: the kernels derived by hand" cmp -s "$TMP/$case.want" "$TMP/$case.got"
    cmp -s "$TMP/$case.want" "$TMP/$case.got" || diff -u "$TMP/$case.want" "$TMP/$case.got"
done
"$LATHE" dump "$DATA/mlp_loss.ir" --loss loss --stage plan >"$TMP/p.txt"
check "plan exits 0" [ $? -eq 0 ]
check "plan has a total" contains "$TMP/p.txt" "total: "
check "plan shows lifetimes" contains "$TMP/p.txt" "in..out"
"$LATHE" dump "$DATA/seed_q_grad.ir" --stage llvm >"$TMP/l.ll"
check "llvm exits 0" [ $? -eq 0 ]
check "llvm defines kernels" contains "$TMP/l.ll" "define void @lathe_k0(ptr"
"$LATHE" dump "$DATA/seed_q_grad.ir" --stage asm >"$TMP/a.s"
check "asm exits 0" [ $? -eq 0 ]
check "asm has the kernel symbol" contains "$TMP/a.s" "lathe_k0:"
"$LATHE" dump "$DATA/seed_q.ir" --stage plan --format dot >"$TMP/out" 2>&1
check "dot of a plan exits 2" [ $? -eq 2 ]
"$LATHE" dump "$DATA/seed_q.ir" --stage fuzed >"$TMP/out" 2>&1
check "unknown stage exits 2" [ $? -eq 2 ]

# the training verbs: help, and command-line errors (exit 2)
for v in compile train step sample; do
    "$LATHE" $v --help >"$TMP/vhelp" 2>&1
    check "$v help exits 0" [ $? -eq 0 ]
    check "$v help shows usage" contains "$TMP/vhelp" "usage: lathe $v MODEL"
done
check "sample help lists --temperature" contains "$TMP/vhelp" "--temperature X"
"$LATHE" step --help >"$TMP/vhelp" 2>&1
check "step help lists --params-prefix" contains "$TMP/vhelp" "--params-prefix"
"$LATHE" --help >"$TMP/vhelp" 2>&1
check "help lists sample" contains "$TMP/vhelp" "sample MODEL --load CK"
"$LATHE" train --help >"$TMP/vhelp" 2>&1
for f in --data --eval --epochs --steps --batch --optimizer --lr --momentum --weight-decay --nesterov --seed \
    --shuffle --load --save --threads --ieee-denormals --lr-schedule --warmup --clip-grad-norm --clip-grad-value --no-decay-norm-bias --accumulate --log-file; do
    check "train help lists $f" contains "$TMP/vhelp" "  $f"
done
"$LATHE" compile "$DATA/mlp_loss.ir" >"$TMP/out" 2>&1
check "compile without -o exits 2" [ $? -eq 2 ]
"$LATHE" train --data x >"$TMP/out" 2>&1
check "train without a model exits 2" [ $? -eq 2 ]
check "train without a model says so" contains "$TMP/out" "expected MODEL first"
"$LATHE" compile "$DATA/mlp_loss.ir" -D width=3 -o "$TMP/t" >"$TMP/out" 2>&1
check "-D on text IR is refused" contains "$TMP/out" "text IR, which has no constants"
"$LATHE" compile "$DATA/seed_q.ir" -o "$TMP/t" >"$TMP/out" 2>&1
check "compile of a model without a loss exits 1" [ $? -eq 1 ]
check "compile of a model without a loss says so" contains "$TMP/out" "has no loss to train"

# descriptions told from text IR by their text: any file name, and standard input
cp "$(dirname "$0")/../examples/mlp.lathe" "$TMP/mlp.txt"
"$LATHE" dump "$TMP/mlp.txt" >"$TMP/out" 2>&1
check "a description named .txt is read as one" contains "$TMP/out" 'param "fc1.weight"'
"$LATHE" dump - --batch 3 <"$(dirname "$0")/../examples/mlp.lathe" >"$TMP/out" 2>&1
check "a description on standard input is read as one" contains "$TMP/out" "f32[3,"
"$LATHE" dump - <"$DATA/seed_q.ir" >"$TMP/out" 2>&1
check "text IR on standard input is still text IR" contains "$TMP/out" '%0 = input "a"'
"$LATHE" dump - --batch 3 <"$DATA/seed_q.ir" >"$TMP/out" 2>&1
check "--batch on text IR from standard input is refused" contains "$TMP/out" "standard input holds text IR"

# descriptions at every stage
EX=$(dirname "$0")/../examples
for st in traced grad opt fused plan llvm asm; do
    "$LATHE" dump "$EX/fashion_cnn.lathe" --stage $st --batch 2 >"$TMP/d_$st" 2>&1
    check "dump fashion_cnn.lathe --stage $st exits 0" [ $? -eq 0 ]
done
check "traced description names the bn buffers" contains "$TMP/d_traced" 'buffer "bn2.running_var" f32[64]'
check "traced description has the batch" contains "$TMP/d_traced" 'input "image" f32[2,1,28,28]'
check "grad stage of a description has gradients" contains "$TMP/d_grad" 'output "grad.conv1.weight"'
"$LATHE" dump "$EX/fashion_cnn.lathe" --eval >"$TMP/d_eval" 2>&1
check "eval graph has correct" contains "$TMP/d_eval" 'output "correct"'
check "eval graph uses running statistics" contains "$TMP/d_eval" 'training=false'
"$LATHE" dump "$EX/resnet18.lathe" -D width=4 -D size=32 --format dot >"$TMP/d_dot" 2>&1
check "dot of resnet18.lathe" contains "$TMP/d_dot" "layer4.1.conv2.weight"
"$LATHE" dump "$EX/resnet18.lathe" -D widht=4 >"$TMP/out" 2>&1
check "a misspelled define exits 1" [ $? -eq 1 ]
check "a misspelled define is named" contains "$TMP/out" "did you mean 'width'"
"$LATHE" dump "$DATA/seed_q.ir" --eval >"$TMP/out" 2>&1
check "--eval on text IR exits 2" [ $? -eq 2 ]

# the decomposed stage: the graph whose node ids the fused and plan dumps cite;
# every "%N op" a kernel lists is "%N = op" there, and every %N of the plan too
"$LATHE" dump "$EX/resnet18.lathe" -D width=4 -D size=32 --batch 2 --stage decomposed >"$TMP/dd" 2>&1
check "dump --stage decomposed exits 0" [ $? -eq 0 ]
check "the decomposed stage has no composites" sh -c "! grep -q ' = batch_norm2d\| = cross_entropy' '$TMP/dd'"
"$LATHE" dump "$EX/resnet18.lathe" -D width=4 -D size=32 --batch 2 --stage fused >"$TMP/df" 2>&1
"$LATHE" dump "$EX/resnet18.lathe" -D width=4 -D size=32 --batch 2 --stage plan >"$TMP/dp" 2>&1
grep '^  nodes:' "$TMP/df" | sed 's/^  nodes: //; s/([FB]) */\n/g' | grep . | sort -u >"$TMP/cited"
grep -o '%[0-9]* [a-z_0-9]*' "$TMP/dp" | sort -u >>"$TMP/cited"
missing=0
while read -r id op; do
    grep -q "^$id = $op " "$TMP/dd" || { missing=$((missing + 1)); echo "  not in the decomposed stage: $id $op"; }
done <"$TMP/cited"
check "the fused and plan dumps cite nodes" [ "$(wc -l <"$TMP/cited")" -gt 100 ]
check "every node they cite is in the decomposed stage, with its op" [ "$missing" -eq 0 ]

# a data-parallel program's dumps: one process's part of 2 (half the batch,
# gathers before the sums, communication steps among the kernels)
"$LATHE" dump "$EX/mlp.lathe" --batch 8 --procs 2 --stage decomposed >"$TMP/pd" 2>&1
check "dump --procs 2 exits 0" [ $? -eq 0 ]
check "dump --procs 2: the input holds 4 of the 8 samples" grep -q 'input "image" f32\[4,' "$TMP/pd"
check "dump --procs 2: the partials are gathered from 2 processes" grep -q "= all_gather .* parts=2" "$TMP/pd"
"$LATHE" dump "$EX/mlp.lathe" --batch 8 --procs 2 --stage fused >"$TMP/pf" 2>&1
check "dump --procs 2 --stage fused shows the communication steps" grep -q "communication: all-gather along dim 0 from 2 processes" "$TMP/pf"
# 4 shards on 2 processes: each adds its own two first (the shards' sum is a
# tree, (p0 + p1) + (p2 + p3)) and gathers one partial per sum
"$LATHE" dump "$EX/mlp.lathe" --batch 8 --procs 2 --shards 4 --stage decomposed >"$TMP/pd4" 2>&1
check "dump --procs 2 --shards 4 gathers" grep -q "= all_gather .* axis=0 parts=2" "$TMP/pd4"
check "dump --procs 2 --shards 4: one partial from each process" sh -c "! grep '= all_gather' '$TMP/pd4' | grep -v -E 'axis=0 parts=2 : f32\[2[],]'"
"$LATHE" compile "$EX/mlp.lathe" -o "$TMP/never" --shards 5 >"$TMP/out" 2>&1
check "compile --shards 5 on batch 64 exits 1" [ $? -eq 1 ]
check "compile --shards 5 on batch 64 says why" contains "$TMP/out" "--shards 5: a batch of 64 samples does not split into 5 shards"
"$LATHE" train "$EX/mlp.lathe" --shards 7 --data "$TMP/none" >"$TMP/out" 2>&1
check "train --shards 7 on batch 64 exits 1" [ $? -eq 1 ]
check "train --shards 7 on batch 64 says why" contains "$TMP/out" "--shards 7: a batch of 64 samples does not split into 7 shards"
"$LATHE" dump "$EX/mlp.lathe" --batch 8 --procs 2 --shards 3 >"$TMP/out" 2>&1
check "dump: 3 shards on 2 processes exits 1" [ $? -eq 1 ]
check "dump: 3 shards on 2 processes says why" contains "$TMP/out" "3 shards on 2 processes: the processes must divide the shards"
"$LATHE" dump "$EX/mlp.lathe" --stage decomposed --format dot >"$TMP/out" 2>&1
check "decomposed as dot" contains "$TMP/out" "digraph"

# targets: tiles follow --target-cpu, whatever the host
"$LATHE" dump "$EX/fashion_cnn.lathe" --batch 8 --stage fused --target-cpu x86-64-v3 >"$TMP/t3" 2>&1
check "fused for x86-64-v3 exits 0" [ $? -eq 0 ]
"$LATHE" dump "$EX/fashion_cnn.lathe" --batch 8 --stage fused --target-cpu skylake-avx512 >"$TMP/t5" 2>&1
check "fused for skylake-avx512 exits 0" [ $? -eq 0 ]
check "the fused dump names its target" contains "$TMP/t3" "# target x86-64-v3: 32-byte vectors, 16 registers, FMA"
check "AVX-512 tiles are 64 bytes" contains "$TMP/t5" "tiles of 64-byte vectors"
grep '^  space.*tiles of' "$TMP/t3" >"$TMP/t3t"
grep '^  space.*tiles of' "$TMP/t5" >"$TMP/t5t"
check "x86-64-v3 and skylake-avx512 get different tiles" sh -c "[ -s '$TMP/t3t' ] && ! cmp -s '$TMP/t3t' '$TMP/t5t'"
"$LATHE" dump "$EX/mlp.lathe" --stage asm --target-cpu x86-64-v3 >"$TMP/a3" 2>&1
"$LATHE" dump "$EX/mlp.lathe" --stage asm --target-cpu skylake-avx512 >"$TMP/a5" 2>&1
check "AVX2 code has no 512-bit registers" sh -c "grep -q vfmadd '$TMP/a3' && ! grep -q zmm '$TMP/a3'"
check "AVX-512 code uses them" contains "$TMP/a5" "zmm"
"$LATHE" dump "$EX/mlp.lathe" --stage fused --target-cpu skylake-avx512 --target-features=-avx512f >"$TMP/out" 2>&1
check "--target-features removes a feature" contains "$TMP/out" "# target skylake-avx512 with the given features: 32-byte"
"$LATHE" dump "$EX/mlp.lathe" --stage fused --target-cpu pentium9 >"$TMP/out" 2>&1
check "an unknown CPU exits 1" [ $? -eq 1 ]
check "an unknown CPU is named" contains "$TMP/out" "--target-cpu pentium9: not a CPU LLVM 19 knows"
"$LATHE" dump "$EX/mlp.lathe" --stage fused --target-features +avx9000 >"$TMP/out" 2>&1
check "an unknown feature is refused" contains "$TMP/out" "'+avx9000' is not +FEATURE or -FEATURE"
"$LATHE" compile "$EX/mlp.lathe" -o "$TMP/t" --target-features avx2 >"$TMP/out" 2>&1
check "compile refuses a feature without + or -" contains "$TMP/out" "'avx2' is not +FEATURE or -FEATURE"
"$LATHE" dump "$EX/mlp.lathe" --stage jit >"$TMP/out" 2>&1
check "the jit stage has nothing to dump" [ $? -eq 2 ]

# plot: a log drawn as an SVG; its geometry is test_plot.c's
printf '{"step": 1, "epoch": 1, "lr": 0.1, "loss": 2.3}\n{"step": 2, "epoch": 1, "lr": 0.1, "loss": NaN}\n' >"$TMP/run.jsonl"
printf '{"step": 2, "epoch": 1, "train_loss": 2, "test_loss": 1.9, "test_accuracy": 0.3}\n' >>"$TMP/run.jsonl"
"$LATHE" plot "$TMP/run.jsonl" >"$TMP/out" 2>&1
check "plot exits 0" [ $? -eq 0 ]
check "plot writes LOG.svg by default" contains "$TMP/run.svg" "<svg xmlns="
check "plot says where it wrote" contains "$TMP/out" "wrote $TMP/run.svg (1 step, 1 evaluation)"
check "plot says what it left out" contains "$TMP/out" "run.jsonl: 1 null, NaN or infinite value left out (the first at step 2)"
"$LATHE" plot "$TMP/run.jsonl" -o - --title T >"$TMP/out.svg" 2>"$TMP/err"
check "plot -o - writes standard output" sh -c "head -c 5 '$TMP/out.svg' | grep -q '<?xml' && grep -q '</svg>' '$TMP/out.svg'"
printf '{"step": 1, "loss": 2}\n{"step": 2 "loss": 1}\n' >"$TMP/bad.jsonl"
"$LATHE" plot "$TMP/bad.jsonl" -o "$TMP/bad.svg" >"$TMP/out" 2>&1
check "a malformed log exits 1" [ $? -eq 1 ]
check "a malformed line is located" contains "$TMP/out" "bad.jsonl:2: not valid JSON at column 12"
check "a malformed log writes nothing" [ ! -e "$TMP/bad.svg" ]
"$LATHE" plot "$TMP/missing.jsonl" >"$TMP/out" 2>&1
check "a missing log exits 1" [ $? -eq 1 ]
check "a missing log is named" contains "$TMP/out" "missing.jsonl: cannot open: No such file or directory"
"$LATHE" plot >"$TMP/out" 2>&1
check "plot without a log exits 2" [ $? -eq 2 ]
"$LATHE" plot "$TMP/run.jsonl" --smooth 1.5 >"$TMP/out" 2>&1
check "a bad --smooth exits 2" [ $? -eq 2 ]
check "a bad --smooth is named" contains "$TMP/out" "bad value '1.5' for --smooth"
"$LATHE" plot --help >"$TMP/out" 2>&1
check "plot --help lists --log-y" contains "$TMP/out" "--log-y"
check "help lists plot" contains "$TMP/help" "plot LOG -o OUT.svg"

# under a launcher that started several processes, step and sample (one-
# process tools) are refused before any data is read or any file written;
# training runs data-parallel (tests/test_dp.sh)
MLP="$(dirname "$0")/../examples/mlp.lathe"
for v in step sample; do
    OMPI_COMM_WORLD_SIZE=2 OMPI_COMM_WORLD_RANK=0 "$LATHE" $v "$MLP" >"$TMP/out" 2>&1
    check "$v under mpirun -np 2 exits 1" [ $? -eq 1 ]
    check "$v under mpirun -np 2 says why" contains "$TMP/out" "as one of 2 processes (OMPI_COMM_WORLD_SIZE=2), but $v runs as one process"
done
OMPI_COMM_WORLD_SIZE=1 OMPI_COMM_WORLD_RANK=0 "$LATHE" train "$MLP" >"$TMP/out" 2>&1
check "train under mpirun -np 1 goes on (to ask for --data)" contains "$TMP/out" "--data is required"

echo "cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
