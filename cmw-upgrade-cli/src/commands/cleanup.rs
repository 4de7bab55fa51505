//! `cmw-upgrade cleanup`: what a finished run kept, and taking it away.

use std::io::Write;

use cmw_upgrade_core::executor::{Executor, LocalExecutor};
use cmw_upgrade_core::procedure::cleanup::{kept_by_run, remove_kept, KeptItem};
use cmw_upgrade_core::procedure::state::RunState;
use cmw_upgrade_core::procedure::two_servers::Server;
use cmw_upgrade_core::procedure::RunLock;

use crate::args::{CleanupArgs, GlobalArgs};
use crate::error::CliError;
use crate::exit::ExitStatus;
use crate::output::{human_bytes, print_outcome};

fn size(item: &KeptItem) -> String {
    item.bytes.map_or_else(|| "?".to_owned(), human_bytes)
}

pub fn run(global: &GlobalArgs, args: CleanupArgs) -> Result<ExitStatus, CliError> {
    let store = super::state_store(global);
    let local = LocalExecutor::new(&global.root);
    let Some(state) = RunState::load(store.as_ref(), &args.instance)? else {
        return Err(cmw_upgrade_core::Error::StateConflict {
            details: format!(
                "no run of {} is recorded here ({}); nothing it kept to remove",
                args.instance,
                cmw_upgrade_core::procedure::state_file(&args.instance)
            ),
        }
        .into());
    };
    // A run from a control point kept its files on the new server.
    let remote = match &state.servers {
        Some(servers) => Some(Server::connect(&servers.settings.new)?),
        None => None,
    };
    let exec: &dyn Executor = match &remote {
        Some(server) => server.executor(),
        None => {
            super::refuse_state_folder(global)?;
            &local
        }
    };
    let _lock = RunLock::acquire(store.as_ref(), &args.instance)?;
    let kept = kept_by_run(exec, &state)?;
    let (chosen, left): (Vec<KeptItem>, Vec<KeptItem>) = kept
        .into_iter()
        .partition(|item| args.include_bundle || !item.is_bundle);
    let total: u64 = chosen.iter().filter_map(|item| item.bytes).sum();
    if !global.json {
        let mut out = crate::output::stdout();
        if chosen.is_empty() {
            writeln!(out, "Nothing the run kept is left to remove.")?;
        }
        for item in &chosen {
            writeln!(out, "{:>10}  {}  ({})", size(item), item.path, item.what)?;
        }
        for item in &left {
            writeln!(
                out,
                "{:>10}  {}  ({}; kept: --include-bundle removes it)",
                size(item),
                item.path,
                item.what
            )?;
        }
    }
    if args.list || chosen.is_empty() {
        if global.json {
            print_outcome(
                &serde_json::json!({ "removable": chosen, "kept": left }),
                true,
                false,
            )?;
        }
        return Ok(ExitStatus::Success);
    }
    super::confirm(
        args.yes,
        &format!("Remove these {} ({})?", chosen.len(), human_bytes(total)),
        &format!(
            "cleanup removes {} folders ({})",
            chosen.len(),
            human_bytes(total)
        ),
    )
    .map_err(|details| cmw_upgrade_core::Error::CheckFailed {
        what: format!(
            "removing what the run of {} kept (nothing was removed)",
            args.instance
        ),
        details,
    })?;
    let freed = remove_kept(exec, &chosen)?;
    if global.json {
        print_outcome(
            &serde_json::json!({ "removed": chosen, "kept": left, "freed_bytes": freed }),
            true,
            true,
        )?;
    } else {
        writeln!(
            crate::output::stdout(),
            "Removed; {} freed.",
            human_bytes(freed)
        )?;
    }
    Ok(ExitStatus::Success)
}
