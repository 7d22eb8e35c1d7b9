//! The state parser (`tgferry::state::parse_state`), then what a run does with a state it
//! accepted: integrity check, tags, status, save and read back.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(state) = tgferry::state::parse_state(std::path::Path::new("fuzz.json"), data) {
        tgferry_fuzz::exercise_state(&state);
    }
});
