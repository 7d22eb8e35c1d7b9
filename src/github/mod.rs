//! GitHub Actions: where tgferry usually runs. [`artifacts`] fetches the previous run's
//! state artifact through the REST API (octocrab); [`actions`] writes what the job page
//! shows (summary, outputs, annotations, log groups). Neither knows about clap.

pub mod actions;
pub mod artifacts;
