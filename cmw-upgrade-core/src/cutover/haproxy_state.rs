//! HAProxy's server-state file, kept in step with a switch.
//!
//! A config with `server-state-file` and `load-server-state-from-file`
//! makes each new worker start its servers as the file says. The admin
//! flags are safe without help: HAProxy lets the config win for a server
//! whose `disabled` flag differs from the one the file recorded, and the
//! switch rewrites exactly those flags. The health is not: a file dumped
//! before the switch says the new server was down (it was in maintenance),
//! and the new worker then starts it down, with the old one in maintenance:
//! 503 until the new server's health check passes (measured with a real
//! HAProxy 2.6). So after a switch the file gets a fresh `show servers
//! state` (the new server up), written atomically through the executor.

use super::haproxy::Runtime;
use super::haproxy_config::{lines_of, split_line, word, SECTION_KEYWORDS};
use super::{HaproxyTarget, Step};
use crate::error::Result;
use crate::executor::Executor;

/// Where the state of `backend`'s servers is loaded from, and whether it
/// holds every backend (`global`) or only this one (`local`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateFile {
    /// The file (server path).
    pub path: String,
    /// `load-server-state-from-file local`: only this backend's rows.
    pub local: bool,
}

/// The state file the config loads `backend`'s servers from; `None` when
/// it loads none. Pure.
pub fn state_file(text: &[u8], backend: &str) -> Option<StateFile> {
    let (mut file, mut base, mut default_load, mut load, mut local_name) =
        (None, None, None, None, None);
    let mut section = String::new();
    let mut name = String::new();
    for line in lines_of(text) {
        let parsed = split_line(line);
        let words: Vec<String> = parsed
            .words
            .iter()
            .map(|&span| String::from_utf8_lossy(word(line, span)).into_owned())
            .collect();
        let Some(first) = words.first() else {
            continue;
        };
        if SECTION_KEYWORDS.contains(&first.as_str()) {
            section = first.clone();
            name = words.get(1).cloned().unwrap_or_default();
            continue;
        }
        let value = words.get(1).cloned();
        let here = (section == "backend" || section == "listen") && name == backend;
        match (section.as_str(), first.as_str()) {
            ("global", "server-state-file") => file = value,
            ("global", "server-state-base") => base = value,
            ("defaults", "load-server-state-from-file") => default_load = value,
            (_, "load-server-state-from-file") if here => load = value,
            (_, "server-state-file-name") if here => local_name = value,
            _ => {}
        }
    }
    let load = load.or(default_load)?;
    let join = |file: String| match &base {
        _ if file.starts_with('/') => file,
        Some(base) => format!("{}/{file}", base.trim_end_matches('/')),
        // Relative to HAProxy's working folder: `/` for the service systemd starts.
        None => format!("/{file}"),
    };
    match load.as_str() {
        "global" => file.map(|file| StateFile {
            path: join(file),
            local: false,
        }),
        "local" => Some(StateFile {
            path: join(local_name.unwrap_or_else(|| backend.to_owned())),
            local: true,
        }),
        _ => None,
    }
}

fn loaded_file(executor: &dyn Executor, target: &HaproxyTarget) -> Result<Option<StateFile>> {
    let Some(config) = &target.config else {
        return Ok(None);
    };
    Ok(executor
        .read_file(config)?
        .and_then(|text| state_file(&text, &target.backend)))
}

/// The step that writes the state file after a switch, when the config
/// (`target.config`) loads one.
///
/// # Errors
/// What reading the config reports.
pub fn state_step(executor: &dyn Executor, target: &HaproxyTarget) -> Result<Option<Step>> {
    Ok(loaded_file(executor, target)?.map(|file| Step::WriteServerState { path: file.path }))
}

/// Writes the proxy's `show servers state` into the file the config loads
/// (mode kept, atomically); `None` when the config loads none.
///
/// # Errors
/// What the runtime API or the write reports.
pub fn write_state(
    executor: &dyn Executor,
    socket: &str,
    target: &HaproxyTarget,
) -> Result<Option<String>> {
    let Some(file) = loaded_file(executor, target)? else {
        return Ok(None);
    };
    let backend = &target.backend;
    let runtime = Runtime::new(executor, socket.to_owned());
    let command = if file.local {
        format!("show servers state {backend}")
    } else {
        "show servers state".to_owned()
    };
    let dump = runtime.command(&command)?.unwrap_or_default();
    let mode = if executor.exists(&file.path)? {
        super::file_mode(executor, &file.path)?
    } else {
        0o600
    };
    executor.write_file(&file.path, dump.as_bytes(), mode)?;
    Ok(Some(file.path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_file_the_backend_loads() {
        let global = "global\n  server-state-base /var/lib/haproxy\n  server-state-file state # all\ndefaults\n  load-server-state-from-file global\nbackend cmw\n  server a 1.2.3.4:80\n";
        assert_eq!(
            state_file(global.as_bytes(), "cmw"),
            Some(StateFile {
                path: "/var/lib/haproxy/state".into(),
                local: false
            })
        );
        let local = "global\n  server-state-base /s/\nbackend cmw\n  load-server-state-from-file local\n  server-state-file-name cmw.state\nbackend x\n  load-server-state-from-file local\n";
        assert_eq!(
            state_file(local.as_bytes(), "cmw"),
            Some(StateFile {
                path: "/s/cmw.state".into(),
                local: true
            })
        );
        assert_eq!(state_file(local.as_bytes(), "x").unwrap().path, "/s/x");
        let relative =
            "global\n  server-state-file run/st\ndefaults\n  load-server-state-from-file global\n";
        assert_eq!(
            state_file(relative.as_bytes(), "cmw").unwrap().path,
            "/run/st"
        );
        let none = "global\n  server-state-file /st\nbackend cmw\n  server a 1.2.3.4:80\n";
        assert_eq!(state_file(none.as_bytes(), "cmw"), None);
        let off = "global\n  server-state-file /st\ndefaults\n  load-server-state-from-file global\nbackend cmw\n  load-server-state-from-file none\n";
        assert_eq!(state_file(off.as_bytes(), "cmw"), None);
    }
}
