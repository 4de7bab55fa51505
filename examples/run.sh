#!/usr/bin/env bash
# The README's first command: builds cmw-upgrade and runs it on the example servers
# shipped in examples/: server/ is the old Astra Linux 4.7 server (instance "prod",
# its data-structure upgrade finished), new-server/ a freshly created 5.0 instance.
# Reads only; the one thing it writes is a backup bundle in a temporary folder, removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p cmw-upgrade-cli
cmw=target/release/cmw-upgrade
example=examples/server

show() { printf '\n$ %s\n' "$*"; "$@"; }

show "$cmw" --root "$example" detect --instance prod
# A verdict exits 0 when the upgrade succeeded, 1 when it failed, 3 when not finished.
show "$cmw" --root "$example" logs verdict --instance prod
# Under --root every server path on the command line is inside that root.
show "$cmw" --root "$example" prune-caches /var/lib/comindware/prod/Database --check
# The rest writes, so it works on copies of the two servers in a temporary folder.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -a "$example" "$work/old"
cp -a examples/new-server "$work/new"
mkdir -p "$work/old/srv/backups" "$work/new/srv/backups"
# A backup bundle of the old server (database + configs + BLAKE3 manifest), then its checks.
show "$cmw" --root "$work/old" backup --instance prod --dest /srv/backups/prod
show "$cmw" --root "$work/old" backup verify /srv/backups/prod
show "$cmw" --root "$work/old" backup drift /srv/backups/prod --instance prod
# The bundle carried to the new server; what carrying the old config values into the
# new instance would change (diffs, secrets masked), from the bundle's config/ folder.
cp -a "$work/old/srv/backups/prod" "$work/new/srv/backups/prod"
show "$cmw" --root "$work/new" config migrate --from /srv/backups/prod/config --instance prod --check
