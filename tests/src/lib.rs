//! Test helpers for cmw-upgrade: a throwaway OpenSSH server ([`sshd`]), a
//! throwaway HAProxy with two HTTP backends and a bounded load ([`haproxy`]), a
//! throwaway nginx in front of one of them ([`nginx`]), a
//! throwaway BIND with a zone and TSIG keys ([`bind`]), and
//! the simulator's fixtures re-exported under their old names, so tests read
//! `cmw_upgrade_tests::write_server` and `cmw_upgrade_tests::sim::Simulation`.
//!
//! Never a dependency of the shipped binary: only of tests and benchmarks.

pub mod bind;
pub mod haproxy;
pub mod haproxy_master;
pub mod nginx;
pub mod sshd;
pub mod tripwire;

pub use cmw_upgrade_sim as sim;
pub use cmw_upgrade_sim::fixtures::*;
