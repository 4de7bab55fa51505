# -*- coding: utf-8 -*-
# Copyright: (c) 2026, The cmw-upgrade developers
# MIT License or Apache License 2.0 (see LICENSE-MIT, LICENSE-APACHE)
"""cmw_install's controller side: copies src from the controller to a
temporary folder on the host, then runs the module there on that copy (which
compares checksums and versions and installs only what differs). A binary
whose checksum the file at `binary` already has is not copied at all."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible.errors import AnsibleError, AnsibleActionFail
from ansible.module_utils.common.text.converters import to_text
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase
from ansible.utils.hashing import checksum


class ActionModule(ActionBase):

    TRANSFERS_FILES = True

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp  # tmp no longer has any effect
        args = self._task.args.copy()
        try:
            if boolean(args.get('remote_src', False), strict=False):
                result.update(self._execute_module(
                    module_name='comindware.upgrade.cmw_install', module_args=args,
                    task_vars=task_vars))
                return result
            if not args.get('src'):
                raise AnsibleActionFail('src is required')
            try:
                local = self._find_needle('files', args['src'])
            except AnsibleError as error:
                raise AnsibleActionFail(to_text(error))
            binary = args.get('binary') or '/usr/bin/cmw-upgrade'
            kind = args.get('kind') or 'auto'
            if kind == 'binary' or (kind == 'auto' and not local.endswith(('.deb', '.rpm'))):
                there = self._execute_remote_stat(binary, all_vars=task_vars, follow=True)
                if there.get('exists') and there.get('checksum') == checksum(local):
                    # The same binary is there already: nothing to carry over;
                    # the module checks it in place (and reads its version).
                    args.update(src=binary, remote_src=True)
                    result.update(self._execute_module(
                        module_name='comindware.upgrade.cmw_install', module_args=args,
                        task_vars=task_vars))
                    result['transferred'] = False
                    return result
            # The module reads the file's name for its kind (.deb, .rpm).
            remote = self._connection._shell.join_path(
                self._connection._shell.tmpdir, os.path.basename(local))
            self._transfer_file(local, remote)
            self._fixup_perms2((self._connection._shell.tmpdir, remote))
            args.update(src=remote, remote_src=True)
            result.update(self._execute_module(
                module_name='comindware.upgrade.cmw_install', module_args=args,
                task_vars=task_vars))
            result['transferred'] = True
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result
