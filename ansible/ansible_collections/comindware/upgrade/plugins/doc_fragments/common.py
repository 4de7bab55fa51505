# -*- coding: utf-8 -*-
# Copyright: (c) 2026, The cmw-upgrade developers
# MIT License or Apache License 2.0 (see LICENSE-MIT, LICENSE-APACHE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The options every module of comindware.upgrade takes.
    DOCUMENTATION = r'''
options:
  binary:
    description:
      - The path of C(cmw-upgrade) on the managed host.
      - The default is where the .deb and .rpm install it (and where M(comindware.upgrade.cmw_install) copies the static binary).
    type: path
    default: /usr/bin/cmw-upgrade
  root:
    description:
      - >-
        Treat this folder as the server's C(/) (the tool's C(--root)): a mounted copy of a server, or a test tree.
      - Every path the tool reads or writes stays inside it.
    type: path
    default: /
requirements:
  - C(cmw-upgrade) on the managed host (M(comindware.upgrade.cmw_install) puts it there). No Python library beyond what Ansible needs.
notes:
  - >-
    The module runs C(cmw-upgrade --json) and keeps its one JSON document under C(cmw) in the result; on failure C(msg) is the tool's
    message and C(kind) its error kind (C(bad_input), C(locked), C(check_failed), C(step_failed), C(already_exists), ...), or
    C(not_installed) when the binary cannot be run.
  - C(commands) in the result lists every command line of the tool the module ran (for the record; they hold no secret).
  - Secrets never appear in the tool's output (it masks them as C(***)), so neither do they in the result.
'''
