//! Measures the vault's single-core throughput: encrypts 512 MiB (one object,
//! one part, 1 MiB segments sealed in place, as the tool's pipeline does),
//! then decrypts a 64 MiB part eight times through the streaming decryptor.
//!
//! `cargo run --release --example throughput [MiB]`

use std::time::Instant;

use tgferry::vault::{
    MasterKey, ObjectParams, PartDecryptor, PartEncryptor, SEGMENT_SIZE, TAG_LEN, encrypt_part,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mib: u64 = match std::env::args().nth(1) {
        Some(s) => s.parse()?,
        None => 512,
    };
    let total = mib << 20;
    let master = MasterKey::generate()?;
    let source: Vec<u8> = (0..SEGMENT_SIZE).map(|i| (i * 7 % 251) as u8).collect();

    // Encrypt: copy each segment into the buffer (standing in for a read),
    // seal it in place. No allocation per segment.
    let params = ObjectParams::new_random(total, total)?;
    let mut enc = PartEncryptor::new(&master, &params, 0)?;
    let mut buf = vec![0u8; SEGMENT_SIZE + TAG_LEN];
    let mut sink = 0u8;
    let start = Instant::now();
    while let Some(len) = enc.next_segment_len() {
        buf[..len].copy_from_slice(&source[..len]);
        enc.encrypt_segment_in_place(&mut buf[..len + TAG_LEN])?;
        sink ^= buf[len];
    }
    enc.finish()?;
    report("encrypt", total, start);

    // Decrypt: a 64 MiB part, fed in 64 KiB chunks, eight times.
    let part_len = 64u64 << 20;
    let params = ObjectParams::new_random(part_len, part_len)?;
    let plaintext: Vec<u8> = source
        .iter()
        .copied()
        .cycle()
        .take(part_len as usize)
        .collect();
    let blob = encrypt_part(&master, &params, 0, &plaintext)?;
    let rounds = 8;
    let start = Instant::now();
    for _ in 0..rounds {
        let mut dec = PartDecryptor::new(&master, &params, 0)?;
        for mut chunk in blob.chunks(64 << 10) {
            while !chunk.is_empty() {
                let step = dec.update(chunk)?;
                if let Some(pt) = step.plaintext {
                    sink ^= pt[0];
                }
                chunk = &chunk[step.consumed..];
            }
        }
        dec.finish()?;
    }
    report("decrypt", rounds * part_len, start);
    std::hint::black_box(sink);
    Ok(())
}

fn report(what: &str, bytes: u64, start: Instant) {
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{what}: {} MiB in {secs:.3} s = {:.0} MB/s",
        bytes >> 20,
        bytes as f64 / secs / 1e6
    );
}
