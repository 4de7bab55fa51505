#!/usr/bin/env bash
# Checks what dist/build.sh built in target/dist/, as an admin's server would
# meet it: the static binary has no dynamic dependency and runs; the .deb
# installs with dpkg, runs, and is removed cleanly, and lintian finds no error;
# the .rpm lists the same files as the .deb, its scripts and an xz payload.
# Needs root (dpkg -i) and file, dpkg, lintian, rpm, qemu-user-static (the
# aarch64 binary runs through it), all installed by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

out=target/dist
fail() { echo "check failed: $*" >&2; exit 1; }
ok() { printf '  ok  %s\n' "$*"; }
one() { # the one file matching a glob
  local matches=( $1 )
  [ "${#matches[@]}" = 1 ] && [ -e "${matches[0]}" ] || fail "expected one $1, found: ${matches[*]}"
  printf '%s' "${matches[0]}"
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

check_tarball() { # arch runner...: the binary runs through the runner (qemu for aarch64)
  local arch=$1 tarball dir binary
  shift
  tarball=$(one "$out/cmw-upgrade-*-$arch-linux-musl.tar.gz")
  echo "tarball: $tarball"
  mkdir -p "$work/$arch"
  tar -xzf "$tarball" -C "$work/$arch"
  dir=$(one "$work/$arch/cmw-upgrade-*")
  binary=$dir/cmw-upgrade
  file "$binary" | grep -q "statically linked" || fail "file: $(file "$binary")"
  ok "file: statically linked"
  readelf -d "$binary" 2>&1 | grep -q "There is no dynamic section" || fail "it has a dynamic section"
  ok "no dynamic section"
  if [ "$arch" = x86_64 ]; then
    # ldd exits 1 on a static executable; its words are what matters.
    local ldd_says
    ldd_says=$(ldd "$binary" 2>&1 || true)
    grep -q "not a dynamic executable" <<< "$ldd_says" || fail "ldd: $ldd_says"
    ok "ldd: not a dynamic executable"
  fi
  "$@" "$binary" --version | grep -q "^cmw-upgrade [0-9.]* (commit " || fail "--version"
  ok "$("$@" "$binary" --version)${*:+ (through $*)}"
  "$@" "$binary" --root examples/server --json detect --instance prod | grep -q '"family": "deb"' \
    || fail "detect on examples/server"
  ok "detect on examples/server"
  for file in completions/cmw-upgrade.bash completions/_cmw-upgrade completions/cmw-upgrade.fish \
    man/cmw-upgrade.1.gz man/cmw-upgrade-run.1.gz README.md LICENSE-MIT LICENSE-APACHE; do
    [ -s "$dir/$file" ] || fail "the tarball lacks $file"
  done
  bash -n "$dir/completions/cmw-upgrade.bash" || fail "the bash completion does not parse"
  ok "completions, man pages, README and licences"
}

# The files a .deb holds, one per line.
deb_files() { dpkg-deb -c "$1" | awk '{print $6}' | sed 's|^\./|/|' | grep -v '/$' | sort; }

check_deb() { # deb_arch
  local deb files
  deb=$(one "$out/cmw-upgrade_*_$1.deb")
  echo "deb: $deb"
  files=$(deb_files "$deb")
  if command -v lintian >/dev/null 2>&1; then
    lintian --fail-on error "$deb" || fail "lintian reports errors"
    ok "lintian: no errors"
  else
    echo "  (lintian not installed: not run)"
  fi
  if [ "$1" != "$(dpkg --print-architecture)" ]; then
    echo "  (an $1 package: not installed on this $(dpkg --print-architecture) machine)"
  elif [ "$(id -u)" != 0 ]; then
    echo "  (not root: dpkg -i not tried)"
  else
    dpkg -i "$deb" >/dev/null
    /usr/bin/cmw-upgrade --version >/dev/null || fail "the installed cmw-upgrade does not run"
    [ "$(stat -c %a /var/lib/cmw-upgrade)" = 700 ] || fail "/var/lib/cmw-upgrade is not 0700"
    [ -s /usr/share/bash-completion/completions/cmw-upgrade ] || fail "no bash completion installed"
    man -w cmw-upgrade-run >/dev/null 2>&1 || [ -s /usr/share/man/man1/cmw-upgrade-run.1.gz ] \
      || fail "no man page installed"
    ok "dpkg -i: installed, runs, /var/lib/cmw-upgrade is 0700"
    dpkg -r cmw-upgrade >/dev/null
    while read -r path; do
      [ ! -e "$path" ] || fail "dpkg -r left $path"
    done <<< "$files"
    ok "dpkg -r: every file gone (the state folder stays, as state should)"
  fi
}

# The same files, where each family keeps them: zsh completions and licences
# have other folders on RHEL-likes; the .deb's copyright, changelog and
# lintian override are Debian's own.
normalize() {
  sed -e 's|^/usr/share/zsh/vendor-completions/|/usr/share/zsh/ZSH/|' \
    -e 's|^/usr/share/zsh/site-functions/|/usr/share/zsh/ZSH/|' |
    grep -v -e '^/usr/share/licenses/' -e '^/usr/share/doc/cmw-upgrade/copyright$' \
      -e '^/usr/share/doc/cmw-upgrade/changelog' -e '^/usr/share/lintian/' | sort
}

check_rpm() { # rpm_arch deb_arch
  local rpm deb rpm_files
  rpm=$(one "$out/cmw-upgrade-*.$1.rpm")
  deb=$(one "$out/cmw-upgrade_*_$2.deb")
  echo "rpm: $rpm"
  [ "$(rpm -qp --qf '%{ARCH}' "$rpm" 2>/dev/null)" = "$1" ] || fail "not an $1 package"
  [ "$(rpm -qp --qf '%{PAYLOADCOMPRESSOR}' "$rpm" 2>/dev/null)" = xz ] || fail "the payload is not xz"
  ok "$1, payload xz"
  rpm -qp --scripts "$rpm" 2>/dev/null | grep -q "install -d -m 0700 -o root -g root /var/lib/cmw-upgrade" \
    || fail "the post-install script does not make /var/lib/cmw-upgrade"
  ok "post-install makes /var/lib/cmw-upgrade 0700"
  rpm_files=$(rpm -qpl "$rpm" 2>/dev/null | sort)
  if ! diff <(deb_files "$deb" | normalize) <(normalize <<< "$rpm_files") > "$work/diff"; then
    cat "$work/diff" >&2
    fail "the .rpm and the .deb hold different files"
  fi
  ok "the .rpm holds the .deb's files ($(wc -l <<< "$rpm_files") files)"
}

check_tarball x86_64
check_tarball aarch64 qemu-aarch64-static
check_deb amd64
check_deb arm64
check_rpm x86_64 amd64
check_rpm aarch64 arm64
echo "all artifacts checked"
