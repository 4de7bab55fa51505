//! Simulated servers for the whole upgrade: an old 4.7 server with data, a
//! new server with nothing on it yet, the distribution tarballs (made with
//! the real `tar`) whose scripts lay out instances as the platform's
//! documentation describes, and stand-ins for what cannot run here:
//! `systemctl`, the package tools and the platform service itself
//! ([`service`]). nginx is the real nginx, run on the simulation's own
//! config; it proxies the site to the service.
//!
//! A product crate, not a test helper: `cmw-upgrade demo` rehearses the whole
//! upgrade on it, and the end-to-end tests drive it. The server trees,
//! databases and logs it lays out come from [`fixtures`]; [`sshd`] puts a
//! simulated server behind a real OpenSSH server (`demo --over-ssh`).

pub mod fixtures;
mod scripts;
pub mod service;
pub mod sshd;

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use cmw_upgrade_core::OsFamily;

use crate::fixtures::{
    os_release, write_accounts, write_file, write_new_server, write_server, DatabaseSpec,
    ServerSpec, UpgradeLogState,
};

/// The old version the simulated old server runs.
pub const OLD_VERSION: &str = "4.7.2890.0";
/// The new version the simulated distribution installs.
pub const NEW_VERSION: &str = "5.0.1234.0";

/// How the simulated data-structure upgrade ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// An error record in the upgrade log; the upgrade stops.
    Error,
    /// Records stop coming.
    Hang,
    /// The service dies mid-upgrade.
    Crash,
}

impl Failure {
    /// `error`, `hang` or `crash`.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Error => "error",
            Failure::Hang => "hang",
            Failure::Crash => "crash",
        }
    }

    /// Reads `error`, `hang` or `crash`.
    pub fn parse(text: &str) -> Option<Failure> {
        [Failure::Error, Failure::Hang, Failure::Crash]
            .into_iter()
            .find(|failure| failure.as_str() == text)
    }
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// The OS family of both servers.
    pub family: OsFamily,
    /// The instance name.
    pub instance: String,
    /// How the upgrade ends; `None` for success.
    pub failure: Option<Failure>,
    /// How long the simulated upgrade takes.
    pub upgrade_seconds: f64,
    /// The program that runs the simulated service (`<it> simulated-service ...`).
    pub service_program: PathBuf,
    /// Make the API gateway fail its first start (instance_create.sh then reports FAILED).
    pub gateway_fails_once: bool,
}

/// A laid-out simulation. Dropping it stops its processes (service, nginx).
#[derive(Debug)]
pub struct Simulation {
    /// The simulation's folder.
    pub dir: PathBuf,
    /// The old server's `/`.
    pub old_root: PathBuf,
    /// The new server's `/`.
    pub new_root: PathBuf,
    /// The stand-ins' folder: put it first on PATH.
    pub bin: PathBuf,
    /// The simulation's own state.
    pub sim: PathBuf,
    /// The family.
    pub family: OsFamily,
    /// The instance name.
    pub instance: String,
    /// The site port (nginx).
    pub port: u16,
    /// The service's own port (behind nginx).
    pub backend_port: u16,
    /// Where the old server's backup goes (a server path, the same on both
    /// servers once [`Simulation::bring_bundle`] has brought it over).
    pub bundle: String,
    /// The platform tarball (server path on the new server).
    pub distribution: String,
    /// The prerequisites tarball (server path on the new server).
    pub prerequisites: String,
}

/// The OS name the distribution uses in its file and folder names.
pub fn dist_os_name(family: OsFamily) -> &'static str {
    match family {
        OsFamily::Deb => "astra",
        OsFamily::Rpm => "redos",
        OsFamily::Alt => "altlinux",
    }
}

/// A free TCP port on the loopback.
///
/// # Errors
/// When no port can be had.
pub fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn find_program(name: &str, not_in: &Path) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .filter(|folder| folder != not_in)
        .map(|folder| folder.join(name))
        .find(|candidate| candidate.is_file())
}

fn write_executable(path: &Path, text: &str) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(path, text)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
}

fn text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

impl Simulation {
    /// Brings the old server's bundle to the new server at the same path, as
    /// an admin does (a disk, `rsync`): `cp -a`, owners and times kept.
    ///
    /// # Errors
    /// When the copy fails.
    pub fn bring_bundle(&self) -> io::Result<()> {
        self.bring(&self.bundle)
    }

    /// Copies the folder `path` (a server path) from the old server to the
    /// same path on the new one, as storage mounted on both would show it.
    ///
    /// # Errors
    /// When the copy fails.
    pub fn bring(&self, path: &str) -> io::Result<()> {
        let relative = path.trim_start_matches('/');
        let to = self.new_root.join(relative);
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent)?;
        }
        let status = Command::new("cp")
            .args(["-a", "--no-target-directory"])
            .arg(self.old_root.join(relative))
            .arg(&to)
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "cp -a of {path} to the new server failed: {status}"
            )))
        }
    }

    /// Lays a simulation out in `dir` (which must be empty or absent).
    ///
    /// # Errors
    /// Any I/O error; a missing `nginx` or `tar`.
    pub fn create(dir: &Path, options: &SimOptions) -> io::Result<Simulation> {
        fs::create_dir_all(dir)?;
        let dir = fs::canonicalize(dir)?;
        let bin = dir.join("bin");
        let real_nginx = find_program("nginx", &bin).ok_or_else(|| {
            io::Error::other(
                "the simulation runs the real nginx: install it (apt-get install nginx-light)",
            )
        })?;
        let sim = dir.join("sim");
        let old_root = dir.join("old-server");
        let new_root = dir.join("new-server");
        let family = options.family;
        let instance = options.instance.as_str();
        let port = free_port()?;
        let mut backend_port = free_port()?;
        while backend_port == port {
            backend_port = free_port()?;
        }
        fs::create_dir_all(sim.join("state"))?;
        fs::write(sim.join("backend-port"), format!("{backend_port}\n"))?;
        fs::write(
            sim.join("site-dir"),
            format!("{}\n", family.nginx_site_dir()),
        )?;
        fs::write(
            sim.join("upgrade-seconds"),
            format!("{}\n", options.upgrade_seconds),
        )?;
        if let Some(failure) = options.failure {
            fs::write(sim.join("failure"), format!("{}\n", failure.as_str()))?;
        }
        if options.gateway_fails_once {
            fs::write(
                sim.join(format!("state/fail-once-apigateway{instance}")),
                "",
            )?;
        }

        // The old server: 4.7 with data, its site on the simulation's port.
        write_server(
            &old_root,
            &ServerSpec {
                family,
                instance: instance.to_owned(),
                platform_version: OLD_VERSION.to_owned(),
                upgrade_logs: UpgradeLogState::NotStarted,
                log_folder_name: "Logs".to_owned(),
                database: DatabaseSpec::default(),
            },
        )?;
        write_file(
            &old_root,
            &format!("{}/comindware{instance}", family.nginx_site_dir()),
            &format!(
                "server {{\n    listen 127.0.0.1:{port};\n    server_name cmw.example.org;\n    client_max_body_size 300m;\n\n    \
                 location / {{\n        proxy_pass http://127.0.0.1:5000;\n        proxy_read_timeout 600s;\n    }}\n}}\n"
            ),
        )?;
        fs::write(
            old_root.join(format!(
                "var/lib/comindware/{instance}/Database/{}",
                service::VERSION_MARKER
            )),
            format!("{OLD_VERSION}\n"),
        )?;

        // Backup storage at the same path on both servers; the bundle is
        // brought over after the backup ([`Simulation::bring_bundle`]). Not a
        // link between the two trees: a server's links stay inside it.
        fs::create_dir_all(new_root.join("mnt/cmw-backup"))?;
        fs::create_dir_all(old_root.join("mnt/cmw-backup"))?;

        // The new server: OS, accounts, nginx; no instance yet.
        write_file(&new_root, "/etc/os-release", os_release(family))?;
        write_accounts(&new_root)?;
        write_nginx_tree(&new_root, family)?;
        for folder in ["/usr/lib/systemd/system", "/opt/distr"] {
            fs::create_dir_all(new_root.join(folder.trim_start_matches('/')))?;
        }
        let root_text = text(&new_root);

        // Stand-ins.
        let prologue = scripts::prologue(&root_text, &text(&sim));
        write_executable(
            &bin.join("systemctl"),
            &format!(
                "{prologue}{}",
                scripts::systemctl(&text(&options.service_program))
            ),
        )?;
        for tool in ["dpkg", "rpm", "apt-get"] {
            write_executable(
                &bin.join(tool),
                &format!("{prologue}{}", scripts::package_tool(tool)),
            )?;
        }
        write_executable(
            &bin.join("nginx"),
            &format!("{prologue}{}", scripts::nginx(&text(&real_nginx))),
        )?;

        // The distribution tarballs, made with the real tar.
        let os = dist_os_name(family);
        let staging = dir.join("staging");
        let platform_dir = staging.join(format!("platform/CMW_{os}_{NEW_VERSION}"));
        fs::create_dir_all(platform_dir.join("scripts"))?;
        fs::write(platform_dir.join("VERSION"), format!("{NEW_VERSION}\n"))?;
        for (name, body) in [
            ("version_install.sh", scripts::VERSION_INSTALL),
            ("version_list.sh", scripts::VERSION_LIST),
            ("instance_create.sh", scripts::INSTANCE_CREATE),
            ("instance_delete.sh", scripts::INSTANCE_DELETE),
            ("instance_upgrade.sh", scripts::INSTANCE_UPGRADE),
        ] {
            write_executable(
                &platform_dir.join("scripts").join(name),
                &format!("{prologue}{body}"),
            )?;
        }
        write_templates(&platform_dir.join("templates"), family, "@VERSION@")?;
        let prerequisites_dir = staging.join(format!("prerequisites/CMW_{os}"));
        let package = match family {
            OsFamily::Deb => "librdkafka1_2.3.0-1_amd64.deb",
            OsFamily::Rpm => "librdkafka-2.3.0-1.el8.x86_64.rpm",
            OsFamily::Alt => "librdkafka-2.3.0-alt1.x86_64.rpm",
        };
        write_file(
            &prerequisites_dir,
            &format!("/repo/kafka/librd/{package}"),
            "simulated package\n",
        )?;
        write_executable(
            &prerequisites_dir.join("scripts/prerequisites_list.sh"),
            &format!("{prologue}{}", scripts::PREREQUISITES_LIST),
        )?;
        let distribution = format!("/opt/distr/5.0-release-ru-{NEW_VERSION}.{os}.tar.gz");
        let prerequisites = format!("/opt/distr/5.0-release-ru-5.0.77.prerequisites.{os}.tar.gz");
        tar(
            &staging.join("platform"),
            &new_root.join(distribution.trim_start_matches('/')),
        )?;
        tar(
            &staging.join("prerequisites"),
            &new_root.join(prerequisites.trim_start_matches('/')),
        )?;
        fs::remove_dir_all(&staging)?;

        Ok(Simulation {
            dir,
            old_root,
            new_root,
            bin,
            sim,
            family,
            instance: instance.to_owned(),
            port,
            backend_port,
            bundle: format!("/mnt/cmw-backup/{instance}-{OLD_VERSION}"),
            distribution,
            prerequisites,
        })
    }

    /// `PATH` with the stand-ins first.
    pub fn path_env(&self) -> std::ffi::OsString {
        let mut path = self.bin.as_os_str().to_owned();
        if let Some(rest) = std::env::var_os("PATH") {
            path.push(":");
            path.push(rest);
        }
        path
    }

    /// Stops the simulated service and nginx (the files stay).
    pub fn stop(&self) {
        let units = [format!("comindware{}", self.instance), "nginx".to_owned()];
        let _ = Command::new(self.bin.join("systemctl"))
            .arg("stop")
            .args(&units)
            .env("PATH", self.path_env())
            .output();
    }
}

impl Drop for Simulation {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The new server's nginx configuration, as its package lays it out, with
/// server paths: nginx.conf (defining `$connection_upgrade`, which the new
/// version's site uses), mime.types, conf.d, and on deb sites-enabled with
/// `proxy_params`. The `nginx` stand-in runs this machine's nginx on it under
/// the root ([`scripts::nginx`]); `config migrate` tests sites in it.
fn write_nginx_tree(root: &Path, family: OsFamily) -> io::Result<()> {
    for folder in [
        family.nginx_site_dir(),
        "/etc/nginx/conf.d",
        "/etc/nginx/sites-enabled",
        "/run",
        "/var/log/nginx",
        "/var/lib/nginx",
    ] {
        fs::create_dir_all(root.join(folder.trim_start_matches('/')))?;
    }
    // deb enables sites by links in sites-enabled; the others include the site folder.
    let sites = if family == OsFamily::Deb {
        "include /etc/nginx/conf.d/*.conf;\n    include /etc/nginx/sites-enabled/*;".to_owned()
    } else {
        format!("include {}/*;", family.nginx_site_dir())
    };
    write_file(
        root,
        "/etc/nginx/nginx.conf",
        &format!(
            "# The simulated server's nginx (cmw-upgrade simulator)\nworker_processes 1;\npid /run/nginx.pid;\n\
             error_log /var/log/nginx/error.log;\n\nevents {{\n    worker_connections 64;\n}}\n\n\
             http {{\n    include /etc/nginx/mime.types;\n    default_type application/octet-stream;\n    \
             access_log /var/log/nginx/access.log;\n    client_body_temp_path /var/lib/nginx/body;\n    \
             proxy_temp_path /var/lib/nginx/proxy;\n    fastcgi_temp_path /var/lib/nginx/fastcgi;\n    \
             uwsgi_temp_path /var/lib/nginx/uwsgi;\n    scgi_temp_path /var/lib/nginx/scgi;\n\n    \
             map $http_upgrade $connection_upgrade {{\n        default upgrade;\n        ''      close;\n    }}\n\n    \
             {sites}\n}}\n"
        ),
    )?;
    write_file(
        root,
        "/etc/nginx/mime.types",
        "types {\n    text/html html htm;\n    text/css css;\n    application/javascript js;\n    application/json json;\n}\n",
    )?;
    if family == OsFamily::Deb {
        write_file(
            root,
            "/etc/nginx/proxy_params",
            "proxy_set_header Host $http_host;\nproxy_set_header X-Real-IP $remote_addr;\n\
             proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\nproxy_set_header X-Forwarded-Proto $scheme;\n",
        )?;
    }
    Ok(())
}

/// The new version's templates: what `instance_create.sh` lays out, with
/// `@INSTANCE@`, `@PORT@`, `@BACKEND@`, `@VERSION@` to fill in.
fn write_templates(folder: &Path, family: OsFamily, version: &str) -> io::Result<()> {
    write_new_server(folder, family, "@INSTANCE@", version, false)?;
    for own in ["etc/os-release", "etc/passwd", "etc/group"] {
        fs::remove_file(folder.join(own))?;
    }
    fs::remove_dir_all(folder.join("var/lib"))?;
    write_file(
        folder,
        &format!("{}/comindware@INSTANCE@", family.nginx_site_dir()),
        &format!(
            "# Comindware Platform {version}\nserver {{\n    listen 127.0.0.1:@PORT@;\n    server_name localhost;\n    client_max_body_size 100m;\n\n    \
             location / {{\n        proxy_pass http://127.0.0.1:@BACKEND@;\n        proxy_set_header Host $host;\n        \
             proxy_http_version 1.1;\n        proxy_set_header Upgrade $http_upgrade;\n        \
             proxy_set_header Connection $connection_upgrade;\n    }}\n}}\n"
        ),
    )?;
    let owner = family.web_owner();
    for unit in ["apigateway", "adapterhost"] {
        write_file(
            folder,
            &format!("/usr/lib/systemd/system/{unit}@INSTANCE@.service"),
            &format!("[Unit]\nDescription={unit} (@INSTANCE@)\n\n[Service]\nUser={}\nExecStart=/usr/bin/dotnet /var/www/@INSTANCE@/{unit}.dll\n", owner.user),
        )?;
    }
    Ok(())
}

fn tar(folder: &Path, tarball: &Path) -> io::Result<()> {
    let status = Command::new("tar")
        .arg("-czf")
        .arg(tarball)
        .arg("-C")
        .arg(folder)
        .arg(".")
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "tar -czf {} failed",
            tarball.display()
        )))
    }
}
