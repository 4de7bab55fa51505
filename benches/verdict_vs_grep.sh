#!/usr/bin/env bash
# The whole verdict over a folder with a 1 GiB upgrade log versus `grep -c -i error`
# on the same file, side by side in one run, page cache warm for both.
# Target: the verdict is at least as fast as grep (ratio grep/verdict >= 1.0).
#
#   bash benches/verdict_vs_grep.sh [SIZE_BYTES] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-1073741824}
runs=${2:-5}
cargo build --release --quiet -p cmw-upgrade-cli -p cmw-upgrade-benches
bin=target/release
work=target/bench-verdict
mkdir -p "$work/Logs"
log="$work/Logs/upgrade2026-11-24.log"
if [ ! -f "$log" ] || [ "$(stat -c %s "$log")" -lt "$size" ]; then
  "$bin/cmw-upgrade-fixtures" log "$log" "$size" 50000
fi
printf '2026-11-24 10:00:00,001 INFO x y z 1 1 %s\n' "'Upgrade of ontology completed successfully'" > "$work/Logs/UpgradeOntology.log"
cat "$log" > /dev/null  # warm the page cache for both

now() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# Output goes to a file, not /dev/null: GNU grep stops at the first match when it sees /dev/null.
time_ns() { local start end; start=$(now); "$@" > "$work/out" || [ $? -le 3 ]; end=$(now); echo $((end - start)); }

echo "file: $log ($(stat -c %s "$log") bytes); $runs runs each, median"
for locale in "${LANG:-C.UTF-8}" C; do
  verdict=(); grep_c=()
  for _ in $(seq "$runs"); do
    verdict+=("$(time_ns "$bin/cmw-upgrade" --json logs verdict --log-dir "$work/Logs")")
    grep_c+=("$(LC_ALL=$locale time_ns grep -c -i error "$log")")
  done
  v=$(printf '%s\n' "${verdict[@]}" | median)
  g=$(printf '%s\n' "${grep_c[@]}" | median)
  awk -v v="$v" -v g="$g" -v l="$locale" 'BEGIN {
    printf "grep -c -i error (LC_ALL=%s): %.3f s   cmw-upgrade logs verdict: %.3f s   ratio grep/verdict: %.2f (target >= 1.0)\n", l, g/1e9, v/1e9, g/v }'
done
# The verdict is "failed" (exit 1): the log holds error records on purpose.
errors=$({ "$bin/cmw-upgrade" --json logs verdict --log-dir "$work/Logs" || [ $? -le 3 ]; } | sed -n 's/.*"errors_total": \([0-9]*\).*/\1/p')
echo "verdict found $errors error records; grep counted $(LC_ALL=C grep -c -i error "$log") lines containing 'error' (it cannot tell ErrorHandler or '0 errors' from errors)"
