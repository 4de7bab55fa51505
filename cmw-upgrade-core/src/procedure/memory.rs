//! A server in memory, for unit tests of the steps' decisions: files and
//! folders in maps, commands answered by a script, tool actions by another.
//! No root, no nginx, no processes: each test says what the server holds and
//! answers, runs one step, and looks at what it did and what it recorded.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::exec::CommandOutput;
use crate::executor::{CommandSpec, Executor, LockGuard, ToolAction, ToolOutcome};
use crate::server::{DirEntry, NodeKind, ServerRead};

type CommandScript = Box<dyn Fn(&MemoryServer, &CommandSpec) -> CommandOutput + Send + Sync>;
type ToolScript = Box<dyn Fn(&MemoryServer, &ToolAction) -> Result<ToolOutcome> + Send + Sync>;

/// What happened on the server, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A command ran (its argv joined by spaces).
    Ran(String),
    /// A tool action ran (its kind).
    Tool(&'static str),
    /// A rename.
    Renamed(String, String),
    /// A tree was given to an owner.
    Chowned(String, u32, u32),
}

/// The server.
pub struct MemoryServer {
    files: Mutex<BTreeMap<String, Vec<u8>>>,
    folders: Mutex<BTreeSet<String>>,
    events: Mutex<Vec<Event>>,
    commands: CommandScript,
    tools: ToolScript,
}

/// A command's output: `code`, and `stdout`.
pub fn output(code: i32, stdout: &str) -> CommandOutput {
    CommandOutput {
        code: Some(code),
        stdout: stdout.to_owned(),
        stderr: String::new(),
    }
}

fn parent(path: &str) -> Option<&str> {
    path.rfind('/')
        .map(|index| if index == 0 { "/" } else { &path[..index] })
}

impl MemoryServer {
    /// A server where every command exits 0 and every tool action is refused.
    pub fn new() -> Self {
        MemoryServer {
            files: Mutex::default(),
            folders: Mutex::default(),
            events: Mutex::default(),
            commands: Box::new(|_, _| output(0, "")),
            tools: Box::new(|_, action| {
                Err(Error::Internal {
                    details: format!("no tool script for {}", action.kind()),
                })
            }),
        }
    }

    /// Commands answered by `script`.
    pub fn answering(
        mut self,
        script: impl Fn(&MemoryServer, &CommandSpec) -> CommandOutput + Send + Sync + 'static,
    ) -> Self {
        self.commands = Box::new(script);
        self
    }

    /// Tool actions answered by `script`.
    pub fn with_tools(
        mut self,
        script: impl Fn(&MemoryServer, &ToolAction) -> Result<ToolOutcome> + Send + Sync + 'static,
    ) -> Self {
        self.tools = Box::new(script);
        self
    }

    /// A file (its folders made too).
    pub fn with_file(self, path: &str, content: &str) -> Self {
        self.put(path, content.as_bytes());
        self
    }

    /// A folder (its parents made too).
    pub fn with_folder(self, path: &str) -> Self {
        self.make_folders(path);
        self
    }

    fn make_folders(&self, path: &str) {
        let mut folders = self.folders.lock().unwrap();
        let mut current = Some(path);
        while let Some(folder) = current.filter(|folder| *folder != "/") {
            folders.insert(folder.to_owned());
            current = parent(folder);
        }
    }

    fn put(&self, path: &str, content: &[u8]) {
        if let Some(folder) = parent(path) {
            self.make_folders(folder);
        }
        self.files
            .lock()
            .unwrap()
            .insert(path.to_owned(), content.to_vec());
    }

    /// A file's text, when it is there.
    pub fn text(&self, path: &str) -> Option<String> {
        self.files
            .lock()
            .unwrap()
            .get(path)
            .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
    }

    /// What happened so far.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    fn log(&self, event: Event) {
        self.events.lock().unwrap().push(event);
    }

    fn under(path: &str, key: &str) -> bool {
        key == path || key.starts_with(&format!("{path}/"))
    }

    /// Moves (or copies) every file and folder at or under `from` to `to`.
    fn transplant(&self, from: &str, to: &str, keep: bool) {
        let moved = |key: &str| format!("{to}{}", &key[from.len()..]);
        {
            let mut files = self.files.lock().unwrap();
            let keys: Vec<String> = files
                .keys()
                .filter(|key| Self::under(from, key))
                .cloned()
                .collect();
            for key in keys {
                let content = if keep {
                    files[&key].clone()
                } else {
                    files.remove(&key).unwrap()
                };
                files.insert(moved(&key), content);
            }
        }
        let mut folders = self.folders.lock().unwrap();
        let keys: Vec<String> = folders
            .iter()
            .filter(|key| Self::under(from, key))
            .cloned()
            .collect();
        for key in keys {
            if !keep {
                folders.remove(&key);
            }
            folders.insert(moved(&key));
        }
    }
}

impl ServerRead for MemoryServer {
    fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.files.lock().unwrap().get(path).cloned())
    }

    fn exists(&self, path: &str) -> Result<bool> {
        Ok(self.files.lock().unwrap().contains_key(path)
            || self.folders.lock().unwrap().contains(path))
    }

    fn list_dir(&self, path: &str) -> Result<Vec<DirEntry>> {
        let child = |key: &str| -> Option<String> {
            let rest = key.strip_prefix(path)?.strip_prefix('/')?;
            (!rest.contains('/')).then(|| rest.to_owned())
        };
        let mut entries: Vec<DirEntry> = self
            .files
            .lock()
            .unwrap()
            .keys()
            .filter_map(|key| child(key))
            .map(|name| DirEntry {
                name,
                kind: NodeKind::File,
                link: false,
            })
            .collect();
        entries.extend(
            self.folders
                .lock()
                .unwrap()
                .iter()
                .filter_map(|key| child(key))
                .map(|name| DirEntry {
                    name,
                    kind: NodeKind::Folder,
                    link: false,
                }),
        );
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    fn read_link(&self, _path: &str) -> Result<Option<String>> {
        Ok(None)
    }
}

impl Executor for MemoryServer {
    fn execute(&self, command: &CommandSpec) -> Result<CommandOutput> {
        self.log(Event::Ran(command.argv.join(" ")));
        Ok((self.commands)(self, command))
    }

    fn write_file(&self, path: &str, content: &[u8], _mode: u32) -> Result<()> {
        self.put(path, content);
        Ok(())
    }

    fn create_dir_all(&self, path: &str) -> Result<()> {
        self.make_folders(path);
        Ok(())
    }

    fn copy(&self, from: &str, to: &str) -> Result<()> {
        if self.exists(to)? {
            return Err(Error::AlreadyExists {
                path: to.into(),
                hint: "a copy never overwrites",
            });
        }
        self.transplant(from, to, true);
        Ok(())
    }

    fn rename(&self, from: &str, to: &str) -> Result<()> {
        if !self.exists(from)? {
            return Err(Error::io(
                "rename",
                from,
                std::io::Error::from(std::io::ErrorKind::NotFound),
            ));
        }
        self.log(Event::Renamed(from.to_owned(), to.to_owned()));
        self.transplant(from, to, false);
        Ok(())
    }

    fn remove(&self, path: &str) -> Result<()> {
        self.files
            .lock()
            .unwrap()
            .retain(|key, _| !Self::under(path, key));
        self.folders
            .lock()
            .unwrap()
            .retain(|key| !Self::under(path, key));
        Ok(())
    }

    fn chown_tree(&self, path: &str, uid: u32, gid: u32) -> Result<()> {
        self.log(Event::Chowned(path.to_owned(), uid, gid));
        Ok(())
    }

    fn lock(&self, _path: &str) -> Result<LockGuard<'_>> {
        Ok(LockGuard::none())
    }

    fn tool(&self, action: &ToolAction) -> Result<ToolOutcome> {
        self.log(Event::Tool(action.kind()));
        (self.tools)(self, action)
    }
}
