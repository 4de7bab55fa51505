//! What a finished run leaves on the new server, and taking it away.
//!
//! A successful run keeps the database several times over: the old server's
//! bundle, the clean database `instance_create.sh` made (moved aside), the
//! upgraded backup, the upgraded database before pruning (moved aside), and
//! the unpacked distribution. Each was kept so a step could be undone or
//! resumed; once every step is done, they only take space. The old server's
//! bundle is the last copy of the data as it was: it goes only when asked.

use serde::Serialize;

use super::state::{RunState, StepStatus};
use super::steps::dist_dir;
use crate::error::{Error, Result};
use crate::executor::preflight::size_of;
use crate::executor::Executor;
use crate::instance::InstanceName;

/// One thing a run kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeptItem {
    /// What it is, in words.
    pub what: &'static str,
    /// Where (a server path).
    pub path: String,
    /// Its size, when `du` could tell.
    pub bytes: Option<u64>,
    /// The old server's bundle: removed only when asked for by name.
    pub is_bundle: bool,
}

/// The run's artifacts that are files or folders, with what each is.
const KEPT: [(&str, &str); 4] = [
    (
        "clean_database_aside",
        "the clean database instance_create.sh made (moved aside)",
    ),
    (
        "earlier_logs_aside",
        "the clean instance's logs (moved aside before the upgrade)",
    ),
    (
        "upgraded_bundle",
        "the backup of the upgraded database (before pruning)",
    ),
    (
        "upgraded_database_aside",
        "the upgraded database before pruning (moved aside)",
    ),
];

/// What the finished run of `state` keeps on the server `exec` reaches,
/// that is still there, with sizes; the bundle last.
///
/// # Errors
/// [`Error::StateConflict`] when the run is not finished (what it kept is
/// what a resume or a rollback needs); what reading the server reports.
pub fn kept_by_run(exec: &dyn Executor, state: &RunState) -> Result<Vec<KeptItem>> {
    let instance = InstanceName::new(&state.instance)?;
    if state
        .steps
        .iter()
        .any(|step| step.status != StepStatus::Done)
    {
        return Err(Error::StateConflict {
            details: format!(
                "the run of {instance} is not finished: what it kept is what a resume or a \
                 rollback needs; finish it (or roll it back) first"
            ),
        });
    }
    let mut candidates: Vec<(&'static str, String, bool)> = KEPT
        .iter()
        .filter_map(|(key, what)| {
            state
                .artifact(key)
                .map(|path| (*what, path.to_owned(), false))
        })
        .collect();
    candidates.push((
        "the unpacked distribution and prerequisites",
        dist_dir(&instance),
        false,
    ));
    if let Some(settings) = &state.settings {
        candidates.push((
            "the old server's bundle (the data as it was before the upgrade)",
            settings.bundle.clone(),
            true,
        ));
    }
    let mut kept = Vec::new();
    for (what, path, is_bundle) in candidates {
        if exec.exists(&path)? {
            kept.push(KeptItem {
                what,
                bytes: size_of(exec, &path),
                path,
                is_bundle,
            });
        }
    }
    Ok(kept)
}

/// Removes `items` through `exec` (links removed, never followed); returns
/// the bytes freed, as far as they were known.
///
/// # Errors
/// What removing reports; the items before the failing one are gone.
pub fn remove_kept(exec: &dyn Executor, items: &[KeptItem]) -> Result<u64> {
    let mut freed = 0;
    for item in items {
        exec.remove(&item.path)?;
        freed += item.bytes.unwrap_or(0);
    }
    Ok(freed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::LocalExecutor;

    #[test]
    fn only_a_finished_run_is_cleaned_and_the_bundle_only_on_request() {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalExecutor::new(dir.path());
        let prod = InstanceName::new("prod").unwrap();
        let mut state = RunState::new(&prod, &["one", "two"]);
        state.steps[0].status = StepStatus::Done;
        let error = kept_by_run(&local, &state).unwrap_err();
        assert_eq!(error.kind(), crate::ErrorKind::StateConflict);
        state.steps[1].status = StepStatus::Done;
        state.steps[1].artifacts.insert(
            "upgraded_bundle".into(),
            "/var/lib/cmw-upgrade/prod/upgraded-1".into(),
        );
        state.steps[1]
            .artifacts
            .insert("clean_database_aside".into(), "/gone".into());
        state.settings = Some(crate::procedure::UpgradeSettings {
            instance: prod.clone(),
            family: crate::OsFamily::Deb,
            bundle: "/mnt/backup/prod".into(),
            distribution: "/d.tar.gz".into(),
            prerequisites: "/p.tar.gz".into(),
            port: 80,
            upgrade_timeout_seconds: 1,
            health_timeout_seconds: 1,
            fix_config: false,
        });
        for folder in [
            "var/lib/cmw-upgrade/prod/upgraded-1/database",
            "var/lib/cmw-upgrade/prod/dist",
            "mnt/backup/prod/database",
        ] {
            std::fs::create_dir_all(dir.path().join(folder)).unwrap();
        }
        std::fs::write(
            dir.path()
                .join("var/lib/cmw-upgrade/prod/upgraded-1/database/part"),
            vec![7_u8; 8192],
        )
        .unwrap();
        let kept = kept_by_run(&local, &state).unwrap();
        let paths: Vec<&str> = kept.iter().map(|item| item.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/var/lib/cmw-upgrade/prod/upgraded-1",
                "/var/lib/cmw-upgrade/prod/dist",
                "/mnt/backup/prod"
            ],
            "what is gone is not listed; the bundle comes last"
        );
        assert!(kept[0].bytes.unwrap() >= 8192);
        assert!(kept[2].is_bundle && !kept[0].is_bundle);
        let not_bundle: Vec<KeptItem> = kept.into_iter().filter(|item| !item.is_bundle).collect();
        remove_kept(&local, &not_bundle).unwrap();
        assert!(!dir
            .path()
            .join("var/lib/cmw-upgrade/prod/upgraded-1")
            .exists());
        assert!(dir.path().join("mnt/backup/prod/database").exists());
    }
}
