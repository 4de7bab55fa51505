#!/usr/bin/env bash
# Peak memory (max RSS, from GNU time) of `cmw-upgrade logs verdict` on two logs
# with no line end for hundreds of megabytes:
#   nul-tail   UpgradeOntology.log ends in 512 MiB of NUL bytes (a crash left the
#              file's tail unwritten);
#   long-line  the upgrade log's last record is one line of 300 MB, its keyword
#              `error` at the very end (so the verdict must read it all: failed).
# Target: peak RSS < 64 MiB for each.
#
#   bash benches/verdict_memory.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if ! [ -x /usr/bin/time ]; then
  echo "needs GNU time at /usr/bin/time (apt-get install time / dnf install time)" >&2
  exit 2
fi
cargo build --release --quiet -p cmw-upgrade-cli
bin=$PWD/target/release/cmw-upgrade
work=$(mktemp -d "${TMPDIR:-/tmp}/cmw-verdict-memory.XXXXXX")
trap 'rm -rf "$work"' EXIT
target_kib=$((64 * 1024))
completed="2026-11-27 10:00:01,000 INFO Upgrade of ontology completed successfully"

mkdir -p "$work/nul-tail" "$work/long-line"
{
  printf '2026-11-27 10:00:00,000 INFO Upgrade of ontology started\n%s\n' "$completed"
  head -c $((512 * 1024 * 1024)) /dev/zero
} > "$work/nul-tail/UpgradeOntology.log"
printf '2026-11-27 10:00:02,000 INFO Upgrade completed\n' > "$work/nul-tail/upgrade2026-11-27.log"

printf '%s\n' "$completed" > "$work/long-line/UpgradeOntology.log"
{
  printf '2026-11-27 10:00:02,000 INFO Upgrade started\n2026-11-27 10:00:03,000 INFO '
  # `yes` ends on the closed pipe, which pipefail would count as a failure.
  yes 'lorem ipsum dolor sit amet' | tr '\n' ' ' | head -c 300000000 || true
  printf ' error\n'
} > "$work/long-line/upgrade2026-11-27.log"

status=0
for case in nul-tail long-line; do
  dir="$work/$case"
  code=0
  /usr/bin/time -f '%M %e' -o "$work/time" "$bin" --json logs verdict --log-dir "$dir" > "$work/out" || code=$?
  if [ "$code" -gt 3 ]; then
    echo "$case: cmw-upgrade exited $code" >&2
    cat "$work/out" >&2
    exit 1
  fi
  # GNU time puts "Command exited with non-zero status N" first when it did.
  read -r rss_kib seconds < <(tail -n 1 "$work/time")
  verdict=$(sed -n 's/^ *"verdict": "\([a-z_]*\)".*/\1/p' "$work/out" | head -n 1)
  bytes=$(du -cb "$dir"/* | tail -n 1 | cut -f 1)
  verdict_ok=ok
  rss_ok=ok
  [ "$rss_kib" -lt "$target_kib" ] || { rss_ok=OVER; status=1; }
  case "$case:$verdict" in
    nul-tail:succeeded | long-line:failed) ;;
    *) verdict_ok="UNEXPECTED"; status=1 ;;
  esac
  awk -v c="$case" -v k="$rss_kib" -v s="$seconds" -v b="$bytes" -v v="$verdict" -v r="$rss_ok" -v o="$verdict_ok" 'BEGIN {
    printf "%-9s %4d MiB of logs: peak RSS %6.1f MiB (target < 64 MiB: %s) in %s s; verdict %s (%s)\n", c, b / 1048576, k / 1024, r, s, v, o }'
done
exit "$status"
