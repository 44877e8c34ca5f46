#!/bin/sh
# test.sh - the whole test suite: installs what is missing, builds, runs every
# test, then runs them again built with AddressSanitizer and
# UndefinedBehaviorSanitizer, then fuzzes every libFuzzer target for 15 s.
set -eu
cd "$(dirname "$0")"
sh ./setup.sh --no-run

status=0
meson test -C build --print-errorlogs || status=1

[ -f build-san/build.ninja ] ||
    meson setup build-san -Db_sanitize=address,undefined -Db_lundef=false \
        -Dc_args=-fno-sanitize-recover=all >/dev/null
ninja -C build-san >/dev/null
meson test -C build-san --print-errorlogs || status=1

# A short pass of every libFuzzer target (fuzz/run.sh; clang from Debian).
if ! command -v clang >/dev/null; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq clang >/dev/null
fi
fuzz=0
sh fuzz/run.sh 15 || { fuzz=1; status=1; }

# One closing line over both runs.
passed=$(cat build/meson-logs/testlog.json build-san/meson-logs/testlog.json | grep -c '"result": "OK"' || true)
failed=$(cat build/meson-logs/testlog.json build-san/meson-logs/testlog.json | grep -vc '"result": "OK"' || true)
echo "tests: $passed passed, $failed failed; fuzzing: $([ $fuzz = 0 ] && echo clean || echo FAILED)"
exit $status
