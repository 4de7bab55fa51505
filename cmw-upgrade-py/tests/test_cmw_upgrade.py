"""The Python module `cmw_upgrade` against real folder trees."""

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

import cmw_upgrade

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "server"


def without_contract_keys(cli_report: dict, python_report: dict) -> dict:
    """The CLI's --json report without the `ok`/`changed` every CLI report
    carries, the `root` one under --root names, and the unified `diff` text
    config migrate adds for scripts that show it (Ansible's --diff), where
    the Python result (the same report) has no such key."""
    return {
        key: value
        for key, value in cli_report.items()
        if key in python_report or key not in ("ok", "changed", "root", "diff")
    }


def record(time: str, level: str, message: str) -> str:
    return f"2026-11-24 {time},123 {level} guid system 127.0.0.1 /upgrade 200 5 '{message}'\n"


def test_detect_os_family_for_each_family():
    info = cmw_upgrade.detect_os_family('ID="redos"\nID_LIKE="rhel centos fedora"\n')
    assert info.family == "rpm"
    assert info.distro == "redos"
    assert str(info.web_owner) == "nginx:nginx"
    assert info.nginx_site_path("prod") == "/etc/nginx/conf.d/comindwareprod"
    assert info.package_install_argv(["a.rpm"]) == ["rpm", "-i", "a.rpm"]
    assert cmw_upgrade.detect_os_family("ID=astra\n").family == "deb"
    alt = cmw_upgrade.detect_os_family("ID=altlinux\n")
    assert alt.package_install_argv(["x.rpm"]) == ["apt-get", "install", "-y", "x.rpm"]
    assert repr(alt) == 'OsInfo(family="alt", distro="altlinux")'


def test_errors_form_a_hierarchy():
    with pytest.raises(cmw_upgrade.UnknownOsFamilyError, match="gentoo"):
        cmw_upgrade.detect_os_family("ID=gentoo\n")
    with pytest.raises(cmw_upgrade.CmwUpgradeError):
        cmw_upgrade.detect_os_family("")
    with pytest.raises(cmw_upgrade.InvalidInstanceNameError, match="'..'"):
        cmw_upgrade.validate_instance_name("..")
    assert cmw_upgrade.validate_instance_name("prod_2") == "prod_2"
    assert issubclass(cmw_upgrade.NoIgniteNodeFolderError, cmw_upgrade.CmwUpgradeError)


def test_instance_layout_of_the_example_server():
    layout = cmw_upgrade.InstanceLayout("prod", root=EXAMPLE)
    assert layout.family == "deb"
    assert layout.database == str(EXAMPLE / "var/lib/comindware/prod/Database")
    assert layout.log_dir == str(EXAMPLE / "var/log/comindware/prod/Logs")
    assert layout.units == ["comindwareprod", "apigatewayprod", "adapterhostprod"]
    assert layout.data_owner.user == "www-data"
    as_dict = layout.to_dict()
    assert as_dict["database"]["origin"].startswith("databasePath in ")
    assert as_dict["family"] == "deb"
    assert "InstanceLayout(" in repr(layout)
    forced = cmw_upgrade.InstanceLayout("prod", root=str(EXAMPLE), family="rpm")
    assert forced.nginx_site.endswith("etc/nginx/conf.d/comindwareprod")
    with pytest.raises(cmw_upgrade.InvalidInstanceNameError):
        cmw_upgrade.InstanceLayout("../x", root=EXAMPLE)


def test_prune_caches_checks_by_default_then_prunes(tmp_path):
    database = tmp_path / "Database"
    shutil.copytree(EXAMPLE / "var/lib/comindware/prod/Database", database, symlinks=True)
    check = cmw_upgrade.prune_caches(database)
    assert check.check is True
    assert len(check.removed) == 16
    assert check.removed == sorted(check.removed)
    assert all((database / path).exists() for path in check.removed)
    done = cmw_upgrade.prune_caches(database, check=False)
    assert done.removed == check.removed
    assert done.bytes_freed == check.bytes_freed > 0
    assert not any((database / path).exists() for path in done.removed)
    assert "PruneReport(check=False" in repr(done)
    with pytest.raises(cmw_upgrade.NoIgniteNodeFolderError):
        cmw_upgrade.prune_caches(tmp_path / "Database" / "Scripts")


def test_upgrade_verdict_states(tmp_path):
    assert cmw_upgrade.upgrade_verdict(tmp_path).verdict == "not_started"
    ontology = tmp_path / "UpgradeOntology.log"
    upgrade = tmp_path / "upgrade2026-11-24.log"
    ontology.write_text(record("10:00:00", "INFO", "Upgrade of ontology completed successfully"))
    upgrade.write_text(record("10:00:01", "INFO", "Upgrade started"))
    assert cmw_upgrade.upgrade_verdict(tmp_path).verdict == "in_progress"
    upgrade.write_text(upgrade.read_text() + record("10:00:02", "INFO", "Upgrade completed"))
    verdict = cmw_upgrade.upgrade_verdict(tmp_path)
    assert verdict.succeeded and verdict.is_final
    upgrade.write_text(upgrade.read_text() + record("10:00:03", "Info", "Index error: rebuild needed"))
    failed = cmw_upgrade.upgrade_verdict(str(tmp_path))
    assert failed.verdict == "failed"
    (error,) = failed.errors
    assert (error.file, error.line, error.level, error.reason) == ("upgrade2026-11-24.log", 3, "Info", "keyword")
    assert "Index error" in error.message
    assert failed.to_dict()["errors"][0]["reason"] == "keyword"
    assert repr(failed) == 'UpgradeVerdict(verdict="failed", errors=1)'


def test_log_watcher_reads_what_is_appended(tmp_path):
    watcher = cmw_upgrade.LogWatcher(tmp_path)
    assert watcher.poll().verdict == "not_started"
    (tmp_path / "UpgradeOntology.log").write_text(record("10:00:00", "INFO", "Upgrade of ontology completed successfully"))
    with open(tmp_path / "update_2026-11-24.log", "a") as log:
        log.write(record("10:00:01", "INFO", "Upgrade started"))
        log.flush()
        assert watcher.poll().verdict == "in_progress"
        log.write(record("10:00:02", "INFO", "Upgrade completed"))
    assert watcher.poll().verdict == "succeeded"


def test_file_access_errors(tmp_path):
    with pytest.raises(cmw_upgrade.FileAccessError, match="missing") as missing:
        cmw_upgrade.upgrade_verdict(tmp_path / "missing")
    # Also what a Python caller catches for a missing file, with its number and name.
    assert isinstance(missing.value, OSError)
    assert missing.value.errno == errno.ENOENT and missing.value.strerror == os.strerror(errno.ENOENT)
    assert missing.value.filename == str(tmp_path / "missing") == missing.value.path
    assert missing.value.kind == "io"
    assert str(missing.value).startswith("cannot "), "the tool's message: " + str(missing.value)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError) as not_folder:
        cmw_upgrade.prune_caches(tmp_path / "file")
    assert isinstance(not_folder.value, cmw_upgrade.NotAFolderError)
    assert not_folder.value.errno == errno.ENOTDIR and not_folder.value.filename == str(tmp_path / "file")


def test_every_error_class_says_its_kind_and_what_else_it_is():
    classes = {
        name: getattr(cmw_upgrade, name)
        for name in dir(cmw_upgrade)
        if name.endswith("Error") and name not in {"CmwUpgradeError", "LogError"}
    }
    assert len(classes) >= 24
    for name, cls in classes.items():
        assert issubclass(cls, cmw_upgrade.CmwUpgradeError), name
        assert cls.__module__ == "cmw_upgrade" and cls.__doc__, name
    values = {"UnknownOsFamilyError", "InvalidInstanceNameError", "PathOutsideRootError", "BadInputError",
              "BadRequestError", "ConfigParseError", "NoIgniteNodeFolderError", "SystemFolderError"}
    files = {"FileAccessError", "NotAFolderError", "NotEnoughSpaceError", "AlreadyExistsError"}
    assert {name for name, cls in classes.items() if issubclass(cls, ValueError)} == values
    assert {name for name, cls in classes.items() if issubclass(cls, OSError)} == files
    # A lock held by another run is its own class, not a ValueError or OSError.
    assert not issubclass(cmw_upgrade.LockedError, (ValueError, OSError))
    # Invalid choices and names are ValueErrors with a kind.
    with pytest.raises(ValueError) as family:
        cmw_upgrade.InstanceLayout("prod", root=EXAMPLE, family="gentoo")
    assert isinstance(family.value, cmw_upgrade.BadInputError) and family.value.kind == "bad_input"
    with pytest.raises(ValueError) as name:
        cmw_upgrade.validate_instance_name("../x")
    assert name.value.kind == "invalid_instance_name"
    with pytest.raises(cmw_upgrade.BadInputError, match="snapshot"):
        cmw_upgrade.backup("prod", "/srv/b", root=EXAMPLE, method="zip")


def test_ctrl_c_stops_a_read_only_call_within_a_second():
    # A server that accepts the connection and never answers: the check would
    # wait for its whole timeout; Ctrl-C ends the call at once.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    ctrl_c = CtrlC(delay=0.3)
    ctrl_c.start()
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            cmw_upgrade.check("prod", f"http://127.0.0.1:{port}/api/health", root=EXAMPLE)
    finally:
        listener.close()
    assert ctrl_c.sent and time.monotonic() - started < 1.3


CREATE_OUTPUT = """...
[Done] Creating Log Directories.
OK     Instance folder created.
OK     Instance service started.
FAILED Instance API gateway service started.
FAILED NGINX started.
OK     Final status.
[Done] Upgrade CBAP instance.
"""


def test_parse_instance_create_output():
    report = cmw_upgrade.parse_instance_create_output(CREATE_OUTPUT, instance="prod")
    assert not report.succeeded
    assert report.final_status == "OK"
    assert report.services_to_restart == ["api_gateway", "nginx"]
    assert report.units_to_restart == ["apigatewayprod", "nginx"]
    assert report.components[2] == {"line": 5, "status": "FAILED", "text": "Instance API gateway service started.", "service": "api_gateway"}
    assert report.done == ["Creating Log Directories.", "Upgrade CBAP instance."]
    without_instance = cmw_upgrade.parse_instance_create_output(CREATE_OUTPUT)
    with pytest.raises(ValueError, match="instance"):
        without_instance.units_to_restart


def test_parse_version_and_prerequisite_lists():
    assert cmw_upgrade.parse_version_list("Installed:\n 5.0.1234.0\n 4.7.2890.0\n") == ["5.0.1234.0", "4.7.2890.0"]
    rows = cmw_upgrade.parse_prerequisites_list("Status | Software | Version\n-------|------|----\nOK | Kafka | 3.6.1\nFAILED | Java |\n")
    assert rows == [
        {"status": "OK", "software": "Kafka", "version": "3.6.1", "ok": True},
        {"status": "FAILED", "software": "Java", "version": "", "ok": False},
    ]


def test_type_stubs_cover_the_module():
    stub = (Path(__file__).resolve().parents[1] / "cmw_upgrade.pyi").read_text()
    public = [
        name
        for name in dir(cmw_upgrade)
        if not name.startswith("_") and not isinstance(getattr(cmw_upgrade, name), type(cmw_upgrade))
    ]
    declared = ("def {}(", "class {}", "{}:", "{} = ")
    missing = [name for name in public if not any(form.format(name) in stub for form in declared)]
    assert missing == []
    # (dist/wheel.sh also runs mypy's stubtest: signatures, defaults, bases, TypedDicts.)
    assert sorted(cmw_upgrade.__all__) == sorted(public + ["__version__"])
    assert cmw_upgrade.__version__ == cmw_upgrade.cmw_upgrade.__version__
    # The result shapes exist at run time, as the stub declares them.
    assert cmw_upgrade.BackupReport.__required_keys__ >= {"bundle", "method", "files", "bytes"}
    assert "from" in cmw_upgrade.ConfigChange.__optional_keys__


# Under a root other than "/", a path argument for that server is a server
# path, placed under the root (as the CLI's --root places its arguments):
# the old server's files to migrate from, and bundles, live in the trees.
OLD_FILES = "/srv/old-server"
BUNDLE = "/srv/backups/bundle"


def in_tree(root: Path, server_path: str) -> Path:
    """The host path of `server_path` in the tree `root`, its parent made."""
    path = root / server_path.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def migration_servers(tmp_path: Path) -> "tuple[Path, Path]":
    """A new server's tree, with the old server's files in it at OLD_FILES."""
    new = tmp_path / "new"
    fixtures("new-server", new, "deb", "5.0.1234.0")
    old = in_tree(new, OLD_FILES)
    fixtures("server", old, "deb")
    return old, new


def assert_shape(value, typed) -> None:
    """`value` has every required key of the TypedDict `typed` and no key it
    does not declare (the stub's result types are what the calls return)."""
    keys = set(value)
    assert typed.__required_keys__ <= keys, (typed.__name__, typed.__required_keys__ - keys)
    assert keys <= typed.__required_keys__ | typed.__optional_keys__, (
        typed.__name__, keys - typed.__required_keys__ - typed.__optional_keys__)


def fixtures(*args):
    tool = REPO / "target" / "debug" / "cmw-upgrade-fixtures"
    assert tool.exists(), "build it first: cargo build -p cmw-upgrade-benches --bins"
    subprocess.run([str(tool), *map(str, args)], check=True, capture_output=True)


def test_migrate_config_returns_the_cli_report(tmp_path):
    old, new = migration_servers(tmp_path)
    before = (new / "usr/share/comindware/configs/instance/prod.yml").read_text()
    report = cmw_upgrade.migrate_config(Path(OLD_FILES), "prod", root=new)
    assert_shape(report, cmw_upgrade.MigrationReport)
    for change in report["changes"]:
        assert_shape(change, cmw_upgrade.ConfigChange)
    for note in report["to_do"]:
        assert_shape(note, cmw_upgrade.HandNote)
    assert report["check"] is True
    assert report["errors"] == []
    assert (new / "usr/share/comindware/configs/instance/prod.yml").read_text() == before
    cli = REPO / "target" / "debug" / "cmw-upgrade"
    output = subprocess.run(
        [str(cli), "--root", str(new), "--json", "config", "migrate", "--from", OLD_FILES, "--instance", "prod", "--check"],
        check=True, capture_output=True, text=True,
    )
    assert without_contract_keys(json.loads(output.stdout), report) == report
    renamed = [c for c in report["changes"] if c["action"] == "renamed"]
    assert {c["from"] for c in renamed} >= {"streamsPath", "backupPath"}
    assert all(c["new"] == "***" for c in report["changes"] if c["key"].endswith("password"))

    written = cmw_upgrade.migrate_config(OLD_FILES, "prod", root=str(new), check=False)
    assert len(written["written"]) == 6
    assert "nodeName: cmw-node-01" in (new / "usr/share/comindware/configs/instance/prod.yml").read_text()
    again = cmw_upgrade.migrate_config(OLD_FILES, "prod", root=new, check=False)
    with pytest.raises(cmw_upgrade.PathOutsideRootError) as relative:
        cmw_upgrade.migrate_config("srv/old-server", "prod", root=new)
    assert isinstance(relative.value, ValueError) and relative.value.kind == "path_outside_root"
    assert relative.value.path == "srv/old-server"
    assert again["written"] == [] and again["files"] == []


def test_no_secret_reaches_python(tmp_path):
    old, new = migration_servers(tmp_path)
    config = old / "usr/share/comindware/configs/instance/prod.yml"
    config.write_text(
        config.read_text()
        + 'ldap:\n  bindPassword: "Zq-nested-secret"\naudit.uri: "https://u:Zq-url-secret@es:9200"\n'
    )
    env = old / "etc/sysconfig/comindwareprod-env"
    env.write_text(env.read_text() + "export API_TOKEN='Zq-env-secret'\n")
    report = cmw_upgrade.migrate_config(OLD_FILES, "prod", root=new)
    printed = json.dumps(report)
    assert "***" in printed
    for secret in ("Zq-nested-secret", "Zq-url-secret", "Zq-env-secret"):
        assert secret not in printed
    # An error message quoting a broken line is masked too.
    config.write_text(config.read_text() + 'journal.password: "Zq-broken-secret"\nbroken: [\n')
    report = cmw_upgrade.migrate_config(OLD_FILES, "prod", root=new)
    assert report["errors"] and "Zq-broken-secret" not in json.dumps(report)


def test_migrate_config_errors(tmp_path):
    with pytest.raises(cmw_upgrade.InvalidInstanceNameError):
        cmw_upgrade.migrate_config(tmp_path, "../x", root=tmp_path, family="deb")
    old, new = migration_servers(tmp_path)
    (old / "var/www/prod/apigateway.yml").write_text("cluster.name: other\n")
    report = cmw_upgrade.migrate_config(OLD_FILES, "prod", root=new, check=False)
    assert report["written"] == []
    assert any("cluster.name" in error for error in report["errors"])


def test_backup_verify_drift_restore(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    fixtures("server", old, "deb")
    fixtures("new-server", new, "deb", "5.0.1234.0")
    bundle = in_tree(old, BUNDLE)
    seen = []
    report = cmw_upgrade.backup("prod", BUNDLE, root=old, with_streams=True, progress=seen.append)
    assert_shape(report, cmw_upgrade.BackupReport)
    assert_shape(seen[-1], cmw_upgrade.CopyProgress)
    assert report["bundle"] == str(bundle)
    assert report["method"] == "copy" and "crash-consistent" in report["consistency"]
    assert report["files"] > 80
    assert seen and seen[-1]["phase"] in {"copying", "verifying", "flushing"}
    assert set(seen[-1]) == {"phase", "total_bytes", "total_files", "done_bytes", "done_files"}
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["instance"] == "prod" and manifest["platform_version"] == "4.7.2890.0"

    assert cmw_upgrade.verify_bundle(bundle) == {"ok": True, "missing": [], "changed_files": [], "extra": []}
    cli = REPO / "target" / "debug" / "cmw-upgrade"
    output = subprocess.run([str(cli), "--json", "backup", "verify", str(bundle)], capture_output=True, text=True)
    python = cmw_upgrade.verify_bundle(str(bundle))
    assert without_contract_keys(json.loads(output.stdout), python) == python

    (old / "var/lib/comindware/prod/Database/db/late.bin").write_text("late")
    drift = cmw_upgrade.bundle_drift(BUNDLE, "prod", root=old)
    assert_shape(drift, cmw_upgrade.DriftReport)
    assert_shape(cmw_upgrade.verify_bundle(bundle), cmw_upgrade.VerifyReport)
    assert drift["added"] == ["db/late.bin"] and drift["changed_files"] == [] and drift["removed"] == []

    with pytest.raises(cmw_upgrade.AlreadyExistsError, match="never overwritten") as exists:
        cmw_upgrade.backup("prod", BUNDLE, root=old)
    # Also an OSError, with the number and the file, for callers that catch those.
    assert exists.value.errno == errno.EEXIST
    assert isinstance(exists.value, OSError) and exists.value.filename == str(bundle)
    assert exists.value.kind == "already_exists" and exists.value.path == str(bundle)
    assert "never overwritten" in str(exists.value), "the tool's message, not OSError's"
    # The bundle brought to the new server, at the same server path.
    bundle = bundle.rename(in_tree(new, BUNDLE))
    restored = cmw_upgrade.restore_bundle(BUNDLE, "prod", root=new)
    assert_shape(restored, cmw_upgrade.RestoreReport)
    assert_shape(restored["parts"][0], cmw_upgrade.RestoredPart)
    assert restored["owner"] == "www-data:www-data"
    assert [part["part"] for part in restored["parts"]] == ["database", "streams"]
    assert (new / "var/lib/comindware/prod/Database/db").is_dir()
    with pytest.raises(cmw_upgrade.AlreadyExistsError, match="--replace"):
        cmw_upgrade.restore_bundle(BUNDLE, "prod", root=new)

    (bundle / "database" / "db" / "stray").write_text("x")
    assert cmw_upgrade.verify_bundle(bundle)["extra"] == ["database/db/stray"]
    with pytest.raises(cmw_upgrade.BundleDamagedError):
        cmw_upgrade.restore_bundle(BUNDLE, "prod", root=new, replace=True)


def test_backup_of_a_running_instance_is_consistent_unless_accepted(tmp_path, monkeypatch):
    # As the CLI: a systemctl that says the instance runs.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "systemctl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    old = tmp_path / "old"
    fixtures("server", old, "deb")
    in_tree(old, BUNDLE)
    # The default for a running instance is a snapshot (the fixture has no control.sh).
    with pytest.raises(cmw_upgrade.CheckFailedError, match="control.sh"):
        cmw_upgrade.backup("prod", BUNDLE, root=old)
    with pytest.raises(cmw_upgrade.CheckFailedError, match="accept"):
        cmw_upgrade.backup("prod", BUNDLE, root=old, method="copy")
    report = cmw_upgrade.backup("prod", BUNDLE, root=old, method="copy", accept_crash_consistent=True)
    assert "crash-consistent" in report["consistency"]


def test_import_cdbbz(tmp_path):
    import zipfile

    cdbbz = tmp_path / "prod.cdbbz"
    with zipfile.ZipFile(cdbbz, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("Database/db/part-0.bin", b"\x00" * 1000)
        archive.writestr("Scripts/OnSave.cs", "// script")
        archive.writestr("Streams/1.bin", "upload")
    report = cmw_upgrade.import_cdbbz(cdbbz, tmp_path / "bundle", instance="prod")
    assert report["method"] == "import" and report["files"] == 3
    assert (tmp_path / "bundle/database/Scripts/OnSave.cs").read_text() == "// script"
    assert cmw_upgrade.verify_bundle(tmp_path / "bundle")["ok"]
    with pytest.raises(cmw_upgrade.FileAccessError, match="not-there.cdbbz"):
        cmw_upgrade.import_cdbbz(tmp_path / "not-there.cdbbz", tmp_path / "other")


def simulated_servers(folder: Path, upgrade_time: str = "1s") -> dict:
    """Lays out simulated servers with the CLI's demo (the same simulator the
    Rust tests use) and returns what to pass to plan/run."""
    binary = REPO / "target" / "debug" / "cmw-upgrade"
    output = subprocess.run(
        [str(binary), "demo", "--setup-only", "--json", "--upgrade-time", upgrade_time, "--keep", str(folder)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(output.stdout)


@pytest.fixture
def servers(tmp_path, monkeypatch):
    setup = simulated_servers(tmp_path / "sim")
    # The stand-ins (systemctl, dpkg, nginx on the simulation's config) come first.
    monkeypatch.setenv("PATH", setup["path"])
    yield setup
    subprocess.run(
        [str(Path(setup["programs"]) / "systemctl"), "stop", "comindwareprod", "nginx"],
        capture_output=True,
    )


def upgrade_args(setup: dict) -> dict:
    return dict(
        instance=setup["instance"],
        bundle=setup["bundle"],
        distribution=setup["distribution"],
        prerequisites=setup["prerequisites"],
        root=setup["root"],
        port=setup["port"],
        upgrade_timeout=30,
        health_timeout=30,
    )


def test_plan_lists_every_step_and_changes_nothing(servers):
    before = sorted(str(p) for p in Path(servers["root"]).rglob("*"))
    steps = cmw_upgrade.plan(**upgrade_args(servers))
    for step in steps:
        assert_shape(step, cmw_upgrade.PlannedStep)
    # Every path argument takes str or os.PathLike alike.
    as_paths = {key: Path(value) for key, value in upgrade_args(servers).items()
                if key in {"bundle", "distribution", "prerequisites", "root"}}
    # (The same plan; its commands may carry another second's time stamp.)
    again = cmw_upgrade.plan(**{**upgrade_args(servers), **as_paths})
    assert [(step["name"], len(step["commands"])) for step in again] == [
        (step["name"], len(step["commands"])) for step in steps
    ]
    assert [step["name"] for step in steps][:4] == [
        "verify-bundle",
        "prerequisites",
        "install-version",
        "create-instance",
    ]
    assert len(steps) == 12
    commands = [command for step in steps for command in step["commands"]]
    assert any(command.startswith("(cd /var/lib/cmw-upgrade/prod/dist/CMW_astra_5.0.1234.0/scripts && bash instance_create.sh -n=prod") for command in commands)
    assert sorted(str(p) for p in Path(servers["root"]).rglob("*")) == before


def test_run_reports_progress_and_upgrades(servers):
    events = []
    report = cmw_upgrade.run(**upgrade_args(servers), progress=events.append)
    assert report["outcome"] == "upgraded", report
    assert_shape(report, cmw_upgrade.RunReport)
    for step in report["steps"]:
        assert_shape(step, cmw_upgrade.StepRecord)
    assert [step["status"] for step in report["steps"]] == ["done"] * 12
    started = [event["name"] for event in events if event["event"] == "step_started"]
    assert started[0] == "verify-bundle" and started[-1] == "final-check"
    finished = [event for event in events if event["event"] == "step_finished"]
    assert len(finished) == 12 and all(event["seconds"] >= 0 for event in finished)
    marker = Path(servers["root"]) / "var/lib/comindware/prod/Database/.cmw-sim-version"
    assert marker.read_text().strip() == "5.0.1234.0"
    # Run again: everything is done, every step is skipped.
    again = []
    cmw_upgrade.run(**upgrade_args(servers), progress=again.append)
    assert {event["event"] for event in again} == {"step_skipped"}
    # Where it is, what is there, whether it answers; a finished run is not
    # rolled back without force=True.
    state = cmw_upgrade.status("prod", root=servers["root"])
    assert state["recorded"] is True and len(state["steps"]) == 12
    assert_shape(state, cmw_upgrade.RunStatus)
    assert any(note["code"] == "worker_switch" for note in state["to_do"])
    assert cmw_upgrade.status("other", root=servers["root"]) == {"recorded": False, "instance": "other"}
    assert cmw_upgrade.instances(root=servers["root"]) == [{"name": "prod", "version": "5.0.1234.0"}]
    health = cmw_upgrade.check("prod", f"http://127.0.0.1:{servers['port']}/api/health", root=servers["root"])
    assert health["status"] == 200 and health["heartbeat_logs"] >= 1, health
    assert_shape(health, cmw_upgrade.CheckReport)
    assert_shape(cmw_upgrade.instances(root=servers["root"])[0], cmw_upgrade.InstanceInfo)
    with pytest.raises(cmw_upgrade.BadRequestError, match="only http://"):
        cmw_upgrade.check("prod", "https://127.0.0.1/", root=servers["root"])
    with pytest.raises(cmw_upgrade.StateConflictError, match="force=True"):
        cmw_upgrade.rollback("prod", root=servers["root"])
    rolled = cmw_upgrade.rollback("prod", root=servers["root"], force=True)
    assert rolled["rollback"]["status"] == "done"
    assert_shape(rolled, cmw_upgrade.RollbackReport)
    assert all(step["status"] == "rolled_back" for step in rolled["steps"])


def large_database(root: Path) -> None:
    """Adds 1 GiB of sparse files to a fixture server's database: made in an
    instant, and a copy of them takes long enough to be interrupted."""
    database = root / "var/lib/comindware/prod/Database/db"
    for index in range(16):
        with open(database / f"large-{index}.bin", "wb") as large:
            large.truncate(64 << 20)


class CtrlC:
    """Sends SIGINT to this process from another thread, as a terminal does,
    so it arrives while the call works and not inside a Python callable."""

    def __init__(self, delay: float = 0.05):
        self.delay = delay
        self.sent = False
        self.timer = None

    def start(self) -> None:
        if self.timer is None:
            self.timer = threading.Timer(self.delay, self._send)
            self.timer.start()

    def _send(self) -> None:
        self.sent = True
        os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_stops_a_backup_at_once_and_leaves_nothing(tmp_path):
    old = tmp_path / "old"
    fixtures("server", old, "deb")
    large_database(old)
    bundle = in_tree(old, BUNDLE)
    ctrl_c = CtrlC()
    snapshots = []

    def progress(snapshot):
        snapshots.append(snapshot)
        if snapshot["phase"] == "copying":
            ctrl_c.start()

    with pytest.raises(KeyboardInterrupt):
        cmw_upgrade.backup("prod", BUNDLE, root=old, progress=progress)
    phases = [snapshot["phase"] for snapshot in snapshots]
    assert ctrl_c.sent, phases
    # Stopped inside the copy: it never got to the end of the 1 GiB, nor on to verifying.
    copying = [snapshot for snapshot in snapshots if snapshot["phase"] == "copying"]
    assert copying[-1]["done_bytes"] < copying[-1]["total_bytes"], copying[-1]
    assert phases[phases.index("copying"):] == ["copying"] * len(copying), phases
    assert not bundle.exists()
    assert list(bundle.parent.iterdir()) == []
    # The interrupted call left nothing in the way: the same backup now works.
    assert cmw_upgrade.verify_bundle(cmw_upgrade.backup("prod", BUNDLE, root=old)["bundle"])["ok"]


def test_an_exception_in_the_progress_callable_stops_the_work(tmp_path):
    old = tmp_path / "old"
    fixtures("server", old, "deb")
    large_database(old)
    bundle = in_tree(old, BUNDLE)

    class Enough(Exception):
        pass

    calls = []

    def progress(snapshot):
        calls.append(snapshot)
        raise Enough("the caller gives up")

    started = time.monotonic()
    with pytest.raises(Enough):
        cmw_upgrade.backup("prod", BUNDLE, root=old, progress=progress)
    assert time.monotonic() - started < 1.0, "stopped, not copied to the end"
    assert len(calls) == 1, "not called again after it raised"
    assert not bundle.exists() and list(bundle.parent.iterdir()) == []


def test_ctrl_c_stops_a_run_between_steps_and_the_same_call_resumes(servers):
    ctrl_c = CtrlC(delay=0.01)

    def progress(event):
        if event["event"] == "step_finished" and event["name"] == "verify-bundle":
            ctrl_c.start()

    with pytest.raises(KeyboardInterrupt):
        cmw_upgrade.run(**upgrade_args(servers), progress=progress)
    state_file = Path(servers["root"]) / "var/lib/cmw-upgrade/prod/state.json"
    statuses = [step["status"] for step in json.loads(state_file.read_text())["steps"]]
    done = statuses.count("done")
    assert 1 <= done < 12, statuses
    assert statuses == ["done"] * done + ["pending"] * (12 - done), "no step was cut short"

    events = []
    report = cmw_upgrade.run(**upgrade_args(servers), progress=events.append)
    assert report["outcome"] == "upgraded", report
    skipped = [event["name"] for event in events if event["event"] == "step_skipped"]
    started = [event["name"] for event in events if event["event"] == "step_started"]
    assert len(skipped) == done and len(started) == 12 - done, "the steps done stayed done"


def test_ctrl_c_cuts_a_long_wait_short_and_that_step_starts_over(tmp_path, monkeypatch):
    # The simulated upgrade takes 5 s: the wait for it is long enough to be
    # interrupted, and the interrupt must not wait for it to end.
    setup = simulated_servers(tmp_path / "sim", upgrade_time="5s")
    monkeypatch.setenv("PATH", setup["path"])
    try:
        ctrl_c = CtrlC(delay=0.01)

        def progress(event):
            if event["event"] == "waiting" and "upgrade" in event["what"]:
                ctrl_c.start()

        with pytest.raises(KeyboardInterrupt):
            cmw_upgrade.run(**upgrade_args(setup), progress=progress)
        assert ctrl_c.sent
        # The wait was cut short: the simulated upgrade, which marks the data
        # with the new version when it ends, has not ended yet.
        root = Path(setup["root"])
        marker = root / "var/lib/comindware/prod/Database/.cmw-sim-version"
        brought = root / setup["bundle"].lstrip("/") / "database/.cmw-sim-version"
        assert marker.read_text() == brought.read_text(), "the wait was cut short"
        state_file = Path(setup["root"]) / "var/lib/cmw-upgrade/prod/state.json"
        steps = {step["name"]: step for step in json.loads(state_file.read_text())["steps"]}
        assert steps["transfer-data"]["status"] == "done"
        assert steps["wait-upgrade"]["status"] == "pending"
        assert steps["wait-upgrade"]["error_kind"] == "cancelled"

        report = cmw_upgrade.run(**upgrade_args(setup))
        assert report["outcome"] == "upgraded", report
    finally:
        subprocess.run(
            [str(Path(setup["programs"]) / "systemctl"), "stop", "comindwareprod", "nginx"],
            capture_output=True,
        )


# The whole upgrade from a control point: each simulated server behind its own
# real sshd on loopback (openssh-server, installed by .ci/run), with its own host
# key; one client key and one known_hosts file reach both; the CLI binary is the
# agent there, rooted at that server's tree.

SSHD = next((path for path in ("/usr/sbin/sshd", "/usr/bin/sshd") if os.path.exists(path)), None)


def keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "cmw-upgrade-test", "-f", str(path)], check=True)


class Sshd:
    """A throwaway sshd on a free loopback port (as the Rust tests' TestSshd)."""

    def __init__(self, folder: Path, programs: str, client_key: Path):
        folder.mkdir(parents=True)
        keygen(folder / "host_key")
        shutil.copy(client_key.with_suffix(".pub"), folder / "authorized_keys")
        os.makedirs("/run/sshd", exist_ok=True)
        self.process = None
        for _ in range(5):
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                self.port = probe.getsockname()[1]
            (folder / "sshd_config").write_text(
                f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {folder}/host_key\n"
                f"PidFile {folder}/sshd.pid\nAuthorizedKeysFile {folder}/authorized_keys\n"
                "StrictModes no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n"
                "KbdInteractiveAuthentication no\nUsePAM no\nLogLevel ERROR\nMaxSessions 50\n"
                f"SetEnv PATH={programs}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
            )
            self.process = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(folder / "sshd_config")],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if self._listening():
                kind, key = (folder / "host_key.pub").read_text().split()[:2]
                self.known_host = f"[127.0.0.1]:{self.port} {kind} {key}\n"
                return
        raise RuntimeError("sshd did not start")

    def _listening(self) -> bool:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False  # its port was taken meanwhile
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                time.sleep(0.05)
                return self.process.poll() is None
            except OSError:
                time.sleep(0.02)
        self.stop()
        return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def two_servers(tmp_path):
    if SSHD is None:
        pytest.skip("sshd is not installed (openssh-server; .ci/run installs it)")
    setup = simulated_servers(tmp_path / "sim")
    key = tmp_path / "client_key"
    keygen(key)
    old = Sshd(tmp_path / "old-sshd", setup["programs"], key)
    new = Sshd(tmp_path / "new-sshd", setup["programs"], key)
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(old.known_host + new.known_host)
    control = tmp_path / "control"
    control.mkdir()
    user = os.environ.get("USER") or "root"
    args = dict(
        old=f"{user}@127.0.0.1:{old.port}",
        new=f"{user}@127.0.0.1:{new.port}",
        instance="prod",
        distribution=setup["distribution"],
        prerequisites=setup["prerequisites"],
        port=setup["port"],
        bundle_dir="/mnt/cmw-backup",
        identity_file=key,
        known_hosts=known_hosts,
        remote_cmw_upgrade=str(REPO / "target" / "debug" / "cmw-upgrade"),
        state_root=control,
        upgrade_timeout=30,
        health_timeout=30,
        old_root=setup["old_root"],
        new_root=setup["root"],
    )
    try:
        yield setup, args
    finally:
        old.stop()
        new.stop()
        subprocess.run(
            [str(Path(setup["programs"]) / "systemctl"), "stop", "comindwareprod", "nginx"],
            env={**os.environ, "PATH": setup["path"]},
            capture_output=True,
        )


def test_upgrade_plan_names_each_step_server_and_changes_nothing(two_servers):
    setup, args = two_servers
    plan = cmw_upgrade.upgrade(**args, plan=True)
    assert plan["instance"] == "prod"
    assert plan["preflight"]["old"]["family"] == "deb"
    servers = {step["name"]: step["server"] for step in plan["steps"]}
    assert servers["backup-old"] == "old" and servers["drift-old"] == "old"
    assert servers["transfer-bundle"] == "old->new" and servers["final-check"] == "new"
    assert not (Path(args["state_root"]) / "var/lib/cmw-upgrade/prod").exists(), "a plan records nothing"


def test_upgrade_from_a_control_point_stops_between_steps_and_resumes(two_servers):
    setup, args = two_servers

    class Stop(Exception):
        pass

    events = []

    def stop_after_the_backup(event):
        events.append(event)
        if event["event"] == "step_finished" and event["name"] == "backup-old":
            raise Stop()

    with pytest.raises(Stop):
        cmw_upgrade.upgrade(**args, progress=stop_after_the_backup)
    started = [event for event in events if event["event"] == "step_started"]
    assert started[0]["name"] == "backup-old" and started[0]["server"] == "old"
    state = json.loads((Path(args["state_root"]) / "var/lib/cmw-upgrade/prod/state.json").read_text())
    bundle = state["settings"]["bundle"]
    assert [step["status"] for step in state["steps"]][:2] == ["done", "pending"]
    # Storage mounted on both servers shows the bundle on the new one too.
    old_copy = Path(setup["old_root"]) / bundle.lstrip("/")
    new_copy = Path(setup["root"]) / bundle.lstrip("/")
    assert (old_copy / "manifest.json").is_file()
    new_copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(old_copy, new_copy, symlinks=True)

    events = []
    report = cmw_upgrade.upgrade(**args, progress=events.append)
    assert report["outcome"] == "upgraded", report
    assert {step["name"]: step["server"] for step in report["steps"]}["drift-old"] == "old"
    assert all(step["status"] == "done" for step in report["steps"])
    assert [event["name"] for event in events if event["event"] == "step_skipped"] == ["backup-old"]
    notes = [event["text"] for event in events if event["event"] == "note"]
    assert any("used in place" in note for note in notes), notes
    marker = Path(setup["root"]) / "var/lib/comindware/prod/Database/.cmw-sim-version"
    assert marker.read_text().strip() == "5.0.1234.0"


def test_upgrade_sends_the_bundle_through_here_with_transfer_events(two_servers):
    setup, args = two_servers
    events = []
    report = cmw_upgrade.upgrade(**args, route="through-here", progress=events.append)
    assert report["outcome"] == "upgraded", report
    transfers = [event for event in events if event["event"] == "transfer"]
    assert transfers, [event["event"] for event in events]
    last = transfers[-1]
    assert last["files_done"] == last["files_total"] > 0
    assert last["bytes_done"] == last["bytes_total"]
    steps = {step["name"]: step for step in report["steps"]}
    assert steps["transfer-bundle"]["artifacts"]["route"] == "through_here"
    # The run's bundle is on the new server at the same path, the same manifest.
    bundle = steps["backup-old"]["artifacts"]["old_bundle"].lstrip("/")
    sent = Path(setup["old_root"]) / bundle / "manifest.json"
    received = Path(setup["root"]) / bundle / "manifest.json"
    assert received.read_bytes() == sent.read_bytes()


def test_upgrade_argument_errors(tmp_path):
    args = dict(instance="prod", distribution="/d.tar.gz", prerequisites="/p.tar.gz", state_root=tmp_path)
    with pytest.raises(cmw_upgrade.BadRequestError, match="old"):
        cmw_upgrade.upgrade(old="-oProxyCommand=x", new="local", **args)
    # A choice that is not one: BadInputError, also a ValueError.
    with pytest.raises(cmw_upgrade.BadInputError, match="through-here"):
        cmw_upgrade.upgrade(old="local", new="host", route="sideways", **args)
    with pytest.raises(ValueError, match="snapshot") as method:
        cmw_upgrade.upgrade(old="local", new="host", method="zip", **args)
    assert method.value.kind == "bad_input" and method.value.path is None
    with pytest.raises(cmw_upgrade.BadRequestError, match="KEY=VALUE"):
        cmw_upgrade.upgrade(old="local", new="host", direct_ssh_options=["-v"], **args)
    with pytest.raises(cmw_upgrade.InvalidInstanceNameError):
        cmw_upgrade.upgrade(old="local", new="host", **{**args, "instance": "../x"})
    # Both "local", under the same root: the preflight refuses before anything is recorded.
    with pytest.raises(cmw_upgrade.CheckFailedError, match="both name"):
        cmw_upgrade.upgrade(old="local", new="local", old_root=str(EXAMPLE), new_root=str(EXAMPLE), **args)
    assert list(tmp_path.iterdir()) == []
