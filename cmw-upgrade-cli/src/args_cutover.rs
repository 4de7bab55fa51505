//! The cut-over's options for haproxy prepare's reload, the built-in probe
//! (apply, revert) and verify's response-time comparison.

use clap::Args;

/// Flattened into `cutover plan|prepare|apply|verify|revert`.
#[derive(Debug, Args)]
pub struct CutoverProbeArgs {
    /// haproxy prepare: the master CLI socket of a master-worker HAProxy (`haproxy -W -S
    /// PATH`); prepare sends `reload` there once when it added a server.
    #[arg(long, value_name = "PATH")]
    pub haproxy_master_socket: Option<String>,

    /// haproxy prepare: the command that reloads HAProxy (split on blanks, run without a
    /// shell), instead of --haproxy-master-socket, e.g. 'systemctl reload haproxy'.
    #[arg(long, value_name = "COMMAND", conflicts_with = "haproxy_master_socket")]
    pub reload_command: Option<String>,

    /// haproxy prepare: do not add `option idle-close-on-response` to the frontends of the
    /// backend (it makes the reload close idle keep-alive connections politely).
    #[arg(long)]
    pub no_idle_close: bool,

    /// apply, revert: run the built-in probe through the switch: --probe-clients keep-alive
    /// HTTP/1.1 clients GET this URL (http://HOST[:PORT]/PATH, through the proxy) from this
    /// machine, and the report says requests, failures, p50/p95 before and after, and when
    /// the first answer came from the new server.
    #[arg(long, value_name = "URL")]
    pub probe: Option<String>,

    /// The probe's keep-alive clients.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub probe_clients: u64,

    /// The response header naming the server that answered (default: the body's first line).
    #[arg(long, value_name = "NAME")]
    pub probe_server_header: Option<String>,

    /// verify: the old server's URL (straight to it, not through the proxy), compared with
    /// --new-url over --compare-requests GETs each.
    #[arg(long, value_name = "URL", requires = "new_url")]
    pub old_url: Option<String>,

    /// verify: the new server's URL, compared with --old-url.
    #[arg(long, value_name = "URL", requires = "old_url")]
    pub new_url: Option<String>,

    /// verify: GETs sent to each of --old-url and --new-url.
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub compare_requests: u64,
}
