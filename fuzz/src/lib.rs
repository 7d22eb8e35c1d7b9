//! What tgferry's fuzz targets share: the fixed key their inputs are sealed under, and the
//! checks a run makes on a state it accepted (used by the state and journal targets).

use std::path::Path;

use tgferry::state::{State, Tagger, parse_state};
use tgferry::vault::MasterKey;

/// The master key of the fuzz targets: catalog and part seeds are sealed under it (the
/// seeds in `fuzz/corpus` were written by `tests/fuzz_corpus.rs` with the same key).
pub const KEY: [u8; 32] = [0x42; 32];

/// The master key of the fuzz targets.
pub fn master() -> MasterKey {
    MasterKey::from_bytes(KEY)
}

/// What a run does with a state it accepted, with its invariants asserted: check its
/// integrity tags, tag it, show its status, save it, and read the save back unchanged.
pub fn exercise_state(state: &State) {
    let keyed = Tagger::Keyed(master().state_key());
    let _ = keyed.check(state);
    let mut tagged = state.clone();
    Tagger::Checksum.retag_all(&mut tagged);
    assert!(
        Tagger::Checksum.check(&tagged).is_empty(),
        "a state tagged as it is passes its own check"
    );
    let status = tgferry::report::status::Status::of(&tagged);
    let _ = status.render("fuzz.json");
    let json = serde_json::to_vec_pretty(&tagged).expect("a state serializes");
    let back = parse_state(Path::new("fuzz.json"), &json).expect("a saved state reads back");
    assert!(back == tagged, "a saved state reads back unchanged");
}
