#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, The cmw-upgrade developers
# MIT License or Apache License 2.0 (see LICENSE-MIT, LICENSE-APACHE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: cmw_rollback
short_description: Undo a Comindware Platform upgrade run on the new server
description:
  - >-
    Runs C(cmw-upgrade rollback --instance NAME --yes) where the run's state is (the new server, or the control point for a run driven
    with M(comindware.upgrade.cmw_upgrade)'s I(old)/I(new)): stop the instance there, keep its logs in the bundle, put the bundle's
    database back (nothing deleted), bring a replaced old version back. The old server was never changed by a run.
  - C(changed) is true when the rollback ran a command on the server; a second rollback finds nothing left to undo and reports C(changed=false).
  - >-
    A finished run may already have traffic on it, so the tool refuses to roll it back unless I(force) is set (switch traffic back
    first, e.g. with M(comindware.upgrade.cmw_cutover) C(action=revert)).
  - In check mode nothing is done; C(changed) says whether a recorded run is not rolled back yet.
version_added: 0.1.0
author: The cmw-upgrade developers (!UNKNOWN)
extends_documentation_fragment:
  - comindware.upgrade.common
  - ansible.builtin.action_common_attributes
options:
  instance:
    description: The instance.
    type: str
    required: true
  force:
    description: Roll back a finished run too (traffic may be on it).
    type: bool
    default: false
  state_dir:
    description: The control point's run state folder (the tool's C(--state)), when the run was driven with one.
    type: path
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
  diff_mode:
    support: none
'''

EXAMPLES = r'''
- block:
    - comindware.upgrade.cmw_upgrade:
        instance: prod
        bundle: /mnt/backup/prod-4.7
        distribution: /opt/distr/5.0-release-ru-5.0.1234.0.astra.tar.gz
        prerequisites: /opt/distr/5.0-release-ru-5.0.77.prerequisites.astra.tar.gz
  rescue:
    - name: Undo the failed run (the old server keeps serving)
      comindware.upgrade.cmw_rollback:
        instance: prod
'''

RETURN = r'''
cmw:
  description: The tool's JSON document (the run's steps and the C(rollback) record with its commands).
  returned: always
  type: dict
next:
  description: What to do next, as the tool says it.
  returned: success
  type: str
commands_run:
  description: The commands the rollback ran on the server, as the tool shows them.
  returned: success
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.comindware.upgrade.plugins.module_utils.cmw import (
    Cmw, CmwError, common_args, options_of)


def rollback(cmw, params, check_mode):
    """(changed, document)."""
    instance = params['instance']
    if check_mode:
        _rc, state = cmw.run(['status', '--instance', instance], accept=(0, 1, 3))
        recorded = state.get('recorded', True) and bool(state.get('steps'))
        rolled_back = (state.get('rollback') or {}).get('status') == 'done'
        return recorded and not rolled_back, state
    args = ['rollback', '--instance', instance, '--yes'] + options_of(params, ['force'])
    _rc, document = cmw.run(args)
    record = document.get('rollback') or {}
    return bool(record.get('commands')), document


def main():
    module = AnsibleModule(
        argument_spec=common_args(
            instance=dict(type='str', required=True),
            force=dict(type='bool', default=False),
            state_dir=dict(type='path'),
        ),
        supports_check_mode=True,
    )
    cmw = Cmw(module)
    try:
        changed, document = rollback(cmw, module.params, module.check_mode)
        record = document.get('rollback') or {}
        commands = [c.get('command') for c in record.get('commands') or [] if isinstance(c, dict)]
        cmw.exit(changed, document, next=document.get('next') or '',
                 commands_run=commands if not module.check_mode else [])
    except CmwError as error:
        cmw.fail(error)


if __name__ == '__main__':
    main()
