#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, The cmw-upgrade developers
# MIT License or Apache License 2.0 (see LICENSE-MIT, LICENSE-APACHE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: cmw_facts
short_description: The OS family, Comindware Platform instances, versions and layout of a server
description:
  - >-
    Runs C(cmw-upgrade detect), C(cmw-upgrade instances) and C(cmw-upgrade detect --instance NAME) for each instance on the managed
    host and sets C(ansible_facts.cmw).
  - Only reads; never changes anything.
version_added: 0.1.0
author: The cmw-upgrade developers (!UNKNOWN)
extends_documentation_fragment:
  - comindware.upgrade.common
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.facts
options:
  instance:
    description:
      - >-
        Only this instance's layout (it must exist: the tool names those that do when it does not).
      - By default, the layout of every instance found.
    type: str
  family:
    description:
      - The OS family, when C(/etc/os-release) does not say it (the tool's C(--family)).
    type: str
    choices: [deb, rpm, alt]
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
  diff_mode:
    support: none
  facts:
    support: full
'''

EXAMPLES = r'''
- name: Learn the Comindware instances of the old server
  comindware.upgrade.cmw_facts:

- name: Fail early when the instance is not on this server
  comindware.upgrade.cmw_facts:
    instance: prod

- ansible.builtin.debug:
    msg: "{{ ansible_facts.cmw.instances | map(attribute='version') | list }}"
'''

RETURN = r'''
ansible_facts:
  description: The facts, under C(cmw).
  returned: success
  type: dict
  contains:
    cmw:
      description: What the tool found.
      type: dict
      contains:
        family:
          description: The OS family (C(deb), C(rpm) or C(alt)).
          type: str
          sample: deb
        distro:
          description: The distribution's id from C(/etc/os-release).
          type: str
          sample: astra
        web_owner:
          description: The web server's user and group.
          type: dict
        nginx_site_dir:
          description: Where nginx sites live for this family.
          type: str
          sample: /etc/nginx/sites-available
        instances:
          description: Each instance with C(name), C(version) and C(service) (whether its service runs).
          type: list
          elements: dict
          sample: [{"name": "prod", "version": "4.7.2890.0", "service": "active"}]
        versions:
          description: Instance name to platform version.
          type: dict
          sample: {"prod": "4.7.2890.0"}
        layout:
          description: Instance name to every path of the instance (C(detect --instance)'s C(layout)).
          type: dict
        tool_version:
          description: C(cmw-upgrade --version) on the host.
          type: str
          sample: cmw-upgrade 0.1.0 (commit 3c024cbc75b5)
cmw:
  description: The tool's JSON documents, by command (C(detect), C(instances), C(detect_instance) by name).
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


def gather(cmw, params):
    """The facts and the tool's documents."""
    family = options_of(params, ['family'])
    _rc, detect = cmw.run(['detect'] + family)
    _rc, listed = cmw.run(['instances'])
    instances = listed.get('instances') or []
    names = [params['instance']] if params['instance'] else [i.get('name') for i in instances]
    layouts = {}
    documents = {}
    for name in names:
        _rc, document = cmw.run(['detect', '--instance', name] + family)
        documents[name] = document
        layouts[name] = document.get('layout')
    rc, out, _err = cmw.module.run_command([cmw.binary, '--version'])
    facts = dict(
        family=detect.get('family'),
        distro=detect.get('distro'),
        web_owner=detect.get('web_owner'),
        nginx_site_dir=detect.get('nginx_site_dir'),
        instances=instances,
        versions=dict((i.get('name'), i.get('version')) for i in instances),
        layout=layouts,
        tool_version=out.strip() if rc == 0 else None,
    )
    return facts, dict(detect=detect, instances=listed, detect_instance=documents)


def main():
    module = AnsibleModule(
        argument_spec=common_args(
            instance=dict(type='str'),
            family=dict(type='str', choices=['deb', 'rpm', 'alt']),
        ),
        supports_check_mode=True,
    )
    cmw = Cmw(module)
    try:
        facts, documents = gather(cmw, module.params)
        cmw.exit(False, documents, ansible_facts=dict(cmw=facts))
    except CmwError as error:
        cmw.fail(error)


if __name__ == '__main__':
    main()
