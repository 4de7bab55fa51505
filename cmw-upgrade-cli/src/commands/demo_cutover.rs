//! `demo --cutover haproxy|nginx`: the rehearsal ends with the switch, under
//! the built-in probe, through a real HAProxy (runtime API, no reload) or a
//! real nginx (the address swapped and `nginx -s reload`: keep-alive clients
//! may see closed connections, which the report counts) the demo starts on
//! loopback.
//!
//! The new server is the simulated one just upgraded: its site answers
//! through its real nginx on the simulation's port. The old server's
//! platform is not running in the simulation (only its files are), so its
//! site is played by a second real nginx answering 200 for every path: what
//! the old server answers does not matter to the switch, only that it
//! answers until the switch and gets no new request after. The proxy names
//! the server of each answer in `X-Served-By` (HAProxy: the server's name;
//! nginx: the upstream's address); the probe reads it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cmw_upgrade_core::cutover::nginx::{self, NginxOptions, NginxTarget};
use cmw_upgrade_core::cutover::nginx_site::Endpoint;
use cmw_upgrade_core::cutover::probe::{self, ProbeOptions, ProbeReport};
use cmw_upgrade_core::cutover::{self, CutoverOptions, HaproxyTarget};
use cmw_upgrade_core::executor::LocalExecutor;
use cmw_upgrade_core::InstanceName;
use serde::Serialize;

use crate::args::DemoCutover;
use crate::error::CliError;

/// What the switch looked like to the probe's clients.
#[derive(Debug, Clone, Serialize)]
pub(super) struct CutoverDemo {
    pub(super) method: &'static str,
    pub(super) requests: u64,
    pub(super) failed: u64,
    pub(super) p50_ms_before: f64,
    pub(super) p95_ms_before: f64,
    pub(super) p50_ms_after: f64,
    pub(super) p95_ms_after: f64,
    pub(super) moved_after_ms: Option<u64>,
    pub(super) switch_ms: u64,
    pub(super) clients: usize,
    pub(super) servers_before: Vec<String>,
    pub(super) servers_after: Vec<String>,
    /// The proxy's address the clients used.
    pub(super) proxy: String,
    /// The steps of the switch, as plan lines.
    pub(super) steps: Vec<String>,
}

/// The probe's clients.
const CLIENTS: usize = 8;

/// A program the demo started; stopped when dropped.
struct Started(Child);

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn failed(what: &str, details: String) -> CliError {
    cmw_upgrade_core::Error::CheckFailed {
        what: what.to_owned(),
        details,
    }
    .into()
}

fn free_port() -> Result<u16, CliError> {
    Ok(cmw_upgrade_sim::free_port()?)
}

/// Starts `command` and waits until `url` answers (at most 10 s).
fn start(mut command: Command, what: &str, url: &str) -> Result<Started, CliError> {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|error| {
            failed(
                &format!("starting {what}"),
                format!("{error}; install it (apt-get install haproxy nginx-light)"),
            )
        })?;
    let mut started = Started(child);
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(status)) = started.0.try_wait() {
            return Err(failed(
                &format!("starting {what}"),
                format!("it exited: {status}"),
            ));
        }
        if probe::measure(url, 1).is_ok_and(|latency| latency.failed == 0) {
            return Ok(started);
        }
        if Instant::now() > until {
            return Err(failed(
                &format!("starting {what}"),
                format!("{url} does not answer after 10s"),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Lays out an nginx as a Debian server has it under `root` (`/etc/nginx/nginx.conf`
/// including `sites-enabled/*`, relative paths under the packages' prefix
/// `/usr/share/nginx`, which the nginx method's reload names) with `site`,
/// starts it and waits until `url` answers.
fn nginx_at(root: &Path, site: &str, what: &str, url: &str) -> Result<Started, CliError> {
    let under = |path: &str| root.join(path.trim_start_matches('/'));
    let prefix = under("/usr/share/nginx");
    std::fs::create_dir_all(prefix.join("logs"))?;
    std::fs::create_dir_all(prefix.join("temp"))?;
    std::fs::create_dir_all(under("/etc/nginx/sites-enabled"))?;
    std::fs::write(
        under(NGINX_CONF),
        "worker_processes 1;\npid logs/nginx.pid;\nerror_log logs/error.log;\n\
         events { worker_connections 512; }\n\
         http {\n    access_log off;\n    keepalive_requests 1000000;\n\
         \x20   client_body_temp_path temp/body;\n    proxy_temp_path temp/proxy;\n\
         \x20   fastcgi_temp_path temp/fastcgi;\n    uwsgi_temp_path temp/uwsgi;\n\
         \x20   scgi_temp_path temp/scgi;\n    include sites-enabled/*;\n}\n",
    )?;
    std::fs::write(under(NGINX_SITE), site)?;
    let mut command = Command::new("nginx");
    command
        .arg("-p")
        .arg(format!("{}/", prefix.display()))
        .arg("-c")
        .arg(under(NGINX_CONF))
        .args(["-g", "daemon off;"]);
    start(command, what, url)
}

const NGINX_CONF: &str = "/etc/nginx/nginx.conf";
const NGINX_SITE: &str = "/etc/nginx/sites-enabled/cmw";

/// The old server's site: a real nginx answering 200 on `port`.
fn old_site(folder: &Path, port: u16) -> Result<Started, CliError> {
    nginx_at(
        &folder.join("old-site"),
        &format!(
            "server {{\n    listen 127.0.0.1:{port};\n    location / {{\n        \
             default_type application/json;\n        return 200 '{{\"status\":200}}\\n';\n    }}\n}}\n"
        ),
        "the old site's nginx",
        &format!("http://127.0.0.1:{port}/api/health"),
    )
}

/// The proxy: a real nginx sending to the old site on `old`.
fn nginx_proxy(root: &Path, port: u16, old: u16) -> Result<Started, CliError> {
    nginx_at(
        root,
        &format!(
            "server {{\n    listen 127.0.0.1:{port};\n    location / {{\n        \
             proxy_pass http://127.0.0.1:{old};   # the old server\n        \
             proxy_http_version 1.1;\n        proxy_set_header Connection \"\";\n        \
             add_header X-Served-By $upstream_addr always;\n    }}\n}}\n"
        ),
        "the proxy's nginx",
        &format!("http://127.0.0.1:{port}/api/health"),
    )
}

/// The proxy's root (its config and admin socket at their server paths).
const CONFIG: &str = "/etc/haproxy/haproxy.cfg";
const SOCKET: &str = "/run/haproxy/admin.sock";

fn haproxy(root: &Path, port: u16, old: u16, new: u16) -> Result<Started, CliError> {
    let under = |path: &str| root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(under("/etc/haproxy"))?;
    std::fs::create_dir_all(under("/run/haproxy"))?;
    std::fs::write(
        under(CONFIG),
        format!(
            "global\n    stats socket {} mode 600 level admin\n\n\
             defaults\n    mode http\n    timeout connect 2s\n    timeout client 30s\n    \
             timeout server 30s\n\n\
             frontend fe\n    bind 127.0.0.1:{port}\n    default_backend cmw\n\n\
             backend cmw\n    http-response set-header X-Served-By %[srv_name]\n    \
             option httpchk GET /api/health\n    \
             server old 127.0.0.1:{old} check inter 200ms   # the old server\n    \
             server new 127.0.0.1:{new} check inter 200ms disabled\n",
            under(SOCKET).display()
        ),
    )?;
    let mut command = Command::new("haproxy");
    command.arg("-db").arg("-f").arg(under(CONFIG));
    start(
        command,
        "haproxy",
        &format!("http://127.0.0.1:{port}/api/health"),
    )
}

/// The switch from the old site to the new server's (on `new_site_port`),
/// with HAProxy, under the probe; everything started is stopped again.
pub(super) fn rehearse(
    method: DemoCutover,
    folder: &Path,
    instance: &InstanceName,
    new_site_port: u16,
) -> Result<CutoverDemo, CliError> {
    let root: PathBuf = folder.join("proxy");
    let (proxy_port, old_port) = (free_port()?, free_port()?);
    let _old = old_site(folder, old_port)?;
    let proxy = format!("http://127.0.0.1:{proxy_port}/api/health");
    let probe = ProbeOptions {
        url: proxy.clone(),
        clients: CLIENTS,
        server_header: Some("X-Served-By".to_owned()),
        settle: Duration::from_secs(1),
    };
    let executor = LocalExecutor::new(&root);
    let stamp = cmw_upgrade_core::exec::utc_stamp(std::time::SystemTime::now());
    if method == DemoCutover::Nginx {
        let _nginx = nginx_proxy(&root, proxy_port, old_port)?;
        let endpoint = |port: u16| {
            Endpoint::parse(&format!("127.0.0.1:{port}"))
                .map_err(|details| failed("the demo's addresses", details))
        };
        let options = NginxOptions {
            instance: instance.clone(),
            target: NginxTarget {
                site: NGINX_SITE.to_owned(),
                main_config: NGINX_CONF.to_owned(),
                old: endpoint(old_port)?,
                new: endpoint(new_site_port)?,
            },
            root: root.clone(),
            reload: true,
            resolver: None,
            proxy_url: None,
            stamp,
        };
        let (report, seen) = probe::through_switch(&probe, || nginx::apply(&executor, &options))?;
        let steps = report
            .steps
            .iter()
            .map(|step| step.display.clone())
            .collect();
        return Ok(demo("nginx", seen, proxy, steps));
    }
    let _haproxy = haproxy(&root, proxy_port, old_port, new_site_port)?;
    let options = CutoverOptions {
        instance: instance.clone(),
        target: HaproxyTarget {
            socket: SOCKET.to_owned(),
            backend: "cmw".to_owned(),
            old_server: "old".to_owned(),
            new_server: "new".to_owned(),
            config: Some(CONFIG.to_owned()),
        },
        drain: Duration::from_secs(5),
        up_limit: Duration::from_secs(30),
        stamp,
    };
    let (report, seen) = probe::through_switch(&probe, || cutover::apply(&executor, &options))?;
    let steps = report
        .steps
        .iter()
        .map(|step| step.display.clone())
        .collect();
    Ok(demo("haproxy", seen, proxy, steps))
}

fn demo(method: &'static str, seen: ProbeReport, proxy: String, steps: Vec<String>) -> CutoverDemo {
    CutoverDemo {
        method,
        requests: seen.requests,
        failed: seen.failed,
        p50_ms_before: seen.p50_ms_before,
        p95_ms_before: seen.p95_ms_before,
        p50_ms_after: seen.p50_ms_after,
        p95_ms_after: seen.p95_ms_after,
        moved_after_ms: seen.moved_after_ms,
        switch_ms: seen.switch_ms,
        clients: seen.clients,
        servers_before: seen.servers_before,
        servers_after: seen.servers_after,
        proxy,
        steps,
    }
}
