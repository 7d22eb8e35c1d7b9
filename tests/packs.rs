//! Packs: small files of a vault run share stored parts. Over the in-memory source and
//! store under tokio's paused clock: what goes into a pack and where, that each object
//! decrypts from its own range, the boundaries (an object ending at a pack's end, a pack
//! of one object, empty files), dedup across packs, and that a pack is recorded only once
//! it is stored, whatever stops the run.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use common::run::{run, run_with};
use tgferry::runner::{Packing, RunConfig, VaultKeys};
use tgferry::source::memory::MemorySource;
use tgferry::state::{State, StopReason};
use tgferry::store::memory::MemoryStore;
use tgferry::vault::{MasterKey, ObjectParams};
use tokio_util::sync::CancellationToken;

const KEY: [u8; 32] = [7; 32];

fn cfg(threshold: u64, size: u64) -> RunConfig {
    RunConfig {
        part_size: 1 << 20,
        vault: Some(Arc::new(VaultKeys::new(MasterKey::from_bytes(KEY)))),
        packing: Some(Packing { threshold, size }),
        ..RunConfig::default()
    }
}

/// Decrypts `path`'s current object from what the store holds, reading only the part's
/// range where it is packed.
fn restore(st: &State, store: &MemoryStore, path: &str) -> Vec<u8> {
    let object = &st.objects[st.completed[path].object.as_ref().unwrap()];
    let mut plain = Vec::new();
    for (i, p) in object.parts.iter().enumerate() {
        let blob = store.get(&p.loc).expect("a recorded part is stored");
        let start = p.offset.unwrap_or(0) as usize;
        let range = &blob[start..start + p.len as usize];
        if p.offset.is_none() {
            assert_eq!(
                blob.len() as u64,
                p.len,
                "a part of its own is its whole blob"
            );
        }
        let params = ObjectParams::new(
            hex::decode(p.salt.as_ref().unwrap())
                .unwrap()
                .try_into()
                .unwrap(),
            hex::decode(p.nonce_prefix.as_ref().unwrap())
                .unwrap()
                .try_into()
                .unwrap(),
            object.size,
            object.part_size,
        )
        .unwrap();
        let master = MasterKey::from_bytes(KEY);
        plain.extend(tgferry::vault::decrypt_part(&master, &params, i as u32, range).unwrap());
    }
    plain
}

/// Each pack's members, by pack location: (offset, len), sorted.
fn packs(st: &State) -> BTreeMap<String, Vec<(u64, u64)>> {
    let mut packs: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    for o in st.objects.values() {
        for p in &o.parts {
            if let Some(off) = p.offset {
                packs.entry(p.loc.clone()).or_default().push((off, p.len));
            }
        }
    }
    for members in packs.values_mut() {
        members.sort();
    }
    packs
}

/// Every pack is its members back to back, nothing before, between or after them.
fn assert_packs_are_their_members(st: &State, store: &MemoryStore) {
    for (loc, members) in packs(st) {
        let mut at = 0;
        for (off, len) in &members {
            assert_eq!(*off, at, "{loc}: members back to back");
            at += len;
        }
        assert_eq!(
            store.get(&loc).unwrap().len() as u64,
            at,
            "{loc}: ends with its last member"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn small_files_share_packs_and_each_decrypts_from_its_own_range() {
    let dir = common::tempdir();
    let state = dir.path().join("state.json");
    let src = MemorySource::new();
    let mut files = HashMap::new();
    for i in 0..60u64 {
        let data = common::bytes(i + 1, (i as usize * 1_777) % 40_000 + 1);
        files.insert(format!("small/{i:02}.jpg"), data);
    }
    files.insert("empty.txt".into(), Vec::new());
    files.insert("threshold.bin".into(), common::bytes(90, 64 << 10)); // exactly the threshold
    files.insert("large.bin".into(), common::bytes(91, (64 << 10) + 1)); // one byte over
    for (path, data) in &files {
        src.put(path, data.clone());
    }
    let store = MemoryStore::new();
    let ran = run(&src, &store, &state, cfg(64 << 10, 256 << 10), None).await;
    assert_eq!(ran.report.stop_reason, StopReason::Complete);
    assert_eq!(ran.report.run.files_completed, files.len() as u64);
    let st = common::load(&state);
    for (path, data) in &files {
        assert!(restore(&st, &store, path) == *data, "{path} restores");
    }
    let large = &st.objects[st.completed["large.bin"].object.as_ref().unwrap()];
    assert_eq!(
        large.parts[0].offset, None,
        "over the threshold: a part of its own"
    );
    for path in ["empty.txt", "threshold.bin", "small/00.jpg"] {
        let o = &st.objects[st.completed[path].object.as_ref().unwrap()];
        assert!(o.parts[0].offset.is_some(), "{path} is packed");
    }
    assert_packs_are_their_members(&st, &store);
    // Far fewer stored blobs than files: the packs (each up to 256 KiB) and the large file.
    let packed: u64 = packs(&st).values().flatten().map(|(_, len)| len).sum();
    let packs_n = packs(&st).len() as u64;
    assert!(
        packs_n <= packed.div_ceil(256 << 10) + 1,
        "{packs_n} packs for {packed} bytes"
    );
    assert_eq!(store.locations().len() as u64, packs_n + 1);
    // The statistics count a pack as one part.
    assert_eq!(ran.report.run.parts_stored, packs_n + 1);
}

#[tokio::test(start_paused = true)]
async fn an_object_ending_at_the_packs_end_closes_it_and_a_large_one_is_a_pack_of_its_own() {
    let dir = common::tempdir();
    let state = dir.path().join("state.json");
    let src = MemorySource::new();
    // A 1,000-byte file is stored as 48 + 1,000 + 16 = 1,064 bytes: three make a pack of
    // exactly 3,192 bytes. The fourth, larger than a pack, is a pack of one object.
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        src.put(name, common::bytes(i as u64 + 1, 1000));
    }
    src.put("d", common::bytes(4, 5000));
    let store = MemoryStore::new();
    let cfg = RunConfig {
        jobs: 1,
        ..cfg(8 << 10, 3 * 1064)
    };
    let ran = run(&src, &store, &state, cfg, None).await;
    assert_eq!(ran.report.run.files_completed, 4);
    let st = common::load(&state);
    let packs = packs(&st);
    let sizes: Vec<Vec<(u64, u64)>> = packs.values().cloned().collect();
    assert_eq!(packs.len(), 2, "{sizes:?}");
    assert!(
        sizes.contains(&vec![(0, 1064), (1064, 1064), (2128, 1064)]),
        "{sizes:?}"
    );
    assert!(sizes.contains(&vec![(0, 48 + 5000 + 16)]), "{sizes:?}");
    assert_packs_are_their_members(&st, &store);
    for name in ["a", "b", "c", "d"] {
        assert!(restore(&st, &store, name) == src.get(name).unwrap());
    }
}

#[tokio::test(start_paused = true)]
async fn content_stored_in_one_pack_is_not_stored_again_in_another() {
    let dir = common::tempdir();
    let state = dir.path().join("state.json");
    let src = MemorySource::new();
    let photo = common::bytes(5, 20_000);
    src.put("2025/photo.jpg", photo.clone());
    src.put("2025/other.jpg", common::bytes(6, 20_000));
    let store = MemoryStore::new();
    run(&src, &store, &state, cfg(1 << 20, 1 << 20), None).await;
    let written = store.bytes_written();
    let first = common::load(&state);
    let id = first.completed["2025/photo.jpg"].object.clone().unwrap();

    // The next run: a copy of the photo (found by content id, after one read) and a new
    // file. Only the new file is stored, in a pack of its own.
    src.put("backup/photo copy.jpg", photo.clone());
    src.put("2026/new.jpg", common::bytes(7, 9_000));
    let ran = run(&src, &store, &state, cfg(1 << 20, 1 << 20), None).await;
    assert_eq!(ran.report.run.files_completed, 2);
    assert_eq!(store.bytes_written() - written, 48 + 9_000 + 16);
    let st = common::load(&state);
    assert_eq!(
        st.completed["backup/photo copy.jpg"].object.as_ref(),
        Some(&id)
    );
    assert_eq!(
        st.objects[&id], first.objects[&id],
        "the first pack's object, unchanged"
    );
    assert!(restore(&st, &store, "backup/photo copy.jpg") == photo);
    assert_eq!(packs(&st).len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_pack_is_recorded_only_once_stored_whatever_stops_the_run() {
    let src = MemorySource::new();
    let mut files = BTreeMap::new();
    for i in 0..40u64 {
        let data = common::bytes(100 + i, 3_000 + i as usize * 100);
        src.put(&format!("f{i:02}"), data.clone());
        files.insert(format!("f{i:02}"), data);
    }
    // Stopped at each of several moments of an upload of packs at 100 KiB/s (a pack of
    // ~64 KiB takes ~0.6 s): whatever the state records is stored whole, and the next run
    // stores the rest.
    for stop_after_ms in [50u64, 300, 650, 900, 1400] {
        let dir = common::tempdir();
        let state = dir.path().join("state.json");
        let store = MemoryStore::new().with_speed(100 << 10);
        let interrupt = CancellationToken::new();
        let stopper = interrupt.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(stop_after_ms)).await;
            stopper.cancel();
        });
        let cfg = cfg(16 << 10, 64 << 10);
        let ran = run_with(&src, &store, &state, cfg.clone(), None, interrupt).await;
        assert_eq!(
            ran.report.stop_reason,
            StopReason::Interrupted,
            "{stop_after_ms} ms"
        );
        let st = common::load(&state);
        for (loc, members) in packs(&st) {
            let blob = store.get(&loc).expect("a recorded pack is stored");
            let end = members.iter().map(|(o, l)| o + l).max().unwrap();
            assert!(
                blob.len() as u64 >= end,
                "{loc} holds every recorded member"
            );
        }
        for path in st.completed.keys() {
            assert!(restore(&st, &store, path) == files[path]);
        }
        assert!(
            st.completed.len() < files.len(),
            "{stop_after_ms} ms: stopped early"
        );
        assert_eq!(
            ran.report.files_left,
            (files.len() - st.completed.len()) as u64,
            "files of a pack never stored are left for the next run"
        );
        let ran = run(&src, &store, &state, cfg, None).await;
        assert_eq!(ran.report.stop_reason, StopReason::Complete);
        let st = common::load(&state);
        assert_eq!(st.completed.len(), files.len());
        for (path, data) in &files {
            assert!(restore(&st, &store, path) == *data, "{path}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_budget_closes_packs_early_so_they_finish_in_time() {
    let dir = common::tempdir();
    let state = dir.path().join("state.json");
    let src = MemorySource::new();
    for i in 0..200u64 {
        src.put(&format!("f{i:03}"), common::bytes(200 + i, 10_000));
    }
    // 2 MB of small files at 100 KiB/s cannot be stored in 9.9 s: the run must stop in time
    // with every pack it recorded stored, and not leave a pack half-uploaded at the end.
    let store = MemoryStore::new().with_speed(100 << 10);
    let budget = Duration::from_millis(9_900);
    let ran = run(&src, &store, &state, cfg(64 << 10, 256 << 10), Some(budget)).await;
    assert_eq!(ran.report.stop_reason, StopReason::BudgetSpent);
    assert!(ran.elapsed <= budget, "took {:?}", ran.elapsed);
    let st = common::load(&state);
    assert!(!st.completed.is_empty(), "some packs fit the budget");
    assert_packs_are_their_members(&st, &store);
    let recorded: u64 = packs(&st).values().flatten().map(|(_, l)| l).sum();
    let stored: u64 = store
        .locations()
        .iter()
        .map(|l| store.get(l).unwrap().len() as u64)
        .sum();
    assert_eq!(
        recorded, stored,
        "no pack was stored without being recorded"
    );
    // Packs close early as the deadline nears, so the store's time is spent on packs that
    // are kept: at least 85% of what it could take in the budget is recorded. (Filled to
    // their size regardless, the last pack would be cut off: 3 packs, 78 files, 79%.)
    let capacity = budget.as_secs_f64() * (100 << 10) as f64;
    assert!(
        recorded as f64 >= 0.85 * capacity,
        "{recorded} bytes recorded of {capacity} the store could take"
    );
    let ran = run(&src, &store, &state, cfg(64 << 10, 256 << 10), None).await;
    assert_eq!(ran.report.stop_reason, StopReason::Complete);
    assert_eq!(common::load(&state).completed.len(), 200);
}

#[tokio::test(start_paused = true)]
async fn plain_mode_and_packing_off_give_every_file_a_part_of_its_own() {
    let src = MemorySource::new();
    for i in 0..10u64 {
        src.put(&format!("f{i}"), common::bytes(300 + i, 1000));
    }
    for cfg in [
        RunConfig {
            part_size: 1 << 20,
            ..RunConfig::default()
        },
        RunConfig {
            packing: None,
            ..cfg(1 << 20, 1 << 20)
        },
    ] {
        let dir = common::tempdir();
        let state = dir.path().join("state.json");
        let store = MemoryStore::new();
        run(&src, &store, &state, cfg, None).await;
        assert_eq!(store.locations().len(), 10);
        assert!(packs(&common::load(&state)).is_empty());
    }
}

/// Forgets `paths` as `verify --repair` forgets damaged files: their objects' ranges in
/// the packs become dead.
fn forget(state: &std::path::Path, paths: &[&str]) {
    let (mut file, _) = tgferry::state::StateFile::open(
        state,
        &common::run::job(),
        &tgferry::state::LoadOptions::default(),
    )
    .unwrap();
    for path in paths {
        let st = file.state_mut();
        let id = st.completed.remove(*path).unwrap().object.unwrap();
        st.objects.remove(&id);
    }
    file.commit().unwrap();
}

async fn prune_and_repack(
    state: &std::path::Path,
    store: &MemoryStore,
    below: f64,
) -> (tgferry::prune::PruneReport, tgferry::prune::RepackReport) {
    use tgferry::prune::{PruneOptions, RepackOptions, prune, repack};
    let (mut file, _) = tgferry::state::StateFile::open(
        state,
        &common::run::job(),
        &tgferry::state::LoadOptions::default(),
    )
    .unwrap();
    let options = PruneOptions {
        older_than: Duration::ZERO,
        dry_run: false,
        now: tgferry::time::now(),
    };
    let pruned = prune(store, &mut file, None, &options).await.unwrap();
    let options = RepackOptions {
        below,
        pack_size: 1 << 20,
        dry_run: false,
    };
    let repacked = repack(store, &mut file, None, &pruned.packs, options)
        .await
        .unwrap();
    (pruned, repacked)
}

#[tokio::test(start_paused = true)]
async fn prune_reports_dead_bytes_in_packs_and_repack_keeps_every_live_object() {
    let dir = common::tempdir();
    let state = dir.path().join("state.json");
    let src = MemorySource::new();
    let mut files = BTreeMap::new();
    for i in 0..12u64 {
        let data = common::bytes(500 + i, 2_000 + i as usize * 300);
        src.put(&format!("f{i:02}"), data.clone());
        files.insert(format!("f{i:02}"), data);
    }
    let store = MemoryStore::new();
    run(&src, &store, &state, cfg(1 << 20, 1 << 20), None).await;
    let st = common::load(&state);
    assert_eq!(packs(&st).len(), 1);
    let old = packs(&st).into_keys().next().unwrap();
    let dead: u64 = ["f01", "f02", "f05", "f06", "f07", "f08", "f09", "f10"]
        .iter()
        .map(|p| st.objects[st.completed[*p].object.as_ref().unwrap()].parts[0].len)
        .sum();
    forget(
        &state,
        &["f01", "f02", "f05", "f06", "f07", "f08", "f09", "f10"],
    );
    for p in ["f01", "f02", "f05", "f06", "f07", "f08", "f09", "f10"] {
        files.remove(p);
    }

    // Half live or more: reported, left alone.
    let (pruned, repacked) = prune_and_repack(&state, &store, 0.1).await;
    assert_eq!(pruned.packs.len(), 1);
    assert_eq!(pruned.packs[0].dead(), dead);
    assert!(repacked.old.is_empty() && repacked.new.is_empty());
    assert!(store.get(&old).is_some());

    let (_, repacked) = prune_and_repack(&state, &store, 0.9).await;
    assert_eq!(repacked.old.len(), 1);
    assert_eq!(repacked.freed(), dead);
    assert_eq!(repacked.new.len(), 1);
    assert!(store.get(&old).is_none(), "the old pack is deleted");
    let st = common::load(&state);
    assert_eq!(packs(&st).into_keys().collect::<Vec<_>>(), repacked.new);
    assert_packs_are_their_members(&st, &store);
    for (path, data) in &files {
        assert!(restore(&st, &store, path) == *data, "{path}");
    }
    // Nothing dead is left: a second prune finds nothing to do.
    let (pruned, repacked) = prune_and_repack(&state, &store, 0.9).await;
    assert_eq!(pruned.packs[0].dead(), 0);
    assert!(pruned.unreferenced.is_empty());
    assert!(repacked.old.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_repack_cut_off_at_any_moment_loses_nothing_and_the_next_prune_finishes_it() {
    let src = MemorySource::new();
    let mut files = BTreeMap::new();
    for i in 0..30u64 {
        let data = common::bytes(600 + i, 20_000 + i as usize * 100);
        src.put(&format!("f{i:02}"), data.clone());
        files.insert(format!("f{i:02}"), data);
    }
    let gone: Vec<String> = (0..30)
        .filter(|i| i % 3 != 0)
        .map(|i| format!("f{i:02}"))
        .collect();
    // The store takes 100 KiB/s: the copy of ~200 KiB live takes ~2 s. Cut the repack
    // (as a kill would) before, during and after that write.
    for cut_ms in [0u64, 500, 1_900, 2_100, 2_500, 5_000] {
        let dir = common::tempdir();
        let state = dir.path().join("state.json");
        let fast = MemoryStore::new();
        run(&src, &fast, &state, cfg(1 << 20, 1 << 20), None).await;
        forget(&state, &gone.iter().map(String::as_str).collect::<Vec<_>>());
        let store = MemoryStore::from_snapshot(&fast.snapshot()).with_speed(100 << 10);
        let cut = tokio::time::timeout(
            Duration::from_millis(cut_ms),
            prune_and_repack(&state, &store, 0.5),
        )
        .await;
        // Whatever the state on disk says is there and decrypts.
        let st = common::load(&state);
        for path in st.completed.keys() {
            assert!(
                restore(&st, &store, path) == files[path],
                "{cut_ms} ms: {path}"
            );
        }
        assert_eq!(st.completed.len(), 10, "{cut_ms} ms");
        // The next prune (and repack) leaves exactly the packs the state uses.
        let (_, again) = prune_and_repack(&state, &store, 0.5).await;
        let st = common::load(&state);
        let used: Vec<String> = packs(&st).into_keys().collect();
        let mut stored = store.locations();
        stored.sort();
        assert_eq!(stored, used, "{cut_ms} ms: only used packs are left");
        assert_packs_are_their_members(&st, &store);
        for path in st.completed.keys() {
            assert!(
                restore(&st, &store, path) == files[path],
                "{cut_ms} ms: {path}"
            );
        }
        if cut.is_ok() {
            assert!(
                again.old.is_empty(),
                "{cut_ms} ms: a finished repack leaves none"
            );
        }
    }
}
