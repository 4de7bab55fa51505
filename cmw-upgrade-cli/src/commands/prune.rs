//! `cmw-upgrade prune-caches`.

use std::io::Write;

use cmw_upgrade_core::prune::{apply_prune, plan_prune};

use crate::args::{GlobalArgs, PruneArgs};
use crate::error::CliError;
use crate::exit::ExitStatus;
use crate::output::{human_bytes, print_outcome};

pub fn run(global: &GlobalArgs, args: PruneArgs) -> Result<ExitStatus, CliError> {
    let target = super::server_arg(global, &args.target, "the database folder")?;
    let plan = plan_prune(&target)?;
    let report = if args.check {
        plan.as_check_report()
    } else {
        apply_prune(&plan)?
    };
    if global.json {
        print_outcome(&report, true, !report.check && !report.removed.is_empty())?;
        return Ok(ExitStatus::Success);
    }
    let mut out = crate::output::stdout();
    writeln!(out, "Ignite node folders under {}:", target.display())?;
    for folder in &report.node_folders {
        writeln!(out, "  {folder}")?;
    }
    let verb = if report.check {
        "Would remove"
    } else {
        "Removed"
    };
    let freed = if report.check {
        "would be freed"
    } else {
        "freed"
    };
    writeln!(
        out,
        "{verb} {} entries, {} {freed}:",
        report.removed.len(),
        human_bytes(report.bytes_freed)
    )?;
    for path in &report.removed {
        writeln!(out, "  {path}")?;
    }
    if report.check && !report.removed.is_empty() {
        writeln!(
            out,
            "Nothing was changed (--check). Run again without --check to remove them."
        )?;
    }
    Ok(ExitStatus::Success)
}
