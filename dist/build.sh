#!/usr/bin/env bash
# Builds everything an admin carries to a server, into target/dist/:
#   cmw-upgrade-<version>-x86_64-linux-musl.tar.gz  the static binary, completions
#                                                    (bash, zsh, fish), man pages,
#                                                    README and licences
#   cmw-upgrade_<version>-1_amd64.deb               for Astra Linux, Ubuntu, Debian
#   cmw-upgrade-<version>-1.x86_64.rpm              for RED OS, Rocky, ALT (xz payload)
#   cmw_upgrade-<version>-cp39-abi3-manylinux_2_28_x86_64.whl  (dist/wheel.sh)
#   SHA256SUMS
# and checks each (dist/check.sh). Installs what it needs itself: the musl
# target (rustup), cargo-deb and cargo-generate-rpm (crates.io, pinned, into
# target/dist-tools).
#
#   bash dist/build.sh            everything
#   bash dist/build.sh --no-wheel the binary and the packages only
set -euo pipefail
cd "$(dirname "$0")/.."

wheel=1
for arg in "$@"; do
  case "$arg" in
    --no-wheel) wheel=0 ;;
    *) echo "usage: bash dist/build.sh [--no-wheel]" >&2; exit 2 ;;
  esac
done

step() { printf '\n==> %s\n' "$*"; }

target=x86_64-unknown-linux-musl
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
out=target/dist
# Outside target/: cargo-deb takes any path with target/ in it for a build output.
staging=dist/.staging
tools=target/dist-tools
cargo_deb_version=3.8.0
cargo_generate_rpm_version=0.21.1

step "tools"
if ! rustup target list --installed | grep -qx "$target"; then
  rustup target add "$target"
fi
install_tool() { # crate version binary
  if ! "$tools/bin/$3" --version 2>/dev/null | grep -q "$2"; then
    CARGO_TARGET_DIR="$tools/build" cargo install --quiet --locked --root "$tools" "$1" --version "$2"
  fi
}
install_tool cargo-deb "$cargo_deb_version" cargo-deb
install_tool cargo-generate-rpm "$cargo_generate_rpm_version" cargo-generate-rpm
export PATH="$PWD/$tools/bin:$PATH"

step "static binary ($target)"
# relocation-model=static: a plain static executable (no dynamic section at all),
# not a static PIE, so `ldd` and `file` say what an admin expects.
# The commit for --version comes from git (cmw-upgrade-cli/build.rs), or from
# CMW_UPGRADE_COMMIT when building from a source tarball.
CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="-C relocation-model=static" \
  cargo build --release --locked --target "$target" -p cmw-upgrade-cli
binary=target/$target/release/cmw-upgrade

step "completions and man pages"
rm -rf "$staging"
mkdir -p "$staging/completions" "$staging/man"
"$binary" completions bash > "$staging/completions/cmw-upgrade.bash"
"$binary" completions zsh > "$staging/completions/_cmw-upgrade"
"$binary" completions fish > "$staging/completions/cmw-upgrade.fish"
"$binary" man --dir "$staging/man"
gzip -9n "$staging"/man/*.1

step "tarball"
name=cmw-upgrade-$version-x86_64-linux-musl
rm -rf "${out:?}/$name" "$out/$name.tar.gz"
mkdir -p "$out/$name"
cp "$binary" "$out/$name/"
cp -r "$staging/completions" "$staging/man" "$out/$name/"
cp README.md LICENSE-MIT LICENSE-APACHE "$out/$name/"
# Reproducible: fixed owner and order, times from the last commit.
stamp=$(git log -1 --format=%ct 2>/dev/null || date +%s)
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$stamp" \
  -C "$out" -czf "$out/$name.tar.gz" "$name"
rm -rf "${out:?}/$name"

step ".deb"
rm -f "$out"/cmw-upgrade_*.deb
cargo deb -p cmw-upgrade-cli --no-build --no-strip --target "$target" --output "$out/"

step ".rpm"
rm -f "$out"/cmw-upgrade-*.rpm
# xz: RED OS 7.3 and Rocky 8 rpm cannot read zstd payloads.
cargo generate-rpm -p cmw-upgrade-cli --target "$target" --payload-compress xz -o "$out/"

if [ "$wheel" = 1 ]; then
  step "Python wheel"
  bash dist/wheel.sh
fi

step "checks"
bash dist/check.sh

(cd "$out" && sha256sum -- *.tar.gz *.deb *.rpm $(ls -- *.whl 2>/dev/null) > SHA256SUMS)
step "built"
ls -l "$out" | grep -v staging
