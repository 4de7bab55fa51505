"""Upgrade a Comindware Platform instance without stopping it.

The same operations as the `cmw-upgrade` command line, as plain functions and
small read-only classes. Every error derives from `CmwUpgradeError`.

Every path argument takes str or os.PathLike. `root` is the server's "/" (a
mounted copy, a test tree) as the CLI's --root: under a root other than "/",
the server paths beside it (`dest`, a bundle `path`, `from_dir`) must be
absolute and are read inside the root, as every path from a config is.
"""

import os
from typing import Any, Callable, Dict, List, Literal, Optional, TypedDict, Union, final

__version__: str
__all__ = [
    "__version__",
    "AlreadyExistsError",
    "AuthenticationFailedError",
    "BackupReport",
    "BadInputError",
    "BadRequestError",
    "BundleDamagedError",
    "CancelledError",
    "CheckFailedError",
    "CheckReport",
    "CmwUpgradeError",
    "CommandFailedError",
    "ConfigChange",
    "ConfigParseError",
    "CopyProgress",
    "DriftReport",
    "FileAccessError",
    "FolderToCreate",
    "HandNote",
    "InstanceCreateReport",
    "InstanceInfo",
    "InstanceLayout",
    "InternalError",
    "InvalidInstanceNameError",
    "LockedError",
    "LogError",
    "LogWatcher",
    "MigrationReport",
    "NGINX_SITE_DIRS",
    "NoIgniteNodeFolderError",
    "NoOsReleaseError",
    "NotAFolderError",
    "NotEnoughSpaceError",
    "OsInfo",
    "Owner",
    "OwnerDict",
    "PathOutsideRootError",
    "PlannedStep",
    "ProgressCallback",
    "PruneReport",
    "RestoreReport",
    "RestoredPart",
    "RollbackReport",
    "RunReport",
    "RunStatus",
    "SourceChangedError",
    "StateConflictError",
    "StepFailedError",
    "StepRecord",
    "StrPath",
    "SystemFolderError",
    "UnknownAccountError",
    "UnknownOsFamilyError",
    "UpgradePlan",
    "UpgradeReport",
    "UpgradeVerdict",
    "VerifyReport",
    "backup",
    "bundle_drift",
    "check",
    "detect_os_family",
    "import_cdbbz",
    "instances",
    "migrate_config",
    "parse_instance_create_output",
    "parse_prerequisites_list",
    "parse_version_list",
    "plan",
    "prune_caches",
    "restore_bundle",
    "rollback",
    "run",
    "status",
    "upgrade",
    "upgrade_verdict",
    "validate_instance_name",
    "verify_bundle",
]

# A path argument: str or any os.PathLike (pathlib.Path). Also at run time.
StrPath = Union[str, "os.PathLike[str]"]
ProgressCallback = Callable[[Dict[str, Any]], object]
"""Called from the calling thread while the work runs with the interpreter
released. In every long call below (backup, verify_bundle, bundle_drift,
restore_bundle, import_cdbbz, prune_caches, migrate_config, run, upgrade,
rollback), Ctrl-C, or an exception raised by the callable, asks the work to
stop at its next safe point (between files or buffers; between steps of a
run); the call waits for it, so nothing is left half-done, and then raises
that exception (KeyboardInterrupt for Ctrl-C), typically within a fraction of
a second. The read-only calls (check, upgrade_verdict) raise at once. After
Ctrl-C the callable still gets the progress of the wind-down; after it raised
anything else, it is not called again."""

# The shapes of the returned dicts; the same classes exist at run time
# (cmw_upgrade.BackupReport, ...). Keys a report has only sometimes are in a
# total=False part.


class BackupReport(TypedDict):
    bundle: str
    method: Literal["copy", "snapshot", "import"]
    consistency: str
    snapshot: Optional[str]
    files: int
    bytes: int
    seconds: float
    warnings: List[str]


class VerifyReport(TypedDict):
    ok: bool
    missing: List[str]
    changed_files: List[str]
    extra: List[str]


class DriftReport(TypedDict):
    database: str
    deep: bool
    changed_files: List[str]
    added: List[str]
    removed: List[str]


class RestoredPart(TypedDict):
    part: str
    target: str
    files: int
    bytes: int
    moved_aside: Optional[str]


class RestoreReport(TypedDict):
    bundle: str
    owner: str
    uid: int
    gid: int
    parts: List[RestoredPart]


class _ConfigChangeBase(TypedDict):
    file: str
    key: str
    action: Literal["set", "renamed", "uncommented", "appended", "kept", "taken"]
    old: Optional[str]
    new: Optional[str]


# The directive's old name, for "renamed" ("from" cannot be a class-syntax key).
_ConfigChangeFrom = TypedDict("_ConfigChangeFrom", {"from": str}, total=False)


class ConfigChange(_ConfigChangeBase, _ConfigChangeFrom):
    pass


class OwnerDict(TypedDict):
    user: str
    group: str


class FolderToCreate(TypedDict):
    path: str
    directive: str
    owner: OwnerDict


class _HandNoteBase(TypedDict):
    file: str
    code: str
    message: str
    action_needed: bool


class HandNote(_HandNoteBase, total=False):
    key: str


class MigrationReport(TypedDict):
    changes: List[ConfigChange]
    warnings: List[str]
    errors: List[str]
    folders_to_create: List[FolderToCreate]
    files: List[str]
    written: List[Dict[str, Any]]
    check: bool
    to_do: List[HandNote]


class _PlannedStepBase(TypedDict):
    name: str
    title: str
    precondition: str
    check: str
    undo: str
    commands: List[str]
    note: Optional[str]


class PlannedStep(_PlannedStepBase, total=False):
    # Only in a two-server plan: "old", "new" or "old->new".
    server: str
    findings: List[Dict[str, Any]]


class _StepRecordBase(TypedDict):
    name: str
    status: Literal["pending", "running", "done", "failed", "rolled_back"]


class StepRecord(_StepRecordBase, total=False):
    started: str
    finished: str
    seconds: float
    artifacts: Dict[str, str]
    commands: List[Dict[str, Any]]
    error: str
    error_kind: str
    server: str


class _RunReportBase(TypedDict):
    outcome: Literal["upgraded", "failed"]
    instance: str
    steps: List[StepRecord]
    next: str


class RunReport(_RunReportBase, total=False):
    to_do: List[HandNote]


class UpgradeReport(RunReport, total=False):
    servers: Dict[str, Any]
    preflight: Dict[str, Any]
    drift: DriftReport


class UpgradePlan(TypedDict):
    instance: str
    old: Dict[str, Any]
    new: Dict[str, Any]
    preflight: Dict[str, Any]
    steps: List[PlannedStep]


class RollbackReport(TypedDict):
    instance: str
    rollback: StepRecord
    steps: List[StepRecord]
    next: str


class _RunStatusBase(TypedDict):
    instance: str
    recorded: bool


class RunStatus(_RunStatusBase, total=False):
    # With recorded=True: the recorded run state.
    format: int
    steps: List[StepRecord]
    settings: Dict[str, Any]
    rollback: StepRecord
    servers: Dict[str, Any]
    to_do: List[HandNote]


class InstanceInfo(TypedDict):
    name: str
    version: Optional[str]


class CheckReport(TypedDict):
    url: str
    status: Optional[int]
    unreachable: Optional[str]
    heartbeat_errors: List[str]
    heartbeat_logs: int
    log_dir: str
    ok: bool


class CopyProgress(TypedDict):
    phase: str
    total_bytes: int
    total_files: int
    done_bytes: int
    done_files: int

NGINX_SITE_DIRS: dict[str, str]
"""The nginx site folder of each family: {"deb": ..., "rpm": ..., "alt": ...}."""

class CmwUpgradeError(Exception):
    """Base of every cmw_upgrade error.

    Each subclass also derives from the built-in exception Python code catches
    for that trouble: ValueError for a wrong value (a name, a choice, a path
    outside the root), OSError for a file that cannot be read or is in the way
    (with .errno, .strerror and .filename; str() is the tool's message).
    """
    kind: str
    """The error's kind, as the CLI's JSON names it: "io", "bad_input", "locked", ..."""
    path: Optional[str]
    """The file or folder the error is about, where it names one."""

class UnknownOsFamilyError(CmwUpgradeError, ValueError):
    """os-release names no supported distribution."""

class InvalidInstanceNameError(CmwUpgradeError, ValueError):
    """An instance name that is not safe in paths and commands."""

class PathOutsideRootError(CmwUpgradeError, ValueError):
    """A path that would leave the target root (from a config, or a path argument
    that is not absolute under a `root` other than "/")."""

class FileAccessError(CmwUpgradeError, OSError):
    """A file or folder could not be read, listed or changed."""

class ConfigParseError(CmwUpgradeError, ValueError):
    """A config file that does not parse."""

class NoIgniteNodeFolderError(CmwUpgradeError, ValueError):
    """A folder without Ignite node folders was given for pruning."""

class NotAFolderError(CmwUpgradeError, OSError):
    """A folder was expected."""

class NotEnoughSpaceError(CmwUpgradeError, OSError):
    """The destination has too little free space; nothing was written."""

class AlreadyExistsError(CmwUpgradeError, OSError):
    """Something is in the way that the tool will not overwrite."""

class LockedError(CmwUpgradeError):
    """Another run holds the instance's lock; retry when it is done."""

class BundleDamagedError(CmwUpgradeError):
    """A bundle does not match its manifest."""

class UnknownAccountError(CmwUpgradeError):
    """A user or group is not in the server's account files."""

class SourceChangedError(CmwUpgradeError):
    """A source file changed while it was being copied."""

class CommandFailedError(CmwUpgradeError):
    """An external command failed."""

class CheckFailedError(CmwUpgradeError):
    """A check before writing failed (e.g. nginx -t); nothing was written."""

class StepFailedError(CmwUpgradeError):
    """An upgrade step failed after it changed something; resume or roll back."""

class StateConflictError(CmwUpgradeError):
    """The recorded run state does not allow this (another run's settings, no run to undo)."""

class NoOsReleaseError(CmwUpgradeError):
    """No os-release file under the root; name the family."""

class SystemFolderError(CmwUpgradeError, ValueError):
    """A data folder that is a system folder or directly inside one; nothing was changed."""

class BadRequestError(CmwUpgradeError, ValueError):
    """A request to the agent that does not fit the protocol."""

class InternalError(CmwUpgradeError):
    """A bug, or two sides running different versions."""

class CancelledError(CmwUpgradeError):
    """The work stopped on request at a safe point; nothing was left half-done.

    The long calls below raise KeyboardInterrupt (or the progress callable's
    exception) instead; this class stands for the core's "cancelled" kind.
    """

class BadInputError(CmwUpgradeError, ValueError):
    """A value that names nothing there (a backend, a server); the message names what exists."""

class AuthenticationFailedError(CmwUpgradeError):
    """Authentication failed at a server (a DNS update's TSIG key is wrong, unknown or not allowed)."""

@final
class Owner:
    """A user and group pair, as `chown` takes it."""
    @property
    def user(self) -> str: ...
    @property
    def group(self) -> str: ...

@final
class OsInfo:
    """What `detect_os_family` found: the family and what differs by family."""
    @property
    def family(self) -> str:
        """"deb", "rpm" or "alt"."""
    @property
    def distro(self) -> str:
        """The distribution id (ID in os-release), e.g. "astra"."""
    @property
    def pretty_name(self) -> Optional[str]: ...
    @property
    def version_id(self) -> Optional[str]: ...
    @property
    def web_owner(self) -> Owner:
        """The web server's user and group (the default owner of instance data)."""
    def nginx_site_path(self, instance: str) -> str:
        """The instance's nginx site file on this family."""
    def package_install_argv(self, files: list[str]) -> list[str]:
        """The argv that installs local package files on this family."""

def detect_os_family(text: str) -> OsInfo:
    """Tells the OS family from the text of /etc/os-release.

    Raises UnknownOsFamilyError when the text names no known distribution.
    """

def validate_instance_name(name: str) -> str:
    """Checks an instance name and returns it; raises InvalidInstanceNameError saying why not."""

@final
class InstanceLayout:
    """Every path of one instance on one server.

    Reads the instance config, adapterhost.yml and the systemd unit under `root`;
    without `family` it is detected from `<root>/etc/os-release`.
    """
    def __init__(self, instance: str, root: StrPath = "/", family: Optional[str] = None) -> None: ...
    @property
    def root(self) -> str: ...
    @property
    def instance(self) -> str: ...
    @property
    def family(self) -> str: ...
    @property
    def instance_config(self) -> str: ...
    @property
    def data_root(self) -> str: ...
    @property
    def database(self) -> str: ...
    @property
    def streams(self) -> str: ...
    @property
    def www(self) -> str: ...
    @property
    def www_config_files(self) -> list[str]: ...
    @property
    def nginx_site(self) -> str: ...
    @property
    def env_file(self) -> str: ...
    @property
    def log_dir(self) -> str: ...
    @property
    def units(self) -> list[str]: ...
    @property
    def data_owner(self) -> Owner: ...
    def to_dict(self) -> dict[str, Any]:
        """Every field, with where each data path came from, as plain Python data."""

@final
class PruneReport:
    """What pruning did, or would do with check=True."""
    @property
    def removed(self) -> list[str]:
        """Paths removed (or to remove), relative to the target, sorted."""
    @property
    def bytes_freed(self) -> int: ...
    @property
    def check(self) -> bool: ...
    @property
    def node_folders(self) -> list[str]: ...

def prune_caches(path: StrPath, *, check: bool = True) -> PruneReport:
    """Removes the old-format Ignite caches under `path` (the Database folder or an
    unpacked backup). With check=True (the default, unlike the CLI: keyword-only
    so a call says which it does) nothing is removed. Ctrl-C stops the removal
    between cache folders (the data is untouched; a rerun removes the rest).

    Raises NoIgniteNodeFolderError when `path` holds no Ignite node folder.
    """

@final
class LogError:
    """One error record found in an upgrade log."""
    @property
    def file(self) -> str: ...
    @property
    def line(self) -> int: ...
    @property
    def level(self) -> str: ...
    @property
    def reason(self) -> str:
        """"level" (Error/Fatal) or "keyword" (the whole word "error")."""
    @property
    def message(self) -> str: ...

@final
class UpgradeVerdict:
    """The verdict over a log folder, with the evidence."""
    @property
    def verdict(self) -> Literal["succeeded", "failed", "in_progress", "not_started"]:
        """"succeeded", "failed", "in_progress" or "not_started"."""
    @property
    def succeeded(self) -> bool: ...
    @property
    def is_final(self) -> bool:
        """Whether waiting longer cannot change the verdict."""
    @property
    def log_dir(self) -> str: ...
    @property
    def errors(self) -> list[LogError]: ...
    @property
    def errors_total(self) -> int: ...
    def to_dict(self) -> dict[str, Any]:
        """Everything, as plain Python data (the CLI's JSON shape)."""

def upgrade_verdict(log_dir: StrPath) -> UpgradeVerdict:
    """Whether the data-structure upgrade succeeded, from the logs in `log_dir`."""

@final
class LogWatcher:
    """Watches a log folder; each poll() reads only what was appended since the last."""
    def __init__(self, log_dir: StrPath) -> None: ...
    def poll(self) -> UpgradeVerdict: ...

@final
class InstanceCreateReport:
    """What instance_create.sh reported."""
    @property
    def components(self) -> list[dict[str, Any]]:
        """Every OK/FAILED line: {"line", "status", "text", "service"}."""
    @property
    def done(self) -> list[str]: ...
    @property
    def final_status(self) -> Optional[str]: ...
    @property
    def succeeded(self) -> bool: ...
    @property
    def services_to_restart(self) -> list[str]: ...
    @property
    def units_to_restart(self) -> list[str]:
        """The systemd units to restart; needs `instance` given to the parser."""

def parse_instance_create_output(text: str, instance: Optional[str] = None) -> InstanceCreateReport:
    """Parses instance_create.sh output; give `instance` to get units_to_restart."""

def parse_version_list(text: str) -> list[str]:
    """Parses version_list.sh output into installed versions."""

def parse_prerequisites_list(text: str) -> list[dict[str, Any]]:
    """Parses prerequisites_list.sh's table into {"status", "software", "version", "ok"}."""

def migrate_config(
    from_dir: StrPath,
    instance: str,
    root: StrPath = "/",
    *,
    check: bool = True,
    fix: bool = False,
    take: Optional[list[str]] = None,
    family: Optional[str] = None,
) -> MigrationReport:
    """Carries the old instance's config values into the new instance's files.

    `from_dir` holds the old server's files at their absolute paths; the new files
    are under `root`. With check=True (the default, unlike the CLI:
    keyword-only, so a call says which it does) nothing is written. Returns the
    same report as `cmw-upgrade config migrate --json`: changes, warnings, errors,
    folders_to_create, files, written, check. When the report has errors, nothing
    is written.
    """

def backup(
    instance: str,
    dest: StrPath,
    root: StrPath = "/",
    method: Optional[str] = None,
    with_streams: bool = False,
    family: Optional[str] = None,
    control_script: Optional[StrPath] = None,
    check_space: bool = True,
    progress: Optional[ProgressCallback] = None,
    *,
    accept_crash_consistent: bool = False,
) -> BackupReport:
    """Backs up an instance into a new bundle folder `dest`.

    Same as `cmw-upgrade backup --json`: returns bundle, method, consistency,
    snapshot, files, bytes, seconds, warnings. `method` is "copy", "snapshot"
    or None (the default, as the CLI: a snapshot if the instance runs, else a
    copy); a copy of a running instance needs accept_crash_consistent=True
    (CheckFailedError otherwise).
    `progress` is called about five times a second with a dict: phase,
    total_bytes, total_files, done_bytes, done_files. Raises AlreadyExistsError,
    NotEnoughSpaceError, SourceChangedError, CommandFailedError, FileAccessError;
    the partial bundle is then removed, as it is on Ctrl-C.
    """

def verify_bundle(path: StrPath, progress: Optional[ProgressCallback] = None) -> VerifyReport:
    """Re-hashes every file of a bundle: {"ok", "missing", "changed_files", "extra"}."""

def bundle_drift(
    path: StrPath,
    instance: str,
    root: StrPath = "/",
    deep: bool = False,
    family: Optional[str] = None,
) -> DriftReport:
    """What the live database changed since the bundle: {"changed_files", "added", "removed", ...}."""

def restore_bundle(
    path: StrPath,
    instance: str,
    root: StrPath = "/",
    replace: bool = False,
    family: Optional[str] = None,
) -> RestoreReport:
    """Puts the bundle's database into the instance, owned by its data owner.

    Raises AlreadyExistsError for a non-empty database folder unless replace=True
    (which moves the old content aside), BundleDamagedError when the bundle does
    not match its manifest (nothing is then changed). Every part is copied and
    checked beside its target before any target changes, so Ctrl-C while copying
    leaves the instance as it was.
    """

def import_cdbbz(
    file: StrPath,
    dest: StrPath,
    instance: Optional[str] = None,
    check_space: bool = True,
) -> BackupReport:
    """Turns a platform backup (.cdbbz) into a bundle folder `dest`."""


def plan(
    instance: str,
    bundle: StrPath,
    distribution: StrPath,
    prerequisites: StrPath,
    root: StrPath = "/",
    port: int = 80,
    family: Optional[str] = None,
    upgrade_timeout: float = 7200.0,
    health_timeout: float = 300.0,
    fix_config: bool = False,
) -> List[PlannedStep]:
    """Plans the upgrade on the (new) server under `root`, changing nothing.

    Each step: name, title, precondition, check, undo, commands, note.
    """

def run(
    instance: str,
    bundle: StrPath,
    distribution: StrPath,
    prerequisites: StrPath,
    root: StrPath = "/",
    port: int = 80,
    family: Optional[str] = None,
    upgrade_timeout: float = 7200.0,
    health_timeout: float = 300.0,
    fix_config: bool = False,
    progress: Optional[ProgressCallback] = None,
) -> RunReport:
    """Runs (or resumes) the upgrade; returns {"outcome", "instance", "steps", "next"}.

    `progress` gets each event as a dict ("event": step_started, step_finished,
    step_skipped, waiting or note). Raises LockedError when another run
    holds the instance's lock. Ctrl-C stops the run before its next step (a step
    under way finishes first); the steps done stay done, so the same call resumes.
    """

def upgrade(
    old: str,
    new: str,
    instance: str,
    distribution: StrPath,
    prerequisites: StrPath,
    port: int = 80,
    bundle_dir: StrPath = "/var/lib/cmw-upgrade/bundles",
    route: str = "auto",
    method: Optional[str] = None,
    accept_crash_consistent: bool = False,
    identity_file: Optional[StrPath] = None,
    known_hosts: Optional[StrPath] = None,
    remote_cmw_upgrade: StrPath = "cmw-upgrade",
    state_root: StrPath = "/",
    plan: bool = False,
    progress: Optional[ProgressCallback] = None,
    upgrade_timeout: float = 7200.0,
    health_timeout: float = 300.0,
    fix_config: bool = False,
    direct_ssh_options: list[str] = [],
    old_root: Optional[StrPath] = None,
    new_root: Optional[StrPath] = None,
) -> Union[UpgradeReport, UpgradePlan]:
    """The whole upgrade with this machine as the control point, as
    `cmw-upgrade upgrade --old … --new …`: the old server backs up into
    `bundle_dir` (the same path on both servers), the bundle goes to the new
    server (used in place when shared storage already shows it there), the new
    server runs every step, and the old server's writes after the backup are
    reported. The old server is only read and keeps serving.

    `old` and `new` are "local" or "[user@]host[:port]", reached with the
    system's ssh (host keys checked, against `known_hosts` if given; the key
    `identity_file` if given); `remote_cmw_upgrade` is the tool there, which
    must be installed and of this version (unlike the CLI, the module has no
    binary of its own to copy there: a missing or older one is an error).
    `route`:
    "auto", "direct" (the old server sends straight to the new one; with
    `direct_ssh_options` as KEY=VALUE for its ssh) or "through-here". `method`:
    "copy", "snapshot" or None (a snapshot if the instance runs, else a copy).
    The run state is kept on this machine under `state_root`; `old_root` and
    `new_root` are each server's `/` for the tool there (rehearsals and tests).

    plan=True: returns the plan, changing nothing: {"instance", "old", "new",
    "preflight": {"old", "new", "database_bytes"}, "steps": [each with "server"
    ("old", "new" or "old->new") and its "commands"]}.

    Otherwise runs (or resumes) the upgrade and returns the report: {"outcome":
    "upgraded"|"failed", "instance", "steps" (each with its "server"), "next",
    "servers", "preflight", "drift"}; a failed step is in the report, not an
    exception. `progress` gets the same event dicts as `run`'s, plus
    {"event": "transfer", "bytes_done", "bytes_total", "files_done",
    "files_total", "seconds"} while the bundle travels. Raises CheckFailedError
    when a server cannot be reached or a preflight check fails (nothing was
    changed or recorded), BadRequestError for a malformed argument. Ctrl-C stops
    the run before its next step; the steps done stay done, so the same call
    resumes.
    """
def status(instance: str, root: StrPath = "/") -> RunStatus:
    """The recorded run of `instance` (as `cmw-upgrade status --json`): the state
    with "recorded": True, or {"recorded": False, "instance"} when none is recorded."""

def rollback(
    instance: str,
    root: StrPath = "/",
    *,
    force: bool = False,
    progress: Optional[ProgressCallback] = None,
) -> RollbackReport:
    """Undoes the run of `instance` (as `cmw-upgrade rollback --yes --json`).

    A run whose steps are all done may have traffic on it: StateConflictError
    unless force=True. Raises LockedError when another run holds the lock.
    """

def instances(root: StrPath = "/") -> List[InstanceInfo]:
    """The instances configured under `root`: [{"name", "version"}, ...]."""

def check(instance: str, url: str, root: StrPath = "/") -> CheckReport:
    """GET `url` (http:// only) and the heartbeat logs: {"url", "status", "unreachable",
    "heartbeat_errors", "heartbeat_logs", "log_dir", "ok"}."""
