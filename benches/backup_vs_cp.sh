#!/usr/bin/env bash
# Backup bundles against the tools an admin would use, side by side in one run,
# on a database tree shaped like Ignite persistence (default: 2,565 files, 786 MB):
#
#   backup (copy + BLAKE3 manifest + re-hash + flush)  vs  cp -a            target <= 1.2x
#                                                      vs  cp -a; sync      (same durability)
#   backup verify                                      vs  sha256sum        target >= 3x faster
#   peak memory (max RSS) of backup and verify, on this tree and on a tiny one: < 64 MiB
#
# Rounds alternate the tools on a freshly flushed disk; medians are printed.
#
#   bash benches/backup_vs_cp.sh [ENTITIES] [FILES_PER_GROUP] [BYTES_PER_FILE] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
entities=${1:-170}
files=${2:-3}
bytes=${3:-307200}
rounds=${4:-5}
cargo build --release --quiet -p cmw-upgrade-cli -p cmw-upgrade-benches
bin=$PWD/target/release
work=${BENCH_DIR:-$PWD/target/bench-backup}
rm -rf "$work"
mkdir -p "$work"
"$bin/cmw-upgrade-fixtures" server "$work/root" deb > /dev/null
database="$work/root/var/lib/comindware/prod/Database"
rm -rf "$database"
"$bin/cmw-upgrade-fixtures" database "$database" "$entities" "$files" "$bytes"
echo "tree: $(find "$database" -type f | wc -l) files, $(du -sb "$database" | cut -f1) bytes"

now() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# Runs a command and prints its peak resident memory in KiB (GNU time's %M).
peak_kib() { /usr/bin/time -f %M -o "$work/rss" "$@" > /dev/null && cat "$work/rss"; }

# Under --root the bundle's --dest is a server path: /bundle is $work/root/bundle.
bundle="$work/root/bundle"
cp_times=(); cp_sync_times=(); backup_times=(); backup_rss=()
for round in $(seq "$rounds"); do
  rm -rf "$work/cp" "$bundle"; sync
  start=$(now); cp -a "$database" "$work/cp"; end=$(now)
  sync; synced=$(now)
  cp_times+=($((end - start))); cp_sync_times+=($((synced - start)))
  rm -rf "$work/cp"; sync
  start=$(now)
  backup_rss+=("$(peak_kib "$bin/cmw-upgrade" --root "$work/root" backup --instance prod --dest /bundle)")
  end=$(now)
  backup_times+=($((end - start)))
done

# Verify and sha256sum read the same files, page cache warm for both.
mapfile -d '' bundle_files < <(cd "$bundle" && find database -type f -print0)
(cd "$bundle" && cat "${bundle_files[@]}" > /dev/null)
verify_times=(); sha_times=(); verify_rss=()
for round in $(seq "$rounds"); do
  start=$(now); (cd "$bundle" && sha256sum "${bundle_files[@]}" > /dev/null); end=$(now)
  sha_times+=($((end - start)))
  start=$(now); verify_rss+=("$(peak_kib "$bin/cmw-upgrade" backup verify "$bundle")"); end=$(now)
  verify_times+=($((end - start)))
done

# Memory must not grow with the database: the same backup of the tiny example server.
# (A copy of it: the bundle is made inside the root.)
rm -rf "$work/small"
cp -a examples/server "$work/small"
tiny_rss=$(peak_kib "$bin/cmw-upgrade" --root "$work/small" backup --instance prod --dest /bundle)

cp_ms=$(printf '%s\n' "${cp_times[@]}" | median)
cp_sync_ms=$(printf '%s\n' "${cp_sync_times[@]}" | median)
backup_ms=$(printf '%s\n' "${backup_times[@]}" | median)
verify_ms=$(printf '%s\n' "${verify_times[@]}" | median)
sha_ms=$(printf '%s\n' "${sha_times[@]}" | median)
backup_peak=$(printf '%s\n' "${backup_rss[@]}" | sort -n | tail -1)
verify_peak=$(printf '%s\n' "${verify_rss[@]}" | sort -n | tail -1)
awk -v cp="$cp_ms" -v cps="$cp_sync_ms" -v b="$backup_ms" -v v="$verify_ms" -v s="$sha_ms" \
    -v br="$backup_peak" -v vr="$verify_peak" -v tr="$tiny_rss" -v n="$rounds" 'BEGIN {
  printf "backup:  %.2f s   cp -a: %.2f s   cp -a; sync: %.2f s\n", b/1e9, cp/1e9, cps/1e9
  printf "  ratio backup/cp -a: %.2f (target <= 1.2)   backup/(cp -a; sync): %.2f\n", b/cp, b/cps
  printf "verify:  %.2f s   sha256sum: %.2f s   speed-up: %.1fx (target >= 3)\n", v/1e9, s/1e9, s/v
  printf "peak memory: backup %.1f MiB (tiny server: %.1f MiB), verify %.1f MiB (target < 64)\n", br/1024, tr/1024, vr/1024
  printf "medians of %d rounds\n", n }'
rm -rf "$work"
