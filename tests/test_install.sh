#!/bin/sh
# test_install.sh - `meson install` of this build, used as another project
# would: into a temporary DESTDIR, then
#   - the layout: program, shared libraries with their SONAMEs and only
#     lathe_* exported, archives, headers, lathe.pc and lathe-runtime.pc,
#     the examples;
#   - every public header compiles on its own with `pkg-config --cflags lathe`;
#   - examples/consumer (installed with the examples) built with nothing but
#     pkg-config, shared and static, prints the numbers worked out by hand in
#     its comment;
#   - the installed `lathe compile`, with LATHE_RUNTIME_LIB/INC unset and no
#     pkg-config to help, finds its runtime beside itself and makes a trainer
#     that trains to the same checkpoint bits as this build's `lathe train`;
#   - moved elsewhere, the installation still does all of that; a lone copy
#     of the program finds the runtime through pkg-config, the variables
#     still override, and with nothing to find the error says where it looked.
# meson.build passes the build's directory options in the environment.
set -u
: "${LATHE_BIN:?} ${LATHE_SRC:?} ${LATHE_BUILD:?} ${LATHE_PREFIX:?} ${LATHE_LIBDIR:?}"
CC=${CC:-cc}
if [ -z "${MESON:-}" ] || ! command -v pkg-config >/dev/null; then
    echo "SKIP: test_install needs meson and pkg-config on PATH (MESON='${MESON:-}')" >&2
    exit 77
fi
TMP=$(mktemp -d "${TMPDIR:-/tmp}/lathe-install.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
. "$(dirname "$0")/checks.sh"
# a directory option of the build: relative to the prefix, or absolute
under() { case $1 in /*) echo "$1" ;; *) echo "$LATHE_PREFIX/$1" ;; esac; }
unset LATHE_RUNTIME_LIB LATHE_RUNTIME_INC PKG_CONFIG_SYSROOT_DIR

"$MESON" install -C "$LATHE_BUILD" --no-rebuild --quiet --destdir "$TMP/dest" >"$TMP/install.log" 2>&1 ||
    { cat "$TMP/install.log"; echo "FAIL: meson install"; exit 1; }

# Paths inside an installation whose root is $1 (the DESTDIR).
paths() {
    root=$1
    BIN=$root$(under "${LATHE_BINDIR:-bin}")
    LIB=$root$(under "$LATHE_LIBDIR")
    INC=$root$(under "${LATHE_INCLUDEDIR:-include}")/lathe
    DOC=$root$(under "${LATHE_DATADIR:-share}")/doc/lathe
    MAN=$root$(under "${LATHE_MANDIR:-share/man}")/man1/lathe.1
    PC=$LIB/pkgconfig
}
paths "$TMP/dest"

# ---- the layout --------------------------------------------------------------
check "lathe installed" [ -x "$BIN/lathe" ]
# the SONAME from the version: MAJOR.MINOR while MAJOR is 0, else MAJOR
major=${LATHE_VERSION%%.*}
minor=${LATHE_VERSION#*.}
minor=${minor%%.*}
[ "$major" = 0 ] && so=0.$minor || so=$major
for l in lathe lathe_runtime; do
    check "lib$l.a installed" [ -f "$LIB/lib$l.a" ]
    check "lib$l.so links to lib$l.so.$so" [ "$(readlink "$LIB/lib$l.so")" = "lib$l.so.$so" ]
    check "lib$l.so.$so links to lib$l.so.$LATHE_VERSION" [ "$(readlink "$LIB/lib$l.so.$so")" = "lib$l.so.$LATHE_VERSION" ]
    readelf -d "$LIB/lib$l.so.$LATHE_VERSION" >"$TMP/dyn" 2>&1
    check "lib$l.so's SONAME is lib$l.so.$so" contains "$TMP/dyn" "Library soname: [lib$l.so.$so]"
    nm -D --defined-only "$LIB/lib$l.so.$LATHE_VERSION" | awk 'NF == 3 { print $3 }' >"$TMP/syms"
    check "lib$l.so exports only lathe_* (not: $(grep -v '^lathe_' "$TMP/syms" | head -3 | tr '\n' ' '))" \
        sh -c "! grep -qv '^lathe_' '$TMP/syms'"
done
check "liblathe.so exports lathe_compile" sh -c "nm -D --defined-only '$LIB/liblathe.so' | grep -q ' T lathe_compile\$'"
check "liblathe_runtime.so exports lathe_optim_step" sh -c "nm -D --defined-only '$LIB/liblathe_runtime.so' | grep -q ' T lathe_optim_step\$'"
for h in lathe.h lathe_compiler.h lathe_autodiff.h lathe_program.h lathe_build.h lathe_desc.h lathe_models.h \
    lathe_runtime.h lathe_optim.h lathe_checkpoint.h lathe_trainer.h safetensors.h dataset.h lathe_dist.h; do
    check "include/lathe/$h installed" [ -f "$INC/$h" ]
done
check "internal headers stay out" test ! -e "$INC/fileerr.h" -a ! -e "$INC/ir.h" -a ! -e "$INC/program.h"
check "lathe.pc installed" [ -f "$PC/lathe.pc" ]
check "lathe-runtime.pc installed" [ -f "$PC/lathe-runtime.pc" ]
check "examples installed" test -f "$DOC/examples/mlp.lathe" -a -f "$DOC/examples/autograd_basics.c"
check "the consumer example installed" test -f "$DOC/examples/consumer/consumer.c" -a -f "$DOC/examples/consumer/Makefile"

# ---- the manual page: installed, for this version, and every flag in it ----------
check "man page installed" [ -f "$MAN" ]
check "man page is for version $LATHE_VERSION" sh -c "head -20 '$MAN' | grep -q '^\.TH LATHE 1 .*\"Lathe $LATHE_VERSION\"'"
if command -v groff >/dev/null; then
    groff -ww -z -man "$MAN" >"$TMP/groff.err" 2>&1
    check "groff renders the man page without warnings" test $? -eq 0 -a ! -s "$TMP/groff.err"
    cat "$TMP/groff.err"
    groff -man -Tascii -P-c -P-b -P-o -P-u -rLL=250n "$MAN" >"$TMP/man.txt" 2>/dev/null
    # every verb and every long flag that lathe's helps list
    { "$LATHE_BIN" --help; for v in compile train step sample dump plot; do "$LATHE_BIN" $v --help; done; } >"$TMP/helps" 2>&1
    for v in compile train step sample dump plot; do
        check "man page describes lathe $v" contains "$TMP/man.txt" "lathe $v"
    done
    for f in $(grep -oE -- '--[a-z][a-z0-9-]*' "$TMP/helps" | sort -u); do
        check "man page documents $f" grep -qE -- "$f([^a-z0-9-]|\$)" "$TMP/man.txt"
    done
else
    echo "NOTE: groff not found; the man page was not rendered"
fi

# ---- headers and the consumer, with nothing but pkg-config --------------------
# PKG_CONFIG_LIBDIR: no system .pc files but those Lathe needs (cjson, zlib)
syspc=$(pkg-config --variable=pcfiledir libcjson):$(pkg-config --variable=pcfiledir zlib)
# and Open MPI's ompi-c when the runtime has MPI (meson's mpi feature)
if [ "${LATHE_MPI:-0}" = 1 ]; then
    syspc=$syspc:$(pkg-config --variable=pcfiledir ompi-c)
    check "lathe-runtime.pc requires ompi-c (Requires.private)" \
        sh -c "PKG_CONFIG_PATH='$PC' pkg-config --print-requires-private lathe-runtime | grep -q '^ompi-c'"
    check "liblathe_runtime.so needs libmpi" sh -c "readelf -d '$LIB/liblathe_runtime.so' | grep -q 'NEEDED.*libmpi'"
else
    check "lathe-runtime.pc names no MPI" sh -c "! grep -qE 'ompi-c|-lmpi' '$PC/lathe-runtime.pc'"
    check "liblathe_runtime.so needs no libmpi" sh -c "! readelf -d '$LIB/liblathe_runtime.so' | grep -q libmpi"
fi
cflags=$(PKG_CONFIG_PATH="$PC" PKG_CONFIG_LIBDIR="$syspc" pkg-config --cflags lathe)
check "pkg-config --cflags lathe names include/lathe" sh -c "echo '$cflags' | grep -q -- '-I[^ ]*include/lathe'"
for h in "$INC"/*.h; do
    printf '#include <%s>\nint main(void) { return 0; }\n' "${h##*/}" >"$TMP/h.c"
    # shellcheck disable=SC2086
    check "${h##*/} compiles alone" "$CC" -std=c11 -Wall -Wextra -Werror -fsyntax-only $cflags "$TMP/h.c"
done

# The expected output, worked out by hand in consumer.c's comment.
consumer_ok() { # OUTPUT-FILE
    awk 'function near(a, b) { return (a - b < 1e-4 && b - a < 1e-4) }
         NR == 1 && $1 == "loss" && near($2, 1) && $3 == "grad.w" && near($4, 6) && near($5, 8) { ok++ }
         NR == 2 && $5 == "w" && near($6, 0.4) && near($7, 1.2) && $8 == "loss" && near($9, 16) { ok++ }
         END { exit ok == 2 ? 0 : 1 }' "$1"
}
# Build and run the consumer against the installation whose pkgconfig is $1,
# the way the README shows, with the Makefile too when make is here.
consumer() { # PC-DIR LABEL
    d=$TMP/consumer-$2
    rm -rf "$d"
    cp -r "$DOC/examples/consumer" "$d"
    export PKG_CONFIG_PATH="$1" PKG_CONFIG_LIBDIR="$syspc"
    # shellcheck disable=SC2046
    "$CC" -o "$d/shared" "$d/consumer.c" $(pkg-config --cflags --libs lathe) \
        -Wl,-rpath,"$(pkg-config --variable=libdir lathe)" >"$d/log" 2>&1
    check "$2: the consumer links with pkg-config --libs lathe" [ $? -eq 0 ]
    "$d/shared" >"$d/out" 2>>"$d/log"
    check "$2: the consumer runs" [ $? -eq 0 ]
    check "$2: the consumer's numbers are the hand-computed ones" consumer_ok "$d/out"
    # shellcheck disable=SC2046
    "$CC" -o "$d/static" "$d/consumer.c" $(pkg-config --cflags lathe) \
        $(pkg-config --static --libs lathe | sed -e 's/-llathe\b/-l:liblathe.a/' -e 's/-llathe_runtime\b/-l:liblathe_runtime.a/') \
        >>"$d/log" 2>&1
    check "$2: the consumer links statically with pkg-config --static --libs lathe" [ $? -eq 0 ]
    readelf -d "$d/static" >"$d/dyn" 2>&1
    check "$2: the static consumer needs no liblathe*.so" sh -c "! grep -q 'liblathe' '$d/dyn'"
    "$d/static" >"$d/out-static" 2>>"$d/log"
    check "$2: the static consumer's numbers are the hand-computed ones" consumer_ok "$d/out-static"
    if command -v make >/dev/null; then
        make -C "$d" consumer consumer-static >>"$d/log" 2>&1
        check "$2: make builds the consumer" [ $? -eq 0 ]
        "$d/consumer" >"$d/out-make" 2>>"$d/log" && "$d/consumer-static" >>"$d/out-make" 2>>"$d/log"
        check "$2: the Makefile's consumers print the same" sh -c "cat '$d/out' '$d/out-static' | cmp -s - '$d/out-make'"
    else
        echo "NOTE: make not found; examples/consumer/Makefile not tried"
    fi
    unset PKG_CONFIG_PATH PKG_CONFIG_LIBDIR
    [ "$fail" = 0 ] || cat "$d/log"
}
consumer "$PC" installed

# ---- the installed lathe compile -------------------------------------------------
# 32 images (28x28, bytes 'y' and newline) and labels 0..7 as IDX files
{ printf '\000\000\010\003\000\000\000\040\000\000\000\034\000\000\000\034'; yes | head -c $((32 * 784)); } >"$TMP/img"
{ printf '\000\000\010\001\000\000\000\040'; for i in 1 2 3 4; do printf '\000\001\002\003\004\005\006\007'; done; } >"$TMP/lbl"
train_flags="--data $TMP/img,$TMP/lbl --steps 3 --threads 1 --log-every 0"
# the reference: this build's lathe train (JIT) on the same model and data
"$LATHE_BIN" train "$LATHE_SRC/examples/mlp.lathe" -D hidden=16 --batch 8 $train_flags --save "$TMP/ref.safetensors" \
    >"$TMP/ref.log" 2>&1
check "this build's lathe train runs" [ $? -eq 0 ]
# $1 is a lathe; what it compiles must train like the reference.
compile_and_train() { # LATHE LABEL
    rm -f "$TMP/trainer" "$TMP/ck.safetensors"
    PKG_CONFIG_PATH= PKG_CONFIG_LIBDIR="$TMP/nothing" "$1" compile "$DOC/examples/mlp.lathe" -D hidden=16 --batch 8 \
        -o "$TMP/trainer" >"$TMP/compile.log" 2>&1
    check "$2: lathe compile links a trainer" [ $? -eq 0 ]
    [ -x "$TMP/trainer" ] || { cat "$TMP/compile.log"; return; }
    # shellcheck disable=SC2086
    "$TMP/trainer" $train_flags --save "$TMP/ck.safetensors" >"$TMP/train.log" 2>&1
    check "$2: the trainer trains" [ $? -eq 0 ]
    check "$2: the trainer's checkpoint is lathe train's, bit for bit" cmp -s "$TMP/ck.safetensors" "$TMP/ref.safetensors"
    ldd "$TMP/trainer" >"$TMP/ldd" 2>&1
    check "$2: the trainer needs no liblathe*.so and no LLVM" sh -c "! grep -qi 'liblathe\|llvm' '$TMP/ldd'"
}
compile_and_train "$BIN/lathe" installed

# ---- moved elsewhere -----------------------------------------------------------
mv "$TMP/dest" "$TMP/moved"
paths "$TMP/moved"
compile_and_train "$BIN/lathe" moved
consumer "$PC" moved

# A lone copy of the program: pkg-config, then the variables, then nothing.
mkdir "$TMP/lone"
cp "$BIN/lathe" "$TMP/lone/lathe"
PKG_CONFIG_PATH="$PC" PKG_CONFIG_LIBDIR="$syspc" "$TMP/lone/lathe" compile "$DOC/examples/mlp.lathe" \
    -D hidden=16 --batch 8 -o "$TMP/lone/t1" >"$TMP/lone.log" 2>&1
check "alone: lathe compile finds the runtime through pkg-config" test $? -eq 0 -a -x "$TMP/lone/t1"
LATHE_RUNTIME_LIB="$LIB/liblathe_runtime.a" LATHE_RUNTIME_INC="$INC" PKG_CONFIG_PATH= PKG_CONFIG_LIBDIR="$TMP/nothing" \
    "$TMP/lone/lathe" compile "$DOC/examples/mlp.lathe" -D hidden=16 --batch 8 -o "$TMP/lone/t2" >>"$TMP/lone.log" 2>&1
check "alone: LATHE_RUNTIME_LIB and LATHE_RUNTIME_INC are used" test $? -eq 0 -a -x "$TMP/lone/t2"
PKG_CONFIG_PATH= PKG_CONFIG_LIBDIR="$TMP/nothing" "$TMP/lone/lathe" compile "$DOC/examples/mlp.lathe" \
    -D hidden=16 --batch 8 -o "$TMP/lone/t3" >"$TMP/none.log" 2>&1
check "alone, nothing to find: exit status 1" [ $? -eq 1 ]
check "alone, nothing to find: no trainer" [ ! -e "$TMP/lone/t3" ]
check "alone, nothing to find: names the archive and where" contains "$TMP/none.log" "liblathe_runtime.a in $TMP/lone/"
check "alone, nothing to find: names the header" contains "$TMP/none.log" "lathe_trainer.h"
check "alone, nothing to find: says pkg-config was asked" contains "$TMP/none.log" "pkg-config for lathe-runtime"
check "alone, nothing to find: names the variables" contains "$TMP/none.log" "LATHE_RUNTIME_LIB"
[ "$fail" = 0 ] || { echo "--- lone:"; cat "$TMP/lone.log"; echo "--- none:"; cat "$TMP/none.log"; }

echo "test_install: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
