#!/usr/bin/env bash
# Size and start-up time of the binary that is copied to servers: the static
# musl release build (what dist/build.sh packs), next to this machine's glibc
# release build. Start-up is `cmw-upgrade --version` (parse arguments, print,
# exit) and `cmw-upgrade --help`, run N times in a row; the mean is printed.
#
#   bash benches/binary_size_startup.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-300}
musl=target/x86_64-unknown-linux-musl/release/cmw-upgrade
glibc=target/release/cmw-upgrade
if [ ! -x "$musl" ]; then
  echo "build it first: bash dist/build.sh --no-wheel" >&2
  exit 2
fi
cargo build --release --locked --quiet -p cmw-upgrade-cli

mean_ms() { # binary args...: mean wall time of one run, in ms
  local start end
  start=$(date +%s%N)
  for _ in $(seq "$runs"); do "$@" > /dev/null; done
  end=$(date +%s%N)
  awk -v ns=$((end - start)) -v n="$runs" 'BEGIN { printf "%.2f", ns / n / 1e6 }'
}

for build in musl glibc; do
  binary=${!build}
  size=$(stat -c %s "$binary")
  printf '%-5s %6.2f MiB  --version %s ms  --help %s ms  (%s runs; %s)\n' "$build" \
    "$(awk -v b="$size" 'BEGIN { print b / 1048576 }')" \
    "$(mean_ms "$binary" --version)" "$(mean_ms "$binary" --help)" "$runs" \
    "$(file -b "$binary" | cut -d, -f1-2,4 | sed 's/BuildID.*//')"
done
