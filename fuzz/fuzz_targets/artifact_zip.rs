//! State artifact extraction (`tgferry::github::artifacts::extract_zip`) with a 1 MiB cap:
//! never more than the cap handed on, whatever the archive says.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tgferry::github::artifacts::extract_zip;

const CAP: u64 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let _ = extract_zip(
        std::io::Cursor::new(data),
        "tgferry-state.json",
        "tgferry-state.json.journal",
        CAP,
        |_, reader| {
            let n = std::io::copy(reader, &mut std::io::sink())?;
            assert!(n <= CAP, "{n} bytes handed on past the cap");
            Ok(())
        },
    );
});
