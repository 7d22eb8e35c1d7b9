//! The fuzz targets' seed corpora (`fuzz/corpus/<target>/seed-*`) are real files made by
//! tgferry itself: a vault job's state, a killed run's journal, stored parts, the sealed
//! catalog, a key file and a state artifact zip. This test checks that every seed is
//! still what its target expects (so the corpora follow the formats as they change), and
//! with `TGFERRY_WRITE_FUZZ_CORPUS=1` writes them afresh:
//!
//! ```sh
//! TGFERRY_WRITE_FUZZ_CORPUS=1 cargo test --test fuzz_corpus
//! ```

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tgferry::keyring;
use tgferry::runner::{Budget, Events, RunConfig, Runner, VaultKeys};
use tgferry::source::memory::MemorySource;
use tgferry::state::journal::journal_path;
use tgferry::state::{Encryption, Job, LoadOptions, Record, State, StateFile, parse_state};
use tgferry::store::memory::MemoryStore;
use tgferry::store::{META_CATALOG, META_KEY_FILE, Store};
use tgferry::vault::{KdfParams, KeyFile, MasterKey, decrypt_part, open_catalog};
use tokio_util::sync::CancellationToken;

/// The fuzz targets' master key (`fuzz/src/lib.rs`, `KEY`).
const KEY: [u8; 32] = [0x42; 32];
/// The passphrase the keyfile target tries.
const PASSPHRASE: &str = "correct horse battery staple";

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus")
}

fn job(encryption: Encryption) -> Job {
    Job {
        source: "src".into(),
        store: "store".into(),
        encryption,
        vault_id: None,
    }
}

async fn run(
    src: &MemorySource,
    store: &MemoryStore,
    state: &Path,
    cfg: RunConfig,
    budget: Option<Duration>,
) {
    let encryption = if cfg.vault.is_some() {
        Encryption::Vault
    } else {
        Encryption::None
    };
    let (mut file, _) = StateFile::open(state, &job(encryption), &LoadOptions::default()).unwrap();
    if encryption == Encryption::Vault {
        keyring::check_state(store, Some(&MasterKey::from_bytes(KEY)), &mut file, false)
            .await
            .unwrap();
    }
    let start = tokio::time::Instant::now();
    let budget = match budget {
        Some(b) => Budget::until(start, start + b, Duration::ZERO),
        None => Budget::unlimited(start),
    };
    let (events, mut rx) = Events::channel();
    let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let runner = Runner::new(
        Arc::new(src.clone()),
        Arc::new(store.clone()),
        cfg,
        budget,
        events,
        CancellationToken::new(),
    );
    let (file, _) = runner.run(file).await.map_err(|(_, e)| e).unwrap();
    drain.await.unwrap();
    if encryption == Encryption::Vault {
        keyring::save_catalog(store, &MasterKey::from_bytes(KEY), file.state())
            .await
            .unwrap();
    }
}

/// Every seed, by target: what tgferry writes, made here.
async fn seeds(dir: &Path) -> BTreeMap<&'static str, Vec<(String, Vec<u8>)>> {
    let mut out: BTreeMap<&'static str, Vec<(String, Vec<u8>)>> = BTreeMap::new();
    let master = MasterKey::from_bytes(KEY);
    let cheap = KdfParams {
        m_cost_kib: 64,
        t_cost: 1,
        p_cost: 1,
    };
    let key_file = KeyFile::create_with(
        &PASSPHRASE.to_string().into(),
        cheap,
        [1; 16],
        [2; 16],
        &master,
        [3; 12],
    )
    .unwrap();
    out.entry("keyfile")
        .or_default()
        .push(("vault".into(), key_file.to_json()));

    // A vault job: a changed file (a version), a copy (one object), a file of two parts
    // stopped by the budget after one.
    let store = MemoryStore::new();
    store
        .put_meta(META_KEY_FILE, &key_file.to_json())
        .await
        .unwrap();
    let src = MemorySource::new();
    src.put("a.txt", b"first".to_vec());
    src.put("copy of a.txt", b"first".to_vec());
    src.put("dir/b.bin", common::bytes(1, 3000));
    src.put("empty", Vec::new());
    let state = dir.join("tgferry-state.json");
    let vault = RunConfig {
        part_size: 1 << 20,
        jobs: 1,
        vault: Some(Arc::new(VaultKeys::new(MasterKey::from_bytes(KEY)))),
        ..RunConfig::default()
    };
    run(&src, &store, &state, vault.clone(), None).await;
    src.put("a.txt", b"second, longer".to_vec());
    src.put("big.bin", common::bytes(2, (2 << 20) - 1));
    let slow = store.clone().with_speed(1 << 20);
    run(
        &src,
        &slow,
        &state,
        vault.clone(),
        Some(Duration::from_millis(1500)),
    )
    .await;
    let saved = std::fs::read(&state).unwrap();
    out.entry("state")
        .or_default()
        .push(("vault".into(), saved.clone()));

    // A killed run's journal, written by the state's own writer.
    let (mut file, _) =
        StateFile::open(&state, &job(Encryption::Vault), &LoadOptions::default()).unwrap();
    keyring::check_state(&store, Some(&master), &mut file, false)
        .await
        .unwrap();
    file.begin_run(tgferry::time::now()).unwrap();
    let st = file.state().clone();
    let ip = st.in_progress["big.bin"].clone();
    let mut template = ip.clone();
    template.parts.clear();
    template.vault.as_mut().unwrap().part_macs.clear();
    file.record(Record::PartStored {
        path: "big.bin".into(),
        file: template,
        index: 1,
        part: ip.parts[0].clone(),
        mac: Some("cd".repeat(32)),
        at: tgferry::time::now(),
    })
    .unwrap();
    let done = st.completed["dir/b.bin"].clone();
    file.record(Record::FileCompleted {
        path: "other/b copy.bin".into(),
        entry: done,
        fresh_parts: 0,
        fresh_bytes: 0,
        object: None,
    })
    .unwrap();
    file.record(Record::FailureCleared {
        path: "gone".into(),
    })
    .unwrap();
    file.record(Record::InProgressDropped {
        path: "big.bin".into(),
    })
    .unwrap();
    drop(file);
    let journal = std::fs::read(journal_path(&state)).unwrap();
    out.entry("journal")
        .or_default()
        .push(("vault-killed".into(), journal.clone()));

    // Stored parts, each with the prefix the part target reads: object size, part index,
    // chunk size - 1.
    for (id, object) in &st.objects {
        for (k, part) in object.parts.iter().enumerate() {
            let mut seed = (object.size as u32).to_be_bytes().to_vec();
            seed.extend([k as u8, 255]);
            // A packed part is its range of the pack.
            let blob = store.get(&part.loc).unwrap();
            let start = part.offset.unwrap_or(0) as usize;
            seed.extend(&blob[start..start + part.len as usize]);
            out.entry("part")
                .or_default()
                .push((format!("{}-{k}", &id[..8]), seed));
        }
    }
    let catalog = store.get_meta(META_CATALOG).await.unwrap().unwrap();
    out.entry("catalog")
        .or_default()
        .push(("vault".into(), catalog));

    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("tgferry-state.json", opts).unwrap();
    zip.write_all(&saved).unwrap();
    zip.start_file("tgferry-state.json.journal", opts).unwrap();
    zip.write_all(&journal).unwrap();
    let zip = zip.finish().unwrap().into_inner();
    out.entry("artifact_zip")
        .or_default()
        .push(("state-and-journal".into(), zip));

    // A plain job's state.
    let plain = dir.join("plain.json");
    let plain_cfg = RunConfig {
        part_size: 1 << 20,
        jobs: 1,
        ..RunConfig::default()
    };
    run(&src, &MemoryStore::new(), &plain, plain_cfg, None).await;
    out.entry("state")
        .or_default()
        .push(("plain".into(), std::fs::read(&plain).unwrap()));
    out
}

/// Whether `seed` is what `target` expects of a well-formed input.
fn accepted(target: &str, seed: &[u8]) -> Result<(), String> {
    let master = MasterKey::from_bytes(KEY);
    let path = Path::new("seed");
    match target {
        "state" => parse_state(path, seed)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        "journal" => {
            let mut state = State::new(job(Encryption::Vault));
            let first = seed.split(|b| *b == b'\n').next().unwrap_or_default();
            let line: tgferry::state::journal::Line =
                serde_json::from_slice(first).map_err(|e| e.to_string())?;
            if let Record::Header { generation, .. } = line.record {
                state.generation = generation;
            }
            let replay =
                tgferry::state::journal::replay_from(std::io::Cursor::new(seed), path, &mut state)
                    .map_err(|e| e.to_string())?;
            (replay.applied > 0)
                .then_some(())
                .ok_or("nothing applied".into())
        }
        "part" => {
            let size = u64::from(u32::from_be_bytes(seed[..4].try_into().unwrap()));
            let blob = &seed[6..];
            let header = tgferry::vault::PartHeader::parse(blob).map_err(|e| e.to_string())?;
            let params = tgferry::vault::ObjectParams::new(
                header.object_salt,
                header.nonce_prefix,
                size,
                tgferry::vault::SEGMENT_SIZE as u64,
            )
            .map_err(|e| e.to_string())?;
            decrypt_part(&master, &params, u32::from(seed[4]), blob)
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        "catalog" => {
            let json = open_catalog(&master, seed).map_err(|e| e.to_string())?;
            parse_state(path, &json)
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        "keyfile" => KeyFile::from_json(seed)
            .and_then(|k| k.unlock(&PASSPHRASE.to_string().into()))
            .map(|_| ())
            .map_err(|e| e.to_string()),
        "artifact_zip" => tgferry::github::artifacts::extract_zip(
            std::io::Cursor::new(seed),
            "tgferry-state.json",
            "tgferry-state.json.journal",
            1 << 20,
            |_, r| std::io::copy(r, &mut std::io::sink()).map(|_| ()),
        ),
        other => Err(format!("no such fuzz target {other}")),
    }
}

#[tokio::test(start_paused = true)]
async fn the_fuzz_corpora_hold_real_files_each_target_accepts() {
    let dir = common::tempdir();
    let made = seeds(dir.path()).await;
    let root = corpus_dir();
    if std::env::var_os("TGFERRY_WRITE_FUZZ_CORPUS").is_some() {
        for (target, seeds) in &made {
            let d = root.join(target);
            std::fs::create_dir_all(&d).unwrap();
            for entry in std::fs::read_dir(&d).unwrap() {
                let entry = entry.unwrap();
                if entry.file_name().to_string_lossy().starts_with("seed-") {
                    std::fs::remove_file(entry.path()).unwrap();
                }
            }
            for (name, bytes) in seeds {
                std::fs::write(d.join(format!("seed-{name}")), bytes).unwrap();
            }
        }
    }
    // What is made now is accepted (the test of this file's own makings) ...
    for (target, seeds) in &made {
        for (name, bytes) in seeds {
            accepted(target, bytes).unwrap_or_else(|e| panic!("made {target}/{name}: {e}"));
        }
    }
    // ... and so is every committed seed: the corpora follow the formats.
    for target in made.keys() {
        let d = root.join(target);
        let mut n = 0;
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let entry = entry.unwrap();
            if !entry.file_name().to_string_lossy().starts_with("seed-") {
                continue;
            }
            n += 1;
            let bytes = std::fs::read(entry.path()).unwrap();
            accepted(target, &bytes).unwrap_or_else(|e| {
                panic!(
                    "{} is no longer accepted ({e}); rewrite the seeds with \
                     TGFERRY_WRITE_FUZZ_CORPUS=1 cargo test --test fuzz_corpus",
                    entry.path().display()
                )
            });
        }
        assert!(n > 0, "no seeds in {}", d.display());
    }
}
