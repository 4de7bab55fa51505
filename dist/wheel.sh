#!/usr/bin/env bash
# Builds the Python wheel of cmw-upgrade that installs on the target servers
# (Astra Linux SE 1.7, Debian 10+, Ubuntu 20.04+, RED OS 7.3, Rocky 8, ALT p10)
# and proves it before anyone copies it there:
#
#   1. builds target/dist/cmw_upgrade-<version>-cp39-abi3-manylinux2014_x86_64
#      .manylinux_2_17_x86_64.whl with maturin and zig, which links against
#      glibc 2.17 stubs whatever glibc this machine has (a plain build here would
#      need this machine's glibc, 2.36);
#   2. checks the file's tag (cp39, abi3, manylinux for glibc 2.28 or older, with
#      a legacy name old pips know), the highest GLIBC_x.y symbol version the
#      extension asks for (at most 2.28 and no newer than its tag says, read with
#      objdump and readelf), and what auditwheel says of it;
#   3. installs the wheel offline into a fresh venv of the oldest Python it
#      supports (3.9, where one is found) and runs cmw-upgrade-py/tests against
#      that installed copy, then imports it from this machine's python3 as well.
#
# Usage: bash dist/wheel.sh            (from anywhere; no arguments)
# Needs: cargo, python3 (3.9 or newer) with venv, binutils (objdump, readelf),
#        and the package index for the pinned build tools and pytest.
# Env:   WHEEL_TEST_PYTHON  interpreter for the test suite (default: a Python 3.9
#                           if one is found, else python3).
# Exits non-zero when any step or check fails.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"

# Pinned so that a wheel built next month is built the same way.
maturin_version="1.16.0"
ziglang_version="0.15.2"
auditwheel_version="6.8.2"
# A pytest that still runs on Python 3.9.
pytest_version="8.4.2"
# A mypy that still runs on Python 3.9, for stubtest (the stub against the wheel).
mypy_version="1.14.1"

# The target servers run glibc 2.28 or newer (Astra Linux SE 1.7, Debian 10 and
# Rocky 8 have 2.28): no symbol may need a newer one.
glibc_ceiling="2.28"
# Built for glibc 2.17 all the same: its tag, manylinux2014, is one that pip
# before 20.3 can install (pip 20.2.4 refuses a manylinux_2_28 wheel as "not a
# supported wheel"), and an older distribution Python's pip may be that old.
# Rust's standard library needs glibc 2.17 at least and finds newer functions
# (statx, copy_file_range, getrandom) at run time.
compatibility="manylinux2014"
# PyO3 0.30 supports Python 3.9 and newer; the stable ABI makes one wheel for all.
python_tag="cp39"
# An explicit triple keeps the zig-linked objects in their own folder under
# target/, apart from those of a plain `cargo build --release`.
triple="x86_64-unknown-linux-gnu"

out="target/dist"
tools="target/wheel-tools"
testenv="target/wheel-test"

step() { printf '\n==> %s\n' "$*"; }
fail() {
  printf 'dist/wheel.sh: %s\n' "$*" >&2
  exit 1
}

# "2.28" -> 2028, so that versions compare as integers.
version_number() {
  local major="${1%%.*}" minor="${1#*.}"
  minor="${minor%%.*}"
  echo $((major * 1000 + minor))
}

# The glibc a platform tag asks for: manylinux_2_28_x86_64 -> 2.28; the legacy
# aliases stand for the glibc their PEPs name. Anything else is not manylinux.
tag_glibc() {
  case "$1" in
    manylinux_2_*_x86_64)
      local rest="${1#manylinux_2_}"
      echo "2.${rest%_x86_64}"
      ;;
    manylinux2014_x86_64) echo "2.17" ;;
    manylinux2010_x86_64) echo "2.12" ;;
    manylinux1_x86_64) echo "2.5" ;;
    *) return 1 ;;
  esac
}

# Fails unless every platform tag in a dot-separated list is manylinux with a
# glibc no newer than the ceiling; prints the newest glibc the tags name.
check_platform_tags() {
  local what="$1" tags="$2" tag glibc newest="0.0"
  local -a list
  IFS=. read -r -a list <<<"$tags"
  for tag in "${list[@]}"; do
    glibc="$(tag_glibc "$tag")" || fail "$what: platform tag $tag is not manylinux x86_64"
    if [ "$(version_number "$glibc")" -gt "$(version_number "$glibc_ceiling")" ]; then
      fail "$what: platform tag $tag needs glibc $glibc, newer than $glibc_ceiling"
    fi
    if [ "$(version_number "$glibc")" -gt "$(version_number "$newest")" ]; then
      newest="$glibc"
    fi
  done
  echo "$newest"
}

command -v cargo >/dev/null 2>&1 || fail "cargo is not on PATH"
command -v python3 >/dev/null 2>&1 || fail "python3 is not on PATH"
for tool in objdump readelf; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is not on PATH (apt-get install binutils)"
done

step "build tools (maturin $maturin_version, ziglang $ziglang_version, auditwheel $auditwheel_version)"
if [ ! -x "$tools/bin/python" ]; then
  python3 -m venv "$tools" || fail "python3 -m venv failed (apt-get install python3-venv)"
fi
"$tools/bin/python" -m pip install --quiet --disable-pip-version-check \
  "maturin==$maturin_version" "ziglang==$ziglang_version" "auditwheel==$auditwheel_version"
"$tools/bin/maturin" --version

step "wheel ($compatibility, abi3, release profile, linked by zig)"
mkdir -p "$out"
rm -f "$out"/cmw_upgrade-*.whl
(
  cd cmw-upgrade-py
  # maturin finds zig through the tools venv's python (`python -m ziglang`).
  PATH="$repo/$tools/bin:$PATH" "$repo/$tools/bin/maturin" build \
    --release --locked --strip \
    --zig --target "$triple" --compatibility "$compatibility" \
    --out "$repo/$out"
)
shopt -s nullglob
wheels=("$out"/cmw_upgrade-*.whl)
shopt -u nullglob
[ "${#wheels[@]}" -eq 1 ] || fail "expected one wheel in $out, found ${#wheels[@]}"
wheel="${wheels[0]}"
name="$(basename "$wheel")"

step "check the tag of $name"
# name-version-pythontag-abitag-platformtags.whl (PEP 427); no build tag here.
IFS=- read -r _ _ wheel_python wheel_abi wheel_platforms <<<"${name%.whl}"
[ "$wheel_python" = "$python_tag" ] || fail "$name: python tag $wheel_python, expected $python_tag"
[ "$wheel_abi" = "abi3" ] || fail "$name: ABI tag $wheel_abi, expected abi3"
tag_ceiling="$(check_platform_tags "$name" "$wheel_platforms")"
case ".$wheel_platforms." in
  *.manylinux2014_x86_64.* | *.manylinux2010_x86_64.* | *.manylinux1_x86_64.*) ;;
  *) fail "$name: no legacy manylinux tag; pip before 20.3 (PEP 600) would refuse it" ;;
esac
echo "tag: $wheel_python-$wheel_abi-$wheel_platforms (glibc $tag_ceiling or newer)"

step "check the extension's GLIBC symbol versions"
unpacked="$(mktemp -d)"
trap 'rm -rf "$unpacked"' EXIT
"$tools/bin/python" - "$wheel" "$unpacked" <<'PY'
import sys
import zipfile

wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as archive:
    names = archive.namelist()
    for needed in ("cmw_upgrade/__init__.pyi", "cmw_upgrade/py.typed"):
        if needed not in names:
            sys.exit(f"{wheel}: no {needed} (the type stubs)")
    libraries = [n for n in names if n.endswith(".so")]
    if len(libraries) != 1:
        sys.exit(f"{wheel}: expected one .so, found {libraries}")
    archive.extract(libraries[0], dest)
    print(libraries[0])
PY
so="$(find "$unpacked" -name '*.so' -print -quit)"
[ -n "$so" ] || fail "no .so unpacked from $name"
# objdump -T lists every dynamic symbol with the version it binds to; readelf's
# version-needs section lists what the loader checks before running any code.
# Both are read, so a version that only one of them shows still counts.
versions="$(
  {
    objdump -T "$so"
    readelf --wide --version-info "$so"
  } | grep -oE 'GLIBC_[0-9]+\.[0-9]+(\.[0-9]+)?' | sed 's/^GLIBC_//' | sort -u -V
)"
[ -n "$versions" ] || fail "$so: no GLIBC symbol versions found (objdump/readelf output not understood)"
ceiling="$(tail -n 1 <<<"$versions")"
echo "GLIBC versions used: $(tr '\n' ' ' <<<"$versions")"
for limit in "$glibc_ceiling" "$tag_ceiling"; do
  if [ "$(version_number "$ceiling")" -gt "$(version_number "$limit")" ]; then
    fail "$so needs GLIBC_$ceiling, newer than $limit; symbols: $(objdump -T "$so" | grep "GLIBC_$ceiling" | awk '{print $NF}' | tr '\n' ' ')"
  fi
done
if readelf --dynamic "$so" | grep -q 'Shared library: \[libpython'; then
  fail "$so links libpython; an abi3 extension takes its symbols from the interpreter that loads it"
fi

step "auditwheel show"
audit="$("$tools/bin/auditwheel" show "$wheel")" || fail "auditwheel show failed on $name"
echo "$audit"
audit_tag="$(tr '\n' ' ' <<<"$audit" | grep -oE 'platform tag: +"[^"]+"' | head -n 1 | grep -oE '"[^"]+"' | tr -d '"')"
[ -n "$audit_tag" ] || fail "auditwheel show named no platform tag for $name"
check_platform_tags "auditwheel" "$audit_tag" >/dev/null

step "fresh venv, wheel installed offline, Python tests"
test_python="${WHEEL_TEST_PYTHON:-}"
if [ -z "$test_python" ]; then
  # The oldest supported Python is where a missing symbol or a too-new API would
  # show. pyenv keeps it off PATH unless selected, so look there as well.
  for candidate in python3.9 "$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"/versions/3.9*/bin/python3.9; do
    if "$candidate" -c 'import sys, venv; assert sys.version_info[:2] == (3, 9)' >/dev/null 2>&1; then
      test_python="$candidate"
      break
    fi
  done
fi
test_python="${test_python:-python3}"
"$test_python" -c 'import sys; assert sys.version_info >= (3, 9), sys.version' ||
  fail "$test_python is older than Python 3.9, which the wheel needs"
rm -rf "$testenv"
"$test_python" -m venv "$testenv"
# --no-index: the wheel has no dependencies and installs as on a server without
# internet. pytest comes from the package index, in a second command.
"$testenv/bin/python" -m pip install --quiet --disable-pip-version-check --no-index --no-deps "$wheel"
"$testenv/bin/python" -m pip install --quiet --disable-pip-version-check "pytest==$pytest_version" "mypy==$mypy_version"
installed_at="$(cd / && "$repo/$testenv/bin/python" -c 'import cmw_upgrade; print(cmw_upgrade.__file__)')"
case "$installed_at" in
  "$repo/$testenv/"*) ;;
  *) fail "the tests would import cmw_upgrade from $installed_at, not from the fresh venv" ;;
esac
test_version="$("$testenv/bin/python" -c 'import platform; print(platform.python_version())')"
echo "Python $test_version ($test_python), cmw_upgrade from $installed_at"
# The tests compare with the debug CLI and use the fixture writer.
cargo build --locked --quiet -p cmw-upgrade-cli -p cmw-upgrade-benches --bins
"$testenv/bin/python" -m pytest -q -p no:cacheprovider cmw-upgrade-py/tests

step "stubtest: the type stub against the installed wheel"
# Every name, signature, default, base class and TypedDict of cmw_upgrade.pyi
# must match what the wheel has at run time; the allowlist says why each of
# its entries cannot.
(cd "$testenv" && "$repo/$testenv/bin/python" -m mypy.stubtest cmw_upgrade \
  --allowlist "$repo/cmw-upgrade-py/stubtest-allowlist.txt")

# abi3 means the same file loads on every newer Python: import it from this
# machine's python3 too, when that is another version.
host_version="$(python3 -c 'import platform; print(platform.python_version())')"
if [ "$host_version" != "$test_version" ]; then
  step "import on Python $host_version (python3)"
  host_env="$testenv-host"
  rm -rf "$host_env"
  python3 -m venv "$host_env"
  "$host_env/bin/python" -m pip install --quiet --disable-pip-version-check --no-index --no-deps "$wheel"
  (cd / && "$repo/$host_env/bin/python" -c '
import cmw_upgrade
assert cmw_upgrade.detect_os_family("ID=astra\n").family == "deb"
print("cmw_upgrade imports and runs on this Python")
')
  rm -rf "$host_env"
  test_version="$test_version, $host_version"
fi

size="$(stat -c %s "$wheel")"
step "summary"
printf 'wheel:         %s\n' "$repo/$wheel"
printf 'size:          %s bytes (%s KiB)\n' "$size" "$((size / 1024))"
printf 'GLIBC ceiling: %s (tag: %s, limit: %s)\n' "$ceiling" "$tag_ceiling" "$glibc_ceiling"
printf 'auditwheel:    %s\n' "$audit_tag"
printf 'tested on:     Python %s\n' "$test_version"
