//! `tgferry telegram login`: signs a user account (or, with `--bot`, a bot) in on the
//! terminal and hands out the portable session for `TGFERRY_TG_SESSION`, on stdout or into
//! a 0600 file, never in a log line.

use std::io::Write;

use secrecy::ExposeSecret;

use super::args::LoginArgs;
use super::exit::{self, Exit};
use secrecy::SecretString;

use crate::telegram::credentials::{self, BOT_TOKEN_ENV, SESSION_ENV};
use crate::telegram::login::{Prompt as _, TerminalPrompt, login_bot, login_with};
use crate::telegram::session::PortableSession;

/// `tgferry telegram login`.
pub(super) async fn login(a: LoginArgs) -> Result<u8, Exit> {
    let (api_id, api_hash) =
        credentials::app_from(&|var| std::env::var(var).ok()).map_err(|e| Exit {
            code: exit::STORE_DENIED,
            message: e.to_string(),
        })?;
    let failed = |e: crate::telegram::login::LoginError| Exit {
        code: exit::STORE_DENIED,
        message: format!("Telegram login failed: {e}"),
    };
    let session = if a.bot {
        let token = match std::env::var(BOT_TOKEN_ENV)
            .ok()
            .filter(|t| !t.trim().is_empty())
        {
            Some(t) => SecretString::from(t.trim().to_owned()),
            None => TerminalPrompt
                .ask_secret("Bot token (from @BotFather): ")
                .map_err(|e| failed(e.into()))?,
        };
        login_bot(PortableSession::new(), api_id, &api_hash, &token)
            .await
            .map_err(failed)?
    } else {
        login_with(
            PortableSession::new(),
            api_id,
            &api_hash,
            &mut TerminalPrompt,
            a.chat.as_ref(),
        )
        .await
        .map_err(failed)?
    };
    match &a.output {
        Some(path) => {
            write_private(path, session.expose_secret()).map_err(|e| Exit {
                code: exit::INTERNAL,
                message: format!("cannot write the session to {}: {e}", path.display()),
            })?;
            eprintln!(
                "session written to {}; store its content as the secret {SESSION_ENV} and \
                 delete the file",
                path.display()
            );
        }
        None => {
            println!("{}", session.expose_secret());
            eprintln!(
                "the line above is the session: store it as the secret {SESSION_ENV} (it gives \
                 full access to the account; never commit or share it)"
            );
        }
    }
    Ok(exit::OK)
}

/// Writes `text` to a new file only the owner can read.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()
}
