//! The CLI's one error type: core errors plus what only the CLI can get wrong.

use std::io;
use std::path::PathBuf;

/// Everything a command can fail with; all map to exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// An error from the core; its message already says what to do.
    #[error(transparent)]
    Core(#[from] cmw_upgrade_core::Error),

    /// A file named on the command line cannot be read.
    #[error("cannot read {path}: {source}", path = .path.display())]
    ReadArgument {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },

    /// A file the command writes (a man page) cannot be written.
    #[error("cannot write {path}: {source}", path = .path.display())]
    WriteFile {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },

    /// Writing the output failed (a closed pipe, a full disk).
    #[error("cannot write the output: {0}")]
    Output(#[from] io::Error),
}

impl CliError {
    /// A stable snake_case name for JSON error output.
    pub fn kind(&self) -> &'static str {
        match self {
            CliError::Core(error) => error.kind().as_str(),
            CliError::ReadArgument { .. } => "read_argument",
            CliError::WriteFile { .. } => "write_file",
            CliError::Output(_) => "output",
        }
    }
}
