//! A recorder: forwards every call and keeps each effect as an [`Operation`].

use std::sync::Mutex;

use super::protocol::{ToolAction, ToolOutcome};
use super::{CommandSpec, Executor, LockGuard, Operation};
use crate::error::Result;
use crate::exec::CommandOutput;
use crate::server::{DirEntry, ServerRead};

/// Forwards to `inner` and records every effect in order (reads are not effects).
#[derive(Debug)]
pub struct Recording<E> {
    inner: E,
    operations: Mutex<Vec<Operation>>,
}

impl<E: Executor> Recording<E> {
    /// A recorder around `inner`.
    pub fn new(inner: E) -> Self {
        Recording {
            inner,
            operations: Mutex::new(Vec::new()),
        }
    }

    /// The executor it forwards to (for what must not be in the transcript,
    /// such as saving the run state).
    pub fn inner(&self) -> &E {
        &self.inner
    }

    /// The effects so far, in order.
    pub fn operations(&self) -> Vec<Operation> {
        self.operations
            .lock()
            .expect("no panic while recording")
            .clone()
    }

    /// Takes the effects so far, leaving none (one step's transcript at a time).
    pub fn take_operations(&self) -> Vec<Operation> {
        std::mem::take(&mut *self.operations.lock().expect("no panic while recording"))
    }

    fn record(&self, operation: Operation) {
        self.operations
            .lock()
            .expect("no panic while recording")
            .push(operation);
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
        self.record(Operation::Run {
            command: command.display(),
        });
        self.inner.execute(command)
    }
    fn write_file(&self, path: &str, content: &[u8], mode: u32) -> Result<()> {
        self.record(Operation::WriteFile {
            path: path.to_owned(),
            bytes: content.len() as u64,
            mode,
        });
        self.inner.write_file(path, content, mode)
    }
    fn create_dir_all(&self, path: &str) -> Result<()> {
        self.record(Operation::CreateDir {
            path: path.to_owned(),
        });
        self.inner.create_dir_all(path)
    }
    fn copy(&self, from: &str, to: &str) -> Result<()> {
        self.record(Operation::Copy {
            from: from.to_owned(),
            to: to.to_owned(),
        });
        self.inner.copy(from, to)
    }
    fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.record(Operation::Rename {
            from: from.to_owned(),
            to: to.to_owned(),
        });
        self.inner.rename(from, to)
    }
    fn remove(&self, path: &str) -> Result<()> {
        self.record(Operation::Remove {
            path: path.to_owned(),
        });
        self.inner.remove(path)
    }
    fn chown_tree(&self, path: &str, uid: u32, gid: u32) -> Result<()> {
        self.record(Operation::ChownTree {
            path: path.to_owned(),
            uid,
            gid,
        });
        self.inner.chown_tree(path, uid, gid)
    }
    fn lock(&self, path: &str) -> Result<LockGuard<'_>> {
        // Not an effect on the server's content: kept out of transcripts.
        self.inner.lock(path)
    }
    fn tool(&self, action: &ToolAction) -> Result<ToolOutcome> {
        self.record(Operation::Tool {
            command: action.display(),
        });
        self.inner.tool(action)
    }
    fn is_dry_run(&self) -> bool {
        self.inner.is_dry_run()
    }
}
