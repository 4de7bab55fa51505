//! Both ends of `cmw-upgrade agent`: [`serve`] answers requests on a server
//! with a [`LocalExecutor`]; [`AgentExecutor`] is an [`Executor`] that sends
//! every call to such an agent (started over ssh, or as a local process).
//!
//! One request and one answer per line, in order, so the agent needs no
//! framing beyond newlines and a client can read its answers with a plain
//! line reader. A line that is not a request gets a `bad_request` answer and
//! the agent goes on; it ends when its input ends.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::protocol::{
    Action, Primitive, PrimitiveOutcome, Request, Response, ToolAction, ToolOutcome,
    PROTOCOL_VERSION,
};
use super::{CommandSpec, Executor, LocalExecutor, LockGuard};
use crate::error::{Error, Result};
use crate::exec::CommandOutput;
use crate::server::{DirEntry, ServerRead};

/// One agent's work: the server it acts on and the locks it holds for its
/// client. The locks go when the session ends, so a client that dies (its ssh
/// connection drops) never leaves a run locked.
pub struct AgentSession<'a> {
    local: &'a LocalExecutor,
    locks: HashMap<u64, std::fs::File>,
    next_lock: u64,
}

impl<'a> AgentSession<'a> {
    /// A session acting on `local`.
    pub fn new(local: &'a LocalExecutor) -> Self {
        AgentSession {
            local,
            locks: HashMap::new(),
            next_lock: 1,
        }
    }

    /// Runs one action and returns its outcome as JSON.
    fn dispatch(&mut self, action: &Action) -> Result<serde_json::Value> {
        fn json(value: &impl serde::Serialize) -> Result<serde_json::Value> {
            serde_json::to_value(value).map_err(|error| Error::Internal {
                details: format!("an outcome does not serialize: {error}"),
            })
        }
        let local = self.local;
        let primitive = match action {
            // A tool's report is printed by the controller, which never read the
            // configs behind it: secrets are masked here, where they were read.
            // (File contents of the primitives below travel as they are.)
            Action::Tool(action) => {
                let mut outcome = json(&local.tool(action)?)?;
                crate::secrets::mask_json(&mut outcome);
                return Ok(outcome);
            }
            Action::Primitive(primitive) => primitive,
        };
        let outcome = match primitive {
            Primitive::Hello => PrimitiveOutcome::Hello {
                protocol: PROTOCOL_VERSION,
                version: crate::VERSION.to_owned(),
            },
            Primitive::Execute { command } => {
                let output = local.execute(command)?;
                PrimitiveOutcome::Output {
                    code: output.code,
                    stdout: output.stdout,
                    stderr: output.stderr,
                }
            }
            Primitive::ReadFile { path } => PrimitiveOutcome::File {
                content: local.read_file(path)?,
            },
            Primitive::Exists { path } => PrimitiveOutcome::Exists {
                exists: local.exists(path)?,
            },
            Primitive::WriteFile {
                path,
                content,
                mode,
            } => {
                local.write_file(path, content, *mode)?;
                PrimitiveOutcome::Done
            }
            Primitive::CreateDirAll { path } => {
                local.create_dir_all(path)?;
                PrimitiveOutcome::Done
            }
            Primitive::Copy { from, to } => {
                local.copy(from, to)?;
                PrimitiveOutcome::Done
            }
            Primitive::Rename { from, to } => {
                local.rename(from, to)?;
                PrimitiveOutcome::Done
            }
            Primitive::Remove { path } => {
                local.remove(path)?;
                PrimitiveOutcome::Done
            }
            Primitive::ChownTree { path, uid, gid } => {
                local.chown_tree(path, *uid, *gid)?;
                PrimitiveOutcome::Done
            }
            Primitive::ListDir { path } => PrimitiveOutcome::Entries {
                entries: local.list_dir(path)?,
            },
            Primitive::ReadLink { path } => PrimitiveOutcome::Link {
                target: local.read_link(path)?,
            },
            Primitive::Lock { path } => {
                let file = local.disk().lock_file(path)?;
                let id = self.next_lock;
                self.next_lock += 1;
                self.locks.insert(id, file);
                PrimitiveOutcome::Locked { id }
            }
            Primitive::Unlock { id } => {
                // Releasing a lock not held is harmless: the goal state holds.
                self.locks.remove(id);
                PrimitiveOutcome::Done
            }
        };
        json(&outcome)
    }

    /// The answer to one request line.
    pub fn answer(&mut self, line: &str) -> Response {
        let request: Request = match serde_json::from_str(line) {
            Ok(request) => request,
            Err(error) => {
                return Response::failure(&Error::BadRequest {
                    details: format!(
                        "not a request ({error}); send one JSON object per line: \
                         {{\"protocol\":{PROTOCOL_VERSION},\"action\":{{\"kind\":...}}}}"
                    ),
                })
            }
        };
        if request.protocol != PROTOCOL_VERSION {
            return Response::failure(&Error::BadRequest {
                details: format!(
                    "protocol {} is not spoken here: this agent (cmw-upgrade {}) speaks protocol \
                     {PROTOCOL_VERSION}; install the same cmw-upgrade version on both sides",
                    request.protocol,
                    crate::VERSION
                ),
            });
        }
        // A bug in one action must not take the agent (and the run's other calls) down.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.dispatch(&request.action)
        })) {
            Ok(Ok(outcome)) => Response {
                ok: true,
                outcome: Some(outcome),
                error: None,
            },
            Ok(Err(error)) => Response::failure(&error),
            Err(_) => Response::failure(&Error::Internal {
                details: "the action panicked (its message is on the agent's stderr)".to_owned(),
            }),
        }
    }
}

/// Answers every request line of `input` on `output`, until `input` ends.
///
/// # Errors
/// Only when `input` cannot be read or `output` written (the client is gone).
pub fn serve(
    local: &LocalExecutor,
    input: impl BufRead,
    mut output: impl Write,
) -> std::io::Result<()> {
    let mut session = AgentSession::new(local);
    for line in input.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let response = session.answer(&line);
        serde_json::to_writer(&mut output, &response)?;
        output.write_all(b"\n")?;
        output.flush()?;
    }
    Ok(())
}

/// How long past a command's own time limit an answer may take (the agent
/// kills the command at its limit, then answers).
const ANSWER_GRACE: Duration = Duration::from_secs(60);
/// How long the greeting may take (ssh may still be authenticating).
const HELLO_TIMEOUT: Duration = Duration::from_secs(120);
/// How many lines of the agent's stderr are kept for error messages.
const STDERR_LINES: usize = 20;

struct Channel {
    /// `None` once closed (when the executor is dropped).
    stdin: Option<ChildStdin>,
    answers: Receiver<std::io::Result<String>>,
    /// Set when an answer did not come in time: a late one would be taken
    /// for the next request's, so the channel is not used again.
    broken: Option<String>,
}

/// An [`Executor`] that sends every call to a `cmw-upgrade agent` process.
pub struct AgentExecutor {
    label: String,
    channel: Mutex<Channel>,
    child: Mutex<Child>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    version: String,
}

impl std::fmt::Debug for AgentExecutor {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("AgentExecutor")
            .field("label", &self.label)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl AgentExecutor {
    /// Starts `argv` (e.g. `ssh host -- cmw-upgrade agent`, or a local
    /// `cmw-upgrade --root DIR agent`) and greets it; `label` names the server
    /// in messages.
    ///
    /// # Errors
    /// [`Error::CommandFailed`] when it does not start or does not answer the
    /// greeting (with its stderr); [`Error::CheckFailed`] when it speaks
    /// another protocol version.
    pub fn spawn(argv: &[String], label: impl Into<String>) -> Result<AgentExecutor> {
        let label = label.into();
        let display = CommandSpec::new(argv.iter().cloned()).display();
        let (program, args) = argv.split_first().ok_or_else(|| Error::Internal {
            details: "an agent command must not be empty".to_owned(),
        })?;
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| Error::CommandFailed {
                command: display.clone(),
                status: "did not start".to_owned(),
                output: error.to_string(),
                hint: "is it installed and on PATH?".to_owned(),
            })?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let (sender, answers) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let end = line.is_err();
                if sender.send(line).is_err() || end {
                    break;
                }
            }
        });
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let tail = Arc::clone(&stderr_tail);
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.by_ref().take(64 * 1024).read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let mut kept = tail.lock().unwrap_or_else(|poison| poison.into_inner());
                        if kept.len() == STDERR_LINES {
                            kept.pop_front();
                        }
                        kept.push_back(String::from_utf8_lossy(&line).trim_end().to_owned());
                    }
                }
            }
        });
        let mut agent = AgentExecutor {
            label,
            channel: Mutex::new(Channel {
                stdin: Some(stdin),
                answers,
                broken: None,
            }),
            child: Mutex::new(child),
            stderr_tail,
            version: String::new(),
        };
        let hello: PrimitiveOutcome = agent
            .call(&Action::Primitive(Primitive::Hello), Some(HELLO_TIMEOUT))
            .map_err(|error| match error {
                Error::CommandFailed { status, output, .. } => Error::CommandFailed {
                    command: display.clone(),
                    status,
                    output,
                    hint: "is cmw-upgrade installed on that server (same version as here)? \
                           its agent must be reachable as given"
                        .to_owned(),
                },
                other => other,
            })?;
        match hello {
            PrimitiveOutcome::Hello { protocol, version } if protocol == PROTOCOL_VERSION => {
                agent.version = version;
                Ok(agent)
            }
            PrimitiveOutcome::Hello { protocol, version } => Err(Error::CheckFailed {
                what: format!("greeting the agent on {}", agent.label),
                details: format!(
                    "it is cmw-upgrade {version} speaking protocol {protocol}; this is cmw-upgrade {} \
                     speaking {PROTOCOL_VERSION}: install the same version there",
                    crate::VERSION
                ),
            }),
            other => Err(Error::Internal {
                details: format!("{} answered the greeting with {other:?}", agent.label),
            }),
        }
    }

    /// The other side's tool version, from its greeting.
    pub fn agent_version(&self) -> &str {
        &self.version
    }

    /// The server's name in messages.
    pub fn label(&self) -> &str {
        &self.label
    }

    fn gone(&self, status: String) -> Error {
        let tail = self
            .stderr_tail
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n");
        Error::CommandFailed {
            command: format!("cmw-upgrade agent on {}", self.label),
            status,
            output: tail,
            hint: "the connection to the other server or its agent failed; check it and rerun"
                .to_owned(),
        }
    }

    /// Sends one action and reads its answer (waiting at most `wait`).
    fn call<T: DeserializeOwned>(&self, action: &Action, wait: Option<Duration>) -> Result<T> {
        let mut channel = self
            .channel
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if let Some(reason) = &channel.broken {
            return Err(self.gone(reason.clone()));
        }
        let request = Request {
            protocol: PROTOCOL_VERSION,
            action: action.clone(),
        };
        let mut line = serde_json::to_vec(&request).map_err(|error| Error::Internal {
            details: format!("a request does not serialize: {error}"),
        })?;
        line.push(b'\n');
        let written = match channel.stdin.as_mut() {
            Some(stdin) => stdin.write_all(&line).and_then(|()| stdin.flush()),
            None => Err(std::io::Error::other("closed")),
        };
        if let Err(error) = written {
            channel.broken = Some(format!("it stopped reading ({error})"));
            return Err(self.gone(format!("it stopped reading ({error})")));
        }
        let answer = match wait {
            Some(limit) => channel.answers.recv_timeout(limit),
            None => channel
                .answers
                .recv()
                .map_err(|_| RecvTimeoutError::Disconnected),
        };
        let text = match answer {
            Ok(Ok(text)) => text,
            Ok(Err(error)) => {
                channel.broken = Some(format!("its output broke off ({error})"));
                return Err(self.gone(format!("its output broke off ({error})")));
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.exit_status();
                channel.broken = Some(status.clone());
                return Err(self.gone(status));
            }
            Err(RecvTimeoutError::Timeout) => {
                let reason = format!("no answer within {}s", wait.unwrap_or_default().as_secs());
                channel.broken = Some(reason.clone());
                return Err(self.gone(reason));
            }
        };
        drop(channel);
        let response: Response = serde_json::from_str(&text).map_err(|error| Error::Internal {
            details: format!(
                "{} answered a line that is not a response ({error}): {}",
                self.label,
                text.chars().take(200).collect::<String>()
            ),
        })?;
        response.into_outcome(&self.label)
    }

    fn exit_status(&self) -> String {
        let mut child = self
            .child
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        // The pipe closed: the process is ending; give it a moment to be reaped.
        for _ in 0..50 {
            if let Ok(Some(status)) = child.try_wait() {
                return match status.code() {
                    Some(code) => format!("it exited with code {code}"),
                    None => "it was killed by a signal".to_owned(),
                };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        "it closed its output".to_owned()
    }

    fn primitive(&self, primitive: Primitive, wait: Option<Duration>) -> Result<PrimitiveOutcome> {
        self.call(&Action::Primitive(primitive), wait)
    }

    fn expect_done(&self, primitive: Primitive) -> Result<()> {
        match self.primitive(primitive, None)? {
            PrimitiveOutcome::Done => Ok(()),
            other => Err(self.unexpected(&other)),
        }
    }

    fn unexpected(&self, outcome: &PrimitiveOutcome) -> Error {
        Error::Internal {
            details: format!(
                "{} answered {outcome:?}, which does not fit the request",
                self.label
            ),
        }
    }
}

impl Drop for AgentExecutor {
    fn drop(&mut self) {
        // Closing its input ends the agent; it is then reaped, so no zombie is left.
        let channel = self
            .channel
            .get_mut()
            .unwrap_or_else(|poison| poison.into_inner());
        drop(channel.stdin.take());
        let child = self
            .child
            .get_mut()
            .unwrap_or_else(|poison| poison.into_inner());
        for _ in 0..200 {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl ServerRead for AgentExecutor {
    fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>> {
        match self.primitive(
            Primitive::ReadFile {
                path: path.to_owned(),
            },
            None,
        )? {
            PrimitiveOutcome::File { content } => Ok(content),
            other => Err(self.unexpected(&other)),
        }
    }

    fn exists(&self, path: &str) -> Result<bool> {
        match self.primitive(
            Primitive::Exists {
                path: path.to_owned(),
            },
            None,
        )? {
            PrimitiveOutcome::Exists { exists } => Ok(exists),
            other => Err(self.unexpected(&other)),
        }
    }

    fn list_dir(&self, path: &str) -> Result<Vec<DirEntry>> {
        match self.primitive(
            Primitive::ListDir {
                path: path.to_owned(),
            },
            None,
        )? {
            PrimitiveOutcome::Entries { entries } => Ok(entries),
            other => Err(self.unexpected(&other)),
        }
    }

    fn read_link(&self, path: &str) -> Result<Option<String>> {
        match self.primitive(
            Primitive::ReadLink {
                path: path.to_owned(),
            },
            None,
        )? {
            PrimitiveOutcome::Link { target } => Ok(target),
            other => Err(self.unexpected(&other)),
        }
    }
}

impl Executor for AgentExecutor {
    fn execute(&self, command: &CommandSpec) -> Result<CommandOutput> {
        let wait = command.timeout.map(|limit| limit + ANSWER_GRACE);
        match self.primitive(
            Primitive::Execute {
                command: command.clone(),
            },
            wait,
        )? {
            PrimitiveOutcome::Output {
                code,
                stdout,
                stderr,
            } => Ok(CommandOutput {
                code,
                stdout,
                stderr,
            }),
            other => Err(self.unexpected(&other)),
        }
    }

    fn write_file(&self, path: &str, content: &[u8], mode: u32) -> Result<()> {
        self.expect_done(Primitive::WriteFile {
            path: path.to_owned(),
            content: content.to_vec(),
            mode,
        })
    }

    fn create_dir_all(&self, path: &str) -> Result<()> {
        self.expect_done(Primitive::CreateDirAll {
            path: path.to_owned(),
        })
    }

    fn copy(&self, from: &str, to: &str) -> Result<()> {
        self.expect_done(Primitive::Copy {
            from: from.to_owned(),
            to: to.to_owned(),
        })
    }

    fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.expect_done(Primitive::Rename {
            from: from.to_owned(),
            to: to.to_owned(),
        })
    }

    fn remove(&self, path: &str) -> Result<()> {
        self.expect_done(Primitive::Remove {
            path: path.to_owned(),
        })
    }

    fn chown_tree(&self, path: &str, uid: u32, gid: u32) -> Result<()> {
        self.expect_done(Primitive::ChownTree {
            path: path.to_owned(),
            uid,
            gid,
        })
    }

    fn lock(&self, path: &str) -> Result<LockGuard<'_>> {
        match self.primitive(
            Primitive::Lock {
                path: path.to_owned(),
            },
            None,
        )? {
            PrimitiveOutcome::Locked { id } => Ok(LockGuard::new(move || {
                // Best effort: if the agent is gone, so is its lock.
                let _ = self.primitive(Primitive::Unlock { id }, Some(ANSWER_GRACE));
            })),
            other => Err(self.unexpected(&other)),
        }
    }

    fn tool(&self, action: &ToolAction) -> Result<ToolOutcome> {
        self.call(&Action::Tool(action.clone()), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer_of(local: &LocalExecutor, line: &str) -> serde_json::Value {
        serde_json::to_value(AgentSession::new(local).answer(line)).unwrap()
    }

    #[test]
    fn the_agent_answers_every_line_and_never_crashes() {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalExecutor::new(dir.path());
        let input = "nonsense\n\n{\"protocol\":1,\"action\":{\"kind\":\"hello\"}}\n\
                     {\"protocol\":9,\"action\":{\"kind\":\"hello\"}}\n\
                     {\"protocol\":1,\"action\":{\"kind\":\"write_file\",\"path\":\"/a/b\",\"content\":\"aGk=\",\"mode\":384}}\n\
                     {\"protocol\":1,\"action\":{\"kind\":\"verdict\"}}\n";
        let mut output = Vec::new();
        serve(&local, input.as_bytes(), &mut output).unwrap();
        let answers: Vec<serde_json::Value> = String::from_utf8(output)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(
            answers.len(),
            5,
            "one answer per non-empty line: {answers:?}"
        );
        assert_eq!(answers[0]["ok"], false);
        assert_eq!(answers[0]["error"]["kind"], "bad_request");
        assert_eq!(answers[1]["outcome"]["kind"], "hello");
        assert_eq!(answers[1]["outcome"]["protocol"], PROTOCOL_VERSION);
        assert_eq!(answers[2]["error"]["kind"], "bad_request");
        assert!(answers[2]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("protocol 9"));
        // The folder does not exist: the write fails with its real kind.
        assert_eq!(answers[3]["error"]["kind"], "io", "{}", answers[3]);
        assert_eq!(answers[4]["error"]["kind"], "bad_request");
        let escape = answer_of(
            &local,
            r#"{"protocol":1,"action":{"kind":"read_file","path":"/x/../../etc/passwd"}}"#,
        );
        assert_eq!(escape["error"]["kind"], "path_outside_root");
    }
}
