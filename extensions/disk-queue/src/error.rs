//! What opening a queue folder can fail with.

use std::path::PathBuf;

/// The queues' folder, or a file in it, cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DiskQueueError {
    /// A file or folder could not be read, created or locked.
    #[error("`{path}`: {message}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// Something in the folder is not a queue's: left as it is.
    #[error(
        "`{path}` is not a file of a `disk_queue` ({why}); it is left as it is: name another `directory`, or move it away"
    )]
    Foreign {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// A closed segment is damaged before its end: left as it is.
    #[error(
        "`{path}` is damaged at byte {offset} ({why}); it is left as it is: move it away to start without the entries from there on"
    )]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Where the damage starts.
        offset: u64,
        /// What is wrong there.
        why: String,
    },
    /// Another process holds the folder.
    #[error("`{path}` is in use by another process (a queue folder serves one process)")]
    Locked {
        /// The folder's lock file.
        path: PathBuf,
    },
}

impl otap_df_core::extension::ClassifiedError for DiskQueueError {
    fn kind(&self) -> otap_df_core::extension::ErrorKind {
        match self {
            DiskQueueError::Foreign { .. } | DiskQueueError::Corrupt { .. } => {
                otap_df_core::extension::ErrorKind::Misconfigured
            }
            DiskQueueError::Io { .. } | DiskQueueError::Locked { .. } => {
                otap_df_core::extension::ErrorKind::Unavailable
            }
        }
    }
}
