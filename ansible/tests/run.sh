#!/usr/bin/env bash
# The Ansible collection's tests (ansible/ansible_collections/comindware/upgrade):
#   1. ansible-test sanity (ansible-core pinned in ansible/tests/requirements.txt,
#      in the venv target/ansible-venv), and vermin: the modules' code needs
#      nothing newer than the managed hosts' Python 2.7 / 3.6;
#   2. the modules' unit tests (pytest, a scripted cmw-upgrade);
#   3. integration: real playbooks run by ansible-playbook against simulated
#      servers (`cmw-upgrade demo --setup-only --keep`), through the local
#      connection and through a throwaway sshd on loopback.
# Uses target/debug/cmw-upgrade (built here if needed; CMW_UPGRADE_BINARY
# names another). Needs what .ci/run installs: nginx, tar, openssh-server.
#
#   bash ansible/tests/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
started=$(date +%s)
step() { printf '\n==> ansible: %s\n' "$*"; }

venv=$PWD/target/ansible-venv
collection=ansible/ansible_collections/comindware/upgrade

step "venv with the pinned ansible-core"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r ansible/tests/requirements.txt
# (sed reads to the end: head would close the pipe under ansible, which fails on it.)
"$venv/bin/ansible" --version | sed -n 1p

step "cmw-upgrade"
# The features the Rust tests build with: after them this is a no-op.
cargo build --quiet --locked -p cmw-upgrade-cli --features cmw-upgrade-cli/test-hooks
export CMW_UPGRADE_BINARY="${CMW_UPGRADE_BINARY:-$PWD/target/debug/cmw-upgrade}"
"$CMW_UPGRADE_BINARY" --version

step "ansible-test sanity"
# ansible-test puts each sanity test in a venv of its own, bootstrapping pip
# there with a script it downloads from a host outside PyPI. Its documented
# way around that is the script in its cache (~/.ansible/test/cache): here a
# stand-in that runs pip from pip's own wheel from PyPI. HOME points into
# target/ so the cache and the venvs stay there; the venvs' packages come
# from PyPI, pinned by ansible-test itself.
home=$PWD/target/ansible-home
cache=$home/.ansible/test/cache
pip_version=23.1.2   # the pip ansible-test 2.16 bootstraps
mkdir -p "$cache"
if ! ls "$cache"/pip-$pip_version-*.whl >/dev/null 2>&1; then
  "$venv/bin/pip" download --quiet --disable-pip-version-check --no-deps -d "$cache" "pip==$pip_version"
fi
cp ansible/tests/sanity/get_pip_stand_in.py "$cache/get_pip_${pip_version//./_}.py"
# Only the host's Python: no other interpreters (2.7, 3.6-3.10, 3.12) are
# installed here, so compile and import run on 3.11 alone.
python_version=$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
(cd "$collection" && HOME=$home "$venv/bin/ansible-test" sanity --local --python "$python_version")

step "the modules on managed hosts' Python 2.7 and 3.6+"
# What runs on the managed host (modules, module_utils): no construct newer
# than those Pythons allow (vermin reads the code; no such interpreter is here).
"$venv/bin/vermin" -q -t=2.7- -t=3.6- --no-tips --violations \
  "$collection/plugins/modules" "$collection/plugins/module_utils"

step "unit tests"
PYTHONPATH=$PWD/ansible "$venv/bin/python" -m pytest -q -p no:cacheprovider "$collection/tests/unit"

step "integration: playbooks against simulated servers (local and ssh)"
"$venv/bin/python" -m pytest -q -p no:cacheprovider ansible/tests/integration

rm -rf "$collection/tests/output"
find ansible -name __pycache__ -type d -prune -exec rm -rf {} +
printf '\n==> ansible: passed in %ds\n' "$(( $(date +%s) - started ))"
