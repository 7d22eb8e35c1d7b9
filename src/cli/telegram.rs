//! `tgferry telegram login`: signs a user account in on the terminal and hands out the
//! portable session for `TGFERRY_TG_SESSION`, on stdout or into a 0600 file, never in a
//! log line.

use std::io::Write;

use secrecy::ExposeSecret;

use super::args::LoginArgs;
use super::exit::{self, Exit};
use crate::telegram::credentials::{self, SESSION_ENV};
use crate::telegram::login::{TerminalPrompt, login as sign_in};

/// `tgferry telegram login`.
pub(super) async fn login(a: LoginArgs) -> Result<u8, Exit> {
    let (api_id, api_hash) =
        credentials::app_from(&|var| std::env::var(var).ok()).map_err(|e| Exit {
            code: exit::STORE_DENIED,
            message: e.to_string(),
        })?;
    let session = sign_in(api_id, &api_hash, &mut TerminalPrompt)
        .await
        .map_err(|e| Exit {
            code: exit::STORE_DENIED,
            message: format!("Telegram login failed: {e}"),
        })?;
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
