//! The journal parser and replay (`tgferry::state::journal::replay_from`) onto a vault
//! state of the generation the input's first line names, then what a run does with the
//! replayed state.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tgferry::state::journal::{Line, replay_from};
use tgferry::state::{Encryption, Job, Record, State};

fuzz_target!(|data: &[u8]| {
    let mut state = State::new(Job {
        source: "src".into(),
        store: "store".into(),
        encryption: Encryption::Vault,
        vault_id: Some("00".repeat(16)),
    });
    // Replay only applies a journal of the state's generation: take it from the header.
    let first = data.split(|b| *b == b'\n').next().unwrap_or_default();
    if let Ok(Line {
        record: Record::Header { generation, .. },
        ..
    }) = serde_json::from_slice::<Line>(first)
    {
        state.generation = generation;
    }
    let path = std::path::Path::new("fuzz.json.journal");
    if replay_from(std::io::Cursor::new(data), path, &mut state).is_ok() {
        tgferry_fuzz::exercise_state(&state);
    }
});
