//! A recorder: forwards every call and keeps each effect as an [`Operation`].

use std::sync::Mutex;

use super::protocol::{ToolAction, ToolOutcome};
use super::{CommandSpec, Executor, LockGuard, OpOutcome, Operation, Recorded};
use crate::error::Result;
use crate::exec::CommandOutput;
use crate::server::{DirEntry, ServerRead};

/// Forwards to `inner` and records every effect in order, with how it ended
/// (reads are not effects). A dry run's effects are recorded without an
/// outcome: nothing happened.
#[derive(Debug)]
pub struct Recording<E> {
    inner: E,
    operations: Mutex<Vec<Recorded>>,
    findings: Mutex<Vec<ToolOutcome>>,
}

impl<E: Executor> Recording<E> {
    /// A recorder around `inner`.
    pub fn new(inner: E) -> Self {
        Recording {
            inner,
            operations: Mutex::new(Vec::new()),
            findings: Mutex::new(Vec::new()),
        }
    }

    /// The executor it forwards to (for what must not be in the transcript,
    /// such as saving the run state).
    pub fn inner(&self) -> &E {
        &self.inner
    }

    /// The effects so far, in order.
    pub fn operations(&self) -> Vec<Operation> {
        self.lock_operations()
            .iter()
            .map(|recorded| recorded.operation.clone())
            .collect()
    }

    /// Takes the effects so far with their outcomes, leaving none (one step's
    /// transcript at a time).
    pub fn take_operations(&self) -> Vec<Recorded> {
        std::mem::take(&mut *self.lock_operations())
    }

    /// Takes the reports of the tool actions that ran so far (in a dry run:
    /// the read-only ones and the previews), leaving none.
    pub fn take_findings(&self) -> Vec<ToolOutcome> {
        std::mem::take(
            &mut *self
                .findings
                .lock()
                .unwrap_or_else(|poison| poison.into_inner()),
        )
    }

    fn lock_operations(&self) -> std::sync::MutexGuard<'_, Vec<Recorded>> {
        self.operations
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Records `operation` before it runs (a crash leaves it in the
    /// transcript), runs it, then records how it ended.
    fn record<T>(
        &self,
        operation: Operation,
        run: impl FnOnce() -> Result<T>,
        ok: impl FnOnce(&T) -> OpOutcome,
    ) -> Result<T> {
        let index = {
            let mut operations = self.lock_operations();
            operations.push(Recorded {
                operation,
                outcome: None,
            });
            operations.len() - 1
        };
        let result = run();
        if !self.inner.is_dry_run() {
            let outcome = match &result {
                Ok(value) => ok(value),
                Err(error) => OpOutcome::Failed {
                    kind: error.kind().as_str().to_owned(),
                },
            };
            if let Some(recorded) = self.lock_operations().get_mut(index) {
                recorded.outcome = Some(outcome);
            }
        }
        result
    }

    fn record_effect(&self, operation: Operation, run: impl FnOnce() -> Result<()>) -> Result<()> {
        self.record(operation, run, |()| OpOutcome::Ok)
    }
}

impl<E: Executor> ServerRead for Recording<E> {
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

impl<E: Executor> Executor for Recording<E> {
    fn execute(&self, command: &CommandSpec) -> Result<CommandOutput> {
        self.record(
            Operation::Run {
                command: command.display(),
            },
            || self.inner.execute(command),
            |output| {
                if output.success() {
                    OpOutcome::Ok
                } else {
                    OpOutcome::Exited { code: output.code }
                }
            },
        )
    }
    fn write_file(&self, path: &str, content: &[u8], mode: u32) -> Result<()> {
        self.record_effect(
            Operation::WriteFile {
                path: path.to_owned(),
                bytes: content.len() as u64,
                mode,
            },
            || self.inner.write_file(path, content, mode),
        )
    }
    fn create_dir_all(&self, path: &str) -> Result<()> {
        self.record_effect(
            Operation::CreateDir {
                path: path.to_owned(),
            },
            || self.inner.create_dir_all(path),
        )
    }
    fn copy(&self, from: &str, to: &str) -> Result<()> {
        self.record_effect(
            Operation::Copy {
                from: from.to_owned(),
                to: to.to_owned(),
            },
            || self.inner.copy(from, to),
        )
    }
    fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.record_effect(
            Operation::Rename {
                from: from.to_owned(),
                to: to.to_owned(),
            },
            || self.inner.rename(from, to),
        )
    }
    fn remove(&self, path: &str) -> Result<()> {
        self.record_effect(
            Operation::Remove {
                path: path.to_owned(),
            },
            || self.inner.remove(path),
        )
    }
    fn chown_tree(&self, path: &str, uid: u32, gid: u32) -> Result<()> {
        self.record_effect(
            Operation::ChownTree {
                path: path.to_owned(),
                uid,
                gid,
            },
            || self.inner.chown_tree(path, uid, gid),
        )
    }
    fn lock(&self, path: &str) -> Result<LockGuard<'_>> {
        // Not an effect on the server's content: kept out of transcripts.
        self.inner.lock(path)
    }
    fn tool(&self, action: &ToolAction) -> Result<ToolOutcome> {
        let outcome = self.record(
            Operation::Tool {
                command: action.display(),
            },
            || self.inner.tool(action),
            |_| OpOutcome::Ok,
        )?;
        // A plan keeps what its read-only actions and previews found; a run
        // does not (its verdict polls would pile up for hours).
        if self.inner.is_dry_run() && outcome != ToolOutcome::NotRun {
            self.findings
                .lock()
                .unwrap_or_else(|poison| poison.into_inner())
                .push(outcome.clone());
        }
        Ok(outcome)
    }
    fn is_dry_run(&self) -> bool {
        self.inner.is_dry_run()
    }
}
