# -*- coding: utf-8 -*-
# Copyright: (c) 2026, The cmw-upgrade developers
# MIT License or Apache License 2.0 (see LICENSE-MIT, LICENSE-APACHE)
"""What every module of the collection shares: running ``cmw-upgrade --json``
on the managed host and turning its one JSON document into an Ansible result.

The tool prints one object with ``ok`` and ``changed`` plus the command's
fields, or ``{"ok": false, "error": {"kind": ..., "message": ...}}``; its exit
codes are 0 ok, 1 failure, 2 bad input (nothing changed), 3 "not there yet"
(no run, verdict not success), 4 locked. The modules keep that document under
the ``cmw`` key of their result and never rebuild the tool's logic.

Written for every Python ansible-core 2.15-2.17 runs modules with (2.7, 3.6
and later): no f-strings, no type annotations.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

# The path the .deb and .rpm install the binary to (dist/build.sh,
# cmw-upgrade-cli/Cargo.toml's package metadata).
DEFAULT_BINARY = '/usr/bin/cmw-upgrade'

# Options every module takes (see the doc fragment in each module).
COMMON_ARGS = dict(
    binary=dict(type='path', default=DEFAULT_BINARY),
    root=dict(type='path', default='/'),
)


def common_args(**specific):
    """The argument spec: the common options plus the module's own."""
    spec = dict(COMMON_ARGS)
    spec.update(specific)
    return spec


class CmwError(Exception):
    """The tool said no (or could not be run): message, kind, exit code, document."""

    def __init__(self, message, kind, rc, document=None, stderr=''):
        super(CmwError, self).__init__(message)
        self.message = message
        self.kind = kind
        self.rc = rc
        self.document = document
        self.stderr = stderr


def flag(argv, name, value):
    """Appends ``--name`` when value is true."""
    if value:
        argv.append('--' + name.replace('_', '-'))


def option(argv, name, value):
    """Appends ``--name value`` (each item of a list) when value is set."""
    if value is None:
        return
    values = value if isinstance(value, list) else [value]
    for item in values:
        argv.extend(['--' + name.replace('_', '-'), str(item)])


def options_of(params, names):
    """``--name value`` / ``--flag`` for each of names present in params."""
    argv = []
    for name in names:
        value = params.get(name)
        if isinstance(value, bool):
            flag(argv, name, value)
        else:
            option(argv, name, value)
    return argv


def parse_document(stdout):
    """The tool's JSON document, or None when stdout holds none."""
    text = (stdout or '').strip()
    if not text:
        return None
    try:
        document = json.loads(text)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


class Cmw(object):
    """Runs ``cmw-upgrade`` for one module."""

    def __init__(self, module):
        self.module = module
        self.binary = module.params['binary']
        self.root = module.params.get('root') or '/'
        self.state = module.params.get('state_dir')
        self.commands = []

    def argv(self, args):
        """The full command: global options first, where the tool wants them."""
        argv = [self.binary, '--json', '--progress', 'none']
        if self.root != '/':
            argv.extend(['--root', self.root])
        if self.state:
            argv.extend(['--state', self.state])
        return argv + list(args)

    def run(self, args, accept=(0,)):
        """Runs the tool; returns (rc, document). Raises CmwError when the
        exit code is not in accept, or the document says ok false with an
        error, or there is no document at all."""
        argv = self.argv(args)
        self.commands.append(argv)
        try:
            rc, stdout, stderr = self.module.run_command(argv, handle_exceptions=False)
        except (OSError, IOError) as exc:
            raise CmwError(
                'cannot run %s: %s; install it with comindware.upgrade.cmw_install '
                'or set binary' % (self.binary, exc), 'not_installed', 127)
        document = parse_document(stdout)
        if document is None:
            raise CmwError(
                'cmw-upgrade printed no JSON (exit %d): %s' % (rc, (stderr or stdout or '').strip()),
                'no_output', rc, None, stderr)
        error = document.get('error')
        if isinstance(error, dict):
            raise CmwError(error.get('message', 'cmw-upgrade failed'),
                           error.get('kind', 'unknown'), rc, document, stderr)
        if rc not in accept:
            raise CmwError(failure_message(document, rc), failure_kind(document), rc,
                           document, stderr)
        return rc, document

    def fail(self, error, **result):
        """Ends the module with the tool's message and error kind."""
        result.update(
            msg=error.message,
            kind=error.kind,
            rc=error.rc,
            cmw=error.document if error.document is not None else {},
            commands=self.commands,
        )
        if error.stderr:
            result['stderr'] = error.stderr
        self.module.fail_json(**result)

    def exit(self, changed, document, **result):
        result.update(changed=bool(changed), cmw=document, commands=self.commands)
        self.module.exit_json(**result)


def failure_message(document, rc):
    """A failed run's message: its failed step's error, then its `next`."""
    for step in document.get('steps') or []:
        if isinstance(step, dict) and step.get('error'):
            message = step['error']
            if document.get('next') and document['next'] not in message:
                message = message + ' ' + document['next']
            return message
    for key in ('message', 'next'):
        if document.get(key):
            return document[key]
    return 'cmw-upgrade exited with %d' % rc


def failure_kind(document):
    """A failed run's error kind: its failed step's, or ``failed``."""
    for step in document.get('steps') or []:
        if isinstance(step, dict) and step.get('error_kind'):
            return step['error_kind']
    return 'failed'
