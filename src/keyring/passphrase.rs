//! The vault's passphrase: from `TGFERRY_PASSPHRASE`, or read (bounded, FIFO-safe) from
//! the file `TGFERRY_PASSPHRASE_FILE` names.

use secrecy::SecretString;

use super::{KeyringError, PASSPHRASE_ENV, PASSPHRASE_FILE_ENV};

/// The passphrase from `TGFERRY_PASSPHRASE` or the file named by `TGFERRY_PASSPHRASE_FILE`
/// (one trailing newline removed).
pub fn passphrase_from_env() -> Result<SecretString, KeyringError> {
    passphrase_from(
        std::env::var(PASSPHRASE_ENV).ok(),
        std::env::var_os(PASSPHRASE_FILE_ENV).as_deref(),
    )
}

/// [`passphrase_from_env`] over the two variables' values: an empty `TGFERRY_PASSPHRASE`
/// counts as unset; a file that holds nothing but a line ending is refused (an empty
/// passphrase would lock a vault with nothing).
fn passphrase_from(
    value: Option<String>,
    file: Option<&std::ffi::OsStr>,
) -> Result<SecretString, KeyringError> {
    if let Some(p) = value.filter(|p| !p.is_empty()) {
        return Ok(SecretString::from(p));
    }
    if let Some(path) = file {
        let failed = |message: String| KeyringError::PassphraseFile {
            path: path.to_string_lossy().into_owned(),
            message,
        };
        // A FIFO or /dev/stdin is fine here (process substitution), but never read
        // without end: /dev/zero is refused after 64 KiB.
        let bytes = std::fs::File::open(path)
            .and_then(|f| {
                crate::bounded::read_to_end(f, crate::bounded::MAX_PASSPHRASE_FILE_LEN, 0)
            })
            .map_err(|e| failed(format!("cannot read it: {e}")))?;
        let text = String::from_utf8(bytes).map_err(|_| failed("it is not UTF-8 text".into()))?;
        let text = text.strip_suffix('\n').unwrap_or(&text);
        let text = text.strip_suffix('\r').unwrap_or(text);
        if text.is_empty() {
            return Err(failed(
                "it holds no passphrase (it is empty or only a line ending); write the \
                 passphrase into it, or check that the secret it comes from is set"
                    .into(),
            ));
        }
        return Ok(SecretString::from(text.to_owned()));
    }
    Err(KeyringError::NoPassphrase)
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn from_file(bytes: &[u8]) -> Result<SecretString, KeyringError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pass");
        std::fs::write(&path, bytes).unwrap();
        passphrase_from(None, Some(path.as_os_str()))
    }

    #[test]
    fn a_file_with_only_a_line_ending_is_refused_by_name() {
        for bytes in [&b"\n"[..], b"\r\n", b""] {
            match from_file(bytes) {
                Err(KeyringError::PassphraseFile { path, message }) => {
                    assert!(path.ends_with("pass"), "{path}");
                    assert!(message.contains("holds no passphrase"), "{message}");
                }
                other => panic!("{bytes:?}: {:?}", other.map(|_| "a passphrase")),
            }
        }
    }

    #[test]
    fn one_trailing_line_ending_is_dropped_and_the_rest_kept() {
        let got = from_file(b"two words\r\n").unwrap();
        assert_eq!(got.expose_secret(), "two words");
        let got = from_file(b" x\n\n").unwrap();
        assert_eq!(got.expose_secret(), " x\n");
    }

    #[test]
    fn the_variable_wins_and_empty_counts_as_unset() {
        let got = passphrase_from(Some("p".into()), Some("/nonexistent".as_ref())).unwrap();
        assert_eq!(got.expose_secret(), "p");
        assert!(matches!(
            passphrase_from(Some(String::new()), None),
            Err(KeyringError::NoPassphrase)
        ));
        assert!(matches!(
            passphrase_from(Some(String::new()), Some("/nonexistent/pass".as_ref())),
            Err(KeyringError::PassphraseFile { .. })
        ));
    }
}
