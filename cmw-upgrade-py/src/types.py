"""The shapes of what cmw_upgrade's functions return, as TypedDicts.

Executed when the module is imported, so the names exist at run time too
(`cmw_upgrade.BackupReport`, usable in annotations and isinstance-free
checks); cmw_upgrade.pyi declares the same classes for type checkers. Keys a
report has only sometimes are in a `total=False` part. Runs on Python 3.9.
"""

import os
from typing import Any, Callable, Dict, List, Optional, Union

from typing import Literal, TypedDict

StrPath = Union[str, "os.PathLike[str]"]
ProgressCallback = Callable[[Dict[str, Any]], object]


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


TYPE_NAMES = [
    "StrPath", "ProgressCallback", "BackupReport", "VerifyReport", "DriftReport", "RestoredPart",
    "RestoreReport", "ConfigChange", "OwnerDict", "FolderToCreate", "HandNote",
    "MigrationReport", "PlannedStep", "StepRecord", "RunReport", "UpgradeReport",
    "UpgradePlan", "RollbackReport", "RunStatus", "InstanceInfo", "CheckReport",
    "CopyProgress",
]
