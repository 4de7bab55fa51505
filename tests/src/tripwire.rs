//! An executor that forwards to a local one and dies (panics) at a chosen
//! command or tool action: a crash at an exact point of a procedure, for the
//! tests that prove the saved state undoes it.

use cmw_upgrade_core::exec::CommandOutput;
use cmw_upgrade_core::executor::{
    CommandSpec, DirEntry, Executor, LocalExecutor, LockGuard, ServerRead, ToolAction, ToolOutcome,
};
use cmw_upgrade_core::Result;

/// Forwards everything to `inner`; panics with `why` before running a
/// command or tool action `trips` matches.
pub struct Tripwire {
    inner: LocalExecutor,
    trip: Trip,
    why: &'static str,
}

/// Where the wire is.
enum Trip {
    Command(Box<dyn Fn(&CommandSpec) -> bool + Send + Sync>),
    Tool(Box<dyn Fn(&ToolAction) -> bool + Send + Sync>),
}

impl Tripwire {
    /// Dies before a command `at` matches.
    pub fn at_command(
        inner: LocalExecutor,
        why: &'static str,
        at: impl Fn(&CommandSpec) -> bool + Send + Sync + 'static,
    ) -> Tripwire {
        Tripwire {
            inner,
            trip: Trip::Command(Box::new(at)),
            why,
        }
    }

    /// Dies before a tool action `at` matches.
    pub fn at_tool(
        inner: LocalExecutor,
        why: &'static str,
        at: impl Fn(&ToolAction) -> bool + Send + Sync + 'static,
    ) -> Tripwire {
        Tripwire {
            inner,
            trip: Trip::Tool(Box::new(at)),
            why,
        }
    }
}

impl ServerRead for Tripwire {
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

impl Executor for Tripwire {
    fn execute(&self, command: &CommandSpec) -> Result<CommandOutput> {
        if let Trip::Command(at) = &self.trip {
            assert!(!at(command), "{}", self.why);
        }
        self.inner.execute(command)
    }
    fn write_file(&self, path: &str, content: &[u8], mode: u32) -> Result<()> {
        self.inner.write_file(path, content, mode)
    }
    fn create_dir_all(&self, path: &str) -> Result<()> {
        self.inner.create_dir_all(path)
    }
    fn copy(&self, from: &str, to: &str) -> Result<()> {
        self.inner.copy(from, to)
    }
    fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.inner.rename(from, to)
    }
    fn remove(&self, path: &str) -> Result<()> {
        self.inner.remove(path)
    }
    fn chown_tree(&self, path: &str, uid: u32, gid: u32) -> Result<()> {
        self.inner.chown_tree(path, uid, gid)
    }
    fn lock(&self, path: &str) -> Result<LockGuard<'_>> {
        self.inner.lock(path)
    }
    fn tool(&self, action: &ToolAction) -> Result<ToolOutcome> {
        if let Trip::Tool(at) = &self.trip {
            assert!(!at(action), "{}", self.why);
        }
        self.inner.tool(action)
    }
}
