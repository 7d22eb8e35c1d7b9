//! The key file: the vault's master key wrapped under a passphrase, stored as
//! JSON in the store (and in the state) with no secret in clear
//! (docs/format.md, "Key file").
//!
//! ```text
//! KEK          = argon2id(passphrase, kdf.salt, m_cost_kib, t_cost, p_cost), 32 bytes
//! wrapped_key  = nonce (12) || AES-256-GCM(KEK, nonce, master_key (32),
//!                                          aad = "tgferry-vault v1 key" || vault_id (16))
//! ```
//!
//! Reading checks, in this order: JSON object, `format`, `version` (a newer
//! one is [`VaultError::UnsupportedVersion`]), the exact v1 field set, hex
//! fields, and the argon2id bounds (so a hostile key file cannot demand
//! unbounded memory or time) before any key derivation runs.

use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::error::{VaultError, fill_random};
use super::keys::{KEY_LEN, MasterKey};

/// Value of the key file's `format` field.
pub const KEYFILE_FORMAT: &str = "tgferry-vault";

/// The key file version this build writes and reads.
pub const KEYFILE_VERSION: u64 = 1;

/// The largest key file read (a real one is about 400 bytes).
pub const MAX_KEY_FILE_LEN: usize = 64 << 10;

/// Length of a vault id.
pub const VAULT_ID_LEN: usize = 16;

/// Length of the argon2id salt.
pub const KDF_SALT_LEN: usize = 16;

/// Length of the nonce of the wrapped master key.
pub const WRAP_NONCE_LEN: usize = 12;

/// Length of `wrapped_key`: nonce (12) || encrypted master key (32) || tag (16).
pub const WRAPPED_KEY_LEN: usize = WRAP_NONCE_LEN + KEY_LEN + 16;

/// Associated data prefix of the wrapped master key (the vault id follows).
const WRAP_AAD_PREFIX: &[u8] = b"tgferry-vault v1 key";

/// Argon2id cost parameters.
///
/// Accepted bounds, on creation and on reading: `p_cost` in 1..=16, `t_cost` in
/// 1..=8, `m_cost_kib` in `8 * p_cost`..=256 MiB (262,144 KiB). At the top of both, one
/// unlock costs about 30 times the default (about 3 s of CPU here) and 256 MiB of memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Number of passes.
    pub t_cost: u32,
    /// Lanes (parallelism).
    pub p_cost: u32,
}

impl KdfParams {
    /// Largest accepted memory cost: 256 MiB, eight times the default.
    pub const MAX_M_COST_KIB: u32 = 1 << 18;
    /// Largest accepted number of passes.
    pub const MAX_T_COST: u32 = 8;
    /// Largest accepted number of lanes.
    pub const MAX_P_COST: u32 = 16;

    /// Checks the bounds; errors with [`VaultError::KdfParamsOutOfBounds`].
    pub fn validate(&self) -> Result<(), VaultError> {
        let out = |reason: String| Err(VaultError::KdfParamsOutOfBounds { reason });
        if !(1..=Self::MAX_P_COST).contains(&self.p_cost) {
            return out(format!(
                "p_cost {} is outside 1..={}",
                self.p_cost,
                Self::MAX_P_COST
            ));
        }
        if !(1..=Self::MAX_T_COST).contains(&self.t_cost) {
            return out(format!(
                "t_cost {} is outside 1..={}",
                self.t_cost,
                Self::MAX_T_COST
            ));
        }
        let min_m = 8 * self.p_cost;
        if !(min_m..=Self::MAX_M_COST_KIB).contains(&self.m_cost_kib) {
            return out(format!(
                "m_cost_kib {} is outside {min_m}..={} (at most 256 MiB of memory)",
                self.m_cost_kib,
                Self::MAX_M_COST_KIB
            ));
        }
        Ok(())
    }

    /// Runs argon2id (version 0x13) into a 32-byte key-encryption key.
    fn derive_kek(
        &self,
        passphrase: &SecretString,
        salt: &[u8; KDF_SALT_LEN],
    ) -> Result<Zeroizing<[u8; KEY_LEN]>, VaultError> {
        self.validate()?;
        let params = Params::new(self.m_cost_kib, self.t_cost, self.p_cost, Some(KEY_LEN))
            .map_err(|e| VaultError::KdfParamsOutOfBounds {
                reason: e.to_string(),
            })?;
        let mut kek = Zeroizing::new([0u8; KEY_LEN]);
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(passphrase.expose_secret().as_bytes(), salt, kek.as_mut())
            .map_err(|e| VaultError::KdfParamsOutOfBounds {
                reason: format!("argon2id failed: {e}"),
            })?;
        Ok(kek)
    }
}

impl Default for KdfParams {
    /// 32 MiB, 3 passes, 1 lane: about half the tool's 64 MiB peak-memory
    /// target.
    fn default() -> Self {
        KdfParams {
            m_cost_kib: 32 * 1024,
            t_cost: 3,
            p_cost: 1,
        }
    }
}

/// A parsed key file: public data only (vault id, KDF parameters, wrapped
/// master key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFile {
    vault_id: [u8; VAULT_ID_LEN],
    kdf: KdfParams,
    kdf_salt: [u8; KDF_SALT_LEN],
    wrapped_key: [u8; WRAPPED_KEY_LEN],
}

impl KeyFile {
    /// Creates a new vault: a random vault id, salt and master key, the master
    /// key wrapped under `passphrase`. Returns the key file and the master key.
    ///
    /// Errors: empty passphrase, parameters out of bounds, random generator
    /// failure.
    pub fn create(
        passphrase: &SecretString,
        params: KdfParams,
    ) -> Result<(KeyFile, MasterKey), VaultError> {
        let mut vault_id = [0u8; VAULT_ID_LEN];
        let mut kdf_salt = [0u8; KDF_SALT_LEN];
        let mut wrap_nonce = [0u8; WRAP_NONCE_LEN];
        fill_random(&mut vault_id)?;
        fill_random(&mut kdf_salt)?;
        fill_random(&mut wrap_nonce)?;
        let master = MasterKey::generate()?;
        let kf = Self::create_with(passphrase, params, vault_id, kdf_salt, &master, wrap_nonce)?;
        Ok((kf, master))
    }

    /// [`KeyFile::create`] with every random input given: for test vectors.
    /// Never reuse a salt or nonce; a real writer calls `create`.
    pub fn create_with(
        passphrase: &SecretString,
        params: KdfParams,
        vault_id: [u8; VAULT_ID_LEN],
        kdf_salt: [u8; KDF_SALT_LEN],
        master_key: &MasterKey,
        wrap_nonce: [u8; WRAP_NONCE_LEN],
    ) -> Result<KeyFile, VaultError> {
        check_passphrase(passphrase)?;
        let kek = params.derive_kek(passphrase, &kdf_salt)?;
        let aead = Aes256Gcm::new(<&aes_gcm::Key<Aes256Gcm>>::from(&*kek));
        let mut wrapped_key = [0u8; WRAPPED_KEY_LEN];
        let (nonce, rest) = wrapped_key.split_at_mut(WRAP_NONCE_LEN);
        let (ct, tag_out) = rest.split_at_mut(KEY_LEN);
        nonce.copy_from_slice(&wrap_nonce);
        ct.copy_from_slice(master_key.expose());
        let tag = aead
            .encrypt_inout_detached(&wrap_nonce.into(), &wrap_aad(&vault_id), ct.into())
            .expect("AES-GCM seals 32 bytes");
        tag_out.copy_from_slice(&tag);
        Ok(KeyFile {
            vault_id,
            kdf: params,
            kdf_salt,
            wrapped_key,
        })
    }

    /// Unwraps the master key with `passphrase`.
    ///
    /// Errors: [`VaultError::WrongPassphrase`] if it does not unlock (or the
    /// key file was altered), [`VaultError::EmptyPassphrase`].
    pub fn unlock(&self, passphrase: &SecretString) -> Result<MasterKey, VaultError> {
        check_passphrase(passphrase)?;
        let kek = self.kdf.derive_kek(passphrase, &self.kdf_salt)?;
        let aead = Aes256Gcm::new(<&aes_gcm::Key<Aes256Gcm>>::from(&*kek));
        let (nonce, rest) = self.wrapped_key.split_at(WRAP_NONCE_LEN);
        let (ct, tag) = rest.split_at(KEY_LEN);
        let nonce: [u8; WRAP_NONCE_LEN] = nonce.try_into().expect("12 bytes");
        let tag: [u8; 16] = tag.try_into().expect("16 bytes");
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        key.copy_from_slice(ct);
        aead.decrypt_inout_detached(
            &nonce.into(),
            &wrap_aad(&self.vault_id),
            key.as_mut_slice().into(),
            &tag.into(),
        )
        .map_err(|_| VaultError::WrongPassphrase)?;
        Ok(MasterKey::from_bytes(*key))
    }

    /// The vault id: random, public, names the vault in the store and state.
    pub fn vault_id(&self) -> [u8; VAULT_ID_LEN] {
        self.vault_id
    }

    /// The vault id as 32 lowercase hex digits.
    pub fn vault_id_hex(&self) -> String {
        hex::encode(self.vault_id)
    }

    /// The argon2id parameters.
    pub fn kdf_params(&self) -> KdfParams {
        self.kdf
    }

    /// Encodes the key file as pretty-printed JSON with a final newline
    /// (fields in the order of docs/format.md). Deterministic.
    pub fn to_json(&self) -> Vec<u8> {
        let json = KeyFileJson {
            format: KEYFILE_FORMAT.to_owned(),
            version: KEYFILE_VERSION,
            vault_id: hex::encode(self.vault_id),
            kdf: KdfJson {
                alg: KDF_ALG.to_owned(),
                m_cost_kib: self.kdf.m_cost_kib,
                t_cost: self.kdf.t_cost,
                p_cost: self.kdf.p_cost,
                salt: hex::encode(self.kdf_salt),
            },
            wrapped_key: hex::encode(self.wrapped_key),
        };
        let mut out = serde_json::to_vec_pretty(&json).expect("plain struct serializes");
        out.push(b'\n');
        out
    }

    /// Parses and checks a key file (see the module doc for the order of
    /// checks). Does not need the passphrase.
    pub fn from_json(bytes: &[u8]) -> Result<KeyFile, VaultError> {
        let invalid = |reason: String| VaultError::InvalidKeyFile { reason };
        if bytes.len() > MAX_KEY_FILE_LEN {
            return Err(invalid(format!(
                "{} bytes, more than a key file's {MAX_KEY_FILE_LEN}",
                bytes.len()
            )));
        }
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| invalid(format!("not JSON: {e}")))?;
        let obj = value
            .as_object()
            .ok_or_else(|| invalid("not a JSON object".into()))?;
        match obj.get("format").and_then(|f| f.as_str()) {
            Some(KEYFILE_FORMAT) => {}
            Some(other) => {
                return Err(invalid(format!(
                    "format is {other:?}, expected {KEYFILE_FORMAT:?}"
                )));
            }
            None => return Err(invalid("no \"format\" field".into())),
        }
        let version = obj
            .get("version")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| invalid("no numeric \"version\" field".into()))?;
        if version > KEYFILE_VERSION {
            return Err(VaultError::UnsupportedVersion {
                what: "key file",
                found: version,
                supported: KEYFILE_VERSION,
            });
        }
        if version != KEYFILE_VERSION {
            return Err(invalid(format!("version {version} does not exist")));
        }
        // Strict parse of the raw bytes (not of `value`, which would have
        // silently merged duplicate keys).
        let json: KeyFileJson =
            serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
        if json.kdf.alg != KDF_ALG {
            return Err(invalid(format!(
                "kdf.alg is {:?}, expected {KDF_ALG:?}",
                json.kdf.alg
            )));
        }
        let kdf = KdfParams {
            m_cost_kib: json.kdf.m_cost_kib,
            t_cost: json.kdf.t_cost,
            p_cost: json.kdf.p_cost,
        };
        let kf = KeyFile {
            vault_id: parse_hex("vault_id", &json.vault_id)?,
            kdf,
            kdf_salt: parse_hex("kdf.salt", &json.kdf.salt)?,
            wrapped_key: parse_hex("wrapped_key", &json.wrapped_key)?,
        };
        kdf.validate()?;
        Ok(kf)
    }
}

/// Value of the key file's `kdf.alg` field in version 1.
const KDF_ALG: &str = "argon2id";

/// The key file as JSON (field order is the written order).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFileJson {
    format: String,
    version: u64,
    vault_id: String,
    kdf: KdfJson,
    wrapped_key: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KdfJson {
    alg: String,
    m_cost_kib: u32,
    t_cost: u32,
    p_cost: u32,
    salt: String,
}

fn wrap_aad(vault_id: &[u8; VAULT_ID_LEN]) -> [u8; WRAP_AAD_PREFIX.len() + VAULT_ID_LEN] {
    let mut aad = [0u8; WRAP_AAD_PREFIX.len() + VAULT_ID_LEN];
    aad[..WRAP_AAD_PREFIX.len()].copy_from_slice(WRAP_AAD_PREFIX);
    aad[WRAP_AAD_PREFIX.len()..].copy_from_slice(vault_id);
    aad
}

fn check_passphrase(passphrase: &SecretString) -> Result<(), VaultError> {
    if passphrase.expose_secret().is_empty() {
        return Err(VaultError::EmptyPassphrase);
    }
    Ok(())
}

/// Decodes exactly `N` bytes of lowercase hex.
fn parse_hex<const N: usize>(field: &str, s: &str) -> Result<[u8; N], VaultError> {
    let invalid = || VaultError::InvalidKeyFile {
        reason: format!("{field} must be {} lowercase hex digits", 2 * N),
    };
    if s.len() != 2 * N || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(invalid());
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).map_err(|_| invalid())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: KdfParams = KdfParams {
        m_cost_kib: 64,
        t_cost: 1,
        p_cost: 1,
    };

    fn pass(s: &str) -> SecretString {
        SecretString::from(s)
    }

    #[test]
    fn create_unlock_round_trip() {
        let (kf, master) = KeyFile::create(&pass("hunter2"), CHEAP).unwrap();
        let parsed = KeyFile::from_json(&kf.to_json()).unwrap();
        assert_eq!(parsed, kf);
        assert_eq!(parsed.unlock(&pass("hunter2")).unwrap(), master);
        assert!(matches!(
            parsed.unlock(&pass("hunter3")),
            Err(VaultError::WrongPassphrase)
        ));
        assert!(matches!(
            parsed.unlock(&pass("")),
            Err(VaultError::EmptyPassphrase)
        ));
    }

    #[test]
    fn default_params_fit_the_memory_target() {
        let d = KdfParams::default();
        assert_eq!((d.m_cost_kib, d.t_cost, d.p_cost), (32768, 3, 1));
        d.validate().unwrap();
    }

    #[test]
    fn bounds_are_enforced_on_create() {
        for bad in [
            KdfParams {
                m_cost_kib: 7,
                ..CHEAP
            },
            KdfParams {
                m_cost_kib: (1 << 18) + 1,
                ..CHEAP
            },
            KdfParams { t_cost: 0, ..CHEAP },
            KdfParams { t_cost: 9, ..CHEAP },
            KdfParams { p_cost: 0, ..CHEAP },
            KdfParams {
                p_cost: 17,
                m_cost_kib: 1024,
                ..CHEAP
            },
            KdfParams {
                p_cost: 4,
                m_cost_kib: 31,
                ..CHEAP
            },
        ] {
            assert!(
                matches!(
                    KeyFile::create(&pass("x"), bad),
                    Err(VaultError::KdfParamsOutOfBounds { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn malformed_files_are_rejected_with_typed_errors() {
        let (kf, _) = KeyFile::create(&pass("x"), CHEAP).unwrap();
        let good: serde_json::Value = serde_json::from_slice(&kf.to_json()).unwrap();
        let with = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut v = good.clone();
            f(&mut v);
            KeyFile::from_json(&serde_json::to_vec(&v).unwrap())
        };
        assert!(matches!(
            with(&|v| v["version"] = 2.into()),
            Err(VaultError::UnsupportedVersion { found: 2, .. })
        ));
        assert!(matches!(
            with(&|v| v["version"] = 0.into()),
            Err(VaultError::InvalidKeyFile { .. })
        ));
        assert!(matches!(
            with(&|v| v["format"] = "age".into()),
            Err(VaultError::InvalidKeyFile { .. })
        ));
        assert!(matches!(
            with(&|v| v["extra"] = 1.into()),
            Err(VaultError::InvalidKeyFile { .. })
        ));
        assert!(matches!(
            with(&|v| v["kdf"]["alg"] = "scrypt".into()),
            Err(VaultError::InvalidKeyFile { .. })
        ));
        assert!(matches!(
            with(&|v| v["vault_id"] = "ABCD".into()),
            Err(VaultError::InvalidKeyFile { .. })
        ));
        let upper = good["wrapped_key"].as_str().unwrap().to_uppercase();
        assert!(matches!(
            with(&|v| v["wrapped_key"] = upper.clone().into()),
            Err(VaultError::InvalidKeyFile { .. })
        ));
        assert!(matches!(
            with(&|v| v["kdf"]["m_cost_kib"] = (100u32 << 20).into()),
            Err(VaultError::KdfParamsOutOfBounds { .. })
        ));
        let json = String::from_utf8(kf.to_json()).unwrap();
        let dup = json.replacen("\"version\": 1,", "\"version\": 1, \"version\": 1,", 1);
        assert!(matches!(
            KeyFile::from_json(dup.as_bytes()),
            Err(VaultError::InvalidKeyFile { .. })
        ));
        assert!(matches!(
            with(&|v| v["kdf"]["m_cost_kib"] = (1u32 << 20).into()),
            Err(VaultError::KdfParamsOutOfBounds { .. })
        ));
        assert!(matches!(
            with(&|v| v["kdf"]["t_cost"] = 64.into()),
            Err(VaultError::KdfParamsOutOfBounds { .. })
        ));
        let padded = format!(
            "{}{}",
            " ".repeat(MAX_KEY_FILE_LEN),
            String::from_utf8(kf.to_json()).unwrap()
        );
        assert!(matches!(
            KeyFile::from_json(padded.as_bytes()),
            Err(VaultError::InvalidKeyFile { .. })
        ));
        assert!(matches!(
            KeyFile::from_json(b"[1]"),
            Err(VaultError::InvalidKeyFile { .. })
        ));
        assert!(matches!(
            KeyFile::from_json(b"\xff"),
            Err(VaultError::InvalidKeyFile { .. })
        ));
    }

    #[test]
    fn altered_vault_id_fails_like_a_wrong_passphrase() {
        let (kf, _) = KeyFile::create(&pass("x"), CHEAP).unwrap();
        let mut other = kf.clone();
        other.vault_id[0] ^= 1;
        assert!(matches!(
            other.unlock(&pass("x")),
            Err(VaultError::WrongPassphrase)
        ));
    }
}
