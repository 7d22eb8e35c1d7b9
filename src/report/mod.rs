//! Reports: turning runner events and states into what people read: a progress bar on a
//! terminal, steady progress lines in CI, the end-of-run summary and `tgferry status`.

pub mod progress;
pub mod status;
pub mod summary;
