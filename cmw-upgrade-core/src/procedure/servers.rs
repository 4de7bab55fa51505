//! The servers of a run driven from a control point, as data: how each is
//! reached and what the run was asked to do. The run state keeps them, so
//! `status`, `rollback` and a rerun reach the same servers.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::backup::manifest::BackupMethod;
use crate::error::{Error, Result};
use crate::executor::transfer::Route;
use crate::os::OsFamily;

/// How to reach one server: `local` (this machine, no ssh) or
/// `[user@]host[:port]` through the system's ssh with host keys checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerSpec {
    /// `local`, or `user@host` (a `Host` alias of the ssh config works too).
    pub destination: String,
    /// The ssh port.
    pub port: u16,
    /// A private key to use instead of ssh's defaults (a path on the control point).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_file: Option<PathBuf>,
    /// A known_hosts file to check the host key against (on the control point).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_hosts_file: Option<PathBuf>,
    /// `cmw-upgrade` there (found on its PATH by default); a missing or older
    /// one is replaced by a copy of this binary, checksum checked.
    pub program: String,
    /// The server's `/` as the tool sees it: for `local`, a folder here; over
    /// ssh, the agent's `--root` there. Only tests and rehearsals set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// Copy this binary there when the agent is missing, speaks another
    /// protocol or is older (else such an agent is an error).
    #[serde(default = "yes")]
    pub provision: bool,
    /// Where the copy goes there (`/var/lib/cmw-upgrade/bin` by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provision_dir: Option<String>,
}

fn yes() -> bool {
    true
}

impl ServerSpec {
    /// Reads `local`/`localhost`, or `[user@]host[:port]` (`[v6addr]:port` too).
    ///
    /// # Errors
    /// [`Error::BadRequest`] for an empty text, a bad port, or one starting
    /// with `-` or holding spaces (it would read as an ssh option).
    pub fn parse(text: &str) -> Result<ServerSpec> {
        let bad = |why: &str| Error::BadRequest {
            details: format!("{text:?} is not a server: {why}; give local or [user@]host[:port]"),
        };
        if text == "local" || text == "localhost" {
            return Ok(ServerSpec::local());
        }
        if text.is_empty() || text.starts_with('-') || text.contains(char::is_whitespace) {
            return Err(bad("empty, or it would read as an option"));
        }
        let (user, host_port) = match text.rsplit_once('@') {
            Some((user, rest)) if !user.is_empty() => (Some(user), rest),
            Some(_) => return Err(bad("no user before @")),
            None => (None, text),
        };
        let (host, port) = if let Some(rest) = host_port.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(|| bad("no closing ]"))?;
            match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None if after.is_empty() => (host, None),
                None => return Err(bad("text after ]")),
            }
        } else {
            match host_port.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (host_port, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|port| *port > 0)
                .ok_or_else(|| bad("the port is not a number from 1 to 65535"))?,
            None => 22,
        };
        Ok(ServerSpec {
            destination: match user {
                Some(user) => format!("{user}@{host}"),
                None => host.to_owned(),
            },
            port,
            ..ServerSpec::local()
        })
    }

    /// This machine.
    pub fn local() -> ServerSpec {
        ServerSpec {
            destination: "local".to_owned(),
            port: 22,
            identity_file: None,
            known_hosts_file: None,
            program: "cmw-upgrade".to_owned(),
            root: None,
            provision: true,
            provision_dir: None,
        }
    }

    /// Whether it is this machine.
    pub fn is_local(&self) -> bool {
        self.destination == "local"
    }

    /// How it reads in messages: `this machine`, or `user@host:port`.
    pub fn display(&self) -> String {
        if self.is_local() {
            "this machine".to_owned()
        } else {
            format!("{}:{}", self.destination, self.port)
        }
    }

    /// Whether `other` is the same server (a rerun must reach the same two).
    pub(crate) fn same_server(&self, other: &ServerSpec) -> bool {
        self.destination == other.destination && self.port == other.port && self.root == other.root
    }
}

/// What a run from a control point is asked to do, beyond the new server's
/// [`UpgradeSettings`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TwoServerSettings {
    /// The old server.
    pub old: ServerSpec,
    /// The new server.
    pub new: ServerSpec,
    /// The folder, on both servers, that holds the bundle
    /// (`<bundle_dir>/<instance>-<stamp>`).
    pub bundle_dir: String,
    /// How the old server's database is taken: `None` chooses (a snapshot
    /// of a running instance, a copy of a stopped one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_method: Option<BackupMethod>,
    /// A file copy of a running instance is accepted as crash-consistent.
    #[serde(default)]
    pub accept_crash_consistent: bool,
    /// How the bundle travels.
    pub route: Route,
    /// Extra `-o` options for the ssh the old server runs to reach the new
    /// one (the direct route), e.g. `IdentityFile=/root/.ssh/upgrade`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub direct_ssh_options: Vec<String>,
}

/// What the run state keeps about the two servers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedServers {
    /// The request, as given when the run started.
    #[serde(flatten)]
    pub settings: TwoServerSettings,
    /// The old server's family (the bundle is read with it).
    pub old_family: OsFamily,
}
