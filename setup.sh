#!/bin/sh
# setup.sh - on a fresh Debian 12 machine: install what is missing, build,
# and run the main job.  Idempotent; quiet when everything is present.
#   ./setup.sh            install, build, run the main job
#   ./setup.sh --no-run   install and build only (used by test.sh)
set -eu
cd "$(dirname "$0")"

PACKAGES="gcc meson ninja-build pkg-config libcmocka-dev llvm-19-dev libcjson-dev zlib1g-dev dataset-fashion-mnist fortunes"
# Open MPI: the runtime's processes of a data-parallel run (lathe_dist.h,
# meson's mpi feature, on when found) and the mpirun its test runs them with
PACKAGES="$PACKAGES libopenmpi-dev openmpi-bin"

missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "setup: installing$missing"
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build >/dev/null

if [ "${1:-}" != "--no-run" ]; then
    # The main job: compile the Fashion-MNIST CNN into a native trainer (with
    # its program for 2 processes too: mpirun -np 2 build/fashion_cnn ... trains
    # the same run data-parallel, to the same bits), train one epoch (SGD lr
    # 0.05, momentum 0.9, batch 64), print the test accuracy, and draw the
    # run's log (a JSON line per step) as a picture.
    ./build/lathe compile examples/fashion_cnn.lathe -o build/fashion_cnn --ranks 2
    rm -f build/fashion_cnn.jsonl   # --log-file appends: one run per picture
    ./build/fashion_cnn --data /usr/share/datasets/fashion-mnist --epochs 1 \
        --lr 0.05 --momentum 0.9 --shuffle --eval --log-file build/fashion_cnn.jsonl
    ./build/lathe plot build/fashion_cnn.jsonl -o build/fashion_cnn.svg \
        --title "fashion_cnn.lathe: one epoch of Fashion-MNIST (SGD, lr 0.05, momentum 0.9, batch 64)"
    echo "setup: the training curves are in build/fashion_cnn.svg (open it in a web browser)"
fi
