//! `tgferry verify`: is everything the catalog records in the store, whole and authentic?
//! And `verify --repair`: forget what is damaged, so the next run stores it again.
//!
//! The fast check asks the store for each part's length and, for a plain part whose
//! modification time in the store was recorded, that time too: a part rewritten since it
//! was stored (as an overwrite in place leaves it, with the same length) is then read
//! and hashed, and reported if its content differs. The full check reads every byte:
//! plain parts against their recorded SHA-256, vault parts with every segment
//! authenticated and each object's plaintext matched against its keyed content id, with no plaintext written
//! anywhere. Every problem names the part and the paths (and versions) that use it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use super::parts::{self, Issue, PartRead, PumpError};
use super::{RestoreError, check_jobs, for_each_concurrent, short_id};
use crate::state::{Completed, Encryption, InProgress, Object, State, StoredPart};
use crate::store::Store;
use crate::vault::{
    ContentIdKey, MAC_LEN, MasterKey, ObjectParams, PartDecryptor, PartMac, content_id,
};

/// How thoroughly to check.
#[derive(Clone)]
pub struct VerifyOptions {
    /// Read every byte (else only lengths).
    pub full: bool,
    /// Objects (or files) checked at once.
    pub jobs: usize,
    /// Told the stored bytes of each part checked (for a progress display; the total is
    /// [`VerifyReport::bytes_recorded`] of the state).
    pub progress: Option<Arc<dyn Fn(u64) + Send + Sync>>,
}

impl VerifyOptions {
    /// Lengths only.
    pub fn fast() -> Self {
        VerifyOptions {
            full: false,
            jobs: 4,
            progress: None,
        }
    }

    /// Every byte.
    pub fn full() -> Self {
        VerifyOptions {
            full: true,
            ..Self::fast()
        }
    }
}

impl fmt::Debug for VerifyOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyOptions")
            .field("full", &self.full)
            .field("jobs", &self.jobs)
            .finish_non_exhaustive()
    }
}

/// What a problem is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Subject {
    /// A vault object, by content id.
    Object(String),
    /// A file: a plain-mode file, or a vault catalog entry without a usable object.
    File(String),
    /// A file a run stopped in the middle of.
    InProgress(String),
    /// The encrypted catalog blob in the store.
    Catalog,
}

/// A path that uses an object: its current content (version 0) or an earlier one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct User {
    /// The path.
    pub path: String,
    /// 0 for the current content, n for n versions back.
    pub version: usize,
}

impl fmt::Display for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.version {
            0 => f.write_str(&self.path),
            n => write!(f, "{} (version {n})", self.path),
        }
    }
}

/// One thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What it is about.
    pub subject: Subject,
    /// The part, if it is about one: index (from 0), part count and location.
    pub part: Option<(usize, usize, String)>,
    /// What is wrong.
    pub issue: Issue,
    /// The paths that use it (cannot be restored as they are).
    pub users: Vec<User>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.subject {
            Subject::Object(id) => write!(f, "object {}", short_id(id))?,
            Subject::File(path) => f.write_str(path)?,
            Subject::InProgress(path) => write!(f, "{path} (in progress)")?,
            Subject::Catalog => f.write_str("the store's catalog")?,
        }
        if let Some((k, n, loc)) = &self.part {
            write!(f, ": part {} of {n} ({loc})", k + 1)?;
        }
        write!(f, ": {}", self.issue)?;
        if matches!(self.subject, Subject::Object(_)) {
            if self.users.is_empty() {
                f.write_str("; no path uses it")?;
            } else {
                f.write_str("; used by ")?;
                for (i, u) in self.users.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{u}")?;
                }
            }
        }
        Ok(())
    }
}

/// What a verify found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    /// Whether every byte was read.
    pub full: bool,
    /// Objects (vault) or files (plain) checked, in-progress files included.
    pub items: usize,
    /// Parts checked.
    pub parts: u64,
    /// Stored bytes of the parts checked (as recorded).
    pub bytes: u64,
    /// Everything wrong, by subject.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// Stored bytes of every part `state` records: what a verify of it reads.
    pub fn bytes_recorded(state: &State) -> u64 {
        let sum = |parts: &[StoredPart]| parts.iter().map(|p| p.len).sum::<u64>();
        let stored: u64 = match state.job.encryption {
            Encryption::Vault => state.objects.values().map(|o| sum(&o.parts)).sum(),
            Encryption::None => state.completed.values().map(|c| sum(&c.parts)).sum(),
        };
        stored
            + state
                .in_progress
                .values()
                .map(|ip| sum(&ip.parts))
                .sum::<u64>()
    }

    /// Nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// Every path (current version) that cannot be restored as it is, sorted.
    pub fn broken_paths(&self) -> BTreeSet<&str> {
        self.problems
            .iter()
            .flat_map(|p| {
                let own = match &p.subject {
                    Subject::File(path) => Some(path.as_str()),
                    _ => None,
                };
                p.users
                    .iter()
                    .filter(|u| u.version == 0)
                    .map(|u| u.path.as_str())
                    .chain(own)
            })
            .collect()
    }
}

/// One unit of checking.
enum Item<'a> {
    Object {
        id: &'a str,
        object: &'a Object,
    },
    Plain {
        path: &'a str,
        entry: &'a Completed,
    },
    InProgress {
        path: &'a str,
        entry: &'a InProgress,
    },
}

#[derive(Default)]
struct Checked {
    parts: u64,
    bytes: u64,
    problems: Vec<Problem>,
}

struct Ctx<'a, S> {
    progress: Option<&'a (dyn Fn(u64) + Send + Sync)>,
    store: &'a S,
    master: Option<&'a MasterKey>,
    content_key: Option<ContentIdKey>,
    full: bool,
    users: &'a BTreeMap<&'a str, Vec<User>>,
    /// What the store said of each blob, so that a pack is asked about once, not once
    /// per object in it.
    stats: std::sync::Mutex<std::collections::HashMap<String, Option<crate::store::PartStat>>>,
}

/// Checks every part `state` records (completed files with all their versions, every
/// object, in-progress files) in `store`.
///
/// `master` is needed for a full check of a vault ([`RestoreError::NeedsKey`]); when
/// given, the store's encrypted catalog is checked too.
pub async fn verify<S: Store>(
    store: &S,
    state: &State,
    master: Option<&MasterKey>,
    opts: &VerifyOptions,
) -> Result<VerifyReport, RestoreError> {
    check_jobs(opts.jobs)?;
    let vault = state.job.encryption == Encryption::Vault;
    if vault && opts.full && master.is_none() {
        return Err(RestoreError::NeedsKey);
    }
    let mut report = VerifyReport {
        full: opts.full,
        ..VerifyReport::default()
    };
    let mut users: BTreeMap<&str, Vec<User>> = BTreeMap::new();
    let mut items = Vec::new();
    if vault {
        let mut unknown: BTreeMap<&str, Vec<User>> = BTreeMap::new();
        for (path, c) in &state.completed {
            let Some(id) = c.object.as_deref() else {
                report.problems.push(Problem {
                    subject: Subject::File(path.clone()),
                    part: None,
                    issue: Issue::Catalog("the file has no object recorded".into()),
                    users: vec![User {
                        path: path.clone(),
                        version: 0,
                    }],
                });
                continue;
            };
            let versions = c.versions.iter().map(|v| v.object.as_str());
            for (n, id) in std::iter::once(id).chain(versions).enumerate() {
                let user = User {
                    path: path.clone(),
                    version: n,
                };
                let map = if state.objects.contains_key(id) {
                    &mut users
                } else {
                    &mut unknown
                };
                map.entry(id).or_default().push(user);
            }
        }
        for (id, users) in unknown {
            report.problems.push(Problem {
                subject: Subject::Object(id.to_owned()),
                part: None,
                issue: Issue::Catalog("the catalog does not hold this object".into()),
                users,
            });
        }
        items.extend(
            state
                .objects
                .iter()
                .map(|(id, object)| Item::Object { id, object }),
        );
    } else {
        items.extend(
            state
                .completed
                .iter()
                .map(|(path, entry)| Item::Plain { path, entry }),
        );
    }
    items.extend(
        state
            .in_progress
            .iter()
            .map(|(path, entry)| Item::InProgress { path, entry }),
    );
    let ctx = Ctx {
        progress: opts.progress.as_deref(),
        store,
        master,
        content_key: master.map(MasterKey::content_id_key),
        full: opts.full,
        users: &users,
        stats: Default::default(),
    };
    report.items = items.len();
    for checked in for_each_concurrent(&items, opts.jobs, |item| check_item(&ctx, item)).await {
        report.parts += checked.parts;
        report.bytes += checked.bytes;
        report.problems.extend(checked.problems);
    }
    if let Some(master) = master.filter(|_| vault)
        && let Some(issue) = check_catalog(store, master, state).await
    {
        report.problems.push(Problem {
            subject: Subject::Catalog,
            part: None,
            issue,
            users: Vec::new(),
        });
    }
    report.problems.sort_by(|a, b| {
        (&a.subject, a.part.as_ref().map(|p| p.0)).cmp(&(&b.subject, b.part.as_ref().map(|p| p.0)))
    });
    Ok(report)
}

/// Whether the store's catalog opens; a missing one matters only if files are stored.
async fn check_catalog<S: Store>(store: &S, master: &MasterKey, state: &State) -> Option<Issue> {
    match crate::keyring::load_catalog(store, master).await {
        Ok(Some(_)) => None,
        Ok(None) if state.completed.is_empty() => None,
        Ok(None) => Some(Issue::Missing),
        Err(crate::keyring::KeyringError::Store(e)) => Some(Issue::Unreadable(e.to_string())),
        Err(e) => Some(Issue::Damaged(e.to_string())),
    }
}

async fn check_item<S: Store>(ctx: &Ctx<'_, S>, item: &Item<'_>) -> Checked {
    let mut out = Checked::default();
    match *item {
        Item::Object { id, object } => {
            let subject = Subject::Object(id.to_owned());
            let users = ctx.users.get(id).cloned().unwrap_or_default();
            let params = match parts::object_params(object) {
                Ok(p) => p,
                Err(issue) => {
                    out.problems.push(Problem {
                        subject,
                        part: None,
                        issue,
                        users,
                    });
                    return out;
                }
            };
            let macs = check_parts(
                ctx,
                &mut out,
                &subject,
                &users,
                &object.parts,
                Some(&params),
            )
            .await;
            if let (Some(macs), Some(key)) = (macs, &ctx.content_key) {
                let matches = content_id(key, object.size, object.part_size, &macs)
                    .is_ok_and(|cid| cid.to_hex() == id);
                if !matches {
                    out.problems.push(Problem {
                        subject,
                        part: None,
                        issue: Issue::Damaged(
                            "every part authenticates, but the plaintext does not match the \
                             object's content id (a catalog that mixed up objects)"
                                .into(),
                        ),
                        users,
                    });
                }
            }
        }
        Item::Plain { path, entry } => {
            let subject = Subject::File(path.to_owned());
            let total: u64 = entry.parts.iter().map(|p| p.len).sum();
            if total != entry.size || entry.parts.is_empty() {
                out.problems.push(Problem {
                    subject: subject.clone(),
                    part: None,
                    issue: Issue::Catalog(format!(
                        "{} parts of {total} bytes recorded for a file of {} bytes",
                        entry.parts.len(),
                        entry.size
                    )),
                    users: Vec::new(),
                });
            }
            check_parts(ctx, &mut out, &subject, &[], &entry.parts, None).await;
        }
        Item::InProgress { path, entry } => {
            let subject = Subject::InProgress(path.to_owned());
            let params = match entry.vault.as_ref().map(|_| draft_params(entry)) {
                None => None,
                Some(Ok(p)) => Some(p),
                Some(Err(issue)) => {
                    out.problems.push(Problem {
                        subject,
                        part: None,
                        issue,
                        users: Vec::new(),
                    });
                    return out;
                }
            };
            let macs =
                check_parts(ctx, &mut out, &subject, &[], &entry.parts, params.as_ref()).await;
            let recorded = entry.vault.as_ref().map(|d| &d.part_macs);
            if let (Some(macs), Some(recorded)) = (macs, recorded) {
                for (k, (mac, want)) in macs.iter().zip(recorded).enumerate() {
                    if hex::encode(mac) != *want {
                        out.problems.push(Problem {
                            subject: subject.clone(),
                            part: Some((k, entry.parts.len(), entry.parts[k].loc.clone())),
                            issue: Issue::Damaged(
                                "it authenticates, but its plaintext does not match the \
                                 recorded part MAC"
                                    .into(),
                            ),
                            users: Vec::new(),
                        });
                    }
                }
            }
        }
    }
    out
}

/// A vault in-progress file's object params, checked against the parts stored so far.
fn draft_params(entry: &InProgress) -> Result<ObjectParams, Issue> {
    // Salts are per part; this is the object's arithmetic only.
    let params = ObjectParams::new(
        [0; crate::vault::SALT_LEN],
        [0; crate::vault::NONCE_PREFIX_LEN],
        entry.size,
        entry.part_size,
    )
    .map_err(|e| Issue::Catalog(e.to_string()))?;
    if entry.parts.len() > params.part_count() as usize {
        return Err(Issue::Catalog(format!(
            "{} parts stored of an object that has {}",
            entry.parts.len(),
            params.part_count()
        )));
    }
    Ok(params)
}

/// Checks a run of parts; returns their MACs when every part was read in full, was fine,
/// and a content key is at hand.
async fn check_parts<S: Store>(
    ctx: &Ctx<'_, S>,
    out: &mut Checked,
    subject: &Subject,
    users: &[User],
    list: &[StoredPart],
    params: Option<&ObjectParams>,
) -> Option<Vec<[u8; MAC_LEN]>> {
    let n = list.len();
    let mut macs = Vec::with_capacity(n);
    let mut all_good = true;
    for (k, part) in list.iter().enumerate() {
        out.parts += 1;
        let result = check_part(ctx, part, k as u32, params).await;
        if let Some(progress) = ctx.progress {
            progress(part.len);
        }
        out.bytes += part.len;
        match result {
            Ok(mac) => macs.extend(mac),
            Err(issue) => {
                all_good = false;
                out.problems.push(Problem {
                    subject: subject.clone(),
                    part: Some((k, n, part.loc.clone())),
                    issue,
                    users: users.to_vec(),
                });
            }
        }
    }
    (all_good && ctx.full && macs.len() == n && ctx.content_key.is_some()).then_some(macs)
}

async fn check_part<S: Store>(
    ctx: &Ctx<'_, S>,
    part: &StoredPart,
    index: u32,
    params: Option<&ObjectParams>,
) -> Result<Option<[u8; MAC_LEN]>, Issue> {
    if let Some(params) = params {
        parts::check_stored_len(params, index, part)?;
    }
    if !ctx.full {
        let known = ctx.stats.lock().unwrap().get(&part.loc).copied();
        let stat = match known {
            Some(stat) => stat,
            None => {
                let stat = ctx
                    .store
                    .stat(&part.loc)
                    .await
                    .map_err(|e| Issue::Unreadable(e.to_string()))?;
                if part.offset.is_some() {
                    ctx.stats.lock().unwrap().insert(part.loc.clone(), stat);
                }
                stat
            }
        };
        let Some(stat) = stat else {
            return Err(Issue::Missing);
        };
        // A part inside a pack needs its range to be there; a whole blob, its length.
        let short = match part.offset {
            Some(offset) => stat.len < offset.saturating_add(part.len),
            None => stat.len != part.len,
        };
        if short {
            return Err(Issue::WrongLength {
                expected: part.offset.unwrap_or(0).saturating_add(part.len),
                found: stat.len,
            });
        }
        return match (part.store_mtime, stat.modified) {
            (Some(recorded), Some(now)) if recorded != now && params.is_none() => {
                rewritten(ctx.store, part, recorded, now).await
            }
            _ => Ok(None),
        };
    }
    let (dec, mac) = match (params, ctx.master, &ctx.content_key) {
        (Some(params), Some(master), Some(key)) => (
            Some(
                PartDecryptor::new(master, &parts::part_params(params, part)?, index)
                    .map_err(|e| Issue::Catalog(e.to_string()))?,
            ),
            Some(PartMac::new(key)),
        ),
        _ => (None, None),
    };
    let read = PartRead {
        dec,
        mac,
        out: None,
    };
    match parts::pump(ctx.store, part, read, &|_| {}).await {
        Ok(done) => Ok(done.mac),
        Err(PumpError::Part(issue)) => Err(issue),
        Err(PumpError::Write(e)) => Err(Issue::Unreadable(e.to_string())),
    }
}

/// A plain part whose modification time in the store is no longer the one recorded:
/// something wrote it since. Its content decides, read and hashed as `--full` would.
async fn rewritten<S: Store>(
    store: &S,
    part: &StoredPart,
    recorded: crate::time::Timestamp,
    now: crate::time::Timestamp,
) -> Result<Option<[u8; MAC_LEN]>, Issue> {
    let read = PartRead {
        dec: None,
        mac: None,
        out: None,
    };
    match parts::pump(store, part, read, &|_| {}).await {
        Ok(_) => Ok(None),
        Err(PumpError::Part(Issue::Damaged(why))) => Err(Issue::Damaged(format!(
            "modified in the store at {now} (it was stored at {recorded}), and {why}"
        ))),
        Err(PumpError::Part(issue)) => Err(issue),
        Err(PumpError::Write(e)) => Err(Issue::Unreadable(e.to_string())),
    }
}

/// What [`repair`] changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// Completed files forgotten (their current content is damaged): the next run stores
    /// them again.
    pub files: Vec<String>,
    /// Earlier versions forgotten because their content is damaged.
    pub versions: Vec<User>,
    /// Intact earlier versions no longer listed because their file was forgotten.
    pub orphaned_versions: Vec<User>,
    /// Damaged objects removed from the catalog.
    pub objects: Vec<String>,
    /// In-progress files forgotten: the next run starts them over.
    pub in_progress: Vec<String>,
    /// Problems left as they are (the store could not be read; the catalog blob).
    pub unresolved: usize,
}

impl RepairReport {
    /// Whether anything changed.
    pub fn changed(&self) -> bool {
        !(self.files.is_empty()
            && self.versions.is_empty()
            && self.objects.is_empty()
            && self.in_progress.is_empty())
    }
}

/// Edits `state` so that everything `report` found damaged is forgotten: files whose
/// current content is damaged leave `completed` (the next run stores them again),
/// damaged earlier versions leave `versions`, damaged objects leave `objects`, damaged
/// in-progress files start over. Problems that are not known damage (a store that could
/// not be read) change nothing.
pub fn repair(state: &mut State, report: &VerifyReport) -> RepairReport {
    let mut out = RepairReport::default();
    let mut objects = BTreeSet::new();
    let mut files = BTreeSet::new();
    let mut in_progress = BTreeSet::new();
    for p in &report.problems {
        if !p.issue.is_damage() || p.subject == Subject::Catalog {
            out.unresolved += 1;
            continue;
        }
        match &p.subject {
            Subject::Object(id) => {
                objects.insert(id.clone());
            }
            Subject::File(path) => {
                files.insert(path.clone());
            }
            Subject::InProgress(path) => {
                in_progress.insert(path.clone());
            }
            Subject::Catalog => {}
        }
    }
    let damaged = |id: &str| objects.contains(id);
    state.completed.retain(|path, c| {
        if files.contains(path) || c.object.as_deref().is_some_and(damaged) {
            out.files.push(path.clone());
            for (n, v) in c.versions.iter().enumerate() {
                let user = User {
                    path: path.clone(),
                    version: n + 1,
                };
                if damaged(&v.object) {
                    out.versions.push(user);
                } else {
                    out.orphaned_versions.push(user);
                }
            }
            return false;
        }
        let mut n = 0;
        c.versions.retain(|v| {
            n += 1;
            let bad = damaged(&v.object);
            if bad {
                out.versions.push(User {
                    path: path.clone(),
                    version: n,
                });
            }
            !bad
        });
        true
    });
    for id in &objects {
        if state.objects.remove(id).is_some() {
            out.objects.push(id.clone());
        }
    }
    for path in &in_progress {
        if state.in_progress.remove(path).is_some() {
            out.in_progress.push(path.clone());
        }
    }
    out
}
