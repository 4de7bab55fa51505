//! SHIM until the transfer-core branch lands (never committed).
#![allow(missing_docs, dead_code)]
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::SshExecutor;
use crate::cancel::Cancel;
use crate::error::{Error, Result};

pub enum BundleEnd<'a> {
    Local { root: PathBuf, dir: String },
    Remote { ssh: &'a SshExecutor, dir: String },
}
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    Auto,
    Direct,
    ThroughHere,
}
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectSsh {
    pub destination: String,
    pub port: u16,
    pub options: Vec<String>,
}
pub struct TransferRequest<'a> {
    pub from: BundleEnd<'a>,
    pub to: BundleEnd<'a>,
    pub route: Route,
    pub direct: Option<DirectSsh>,
}
#[derive(Debug, Clone, Serialize)]
pub struct TransferReport {
    pub from: String,
    pub to: String,
    pub route_taken: String,
    pub route_reason: String,
    pub files: u64,
    pub bytes: u64,
    pub sent_files: u64,
    pub sent_bytes: u64,
    pub skipped_files: u64,
    pub seconds: f64,
    pub manifest_blake3: String,
}
#[derive(Debug, Clone, Serialize)]
pub struct TransferProgress {
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub files_done: u64,
    pub files_total: u64,
    pub seconds: f64,
}
pub fn transfer_bundle(
    _request: &TransferRequest<'_>,
    _progress: &mut dyn FnMut(&TransferProgress),
    _cancel: &Cancel,
) -> Result<TransferReport> {
    Err(Error::Internal {
        details: "shim".into(),
    })
}
