//! A read-only look at a server before a run: who the tool runs as there,
//! its OS family, the free space of the folders a run fills, and whether the
//! instance is there. Over any [`Executor`]; [`SshExecutor::preflight`] adds
//! the agent's version and what was copied to reach it.
//!
//! Nothing is written: the commands run are `id -u`, `sudo -n true`, `df`,
//! and the tool's detection. Every check that fails says what to do.

use serde::{Deserialize, Serialize};

use super::protocol::{ToolAction, PROTOCOL_VERSION};
use super::provision::Provisioned;
use super::{CommandSpec, Executor, SshExecutor};
use crate::instance::InstanceName;
use crate::os::{OsFamily, OsInfo};

/// What to look at.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreflightRequest {
    /// Folders whose free space is reported (a missing one: its nearest
    /// existing parent's file system).
    #[serde(default)]
    pub folders: Vec<String>,
    /// Free space each of them needs, in bytes (none: only reported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_free_bytes: Option<u64>,
    /// The instance that must exist there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<InstanceName>,
}

/// One check and its verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreflightCheck {
    /// `agent`, `root`, `os`, `free_space`, `instance`.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was found.
    pub detail: String,
    /// What to do, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// The free space of one folder's file system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FreeSpace {
    /// The folder asked about.
    pub folder: String,
    /// The folder measured (itself, or its nearest existing parent).
    pub measured: String,
    /// Bytes available to the tool there.
    pub available_bytes: u64,
    /// The file system's mount point.
    pub mount: String,
}

/// What a preflight found on a server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreflightReport {
    /// The server, as given.
    pub server: String,
    /// The agent's tool version, when reached through an agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    /// The protocol it speaks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<u32>,
    /// What was copied there to reach it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioned: Option<Provisioned>,
    /// The user the tool runs as there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// It runs as root.
    pub root: bool,
    /// `sudo -n true` works (checked only when not root).
    pub sudo: bool,
    /// The OS family detected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<OsFamily>,
    /// The distribution, from os-release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<OsInfo>,
    /// Free space of the folders asked about.
    pub free_space: Vec<FreeSpace>,
    /// Whether the instance asked about exists (its config is there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_exists: Option<bool>,
    /// Every check, in order.
    pub checks: Vec<PreflightCheck>,
}

impl PreflightReport {
    /// Whether every check passed.
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|check| check.ok)
    }

    /// The checks that failed.
    pub fn failed(&self) -> impl Iterator<Item = &PreflightCheck> {
        self.checks.iter().filter(|check| !check.ok)
    }

    fn check(&mut self, name: &str, ok: bool, detail: String, fix: &str) {
        self.checks.push(PreflightCheck {
            name: name.to_owned(),
            ok,
            detail,
            fix: (!ok).then(|| fix.to_owned()),
        });
    }
}

/// Runs a command that only looks.
fn look<E: Executor + ?Sized>(executor: &E, command: CommandSpec) -> Option<(bool, String)> {
    let command = CommandSpec {
        read_only: true,
        timeout: Some(std::time::Duration::from_secs(60)),
        ..command
    };
    executor
        .execute(&command)
        .ok()
        .map(|output| (output.success(), output.stdout))
}

/// `df -Pk` output: the available kilobytes and the mount point.
fn parse_df(stdout: &str) -> Option<(u64, String)> {
    let line = stdout.lines().nth(1)?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    // Filesystem 1024-blocks Used Available Capacity Mounted-on; the mount
    // point (after the `NN%` capacity) may hold spaces.
    let capacity = fields.iter().position(|field| field.ends_with('%'))?;
    let available = fields.get(capacity.checked_sub(1)?)?.parse::<u64>().ok()?;
    Some((available, fields[capacity + 1..].join(" ")))
}

/// The nearest existing folder at or above `folder`.
fn nearest_existing<E: Executor + ?Sized>(executor: &E, folder: &str) -> Option<String> {
    let mut current = folder.trim_end_matches('/').to_owned();
    loop {
        if current.is_empty() {
            return Some("/".to_owned());
        }
        if executor.exists(&current).ok()? {
            return Some(current);
        }
        let cut = current.rfind('/')?;
        current.truncate(cut);
    }
}

/// The size of a file or tree on the server behind `executor`, from
/// `du -skH` (links inside not followed); `None` when `du` does not answer.
pub fn size_of<E: Executor + ?Sized>(executor: &E, path: &str) -> Option<u64> {
    let mut command = CommandSpec::new(["du", "-skH", "--"]).read_only();
    command = command.path_arg(path);
    command.timeout = Some(std::time::Duration::from_secs(600));
    let output = executor.execute(&command).ok()?;
    if !output.success() {
        return None;
    }
    let kib: u64 = output.stdout.split_whitespace().next()?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// The free space of the file system holding `folder` (or its nearest
/// existing parent) on the server behind `executor`, from `df -Pk`; `None`
/// when `df` does not answer.
pub fn free_space_of<E: Executor + ?Sized>(executor: &E, folder: &str) -> Option<FreeSpace> {
    let measured = nearest_existing(executor, folder)?;
    let mut command = CommandSpec::new(["df", "-Pk", "--", measured.as_str()]);
    command.path_args = vec![3];
    let (kilobytes, mount) = look(executor, command)
        .filter(|(ok, _)| *ok)
        .and_then(|(_, stdout)| parse_df(&stdout))?;
    Some(FreeSpace {
        folder: folder.to_owned(),
        measured,
        available_bytes: kilobytes.saturating_mul(1024),
        mount,
    })
}

/// Looks at the server behind `executor` (named `server` in the report);
/// reads only.
pub fn preflight<E: Executor + ?Sized>(
    executor: &E,
    server: &str,
    request: &PreflightRequest,
) -> PreflightReport {
    let mut report = PreflightReport {
        server: server.to_owned(),
        agent_version: None,
        protocol: None,
        provisioned: None,
        uid: None,
        root: false,
        sudo: false,
        family: None,
        os: None,
        free_space: Vec::new(),
        instance_exists: None,
        checks: Vec::new(),
    };

    report.uid = look(executor, CommandSpec::new(["id", "-u"]))
        .filter(|(ok, _)| *ok)
        .and_then(|(_, stdout)| stdout.trim().parse().ok());
    report.root = report.uid == Some(0);
    if !report.root {
        report.sudo =
            look(executor, CommandSpec::new(["sudo", "-n", "true"])).is_some_and(|(ok, _)| ok);
    }
    let detail = match (report.uid, report.root, report.sudo) {
        (None, ..) => "`id -u` did not answer".to_owned(),
        (Some(_), true, _) => "runs as root".to_owned(),
        (Some(uid), false, true) => format!("runs as uid {uid}; `sudo -n true` works"),
        (Some(uid), false, false) => format!("runs as uid {uid}; `sudo -n true` does not work"),
    };
    report.check(
        "root",
        report.root || report.sudo,
        detail,
        "log in as root (ssh root@host), or give the ssh user passwordless sudo",
    );

    match executor.tool(&ToolAction::Detect {
        instance: None,
        family: None,
    }) {
        Ok(outcome) => match outcome.detect() {
            Ok(Some(detected)) => {
                report.family = Some(detected.family);
                report.os = detected.os.clone();
                let detail = match &detected.os {
                    Some(os) => format!(
                        "{} ({})",
                        detected.family,
                        os.pretty_name.as_deref().unwrap_or(&os.distro)
                    ),
                    None => detected.family.to_string(),
                };
                report.check("os", true, detail, "");
            }
            Ok(None) => report.check(
                "os",
                false,
                "detection did not run".to_owned(),
                "run the preflight for real, not as a dry run",
            ),
            Err(error) => report.check(
                "os",
                false,
                error.to_string(),
                "report it: detection answered something else",
            ),
        },
        Err(error) => report.check(
            "os",
            false,
            error.to_string(),
            "check /etc/os-release there (Debian/Ubuntu, Astra, RED OS, ALT are known), or give \
             the family by hand",
        ),
    }

    for folder in &request.folders {
        match free_space_of(executor, folder) {
            Some(space) => {
                let enough = request
                    .min_free_bytes
                    .is_none_or(|needed| space.available_bytes >= needed);
                let detail = format!(
                    "{}: {} MiB free on {}{}",
                    folder,
                    space.available_bytes / (1024 * 1024),
                    space.mount,
                    request
                        .min_free_bytes
                        .map(|needed| format!(" ({} MiB needed)", needed / (1024 * 1024)))
                        .unwrap_or_default()
                );
                report.check(
                    "free_space",
                    enough,
                    detail,
                    "free space there (old backups, caches: `cmw-upgrade prune`), or choose a \
                     folder on a bigger file system",
                );
                report.free_space.push(space);
            }
            None => report.check(
                "free_space",
                false,
                format!("{folder}: `df -Pk` did not answer for it"),
                "check that the folder's path is right and `df` works there",
            ),
        }
    }

    if let Some(instance) = &request.instance {
        let config = crate::layout::instance_config_path(instance);
        let config = config.to_string_lossy();
        match executor.exists(&config) {
            Ok(exists) => {
                report.instance_exists = Some(exists);
                let detail = match crate::layout::require_instance(&executor, instance) {
                    Ok(()) => format!("instance {instance}: {config} is there"),
                    Err(error) => error.to_string(),
                };
                report.check(
                    "instance",
                    exists,
                    detail,
                    "check the instance name (`ls /usr/share/comindware/configs/instance` there), \
                     or create the instance first",
                );
            }
            Err(error) => report.check(
                "instance",
                false,
                error.to_string(),
                "check the connection and the permissions there",
            ),
        }
    }
    report
}

impl SshExecutor {
    /// [`preflight`] of the server behind this connection, with its agent's
    /// version and what was copied to reach it. Connecting already checked
    /// the host key.
    pub fn preflight(&self, request: &PreflightRequest) -> PreflightReport {
        let mut report = preflight(self, self.destination(), request);
        report.agent_version = Some(self.agent_version().to_owned());
        report.protocol = Some(PROTOCOL_VERSION);
        report.provisioned = self.provisioned().cloned();
        let detail = match self.provisioned() {
            Some(provisioned) => format!(
                "cmw-upgrade {} speaking protocol {PROTOCOL_VERSION}; {}",
                self.agent_version(),
                provisioned.note()
            ),
            None => format!(
                "cmw-upgrade {} speaking protocol {PROTOCOL_VERSION}",
                self.agent_version()
            ),
        };
        report.checks.insert(
            0,
            PreflightCheck {
                name: "agent".to_owned(),
                ok: true,
                detail,
                fix: None,
            },
        );
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn df_lines_are_read_with_spaces_in_the_mount_point() {
        let out = "Filesystem     1024-blocks      Used Available Capacity Mounted on\n\
                   /dev/sda1        102400000  2048000  98304000       3% /mnt/big disk\n";
        assert_eq!(
            parse_df(out),
            Some((98_304_000, "/mnt/big disk".to_owned()))
        );
        assert_eq!(parse_df("Filesystem\n"), None);
    }
}
