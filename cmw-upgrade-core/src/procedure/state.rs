//! The state of an upgrade run, kept on disk so a run resumes where it stopped,
//! and the lock that keeps two runs off one instance.
//!
//! The state file is `/var/lib/cmw-upgrade/<instance>/state.json` (under the
//! root), written atomically through the executor after every change, so a
//! crash at any point leaves the last finished step recorded. The lock is an
//! advisory `flock` on `lock` beside it: the kernel releases it when the
//! process dies, so a `kill -9` never leaves a stale lock behind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::UpgradeSettings;
use crate::error::{Error, Result};
use crate::executor::{Executor, LockGuard, Recorded};
use crate::instance::InstanceName;

/// Where the tool keeps its own state on a server.
pub const STATE_ROOT: &str = "/var/lib/cmw-upgrade";

/// The state format this tool writes and reads.
pub const STATE_FORMAT: u32 = 1;

/// The state file of an instance, as a server path.
pub fn state_file(instance: &InstanceName) -> String {
    format!("{STATE_ROOT}/{instance}/state.json")
}

/// Where a step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Not started.
    Pending,
    /// Started and not finished: interrupted, or still running.
    Running,
    /// Finished and checked.
    Done,
    /// Failed; the run stopped here.
    Failed,
    /// Undone by a rollback.
    RolledBack,
}

impl StepStatus {
    /// The status as the state file writes it: `pending`, `running`, `done`,
    /// `failed`, `rolled_back`.
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Running => "running",
            StepStatus::Done => "done",
            StepStatus::Failed => "failed",
            StepStatus::RolledBack => "rolled_back",
        }
    }
}

/// One step's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The step's name.
    pub name: String,
    /// Where it is.
    pub status: StepStatus,
    /// When it last started, RFC 3339 UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<String>,
    /// When it finished or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    /// How long it took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    /// What it produced that later steps or a rollback need (`bundle`, `aside`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub artifacts: BTreeMap<String, String>,
    /// The commands and file operations it performed, with how each ended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<Recorded>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The kind of that error (`check_failed`, `command_failed`, ...), for scripts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<String>,
    /// The server it runs on (`old`, `new`, `old→new`), in a run driven from
    /// a control point; `None` in a run on the new server itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
}

/// A whole run's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// [`STATE_FORMAT`].
    pub format: u32,
    /// The instance.
    pub instance: String,
    /// The steps in the order they run.
    pub steps: Vec<StepRecord>,
    /// What the run was asked to do (a resumed run, `status` and `rollback` use it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<UpgradeSettings>,
    /// The last rollback, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<StepRecord>,
    /// The two servers, when the run is driven from a control point
    /// (`cmw-upgrade upgrade --old … --new …`): its state lives there, and
    /// `status`, `rollback` and a rerun reach the servers from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub servers: Option<super::servers::RecordedServers>,
    /// What a person must decide, found by the steps (the config migration's
    /// notes): kept here so `status` and the report show it after the run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to_do: Vec<crate::config::migrate::HandNote>,
}

impl RunState {
    /// A fresh state with every step pending.
    pub fn new(instance: &InstanceName, step_names: &[&str]) -> Self {
        RunState {
            format: STATE_FORMAT,
            instance: instance.to_string(),
            steps: step_names
                .iter()
                .map(|name| StepRecord {
                    name: (*name).to_owned(),
                    status: StepStatus::Pending,
                    started: None,
                    finished: None,
                    seconds: None,
                    artifacts: BTreeMap::new(),
                    commands: Vec::new(),
                    error: None,
                    error_kind: None,
                    server: None,
                })
                .collect(),
            settings: None,
            rollback: None,
            servers: None,
            to_do: Vec::new(),
        }
    }

    /// Reads the instance's state through `executor`; `None` when there is none.
    ///
    /// # Errors
    /// [`Error::ConfigParse`] for a damaged or foreign state file; [`Error::Io`].
    pub fn load(executor: &dyn Executor, instance: &InstanceName) -> Result<Option<Self>> {
        let path = state_file(instance);
        let Some(bytes) = executor.read_file(&path)? else {
            return Ok(None);
        };
        let damaged = |message: String| Error::ConfigParse {
            path: PathBuf::from(&path),
            line: None,
            message: format!("{message}; move it away to start over, or fix it"),
        };
        let state: RunState = serde_json::from_slice(&bytes)
            .map_err(|error| damaged(format!("the run state does not parse: {error}")))?;
        if state.format != STATE_FORMAT || state.instance != instance.as_str() {
            return Err(damaged(format!(
                "the run state has format {} for instance {:?}",
                state.format, state.instance
            )));
        }
        // Every step is recorded from the start: none at all is not "all done".
        if state.steps.is_empty() {
            return Err(damaged("the run state lists no step".to_owned()));
        }
        Ok(Some(state))
    }

    /// Writes the state atomically through `executor` (mode 0600).
    ///
    /// # Errors
    /// [`Error::Io`] naming the file; the previous state is then unchanged.
    pub fn save(&self, executor: &dyn Executor) -> Result<()> {
        let path = state_file(&InstanceName::new(&self.instance)?);
        let folder = Path::new(&path)
            .parent()
            .map(|folder| folder.to_string_lossy().into_owned())
            .unwrap_or_else(|| STATE_ROOT.to_owned());
        refuse_links(executor, &self.instance)?;
        executor.create_dir_all(&folder)?;
        let mut json = serde_json::to_vec_pretty(self)
            .map_err(|error| Error::io("write", &path, std::io::Error::other(error.to_string())))?;
        json.push(b'\n');
        executor.write_file(&path, &json, 0o600)
    }

    /// The first step that is not done: where a rerun resumes. `None` when all are done.
    pub fn resume_index(&self) -> Option<usize> {
        self.steps
            .iter()
            .position(|step| step.status != StepStatus::Done)
    }

    /// The record of the step called `name`.
    pub fn step_mut(&mut self, name: &str) -> Option<&mut StepRecord> {
        self.steps.iter_mut().find(|step| step.name == name)
    }

    /// An artifact recorded by any step (the latest step that recorded it wins).
    pub fn artifact(&self, key: &str) -> Option<&str> {
        self.steps
            .iter()
            .rev()
            .find_map(|step| step.artifacts.get(key))
            .map(String::as_str)
    }
}

/// Refuses a link anywhere on the way to the run's files: the state and the
/// lock are written as root, and a link there would send those writes
/// elsewhere (the tool's folder is root's alone, so a link is not an accident).
fn refuse_links(executor: &dyn Executor, instance: &str) -> Result<()> {
    let folder = format!("{STATE_ROOT}/{instance}");
    let mut checked = Vec::new();
    let mut path = String::new();
    for part in folder.split('/').filter(|part| !part.is_empty()) {
        path.push('/');
        path.push_str(part);
        // System folders: an admin may have moved /var to another disk by a link.
        if path != "/var" && path != "/var/lib" {
            checked.push(path.clone());
        }
    }
    checked.extend([format!("{folder}/state.json"), format!("{folder}/lock")]);
    for path in checked {
        if let Some(target) = executor.read_link(&path)? {
            return Err(Error::CheckFailed {
                what: format!("checking {path} before writing the run's files there"),
                details: format!(
                    "it is a symlink to {target}; the tool's own folder must hold no link: \
                     remove it (and see who made it)"
                ),
            });
        }
    }
    Ok(())
}

/// An exclusive hold on an instance for one run, on the server the executor
/// reaches; released when dropped or when the holding process dies (locally
/// the kernel drops the `flock`; remotely the agent's session ends with its
/// connection).
#[derive(Debug)]
pub struct RunLock<'a> {
    _guard: LockGuard<'a>,
    path: String,
}

impl<'a> RunLock<'a> {
    /// Takes the lock of `instance` (`/var/lib/cmw-upgrade/<i>/lock`) without waiting.
    ///
    /// # Errors
    /// [`Error::Locked`] when another run holds it (its pid is named);
    /// [`Error::Io`] when the lock file cannot be made.
    pub fn acquire(executor: &'a dyn Executor, instance: &InstanceName) -> Result<RunLock<'a>> {
        let path = format!("{STATE_ROOT}/{instance}/lock");
        refuse_links(executor, instance.as_str())?;
        let guard = executor.lock(&path)?;
        Ok(RunLock {
            _guard: guard,
            path,
        })
    }

    /// The lock file (a server path).
    pub fn path(&self) -> &str {
        &self.path
    }
}

/// The tool's own folder ([`STATE_ROOT`]) kept in another folder of this
/// machine (`--state DIR`): a control point run by an admin without root
/// keeps its run state in a folder of theirs. An executor for the state and
/// the lock only: `/var/lib/cmw-upgrade/<i>/state.json` is `DIR/<i>/state.json`;
/// any other path, and every command, is refused.
#[derive(Debug)]
pub struct StateFolder {
    inner: crate::executor::LocalExecutor,
}

impl StateFolder {
    /// The state kept in `folder` (made 0700 on the first write).
    pub fn new(folder: impl Into<PathBuf>) -> StateFolder {
        StateFolder {
            inner: crate::executor::LocalExecutor::new(folder),
        }
    }

    /// `path` inside the folder, or an error for a path outside the tool's folder.
    fn map(&self, path: &str) -> Result<String> {
        match path.strip_prefix(STATE_ROOT) {
            Some("") => Ok("/".to_owned()),
            Some(rest) if rest.starts_with('/') => Ok(rest.to_owned()),
            _ => Err(Error::Internal {
                details: format!("the state folder holds only {STATE_ROOT}/…, not {path}"),
            }),
        }
    }

    fn refuse<T>(&self, what: &str) -> Result<T> {
        Err(Error::Internal {
            details: format!("the state folder does not {what}"),
        })
    }
}

impl crate::server::ServerRead for StateFolder {
    fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>> {
        self.inner.read_file(&self.map(path)?)
    }
    fn exists(&self, path: &str) -> Result<bool> {
        self.inner.exists(&self.map(path)?)
    }
    fn list_dir(&self, path: &str) -> Result<Vec<crate::server::DirEntry>> {
        self.inner.list_dir(&self.map(path)?)
    }
    fn read_link(&self, path: &str) -> Result<Option<String>> {
        self.inner.read_link(&self.map(path)?)
    }
}

impl Executor for StateFolder {
    fn execute(
        &self,
        _command: &crate::executor::CommandSpec,
    ) -> Result<crate::exec::CommandOutput> {
        self.refuse("run commands")
    }
    fn write_file(&self, path: &str, content: &[u8], mode: u32) -> Result<()> {
        self.inner.write_file(&self.map(path)?, content, mode)
    }
    fn create_dir_all(&self, path: &str) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let mapped = self.map(path)?;
        self.inner.create_dir_all(&mapped)?;
        // The admin's own folder, holding the run's state: theirs alone.
        let root = self.inner.root().to_path_buf();
        for folder in [root.join(mapped.trim_start_matches('/')), root] {
            // An executor of its own (this folder is the control point's, not a
            // server's): it makes its folders private itself.
            #[allow(clippy::disallowed_methods)]
            std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o700))
                .map_err(|error| Error::io("make private", &folder, error))?;
        }
        Ok(())
    }
    fn copy(&self, _from: &str, _to: &str) -> Result<()> {
        self.refuse("copy")
    }
    fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.inner.rename(&self.map(from)?, &self.map(to)?)
    }
    fn remove(&self, path: &str) -> Result<()> {
        self.inner.remove(&self.map(path)?)
    }
    fn chown_tree(&self, _path: &str, _uid: u32, _gid: u32) -> Result<()> {
        self.refuse("change owners")
    }
    fn lock(&self, path: &str) -> Result<LockGuard<'_>> {
        self.inner.lock(&self.map(path)?)
    }
    fn tool(&self, _action: &crate::executor::ToolAction) -> Result<crate::executor::ToolOutcome> {
        self.refuse("run the tool's actions")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn status_names_match_the_state_file() {
        for status in [
            StepStatus::Pending,
            StepStatus::Running,
            StepStatus::Done,
            StepStatus::Failed,
            StepStatus::RolledBack,
        ] {
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
    }
    use crate::executor::{DryRun, LocalExecutor, Recording};

    fn prod() -> InstanceName {
        InstanceName::new("prod").unwrap()
    }

    #[test]
    fn state_survives_a_save_and_load_and_says_where_to_resume() {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalExecutor::new(dir.path());
        assert_eq!(RunState::load(&local, &prod()).unwrap(), None);
        let mut state = RunState::new(&prod(), &["backup", "install", "transfer"]);
        assert_eq!(state.resume_index(), Some(0));
        let step = state.step_mut("backup").unwrap();
        step.status = StepStatus::Done;
        step.artifacts
            .insert("bundle".into(), "/mnt/backup/prod".into());
        state.step_mut("install").unwrap().status = StepStatus::Running;
        state.save(&local).unwrap();
        let loaded = RunState::load(&local, &prod()).unwrap().unwrap();
        assert_eq!(loaded, state);
        assert_eq!(
            loaded.resume_index(),
            Some(1),
            "an interrupted step runs again"
        );
        assert_eq!(loaded.artifact("bundle"), Some("/mnt/backup/prod"));
        let file = dir.path().join("var/lib/cmw-upgrade/prod/state.json");
        assert_eq!(fs::metadata(&file).unwrap().mode() & 0o777, 0o600);

        fs::write(&file, "{not json").unwrap();
        let error = RunState::load(&local, &prod()).unwrap_err();
        assert!(error.to_string().contains("state.json"), "{error}");
        fs::write(&file, r#"{"format":1,"instance":"prod","steps":[]}"#).unwrap();
        let error = RunState::load(&local, &prod()).unwrap_err();
        assert!(error.to_string().contains("lists no step"), "{error}");
        fs::write(&file, r#"{"format":1,"instance":"test","steps":[]}"#).unwrap();
        let error = RunState::load(&local, &prod()).unwrap_err();
        assert!(
            error.to_string().contains("\"test\""),
            "another instance's state: {error}"
        );

        // A dry run saves nothing but shows the write.
        let plan = Recording::new(DryRun::new(LocalExecutor::new(dir.path().join("other"))));
        state.save(&plan).unwrap();
        assert_eq!(plan.operations().len(), 2);
        assert!(!dir.path().join("other").exists());
    }

    #[test]
    fn a_state_folder_keeps_the_tools_folder_elsewhere() {
        use crate::server::ServerRead;
        let dir = tempfile::tempdir().unwrap();
        let folder = StateFolder::new(dir.path().join("state"));
        let mut state = RunState::new(&prod(), &["one"]);
        state.steps[0].status = StepStatus::Done;
        state.save(&folder).unwrap();
        assert!(dir.path().join("state/prod/state.json").is_file());
        assert_eq!(RunState::load(&folder, &prod()).unwrap(), Some(state));
        let lock = RunLock::acquire(&folder, &prod()).unwrap();
        assert!(dir.path().join("state/prod/lock").is_file());
        drop(lock);
        assert!(
            folder.read_file("/etc/passwd").is_err(),
            "only the tool's folder"
        );
        assert!(folder.read_file("/var/lib/cmw-upgrade-other/x").is_err());
        assert!(folder
            .execute(&crate::executor::CommandSpec::new(["true"]))
            .is_err());
    }

    #[test]
    fn one_run_at_a_time_per_instance() {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalExecutor::new(dir.path());
        let lock = RunLock::acquire(&local, &prod()).unwrap();
        assert_eq!(lock.path(), "/var/lib/cmw-upgrade/prod/lock");
        assert_eq!(
            fs::metadata(dir.path().join("var/lib/cmw-upgrade/prod/lock"))
                .unwrap()
                .mode()
                & 0o777,
            0o600
        );
        let error = RunLock::acquire(&local, &prod()).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains(&std::process::id().to_string()),
            "{message}"
        );
        assert!(RunLock::acquire(&local, &InstanceName::new("test").unwrap()).is_ok());
        drop(lock);
        assert!(
            RunLock::acquire(&local, &prod()).is_ok(),
            "released when dropped"
        );
        let plan = DryRun::new(LocalExecutor::new(dir.path().join("nothing")));
        assert!(
            RunLock::acquire(&plan, &prod()).is_ok(),
            "a plan takes no lock"
        );
        assert!(!dir.path().join("nothing").exists());
    }
}
