//! What a run tells the world while it works. The runner emits [`Event`]s; reporters in
//! [`crate::report`] render them (progress bar, CI lines). Sending never blocks the run.

use std::time::Duration;

use tokio::sync::mpsc;

use crate::state::StopReason;

/// Something that happened in a run.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The source was listed and compared with the state.
    Planned {
        /// Files in the source (after filters).
        files_total: u64,
        /// Their bytes.
        bytes_total: u64,
        /// Files already stored and unchanged.
        files_done: u64,
        /// Bytes already stored (unchanged files and finished parts of resumed ones).
        bytes_done: u64,
        /// Files to work on in this run.
        files_todo: u64,
        /// Files given up in earlier runs (left alone until `tgferry retry`).
        given_up: u64,
    },
    /// Work on a file started (or resumed at `first_part`).
    FileStarted {
        /// The file.
        path: String,
        /// Its size.
        size: u64,
        /// The part work starts at.
        first_part: u64,
        /// Parts in all.
        parts_total: u64,
    },
    /// Bytes of content were moved (emitted per chunk, for progress).
    Bytes(u64),
    /// A part was stored.
    PartStored {
        /// The file.
        path: String,
        /// Index of the part.
        index: u64,
        /// Parts in all.
        parts_total: u64,
    },
    /// A small file was sealed into the open pack; it is stored (`FileCompleted`) when the
    /// pack is.
    FilePacked {
        /// The file.
        path: String,
    },
    /// A file was stored completely.
    FileCompleted {
        /// The file.
        path: String,
        /// Its size.
        size: u64,
    },
    /// A try failed; the file will be tried again after `retry_in`.
    FileRetry {
        /// The file.
        path: String,
        /// The error.
        error: String,
        /// The wait.
        retry_in: Duration,
    },
    /// A file failed for this run.
    FileFailed {
        /// The file.
        path: String,
        /// The error.
        error: String,
        /// True if the failure cap was reached.
        given_up: bool,
    },
    /// A source entry was refused.
    Skipped {
        /// The entry.
        path: String,
        /// Why.
        reason: String,
    },
    /// The store asked to wait; the run waits because the wait fits the budget.
    Waiting {
        /// How long.
        wait: Duration,
    },
    /// The run is stopping.
    Stopping {
        /// Why.
        reason: StopReason,
    },
}

/// Where events go; cloning is cheap. A sink with no receiver drops events.
#[derive(Debug, Clone, Default)]
pub struct Events {
    tx: Option<mpsc::UnboundedSender<Event>>,
}

impl Events {
    /// A sink that drops everything.
    pub fn none() -> Self {
        Events { tx: None }
    }

    /// A sink and the receiver a reporter reads from.
    pub fn channel() -> (Self, mpsc::UnboundedReceiver<Event>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Events { tx: Some(tx) }, rx)
    }

    /// Sends an event (never blocks, never fails the run).
    pub fn emit(&self, event: Event) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(event);
        }
    }
}
