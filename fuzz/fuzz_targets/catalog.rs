//! The catalog decoder (`open_catalog` under the fixed key) and, when a catalog opens, the
//! state parser on what it holds, as `tgferry restore` without `--state` reads it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(json) = tgferry::vault::open_catalog(&tgferry_fuzz::master(), data)
        && let Ok(state) = tgferry::state::parse_state(std::path::Path::new("catalog"), &json)
    {
        tgferry_fuzz::exercise_state(&state);
    }
});
