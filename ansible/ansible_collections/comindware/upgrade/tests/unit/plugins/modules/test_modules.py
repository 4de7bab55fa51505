# -*- coding: utf-8 -*-
# Copyright: (c) 2026, The cmw-upgrade developers
# MIT License or Apache License 2.0 (see LICENSE-MIT, LICENSE-APACHE)
"""The modules against a scripted cmw-upgrade: which command each runs, how
it reads the tool's JSON and exit code, what it reports as changed and failed."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import stat

import pytest

from ansible.module_utils import basic
from ansible.module_utils.common.text.converters import to_bytes

from ansible_collections.comindware.upgrade.plugins.modules import (
    cmw_backup, cmw_config_migrate, cmw_cutover, cmw_facts, cmw_install, cmw_rollback,
    cmw_upgrade, cmw_verdict)


class Exited(Exception):
    def __init__(self, result, failed):
        super(Exited, self).__init__(result)
        self.result = result
        self.failed = failed


class Tool(object):
    """Answers run_command by the command's words, records every argv."""

    def __init__(self, answers):
        self.answers = answers  # list of (words that must all be in argv, rc, document)
        self.calls = []

    @property
    def run_command(self):
        """A stand-in for AnsibleModule.run_command answered by this tool."""
        def run_command(module, args, **kwargs):
            return self.answer(args)
        return run_command

    def answer(self, args):
        self.calls.append(list(args))
        for words, rc, document in self.answers:
            if all(word in args for word in words):
                out = document if isinstance(document, str) else json.dumps(document)
                return rc, out, ''
        raise AssertionError('unexpected command %s' % (args,))


def raise_exit(module, **result):
    raise Exited(result, False)


def raise_fail(module, **result):
    raise Exited(result, True)


@pytest.fixture
def run(monkeypatch):
    """run(module, args, answers) -> (result, failed, tool)."""

    def exit_json(module, **result):
        raise Exited(result, False)

    def fail_json(module, **result):
        raise Exited(result, True)

    def call(module, args, answers, check_mode=False, diff=False):
        tool = Tool(answers)
        monkeypatch.setattr(basic.AnsibleModule, 'exit_json', exit_json)
        monkeypatch.setattr(basic.AnsibleModule, 'fail_json', fail_json)
        monkeypatch.setattr(basic.AnsibleModule, 'run_command', tool.run_command)
        full = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff)
        monkeypatch.setattr(basic, '_ANSIBLE_ARGS', to_bytes(json.dumps({'ANSIBLE_MODULE_ARGS': full})))
        with pytest.raises(Exited) as exited:
            module.main()
        return exited.value.result, exited.value.failed, tool

    return call


def test_global_options_come_first_and_root_only_when_set(run):
    result, failed, tool = run(cmw_verdict, dict(instance='prod', root='/srv/copy'), [
        (['verdict'], 0, {'ok': True, 'changed': False, 'verdict': 'succeeded', 'errors': []}),
    ])
    assert not failed
    assert tool.calls[0][:6] == ['/usr/bin/cmw-upgrade', '--json', '--progress', 'none', '--root', '/srv/copy']
    assert tool.calls[0][6:] == ['logs', 'verdict', '--instance', 'prod']
    assert result['verdict'] == 'succeeded' and result['errors'] == [] and result['changed'] is False


def test_an_error_document_fails_with_the_tools_message_and_kind(run):
    error = {'ok': False, 'error': {'kind': 'locked', 'message': 'a run of prod holds the lock'}}
    result, failed, _tool = run(cmw_verdict, dict(instance='prod'), [(['verdict'], 4, error)])
    assert failed
    assert result['msg'] == 'a run of prod holds the lock'
    assert result['kind'] == 'locked' and result['rc'] == 4
    assert result['cmw'] == error


def test_no_json_is_a_failure_naming_the_output(run):
    result, failed, _tool = run(cmw_verdict, dict(instance='prod'), [(['verdict'], 101, 'panicked')])
    assert failed and result['kind'] == 'no_output'


def test_a_missing_binary_says_how_to_install_it(monkeypatch, run):
    def missing(module, args, **kwargs):
        raise OSError(2, 'No such file or directory')

    monkeypatch.setattr(basic.AnsibleModule, 'exit_json', raise_exit)
    monkeypatch.setattr(basic.AnsibleModule, 'fail_json', raise_fail)
    monkeypatch.setattr(basic.AnsibleModule, 'run_command', missing)
    monkeypatch.setattr(basic, '_ANSIBLE_ARGS', to_bytes(json.dumps(
        {'ANSIBLE_MODULE_ARGS': {'binary': '/nowhere/cmw-upgrade'}})))
    with pytest.raises(Exited) as exited:
        cmw_facts.main()
    assert exited.value.failed
    assert exited.value.result['kind'] == 'not_installed'
    assert '/nowhere/cmw-upgrade' in exited.value.result['msg'] and 'cmw_install' in exited.value.result['msg']


def test_verdict_failed_is_a_result_unless_expected_otherwise(run):
    failed_verdict = {'ok': False, 'changed': False, 'verdict': 'failed',
                      'errors': [{'message': 'stream 42 not found'}]}
    result, failed, _tool = run(cmw_verdict, dict(log_dir='/var/log/x'), [(['verdict'], 1, failed_verdict)])
    assert not failed and result['verdict'] == 'failed' and len(result['errors']) == 1
    result, failed, _tool = run(cmw_verdict, dict(log_dir='/var/log/x', expect='succeeded'),
                                [(['verdict'], 1, failed_verdict)])
    assert failed and result['kind'] == 'check_failed'
    assert 'stream 42 not found' in result['msg'] and result['verdict'] == 'failed'


def test_facts_run_detect_instances_and_each_layout(run):
    result, failed, tool = run(cmw_facts, dict(), [
        (['detect', '--instance', 'prod'], 0, {'ok': True, 'changed': False, 'layout': {'instance': 'prod'}}),
        (['detect'], 0, {'ok': True, 'changed': False, 'family': 'rpm', 'distro': 'redos'}),
        (['instances'], 0, {'ok': True, 'changed': False,
                            'instances': [{'name': 'prod', 'version': '4.7.2890.0', 'service': 'active'}]}),
        (['--version'], 0, 'cmw-upgrade 0.1.0 (commit abc)\n'),
    ])
    assert not failed and result['changed'] is False
    facts = result['ansible_facts']['cmw']
    assert facts['family'] == 'rpm' and facts['versions'] == {'prod': '4.7.2890.0'}
    assert facts['layout'] == {'prod': {'instance': 'prod'}}
    assert facts['tool_version'] == 'cmw-upgrade 0.1.0 (commit abc)'


def test_backup_of_a_new_dest_runs_the_backup(run, tmp_path):
    dest = str(tmp_path / 'bundle')
    result, failed, tool = run(cmw_backup, dict(instance='prod', dest=dest, method='snapshot'), [
        (['backup'], 0, {'ok': True, 'changed': True, 'bundle': dest, 'warnings': []}),
    ])
    assert not failed and result['changed'] and not result['existing']
    assert tool.calls[0][4:] == ['backup', '--instance', 'prod', '--dest', dest, '--method', 'snapshot']


def test_backup_into_an_existing_bundle_verifies_it_and_changes_nothing(run, tmp_path):
    dest = tmp_path / 'bundle'
    dest.mkdir()
    result, failed, tool = run(cmw_backup, dict(instance='prod', dest=str(dest)), [
        (['verify'], 0, {'ok': True, 'changed': False, 'missing': [], 'changed_files': [], 'extra': []}),
    ])
    assert not failed and result['changed'] is False and result['existing']
    assert tool.calls[0][4:] == ['backup', 'verify', str(dest)]


def test_backup_dest_is_a_server_path_inside_root(run, tmp_path):
    # As the tool's --root: dest=/mnt/b with root=R is R/mnt/b on the host.
    (tmp_path / 'mnt' / 'b').mkdir(parents=True)
    result, failed, tool = run(cmw_backup, dict(instance='prod', dest='/mnt/b', root=str(tmp_path)), [
        (['verify'], 0, {'ok': True, 'changed': False, 'missing': [], 'changed_files': [], 'extra': []}),
    ])
    assert not failed and result['changed'] is False and result['existing']
    assert tool.calls[0][-3:] == ['backup', 'verify', '/mnt/b']


def test_backup_into_a_damaged_bundle_fails(run, tmp_path):
    dest = tmp_path / 'bundle'
    dest.mkdir()
    result, failed, _tool = run(cmw_backup, dict(instance='prod', dest=str(dest)), [
        (['verify'], 1, {'ok': False, 'changed': False, 'missing': ['database/a'], 'changed_files': [], 'extra': []}),
    ])
    assert failed and result['kind'] == 'bundle_damaged' and 'database/a' in result['msg']


def test_backup_in_check_mode_writes_nothing(run, tmp_path):
    result, failed, tool = run(cmw_backup, dict(instance='prod', dest=str(tmp_path / 'new')), [], check_mode=True)
    assert not failed and result['changed'] and tool.calls == []


UPGRADE = dict(instance='prod', bundle='/mnt/b', distribution='/opt/d.tar.gz', prerequisites='/opt/p.tar.gz')
DONE_STATE = {'ok': True, 'changed': False, 'steps': [{'name': 'verify-bundle', 'status': 'done'}]}


def test_upgrade_in_check_mode_plans_and_a_finished_run_would_not_change(run):
    plan = {'ok': True, 'changed': False, 'steps': [{'name': 'verify-bundle', 'title': 'Verify'}]}
    result, failed, tool = run(cmw_upgrade, UPGRADE, [
        (['plan'], 0, plan), (['status'], 0, DONE_STATE)], check_mode=True)
    assert not failed and result['changed'] is False and result['outcome'] == 'planned'
    assert tool.calls[0][4:] == ['plan', '--instance', 'prod', '--bundle', '/mnt/b', '--distribution',
                                 '/opt/d.tar.gz', '--prerequisites', '/opt/p.tar.gz', '--port', '80']
    result, failed, tool = run(cmw_upgrade, UPGRADE, [
        (['plan'], 0, plan), (['status'], 3, {'ok': False, 'recorded': False})], check_mode=True)
    assert not failed and result['changed'] is True


def test_upgrade_reports_the_tools_changed(run):
    report = {'ok': True, 'changed': False, 'outcome': 'upgraded', 'steps': [{'name': 'final-check', 'status': 'done'}],
              'to_do': [], 'next': 'Switch traffic.'}
    result, failed, tool = run(cmw_upgrade, UPGRADE, [(['run'], 0, report)])
    assert not failed and result['changed'] is False and result['outcome'] == 'upgraded'
    assert result['steps'] == [{'name': 'final-check', 'status': 'done'}] and result['next'] == 'Switch traffic.'


def test_a_failed_run_fails_with_its_steps_error_and_kind(run):
    report = {'ok': False, 'changed': True, 'outcome': 'failed', 'next': 'Roll back with: cmw-upgrade rollback',
              'steps': [{'name': 'wait-upgrade', 'status': 'failed', 'error': 'the upgrade logs hold an error',
                         'error_kind': 'step_failed'}], 'to_do': []}
    result, failed, _tool = run(cmw_upgrade, UPGRADE, [(['run'], 1, report)])
    assert failed and result['kind'] == 'step_failed' and result['outcome'] == 'failed'
    assert result['msg'].startswith('the upgrade logs hold an error') and 'Roll back' in result['msg']


def test_upgrade_from_a_control_point_runs_upgrade_with_both_servers(run):
    args = dict(instance='prod', old='root@old', new='root@new', distribution='/opt/d.tar.gz',
                prerequisites='/opt/p.tar.gz', bundle_dir='/mnt/backup', state_dir='/home/admin/state')
    result, failed, tool = run(cmw_upgrade, args, [(['upgrade'], 0, {'ok': True, 'changed': True, 'outcome': 'upgraded'})])
    assert not failed and result['changed']
    argv = tool.calls[0]
    assert argv[4:6] == ['--state', '/home/admin/state']
    assert argv[6:10] == ['upgrade', '--instance', 'prod', '--old'] and '--bundle-dir' in argv


def test_rollback_changed_only_when_it_ran_commands(run):
    ran = {'ok': True, 'changed': True, 'next': 'n', 'rollback': {'status': 'done', 'commands': [
        {'command': 'systemctl stop comindwareprod', 'op': 'run'}]}}
    result, failed, tool = run(cmw_rollback, dict(instance='prod'), [(['rollback'], 0, ran)])
    assert not failed and result['changed'] and result['commands_run'] == ['systemctl stop comindwareprod']
    assert tool.calls[0][4:] == ['rollback', '--instance', 'prod', '--yes']
    nothing = {'ok': True, 'changed': True, 'next': 'n', 'rollback': {'status': 'done'}}
    result, failed, _tool = run(cmw_rollback, dict(instance='prod'), [(['rollback'], 0, nothing)])
    assert not failed and result['changed'] is False


def test_rollback_in_check_mode_reads_the_status(run):
    result, failed, tool = run(cmw_rollback, dict(instance='prod'), [(['status'], 1, {
        'ok': False, 'changed': False, 'steps': [{'status': 'failed'}]})], check_mode=True)
    assert not failed and result['changed'] and [c[4] for c in tool.calls] == ['status']
    result, failed, _tool = run(cmw_rollback, dict(instance='prod'), [(['status'], 1, {
        'ok': False, 'steps': [{'status': 'rolled_back'}], 'rollback': {'status': 'done'}})], check_mode=True)
    assert not failed and result['changed'] is False


def test_config_migrate_check_diff(run):
    report = {'ok': True, 'changed': False, 'check': True, 'files': ['/etc/x'], 'written': [], 'to_do': [],
              'diff': '--- a/etc/x\n+++ b/etc/x\n-password: ***\n'}
    result, failed, tool = run(cmw_config_migrate, {'from': '/mnt/old', 'instance': 'prod'},
                               [(['migrate'], 0, report)], check_mode=True, diff=True)
    assert not failed and result['changed'] and result['diff'] == {'prepared': report['diff']}
    assert tool.calls[0][4:] == ['config', 'migrate', '--from', '/mnt/old', '--instance', 'prod', '--check']
    done = dict(report, check=False, files=['/etc/x'], written=[])
    result, failed, _tool = run(cmw_config_migrate, {'from': '/mnt/old', 'instance': 'prod'}, [(['migrate'], 0, done)])
    assert not failed and result['changed'] is False and 'diff' not in result


def test_config_migrate_errors_fail_and_name_them(run):
    report = {'ok': False, 'changed': False, 'errors': ['nginx -t: unknown variable'], 'written': []}
    result, failed, _tool = run(cmw_config_migrate, {'from': '/mnt/old', 'instance': 'prod'}, [(['migrate'], 2, report)])
    assert failed and result['kind'] == 'check_failed' and 'nginx -t' in result['msg']


HAPROXY = dict(method='haproxy', instance='prod', haproxy_socket='/run/h.sock', backend='cmw',
               old_server='old', new_server='new')


def test_cutover_apply_in_check_mode_runs_the_plan(run):
    plan = {'ok': True, 'changed': False, 'steps': [{'outcome': 'planned'}], 'diff': ''}
    result, failed, tool = run(cmw_cutover, dict(HAPROXY, action='apply'), [(['plan'], 0, plan)], check_mode=True)
    assert not failed and result['changed']
    assert tool.calls[0][4:8] == ['cutover', 'plan', '--instance', 'prod']
    unchanged = {'ok': True, 'changed': False, 'steps': [{'outcome': 'unchanged'}]}
    result, failed, _tool = run(cmw_cutover, dict(HAPROXY, action='apply'), [(['plan'], 0, unchanged)], check_mode=True)
    assert not failed and result['changed'] is False


def test_cutover_verify_that_does_not_hold_fails(run):
    report = {'ok': False, 'changed': False, 'steps': [], 'checks': [
        {'check': 'new server up', 'ok': False, 'found': 'DOWN'}]}
    result, failed, _tool = run(cmw_cutover, dict(HAPROXY, action='verify'), [(['verify'], 1, report)])
    assert failed and result['kind'] == 'check_failed' and 'new server up: DOWN' in result['msg']


def fake_binary(path, version):
    path.write_text('#!/bin/sh\necho "cmw-upgrade %s"\n' % version)
    path.chmod(0o755)
    return str(path)


def test_install_copies_the_binary_only_when_its_checksum_differs(monkeypatch, tmp_path):
    src = fake_binary(tmp_path / 'src', '9.9.9')
    dest = tmp_path / 'bin' / 'cmw-upgrade'
    results = []
    for _round in range(2):
        monkeypatch.setattr(basic.AnsibleModule, 'exit_json', raise_exit)
        monkeypatch.setattr(basic.AnsibleModule, 'fail_json', raise_fail)
        monkeypatch.setattr(basic, '_ANSIBLE_ARGS', to_bytes(json.dumps({'ANSIBLE_MODULE_ARGS': dict(
            src=src, remote_src=True, binary=str(dest))})))
        with pytest.raises(Exited) as exited:
            cmw_install.main()
        results.append(exited.value)
    assert not results[0].failed and results[0].result['changed']
    assert results[0].result['version'] == 'cmw-upgrade 9.9.9'
    assert not results[1].failed and results[1].result['changed'] is False
    assert stat.S_IMODE(os.stat(str(dest)).st_mode) == 0o755


def test_install_puts_the_previous_binary_back_when_the_new_one_does_not_run(monkeypatch, tmp_path):
    dest = tmp_path / 'cmw-upgrade'
    fake_binary(dest, '1.0.0')
    bad = tmp_path / 'other'
    bad.write_text('#!/bin/sh\nexit 1\n')
    bad.chmod(0o755)
    monkeypatch.setattr(basic.AnsibleModule, 'exit_json', raise_exit)
    monkeypatch.setattr(basic.AnsibleModule, 'fail_json', raise_fail)
    monkeypatch.setattr(basic, '_ANSIBLE_ARGS', to_bytes(json.dumps({'ANSIBLE_MODULE_ARGS': dict(
        src=str(bad), remote_src=True, binary=str(dest))})))
    with pytest.raises(Exited) as exited:
        cmw_install.main()
    assert exited.value.failed and exited.value.result['kind'] == 'bad_input'
    assert 'previous binary is back' in exited.value.result['msg']
    assert 'cmw-upgrade 1.0.0' in dest.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ['cmw-upgrade', 'other']


def test_install_deb_skips_the_same_intact_version_and_installs_another(run, tmp_path):
    deb = tmp_path / 'cmw-upgrade_0.1.0-1_amd64.deb'
    deb.write_bytes(b'!<arch>\n')
    args = dict(src=str(deb), remote_src=True, binary=str(tmp_path / 'none'))
    result, failed, tool = run(cmw_install, args, [
        (['dpkg-deb'], 0, '0.1.0-1'), (['dpkg-query'], 0, '0.1.0-1'), (['--verify'], 0, '')])
    assert not failed and result['changed'] is False and result['kind'] == 'deb'
    assert not any(call[:2] == ['dpkg', '-i'] for call in tool.calls)
    result, failed, tool = run(cmw_install, args, [
        (['dpkg-deb'], 0, '0.1.0-1'), (['dpkg-query'], 0, '0.0.9-1'), (['-i'], 0, '')])
    assert not failed and result['changed'] and result['package_version'] == '0.1.0-1'
    assert tool.calls[-1] == ['dpkg', '-i', str(deb)]


def test_install_rpm_reinstalls_when_files_changed(run, tmp_path):
    rpm = tmp_path / 'cmw-upgrade-0.1.0-1.x86_64.rpm'
    rpm.write_bytes(b'\xed\xab\xee\xdb')
    args = dict(src=str(rpm), remote_src=True, binary=str(tmp_path / 'none'))
    result, failed, tool = run(cmw_install, args, [
        (['-p'], 0, '0.1.0-1'), (['-V'], 1, 'S.5....T.  /usr/bin/cmw-upgrade'),
        (['-q', 'cmw-upgrade'], 0, '0.1.0-1'), (['-U'], 0, '')])
    assert not failed and result['changed'] and result['kind'] == 'rpm'
    assert tool.calls[-1][:2] == ['rpm', '-U']


def test_cutover_revert_with_nothing_saved_changes_nothing(run):
    error = {'ok': False, 'error': {'kind': 'state_conflict', 'message': 'no saved nginx cut-over state'}}
    args = dict(method='nginx', instance='prod', nginx_site='/etc/nginx/sites-enabled/cmw', old='a:1', new='b:2',
                action='revert')
    result, failed, _tool = run(cmw_cutover, args, [(['revert'], 2, error)])
    assert not failed and result['changed'] is False and 'no saved' in result['cmw']['note']
    result, failed, _tool = run(cmw_cutover, dict(args, action='apply'), [(['apply'], 2, error)])
    assert failed and result['kind'] == 'state_conflict'


def test_upgrade_check_diff_shows_the_plans_config_migration(run):
    plan = {'ok': True, 'changed': False, 'steps': [
        {'name': 'verify-bundle', 'title': 'Verify'},
        {'name': 'migrate-config', 'title': 'Migrate', 'findings': [{'changes': [
            {'action': 'renamed', 'file': '/etc/prod.yml', 'key': 'db.name', 'from': 'databaseName', 'new': 'prod', 'old': None},
            {'action': 'kept', 'file': '/etc/prod.yml', 'key': 'port', 'new': '80', 'old': '80'},
            {'action': 'appended', 'file': '/etc/prod.yml', 'key': 'journal.password', 'new': '***', 'old': None}]}]}]}
    result, failed, _tool = run(cmw_upgrade, UPGRADE, [
        (['plan'], 0, plan), (['status'], 3, {'ok': False, 'recorded': False})], check_mode=True, diff=True)
    assert not failed and result['changed']
    assert result['diff']['prepared'] == (
        '--- /etc/prod.yml (now)\n+++ /etc/prod.yml (after the config migration)\n'
        '+db.name = prod (from databaseName)\n+journal.password = ***\n')
    result, failed, _tool = run(cmw_upgrade, UPGRADE, [
        (['plan'], 0, plan), (['status'], 3, {'ok': False, 'recorded': False})], check_mode=True)
    assert 'diff' not in result
