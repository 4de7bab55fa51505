//! `cmw-upgrade config migrate`.

use std::io::Write;

use cmw_upgrade_core::config::migrate::{
    apply_migration, check_migration, plan_migration, MigrateOptions,
};
use cmw_upgrade_core::config::ChangeAction;
use cmw_upgrade_core::exec::utc_stamp;
use cmw_upgrade_core::executor::LocalExecutor;

use super::family_of_root;
use crate::args::{GlobalArgs, MigrateArgs};
use crate::error::CliError;
use crate::exit::ExitStatus;
use crate::output::{change_line, print_outcome};

pub fn migrate(global: &GlobalArgs, args: MigrateArgs) -> Result<ExitStatus, CliError> {
    let family = family_of_root(&global.root, args.family)?;
    let stamp = utc_stamp(std::time::SystemTime::now());
    let options = MigrateOptions {
        take: args.take,
        fix: args.fix,
        stamp: stamp.clone(),
        preview_missing: false,
    };
    let from = super::server_arg(global, &args.from, "--from")?;
    let mut plan = plan_migration(&from, &global.root, &args.instance, family, &options)?;
    if args.check {
        check_migration(&mut plan, &LocalExecutor::new("/"));
    }
    let mut out = crate::output::stdout();
    if args.check && !global.json {
        for update in &plan.updates {
            write!(out, "{}", update.masked_diff())?;
        }
    }
    let failed = !plan.report.errors.is_empty();
    if !args.check && !failed {
        plan.report.written = apply_migration(&plan, &LocalExecutor::new("/"), &stamp)?;
    }
    if global.json {
        // The same masked unified diff `--check` prints as text: what is (or,
        // with --check, would be) written; for `--diff` in Ansible and scripts.
        let diff: String = plan.updates.iter().map(|u| u.masked_diff()).collect();
        let mut document = serde_json::to_value(&plan.report).map_err(std::io::Error::from)?;
        if let Some(fields) = document.as_object_mut() {
            fields.insert("diff".to_owned(), diff.into());
        }
        print_outcome(&document, !failed, !plan.report.written.is_empty())?;
    } else {
        let report = &plan.report;
        let changed: Vec<_> = report
            .changes
            .iter()
            .filter(|c| c.action != ChangeAction::Kept)
            .collect();
        writeln!(
            out,
            "{} directives carried, {} already right:",
            changed.len(),
            report.changes.len() - changed.len()
        )?;
        for change in changed {
            let action = serde_json::to_value(change.action)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            writeln!(out, "  {action:<11} {}", change_line(change, ""))?;
        }
        for folder in &report.folders_to_create {
            writeln!(
                out,
                "to create: {} ({}), owned by {}",
                folder.path, folder.directive, folder.owner
            )?;
        }
        for warning in &report.warnings {
            writeln!(out, "warning: {warning}")?;
        }
        crate::output::print_to_do(&mut out, &report.to_do)?;
        for error in &report.errors {
            writeln!(out, "error: {error}")?;
        }
        if failed {
            writeln!(
                out,
                "Nothing was written: fix the errors above and run again."
            )?;
        } else if args.check {
            writeln!(
                out,
                "Nothing was written (--check); {} files would change.",
                report.files.len()
            )?;
        } else if report.written.is_empty() {
            writeln!(
                out,
                "Nothing to write: the new files already hold the old values."
            )?;
        } else {
            for written in &report.written {
                writeln!(
                    out,
                    "wrote {} (original kept as {})",
                    written.file, written.backup
                )?;
            }
            writeln!(out, "Restart the changed services, e.g. systemctl restart apigateway{0} comindware{0}; nginx -s reload", args.instance)?;
        }
    }
    Ok(if failed {
        ExitStatus::BadInput
    } else {
        ExitStatus::Success
    })
}
