#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, The cmw-upgrade developers
# MIT License or Apache License 2.0 (see LICENSE-MIT, LICENSE-APACHE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: cmw_backup
short_description: Back up a Comindware Platform instance into a verified bundle
description:
  - >-
    Runs C(cmw-upgrade backup --instance NAME --dest DIR) on the managed host (normally the old server): the database and the config
    files in a bundle with a BLAKE3 manifest, which exists only once complete, verified and on disk.
  - >-
    Idempotent by the bundle: when I(dest) already holds a bundle, the tool never overwrites it; the module re-hashes it against its
    manifest (C(backup verify)) and reports C(changed=false) when it is whole, and fails (kind C(bundle_damaged)) when it is not.
  - In check mode nothing is written; C(changed) says whether a bundle would be made.
version_added: 0.1.0
author: The cmw-upgrade developers (!UNKNOWN)
extends_documentation_fragment:
  - comindware.upgrade.common
  - ansible.builtin.action_common_attributes
options:
  instance:
    description: The instance to back up.
    type: str
    required: true
  dest:
    description:
      - The bundle's folder, a server path; for a new backup it must not exist yet.
      - Under a I(root) other than C(/) it must be absolute and is inside that root, as the tool's C(--root) reads every
        server path (C(dest=/mnt/backup/prod) with C(root=/mnt/copy) is C(/mnt/copy/mnt/backup/prod) on the host).
    type: path
    required: true
  method:
    description:
      - C(copy) copies the database files (consistent when the instance is stopped), C(snapshot) takes an Ignite snapshot of a running instance.
      - By default the tool picks (a snapshot when the instance runs).
    type: str
    choices: [copy, snapshot]
  accept_crash_consistent:
    description: Allow a file copy of a running instance (restoring it is like restarting after a power cut).
    type: bool
    default: false
  with_streams:
    description: Also copy the instance's stream files (attachments).
    type: bool
    default: false
  family:
    description: The OS family, when C(/etc/os-release) does not say it.
    type: str
    choices: [deb, rpm, alt]
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
  diff_mode:
    support: none
'''

EXAMPLES = r'''
- name: Back up prod on the old server (a second run finds the bundle and changes nothing)
  comindware.upgrade.cmw_backup:
    instance: prod
    dest: /mnt/backup/prod-4.7
    method: snapshot
'''

RETURN = r'''
cmw:
  description: The tool's JSON document (C(backup)'s report, or C(backup verify)'s for a bundle already there).
  returned: always
  type: dict
  sample: {"ok": true, "changed": true, "bundle": "/mnt/backup/prod-4.7", "files": 94, "bytes": 7557, "method": "copy"}
bundle:
  description: The bundle's folder.
  returned: success
  type: str
  sample: /mnt/backup/prod-4.7
existing:
  description: Whether the bundle was already there (and verified) rather than made now.
  returned: success
  type: bool
warnings:
  description: The tool's warnings (e.g. a crash-consistent copy).
  returned: when the tool gave any
  type: list
  elements: str
'''

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.comindware.upgrade.plugins.module_utils.cmw import (
    Cmw, CmwError, common_args, options_of)


def backup(cmw, params, check_mode):
    """(changed, document, existing)."""
    dest = params['dest']
    # The tool reads dest inside --root; the module looks for it there too.
    root = params.get('root') or '/'
    on_host = dest if root.rstrip('/') == '' else os.path.join(root, dest.lstrip('/'))
    if os.path.exists(on_host):
        # The tool never overwrites a bundle: a finished one is re-hashed.
        rc, document = cmw.run(['backup', 'verify', dest], accept=(0, 1))
        if not document.get('ok'):
            raise CmwError(
                '%s already exists and does not match its manifest (missing: %s; changed: %s); '
                'the tool never overwrites a bundle: move it away or pick another dest'
                % (dest, ', '.join(str(f) for f in document.get('missing') or []) or 'none',
                   ', '.join(str(f) for f in document.get('changed_files') or []) or 'none'),
                'bundle_damaged', rc, document)
        return False, document, True
    if check_mode:
        return True, {'ok': True, 'changed': True, 'bundle': dest, 'check_mode': True}, False
    args = ['backup', '--instance', params['instance'], '--dest', dest]
    args += options_of(params, ['method', 'accept_crash_consistent', 'with_streams', 'family'])
    _rc, document = cmw.run(args)
    return bool(document.get('changed', True)), document, False


def main():
    module = AnsibleModule(
        argument_spec=common_args(
            instance=dict(type='str', required=True),
            dest=dict(type='path', required=True),
            method=dict(type='str', choices=['copy', 'snapshot']),
            accept_crash_consistent=dict(type='bool', default=False),
            with_streams=dict(type='bool', default=False),
            family=dict(type='str', choices=['deb', 'rpm', 'alt']),
        ),
        supports_check_mode=True,
    )
    cmw = Cmw(module)
    try:
        changed, document, existing = backup(cmw, module.params, module.check_mode)
        for warning in document.get('warnings') or []:
            module.warn(warning)
        cmw.exit(changed, document, bundle=module.params['dest'], existing=existing)
    except CmwError as error:
        cmw.fail(error, bundle=module.params['dest'])


if __name__ == '__main__':
    main()
