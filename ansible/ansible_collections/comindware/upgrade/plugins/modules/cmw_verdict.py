#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, The cmw-upgrade developers
# MIT License or Apache License 2.0 (see LICENSE-MIT, LICENSE-APACHE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: cmw_verdict
short_description: Whether a Comindware Platform data-structure upgrade succeeded, failed or is still running
description:
  - Runs C(cmw-upgrade logs verdict) on the managed host and returns the verdict and every error record at the top level.
  - >-
    Only reads the logs; never changes anything. A verdict other than C(succeeded) is a result, not a module failure (use
    C(failed_when) on C(verdict), or I(expect)).
version_added: 0.1.0
author: The cmw-upgrade developers (!UNKNOWN)
extends_documentation_fragment:
  - comindware.upgrade.common
  - ansible.builtin.action_common_attributes
options:
  instance:
    description: The instance whose logs to read (its log folder is read from its config). One of I(instance) or I(log_dir).
    type: str
  log_dir:
    description: The log folder to read (a server path, inside I(root) when that is not C(/)). One of I(instance) or I(log_dir).
    type: path
  wait:
    description: Wait up to this long for the upgrade to end (the tool's duration, e.g. C(30m), C(2h)).
    type: str
  interval:
    description: How often to look while waiting (only with I(wait)).
    type: str
  since:
    description: Only records from this time on (the tool's C(--since), e.g. C(2026-11-28T10:00:00Z)).
    type: str
  expect:
    description: Fail the task unless the verdict is this one.
    type: str
    choices: [succeeded, failed, in_progress, not_started]
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
  diff_mode:
    support: none
'''

EXAMPLES = r'''
- name: Wait for the data-structure upgrade of prod, and stop unless it succeeded
  comindware.upgrade.cmw_verdict:
    instance: prod
    wait: 2h
    expect: succeeded

- name: Read a copied log folder
  comindware.upgrade.cmw_verdict:
    log_dir: /tmp/prod-logs
  register: verdict
'''

RETURN = r'''
verdict:
  description: C(succeeded), C(failed), C(in_progress) or C(not_started).
  returned: success
  type: str
  sample: succeeded
errors:
  description: Every error record (file, line, level, reason, message).
  returned: success
  type: list
  elements: dict
cmw:
  description: The tool's JSON document (the logs scanned, their last records).
  returned: always
  type: dict
changed:
  description: Always false.
  returned: always
  type: bool
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.comindware.upgrade.plugins.module_utils.cmw import (
    Cmw, CmwError, common_args, options_of)


def main():
    module = AnsibleModule(
        argument_spec=common_args(
            instance=dict(type='str'),
            log_dir=dict(type='path'),
            wait=dict(type='str'),
            interval=dict(type='str'),
            since=dict(type='str'),
            expect=dict(type='str', choices=['succeeded', 'failed', 'in_progress', 'not_started']),
        ),
        required_one_of=[('instance', 'log_dir')],
        mutually_exclusive=[('instance', 'log_dir')],
        required_by=dict(interval='wait'),
        supports_check_mode=True,
    )
    cmw = Cmw(module)
    params = module.params
    try:
        # Exit 1 (failed) and 3 (not finished) are verdicts, not errors.
        _rc, document = cmw.run(
            ['logs', 'verdict'] + options_of(params, ['instance', 'log_dir', 'wait', 'interval', 'since']),
            accept=(0, 1, 3))
        verdict = document.get('verdict')
        errors = document.get('errors') or []
        if params['expect'] and verdict != params['expect']:
            first = errors[0].get('message') if errors and isinstance(errors[0], dict) else None
            raise CmwError(
                'the upgrade verdict is %s, not %s%s' % (
                    verdict, params['expect'], ': %s' % first if first else ''),
                'check_failed', 0, document)
        cmw.exit(False, document, verdict=verdict, errors=errors)
    except CmwError as error:
        document = error.document or {}
        cmw.fail(error, verdict=document.get('verdict'), errors=document.get('errors') or [])


if __name__ == '__main__':
    main()
