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
show "$cmw" prune-caches "$example/var/lib/comindware/prod/Database" --check
# What carrying the old config values into the new instance would change (diffs, secrets masked).
show "$cmw" --root examples/new-server config migrate --from "$example" --instance prod --check
# A backup bundle of the old server (database + configs + BLAKE3 manifest), then its checks.
bundles=$(mktemp -d)
trap 'rm -rf "$bundles"' EXIT
show "$cmw" --root "$example" backup --instance prod --dest "$bundles/prod"
show "$cmw" backup verify "$bundles/prod"
show "$cmw" --root "$example" backup drift "$bundles/prod" --instance prod
