//! Opening the store `--store` names: `telegram:CHAT` (with credentials from the
//! environment, checked before anything connects) or a local folder. Every command that
//! touches a store opens it here, so all of them accept both.

use crate::store::any::AnyStore;
use crate::store::local::LocalStore;
use crate::store::telegram::{TelegramOptions, TelegramStore};
use crate::telegram::api::ChatRef;
use crate::telegram::credentials;
use crate::telegram::grammers::{GrammersApi, GrammersConfig};

use super::exit::{self, Exit};

/// The store type every command works with.
pub(crate) type CliStore = AnyStore<GrammersApi>;

/// The chat of a `telegram:CHAT` store spec; `None` for a local folder.
pub(crate) fn telegram_chat(spec: &str) -> Result<Option<ChatRef>, Exit> {
    let Some(chat) = spec.trim().strip_prefix("telegram:") else {
        return Ok(None);
    };
    ChatRef::parse(chat).map(Some).map_err(|e| Exit {
        code: exit::USAGE,
        message: format!("--store telegram:{chat}: {e}"),
    })
}

/// Opens the store for writing (`run`, `init`, `prune`, `verify --repair`): a local
/// folder is created by [`crate::store::Store::prepare`] if missing.
pub(crate) fn open(spec: &str, plain: bool, premium: bool) -> Result<CliStore, Exit> {
    match telegram_chat(spec)? {
        Some(chat) => open_telegram(chat, plain, premium),
        None => Ok(AnyStore::Local(LocalStore::new(spec))),
    }
}

/// Opens a store that must already exist (`restore`, `verify`): a local folder is
/// checked, never created.
pub(crate) fn open_existing(spec: &str, plain: bool) -> Result<CliStore, Exit> {
    if let Some(chat) = telegram_chat(spec)? {
        return open_telegram(chat, plain, false);
    }
    let unavailable = |message: String| Exit {
        code: exit::STORE_UNAVAILABLE,
        message,
    };
    match std::fs::metadata(spec) {
        Ok(md) if md.is_dir() => Ok(AnyStore::Local(LocalStore::new(spec))),
        Ok(_) => Err(unavailable(format!(
            "store {spec} is not a folder; check --store"
        ))),
        Err(e) => Err(unavailable(format!(
            "store {spec} cannot be opened: {e}; check --store"
        ))),
    }
}

fn credentials_error(e: impl std::fmt::Display) -> Exit {
    Exit {
        code: exit::STORE_DENIED,
        message: format!("{e} (nothing was written)"),
    }
}

fn open_telegram(chat: ChatRef, plain: bool, premium: bool) -> Result<CliStore, Exit> {
    let creds = credentials::from_env().map_err(credentials_error)?;
    let config =
        GrammersConfig::from_credentials(creds, chat.clone()).map_err(credentials_error)?;
    let api = GrammersApi::new(config);
    Ok(AnyStore::Telegram(TelegramStore::new(
        api,
        chat,
        TelegramOptions { plain, premium },
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!(telegram_chat("/srv/backup").unwrap(), None);
        assert_eq!(telegram_chat("telegram:me").unwrap(), Some(ChatRef::Me));
        assert_eq!(
            telegram_chat("telegram:x").unwrap_err().code,
            exit::USAGE,
            "a bad chat is a usage error"
        );
    }
}
