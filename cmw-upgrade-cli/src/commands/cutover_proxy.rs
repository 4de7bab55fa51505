//! Where the proxy runs: this machine (under `--root`), or the host named by
//! `--proxy-host [user@]host[:port]`, reached as `upgrade` reaches a server
//! (the agent over ssh, copied there when missing). Every read, write,
//! command and runtime-API request of the haproxy method goes through that
//! host's executor, so the same cut-over runs from the control point.

use cmw_upgrade_core::executor::{Executor, LocalExecutor};
use cmw_upgrade_core::procedure::two_servers::{Server, ServerSpec};

use crate::args::{CutoverArgs, CutoverMethod, GlobalArgs};
use crate::error::CliError;

/// The proxy's host, reached.
pub struct ProxyHost {
    remote: Option<Server>,
    local: LocalExecutor,
    label: String,
}

impl ProxyHost {
    /// This machine, or `--proxy-host` (only for `--method haproxy`: the
    /// nginx method tests the site with `nginx -t` in a copy of this
    /// machine's configuration, and the dns method talks to the DNS server
    /// from here).
    pub fn connect(global: &GlobalArgs, args: &CutoverArgs) -> Result<Self, CliError> {
        let local = LocalExecutor::new(&global.root);
        let Some(text) = args.proxy_host.as_deref().filter(|text| *text != "local") else {
            return Ok(ProxyHost {
                remote: None,
                local,
                label: "the proxy's host (this machine)".to_owned(),
            });
        };
        if args.method != CutoverMethod::Haproxy {
            return Err(CliError::from(cmw_upgrade_core::Error::BadInput {
                details: "--proxy-host is for --method haproxy; run the nginx method with \
                          cmw-upgrade on the proxy's host, and the dns method from any machine \
                          that reaches the DNS server"
                    .to_owned(),
            }));
        }
        let mut spec = ServerSpec::parse(text).map_err(|error| {
            CliError::from(cmw_upgrade_core::Error::BadInput {
                details: format!("--proxy-host: {error}"),
            })
        })?;
        spec.identity_file = args.around.old.identity_file.clone();
        spec.known_hosts_file = args.around.old.known_hosts.clone();
        spec.root = args.proxy_root.clone();
        let server = super::two_servers::connect("proxy", &spec)?;
        Ok(ProxyHost {
            remote: Some(server),
            local,
            label: format!("the proxy's host ({})", spec.display()),
        })
    }

    /// The executor on the proxy's host.
    pub fn executor(&self) -> &dyn Executor {
        match &self.remote {
            Some(server) => server.executor(),
            None => &self.local,
        }
    }

    /// "the proxy's host (…)", for the checks run from there.
    pub fn label(&self) -> &str {
        &self.label
    }
}
