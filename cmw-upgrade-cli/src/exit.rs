//! What the exit code means, in one place.

use std::process::ExitCode;

/// The outcomes a caller can tell apart by exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: the command did what was asked; for a verdict, the upgrade succeeded.
    Success,
    /// 1: the answer is bad news: the upgrade failed (do not continue), a bundle is
    /// damaged, or the live database drifted from its bundle.
    Failed,
    /// 2: bad input or an error the admin must fix (message on stderr).
    BadInput,
    /// 3: not finished: the upgrade is in progress or has not started.
    NotFinished,
    /// 4: busy: another run holds the instance's lock; retry when it is done.
    Locked,
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> ExitCode {
        ExitCode::from(match status {
            ExitStatus::Success => 0,
            ExitStatus::Failed => 1,
            ExitStatus::BadInput => 2,
            ExitStatus::NotFinished => 3,
            ExitStatus::Locked => 4,
        })
    }
}
