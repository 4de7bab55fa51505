//! The domain model of a zero-downtime Comindware Platform upgrade.
//!
//! Everything here is a function over data, so the same logic serves the CLI,
//! the Python module, a dry run and the tests:
//!
//! - [`os`]: the OS family from `/etc/os-release`, and what differs by family
//!   (nginx site path, local package tool, web user);
//! - [`instance`]: instance names that are safe in paths and argvs;
//! - [`layout`]: every path of an instance, read from its config where set;
//! - [`prune`]: the old-format Ignite caches to remove after the upgrade;
//! - [`logs`]: log records, error scans, and the upgrade verdict;
//! - [`backup`]: backup bundles with a BLAKE3 manifest: make, verify, drift, restore, import;
//! - [`script_output`]: what the distribution's scripts print;
//! - [`health`]: the smoke check (`/api/health` and the heartbeat logs);
//! - [`executor`]: every effect on a server, locally, through an agent over
//!   ssh, as a dry run or recorded; its [`executor::protocol`] is the typed
//!   language between the tool and a server;
//! - [`procedure`]: the whole upgrade as one resumable procedure whose every
//!   effect goes through an executor, with its run state;
//! - [`cutover`]: traffic switched from the old server to the new one (and
//!   back) through the upstream proxy, every change through an executor;
//! - [`cancel`]: a request to stop long work at its next safe point.
//!
//! ```
//! use std::path::Path;
//! use cmw_upgrade_core::{detect_os_family, InstanceLayout, InstanceName, LayoutSources};
//!
//! let os = detect_os_family("ID=astra\nID_LIKE=debian\n")?;
//! let instance = InstanceName::new("prod")?;
//! let sources = LayoutSources {
//!     instance_config: Some("db.workDir: /data/prod/Database\n".into()),
//!     ..LayoutSources::default()
//! };
//! let layout = InstanceLayout::resolve(Path::new("/"), &instance, os.family, &sources)?;
//! assert_eq!(layout.database.path, Path::new("/data/prod/Database"));
//! assert_eq!(layout.data_owner.to_string(), "www-data:www-data");
//! # Ok::<(), cmw_upgrade_core::Error>(())
//! ```

// Tests build server trees on disk; the ban on raw file access (clippy.toml)
// is for the code they test.
#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod accounts;
pub mod atomic;
pub mod backup;
pub mod cancel;
pub mod config;
pub mod cutover;
pub mod directives;
pub mod disk;
pub mod error;
pub mod exec;
pub mod executor;
mod fd_walk;
pub mod health;
pub mod instance;
pub mod layout;
pub mod logs;
pub mod os;
pub mod parallel;
pub mod paths;
pub mod procedure;
pub mod prune;
pub mod script_output;
pub mod secrets;
pub mod server;
pub mod systemd;
pub mod units;

pub use cancel::Cancel;
pub use error::{Error, ErrorKind, Result};
pub use instance::InstanceName;
pub use layout::{InstanceLayout, LayoutPath, LayoutSources};
pub use logs::{upgrade_verdict, LogWatcher, UpgradeVerdict, Verdict};
pub use os::{detect_os_family, OsFamily, OsInfo, Owner};
pub use prune::{apply_prune, plan_prune, prune_caches, PrunePlan, PruneReport};
pub use script_output::{parse_instance_create_output, InstanceCreateReport};

/// The tool's version, recorded in reports and manifests.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
