#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, The cmw-upgrade developers
# MIT License or Apache License 2.0 (see LICENSE-MIT, LICENSE-APACHE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: cmw_install
short_description: Put cmw-upgrade on a server - the static binary, the .deb or the .rpm
description:
  - >-
    Copies the static C(cmw-upgrade) binary to I(binary), or installs the .deb (C(dpkg -i)) or .rpm (C(rpm -U)), from the controller
    (the default) or from a file already on the host (I(remote_src)). No network is needed on the host (air-gapped servers).
  - >-
    Idempotent by checksum and version - a binary whose SHA-256 equals the one at I(binary), or a package whose version is installed
    with its files intact (C(dpkg --verify), C(rpm -V)), is left alone (C(changed=false)).
  - After an install the binary must answer C(--version); a copied binary that does not is replaced by the previous one again and the task fails.
version_added: 0.1.0
author: The cmw-upgrade developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
options:
  src:
    description:
      - The static binary, .deb or .rpm. On the controller (searched like M(ansible.builtin.copy)'s C(src)), or on the host with I(remote_src).
    type: path
    required: true
  remote_src:
    description: I(src) is already on the managed host.
    type: bool
    default: false
  kind:
    description: What I(src) is; C(auto) goes by its name (C(.deb), C(.rpm), else the binary).
    type: str
    choices: [auto, binary, deb, rpm]
    default: auto
  binary:
    description:
      - Where the binary goes (C(kind=binary)), or where the package installs it (to read its version).
      - The default is the packages' path, which the other modules' I(binary) defaults to.
    type: path
    default: /usr/bin/cmw-upgrade
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
  diff_mode:
    support: none
  action:
    support: full
    details: An action plugin of the same name copies I(src) from the controller to a temporary folder on the host.
  async:
    support: none
  bypass_host_loop:
    support: none
'''

EXAMPLES = r'''
- name: Copy the static binary from the controller (air-gapped servers)
  comindware.upgrade.cmw_install:
    src: files/cmw-upgrade-0.1.0-x86_64-linux-musl/cmw-upgrade

- name: Install the .deb on Astra Linux, Debian or Ubuntu
  comindware.upgrade.cmw_install:
    src: files/cmw-upgrade_0.1.0-1_amd64.deb
  when: ansible_facts.os_family == 'Debian'

- name: Install the .rpm on RED OS, Rocky or ALT
  comindware.upgrade.cmw_install:
    src: files/cmw-upgrade-0.1.0-1.x86_64.rpm
  when: ansible_facts.os_family != 'Debian'
'''

RETURN = r'''
kind:
  description: What was installed (C(binary), C(deb) or C(rpm)).
  returned: success
  type: str
  sample: binary
version:
  description: C(cmw-upgrade --version) of the installed binary (in check mode, of the one already there).
  returned: success
  type: str
  sample: cmw-upgrade 0.1.0 (commit 3c024cbc75b5)
sha256:
  description: The SHA-256 of the installed binary (C(kind=binary)).
  returned: when kind is binary
  type: str
package_version:
  description: The package's version (C(kind=deb) or C(rpm)).
  returned: when kind is deb or rpm
  type: str
  sample: 0.1.0-1
binary:
  description: The binary's path.
  returned: success
  type: str
  sample: /usr/bin/cmw-upgrade
transferred:
  description: Whether I(src) was copied from the controller to the host (not when the same binary already was at I(binary)).
  returned: when I(remote_src) is false
  type: bool
'''

import os
import shutil
import tempfile

from ansible.module_utils.basic import AnsibleModule


def kind_of(src, kind):
    """binary, deb or rpm."""
    if kind != 'auto':
        return kind
    if src.endswith('.deb'):
        return 'deb'
    if src.endswith('.rpm'):
        return 'rpm'
    return 'binary'


def version_of(module, binary):
    """`binary --version`, or None when it does not run."""
    if not os.path.exists(binary):
        return None
    try:
        rc, out, _err = module.run_command([binary, '--version'], handle_exceptions=False)
    except (OSError, IOError):
        return None
    return out.strip() if rc == 0 else None


def install_binary(module, src, dest):
    """(changed, result) for the static binary."""
    wanted = module.sha256(src)
    present = module.sha256(dest) if os.path.exists(dest) else None
    if wanted == present:
        return False, dict(sha256=wanted, version=version_of(module, dest))
    if module.check_mode:
        return True, dict(sha256=wanted, version=version_of(module, dest))
    folder = os.path.dirname(dest) or '.'
    if not os.path.isdir(folder):
        os.makedirs(folder, 0o755)
    previous = None
    if present is not None:
        previous = module.backup_local(dest)
    # A copy beside dest, then a rename: the binary is never seen half-written.
    handle, staged = tempfile.mkstemp(dir=folder, prefix='.cmw-upgrade.')
    os.close(handle)
    shutil.copyfile(src, staged)
    os.chmod(staged, 0o755)
    module.atomic_move(staged, dest)
    os.chmod(dest, 0o755)
    version = version_of(module, dest)
    if version is None or not version.startswith('cmw-upgrade'):
        if previous:
            module.atomic_move(previous, dest)
            what = 'the previous binary is back'
        else:
            os.remove(dest)
            what = 'nothing is installed'
        module.fail_json(
            msg='%s does not run as cmw-upgrade on this host (wrong architecture, or not the '
                'binary?); %s' % (src, what), kind='bad_input', binary=dest)
    if previous:
        os.remove(previous)
    return True, dict(sha256=wanted, version=version)


PACKAGE_TOOLS = dict(
    deb=dict(
        version_of_file=['dpkg-deb', '--showformat=${Version}', '--show'],
        installed=['dpkg-query', '--showformat=${Version}', '--show', 'cmw-upgrade'],
        verify=['dpkg', '--verify', 'cmw-upgrade'],
        install=['dpkg', '-i'],
    ),
    rpm=dict(
        version_of_file=['rpm', '-q', '--queryformat', '%{VERSION}-%{RELEASE}', '-p'],
        installed=['rpm', '-q', '--queryformat', '%{VERSION}-%{RELEASE}', 'cmw-upgrade'],
        verify=['rpm', '-V', 'cmw-upgrade'],
        install=['rpm', '-U', '--replacepkgs', '--oldpackage'],
    ),
)


def install_package(module, src, kind, binary):
    """(changed, result) for the .deb or .rpm."""
    tools = PACKAGE_TOOLS[kind]
    rc, wanted, err = module.run_command(tools['version_of_file'] + [src])
    wanted = wanted.strip()
    if rc != 0 or not wanted:
        module.fail_json(msg='cannot read the version of %s: %s' % (src, err.strip()),
                         kind='bad_input')
    rc, present, _err = module.run_command(tools['installed'])
    present = present.strip() if rc == 0 else None
    if present == wanted:
        # Same version: intact files mean nothing to do.
        rc, _out, _err = module.run_command(tools['verify'])
        if rc == 0:
            return False, dict(package_version=wanted, version=version_of(module, binary))
    if module.check_mode:
        return True, dict(package_version=wanted, version=version_of(module, binary))
    rc, out, err = module.run_command(tools['install'] + [src])
    if rc != 0:
        module.fail_json(msg='%s of %s failed: %s' % (tools['install'][0], src,
                                                      (err or out).strip()),
                         kind='command_failed', rc=rc)
    return True, dict(package_version=wanted, version=version_of(module, binary))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            src=dict(type='path', required=True),
            remote_src=dict(type='bool', default=False),
            kind=dict(type='str', default='auto', choices=['auto', 'binary', 'deb', 'rpm']),
            binary=dict(type='path', default='/usr/bin/cmw-upgrade'),
        ),
        supports_check_mode=True,
    )
    src = module.params['src']
    binary = module.params['binary']
    if not os.path.isfile(src):
        module.fail_json(msg='%s is not a file on the host' % src, kind='bad_input')
    kind = kind_of(src, module.params['kind'])
    if kind == 'binary':
        changed, result = install_binary(module, src, binary)
    else:
        changed, result = install_package(module, src, kind, binary)
    module.exit_json(changed=changed, kind=kind, binary=binary, **result)


if __name__ == '__main__':
    main()
