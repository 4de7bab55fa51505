#!/usr/bin/env bash
# Builds everything an admin carries to a server, into target/dist/:
#   cmw-upgrade-<version>-<arch>-linux-musl.tar.gz  the static binary, completions
#                                                    (bash, zsh, fish), man pages,
#                                                    README and licences
#   cmw-upgrade_<version>-1_<amd64|arm64>.deb       for Astra Linux, Ubuntu, Debian
#   cmw-upgrade-<version>-1.<arch>.rpm              for RED OS, Rocky, ALT (xz payload)
# for x86_64 and aarch64,
#   cmw_upgrade-<version>-cp39-abi3-manylinux_2_28_x86_64.whl  (dist/wheel.sh)
#   comindware-upgrade-<version>.tar.gz             the Ansible collection
#                                                    (ansible-galaxy collection build)
#   SHA256SUMS
# and checks each (dist/check.sh). Installs what it needs itself: the musl
# targets (rustup), cargo-deb and cargo-generate-rpm (crates.io, pinned, into
# target/dist-tools); the aarch64 cross compiler and qemu-user come from
# Debian's packages (.ci/run installs them).
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

# x86_64 first: its binary writes the completions and man pages.
targets=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl)
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
out=target/dist
# Outside target/: cargo-deb takes any path with target/ in it for a build output.
staging=dist/.staging
tools=target/dist-tools
cargo_deb_version=3.8.0
cargo_generate_rpm_version=0.21.1

step "tools"
for target in "${targets[@]}"; do
  if ! rustup target list --installed | grep -qx "$target"; then
    rustup target add "$target"
  fi
done
if ! command -v aarch64-linux-gnu-gcc >/dev/null 2>&1; then
  echo "the aarch64 build needs Debian's cross compiler: apt-get install gcc-aarch64-linux-gnu" >&2
  exit 2
fi
install_tool() { # crate version binary
  if ! "$tools/bin/$3" --version 2>/dev/null | grep -q "$2"; then
    CARGO_TARGET_DIR="$tools/build" cargo install --quiet --locked --root "$tools" "$1" --version "$2"
  fi
}
install_tool cargo-deb "$cargo_deb_version" cargo-deb
install_tool cargo-generate-rpm "$cargo_generate_rpm_version" cargo-generate-rpm
export PATH="$PWD/$tools/bin:$PATH"

# Completions and man pages are the same for every architecture: made once,
# by the x86_64 binary (which runs here).
make_texts() { # binary
  rm -rf "$staging"
  mkdir -p "$staging/completions" "$staging/man"
  "$1" completions bash > "$staging/completions/cmw-upgrade.bash"
  "$1" completions zsh > "$staging/completions/_cmw-upgrade"
  "$1" completions fish > "$staging/completions/cmw-upgrade.fish"
  "$1" man --dir "$staging/man"
  gzip -9n "$staging"/man/*.1
}

# Every artifact of an earlier build goes, so SHA256SUMS lists only this one's.
rm -f "$out"/cmw-upgrade*.tar.gz "$out"/cmw-upgrade_*.deb "$out"/cmw-upgrade-*.rpm \
  "$out"/cmw_upgrade-*.whl "$out"/comindware-upgrade-*.tar.gz "$out"/SHA256SUMS
for target in "${targets[@]}"; do
  arch=${target%%-*}
  step "static binary ($target)"
  # relocation-model=static: a plain static executable (no dynamic section at
  # all), not a static PIE, so `ldd` and `file` say what an admin expects.
  # The commit for --version comes from git (cmw-upgrade-cli/build.rs), or from
  # CMW_UPGRADE_COMMIT when building from a source tarball.
  flags_var=CARGO_TARGET_$(tr 'a-z-' 'A-Z_' <<< "$target")_RUSTFLAGS
  export "$flags_var=-C relocation-model=static"
  if [ "$arch" = aarch64 ]; then
    # Debian's cross compiler links (with Rust's own musl start files) and
    # compiles the C parts (BLAKE3's NEON code, ring's HMAC for the dns cut-over).
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc
    export CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc
  else
    # ring's C and assembly (the TSIG HMAC of the dns cut-over) call no libc:
    # the host's gcc compiles them; cc-rs would look for x86_64-linux-musl-gcc.
    export CC_x86_64_unknown_linux_musl="${CC_x86_64_unknown_linux_musl:-gcc}"
  fi
  cargo build --release --locked --target "$target" -p cmw-upgrade-cli
  binary=target/$target/release/cmw-upgrade
  if [ "$arch" = x86_64 ]; then
    step "completions and man pages"
    make_texts "$binary"
  fi

  step "tarball ($arch)"
  name=cmw-upgrade-$version-$arch-linux-musl
  rm -rf "${out:?}/$name"
  mkdir -p "$out/$name"
  cp "$binary" "$out/$name/"
  cp -r "$staging/completions" "$staging/man" "$out/$name/"
  cp README.md LICENSE-MIT LICENSE-APACHE "$out/$name/"
  # Reproducible: fixed owner and order, times from the last commit.
  stamp=$(git log -1 --format=%ct 2>/dev/null || date +%s)
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$stamp" \
    -C "$out" -czf "$out/$name.tar.gz" "$name"
  rm -rf "${out:?}/$name"

  step ".deb ($arch)"
  cargo deb -p cmw-upgrade-cli --no-build --no-strip --target "$target" --output "$out/"

  step ".rpm ($arch)"
  # xz: RED OS 7.3 and Rocky 8 rpm cannot read zstd payloads.
  cargo generate-rpm -p cmw-upgrade-cli --target "$target" --payload-compress xz -o "$out/"
done

if [ "$wheel" = 1 ]; then
  step "Python wheel"
  bash dist/wheel.sh
fi

step "Ansible collection"
# ansible-galaxy from the pinned ansible-core (the venv ansible/tests/run.sh
# makes; made here when missing). The collection's version is the tool's.
collection=ansible/ansible_collections/comindware/upgrade
collection_version=$(sed -n 's/^version: *//p' "$collection/galaxy.yml")
if [ "$collection_version" != "$version" ]; then
  echo "$collection/galaxy.yml says version $collection_version, Cargo.toml $version: make them one" >&2
  exit 1
fi
ansible_venv=target/ansible-venv
[ -x "$ansible_venv/bin/python" ] || python3 -m venv "$ansible_venv"
"$ansible_venv/bin/pip" install --quiet --disable-pip-version-check -r ansible/tests/requirements.txt
rm -rf "$collection/tests/output"
find ansible -name __pycache__ -type d -prune -exec rm -rf {} +
"$ansible_venv/bin/ansible-galaxy" collection build "$collection" --output-path "$out" --force
# Installs as an admin would, air-gapped, and its modules' docs load.
galaxy_check=$(mktemp -d)
ANSIBLE_COLLECTIONS_PATH=$galaxy_check "$ansible_venv/bin/ansible-galaxy" collection install --offline -p "$galaxy_check" \
  "$out/comindware-upgrade-$version.tar.gz" >/dev/null
ANSIBLE_COLLECTIONS_PATH=$galaxy_check "$ansible_venv/bin/ansible-doc" comindware.upgrade.cmw_upgrade >/dev/null
rm -rf "$galaxy_check"

step "checks"
bash dist/check.sh

(cd "$out" && sha256sum -- *.tar.gz *.deb *.rpm $(ls -- *.whl 2>/dev/null) > SHA256SUMS)
step "built"
ls -l "$out" | grep -v staging
