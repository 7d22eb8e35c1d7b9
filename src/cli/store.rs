//! Opening the store `--store` names, for the commands that take one: the spec is parsed
//! and the store opened by [`crate::store::any`]; this only turns its errors into exits.

use std::sync::OnceLock;

use crate::job::JobError;
use crate::store::any::{AnyStore, StoreOptions, StoreSpec};
use crate::telegram::grammers::GrammersApi;

/// The store type every command works with.
pub(crate) type CliStore = AnyStore<GrammersApi>;

/// `--tg-connections` (a global flag): set once by `main` before any store is opened.
static TG_CONNECTIONS: OnceLock<Option<usize>> = OnceLock::new();

/// Records `--tg-connections` for every store this process opens.
pub(crate) fn set_tg_connections(n: Option<u16>) {
    let _ = TG_CONNECTIONS.set(n.map(usize::from));
}

/// `--tg-connections`, if given.
pub(crate) fn tg_connections() -> Option<usize> {
    TG_CONNECTIONS.get().copied().flatten()
}

/// Opens the store for writing (`init`, `prune`, `verify --repair`, `state seal`).
pub(crate) fn open(spec: &str, plain: bool, premium: bool) -> Result<CliStore, JobError> {
    let spec = StoreSpec::parse(spec)?;
    let options = StoreOptions {
        plain,
        premium,
        tg_connections: tg_connections(),
    };
    Ok(AnyStore::open(&spec, options)?)
}

/// Opens a store that must already exist (`restore`, `verify`).
pub(crate) fn open_existing(spec: &str, plain: bool) -> Result<CliStore, JobError> {
    let spec = StoreSpec::parse(spec)?;
    let options = StoreOptions {
        plain,
        premium: false,
        tg_connections: tg_connections(),
    };
    Ok(AnyStore::open_existing(&spec, options)?)
}
