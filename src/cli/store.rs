//! Opening the store `--store` names, for the commands that take one: the spec is parsed
//! and the store opened by [`crate::store::any`]; this only turns its errors into exits.

use crate::job::JobError;
use crate::store::any::{AnyStore, StoreOptions, StoreSpec};
use crate::telegram::grammers::GrammersApi;

/// The store type every command works with.
pub(crate) type CliStore = AnyStore<GrammersApi>;

/// Opens the store for writing (`init`, `prune`, `verify --repair`, `state seal`).
pub(crate) fn open(spec: &str, plain: bool, premium: bool) -> Result<CliStore, JobError> {
    let spec = StoreSpec::parse(spec)?;
    Ok(AnyStore::open(&spec, StoreOptions { plain, premium })?)
}

/// Opens a store that must already exist (`restore`, `verify`).
pub(crate) fn open_existing(spec: &str, plain: bool) -> Result<CliStore, JobError> {
    let spec = StoreSpec::parse(spec)?;
    let options = StoreOptions {
        plain,
        premium: false,
    };
    Ok(AnyStore::open_existing(&spec, options)?)
}
