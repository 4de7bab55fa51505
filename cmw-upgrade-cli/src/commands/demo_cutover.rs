//! `demo --cutover haproxy|nginx|dns`: the rehearsal ends with the switch,
//! under the built-in probe, through a real HAProxy (runtime API, no reload),
//! a real nginx (the address swapped and `nginx -s reload`: keep-alive
//! clients may see closed connections, which the report counts), or a real
//! nginx made resolver-driven by `prepare` in front of a real BIND (a signed
//! update moves the name, no reload), all started by the demo on loopback.
//!
//! The new server is the simulated one just upgraded: its site answers
//! through its real nginx on the simulation's port. The old server's
//! platform is not running in the simulation (only its files are), so its
//! site is played by a second real nginx answering 200 for every path: what
//! the old server answers does not matter to the switch, only that it
//! answers until the switch and gets no new request after (for dns it
//! listens on 127.0.0.2 and the new site's port: the name points at one
//! address, then the other, with the same port). The proxy names
//! the server of each answer in `X-Served-By` (HAProxy: the server's name;
//! nginx: the upstream's address); the probe reads it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cmw_upgrade_core::cutover::dns::{self, DnsOptions, DnsTarget};
use cmw_upgrade_core::cutover::dns_key;
use cmw_upgrade_core::cutover::dns_wire::HickoryWire;
use cmw_upgrade_core::cutover::nginx::{self, NginxOptions, NginxTarget};
use cmw_upgrade_core::cutover::nginx_site::{Endpoint, ResolverDriven};
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

/// Starts `command`, quiet; `install` says which packages bring it.
fn spawn(mut command: Command, what: &str, install: &str) -> Result<Started, CliError> {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|error| {
            failed(
                &format!("starting {what}"),
                format!("{error}; install it (apt-get install {install})"),
            )
        })?;
    Ok(Started(child))
}

/// Starts `command` and waits until `url` answers (at most 10 s).
fn start(command: Command, what: &str, url: &str) -> Result<Started, CliError> {
    let mut started = spawn(command, what, "haproxy nginx-light")?;
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

/// The old server's site: a real nginx answering 200 on `address:port`.
fn old_site(folder: &Path, address: &str, port: u16) -> Result<Started, CliError> {
    nginx_at(
        &folder.join("old-site"),
        &format!(
            "server {{\n    listen {address}:{port};\n    location / {{\n        \
             default_type application/json;\n        return 200 '{{\"status\":200}}\\n';\n    }}\n}}\n"
        ),
        "the old site's nginx",
        &format!("http://{address}:{port}/api/health"),
    )
}

/// The proxy: a real nginx sending to the old site on `old` (`HOST:PORT`).
fn nginx_proxy(root: &Path, port: u16, old: &str) -> Result<Started, CliError> {
    nginx_at(
        root,
        &format!(
            "server {{\n    listen 127.0.0.1:{port};\n    location / {{\n        \
             proxy_pass http://{old};   # the old server\n        \
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
    let proxy_port = free_port()?;
    if method == DemoCutover::Dns {
        return rehearse_dns(folder, &root, instance, proxy_port, new_site_port);
    }
    let old_port = free_port()?;
    let _old = old_site(folder, "127.0.0.1", old_port)?;
    let proxy = format!("http://127.0.0.1:{proxy_port}/api/health");
    let probe = probe_options(&proxy, Duration::from_secs(1));
    let executor = LocalExecutor::new(&root);
    let stamp = cmw_upgrade_core::exec::utc_stamp(std::time::SystemTime::now());
    if method == DemoCutover::Nginx {
        let _nginx = nginx_proxy(&root, proxy_port, &format!("127.0.0.1:{old_port}"))?;
        let options = nginx_options(
            &root,
            instance,
            &format!("127.0.0.1:{old_port}"),
            &format!("127.0.0.1:{new_site_port}"),
            None,
            stamp,
        )?;
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

/// The probe through `proxy`, running `settle` before and after the switch.
fn probe_options(proxy: &str, settle: Duration) -> ProbeOptions {
    ProbeOptions {
        url: proxy.to_owned(),
        clients: CLIENTS,
        server_header: Some("X-Served-By".to_owned()),
        settle,
    }
}

fn nginx_options(
    root: &Path,
    instance: &InstanceName,
    old: &str,
    new: &str,
    resolver: Option<ResolverDriven>,
    stamp: String,
) -> Result<NginxOptions, CliError> {
    let endpoint = |text: &str| {
        Endpoint::parse(text).map_err(|details| failed("the demo's addresses", details))
    };
    Ok(NginxOptions {
        instance: instance.clone(),
        target: NginxTarget {
            site: NGINX_SITE.to_owned(),
            main_config: NGINX_CONF.to_owned(),
            old: endpoint(old)?,
            new: endpoint(new)?,
        },
        root: root.to_path_buf(),
        reload: resolver.is_none(),
        resolver,
        proxy_url: None,
        stamp,
    })
}

/// Runs `program` with `args`; its standard output.
fn output_of(program: &str, args: &[&str]) -> Result<String, CliError> {
    let output = Command::new(program).args(args).output().map_err(|error| {
        failed(
            &format!("running {program}"),
            format!("{error}; install it (apt-get install bind9)"),
        )
    })?;
    if !output.status.success() {
        return Err(failed(
            &format!("running {program}"),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The zone the dns demo moves a name in.
const ZONE: &str = "example.test";
const NAME: &str = "backend.example.test";
const OLD_ADDRESS: &str = "127.0.0.2";

/// A real BIND on loopback holding `NAME` at the old address (TTL 1 s),
/// updated only with the key it returns (BIND's key format).
fn bind(folder: &Path, port: u16) -> Result<(Started, String), CliError> {
    let dir = folder.join("bind");
    std::fs::create_dir_all(&dir)?;
    let key = output_of("tsig-keygen", &["-a", "hmac-sha256", "cmw-upgrade"])?;
    std::fs::write(
        dir.join("zone"),
        format!(
            "$TTL 300\n@ IN SOA ns1.{ZONE}. hostmaster.{ZONE}. ( 1 3600 600 86400 1 )\n\
             @ IN NS ns1.{ZONE}.\nns1 IN A 127.0.0.1\nbackend 1 IN A {OLD_ADDRESS}\n"
        ),
    )?;
    let path = dir.display();
    std::fs::write(
        dir.join("named.conf"),
        format!(
            "options {{\n    directory \"{path}\";\n    listen-on port {port} {{ 127.0.0.1; }};\n    \
             listen-on-v6 {{ none; }};\n    pid-file none;\n    session-keyfile \"{path}/session.key\";\n    \
             managed-keys-directory \"{path}\";\n    recursion no;\n    dnssec-validation no;\n    \
             notify no;\n}};\ncontrols {{ }};\n{key}\n\
             zone \"{ZONE}\" {{\n    type primary;\n    file \"{path}/zone\";\n    \
             update-policy {{ grant cmw-upgrade zonesub ANY; }};\n}};\n"
        ),
    )?;
    let mut command = Command::new("named");
    command.arg("-g").arg("-c").arg(dir.join("named.conf"));
    let named = spawn(command, "named", "bind9")?;
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = output_of(
            "dig",
            &[
                "+short",
                "+tcp",
                "+time=1",
                "+tries=1",
                "-p",
                &port.to_string(),
                "@127.0.0.1",
                NAME,
                "A",
            ],
        );
        if answer.is_ok_and(|answer| answer.trim() == OLD_ADDRESS) {
            return Ok((named, key));
        }
        if Instant::now() > until {
            return Err(failed(
                "starting named",
                "no answer for the zone after 20s".to_owned(),
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The dns switch: nginx made resolver-driven (one reload, before the
/// window), then the name moved by a signed update under the probe.
fn rehearse_dns(
    folder: &Path,
    root: &Path,
    instance: &InstanceName,
    proxy_port: u16,
    new_site_port: u16,
) -> Result<CutoverDemo, CliError> {
    let ns_port = free_port()?;
    let (_named, key_text) = bind(folder, ns_port)?;
    let _old = old_site(folder, OLD_ADDRESS, new_site_port)?;
    let old = format!("{OLD_ADDRESS}:{new_site_port}");
    let _nginx = nginx_proxy(root, proxy_port, &old)?;
    let executor = LocalExecutor::new(root);
    let wire = HickoryWire::default();
    let stamp = cmw_upgrade_core::exec::utc_stamp(std::time::SystemTime::now());
    let resolver = ResolverDriven {
        name: NAME.to_owned(),
        resolver: format!("127.0.0.1:{ns_port}"),
        valid: 1,
    };
    let options = nginx_options(
        root,
        instance,
        &old,
        &format!("127.0.0.1:{new_site_port}"),
        Some(resolver),
        stamp.clone(),
    )?;
    let prepared = nginx::prepare(&executor, &wire, &options)?;
    let mut steps: Vec<String> = prepared
        .steps
        .iter()
        .map(|step| step.display.clone())
        .collect();
    // The reload's old workers close their keep-alive connections as they go:
    // the window starts later, as it would hours after prepare.
    std::thread::sleep(Duration::from_secs(2));
    let key =
        dns_key::parse_bind_key(&key_text).map_err(|details| failed("the demo's key", details))?;
    dns_key::remember_secret(&key);
    let now = std::time::SystemTime::now();
    let dns_options = DnsOptions {
        instance: instance.clone(),
        target: DnsTarget {
            zone: ZONE.to_owned(),
            name: NAME.to_owned(),
            old: OLD_ADDRESS
                .parse()
                .map_err(|_| failed("the demo's addresses", OLD_ADDRESS.to_owned()))?,
            new: "127.0.0.1"
                .parse()
                .map_err(|_| failed("the demo's addresses", "127.0.0.1".to_owned()))?,
        },
        server: Some(([127, 0, 0, 1], ns_port).into()),
        ns_port,
        resolvers: Vec::new(),
        key: Some(key),
        lowered_ttl: 1,
        // The name's TTL is 1 s from the start: nothing to wait out.
        force: true,
        verify_timeout: Duration::from_secs(10),
        now: now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs()),
        stamp,
    };
    let proxy = format!("http://127.0.0.1:{proxy_port}/api/health");
    // nginx asks again after `valid=1s`, and the record's TTL is 1 s: the
    // answers move within about 2 s; the probe runs 3 s after the update.
    let (report, seen) =
        probe::through_switch(&probe_options(&proxy, Duration::from_secs(3)), || {
            dns::apply(&executor, &wire, &dns_options)
        })?;
    steps.extend(report.steps.iter().map(|step| step.display.clone()));
    Ok(demo("dns", seen, proxy, steps))
}
