//! The key file parser (`KeyFile::from_json`): what parses writes back byte for byte and
//! parses again; a cheap one (at most 64 KiB, 2 passes) is also unlocked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tgferry::vault::KeyFile;

fuzz_target!(|data: &[u8]| {
    let Ok(kf) = KeyFile::from_json(data) else {
        return;
    };
    let again = KeyFile::from_json(&kf.to_json()).expect("a written key file reads back");
    assert!(again == kf, "a key file reads back unchanged");
    let kdf = kf.kdf_params();
    if kdf.m_cost_kib <= 64 && kdf.t_cost <= 2 {
        let _ = kf.unlock(&"correct horse battery staple".to_string().into());
    }
});
