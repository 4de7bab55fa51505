#!/usr/bin/env bash
# Pruning a database tree of >= 3,000 files with cmw-upgrade versus `rm -rf` with the
# same globs in the node folder (what the procedure tells the admin to type), side by
# side in one run: each run removes a fresh copy, page cache warm.
# Target: cmw-upgrade within 1.2x of rm -rf (ratio cmw/rm <= 1.2).
#
#   bash benches/prune_vs_rm.sh [ENTITIES] [FILES_PER_GROUP] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
entities=${1:-60}
files=${2:-10}
runs=${3:-7}
cargo build --release --quiet -p cmw-upgrade-cli -p cmw-upgrade-benches
bin=target/release
work=target/bench-prune
rm -rf "$work"
mkdir -p "$work"
"$bin/cmw-upgrade-fixtures" database "$work/template" "$entities" "$files" 4096
node=$(cd "$work/template/db" && ls -d node00-*)
echo "tree: $(find "$work/template" -type f | wc -l) files, $(find "$work/template" | wc -l) entries; removing $(cmw=$("$bin/cmw-upgrade" --json prune-caches "$work/template" --check); echo "$cmw" | grep -c '"db/node[^"]*/') entries"

now() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
rm_with_globs() {
  (cd "$1/db/$node" && rm -rf cacheGroup-*-TableIdentity cacheGroup-*-TableIdentityReplicated \
    cacheGroup-*Value cacheGroup-*ValueReplicated cache-ignite-sys-cache cp metastorage cacheGroup-Keys)
}
rm_times=(); cmw_times=()
for run in $(seq "$runs"); do
  for tool in rm cmw; do
    copy="$work/$tool-$run"
    cp -a "$work/template" "$copy"
    find "$copy" > /dev/null  # warm the dentry cache, as for rm
    sync
    start=$(now)
    if [ "$tool" = rm ]; then rm_with_globs "$copy"; else "$bin/cmw-upgrade" prune-caches "$copy" > /dev/null; fi
    end=$(now)
    if [ "$tool" = rm ]; then rm_times+=($((end - start))); else cmw_times+=($((end - start))); fi
  done
  # Both must leave the same tree.
  diff <(cd "$work/rm-$run" && find . | sort) <(cd "$work/cmw-$run" && find . | sort) > /dev/null \
    || { echo "the two trees differ after pruning" >&2; exit 1; }
  rm -rf "$work/rm-$run" "$work/cmw-$run"
done
r=$(printf '%s\n' "${rm_times[@]}" | median)
c=$(printf '%s\n' "${cmw_times[@]}" | median)
awk -v r="$r" -v c="$c" -v n="$runs" 'BEGIN {
  printf "rm -rf with globs: %.1f ms   cmw-upgrade prune-caches: %.1f ms   ratio cmw/rm: %.2f (target <= 1.2), median of %d\n", r/1e6, c/1e6, c/r, n }'
