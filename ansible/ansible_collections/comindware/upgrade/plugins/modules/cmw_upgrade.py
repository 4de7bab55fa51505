#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, The cmw-upgrade developers
# MIT License or Apache License 2.0 (see LICENSE-MIT, LICENSE-APACHE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: cmw_upgrade
short_description: Upgrade a Comindware Platform instance on the new server (plan in check mode, resumable)
description:
  - >-
    On the new server (the default), runs C(cmw-upgrade run) with the old server's bundle; in check mode C(cmw-upgrade plan) (every
    step with its commands, changes nothing).
  - >-
    With I(old) and I(new), the whole upgrade from one control point instead (C(cmw-upgrade upgrade --old --new)): preflight of both
    servers, the old server's backup, the transfer, every step on the new server; in check mode C(upgrade --plan).
  - >-
    The run's state is kept on the server, so running the task again after any interruption resumes at the first step not done; a run
    already finished reports C(changed=false) (check mode too).
  - >-
    A failed run fails the task with the failed step's message and error kind (C(step_failed), ...); roll back with
    M(comindware.upgrade.cmw_rollback), e.g. in C(rescue).
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
  bundle:
    description: The old server's backup bundle, as this (new) server sees it. Required without I(old)/I(new).
    type: str
  distribution:
    description: The new version's platform tarball on the new server.
    type: str
    required: true
  prerequisites:
    description: The prerequisites tarball on the new server.
    type: str
    required: true
  port:
    description: The site's port on the new server.
    type: int
    default: 80
  family:
    description: The OS family, when C(/etc/os-release) does not say it (not with I(old)/I(new)).
    type: str
    choices: [deb, rpm, alt]
  upgrade_timeout:
    description: How long the data-structure upgrade may take (the tool's duration, e.g. C(2h)).
    type: str
  health_timeout:
    description: How long the site may take to answer after a start (e.g. C(5m)).
    type: str
  fix_config:
    description: Apply the config migration's evident fixes.
    type: bool
    default: false
  old:
    description: The old server as C([user@]host[:port]) (or C(local)), for the control-point mode. Requires I(new).
    type: str
  new:
    description: The new server as C([user@]host[:port]) (or C(local)), for the control-point mode. Requires I(old).
    type: str
  bundle_dir:
    description: Where the bundle goes on both servers (control-point mode).
    type: str
  method:
    description: How to take the old database (control-point mode; default a snapshot if it runs, else a copy).
    type: str
    choices: [copy, snapshot]
  accept_crash_consistent:
    description: Accept a file copy of a running instance (control-point mode).
    type: bool
    default: false
  route:
    description: How the bundle travels (control-point mode).
    type: str
    choices: [auto, direct, through-here]
  direct_ssh_option:
    description: ssh options (C(KEY=VALUE)) for the old server's own ssh to the new one on the direct route.
    type: list
    elements: str
    default: []
  identity_file:
    description: The ssh private key for both servers (a path on the control point; the key itself never passes through the module).
    type: path
  known_hosts:
    description: A known_hosts file to check both servers' host keys against.
    type: path
  remote_cmw_upgrade:
    description: cmw-upgrade's command on the servers (copied there when missing or older).
    type: str
  no_copy_agent:
    description: Never copy the binary to the servers.
    type: bool
    default: false
  state_dir:
    description: Keep the control point's run state in this folder (the tool's C(--state)) instead of C(/var/lib/cmw-upgrade).
    type: path
  old_root:
    description: The old server's C(/) for the tool there (control-point mode; rehearsals on simulated servers and tests only).
    type: str
  new_root:
    description: The new server's C(/) for the tool there (control-point mode; rehearsals on simulated servers and tests only).
    type: str
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
  diff_mode:
    support: partial
    details: In check mode, what the plan's config migration will carry (every directive under its new name, secrets as C(***)).
'''

EXAMPLES = r'''
- name: Upgrade prod on the new server (rerun to resume; --check shows the plan)
  comindware.upgrade.cmw_upgrade:
    instance: prod
    bundle: /mnt/backup/prod-4.7
    distribution: /opt/distr/5.0-release-ru-5.0.1234.0.astra.tar.gz
    prerequisites: /opt/distr/5.0-release-ru-5.0.77.prerequisites.astra.tar.gz
    port: 80

- name: The whole upgrade from the control point
  comindware.upgrade.cmw_upgrade:
    instance: prod
    old: root@old-server
    new: root@new-server
    bundle_dir: /mnt/backup
    distribution: /opt/distr/5.0-release-ru-5.0.1234.0.astra.tar.gz
    prerequisites: /opt/distr/5.0-release-ru-5.0.77.prerequisites.astra.tar.gz
  delegate_to: localhost
'''

RETURN = r'''
cmw:
  description: The tool's JSON document (C(run)'s report with every step, or C(plan)'s steps).
  returned: always
  type: dict
outcome:
  description: C(upgraded), C(failed), or C(planned) in check mode.
  returned: success
  type: str
  sample: upgraded
next:
  description: What to do next, as the tool says it.
  returned: when the tool says it
  type: str
to_do:
  description: What a person must decide (C(file), C(key), C(code), C(message), C(action_needed)).
  returned: success
  type: list
  elements: dict
steps:
  description: Each step's C(name) and C(status) (or C(title) in a plan).
  returned: success
  type: list
  elements: dict
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.comindware.upgrade.plugins.module_utils.cmw import (
    Cmw, CmwError, common_args, options_of)

NEW_SERVER = ['bundle', 'distribution', 'prerequisites', 'port', 'family',
              'upgrade_timeout', 'health_timeout', 'fix_config']
CONTROL_POINT = ['old', 'new', 'distribution', 'prerequisites', 'port', 'bundle_dir',
                 'method', 'accept_crash_consistent', 'route', 'direct_ssh_option',
                 'identity_file', 'known_hosts', 'remote_cmw_upgrade', 'no_copy_agent',
                 'upgrade_timeout', 'health_timeout', 'fix_config', 'old_root', 'new_root']


def finished(cmw, instance):
    """Whether a run of instance is recorded with every step done."""
    _rc, state = cmw.run(['status', '--instance', instance], accept=(0, 1, 3))
    steps = state.get('steps') or []
    return bool(steps) and all(step.get('status') == 'done' for step in steps) \
        and not state.get('rollback')


def migration_text(document):
    """The plan's config migration as text for --diff: every directive it will
    carry, per file, under its new name (secrets are *** in the tool's plan)."""
    lines = []
    for step in document.get('steps') or []:
        if not isinstance(step, dict):
            continue
        for finding in step.get('findings') or []:
            if not isinstance(finding, dict):
                continue
            current = None
            for change in finding.get('changes') or []:
                if change.get('action') == 'kept':
                    continue
                if change.get('file') != current:
                    current = change.get('file')
                    lines.append('--- %s (now)' % current)
                    lines.append('+++ %s (after the config migration)' % current)
                origin = ' (from %s)' % change['from'] if change.get('from') else ''
                if change.get('old') is not None:
                    lines.append('-%s = %s' % (change.get('key'), change['old']))
                lines.append('+%s = %s%s' % (change.get('key'), change.get('new'), origin))
    return '\n'.join(lines) + '\n' if lines else ''


def upgrade(cmw, params, check_mode):
    """(changed, document)."""
    instance = params['instance']
    if params['old']:
        args = ['upgrade', '--instance', instance] + options_of(params, CONTROL_POINT)
    else:
        args = ['plan' if check_mode else 'run', '--instance', instance]
        args += options_of(params, NEW_SERVER)
    if check_mode:
        if params['old']:
            args.append('--plan')
        _rc, document = cmw.run(args)
        document.setdefault('outcome', 'planned')
        return not finished(cmw, instance), document
    # Exit 1 is a failed run: a report with the failed step, raised below.
    _rc, document = cmw.run(args)
    return bool(document.get('changed')), document


def main():
    module = AnsibleModule(
        argument_spec=common_args(
            instance=dict(type='str', required=True),
            bundle=dict(type='str'),
            distribution=dict(type='str', required=True),
            prerequisites=dict(type='str', required=True),
            port=dict(type='int', default=80),
            family=dict(type='str', choices=['deb', 'rpm', 'alt']),
            upgrade_timeout=dict(type='str'),
            health_timeout=dict(type='str'),
            fix_config=dict(type='bool', default=False),
            old=dict(type='str'),
            new=dict(type='str'),
            bundle_dir=dict(type='str'),
            method=dict(type='str', choices=['copy', 'snapshot']),
            accept_crash_consistent=dict(type='bool', default=False),
            route=dict(type='str', choices=['auto', 'direct', 'through-here']),
            direct_ssh_option=dict(type='list', elements='str', default=[]),
            identity_file=dict(type='path', no_log=False),
            known_hosts=dict(type='path'),
            remote_cmw_upgrade=dict(type='str'),
            no_copy_agent=dict(type='bool', default=False),
            state_dir=dict(type='path'),
            old_root=dict(type='str'),
            new_root=dict(type='str'),
        ),
        required_together=[('old', 'new')],
        required_one_of=[('bundle', 'old')],
        mutually_exclusive=[('bundle', 'old'), ('family', 'old')],
        supports_check_mode=True,
    )
    cmw = Cmw(module)
    try:
        changed, document = upgrade(cmw, module.params, module.check_mode)
        steps = [dict((k, step.get(k)) for k in ('name', 'status', 'title', 'server') if k in step)
                 for step in document.get('steps') or [] if isinstance(step, dict)]
        result = dict(outcome=document.get('outcome'), to_do=document.get('to_do') or [],
                      steps=steps)
        if document.get('next'):
            result['next'] = document['next']
        if module.check_mode and module._diff and migration_text(document):
            result['diff'] = dict(prepared=migration_text(document))
        cmw.exit(changed, document, **result)
    except CmwError as error:
        document = error.document or {}
        cmw.fail(error, outcome=document.get('outcome'), next=document.get('next'),
                 to_do=document.get('to_do') or [])


if __name__ == '__main__':
    main()
