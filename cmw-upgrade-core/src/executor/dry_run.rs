//! A dry run: reads go through, effects are dropped.

use super::protocol::{ToolAction, ToolOutcome};
use super::{CommandSpec, Executor, LockGuard};
use crate::error::Result;
use crate::exec::CommandOutput;
use crate::server::{DirEntry, ServerRead};

/// Reads through `inner`, changes nothing: commands succeed with no output,
/// writes are dropped. Wrap it in [`Recording`] to see what would have happened.
#[derive(Debug, Clone)]
pub struct DryRun<E> {
    inner: E,
}

impl<E: Executor> DryRun<E> {
    /// A dry run reading through `inner`.
    pub fn new(inner: E) -> Self {
        DryRun { inner }
    }
}

impl<E: Executor> ServerRead for DryRun<E> {
    fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>> {
        self.inner.read_file(path)
    }
    fn exists(&self, path: &str) -> Result<bool> {
        self.inner.exists(path)
    }
    fn list_dir(&self, path: &str) -> Result<Vec<DirEntry>> {
        self.inner.list_dir(path)
    }
    fn read_link(&self, path: &str) -> Result<Option<String>> {
        self.inner.read_link(path)
    }
}

impl<E: Executor> Executor for DryRun<E> {
    fn execute(&self, command: &CommandSpec) -> Result<CommandOutput> {
        if command.read_only {
            return self.inner.execute(command);
        }
        Ok(CommandOutput {
            code: Some(0),
            stdout: String::new(),
            stderr: String::new(),
        })
    }
    fn write_file(&self, path: &str, _content: &[u8], _mode: u32) -> Result<()> {
        self.inner.exists(path).map(drop)
    }
    fn create_dir_all(&self, path: &str) -> Result<()> {
        self.inner.exists(path).map(drop)
    }
    fn copy(&self, from: &str, to: &str) -> Result<()> {
        self.inner.exists(from).and(self.inner.exists(to)).map(drop)
    }
    fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.inner.exists(from).and(self.inner.exists(to)).map(drop)
    }
    fn remove(&self, path: &str) -> Result<()> {
        self.inner.exists(path).map(drop)
    }
    fn chown_tree(&self, path: &str, _uid: u32, _gid: u32) -> Result<()> {
        self.inner.exists(path).map(drop)
    }
    fn lock(&self, path: &str) -> Result<LockGuard<'_>> {
        // A plan changes nothing, so it needs no lock: it may run beside a run.
        self.inner.exists(path).map(|_| LockGuard::none())
    }
    fn tool(&self, action: &ToolAction) -> Result<ToolOutcome> {
        if action.is_read_only() {
            return self.inner.tool(action);
        }
        match action {
            // A migration has a check mode that computes exactly what it would
            // write: the plan shows that instead of nothing.
            ToolAction::MigrateConfig {
                from,
                instance,
                family,
                fix,
                check: false,
            } => self.inner.tool(&ToolAction::MigrateConfig {
                from: from.clone(),
                instance: instance.clone(),
                family: *family,
                fix: *fix,
                check: true,
            }),
            _ => Ok(ToolOutcome::NotRun),
        }
    }
    fn is_dry_run(&self) -> bool {
        true
    }
}
