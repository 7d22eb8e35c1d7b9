//! `tgferry state fetch`, `state seal` and reading a (possibly sealed) state for `status`;
//! the work is [`crate::job::artifact`]'s and [`crate::keyring`]'s.

use std::path::Path;

use super::args::{FetchArgs, SealArgs};
use super::config;
use super::exit::{self, Exit};
use crate::job::{Notice, artifact, open};
use crate::keyring;

/// `tgferry state fetch`.
pub async fn fetch(a: FetchArgs) -> Result<u8, Exit> {
    if a.state.exists() && !a.overwrite {
        return Err(Exit {
            code: exit::USAGE,
            message: format!(
                "{} already exists; pass --overwrite to replace it with the artifact's state",
                a.state.display()
            ),
        });
    }
    let cfg = config::fetch_config(&a.artifact, &a.state).map_err(Exit::usage)?;
    let store = match &a.store {
        Some(name) => Some((super::store::open(name, false, false)?, name.as_str())),
        None => None,
    };
    let fallback = store.as_ref().map(|(store, name)| (store, *name));
    let print = &mut |n: Notice| eprintln!("{n}");
    artifact::fetch_state(&cfg, &a.state, fallback, a.require, print).await?;
    Ok(exit::OK)
}

/// `tgferry state seal`.
pub async fn seal(a: SealArgs) -> Result<u8, Exit> {
    let Some((state, _)) = crate::state::read_with_journal(&a.state).map_err(Exit::state)? else {
        return Err(Exit {
            code: exit::STATE_UNREADABLE,
            message: format!("no state file at {}: nothing to seal", a.state.display()),
        });
    };
    let store = super::store::open(&a.store, false, false)?;
    let vault = open::unlock_vault(
        &store,
        &crate::job::identity::mask_secrets(&a.store),
        None,
        false,
    )
    .await?;
    let out = keyring::sealed_path(&a.state);
    crate::job::seal_into(&out, &vault.key_file, &vault.master, &state)?;
    eprintln!("sealed {} into {}", a.state.display(), out.display());
    Ok(exit::OK)
}

/// Reads a state for `tgferry status`: a sealed one is opened with the passphrase.
pub fn read_for_status(path: &Path) -> Result<Option<crate::state::State>, Exit> {
    let Some(head) = crate::state::read_bytes(path).map_err(|e| Exit {
        code: exit::for_state_error(&e),
        message: e.to_string(),
    })?
    else {
        return Ok(None);
    };
    if keyring::is_sealed_state(&head) {
        let pass = keyring::passphrase_from_env().map_err(Exit::keyring)?;
        return keyring::open_sealed_state(&head, &pass)
            .map(Some)
            .map_err(Exit::keyring);
    }
    crate::state::read_with_journal(path)
        .map(|o| o.map(|(s, _)| s))
        .map_err(|e| Exit {
            code: exit::for_state_error(&e),
            message: e.to_string(),
        })
}
