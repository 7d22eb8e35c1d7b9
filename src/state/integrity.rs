//! Integrity tags over what identifies stored bytes, so that damage in a state (a flipped
//! bit, a bad hand edit, an altered artifact) is found before a run builds on it or seals
//! it into the store's catalog (docs/state.md, "integrity").
//!
//! Every `completed` and `in_progress` entry has a 16-byte tag in the state's `integrity`
//! maps, over a fixed encoding of the entry with its path: sizes, times, part locations,
//! lengths, hashes, salts, nonce prefixes, part MACs, and, for a completed vault file, the
//! objects of its current content and of every earlier version. In the vault the tag is
//! keyed BLAKE3 under a key derived from the master key ([`crate::vault::StateKey`]), so
//! no one without the passphrase can make an edited entry look intact; in plain mode
//! there is no key, and the tag is an unkeyed BLAKE3 checksum that catches accidental
//! damage only. Failure counts, retries, skipped entries, totals and the run history are
//! not covered: docs/state.md lets people edit those.
//!
//! The encoding names each field it covers explicitly, so fields added to the model later
//! are not covered until they are added here (with a new [`SCHEME`]).

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::journal::Record;
use super::model::{Completed, Encryption, InProgress, Object, State, StoredPart};
use super::{StateError, StateFile};
use crate::time::Timestamp;
use crate::vault::{MasterKey, StateKey};

/// The tag scheme this build writes (`integrity.scheme`); 0 means a state without tags.
pub const SCHEME: u32 = 1;

/// Bytes of a tag (hex in the state: 32 digits).
pub const TAG_LEN: usize = 16;

/// What computes the tags of a state.
#[derive(Debug, Clone)]
pub enum Tagger {
    /// A vault state: keyed BLAKE3 under the vault's state key.
    Keyed(StateKey),
    /// A plain state: an unkeyed BLAKE3 checksum (no secret: catches accidents only).
    Checksum,
}

/// Why an entry failed the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Problem {
    /// The entry has no tag.
    Untagged,
    /// The tag does not match the entry.
    Mismatch,
    /// A tag names an entry the state does not have (the entry was lost).
    Missing,
}

/// Which map an entry is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Map {
    /// `completed`.
    Completed,
    /// `in_progress`.
    InProgress,
}

impl std::fmt::Display for Map {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Map::Completed => "completed",
            Map::InProgress => "in progress",
        })
    }
}

/// An entry that did not pass the check.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Suspect {
    /// Which map.
    pub map: Map,
    /// The path.
    pub path: String,
    /// Why.
    pub problem: Problem,
}

impl Tagger {
    fn hasher(&self) -> blake3::Hasher {
        match self {
            Tagger::Keyed(key) => key.hasher(),
            Tagger::Checksum => blake3::Hasher::new_derive_key("tgferry v1 plain state checksum"),
        }
    }

    /// The tag of an encoding: hashed in one call (most entries are a few hundred bytes).
    fn finish(&self, e: Enc) -> String {
        let mut h = self.hasher();
        h.update(&e.0);
        hex::encode(&h.finalize().as_bytes()[..TAG_LEN])
    }

    /// The tag of `completed[path]` in a state whose objects are `objects`.
    pub fn completed(
        &self,
        path: &str,
        entry: &Completed,
        objects: &BTreeMap<String, Object>,
    ) -> String {
        let mut e = Enc(Vec::with_capacity(512));
        e.str("tgferry state v1 completed");
        e.str(path);
        e.u64(entry.size);
        e.time(&entry.mtime);
        e.time(&entry.stored_at);
        e.parts(&entry.parts);
        match &entry.object {
            None => e.u8(0),
            Some(id) => {
                e.u8(1);
                e.str(id);
                e.object(objects.get(id));
            }
        }
        e.u64(entry.versions.len() as u64);
        for v in &entry.versions {
            e.u64(v.size);
            e.time(&v.mtime);
            e.time(&v.stored_at);
            e.str(&v.object);
            e.object(objects.get(&v.object));
        }
        self.finish(e)
    }

    /// The tag of `in_progress[path]`.
    pub fn in_progress(&self, path: &str, entry: &InProgress) -> String {
        let mut e = Enc(Vec::with_capacity(512));
        e.str("tgferry state v1 in_progress");
        e.str(path);
        e.u64(entry.size);
        e.time(&entry.mtime);
        e.u64(entry.part_size);
        e.u64(entry.parts_total);
        e.time(&entry.started);
        e.parts(&entry.parts);
        match &entry.vault {
            None => e.u8(0),
            Some(draft) => {
                e.u8(1);
                e.u64(draft.part_macs.len() as u64);
                for mac in &draft.part_macs {
                    e.str(mac);
                }
            }
        }
        self.finish(e)
    }

    /// Every entry whose tag is missing or wrong, and every tag without its entry, sorted.
    pub fn check(&self, state: &State) -> Vec<Suspect> {
        let tags = &state.integrity;
        let mut out = Vec::new();
        let mut judge = |map, path: &str, tag: Option<&String>, want: &dyn Fn() -> String| {
            let problem = match tag {
                None => Problem::Untagged,
                Some(t) if !tag_eq(t, &want()) => Problem::Mismatch,
                Some(_) => return,
            };
            out.push(Suspect {
                map,
                path: path.to_owned(),
                problem,
            });
        };
        for (path, entry) in &state.completed {
            judge(Map::Completed, path, tags.completed.get(path), &|| {
                self.completed(path, entry, &state.objects)
            });
        }
        for (path, entry) in &state.in_progress {
            judge(Map::InProgress, path, tags.in_progress.get(path), &|| {
                self.in_progress(path, entry)
            });
        }
        let stray = |map, own: &BTreeMap<String, String>, keys: &dyn Fn(&str) -> bool| {
            own.keys()
                .filter(|p| !keys(p))
                .map(|p| Suspect {
                    map,
                    path: p.clone(),
                    problem: Problem::Missing,
                })
                .collect::<Vec<_>>()
        };
        out.extend(stray(Map::Completed, &tags.completed, &|p| {
            state.completed.contains_key(p)
        }));
        out.extend(stray(Map::InProgress, &tags.in_progress, &|p| {
            state.in_progress.contains_key(p)
        }));
        out.sort();
        out
    }

    /// The tag of the entry `record` changed, computed from `state` after it was applied.
    pub fn tag_of(&self, state: &State, record: &Record) -> Option<String> {
        match record {
            Record::PartStored { path, .. } => state
                .in_progress
                .get(path)
                .map(|e| self.in_progress(path, e)),
            Record::FileCompleted { path, .. } | Record::PartPlaced { path, .. } => state
                .completed
                .get(path)
                .map(|e| self.completed(path, e, &state.objects)),
            _ => None,
        }
    }

    /// Replaces every tag with one computed from the state as it is, and sets the scheme.
    /// Call only on a state that passed [`Tagger::check`] (or whose entries were all made
    /// or checked by this process): a tag computed over damage makes it look intact.
    pub fn retag_all(&self, state: &mut State) {
        let completed = state
            .completed
            .iter()
            .map(|(p, e)| (p.clone(), self.completed(p, e, &state.objects)))
            .collect();
        let in_progress = state
            .in_progress
            .iter()
            .map(|(p, e)| (p.clone(), self.in_progress(p, e)))
            .collect();
        state.integrity.scheme = SCHEME;
        state.integrity.completed = completed;
        state.integrity.in_progress = in_progress;
    }
}

/// Records `tag` as the tag of the entry `record` changed.
pub(crate) fn set_tag(state: &mut State, record: &Record, tag: &str) {
    let (map, path) = match record {
        Record::PartStored { path, .. } => (&mut state.integrity.in_progress, path),
        Record::FileCompleted { path, .. } | Record::PartPlaced { path, .. } => {
            (&mut state.integrity.completed, path)
        }
        _ => return,
    };
    map.insert(path.clone(), tag.to_owned());
}

/// The entries to judge: [`Tagger::check`] less what cannot matter. A tag left for an
/// `in_progress` entry that is gone is dropped, not judged: losing such an entry only
/// makes its file start over (and `prune` removes entries without a key). A plain state
/// without tags (written before tgferry had them) is taken as it is.
pub fn triage(tagger: &Tagger, state: &State) -> Vec<Suspect> {
    if matches!(tagger, Tagger::Checksum) && state.integrity.scheme == 0 {
        return Vec::new();
    }
    let mut out = tagger.check(state);
    out.retain(|s| !(s.map == Map::InProgress && s.problem == Problem::Missing));
    out
}

/// What the integrity check of a state found and did (docs/state.md, "integrity").
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IntegrityReport {
    /// Entries whose tags were missing or wrong but which equal the store's catalog (or,
    /// in a vault state without tags and a store without a catalog, were taken as they
    /// are): kept, with fresh tags at the next save.
    pub confirmed: Vec<Suspect>,
    /// Damaged entries replaced by the store's catalog's (repair).
    pub restored: Vec<Suspect>,
    /// Damaged entries forgotten (repair): their files are stored again by the next run,
    /// and files in progress start over.
    pub forgotten: Vec<Suspect>,
    /// Where copies of the damaged state (and journal) were kept (repair).
    pub kept: Vec<PathBuf>,
}

impl IntegrityReport {
    /// Whether the state was edited (entries restored or forgotten).
    pub fn changed(&self) -> bool {
        !self.restored.is_empty() || !self.forgotten.is_empty()
    }

    /// One line per thing worth telling, for people.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.confirmed.is_empty() {
            out.push(format!(
                "{} state entries without a valid integrity tag were confirmed against the \
                 store's catalog; they get fresh tags at the next save",
                self.confirmed.len()
            ));
        }
        for s in &self.restored {
            out.push(format!(
                "damaged state entry {} ({}): taken from the store's catalog",
                s.path, s.map
            ));
        }
        for s in &self.forgotten {
            out.push(match s.map {
                Map::Completed => format!(
                    "damaged state entry {} (completed): forgotten; the next run stores the \
                     file again from the source",
                    s.path
                ),
                Map::InProgress => format!(
                    "damaged state entry {} (in progress): forgotten; the next run starts the \
                     file over",
                    s.path
                ),
            });
        }
        for k in &self.kept {
            out.push(format!(
                "a copy of the damaged state was kept at {}",
                k.display()
            ));
        }
        out
    }
}

/// The object ids a completed entry refers to (its content and its earlier versions).
fn objects_of(entry: &Completed) -> impl Iterator<Item = &String> {
    entry
        .object
        .iter()
        .chain(entry.versions.iter().map(|v| &v.object))
}

/// Whether `state`'s entry equals `catalog`'s, objects included.
fn equals_catalog(state: &State, catalog: &State, s: &Suspect) -> bool {
    match s.map {
        Map::Completed => match (state.completed.get(&s.path), catalog.completed.get(&s.path)) {
            (Some(a), Some(b)) => {
                a == b
                    && objects_of(a).all(|id| {
                        state.objects.contains_key(id)
                            && state.objects.get(id) == catalog.objects.get(id)
                    })
            }
            _ => false,
        },
        Map::InProgress => matches!(
            (state.in_progress.get(&s.path), catalog.in_progress.get(&s.path)),
            (Some(a), Some(b)) if a == b
        ),
    }
}

/// Whether the catalog holds an intact completed entry for `path` (its tag verifies, or it
/// has no tags: a catalog is authenticated as a whole by its seal), objects included.
fn catalog_holds(tagger: &Tagger, catalog: &State, path: &str) -> bool {
    let Some(entry) = catalog.completed.get(path) else {
        return false;
    };
    let tagged = catalog.integrity.scheme != 0;
    objects_of(entry).all(|id| catalog.objects.contains_key(id))
        && (!tagged
            || catalog
                .integrity
                .completed
                .get(path)
                .is_some_and(|t| tag_eq(t, &tagger.completed(path, entry, &catalog.objects))))
}

impl StateFile {
    /// The entries that fail the integrity check: with the vault's master key for a vault
    /// state (`None`: no check is possible, nothing is returned), by checksum for a plain
    /// one (as found when it was opened). Judge them with
    /// [`StateFile::settle_integrity`].
    pub fn integrity_suspects(&self, master: Option<&MasterKey>) -> Vec<Suspect> {
        match (self.state.job.encryption, master) {
            (Encryption::None, _) => self.pending.clone(),
            (Encryption::Vault, Some(m)) => triage(&Tagger::Keyed(m.state_key()), &self.state),
            (Encryption::Vault, None) => Vec::new(),
        }
    }

    /// Judges `suspects` (from [`StateFile::integrity_suspects`]): an entry that equals
    /// the store's `catalog` is kept; so is every entry of a vault state without tags when
    /// the store has no catalog to compare with. Anything else is damage: with `repair`,
    /// a completed entry is taken from the catalog when it holds an intact one and
    /// forgotten otherwise, an entry in progress is forgotten, and copies of the state and
    /// journal are kept beside them first; without, [`StateError::Damaged`] names the
    /// files and the way out, and nothing changes. After this, what the process records
    /// and saves gets tags (keyed with `master` in the vault).
    pub fn settle_integrity(
        &mut self,
        master: Option<&MasterKey>,
        suspects: Vec<Suspect>,
        catalog: Option<&State>,
        repair: bool,
    ) -> Result<IntegrityReport, StateError> {
        let tagger = match (self.state.job.encryption, master) {
            (Encryption::Vault, Some(m)) => Tagger::Keyed(m.state_key()),
            (Encryption::Vault, None) => {
                // No key, no check: tags stay as they were read.
                return Ok(IntegrityReport::default());
            }
            (Encryption::None, _) => Tagger::Checksum,
        };
        let untagged_vault =
            self.state.job.encryption == Encryption::Vault && self.state.integrity.scheme == 0;
        let mut report = IntegrityReport::default();
        let mut damaged = Vec::new();
        for s in suspects {
            let kept = match catalog {
                Some(c) => equals_catalog(&self.state, c, &s),
                None => untagged_vault && s.problem == Problem::Untagged,
            };
            if kept {
                report.confirmed.push(s);
            } else {
                damaged.push(s);
            }
        }
        if !damaged.is_empty() {
            let helps = catalog.map_or(0, |c| {
                damaged
                    .iter()
                    .filter(|s| s.map == Map::Completed && catalog_holds(&tagger, c, &s.path))
                    .count()
            });
            if !repair {
                return Err(self.damaged_error(damaged, helps));
            }
            report.kept = self.keep_copies()?;
            for s in damaged {
                let take = s.map == Map::Completed
                    && catalog.is_some_and(|c| catalog_holds(&tagger, c, &s.path));
                match (s.map, catalog.filter(|_| take)) {
                    (Map::Completed, Some(c)) => {
                        let entry = c.completed[&s.path].clone();
                        for id in objects_of(&entry) {
                            self.state.objects.insert(id.clone(), c.objects[id].clone());
                        }
                        self.state.completed.insert(s.path.clone(), entry);
                        report.restored.push(s);
                    }
                    (Map::Completed, None) => {
                        self.state.completed.remove(&s.path);
                        self.state.integrity.completed.remove(&s.path);
                        report.forgotten.push(s);
                    }
                    (Map::InProgress, _) => {
                        // Never taken from the catalog: parts stored after it was written
                        // may since have been dropped, and a resume would build on them.
                        self.state.in_progress.remove(&s.path);
                        self.state.integrity.in_progress.remove(&s.path);
                        report.forgotten.push(s);
                    }
                }
            }
            for line in report.lines() {
                tracing::warn!("{line}");
            }
        }
        // Tags left for in-progress entries that are gone (triage drops them) go too.
        let live = &self.state.in_progress;
        self.state
            .integrity
            .in_progress
            .retain(|p, _| live.contains_key(p));
        if !report.confirmed.is_empty() || report.changed() {
            self.dirty = true;
            self.stale_tags = true;
        }
        if self.state.integrity.scheme != SCHEME {
            self.stale_tags = true;
        }
        self.tagger = Some(tagger);
        self.verified = true;
        self.pending.clear();
        Ok(report)
    }

    /// Plain mode: settles what the check found when the state was opened, before the
    /// first save (repairing if the state was opened with `--on-corrupt-state fresh`).
    pub(super) fn check_plain(&mut self) -> Result<(), StateError> {
        if self.verified || self.state.job.encryption != Encryption::None {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let repair = self.on_corrupt == super::OnCorrupt::Fresh;
        self.settle_integrity(None, pending, None, repair)
            .map(|_| ())
    }

    /// Copies the state file and its journal to `<name>.damaged.<time>` before a repair.
    fn keep_copies(&self) -> Result<Vec<PathBuf>, StateError> {
        let stamp = jiff::Zoned::now().strftime("%Y%m%dT%H%M%S").to_string();
        let mut kept = Vec::new();
        for from in [self.path.clone(), super::journal::journal_path(&self.path)] {
            if !from.exists() {
                continue;
            }
            let mut name = from.as_os_str().to_owned();
            name.push(format!(".damaged.{stamp}"));
            let to = PathBuf::from(name);
            std::fs::copy(&from, &to).map_err(|source| StateError::Io {
                path: to.clone(),
                source,
            })?;
            kept.push(to);
        }
        Ok(kept)
    }

    /// The error for damaged entries: the files, what was left alone, the way out.
    fn damaged_error(&self, damaged: Vec<Suspect>, catalog_helps: usize) -> StateError {
        const SHOWN: usize = 10;
        let mut list: Vec<String> = damaged
            .iter()
            .take(SHOWN)
            .map(|s| match s.problem {
                Problem::Missing => format!("{} ({}, entry missing)", s.path, s.map),
                _ => format!("{} ({})", s.path, s.map),
            })
            .collect();
        if damaged.len() > SHOWN {
            list.push(format!("and {} more", damaged.len() - SHOWN));
        }
        let n = damaged.len();
        let (files, their) = if n == 1 {
            ("1 file".to_owned(), "its integrity tag")
        } else {
            (format!("{n} files"), "their integrity tags")
        };
        let path = self.path.display();
        let store = &self.state.job.store;
        let take = if catalog_helps > 0 {
            format!(
                "the store's catalog holds an intact entry for {catalog_helps} of them, which is taken from it; the others are forgotten"
            )
        } else {
            "the damaged entries are forgotten".to_owned()
        };
        let message = format!(
            "state file {path} is damaged: what it records about {files} does not match {their} (a flipped bit, a bad edit or an altered artifact): {}. Nothing was stored or deleted, and the state and the store's catalog were left as they were. To go on, rerun with --on-corrupt-state fresh or run `tgferry verify --repair --state {path} --store {store}`: {take}, the next run stores forgotten files again from the source (files in progress start over), and a copy of the damaged state is kept beside it. Or put back an earlier copy of the state (an earlier CI artifact)",
            list.join(", ")
        );
        StateError::Damaged {
            path: self.path.clone(),
            damaged,
            message,
        }
    }
}

/// Tags compared in constant time (they are keyed MACs in the vault).
fn tag_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && std::hint::black_box(
            a.bytes()
                .zip(b.bytes())
                .fold(0u8, |acc, (x, y)| acc | (x ^ y)),
        ) == 0
}

/// The fixed encoding: integers as 8 bytes big-endian, strings length-prefixed, times as
/// seconds and nanoseconds, so no two different entries encode the same.
struct Enc(Vec<u8>);

impl Enc {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }

    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }

    fn str(&mut self, s: &str) {
        self.u64(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
    }

    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            None => self.u8(0),
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
        }
    }

    fn time(&mut self, t: &Timestamp) {
        self.0.extend_from_slice(&t.as_second().to_be_bytes());
        self.0
            .extend_from_slice(&t.subsec_nanosecond().to_be_bytes());
    }

    fn parts(&mut self, parts: &[StoredPart]) {
        self.u64(parts.len() as u64);
        for p in parts {
            // A part inside a pack is encoded with its offset as `<loc>#<offset>`: vault
            // locations never hold a `#`, so this stays one to one, and the tags of parts
            // written before packs existed are unchanged.
            match p.offset {
                None => self.str(&p.loc),
                Some(offset) => self.str(&format!("{}#{offset}", p.loc)),
            }
            self.u64(p.len);
            self.str(&p.sha256);
            self.opt_str(p.salt.as_deref());
            self.opt_str(p.nonce_prefix.as_deref());
        }
    }

    fn object(&mut self, object: Option<&Object>) {
        match object {
            None => self.u8(0),
            Some(o) => {
                self.u8(1);
                self.u64(o.size);
                self.u64(o.part_size);
                self.time(&o.stored_at);
                self.parts(&o.parts);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::model::{Encryption, Job, ObjectDraft, Version};
    use crate::vault::MasterKey;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn part(loc: &str) -> StoredPart {
        StoredPart {
            store_mtime: None,
            offset: None,
            loc: loc.into(),
            len: 64,
            sha256: String::new(),
            salt: Some("aa".repeat(32)),
            nonce_prefix: Some("bb".repeat(7)),
        }
    }

    fn vault_state() -> State {
        let mut st = State::new(Job {
            source: "s".into(),
            store: "t".into(),
            encryption: Encryption::Vault,
            vault_id: Some("00".repeat(16)),
        });
        for (id, loc) in [("o1", "data/aa/1"), ("o2", "data/bb/2")] {
            st.objects.insert(
                id.into(),
                Object {
                    size: 1,
                    part_size: 1 << 20,
                    stored_at: ts(5),
                    parts: vec![part(loc)],
                },
            );
        }
        st.completed.insert(
            "a".into(),
            Completed {
                size: 1,
                mtime: ts(1),
                stored_at: ts(2),
                parts: vec![],
                object: Some("o2".into()),
                versions: vec![Version {
                    size: 1,
                    mtime: ts(0),
                    stored_at: ts(1),
                    object: "o1".into(),
                }],
            },
        );
        st.in_progress.insert(
            "big".into(),
            InProgress {
                size: 3 << 20,
                mtime: ts(1),
                part_size: 1 << 20,
                parts_total: 3,
                started: ts(2),
                parts: vec![part("data/cc/3")],
                vault: Some(ObjectDraft {
                    part_macs: vec!["cd".repeat(32)],
                }),
            },
        );
        st
    }

    fn keyed() -> Tagger {
        Tagger::Keyed(MasterKey::from_bytes([3; 32]).state_key())
    }

    #[test]
    fn a_tagged_state_passes_and_every_covered_change_is_caught() {
        let t = keyed();
        let mut st = vault_state();
        t.retag_all(&mut st);
        assert_eq!(st.integrity.scheme, SCHEME);
        assert!(t.check(&st).is_empty());
        type Edit = Box<dyn Fn(&mut State)>;
        let edits: Vec<(&str, Edit)> = vec![
            (
                "object id",
                Box::new(|s| s.completed.get_mut("a").unwrap().object = Some("o1".into())),
            ),
            (
                "version's object",
                Box::new(|s| s.completed.get_mut("a").unwrap().versions[0].object = "o2".into()),
            ),
            (
                "versions dropped",
                Box::new(|s| s.completed.get_mut("a").unwrap().versions.clear()),
            ),
            (
                "size",
                Box::new(|s| s.completed.get_mut("a").unwrap().size = 2),
            ),
            (
                "object's loc",
                Box::new(|s| s.objects.get_mut("o2").unwrap().parts[0].loc = "data/bb/3".into()),
            ),
            (
                "old object's salt",
                Box::new(|s| {
                    s.objects.get_mut("o1").unwrap().parts[0].salt = Some("ab".repeat(32))
                }),
            ),
            (
                "object's length",
                Box::new(|s| s.objects.get_mut("o2").unwrap().parts[0].len = 65),
            ),
            (
                "object gone",
                Box::new(|s| {
                    s.objects.remove("o1");
                }),
            ),
            (
                "draft nonce",
                Box::new(|s| {
                    s.in_progress.get_mut("big").unwrap().parts[0].nonce_prefix =
                        Some("bc".repeat(7))
                }),
            ),
            (
                "draft mac",
                Box::new(|s| {
                    s.in_progress
                        .get_mut("big")
                        .unwrap()
                        .vault
                        .as_mut()
                        .unwrap()
                        .part_macs[0] = "ce".repeat(32)
                }),
            ),
            (
                "draft part size",
                Box::new(|s| s.in_progress.get_mut("big").unwrap().part_size = 2 << 20),
            ),
            ("completed map lost", Box::new(|s| s.completed.clear())),
            (
                "tag lost",
                Box::new(|s| {
                    s.integrity.in_progress.clear();
                }),
            ),
            (
                "tag changed",
                Box::new(|s| {
                    s.integrity.completed.insert("a".into(), "00".repeat(16));
                }),
            ),
        ];
        for (what, edit) in edits {
            let mut bad = st.clone();
            edit(&mut bad);
            assert!(!t.check(&bad).is_empty(), "{what} went unnoticed");
        }
        // Outside the check: failure counts and the like.
        let mut fine = st.clone();
        fine.stats.total_failed = 99;
        fine.generation = 42;
        assert!(t.check(&fine).is_empty());
    }

    #[test]
    fn the_key_matters_and_plain_checksums_need_none() {
        let mut st = vault_state();
        keyed().retag_all(&mut st);
        let other = Tagger::Keyed(MasterKey::from_bytes([4; 32]).state_key());
        assert_eq!(
            other.check(&st).len(),
            2,
            "another vault's key fails every entry"
        );
        Tagger::Checksum.retag_all(&mut st);
        assert!(Tagger::Checksum.check(&st).is_empty());
        assert_eq!(keyed().check(&st).len(), 2, "a checksum is no keyed tag");
    }

    #[test]
    fn lost_entries_are_named_by_their_tags() {
        let t = keyed();
        let mut st = vault_state();
        t.retag_all(&mut st);
        st.in_progress.clear();
        let s = t.check(&st);
        assert_eq!(
            s,
            [Suspect {
                map: Map::InProgress,
                path: "big".into(),
                problem: Problem::Missing
            }]
        );
    }
}
