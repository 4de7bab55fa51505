#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, The cmw-upgrade developers
# MIT License or Apache License 2.0 (see LICENSE-MIT, LICENSE-APACHE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: cmw_cutover
short_description: Switch traffic from the old to the new Comindware server (HAProxy, nginx or DNS), and back
description:
  - Runs C(cmw-upgrade cutover ACTION --method METHOD) on the managed host (the proxy, or any host that reaches the DNS primary).
  - >-
    C(plan) lists every change and makes none; C(prepare) readies the switch (nginx - a resolver-driven upstream; dns - a lower TTL);
    C(apply) switches; C(verify) checks that traffic reaches the new server; C(finish) restores the TTL (dns); C(revert) goes back to
    what C(apply) saved, also after a crash.
  - >-
    C(changed) is the tool's - an action already done (the traffic already on the new server) reports C(changed=false). A C(verify)
    whose checks fail fails the task. A C(revert) with nothing saved to go back to (never applied, or reverted already) reports
    C(changed=false).
  - >-
    In check mode C(apply) runs C(plan) and reports C(changed) when a step is planned (with C(--diff), the nginx site's diff); C(plan)
    and C(verify) run as they are (they only read); C(prepare), C(finish) and C(revert) are not predicted and report C(changed=true).
version_added: 0.1.0
author: The cmw-upgrade developers (!UNKNOWN)
extends_documentation_fragment:
  - comindware.upgrade.common
  - ansible.builtin.action_common_attributes
options:
  action:
    description: What to do.
    type: str
    required: true
    choices: [plan, prepare, apply, verify, finish, revert]
  instance:
    description: The instance (the saved state lives in C(/var/lib/cmw-upgrade/<instance>/)).
    type: str
    required: true
  method:
    description: How traffic is switched.
    type: str
    required: true
    choices: [haproxy, nginx, dns]
  haproxy_socket:
    description: haproxy - the admin socket (C(stats socket PATH level admin)).
    type: str
  backend:
    description: haproxy - the backend holding the old and the new server.
    type: str
  old_server:
    description: haproxy - the server traffic leaves (its name in the backend).
    type: str
  new_server:
    description: haproxy - the server traffic goes to.
    type: str
  haproxy_config:
    description: haproxy - the config file HAProxy loads (the switch is written into it so a reload keeps it).
    type: str
  drain_seconds:
    description: haproxy - the longest the old server may keep open sessions before maintenance.
    type: int
  up_timeout:
    description: haproxy - the longest a server set ready may take to pass its health check (a duration, e.g. C(30s)).
    type: str
  zone:
    description: dns - the zone holding the name.
    type: str
  name:
    description: dns - the name clients use.
    type: str
  old:
    description: The address traffic leaves (dns - ADDR; nginx - HOST:PORT).
    type: str
  new:
    description: The address traffic goes to (dns - ADDR; nginx - HOST:PORT).
    type: str
  nginx_site:
    description: nginx - the site file holding the proxy_pass (or upstream) to the old server.
    type: str
  nginx_conf:
    description: nginx - the main config nginx loads.
    type: str
  reload:
    description: nginx - switch by swapping the address in the site and reloading nginx.
    type: bool
    default: false
  upstream_name:
    description: nginx - the DNS name nginx resolves for the upstream once prepared.
    type: str
  resolver_valid:
    description: nginx - how long nginx keeps the name's answer, in seconds.
    type: int
  proxy_url:
    description: nginx - a URL through the proxy that verify requests.
    type: str
  tsig_key_file:
    description:
      - >-
        dns - the file holding the TSIG key allowed to update the zone (BIND's key format). Only its path passes through Ansible; the tool
        reads the secret from the file and never prints it.
    type: path
  server:
    description: dns - the zone's primary, C(ADDR[:PORT]).
    type: str
  resolver:
    description: dns - resolvers verify asks too; nginx - the DNS server nginx asks for I(upstream_name).
    type: list
    elements: str
    default: []
  ttl:
    description: dns - the TTL prepare sets, in seconds.
    type: int
  force:
    description: dns - apply before the old TTL has run out in every cache.
    type: bool
    default: false
  verify_timeout:
    description: dns - the longest verify waits for every server to answer the new address (e.g. C(30s)).
    type: str
  new_host:
    description:
      - The new server for the checks before the switch (its health, its logs), as C([user@]host[:port]) reached by ssh or C(local).
      - Without it (and without a run driven from this host), the checks that need it fail unless skipped with I(skip_check).
    type: str
  old_host:
    description: The old server, for the final drift check, I(freeze_old) and the old site (C([user@]host[:port]) or C(local)).
    type: str
  bundle:
    description: The bundle on the old server that the drift check compares its live database with (a server path).
    type: str
  health_url:
    description: The URL of the new server's health check (default - C(/api/health) through its site).
    type: str
  new_port:
    description: dns - the port the new address must take TCP connections on.
    type: int
  skip_check:
    description: Checks before the switch to skip, by name.
    type: list
    elements: str
    choices: [new-health, new-reachable, old-drift]
    default: []
  accept_drift:
    description: Switch even though the old server took writes after the backup (those writes are not on the new server).
    type: bool
    default: false
  freeze_old:
    description: apply - make the old site answer 503 to writes (not GET/HEAD) from the final drift check on, until C(revert) or C(finish).
    type: bool
    default: false
  old_site:
    description: The old server's nginx site file, for I(freeze_old) (a server path on the old server).
    type: str
  old_nginx_conf:
    description: The old server's main nginx config, for its C(nginx -t).
    type: str
  identity_file:
    description: The ssh key for I(new_host) and I(old_host).
    type: path
  known_hosts:
    description: The known_hosts file for I(new_host) and I(old_host).
    type: path
  new_root:
    description: The new server's C(/) for the tool there (rehearsals on simulated servers).
    type: str
  old_root:
    description: The old server's C(/) for the tool there (rehearsals on simulated servers).
    type: str
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
  diff_mode:
    support: partial
    details: The nginx site's diff for C(apply) and C(prepare) with the nginx method.
'''

EXAMPLES = r'''
- name: Switch prod's traffic to the new server in HAProxy
  comindware.upgrade.cmw_cutover:
    action: apply
    method: haproxy
    instance: prod
    haproxy_socket: /run/haproxy/admin.sock
    backend: cmw
    old_server: old
    new_server: new
    haproxy_config: /etc/haproxy/haproxy.cfg

- name: Move the name by a signed DNS update
  comindware.upgrade.cmw_cutover:
    action: apply
    method: dns
    instance: prod
    zone: example.org
    name: cmw.example.org
    old: 192.0.2.10
    new: 192.0.2.20
    tsig_key_file: /etc/cmw-upgrade/update.key
'''

RETURN = r'''
cmw:
  description: The tool's JSON document (C(before), C(after), C(steps), C(checks), C(diff) for nginx).
  returned: always
  type: dict
steps:
  description: Each step with its C(outcome) (C(planned), C(done) or C(unchanged)).
  returned: success
  type: list
  elements: dict
checks:
  description: The checks of C(verify), each with C(check), C(ok) and C(found).
  returned: with action=verify
  type: list
  elements: dict
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.comindware.upgrade.plugins.module_utils.cmw import (
    Cmw, CmwError, common_args, options_of)

CUTOVER_OPTIONS = ['haproxy_socket', 'backend', 'old_server', 'new_server', 'haproxy_config',
                   'drain_seconds', 'up_timeout', 'zone', 'name', 'old', 'new', 'nginx_site',
                   'nginx_conf', 'reload', 'upstream_name', 'resolver_valid', 'proxy_url',
                   'tsig_key_file', 'server', 'resolver', 'ttl', 'force', 'verify_timeout',
                   # The checks before the switch and the old server (see the options).
                   'new_host', 'old_host', 'bundle', 'health_url', 'new_port', 'skip_check',
                   'accept_drift', 'freeze_old', 'old_site', 'old_nginx_conf', 'identity_file',
                   'known_hosts', 'new_root', 'old_root']


def cutover(cmw, params, check_mode):
    """(changed, document)."""
    action = params['action']
    if check_mode and action in ('prepare', 'finish', 'revert'):
        return True, {'ok': True, 'changed': True, 'action': action, 'check_mode': True}
    ran = 'plan' if check_mode and action == 'apply' else action
    args = ['cutover', ran, '--instance', params['instance'], '--method', params['method']]
    args += options_of(params, CUTOVER_OPTIONS)
    try:
        rc, document = cmw.run(args, accept=(0, 1))
    except CmwError as error:
        if action == 'revert' and error.kind == 'state_conflict':
            # Nothing saved: never applied, or reverted already - nothing to undo.
            return False, dict(error.document or {}, ok=True, changed=False, note=error.message)
        raise
    if not document.get('ok', False):
        failing = [c.get('check', '') + ': ' + c.get('found', '')
                   for c in document.get('checks') or [] if not c.get('ok')]
        raise CmwError('cutover %s did not hold: %s' % (ran, '; '.join(failing) or 'see cmw'),
                       'check_failed', rc, document)
    if ran == 'plan':
        planned = any(step.get('outcome') == 'planned' for step in document.get('steps') or [])
        return planned and action == 'apply', document
    return bool(document.get('changed')), document


def main():
    module = AnsibleModule(
        argument_spec=common_args(
            action=dict(type='str', required=True,
                        choices=['plan', 'prepare', 'apply', 'verify', 'finish', 'revert']),
            instance=dict(type='str', required=True),
            method=dict(type='str', required=True, choices=['haproxy', 'nginx', 'dns']),
            haproxy_socket=dict(type='str'),
            backend=dict(type='str'),
            old_server=dict(type='str'),
            new_server=dict(type='str'),
            haproxy_config=dict(type='str'),
            drain_seconds=dict(type='int'),
            up_timeout=dict(type='str'),
            zone=dict(type='str'),
            name=dict(type='str'),
            old=dict(type='str'),
            new=dict(type='str'),
            nginx_site=dict(type='str'),
            nginx_conf=dict(type='str'),
            reload=dict(type='bool', default=False),
            upstream_name=dict(type='str'),
            resolver_valid=dict(type='int'),
            proxy_url=dict(type='str'),
            tsig_key_file=dict(type='path', no_log=False),
            server=dict(type='str'),
            resolver=dict(type='list', elements='str', default=[]),
            ttl=dict(type='int'),
            force=dict(type='bool', default=False),
            verify_timeout=dict(type='str'),
            new_host=dict(type='str'),
            old_host=dict(type='str'),
            bundle=dict(type='str'),
            health_url=dict(type='str'),
            new_port=dict(type='int'),
            skip_check=dict(type='list', elements='str', default=[],
                            choices=['new-health', 'new-reachable', 'old-drift']),
            accept_drift=dict(type='bool', default=False),
            freeze_old=dict(type='bool', default=False),
            old_site=dict(type='str'),
            old_nginx_conf=dict(type='str'),
            identity_file=dict(type='path', no_log=False),
            known_hosts=dict(type='path'),
            new_root=dict(type='str'),
            old_root=dict(type='str'),
        ),
        required_if=[
            ('method', 'haproxy', ('haproxy_socket', 'backend', 'old_server', 'new_server')),
            ('method', 'nginx', ('nginx_site', 'old', 'new')),
            ('method', 'dns', ('zone', 'name', 'old', 'new')),
        ],
        supports_check_mode=True,
    )
    cmw = Cmw(module)
    try:
        changed, document = cutover(cmw, module.params, module.check_mode)
        for note in document.get('notes') or []:
            module.warn(note)
        result = dict(steps=document.get('steps') or [])
        if document.get('checks'):
            result['checks'] = document['checks']
        if module._diff and document.get('diff'):
            result['diff'] = dict(prepared=document['diff'])
        cmw.exit(changed, document, **result)
    except CmwError as error:
        cmw.fail(error)


if __name__ == '__main__':
    main()
