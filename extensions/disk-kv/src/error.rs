//! Why a store did not open.

use std::path::PathBuf;

/// Why a store did not open. Nothing is deleted or rewritten on the way: a file that is not a
/// store is left as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiskKvError {
    /// The file is not a store this extension can read (another kind of file, a store of a
    /// newer format, damage), or its folder cannot be resolved.
    #[error(
        "`{path}` is not a store `disk_kv` can open ({message}); it is left as it is: name \
         another file, or move this one away"
    )]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What the storage library said.
        message: String,
    },
    /// Another process has the file open.
    #[error(
        "`{path}` is open in another process (a store serves one process); stop that one, or \
         name another file"
    )]
    Locked {
        /// The file.
        path: PathBuf,
    },
}

impl otap_df_core::extension::ClassifiedError for DiskKvError {
    fn kind(&self) -> otap_df_core::extension::ErrorKind {
        match self {
            DiskKvError::Unreadable { .. } => otap_df_core::extension::ErrorKind::Misconfigured,
            DiskKvError::Locked { .. } => otap_df_core::extension::ErrorKind::Unavailable,
        }
    }
}
