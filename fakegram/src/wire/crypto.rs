//! MTProto 2.0 message encryption as the server does it: decrypting what a client sent
//! (`x = 0`) and encrypting what the server sends (`x = 8`), over AES-256-IGE from
//! grammers-crypto. grammers-crypto makes only the client's direction public; the server's
//! is written here from the specification (<https://core.telegram.org/mtproto/description>,
//! "Defining AES Key and Initialization Vector" and "Message Key").

use grammers_crypto::aes::{ige_decrypt, ige_encrypt};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// A 2048-bit authorization key and its 64-bit id (the low 64 bits of its SHA-1).
#[derive(Clone)]
pub struct AuthKey {
    data: [u8; 256],
    id: i64,
}

impl std::fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuthKey({:016x})", self.id)
    }
}

impl AuthKey {
    /// The key made of these bytes.
    pub fn from_bytes(data: [u8; 256]) -> AuthKey {
        let sha = Sha1::digest(data);
        let id = i64::from_le_bytes(sha[12..20].try_into().expect("8 bytes"));
        AuthKey { data, id }
    }

    /// A new random key.
    pub fn random() -> AuthKey {
        let mut data = [0u8; 256];
        getrandom::fill(&mut data).expect("the OS gives random bytes");
        AuthKey::from_bytes(data)
    }

    /// The key's bytes.
    pub fn bytes(&self) -> &[u8; 256] {
        &self.data
    }

    /// `auth_key_id`: what every encrypted packet starts with.
    pub fn id(&self) -> i64 {
        self.id
    }
}

/// Why a packet could not be decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CryptoError {
    /// Shorter than a header, or the ciphertext is not whole AES blocks.
    BadLength,
    /// The packet names another key.
    WrongKey,
    /// `msg_key` does not match the decrypted text (tampered, or another key).
    BadMsgKey,
}

/// AES key and IV for `msg_key`; `x` is 0 from the client, 8 from the server.
fn aes_key_iv(key: &AuthKey, msg_key: &[u8; 16], x: usize) -> ([u8; 32], [u8; 32]) {
    let a = Sha256::new()
        .chain_update(msg_key)
        .chain_update(&key.data[x..x + 36])
        .finalize();
    let b = Sha256::new()
        .chain_update(&key.data[40 + x..40 + x + 36])
        .chain_update(msg_key)
        .finalize();
    let mut aes_key = [0u8; 32];
    aes_key[..8].copy_from_slice(&a[..8]);
    aes_key[8..24].copy_from_slice(&b[8..24]);
    aes_key[24..].copy_from_slice(&a[24..32]);
    let mut aes_iv = [0u8; 32];
    aes_iv[..8].copy_from_slice(&b[..8]);
    aes_iv[8..24].copy_from_slice(&a[8..24]);
    aes_iv[24..].copy_from_slice(&b[24..32]);
    (aes_key, aes_iv)
}

/// `msg_key`: the middle 128 bits of SHA-256(auth_key[88+x .. 120+x] ‖ plaintext).
fn msg_key(key: &AuthKey, plaintext: &[u8], x: usize) -> [u8; 16] {
    let large = Sha256::new()
        .chain_update(&key.data[88 + x..88 + x + 32])
        .chain_update(plaintext)
        .finalize();
    large[8..24].try_into().expect("16 bytes")
}

/// The `auth_key_id` a client packet names (its first 8 bytes), if it has them.
pub fn packet_key_id(packet: &[u8]) -> Option<i64> {
    packet
        .get(..8)
        .map(|id| i64::from_le_bytes(id.try_into().expect("8 bytes")))
}

/// Decrypts a client's packet (`auth_key_id ‖ msg_key ‖ ciphertext`) in place and returns
/// the plaintext (salt, session id, message, padding).
pub fn decrypt_from_client<'a>(
    key: &AuthKey,
    packet: &'a mut [u8],
) -> Result<&'a mut [u8], CryptoError> {
    if packet.len() < 24 + 16 || !(packet.len() - 24).is_multiple_of(16) {
        return Err(CryptoError::BadLength);
    }
    if packet_key_id(packet) != Some(key.id) {
        return Err(CryptoError::WrongKey);
    }
    let got: [u8; 16] = packet[8..24].try_into().expect("16 bytes");
    let (aes_key, aes_iv) = aes_key_iv(key, &got, 0);
    let body = &mut packet[24..];
    ige_decrypt(body, &aes_key, &aes_iv);
    if msg_key(key, body, 0) != got {
        return Err(CryptoError::BadMsgKey);
    }
    Ok(body)
}

/// Encrypts `plaintext` (salt, session id, message) for the client: random padding of
/// 12 to 27 bytes up to whole AES blocks (the specification asks for 12 to 1024), then
/// `auth_key_id ‖ msg_key ‖ ciphertext`.
pub fn encrypt_for_client(key: &AuthKey, mut plaintext: Vec<u8>) -> Vec<u8> {
    let pad = 12 + (16 - (plaintext.len() + 12) % 16) % 16;
    let mut padding = [0u8; 28];
    getrandom::fill(&mut padding[..pad]).expect("the OS gives random bytes");
    plaintext.extend_from_slice(&padding[..pad]);
    let msg_key = msg_key(key, &plaintext, 8);
    let (aes_key, aes_iv) = aes_key_iv(key, &msg_key, 8);
    ige_encrypt(&mut plaintext, &aes_key, &aes_iv);
    let mut packet = Vec::with_capacity(24 + plaintext.len());
    packet.extend_from_slice(&key.id.to_le_bytes());
    packet.extend_from_slice(&msg_key);
    packet.extend_from_slice(&plaintext);
    packet
}

#[cfg(test)]
mod tests {
    use super::*;
    use grammers_crypto::DequeBuffer;

    fn key() -> AuthKey {
        let mut data = [0u8; 256];
        for (i, b) in data.iter_mut().enumerate() {
            *b = (i * 7 + 3) as u8;
        }
        AuthKey::from_bytes(data)
    }

    #[test]
    fn the_key_id_is_the_one_grammers_computes() {
        // grammers-crypto's own test vector: bytes 0..=255 give this key id.
        let mut data = [0u8; 256];
        for (i, b) in data.iter_mut().enumerate() {
            *b = i as u8;
        }
        let k = AuthKey::from_bytes(data);
        assert_eq!(k.id().to_le_bytes(), [50, 209, 88, 110, 164, 87, 223, 200]);
    }

    #[test]
    fn what_grammers_encrypts_the_server_decrypts() {
        let k = key();
        let plain: Vec<u8> = (0..100u8).collect();
        let mut buffer = DequeBuffer::with_capacity(0, 0);
        buffer.extend(plain.iter().copied());
        grammers_crypto::encrypt_data_v2(
            &mut buffer,
            &grammers_crypto::AuthKey::from_bytes(*k.bytes()),
        );
        let mut packet = buffer[..].to_vec();
        let body = decrypt_from_client(&k, &mut packet).unwrap();
        assert_eq!(&body[..100], &plain[..]);
    }

    #[test]
    fn what_the_server_encrypts_grammers_decrypts() {
        let k = key();
        for len in [16usize, 20, 100, 4096, 4100] {
            let plain: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut packet = encrypt_for_client(&k, plain.clone());
            let pad = packet.len() - 24 - len;
            assert!((12..=27).contains(&pad), "{pad}");
            let got = grammers_crypto::decrypt_data_v2(
                &mut packet,
                &grammers_crypto::AuthKey::from_bytes(*k.bytes()),
            )
            .unwrap();
            assert_eq!(&got[..len], &plain[..]);
        }
    }

    #[test]
    fn tampering_and_other_keys_are_refused() {
        let k = key();
        let mut buffer = DequeBuffer::with_capacity(0, 0);
        buffer.extend([1u8; 64]);
        grammers_crypto::encrypt_data_v2(
            &mut buffer,
            &grammers_crypto::AuthKey::from_bytes(*k.bytes()),
        );
        let good = buffer[..].to_vec();
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(
            decrypt_from_client(&k, &mut flipped).unwrap_err(),
            CryptoError::BadMsgKey
        );
        let mut other = good.clone();
        assert_eq!(
            decrypt_from_client(&AuthKey::random(), &mut other).unwrap_err(),
            CryptoError::WrongKey
        );
        let mut short = good[..30].to_vec();
        assert_eq!(
            decrypt_from_client(&k, &mut short).unwrap_err(),
            CryptoError::BadLength
        );
    }
}
