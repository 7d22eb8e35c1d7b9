//! The part decoder: a stored part fed to `PartDecryptor` in chunks, as restore and verify
//! read one. Input: object size (u32 big-endian), part index (u8), chunk size - 1 (u8),
//! then the stored bytes; the object's salt and nonce prefix are taken from the bytes'
//! own header, so that decryption is reached; parts are 1 MiB, the key is the fixed one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tgferry::vault::{ObjectParams, PartDecryptor, PartHeader, SEGMENT_SIZE, decrypt_part};

fuzz_target!(|data: &[u8]| {
    let Some((head, blob)) = data.split_first_chunk::<6>() else {
        return;
    };
    let size = u64::from(u32::from_be_bytes([head[0], head[1], head[2], head[3]]));
    let (part, chunk) = (u32::from(head[4]), usize::from(head[5]) + 1);
    let (salt, nonce) = match PartHeader::parse(blob) {
        Ok(h) => (h.object_salt, h.nonce_prefix),
        Err(_) => ([0; 32], [0; 7]),
    };
    let Ok(params) = ObjectParams::new(salt, nonce, size, SEGMENT_SIZE as u64) else {
        return;
    };
    let master = tgferry_fuzz::master();
    let whole = decrypt_part(&master, &params, part, blob);
    let Ok(mut dec) = PartDecryptor::new(&master, &params, part) else {
        assert!(whole.is_err(), "no such part, yet it decrypted");
        return;
    };
    let mut out = Vec::new();
    let mut streamed = Ok(());
    'feed: for mut piece in blob.chunks(chunk) {
        while !piece.is_empty() {
            match dec.update(piece) {
                Ok(step) => {
                    if let Some(pt) = step.plaintext {
                        out.extend_from_slice(pt);
                    }
                    piece = &piece[step.consumed..];
                }
                Err(e) => {
                    streamed = Err(e);
                    break 'feed;
                }
            }
        }
    }
    let streamed = streamed.and_then(|()| dec.finish()).map(|()| out);
    // Both ways of reading a part agree.
    match (whole, streamed) {
        (Ok(a), Ok(b)) => assert!(a == b, "whole and streamed plaintexts differ"),
        (Err(_), Err(_)) => {}
        (a, b) => panic!("whole {:?} but streamed {:?}", a.is_ok(), b.is_ok()),
    }
});
