//! Platform logs: records, error scans, last records and the upgrade verdict.
//!
//! ```no_run
//! use std::path::Path;
//! use cmw_upgrade_core::logs::{upgrade_verdict, Verdict};
//! let verdict = upgrade_verdict(Path::new("/var/log/comindware/prod/Logs"))?;
//! if verdict.verdict == Verdict::Failed {
//!     for error in &verdict.errors {
//!         eprintln!("{}:{}: {} {}", error.file, error.line, error.level, error.message);
//!     }
//! }
//! # Ok::<(), cmw_upgrade_core::Error>(())
//! ```

// Log scans read large files in place, incrementally, on the server they run on (or its agent): streaming them through the executor would copy gigabytes.
#![allow(clippy::disallowed_methods)]

pub mod record;
pub mod scan;
mod source;
pub mod tail;
pub mod verdict;

pub use record::{contains_error_word, parse_record_start, ErrorReason, RecordStart, Since};
pub use scan::{scan_log_file, scan_log_file_since, ErrorRecord, LastRecord, LogScanner};
pub use tail::last_record;
pub use verdict::{
    upgrade_verdict, upgrade_verdict_since, LogFileStatus, LogWatcher, UpgradeVerdict, Verdict,
    ONTOLOGY_COMPLETED, ONTOLOGY_LOG_NAME, UPGRADE_COMPLETED,
};
