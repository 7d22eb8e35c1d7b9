//! The server's side of two-step verification: SRP-2048 as Telegram specifies it
//! (<https://core.telegram.org/api/srp>), for `account.getPassword` and
//! `auth.checkPassword`. grammers-crypto holds the client's side (`calculate_2fa`); this
//! is the verifier's: the password is kept only as `v = g^x mod p`, each getPassword draws
//! a fresh `b` (and `srp_id`), and a check recomputes the client's proof `M1`.

use num_bigint::BigUint;
use sha2::{Digest, Sha256, Sha512};

/// Telegram's 2048-bit safe prime for SRP (the same one it uses for Diffie-Hellman),
/// with generator 3: what `account.password.current_algo` carries and what grammers
/// checks (`check_p_and_g`) before answering.
const P_HEX: &str = "c71caeb9c6b1c9048e6c522f70f13f73980d40238e3e21c14934d037563d930f\
                     48198a0aa7c14058229493d22530f4dbfa336f6e0ac925139543aed44cce7c37\
                     20fd51f69458705ac68cd4fe6b6b13abdc9746512969328454f18faf8c595f64\
                     2477fe96bb2a941d5bcd1d4ac8cc49880708fa9b378e3c4f3a9060bee67cf9a4\
                     a4a695811051907e162753b56b0f6b410dba74d8a84b2a14b3144e0ef1284754\
                     fd17ed950d5965b4b9dd46582db1178d169c6bc465b0d6ff9ca3928fef5b9ae4\
                     e418fc15e83ebea0f87fa9ff5eed70050ded2849f47bf959d956850ce929851f\
                     0d8115f635b105ee2e4e15d04b2454bf6f4fadf034b10403119cd8e3b92fcc5b";

/// The generator.
pub const G: i32 = 3;

/// `p` as 256 big-endian bytes.
pub fn p_bytes() -> Vec<u8> {
    let hex: String = P_HEX.split_whitespace().collect();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

fn pad256(n: &BigUint) -> [u8; 256] {
    let bytes = n.to_bytes_be();
    let mut out = [0u8; 256];
    out[256 - bytes.len()..].copy_from_slice(&bytes);
    out
}

fn h(parts: &[&[u8]]) -> [u8; 32] {
    let mut d = Sha256::new();
    for p in parts {
        d.update(p);
    }
    d.finalize().into()
}

/// SH(data, salt) = H(salt | data | salt).
fn sh(data: &[u8], salt: &[u8]) -> [u8; 32] {
    h(&[salt, data, salt])
}

/// PH2(password, salt1, salt2) = SH(pbkdf2(sha512, PH1, salt1, 100000), salt2), with
/// PH1 = SH(SH(password, salt1), salt2).
fn ph2(password: &[u8], salt1: &[u8], salt2: &[u8]) -> [u8; 32] {
    let ph1 = sh(&sh(password, salt1), salt2);
    let dk = pbkdf2::pbkdf2_hmac_array::<Sha512, 64>(&ph1, salt1, 100_000);
    sh(&dk, salt2)
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the OS gives random bytes");
    b
}

/// A password as the server stores it: the salts and the verifier.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Verifier {
    /// `salt1` (40 bytes: the server's 8, then the client's 32, as Telegram's apps make it).
    pub salt1: Vec<u8>,
    /// `salt2` (16 bytes).
    pub salt2: Vec<u8>,
    /// `v = g^x mod p`, big-endian.
    pub v: Vec<u8>,
    /// The hint shown at sign-in.
    pub hint: Option<String>,
}

impl Verifier {
    /// Makes the verifier for `password`.
    pub fn new(password: &str, hint: Option<String>) -> Verifier {
        let salt1 = random_bytes::<40>().to_vec();
        let salt2 = random_bytes::<16>().to_vec();
        let p = BigUint::from_bytes_be(&p_bytes());
        let x = BigUint::from_bytes_be(&ph2(password.as_bytes(), &salt1, &salt2));
        let v = BigUint::from(G as u32).modpow(&x, &p);
        Verifier {
            salt1,
            salt2,
            v: v.to_bytes_be(),
            hint,
        }
    }
}

/// One `account.getPassword` answer's secret half: `b` and `B` for its `srp_id`.
#[derive(Debug, Clone)]
pub struct Challenge {
    b: BigUint,
    /// `B = k·v + g^b mod p`, 256 bytes.
    pub g_b: [u8; 256],
}

impl Challenge {
    /// A fresh challenge for `verifier`.
    pub fn new(verifier: &Verifier) -> Challenge {
        let p_bytes = p_bytes();
        let p = BigUint::from_bytes_be(&p_bytes);
        let g = BigUint::from(G as u32);
        let k = BigUint::from_bytes_be(&h(&[&p_bytes, &pad256(&g)]));
        let v = BigUint::from_bytes_be(&verifier.v);
        let b = BigUint::from_bytes_be(&random_bytes::<256>()) % &p;
        let g_b = (k * v + g.modpow(&b, &p)) % &p;
        Challenge {
            b,
            g_b: pad256(&g_b),
        }
    }

    /// Whether the client's `A` and `M1` prove it knows the password.
    pub fn check(&self, verifier: &Verifier, g_a: &[u8], m1: &[u8]) -> bool {
        let p_bytes = p_bytes();
        let p = BigUint::from_bytes_be(&p_bytes);
        let a = BigUint::from_bytes_be(g_a);
        if g_a.len() > 256 || a <= BigUint::from(1u8) || a >= &p - 1u8 {
            return false;
        }
        let a_pad = pad256(&a);
        let u = BigUint::from_bytes_be(&h(&[&a_pad, &self.g_b]));
        let v = BigUint::from_bytes_be(&verifier.v);
        // S = (A · v^u)^b mod p
        let s = ((a * v.modpow(&u, &p)) % &p).modpow(&self.b, &p);
        let k_a = h(&[&pad256(&s)]);
        let g_pad = pad256(&BigUint::from(G as u32));
        let hp = h(&[&p_bytes]);
        let hg = h(&[&g_pad]);
        let xor: Vec<u8> = hp.iter().zip(hg.iter()).map(|(a, b)| a ^ b).collect();
        let expected = h(&[
            &xor,
            &h(&[&verifier.salt1]),
            &h(&[&verifier.salt2]),
            &a_pad,
            &self.g_b,
            &k_a,
        ]);
        expected.as_slice() == m1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammers_proof_is_accepted_for_the_right_password_only() {
        let verifier = Verifier::new("correct horse", Some("horse".into()));
        let p = p_bytes();
        assert_eq!(p.len(), 256);
        assert!(grammers_crypto::two_factor_auth::check_p_and_g(&p, &G));
        let challenge = Challenge::new(&verifier);
        let a = random_bytes::<256>().to_vec();
        let (m1, g_a) = grammers_crypto::two_factor_auth::calculate_2fa(
            &verifier.salt1,
            &verifier.salt2,
            &p,
            &G,
            challenge.g_b.to_vec(),
            a.clone(),
            "correct horse",
        );
        assert!(challenge.check(&verifier, &g_a, &m1));
        let (m1, g_a) = grammers_crypto::two_factor_auth::calculate_2fa(
            &verifier.salt1,
            &verifier.salt2,
            &p,
            &G,
            challenge.g_b.to_vec(),
            a,
            "wrong horse",
        );
        assert!(!challenge.check(&verifier, &g_a, &m1));
    }
}
