//! Runs every vault test vector in `tests/testdata/vault/` (format described in
//! docs/format.md, "Test vectors"), plus store-level privacy checks.
//!
//! The vectors were written by an independent implementation
//! (`tests/testdata/vault/reference_impl.py`, which CI also runs with `--check`);
//! each positive vector is also re-encrypted here from its fixed inputs and must
//! come out byte for byte the same, so the format cannot drift silently. Pack
//! vectors (docs/format.md, "Packs") are rebuilt here as part blobs back to back,
//! and every object is decoded from its byte range of the pack alone.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use tgferry::vault::{
    Damage, KdfParams, KeyFile, MasterKey, ObjectParams, PartMac, SEGMENT_SIZE, VaultError,
    content_id, decrypt_part, encrypt_part, open_catalog, seal_catalog, seal_catalog_with,
};

/// Every vector file; the directory must hold exactly these, so adding or
/// losing one is a deliberate change.
const VECTORS: &[&str] = &[
    "catalog_flipped_byte",
    "catalog_small",
    "catalog_truncated",
    "catalog_version_2",
    "keyfile_memory_100gib",
    "keyfile_unknown_field",
    "keyfile_v1",
    "keyfile_vault_id_altered",
    "keyfile_version_2",
    "keyfile_wrong_passphrase",
    "object_empty",
    "object_one_byte",
    "object_one_segment_exact",
    "object_one_segment_plus_one",
    "object_two_parts",
    "pack_empty_object",
    "pack_multi_segment_object",
    "pack_object_at_end",
    "pack_one_object",
    "pack_range_one_byte_long",
    "pack_range_one_byte_short",
    "pack_range_read_as_wrong_object",
    "pack_range_shifted",
    "pack_two_objects",
    "part_final_segment_missing",
    "part_flipped_byte",
    "part_header_salt_flipped",
    "part_presented_as_final",
    "part_reordered",
    "part_trailing_garbage",
    "part_truncated",
    "part_version_2",
    "parts_swapped_between_objects",
];

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata/vault")
}

/// One vector: its `key: value` lines (comments and blank lines skipped).
struct Vector {
    name: String,
    fields: BTreeMap<String, String>,
}

impl Vector {
    fn load(name: &str) -> Vector {
        let text = fs::read_to_string(dir().join(format!("{name}.vec"))).unwrap();
        let mut fields = BTreeMap::new();
        for line in text.lines() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line
                .split_once(": ")
                .unwrap_or_else(|| panic!("{name}: bad line {line:?}"));
            assert!(
                fields.insert(k.to_owned(), v.to_owned()).is_none(),
                "{name}: duplicate {k}"
            );
        }
        Vector {
            name: name.to_owned(),
            fields,
        }
    }

    fn get(&self, key: &str) -> &str {
        self.fields
            .get(key)
            .unwrap_or_else(|| panic!("{}: no {key:?}", self.name))
    }

    fn opt(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    fn bytes<const N: usize>(&self, key: &str) -> [u8; N] {
        hex_array(self.get(key))
    }

    fn master(&self) -> MasterKey {
        MasterKey::from_bytes(self.bytes("master_key"))
    }

    /// A `key: offset=N len=N` line (a pack entry, a range).
    fn range(&self, key: &str) -> (usize, usize) {
        let kv: BTreeMap<&str, &str> = self
            .get(key)
            .split(' ')
            .map(|f| f.split_once('=').expect("key=value"))
            .collect();
        (kv["offset"].parse().unwrap(), kv["len"].parse().unwrap())
    }

    /// The `object.NAME` lines: `salt=.. nonce_prefix=.. size=.. part_size=..`.
    fn object(&self, name: &str) -> ObjectParams {
        let line = self.get(&format!("object.{name}"));
        let kv: BTreeMap<&str, &str> = line
            .split(' ')
            .map(|f| f.split_once('=').expect("key=value"))
            .collect();
        ObjectParams::new(
            hex_array(kv["salt"]),
            hex_array(kv["nonce_prefix"]),
            kv["size"].parse().unwrap(),
            kv["part_size"].parse().unwrap(),
        )
        .unwrap()
    }
}

fn hex_array<const N: usize>(s: &str) -> [u8; N] {
    hex::decode(s)
        .unwrap()
        .try_into()
        .expect("hex of the right length")
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The vectors' generated plaintext: byte i = (i * 7) mod 251.
fn generated(size: u64) -> Vec<u8> {
    (0..size).map(|i| (i * 7 % 251) as u8).collect()
}

/// An outcome in the vectors' `expect:` notation.
fn outcome<T>(r: &Result<T, VaultError>) -> String {
    let e = match r {
        Ok(_) => return "ok".into(),
        Err(e) => e,
    };
    match e {
        VaultError::WrongPassphrase => "wrong_passphrase".into(),
        VaultError::EmptyPassphrase => "empty_passphrase".into(),
        VaultError::UnsupportedVersion { found, .. } => {
            format!("unsupported_version found={found}")
        }
        VaultError::InvalidKeyFile { .. } => "invalid_key_file".into(),
        VaultError::KdfParamsOutOfBounds { .. } => "kdf_params_out_of_bounds".into(),
        VaultError::Damaged { reason, .. } => format!(
            "damaged {}",
            match reason {
                Damage::BadMagic => "bad_magic".into(),
                Damage::WrongObject => "wrong_object".into(),
                Damage::WrongPosition { expected, found } =>
                    format!("wrong_position expected={expected} found={found}"),
                Damage::Truncated { expected, found } =>
                    format!("truncated expected={expected} found={found}"),
                Damage::TrailingData => "trailing_data".into(),
                Damage::AuthFailed { segment } => format!("auth_failed segment={segment}"),
                other => format!("{other:?}"),
            }
        ),
        other => format!("unexpected error: {other}"),
    }
}

fn run(v: &Vector) {
    let kind = v.get("kind");
    match kind {
        "keyfile" => run_keyfile(v),
        "object" => run_object(v),
        "part_fault" => run_part_fault(v),
        "catalog" => run_catalog(v),
        "pack" => run_pack(v),
        "pack_fault" => run_pack_fault(v),
        other => panic!("{}: unknown kind {other}", v.name),
    }
}

fn run_keyfile(v: &Vector) {
    let json = fs::read(dir().join(v.get("keyfile"))).unwrap();
    let pass = SecretString::from(v.get("passphrase"));
    let unlocked = KeyFile::from_json(&json).and_then(|kf| kf.unlock(&pass));
    assert_eq!(outcome(&unlocked), v.get("expect"), "{}", v.name);
    if let Ok(master) = unlocked {
        assert!(master == v.master(), "{}: wrong master key", v.name);
        // Re-create from the fixed inputs: the exact same bytes.
        let kf = KeyFile::from_json(&json).unwrap();
        let again = KeyFile::create_with(
            &pass,
            kf.kdf_params(),
            v.bytes("create.vault_id"),
            v.bytes("create.kdf_salt"),
            &master,
            v.bytes("create.wrap_nonce"),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(again.to_json()).unwrap(),
            String::from_utf8(json).unwrap(),
            "{}: create_with does not reproduce the file",
            v.name
        );
    }
}

fn run_object(v: &Vector) {
    assert_eq!(v.get("expect"), "ok");
    assert_eq!(v.get("plaintext"), "generated");
    let master = v.master();
    let params = v.object("a");
    let pt = generated(params.size());
    let parts: u32 = v.get("part_count").parse().unwrap();
    assert_eq!(params.part_count(), parts, "{}", v.name);
    let cid_key = master.content_id_key();
    let mut macs = Vec::new();
    for k in 0..parts {
        let r = params.part_range(k);
        let part_pt = &pt[r.start as usize..r.end as usize];
        let blob = encrypt_part(&master, &params, k, part_pt).unwrap();
        let len: u64 = v.get(&format!("part.{k}.len")).parse().unwrap();
        assert_eq!(blob.len() as u64, len, "{} part {k}", v.name);
        assert_eq!(params.part_stored_len(k), len, "{} part {k}", v.name);
        assert_eq!(
            sha256_hex(&blob),
            v.get(&format!("part.{k}.sha256")),
            "{} part {k}: encryption drifted from the vector",
            v.name
        );
        if let Some(h) = v.opt(&format!("part.{k}.hex")) {
            assert_eq!(hex::encode(&blob), h, "{} part {k}", v.name);
        }
        assert_eq!(
            decrypt_part(&master, &params, k, &blob).unwrap(),
            part_pt,
            "{} part {k}",
            v.name
        );
        let mut mac = PartMac::new(&cid_key);
        mac.update(part_pt);
        macs.push(mac.finalize());
    }
    let id = content_id(&cid_key, params.size(), params.part_size(), &macs).unwrap();
    assert_eq!(id.to_hex(), v.get("content_id"), "{}", v.name);
}

fn run_part_fault(v: &Vector) {
    assert_eq!(v.get("plaintext"), "generated");
    let master = v.master();
    let (sname, spart) = v.get("stored").split_once('/').unwrap();
    let stored_params = v.object(sname);
    let spart: u32 = spart.parse().unwrap();
    let r = stored_params.part_range(spart);
    let pt = generated(stored_params.size());
    let mut blob = encrypt_part(
        &master,
        &stored_params,
        spart,
        &pt[r.start as usize..r.end as usize],
    )
    .unwrap();
    assert_eq!(sha256_hex(&blob), v.get("stored.sha256"), "{}", v.name);

    let mutate: Vec<&str> = v.get("mutate").split(' ').collect();
    match mutate[..] {
        ["none"] => {}
        ["flip", at, mask] => {
            blob[at.parse::<usize>().unwrap()] ^= u8::from_str_radix(mask, 16).unwrap();
        }
        ["set", at, bytes] => {
            let at: usize = at.parse().unwrap();
            let bytes = hex::decode(bytes).unwrap();
            blob[at..at + bytes.len()].copy_from_slice(&bytes);
        }
        ["truncate", len] => blob.truncate(len.parse().unwrap()),
        ["append", bytes] => blob.extend(hex::decode(bytes).unwrap()),
        _ => panic!("{}: unknown mutation {mutate:?}", v.name),
    }

    let (rname, rpart) = v.get("read_as").split_once('/').unwrap();
    let read_params = v.object(rname);
    let result = decrypt_part(&master, &read_params, rpart.parse().unwrap(), &blob);
    assert_eq!(outcome(&result), v.get("expect"), "{}", v.name);
}

fn run_catalog(v: &Vector) {
    let master = v.master();
    let pt = hex::decode(v.get("plaintext_hex")).unwrap();
    let sealed = hex::decode(v.get("sealed_hex")).unwrap();
    if let Some(salt) = v.opt("salt") {
        let again =
            seal_catalog_with(&master, hex_array(salt), v.bytes("nonce_prefix"), &pt).unwrap();
        assert_eq!(hex::encode(again), v.get("sealed_hex"), "{}", v.name);
    }
    let opened = open_catalog(&master, &sealed);
    assert_eq!(outcome(&opened), v.get("expect"), "{}", v.name);
    if let Ok(opened) = opened {
        assert_eq!(opened, pt, "{}", v.name);
    }
}

/// One object of a pack: its name in the vector, its params, and its range.
struct PackEntry {
    name: String,
    params: ObjectParams,
    offset: usize,
    len: usize,
}

/// Builds a vector's pack with the crate's own encryption: part 0 of each object
/// in the `pack:` line, back to back, nothing else (docs/format.md, "Packs").
/// Checks its length and SHA-256 against the vector; returns it with its entries.
fn build_pack(v: &Vector) -> (Vec<u8>, Vec<PackEntry>) {
    assert_eq!(v.get("plaintext"), "generated");
    let master = v.master();
    let mut pack = Vec::new();
    let mut entries = Vec::new();
    for name in v.get("pack").split(' ') {
        let params = v.object(name);
        assert_eq!(
            params.part_count(),
            1,
            "{}: only one-part objects are packed",
            v.name
        );
        let blob = encrypt_part(&master, &params, 0, &generated(params.size())).unwrap();
        assert_eq!(blob.len() as u64, params.part_stored_len(0), "{}", v.name);
        entries.push(PackEntry {
            name: name.to_owned(),
            params,
            offset: pack.len(),
            len: blob.len(),
        });
        pack.extend_from_slice(&blob);
    }
    assert_eq!(pack.len().to_string(), v.get("pack.len"), "{}", v.name);
    assert_eq!(
        sha256_hex(&pack),
        v.get("pack.sha256"),
        "{}: the pack drifted from the vector",
        v.name
    );
    (pack, entries)
}

fn run_pack(v: &Vector) {
    assert_eq!(v.get("expect"), "ok");
    let master = v.master();
    let cid_key = master.content_id_key();
    let (pack, entries) = build_pack(v);
    if let Some(h) = v.opt("pack.hex") {
        assert_eq!(hex::encode(&pack), h, "{}", v.name);
    }
    // Every vector entry is one of the pack's objects, and the last ends the pack.
    let listed = v.fields.keys().filter(|k| k.starts_with("entry.")).count();
    assert_eq!(listed, entries.len(), "{}", v.name);
    let last = entries.last().expect("a pack holds an object");
    assert_eq!(last.offset + last.len, pack.len(), "{}", v.name);
    for PackEntry {
        name,
        params,
        offset,
        len,
    } in &entries
    {
        assert_eq!(
            v.range(&format!("entry.{name}")),
            (*offset, *len),
            "{} object {name}",
            v.name
        );
        // Decoded from its range alone, exactly like part 0 of a one-part object.
        let range = &pack[*offset..offset + len];
        let pt = generated(params.size());
        assert_eq!(
            decrypt_part(&master, params, 0, range).unwrap(),
            pt,
            "{} object {name}",
            v.name
        );
        let mut mac = PartMac::new(&cid_key);
        mac.update(&pt);
        let id = content_id(
            &cid_key,
            params.size(),
            params.part_size(),
            &[mac.finalize()],
        );
        assert_eq!(
            id.unwrap().to_hex(),
            v.get(&format!("content_id.{name}")),
            "{} object {name}",
            v.name
        );
    }
}

fn run_pack_fault(v: &Vector) {
    let master = v.master();
    let (pack, _) = build_pack(v);
    let (offset, len) = v.range("range");
    let range = &pack[offset..offset + len];
    let result = decrypt_part(&master, &v.object(v.get("read_as")), 0, range);
    assert_eq!(outcome(&result), v.get("expect"), "{}", v.name);
}

#[test]
fn vector_directory_holds_exactly_the_listed_vectors() {
    let mut found: Vec<String> = fs::read_dir(dir())
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".vec").map(str::to_owned)
        })
        .collect();
    found.sort();
    assert_eq!(found, VECTORS);
}

#[test]
fn all_vectors() {
    // Two threads: unoptimized AES-GCM is slow and the vectors hold a few MiB.
    let (a, b): (Vec<_>, Vec<_>) = VECTORS.iter().enumerate().partition(|(i, _)| i % 2 == 0);
    std::thread::scope(|s| {
        for half in [a, b] {
            s.spawn(move || {
                for (_, name) in half {
                    run(&Vector::load(name));
                }
            });
        }
    });
}

/// Nothing the store holds (part blobs, the key file, the sealed catalog)
/// contains the plaintext's SHA-256 (raw or hex) or a file name.
#[test]
fn store_bytes_reveal_no_plaintext_hash_and_no_name() {
    let pass = SecretString::from("correct horse battery staple");
    let cheap = KdfParams {
        m_cost_kib: 64,
        t_cost: 1,
        p_cost: 1,
    };
    let (key_file, master) = KeyFile::create(&pass, cheap).unwrap();
    let name = b"holiday-photos/IMG_0001.jpg";
    let plaintext: Vec<u8> = name.iter().copied().cycle().take(5000).collect();
    let digest = Sha256::digest(&plaintext);
    let digest_hex = hex::encode(digest);

    let params = ObjectParams::new_random(plaintext.len() as u64, SEGMENT_SIZE as u64).unwrap();
    let part = encrypt_part(&master, &params, 0, &plaintext).unwrap();
    let catalog = seal_catalog(&master, format!("{{\"{}\":1}}", digest_hex).as_bytes()).unwrap();
    let key_json = key_file.to_json();

    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    for (what, bytes) in [
        ("part", &part),
        ("catalog", &catalog),
        ("key file", &key_json),
    ] {
        assert!(!contains(bytes, &digest), "{what} holds the raw SHA-256");
        assert!(
            !contains(bytes, digest_hex.as_bytes()),
            "{what} holds the hex SHA-256"
        );
        assert!(
            !contains(bytes, &digest_hex.as_bytes()[..16]),
            "{what} holds a hash prefix"
        );
        assert!(!contains(bytes, name), "{what} holds the file name");
        assert!(
            !contains(bytes, b"IMG_0001"),
            "{what} holds part of the file name"
        );
    }

    // The content id is keyed: not the plain hash, and another vault's differs.
    let mut mac = PartMac::new(&master.content_id_key());
    mac.update(&plaintext);
    let macs = [mac.finalize()];
    let id = content_id(&master.content_id_key(), 5000, SEGMENT_SIZE as u64, &macs).unwrap();
    assert_ne!(id.to_hex(), digest_hex);
    assert_ne!(macs[0], <[u8; 32]>::from(digest));
    let other = MasterKey::generate().unwrap();
    let mut mac = PartMac::new(&other.content_id_key());
    mac.update(&plaintext);
    let other_id = content_id(
        &other.content_id_key(),
        5000,
        SEGMENT_SIZE as u64,
        &[mac.finalize()],
    )
    .unwrap();
    assert_ne!(id, other_id);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Round trips through the public API with the real 1 MiB segment size.
    /// Sizes stay within one segment so debug builds stay fast; the unit tests
    /// in stream.rs cross segment and part boundaries with small segments.
    #[test]
    fn prop_round_trip_real_format(size in 0u64..5000, seed in any::<u8>()) {
        let master = MasterKey::from_bytes([seed; 32]);
        let params = ObjectParams::new_random(size, SEGMENT_SIZE as u64).unwrap();
        let pt: Vec<u8> = (0..size).map(|i| (i as u8) ^ seed).collect();
        for k in 0..params.part_count() {
            let r = params.part_range(k);
            let part_pt = &pt[r.start as usize..r.end as usize];
            let blob = encrypt_part(&master, &params, k, part_pt).unwrap();
            prop_assert_eq!(blob.len() as u64, params.part_stored_len(k));
            prop_assert_eq!(decrypt_part(&master, &params, k, &blob).unwrap(), part_pt);
        }
    }
}
