//! A client of the HAProxy runtime API (the admin socket), through an
//! executor: `show servers state`, `show stat` and `set server ... state`.
//!
//! The answers are parsed by pure functions, tested on answers captured from
//! a real HAProxy 2.6; columns are found by their header names, so a version
//! that adds columns still reads.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::executor::{shell_quote, Executor, ToolAction};

/// What the admin asked a server to be (its admin state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminState {
    /// Takes new traffic.
    Ready,
    /// Takes no new traffic; what is open finishes.
    Drain,
    /// Out of the backend (maintenance).
    Maint,
}

impl AdminState {
    /// The word `set server ... state` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminState::Ready => "ready",
            AdminState::Drain => "drain",
            AdminState::Maint => "maint",
        }
    }

    /// The state HAProxy's admin bits (`srv_admin_state`) mean: any
    /// maintenance bit (forced 0x01, inherited 0x02, resolution 0x20) wins
    /// over drain (forced 0x08, inherited 0x10). 0x04 only records that the
    /// config said `disabled`, and 0x40 that the name was set at run time.
    pub fn from_bits(bits: u32) -> AdminState {
        if bits & 0x23 != 0 {
            AdminState::Maint
        } else if bits & 0x18 != 0 {
            AdminState::Drain
        } else {
            AdminState::Ready
        }
    }
}

impl std::fmt::Display for AdminState {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// What the health checks say about a server (`srv_op_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationalState {
    /// Down (checks fail, or in maintenance).
    Stopped,
    /// Coming up (slowstart).
    Starting,
    /// Up.
    Running,
    /// Going down.
    Stopping,
}

impl OperationalState {
    fn from_code(code: u32) -> Option<OperationalState> {
        Some(match code {
            0 => OperationalState::Stopped,
            1 => OperationalState::Starting,
            2 => OperationalState::Running,
            3 => OperationalState::Stopping,
            _ => return None,
        })
    }
}

/// One row of `show servers state <backend>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerState {
    /// The backend.
    pub backend: String,
    /// The server's name in the backend.
    pub name: String,
    /// Its address.
    pub address: String,
    /// Its port (`None` when the config gives none: the client's port is used).
    pub port: Option<u16>,
    /// Up or down.
    pub operational: OperationalState,
    /// Ready, drain or maint.
    pub admin: AdminState,
    /// The raw admin bits, for the record.
    pub admin_bits: u32,
}

impl ServerState {
    /// Up and taking new traffic.
    pub fn serves(&self) -> bool {
        self.operational == OperationalState::Running && self.admin == AdminState::Ready
    }
}

/// Parses the answer of `show servers state [<backend>]` (format 1: a
/// version line, a `#` header naming the columns, one row per server).
///
/// # Errors
/// The answer itself when it is not a state dump (HAProxy's `Can't find
/// backend.`, a permission error).
pub fn parse_servers_state(answer: &str) -> std::result::Result<Vec<ServerState>, String> {
    let mut lines = answer.lines().filter(|line| !line.trim().is_empty());
    let version = lines.next().unwrap_or_default().trim();
    if version != "1" {
        return Err(answer.trim().to_owned());
    }
    let header: Vec<&str> = match lines.next() {
        Some(line) if line.starts_with('#') => {
            line.trim_start_matches('#').split_whitespace().collect()
        }
        _ => return Err(format!("no column header in {:?}", answer.trim())),
    };
    let column = |name: &str| {
        header
            .iter()
            .position(|&column| column == name)
            .ok_or_else(|| format!("no column {name} in the header {:?}", header.join(" ")))
    };
    let (backend, name, address, op_state, admin_state, port) = (
        column("be_name")?,
        column("srv_name")?,
        column("srv_addr")?,
        column("srv_op_state")?,
        column("srv_admin_state")?,
        column("srv_port")?,
    );
    let mut rows = Vec::new();
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let field = |index: usize| {
            fields
                .get(index)
                .copied()
                .ok_or_else(|| format!("a row with {} fields: {line:?}", fields.len()))
        };
        let number = |index: usize| -> std::result::Result<u32, String> {
            let text = field(index)?;
            text.parse()
                .map_err(|_| format!("{text:?} is not a number in {line:?}"))
        };
        let op_code = number(op_state)?;
        let admin_bits = number(admin_state)?;
        rows.push(ServerState {
            backend: field(backend)?.to_owned(),
            name: field(name)?.to_owned(),
            address: field(address)?.to_owned(),
            port: field(port)?.parse().ok().filter(|&port: &u16| port != 0),
            operational: OperationalState::from_code(op_code)
                .ok_or_else(|| format!("unknown operational state {op_code} in {line:?}"))?,
            admin: AdminState::from_bits(admin_bits),
            admin_bits,
        });
    }
    Ok(rows)
}

/// Parses `show stat` (CSV with a `# pxname,svname,...` header): the current
/// sessions (`scur`) of each server of `backend`.
///
/// # Errors
/// The answer itself when it is not a stat dump (`No such proxy.`).
pub fn parse_current_sessions(
    answer: &str,
    backend: &str,
) -> std::result::Result<BTreeMap<String, u64>, String> {
    let mut lines = answer.lines().filter(|line| !line.trim().is_empty());
    let header: Vec<&str> = match lines.next() {
        Some(line) if line.starts_with("# ") => line[2..].split(',').collect(),
        _ => return Err(answer.trim().to_owned()),
    };
    let column = |name: &str| {
        header
            .iter()
            .position(|&column| column == name)
            .ok_or_else(|| format!("no column {name} in the stat header"))
    };
    let (proxy, server, sessions) = (column("pxname")?, column("svname")?, column("scur")?);
    let mut counts = BTreeMap::new();
    for line in lines {
        let fields: Vec<&str> = line.split(',').collect();
        let (Some(&row_proxy), Some(&row_server), Some(&row_sessions)) =
            (fields.get(proxy), fields.get(server), fields.get(sessions))
        else {
            return Err(format!("a short stat row: {line:?}"));
        };
        if row_proxy != backend || row_server == "BACKEND" || row_server == "FRONTEND" {
            continue;
        }
        let count = row_sessions
            .parse()
            .map_err(|_| format!("{row_sessions:?} is not a session count in {line:?}"))?;
        counts.insert(row_server.to_owned(), count);
    }
    Ok(counts)
}

/// The runtime API at one socket, on the server an executor reaches.
pub struct Runtime<'a, E: Executor + ?Sized> {
    executor: &'a E,
    socket: String,
}

impl<'a, E: Executor + ?Sized> Runtime<'a, E> {
    /// The API at `socket` (a server path) through `executor`.
    pub fn new(executor: &'a E, socket: impl Into<String>) -> Self {
        Runtime {
            executor,
            socket: socket.into(),
        }
    }

    /// The socket's server path.
    pub fn socket(&self) -> &str {
        &self.socket
    }

    /// The command as an admin would send it by hand.
    pub fn display(&self, command: &str) -> String {
        format!(
            "echo {} | socat stdio {}",
            shell_quote(command),
            shell_quote(&self.socket)
        )
    }

    /// Sends one command; `None` when a dry run did not send it.
    ///
    /// # Errors
    /// [`Error::CommandFailed`] when the socket does not answer.
    pub fn command(&self, command: &str) -> Result<Option<String>> {
        self.executor
            .tool(&ToolAction::HaproxyCommand {
                socket: self.socket.clone(),
                command: command.to_owned(),
            })?
            .haproxy_answer()
    }

    fn show(&self, command: &str) -> Result<String> {
        // `show` commands only read: a dry run sends them too.
        self.command(command)?.ok_or_else(|| Error::Internal {
            details: format!("`{command}` was not sent, although it only reads"),
        })
    }

    fn unreadable(&self, command: &str, details: String) -> Error {
        Error::CommandFailed {
            command: self.display(command),
            status: "an answer this tool does not read".to_owned(),
            output: details,
            hint:
                "check that the socket is HAProxy's runtime API (`stats socket ... level admin`) \
                   and that HAProxy is 1.8 or newer"
                    .to_owned(),
        }
    }

    /// The servers of `backend`.
    ///
    /// # Errors
    /// [`Error::BadInput`] naming the backends there when `backend` is not one.
    pub fn servers_state(&self, backend: &str) -> Result<Vec<ServerState>> {
        let command = format!("show servers state {backend}");
        let answer = self.show(&command)?;
        match parse_servers_state(&answer) {
            Ok(rows) => Ok(rows),
            Err(details) if details.contains("find backend") => {
                let all = self.show("show servers state")?;
                let mut backends: Vec<String> = parse_servers_state(&all)
                    .map_err(|details| self.unreadable("show servers state", details))?
                    .into_iter()
                    .map(|row| row.backend)
                    .collect();
                backends.dedup();
                Err(Error::BadInput {
                    details: format!(
                        "HAProxy at {} has no backend {backend:?}; its backends with servers: \
                         {}; pass one of them as --backend",
                        self.socket,
                        if backends.is_empty() {
                            "none".to_owned()
                        } else {
                            backends.join(", ")
                        }
                    ),
                })
            }
            Err(details) => Err(self.unreadable(&command, details)),
        }
    }

    /// Current sessions of each server of `backend`.
    ///
    /// # Errors
    /// [`Error::CommandFailed`] when the answer is not a stat dump.
    pub fn current_sessions(&self, backend: &str) -> Result<BTreeMap<String, u64>> {
        // -1 for every object id, 4 for servers only.
        let command = format!("show stat {backend} 4 -1");
        let answer = self.show(&command)?;
        parse_current_sessions(&answer, backend)
            .map_err(|details| self.unreadable(&command, details))
    }

    /// `set server <backend>/<server> state <state>`; nothing happens in a dry run.
    ///
    /// # Errors
    /// [`Error::CommandFailed`] with HAProxy's answer when it refuses.
    pub fn set_state(&self, backend: &str, server: &str, state: AdminState) -> Result<()> {
        let command = set_state_command(backend, server, state);
        match self.command(&command)? {
            Some(answer) if !answer.trim().is_empty() => Err(Error::CommandFailed {
                command: self.display(&command),
                status: "refused".to_owned(),
                output: answer.trim().to_owned(),
                hint: "the socket needs `level admin`; check the backend and server names with \
                       `show servers state`"
                    .to_owned(),
            }),
            _ => Ok(()),
        }
    }
}

/// The runtime API command that puts a server in a state.
pub fn set_state_command(backend: &str, server: &str, state: AdminState) -> String {
    format!("set server {backend}/{server} state {state}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from HAProxy 2.6.12: `old` up and ready, `new` in maintenance
    /// from the config (`disabled`: bits 0x01 forced + 0x04 config).
    const STATE: &str = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n3 cmw 1 old 127.0.0.1 2 0 1 1 1 6 3 4 6 0 0 0 - 18081 - 0 0 - - 0\n3 cmw 2 new 127.0.0.1 0 5 1 1 2 1 0 0 14 0 0 0 - 18082 - 0 0 - - 0\n\n";

    /// The same after `set server cmw/new state ready` (0x04 stays: it only
    /// records the config's flag) and `set server cmw/old state drain`.
    const SWITCHING: &str = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n3 cmw 1 old 127.0.0.1 2 8 1 1 0 6 3 4 6 0 0 0 - 18081 - 0 0 - - 0\n3 cmw 2 new 127.0.0.1 2 4 1 1 0 6 3 4 6 0 0 0 - 18082 - 0 0 - - 0\n\n";

    #[test]
    fn reads_the_servers_state() {
        let rows = parse_servers_state(STATE).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0],
            ServerState {
                backend: "cmw".into(),
                name: "old".into(),
                address: "127.0.0.1".into(),
                port: Some(18081),
                operational: OperationalState::Running,
                admin: AdminState::Ready,
                admin_bits: 0,
            }
        );
        assert_eq!(rows[1].admin, AdminState::Maint);
        assert_eq!(rows[1].operational, OperationalState::Stopped);
        assert!(rows[0].serves() && !rows[1].serves());
        let rows = parse_servers_state(SWITCHING).unwrap();
        assert_eq!(rows[0].admin, AdminState::Drain);
        assert_eq!(rows[1].admin, AdminState::Ready);
        assert!(rows[1].serves());
    }

    #[test]
    fn refusals_are_errors_with_the_answer() {
        assert_eq!(
            parse_servers_state("Can't find backend.\n\n").unwrap_err(),
            "Can't find backend."
        );
        assert!(parse_servers_state("1\n3 cmw 1 old\n").is_err());
        assert_eq!(
            parse_current_sessions("No such proxy.\n\n", "x").unwrap_err(),
            "No such proxy."
        );
    }

    #[test]
    fn reads_current_sessions() {
        // Captured from HAProxy 2.6.12 (`show stat cmw 4 -1`), the columns after `status` cut.
        let answer = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status\ncmw,old,0,0,3,4,,7,0,0,,0,,0,0,0,0,UP\ncmw,new,0,0,0,0,,0,0,0,,0,,0,0,0,0,MAINT\n\n";
        let sessions = parse_current_sessions(answer, "cmw").unwrap();
        assert_eq!(sessions["old"], 3);
        assert_eq!(sessions["new"], 0);
    }

    #[test]
    fn admin_bits() {
        assert_eq!(AdminState::from_bits(0x04), AdminState::Ready);
        assert_eq!(AdminState::from_bits(0x08), AdminState::Drain);
        assert_eq!(AdminState::from_bits(0x09), AdminState::Maint);
        assert_eq!(AdminState::from_bits(0x20), AdminState::Maint);
        assert_eq!(
            set_state_command("cmw", "new", AdminState::Ready),
            "set server cmw/new state ready"
        );
    }
}
