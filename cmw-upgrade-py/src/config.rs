//! Config migration: the old instance's values carried into the new files.

use std::path::PathBuf;

use cmw_upgrade_core as core;
use pyo3::prelude::*;

use crate::convert::to_python;
use crate::detect::{family_of_root, parse_instance};
use crate::long_call::{run_long_call, Feed};

/// Carries the old instance's config values into the new instance's files.
///
/// `from_dir` holds the old server's files at their absolute paths; the new files
/// are under `root`. With `check=True` (the default) nothing is written. Returns
/// the report as a dict, the same as `cmw-upgrade config migrate --json`:
/// changes, warnings, errors, folders_to_create, files, written, check. When the
/// report has errors, nothing is written.
#[pyfunction]
#[pyo3(signature = (from_dir, instance, root = "/".into(), *, check = true, fix = false, take = None, family = None), text_signature = "(from_dir, instance, root = '/', *, check = True, fix = False, take = None, family = None)")]
#[allow(clippy::too_many_arguments)]
pub(crate) fn migrate_config<'py>(
    py: Python<'py>,
    from_dir: PathBuf,
    instance: &str,
    root: PathBuf,
    check: bool,
    fix: bool,
    take: Option<Vec<String>>,
    family: Option<&str>,
) -> PyResult<Bound<'py, PyAny>> {
    use core::config::migrate::{apply_migration, check_migration, plan_migration, MigrateOptions};
    let instance = parse_instance(instance)?;
    let family = family_of_root(&root, family)?;
    let stamp = core::exec::utc_stamp(std::time::SystemTime::now());
    let options = MigrateOptions {
        take: take.unwrap_or_default(),
        fix,
        stamp: stamp.clone(),
        preview_missing: false,
    };
    let from_dir = crate::convert::under_root_arg(&root, &from_dir, "from_dir")?;
    // Ctrl-C while the files are read and checked (`nginx -t`) stops before
    // anything is written. Once the writing has begun (a few atomic renames)
    // it finishes, and the call raises KeyboardInterrupt after it; a rerun
    // then finds nothing to write.
    let report = run_long_call(py, None, Feed::Counters, |worker| {
        let mut plan = plan_migration(&from_dir, &root, &instance, family, &options)?;
        let runner = core::executor::LocalExecutor::new("/");
        if check {
            check_migration(&mut plan, &runner);
        } else if plan.report.errors.is_empty() {
            if worker.cancel.is_cancelled() {
                return Err(core::Error::Cancelled {
                    left: "the config migration stopped before writing; no file was changed"
                        .to_owned(),
                });
            }
            plan.report.written = apply_migration(&plan, &runner, &stamp)?;
        }
        Ok(plan.report)
    })?;
    to_python(py, &report)
}
