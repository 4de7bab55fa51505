//! `cmw-upgrade demo --over-ssh`: the rehearsal driven from a control point,
//! as `upgrade --old … --new …` drives a real upgrade. Each simulated server
//! sits behind its own real sshd on a loopback port (its own host key, the
//! simulator's stand-ins first on the sessions' PATH); this binary is the
//! agent there, rooted at that server's tree; a fresh client key reaches
//! both, checked against a known_hosts file holding both host keys.

use std::path::{Path, PathBuf};

use cmw_upgrade_core::executor::transfer::Route;
use cmw_upgrade_core::executor::LocalExecutor;
use cmw_upgrade_core::procedure::two_servers::{
    prepare_two_servers, rollback_two_servers, run_two_servers, ServerSpec, TwoServerRun,
    TwoServerSettings, BACKUP_OLD, DRIFT_OLD, NEW, OLD, OLD_TO_NEW, TRANSFER_BUNDLE,
};
use cmw_upgrade_core::procedure::{Event, RunLock, UpgradeSettings};
use cmw_upgrade_sim::sshd::{keygen, SimSshd};
use cmw_upgrade_sim::Simulation;
use serde::Serialize;

use super::demo::{print_report, sim_error, simulation, DemoReport, DemoStep};
use super::two_servers::{connect, print_preflight};
use super::upgrade::ProgressPrinter;
use crate::args::{DemoArgs, GlobalArgs};
use crate::error::CliError;
use crate::exit::ExitStatus;

/// One simulated server as the control point reached it.
#[derive(Serialize)]
pub(super) struct DemoServer {
    /// `user@127.0.0.1:port`, as the steps are labelled.
    pub(super) destination: String,
    /// Its sshd's port on 127.0.0.1.
    pub(super) port: u16,
    /// The server's `/` (the agent's `--root`).
    pub(super) root: PathBuf,
    /// How it was reached.
    pub(super) via: &'static str,
}

/// Both servers, and where the control point keeps the run state.
#[derive(Serialize)]
pub(super) struct DemoServers {
    pub(super) old: DemoServer,
    pub(super) new: DemoServer,
    /// The control point's `/` (its run state is under var/lib/cmw-upgrade).
    pub(super) control_point: PathBuf,
}

/// The bundle folder on both simulated servers (backup storage).
const BUNDLE_DIR: &str = "/mnt/cmw-backup";

fn io_error<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> CliError + 'a {
    move |error| cmw_upgrade_core::Error::io(what, path, error).into()
}

/// An sshd in front of one simulated server: the stand-ins first on PATH.
fn start_sshd(label: &str, dir: &Path, sim: &Simulation) -> Result<SimSshd, CliError> {
    let path = format!(
        "SetEnv \"PATH={}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"",
        sim.bin.display()
    );
    SimSshd::start(dir, &path)
        .map_err(|error| sshd_error(&format!("the simulated {label} server"), &error))
}

/// sshd missing or not starting: what to do about it.
fn sshd_error(servers: &str, error: &std::io::Error) -> CliError {
    cmw_upgrade_core::Error::CheckFailed {
        what: format!("starting an sshd for {servers}"),
        details: format!("{error}; or run the demo without --over-ssh (it needs no ssh)"),
    }
    .into()
}

/// How the control point reaches one server: its sshd, the shared client
/// key and known_hosts, this binary as the agent, rooted at `root`.
fn spec_of(
    sshd: &SimSshd,
    root: &Path,
    identity: &Path,
    known_hosts: &Path,
) -> Result<ServerSpec, CliError> {
    let mut spec = ServerSpec::parse(&format!("{}:{}", sshd.destination(), sshd.port))?;
    spec.identity_file = Some(identity.to_path_buf());
    spec.known_hosts_file = Some(known_hosts.to_path_buf());
    spec.program = std::env::current_exe()?.to_string_lossy().into_owned();
    spec.root = Some(root.to_string_lossy().into_owned());
    Ok(spec)
}

/// The label of a step's server with how it was reached: `old root@127.0.0.1:40123`.
struct Labels {
    old: String,
    new: String,
}

impl Labels {
    /// Where a step with this server label ran.
    fn destination(&self, server: &str) -> String {
        match server {
            OLD => self.old.clone(),
            OLD_TO_NEW => format!("{} -> {}", self.old, self.new),
            _ => self.new.clone(),
        }
    }

    /// The event with its server labelled with how it was reached.
    fn event(&self, event: &Event) -> Event {
        match event {
            Event::StepStarted {
                index,
                total,
                name,
                title,
                server: Some(server),
            } => Event::StepStarted {
                index: *index,
                total: *total,
                name: name.clone(),
                title: title.clone(),
                server: Some(format!("{server} {}", self.destination(server))),
            },
            other => other.clone(),
        }
    }

    fn step(&self, record: &cmw_upgrade_core::procedure::state::StepRecord) -> DemoStep {
        let mut step = DemoStep::from(record);
        // A step not run yet has no server recorded: the one it would run on.
        let server = step.server.get_or_insert_with(|| {
            match record.name.as_str() {
                BACKUP_OLD | DRIFT_OLD => OLD,
                TRANSFER_BUNDLE => OLD_TO_NEW,
                _ => NEW,
            }
            .to_owned()
        });
        step.destination = Some(self.destination(server));
        step
    }
}

pub(super) fn demo_in(
    global: &GlobalArgs,
    args: &DemoArgs,
    folder: &Path,
) -> Result<ExitStatus, CliError> {
    let upgrade_seconds = args.upgrade_time.as_secs_f64();
    // Before anything is laid out: without sshd there is nothing to rehearse.
    cmw_upgrade_sim::sshd::sshd_program()
        .map_err(|error| sshd_error("the simulated servers", &error))?;
    let sim = simulation(args, folder)?;

    // The two sshd, a client key both let in, and a known_hosts file with
    // both host keys: the control point checks each server for real.
    let ssh_dir = sim.dir.join("ssh");
    let old_sshd = start_sshd("old", &ssh_dir.join("old-server"), &sim)?;
    let new_sshd = start_sshd("new", &ssh_dir.join("new-server"), &sim)?;
    let identity = ssh_dir.join("control-point-key");
    keygen(&identity, "cmw-upgrade-demo control point").map_err(|error| {
        cmw_upgrade_core::Error::CheckFailed {
            what: "making the control point's ssh key".to_owned(),
            details: error.to_string(),
        }
    })?;
    let public = identity.with_extension("pub");
    let known_hosts = ssh_dir.join("known_hosts");
    let mut known = String::new();
    for sshd in [&old_sshd, &new_sshd] {
        sshd.authorize(&public)
            .map_err(io_error("authorize the demo's key in", sshd.dir()))?;
        known.push_str(
            &std::fs::read_to_string(sshd.known_hosts_file())
                .map_err(io_error("read", &sshd.known_hosts_file()))?,
        );
    }
    std::fs::write(&known_hosts, known).map_err(io_error("write", &known_hosts))?;
    let old_spec = spec_of(&old_sshd, &sim.old_root, &identity, &known_hosts)?;
    let new_spec = spec_of(&new_sshd, &sim.new_root, &identity, &known_hosts)?;
    let labels = Labels {
        old: old_spec.display(),
        new: new_spec.display(),
    };
    let control_point = sim.dir.join("control-point");
    std::fs::create_dir_all(&control_point).map_err(sim_error(folder))?;
    if global.text_progress() {
        eprintln!(
            "Simulated servers ({}) in {}: old {} with data, behind sshd at {}; new, empty, \
             behind sshd at {}; site port {}. This machine is the control point.",
            args.family.as_str(),
            sim.dir.display(),
            cmw_upgrade_sim::OLD_VERSION,
            labels.old,
            labels.new,
            sim.port
        );
    }

    let two = TwoServerSettings {
        old: old_spec,
        new: new_spec,
        bundle_dir: BUNDLE_DIR.to_owned(),
        // Chosen as for a real server: a copy of the stopped simulated instance.
        backup_method: None,
        accept_crash_consistent: false,
        route: Route::Auto,
        // The old server's own ssh to the new one (the direct route) uses
        // the demo's key and host keys too.
        direct_ssh_options: vec![
            format!("IdentityFile={}", identity.display()),
            format!("UserKnownHostsFile={}", known_hosts.display()),
            "IdentitiesOnly=yes".to_owned(),
        ],
    };
    let settings = UpgradeSettings {
        instance: args.instance.clone(),
        // The new server's preflight detects it.
        family: args.family,
        bundle: String::new(),
        distribution: sim.distribution.clone(),
        prerequisites: sim.prerequisites.clone(),
        port: sim.port,
        upgrade_timeout_seconds: (upgrade_seconds * 2.0 + 3.0).ceil() as u64,
        health_timeout_seconds: 30,
        fix_config: false,
    };
    let old = connect("old", &two.old)?;
    let new = connect("new", &two.new)?;
    let store = LocalExecutor::new(&control_point);
    let servers = TwoServerRun {
        old: &old,
        new: &new,
        store: &store,
    };
    let prepared = prepare_two_servers(&servers, &two, &settings)?;
    if let (Some(preflight), true) = (&prepared.preflight, global.text_progress()) {
        print_preflight(&mut crate::output::stderr(), preflight)?;
    }
    let _here = RunLock::acquire(&store, &settings.instance)?;
    let _there = RunLock::acquire(new.executor(), &settings.instance)?;
    let mut printer = ProgressPrinter::for_global(global);
    let report = run_two_servers(
        &servers,
        prepared,
        &two,
        &settings,
        &mut |event| {
            share_hook(event, &sim, &control_point, &settings);
            printer.show(&labels.event(event));
        },
        &cmw_upgrade_core::Cancel::new(),
    )?;
    let mut steps: Vec<DemoStep> = report
        .run
        .steps
        .iter()
        .map(|step| labels.step(step))
        .collect();
    let (outcome, next, exit) = if report.run.outcome == "upgraded" {
        ("upgraded", report.run.next.clone(), ExitStatus::Success)
    } else {
        // Undone from the control point, as `cmw-upgrade rollback` does after
        // a run from one: the new server's part (the old one was only read).
        let rollback = rollback_two_servers(&store, &new, &settings.instance, &mut |event| {
            printer.show(&labels.event(event))
        })?;
        steps.push(labels.step(&rollback.rollback));
        ("rolled_back", rollback.next, ExitStatus::Failed)
    };
    sim.stop();
    let report = DemoReport {
        outcome,
        family: args.family,
        instance: args.instance.to_string(),
        folder: args.keep.clone(),
        servers: Some(DemoServers {
            old: DemoServer {
                destination: labels.old.clone(),
                port: old_sshd.port,
                root: sim.old_root.clone(),
                via: "ssh",
            },
            new: DemoServer {
                destination: labels.new.clone(),
                port: new_sshd.port,
                root: sim.new_root.clone(),
                via: "ssh",
            },
            control_point,
        }),
        steps,
        next,
        to_do: report.run.to_do.clone(),
        cutover: None,
    };
    print_report(global, &report)?;
    Ok(exit)
}

/// Tests only (`CMW_UPGRADE_DEMO_SHARED_STORAGE=1`): the bundle folder acts
/// as storage mounted on both servers, so the new server finds the bundle in
/// place when the transfer starts.
#[cfg(feature = "test-hooks")]
fn share_hook(event: &Event, sim: &Simulation, control_point: &Path, settings: &UpgradeSettings) {
    if std::env::var_os("CMW_UPGRADE_DEMO_SHARED_STORAGE").is_none() {
        return;
    }
    let Event::StepStarted { name, .. } = event else {
        return;
    };
    if name != cmw_upgrade_core::procedure::two_servers::TRANSFER_BUNDLE {
        return;
    }
    let store = LocalExecutor::new(control_point);
    if let Ok(Some(state)) =
        cmw_upgrade_core::procedure::state::RunState::load(&store, &settings.instance)
    {
        if let Some(bundle) = state.settings.map(|settings| settings.bundle) {
            let _ = sim.bring(&bundle);
        }
    }
}

#[cfg(not(feature = "test-hooks"))]
fn share_hook(_: &Event, _: &Simulation, _: &Path, _: &UpgradeSettings) {}
