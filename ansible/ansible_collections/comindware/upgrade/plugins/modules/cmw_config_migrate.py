#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, The cmw-upgrade developers
# MIT License or Apache License 2.0 (see LICENSE-MIT, LICENSE-APACHE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: cmw_config_migrate
short_description: Carry an old instance's config values into the new instance's config files
description:
  - >-
    Runs C(cmw-upgrade config migrate --from DIR --instance NAME) on the managed host (the new server): every directive value of the
    old instance goes into the new instance's files under its current name, every comment kept; the result is checked (C(nginx -t) on
    the site) and all files are written or none, each original kept beside it.
  - In check mode it runs with C(--check) and writes nothing. With C(--diff) the unified diff of every file is returned, secrets shown as C(***).
  - >-
    A second run reports C(changed=false): the new files already hold the old values.
version_added: 0.1.0
author: The cmw-upgrade developers (!UNKNOWN)
extends_documentation_fragment:
  - comindware.upgrade.common
  - ansible.builtin.action_common_attributes
options:
  from:
    description:
      - The old server's files (its C(/), e.g. a mounted copy or a bundle's C(config) folder), a server path.
      - Under a I(root) other than C(/) it must be absolute and is inside that root, as the tool's C(--root) reads it.
    type: path
    required: true
  instance:
    description: The instance.
    type: str
    required: true
  family:
    description: The OS family, when C(/etc/os-release) does not say it.
    type: str
    choices: [deb, rpm, alt]
  fix:
    description: Also correct values the tool knows to be wrong for the new version (the tool's C(--fix)).
    type: bool
    default: false
  take:
    description: Files to take whole from the old server instead of merging (server paths).
    type: list
    elements: str
    default: []
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
  diff_mode:
    support: full
'''

EXAMPLES = r'''
- name: Show what the migration would write (run the play with --check --diff)
  comindware.upgrade.cmw_config_migrate:
    from: /mnt/old-server
    instance: prod

- name: Migrate, taking the agent's config whole
  comindware.upgrade.cmw_config_migrate:
    from: /mnt/old-server
    instance: prod
    take:
      - /var/www/prod/data/Plugins/Agent/Agent.config
'''

RETURN = r'''
cmw:
  description: The tool's JSON document (C(changes), C(files), C(written), C(warnings), C(to_do), C(errors), C(diff)).
  returned: always
  type: dict
written:
  description: The files written, each with the C(backup) of its original.
  returned: success
  type: list
  elements: dict
to_do:
  description: What a person must decide (C(file), C(key), C(code), C(message), C(action_needed)).
  returned: success
  type: list
  elements: dict
diff:
  description: The masked unified diff (with C(--diff)).
  returned: with --diff
  type: dict
  contains:
    prepared:
      description: The unified diff of every file, secrets as C(***).
      type: str
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.comindware.upgrade.plugins.module_utils.cmw import (
    Cmw, CmwError, common_args, options_of)


def migrate(cmw, params, check_mode):
    """(changed, document)."""
    args = ['config', 'migrate', '--from', params['from'], '--instance', params['instance']]
    args += options_of(params, ['family', 'fix', 'take'])
    if check_mode:
        args.append('--check')
    # Exit 2 with `errors`: nothing was written.
    rc, document = cmw.run(args, accept=(0, 2))
    if not document.get('ok', False):
        errors = [str(error) for error in document.get('errors') or []]
        raise CmwError('nothing was written: ' + ('; '.join(errors) or 'the migration failed'),
                       'check_failed', rc, document)
    if check_mode:
        return bool(document.get('files')), document
    return bool(document.get('written')), document


def main():
    module = AnsibleModule(
        argument_spec=common_args(**{
            'from': dict(type='path', required=True),
            'instance': dict(type='str', required=True),
            'family': dict(type='str', choices=['deb', 'rpm', 'alt']),
            'fix': dict(type='bool', default=False),
            'take': dict(type='list', elements='str', default=[]),
        }),
        supports_check_mode=True,
    )
    cmw = Cmw(module)
    try:
        changed, document = migrate(cmw, module.params, module.check_mode)
        result = dict(written=document.get('written') or [], to_do=document.get('to_do') or [])
        if module._diff:
            result['diff'] = dict(prepared=document.get('diff') or '')
        cmw.exit(changed, document, **result)
    except CmwError as error:
        cmw.fail(error)


if __name__ == '__main__':
    main()
