//! The typed protocol between the tool and a server: what to do there
//! ([`ToolAction`], [`Primitive`]) and what came back ([`ToolOutcome`],
//! [`PrimitiveOutcome`]), as serde types.
//!
//! On the wire (`cmw-upgrade agent`, one JSON document per line):
//!
//! ```text
//! → {"protocol":1,"action":{"kind":"verdict","log_dir":"/var/log/comindware/prod/Logs"}}
//! ← {"ok":true,"outcome":{"kind":"verdict","verdict":"succeeded",...}}
//! → {"protocol":1,"action":{"kind":"restore","bundle":"/mnt/b","instance":"prod","family":"deb"}}
//! ← {"ok":false,"error":{"kind":"bundle_damaged","message":"the bundle /mnt/b is damaged: ..."}}
//! ```
//!
//! Every action is also a `cmw-upgrade` command line ([`ToolAction::argv`]),
//! for people: plans and transcripts show it so an admin can do the same by
//! hand. The CLI's tests parse each such line with the real argument parser,
//! so the two cannot drift.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{shell_quote, CommandSpec};
use crate::backup::manifest::BackupMethod;
use crate::backup::{BackupReport, DriftReport, RestoreReport, VerifyReport};
use crate::config::migrate::MigrationReport;
use crate::error::{Error, ErrorKind, Result};
use crate::health::CheckReport;
use crate::instance::InstanceName;
use crate::layout::InstanceLayout;
use crate::logs::UpgradeVerdict;
use crate::os::{OsFamily, OsInfo};
use crate::prune::PruneReport;
use crate::server::DirEntry;

/// The protocol version this build speaks. A request of another version is
/// refused with kind `bad_request`, so an old agent never guesses.
pub const PROTOCOL_VERSION: u32 = 1;

/// A backup request without a method is a copy (what protocol 1 first sent).
fn copy_method() -> BackupMethod {
    BackupMethod::Copy
}

/// One of the tool's own actions on a server; paths are server paths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ToolAction {
    /// Re-hash a bundle against its manifest.
    #[serde(rename = "verify")]
    VerifyBundle {
        /// The bundle folder.
        bundle: String,
    },
    /// Back up an instance: a file copy (of a stopped instance, or accepted
    /// as crash-consistent), or an Ignite snapshot first (a running one).
    Backup {
        /// The instance.
        instance: InstanceName,
        /// The server's family.
        family: OsFamily,
        /// The bundle folder to create.
        dest: String,
        /// How the database is taken (a copy when absent: older requests).
        #[serde(default = "copy_method")]
        method: BackupMethod,
    },
    /// Restore a bundle's database into the instance, the current one moved aside.
    Restore {
        /// The bundle folder.
        bundle: String,
        /// The instance.
        instance: InstanceName,
        /// The server's family.
        family: OsFamily,
    },
    /// Remove the old-format caches from a database copy.
    #[serde(rename = "prune")]
    PruneCaches {
        /// The database folder (a copy, never the live one).
        database: String,
        /// Only list what would go.
        #[serde(default)]
        check: bool,
    },
    /// Carry the old server's config values into the new instance's files.
    #[serde(rename = "migrate")]
    MigrateConfig {
        /// The old server's files at their absolute paths (a bundle's `config/`).
        from: String,
        /// The instance.
        instance: InstanceName,
        /// The server's family.
        family: OsFamily,
        /// Apply the evident fixes for failed checks.
        #[serde(default)]
        fix: bool,
        /// Only report what would change; write nothing.
        #[serde(default)]
        check: bool,
    },
    /// The data-structure upgrade's verdict: from the instance's logs, or a log folder.
    Verdict {
        /// The instance whose log folder is read.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        instance: Option<InstanceName>,
        /// A log folder, instead of the instance's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        log_dir: Option<String>,
        /// `YYYY-MM-DD HH:MM:SS` in the logs' clock: every dated upgrade log
        /// from that day on is read, records before it not counted; without
        /// it, only the newest dated log.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<String>,
    },
    /// `GET <url>` must answer 200 and the heartbeat logs must hold no error.
    Check {
        /// The instance.
        instance: InstanceName,
        /// The health URL, e.g. `http://127.0.0.1:80/api/health`.
        url: String,
    },
    /// The server's OS family and, with an instance, every path of it.
    Detect {
        /// The instance whose layout is read.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        instance: Option<InstanceName>,
        /// The family, instead of reading os-release.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        family: Option<OsFamily>,
    },
    /// What the live database changed since a bundle was made.
    Drift {
        /// The bundle folder.
        bundle: String,
        /// The instance whose database is compared.
        instance: InstanceName,
        /// The server's family.
        family: OsFamily,
        /// Compare content hashes too.
        #[serde(default)]
        deep: bool,
    },
    /// One command to a HAProxy runtime API (its admin UNIX socket), and its answer.
    HaproxyCommand {
        /// Server path of the admin socket (`stats socket ... level admin`).
        socket: String,
        /// The command, e.g. `show servers state be_cmw`.
        command: String,
    },
    /// Open (and close) a TCP connection from this server: is the address reachable from here?
    TcpConnect {
        /// Host name or IP address.
        host: String,
        /// TCP port.
        port: u16,
    },
}

impl ToolAction {
    /// The `cmw-upgrade` command that does the same by hand.
    pub fn argv(&self) -> Vec<String> {
        let mut argv = vec!["cmw-upgrade".to_owned()];
        let mut push = |parts: &[&str]| argv.extend(parts.iter().map(|part| (*part).to_owned()));
        match self {
            ToolAction::VerifyBundle { bundle } => push(&["backup", "verify", bundle]),
            ToolAction::Backup {
                instance,
                family,
                dest,
                method,
            } => {
                push(&["backup", "--instance", instance.as_str(), "--dest", dest]);
                match method {
                    // A copy is the action whether or not the instance runs:
                    // said so, it pastes as the same action.
                    BackupMethod::Copy => {
                        push(&["--method", "copy", "--accept-crash-consistent"]);
                    }
                    BackupMethod::Snapshot | BackupMethod::Import => {
                        push(&["--method", "snapshot"]);
                    }
                }
                push(&["--family", family.as_str()]);
            }
            ToolAction::Restore {
                bundle,
                instance,
                family,
            } => push(&[
                "restore",
                bundle,
                "--instance",
                instance.as_str(),
                "--replace",
                "--family",
                family.as_str(),
            ]),
            ToolAction::PruneCaches { database, check } => {
                push(&["prune-caches", database]);
                if *check {
                    push(&["--check"]);
                }
            }
            ToolAction::MigrateConfig {
                from,
                instance,
                family,
                fix,
                check,
            } => {
                push(&[
                    "config",
                    "migrate",
                    "--from",
                    from,
                    "--instance",
                    instance.as_str(),
                    "--family",
                    family.as_str(),
                ]);
                if *fix {
                    push(&["--fix"]);
                }
                if *check {
                    push(&["--check"]);
                }
            }
            ToolAction::Verdict {
                instance,
                log_dir,
                since,
            } => {
                push(&["logs", "verdict"]);
                if let Some(instance) = instance {
                    push(&["--instance", instance.as_str()]);
                }
                if let Some(log_dir) = log_dir {
                    push(&["--log-dir", log_dir]);
                }
                if let Some(since) = since {
                    push(&["--since", since]);
                }
            }
            ToolAction::Check { instance, url } => {
                push(&["check", "--instance", instance.as_str(), "--url", url]);
            }
            ToolAction::Detect { instance, family } => {
                push(&["detect"]);
                if let Some(instance) = instance {
                    push(&["--instance", instance.as_str()]);
                }
                if let Some(family) = family {
                    push(&["--family", family.as_str()]);
                }
            }
            ToolAction::Drift {
                bundle,
                instance,
                family,
                deep,
            } => {
                push(&[
                    "backup",
                    "drift",
                    bundle,
                    "--instance",
                    instance.as_str(),
                    "--family",
                    family.as_str(),
                ]);
                if *deep {
                    push(&["--deep"]);
                }
            }
            ToolAction::HaproxyCommand { socket, command } => push(&[
                "cutover",
                "haproxy-command",
                "--haproxy-socket",
                socket,
                command,
            ]),
            ToolAction::TcpConnect { host, port } => {
                let port = port.to_string();
                push(&["cutover", "reach", "--host", host, "--port", &port]);
            }
        }
        argv
    }

    /// The command as an admin would type it.
    pub fn display(&self) -> String {
        self.argv()
            .iter()
            .map(|arg| shell_quote(arg))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Whether the action only reads the server, whatever it finds (a
    /// check-mode migration or prune, a detection, a shallow drift): a dry
    /// run runs these for real, so a plan shows what they would find.
    pub fn is_read_only(&self) -> bool {
        match self {
            ToolAction::MigrateConfig { check, .. } | ToolAction::PruneCaches { check, .. } => {
                *check
            }
            ToolAction::Detect { .. } => true,
            ToolAction::Drift { deep, .. } => !deep,
            // `show ...` only reads the proxy's state; `set ...` changes traffic.
            ToolAction::HaproxyCommand { command, .. } => command.trim_start().starts_with("show "),
            ToolAction::TcpConnect { .. } => true,
            // A verdict or a smoke check reads too, but a plan polls them in a
            // loop that only ends on success: the plan shows them, not their answer.
            // A verify re-hashes the whole bundle: the run does it first thing.
            ToolAction::VerifyBundle { .. }
            | ToolAction::Verdict { .. }
            | ToolAction::Check { .. }
            | ToolAction::Backup { .. }
            | ToolAction::Restore { .. } => false,
        }
    }

    /// The wire name of the action (`verify`, `restore`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            ToolAction::VerifyBundle { .. } => "verify",
            ToolAction::Backup { .. } => "backup",
            ToolAction::Restore { .. } => "restore",
            ToolAction::PruneCaches { .. } => "prune",
            ToolAction::MigrateConfig { .. } => "migrate",
            ToolAction::Verdict { .. } => "verdict",
            ToolAction::Check { .. } => "check",
            ToolAction::Detect { .. } => "detect",
            ToolAction::Drift { .. } => "drift",
            ToolAction::HaproxyCommand { .. } => "haproxy_command",
            ToolAction::TcpConnect { .. } => "tcp_connect",
        }
    }
}

/// What detection found on a server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetectReport {
    /// The server's family.
    pub family: OsFamily,
    /// `os-release`, or `--family` when it was given.
    pub family_source: String,
    /// The distribution, when its os-release was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<OsInfo>,
    /// Every path of the instance, when one was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<InstanceLayout>,
}

/// The report of a [`ToolAction`], one variant per kind of report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ToolOutcome {
    /// [`ToolAction::VerifyBundle`].
    Verify(VerifyReport),
    /// [`ToolAction::Backup`].
    Backup(BackupReport),
    /// [`ToolAction::Restore`].
    Restore(RestoreReport),
    /// [`ToolAction::PruneCaches`].
    Prune(PruneReport),
    /// [`ToolAction::MigrateConfig`].
    Migrate(MigrationReport),
    /// [`ToolAction::Verdict`].
    Verdict(UpgradeVerdict),
    /// [`ToolAction::Check`].
    Check(CheckReport),
    /// [`ToolAction::Detect`] (boxed: a layout is ten times the size of the other reports).
    Detect(Box<DetectReport>),
    /// [`ToolAction::Drift`].
    Drift(DriftReport),
    /// [`ToolAction::HaproxyCommand`]: the runtime API's answer, as it came.
    HaproxyAnswer {
        /// The answer's text (an empty line for a `set` that worked).
        answer: String,
    },
    /// [`ToolAction::TcpConnect`]: the connection was made.
    Reachable {
        /// The socket address connected to.
        address: String,
    },
    /// A dry run did not run the action.
    NotRun,
}

macro_rules! outcome_accessor {
    ($(#[$doc:meta])* $name:ident, $variant:ident, $report:ty) => {
        $(#[$doc])*
        ///
        /// # Errors
        /// [`Error::Internal`] when the outcome is another kind of report.
        pub fn $name(self) -> Result<Option<$report>> {
            match self {
                ToolOutcome::$variant(report) => Ok(Some(report)),
                ToolOutcome::NotRun => Ok(None),
                other => Err(other.mismatch(stringify!($variant))),
            }
        }
    };
}

impl ToolOutcome {
    outcome_accessor!(
        /// The verify report; `None` when a dry run did not run it.
        verify, Verify, VerifyReport);
    outcome_accessor!(
        /// The backup report; `None` when a dry run did not run it.
        backup, Backup, BackupReport);
    outcome_accessor!(
        /// The restore report; `None` when a dry run did not run it.
        restore, Restore, RestoreReport);
    outcome_accessor!(
        /// The prune report; `None` when a dry run did not run it.
        prune, Prune, PruneReport);
    outcome_accessor!(
        /// The migration report; `None` when a dry run did not run it.
        migrate, Migrate, MigrationReport);
    outcome_accessor!(
        /// The verdict; `None` when a dry run did not run it.
        verdict, Verdict, UpgradeVerdict);
    outcome_accessor!(
        /// The smoke check; `None` when a dry run did not run it.
        check, Check, CheckReport);
    outcome_accessor!(
        /// The detection; `None` when a dry run did not run it.
        detect, Detect, Box<DetectReport>);
    outcome_accessor!(
        /// The drift report; `None` when a dry run did not run it.
        drift, Drift, DriftReport);

    /// The runtime API's answer; `None` when a dry run did not send the command.
    ///
    /// # Errors
    /// [`Error::Internal`] when the outcome is another kind of report.
    pub fn haproxy_answer(self) -> Result<Option<String>> {
        match self {
            ToolOutcome::HaproxyAnswer { answer } => Ok(Some(answer)),
            ToolOutcome::NotRun => Ok(None),
            other => Err(other.mismatch("HaproxyAnswer")),
        }
    }

    /// The address connected to; `None` when a dry run did not connect.
    ///
    /// # Errors
    /// [`Error::Internal`] when the outcome is another kind of report.
    pub fn reachable(self) -> Result<Option<String>> {
        match self {
            ToolOutcome::Reachable { address } => Ok(Some(address)),
            ToolOutcome::NotRun => Ok(None),
            other => Err(other.mismatch("Reachable")),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            ToolOutcome::Verify(_) => "Verify",
            ToolOutcome::Backup(_) => "Backup",
            ToolOutcome::Restore(_) => "Restore",
            ToolOutcome::Prune(_) => "Prune",
            ToolOutcome::Migrate(_) => "Migrate",
            ToolOutcome::Verdict(_) => "Verdict",
            ToolOutcome::Check(_) => "Check",
            ToolOutcome::Detect(_) => "Detect",
            ToolOutcome::Drift(_) => "Drift",
            ToolOutcome::HaproxyAnswer { .. } => "HaproxyAnswer",
            ToolOutcome::Reachable { .. } => "Reachable",
            ToolOutcome::NotRun => "NotRun",
        }
    }

    fn mismatch(&self, expected: &str) -> Error {
        Error::Internal {
            details: format!(
                "expected a {expected} report, got {}; the two sides run different versions",
                self.name()
            ),
        }
    }
}

/// A file or command primitive: what the procedure needs besides the tool's
/// own actions, so a remote server is driven through the same agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Primitive {
    /// Which protocol and version the agent speaks.
    Hello,
    /// Run a command and wait for it.
    Execute {
        /// The command.
        command: CommandSpec,
    },
    /// Read a whole file.
    ReadFile {
        /// Server path.
        path: String,
    },
    /// Whether something is at a path.
    Exists {
        /// Server path.
        path: String,
    },
    /// Write a file atomically.
    WriteFile {
        /// Server path.
        path: String,
        /// The bytes, base64.
        #[serde(with = "base64_bytes")]
        content: Vec<u8>,
        /// Permission bits.
        mode: u32,
    },
    /// Create a folder and its parents.
    CreateDirAll {
        /// Server path.
        path: String,
    },
    /// Copy a file or tree (`to` must not exist).
    Copy {
        /// Server path.
        from: String,
        /// Server path.
        to: String,
    },
    /// Rename a file, link or folder.
    Rename {
        /// Server path.
        from: String,
        /// Server path.
        to: String,
    },
    /// Remove a file, link or tree (links not followed).
    Remove {
        /// Server path.
        path: String,
    },
    /// Give a tree to an owner.
    ChownTree {
        /// Server path.
        path: String,
        /// User id.
        uid: u32,
        /// Group id.
        gid: u32,
    },
    /// The entries of a folder.
    ListDir {
        /// Server path.
        path: String,
    },
    /// Where a symlink points.
    ReadLink {
        /// Server path.
        path: String,
    },
    /// Take an exclusive lock on a file; the agent holds it until `unlock`
    /// or until it ends (its input closes: the controlling side is gone).
    Lock {
        /// Server path of the lock file.
        path: String,
    },
    /// Release a lock taken with `lock`.
    Unlock {
        /// The id `lock` answered.
        id: u64,
    },
}

/// What a [`Primitive`] returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PrimitiveOutcome {
    /// [`Primitive::Hello`].
    Hello {
        /// [`PROTOCOL_VERSION`] of the agent.
        protocol: u32,
        /// The agent's tool version.
        version: String,
    },
    /// [`Primitive::Execute`]: how the command ended.
    Output {
        /// Exit code, `None` when killed by a signal.
        code: Option<i32>,
        /// Standard output.
        stdout: String,
        /// Standard error.
        stderr: String,
    },
    /// [`Primitive::ReadFile`].
    File {
        /// The bytes, base64; `None` when there is no such file.
        #[serde(default, with = "base64_opt")]
        content: Option<Vec<u8>>,
    },
    /// [`Primitive::Exists`].
    Exists {
        /// Whether something is there.
        exists: bool,
    },
    /// [`Primitive::ListDir`].
    Entries {
        /// The entries, sorted by name.
        entries: Vec<DirEntry>,
    },
    /// [`Primitive::ReadLink`].
    Link {
        /// The link's target as written; `None` when the path is not a link.
        target: Option<String>,
    },
    /// [`Primitive::Lock`].
    Locked {
        /// What to give `unlock`.
        id: u64,
    },
    /// A primitive with nothing to return.
    Done,
}

/// Anything an agent is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// One of the tool's own actions.
    Tool(ToolAction),
    /// A file or command primitive.
    Primitive(Primitive),
}

impl Serialize for Action {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Action::Tool(action) => action.serialize(serializer),
            Action::Primitive(primitive) => primitive.serialize(serializer),
        }
    }
}

/// The `kind`s of [`ToolAction`]; every other kind is a [`Primitive`].
const TOOL_KINDS: &[&str] = &[
    "verify",
    "backup",
    "restore",
    "prune",
    "migrate",
    "verdict",
    "check",
    "detect",
    "drift",
    "haproxy_command",
    "tcp_connect",
];

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let value = Value::deserialize(deserializer)?;
        let kind = value
            .get("kind")
            .and_then(Value::as_str)
            .ok_or_else(|| D::Error::custom("the action has no \"kind\""))?;
        if TOOL_KINDS.contains(&kind) {
            ToolAction::deserialize(value)
                .map(Action::Tool)
                .map_err(D::Error::custom)
        } else {
            Primitive::deserialize(value)
                .map(Action::Primitive)
                .map_err(D::Error::custom)
        }
    }
}

/// One request line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// [`PROTOCOL_VERSION`] of the sender.
    pub protocol: u32,
    /// What to do.
    pub action: Action,
}

/// An error as it crosses the wire: its kind and its whole message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    /// [`ErrorKind::as_str`], e.g. `bundle_damaged`.
    pub kind: String,
    /// The error's message, which already says what to do.
    pub message: String,
}

/// One answer line: `{"ok":true,"outcome":{...}}` or `{"ok":false,"error":{...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// Whether the action succeeded.
    pub ok: bool,
    /// Its outcome ([`ToolOutcome`] or [`PrimitiveOutcome`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Value>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<WireError>,
}

impl Response {
    /// A success carrying `outcome`.
    pub fn success(outcome: &impl Serialize) -> Response {
        match serde_json::to_value(outcome) {
            Ok(outcome) => Response {
                ok: true,
                outcome: Some(outcome),
                error: None,
            },
            Err(error) => Response::failure(&Error::Internal {
                details: format!("the outcome does not serialize: {error}"),
            }),
        }
    }

    /// A failure carrying the error's kind and message.
    pub fn failure(error: &Error) -> Response {
        Response {
            ok: false,
            outcome: None,
            error: Some(WireError {
                kind: error.kind().as_str().to_owned(),
                message: crate::secrets::mask(&error.to_string()).into_owned(),
            }),
        }
    }

    /// The outcome as `T`, or the error it carries, its kind kept; `server`
    /// names the other side in messages.
    ///
    /// # Errors
    /// [`Error::Remote`] with the agent's kind; [`Error::Internal`] for an
    /// answer that does not fit the protocol.
    pub fn into_outcome<T: serde::de::DeserializeOwned>(self, server: &str) -> Result<T> {
        match (self.ok, self.outcome, self.error) {
            (true, Some(outcome), _) => {
                serde_json::from_value(outcome).map_err(|error| Error::Internal {
                    details: format!(
                        "{server} answered an outcome this version does not read ({error}); \
                         install the same cmw-upgrade version there"
                    ),
                })
            }
            (false, _, Some(error)) => Err(Error::Remote {
                server: server.to_owned(),
                kind: ErrorKind::from_name(&error.kind).unwrap_or(ErrorKind::Internal),
                message: error.message,
            }),
            _ => Err(Error::Internal {
                details: format!("{server} answered neither an outcome nor an error"),
            }),
        }
    }
}

/// `Option<Duration>` as whole milliseconds (`timeout_ms`-style numbers are
/// easier to read in a transcript than serde's `{secs, nanos}`).
pub(crate) mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        value: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(duration) => serializer.serialize_some(&(duration.as_millis() as u64)),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(deserializer)?.map(Duration::from_millis))
    }
}

/// Bytes as standard base64 text (JSON has no bytes; file content is not UTF-8 in general).
pub(crate) mod base64_bytes {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(value))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}

/// `Option<Vec<u8>>` as base64 text or null.
pub(crate) mod base64_opt {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        value: &Option<Vec<u8>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(bytes) => {
                serializer.serialize_some(&base64::engine::general_purpose::STANDARD.encode(bytes))
            }
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(deserializer)?
            .map(|text| {
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(serde::de::Error::custom)
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prod() -> InstanceName {
        InstanceName::new("prod").unwrap()
    }

    #[test]
    fn actions_are_cli_commands() {
        let action = ToolAction::Restore {
            bundle: "/mnt/backup/prod 1".into(),
            instance: prod(),
            family: OsFamily::Alt,
        };
        assert_eq!(
            action.display(),
            "cmw-upgrade restore '/mnt/backup/prod 1' --instance prod --replace --family alt"
        );
    }

    #[test]
    fn requests_round_trip_and_read_as_documented() {
        let line = r#"{"protocol":1,"action":{"kind":"verdict","log_dir":"/var/log/x"}}"#;
        let request: Request = serde_json::from_str(line).unwrap();
        assert_eq!(
            request.action,
            Action::Tool(ToolAction::Verdict {
                instance: None,
                log_dir: Some("/var/log/x".into()),
                since: None,
            })
        );
        assert_eq!(serde_json::to_string(&request).unwrap(), line);
        let write = Request {
            protocol: PROTOCOL_VERSION,
            action: Action::Primitive(Primitive::WriteFile {
                path: "/etc/x".into(),
                content: vec![0, 255, b'\n'],
                mode: 0o600,
            }),
        };
        let text = serde_json::to_string(&write).unwrap();
        assert!(text.contains(r#""content":"AP8K""#), "{text}");
        assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), write);
        let mut spec = CommandSpec::new(["sleep", "1"])
            .with_timeout(std::time::Duration::from_millis(1500))
            .path_arg("/tmp");
        spec.stdin = Some(b"in".to_vec());
        let execute = Action::Primitive(Primitive::Execute { command: spec });
        let text = serde_json::to_string(&execute).unwrap();
        assert!(text.contains(r#""timeout":1500"#), "{text}");
        assert_eq!(serde_json::from_str::<Action>(&text).unwrap(), execute);
        for bad in [
            r#"{"kind":"restore","bundle":"/b"}"#,
            r#"{"kind":"launch_missiles"}"#,
            r#"{"kind":"check","instance":"../x","url":"http://x/"}"#,
            r#"{"bundle":"/b"}"#,
            r#"{"kind":"backup","instance":"-rf","family":"deb","dest":"/d"}"#,
        ] {
            assert!(serde_json::from_str::<Action>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_keep_their_kind_across_the_wire() {
        let error = Error::BundleDamaged {
            bundle: "/mnt/b".into(),
            details: "changed database/x".into(),
        };
        let line = serde_json::to_string(&Response::failure(&error)).unwrap();
        let response: Response = serde_json::from_str(&line).unwrap();
        let back = response.into_outcome::<ToolOutcome>("new").unwrap_err();
        assert_eq!(back.kind(), ErrorKind::BundleDamaged);
        assert!(back.to_string().contains("changed database/x"), "{back}");
        assert!(back.to_string().starts_with("on new: "), "{back}");
    }

    #[test]
    fn outcomes_round_trip_by_kind() {
        let outcome = ToolOutcome::Verify(VerifyReport {
            ok: false,
            missing: vec!["database/a".into()],
            changed: Vec::new(),
            extra: Vec::new(),
        });
        let value = serde_json::to_value(&outcome).unwrap();
        assert_eq!(value["kind"], "verify");
        assert_eq!(value["ok"], false);
        let back: ToolOutcome = serde_json::from_value(value).unwrap();
        assert_eq!(
            back.clone().verify().unwrap().unwrap().missing,
            ["database/a"]
        );
        assert_eq!(back.verdict().unwrap_err().kind(), ErrorKind::Internal);
        assert_eq!(ToolOutcome::NotRun.verify().unwrap(), None);
    }
}
