//! The state file's data model: what is stored where, what failed, what is in flight.
//!
//! These types are the single source of truth for `state-schema.json` (generated with
//! schemars) and for `docs/state.md`. Field names are part of the portable format that
//! users query with jq: add fields with `#[serde(default)]`, never rename or repurpose one
//! without bumping [`STATE_VERSION`].

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// The state format version this build writes. Readers refuse anything newer.
pub const STATE_VERSION: u32 = 2;

/// How many run records the history keeps (oldest dropped first).
pub const RUN_HISTORY_LIMIT: usize = 100;

/// The whole state of one job: a source, a store and everything moved between them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "tgferry state file")]
pub struct State {
    /// Format version of this file; see `docs/state.md` "Versioning".
    pub version: u32,
    /// The tgferry version that wrote this file last.
    #[serde(default)]
    pub tool_version: String,
    /// When this file was last written.
    pub last_updated: Timestamp,
    /// Full saves so far. The journal beside the file names the generation it extends,
    /// so a journal that was already folded in is never applied twice.
    #[serde(default)]
    pub generation: u64,
    /// The source and store this state belongs to.
    pub job: Job,
    /// Files stored completely, by path key: relative to the source root, `/`-separated,
    /// a backslash in a name written `\\` and a byte that is not UTF-8 `\xHH` (one to one;
    /// `docs/state.md`, "Path keys").
    #[serde(default)]
    pub completed: BTreeMap<String, Completed>,
    /// Files whose last attempt failed, with counts across runs (by path key).
    #[serde(default)]
    pub failed: BTreeMap<String, Failed>,
    /// Files of several parts that a run stopped in the middle of (by path key).
    #[serde(default)]
    pub in_progress: BTreeMap<String, InProgress>,
    /// Vault mode: stored contents by content id (keyed; reveals nothing without the key).
    #[serde(default)]
    pub objects: BTreeMap<String, Object>,
    /// Source entries that are refused on purpose (links, other non-regular files, names
    /// the source cannot keep), by path key, with the reason.
    #[serde(default)]
    pub skipped: BTreeMap<String, Skipped>,
    /// Running totals over all runs.
    #[serde(default)]
    pub stats: Stats,
    /// The most recent runs, oldest first (at most 100).
    #[serde(default)]
    pub runs: Vec<RunRecord>,
    /// Integrity tags of the `completed` and `in_progress` entries (docs/state.md,
    /// "integrity"); absent in a state written before tgferry had them.
    #[serde(default, skip_serializing_if = "Integrity::is_empty")]
    pub integrity: Integrity,
    /// Permission bits and folders as of the last listing, which `restore` gives back
    /// (absent in states written before they were recorded).
    #[serde(default, skip_serializing_if = "Meta::is_empty")]
    pub meta: Meta,
    /// A `telegram:` source's knowledge of its chats, by chat as given (`@name`,
    /// `-100…`, `me`): where reading stopped and the media messages seen, so that a run
    /// reads only what changed since (docs/telegram.md, "Telegram as a source").
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub telegram_chats: BTreeMap<String, ChatCatalog>,
}

/// What a `telegram:` source knows of one chat. Not covered by the integrity tags: it
/// says what the chat holds, not which stored bytes are whose; a damaged or lost catalog
/// costs a new reading of the chat, never content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ChatCatalog {
    /// The channel's update sequence number (`pts`) the catalog is current to; 0 for
    /// chats that are not channels or supergroups (read by message id instead).
    #[serde(default)]
    pub pts: i32,
    /// The newest message id seen.
    #[serde(default)]
    pub top_id: i32,
    /// The messages with media, by message id.
    #[serde(default)]
    pub media: BTreeMap<i32, ChatMedia>,
}

/// One message's media as a `telegram:` source lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ChatMedia {
    /// Its file name (absent where Telegram gives none: photos, voice notes).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// `document`, `photo`, `video`, `audio` or `voice`.
    pub kind: String,
    /// Its MIME type (absent where Telegram gives none).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mime: String,
    /// Telegram's id of the document or photo: the same media forwarded elsewhere has
    /// the same id, and is read only once.
    pub media_id: i64,
    /// When the message was sent.
    pub date: Timestamp,
    /// When an edit last replaced its media (its time as a file from then on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced: Option<Timestamp>,
}

/// Integrity tags over what identifies stored bytes, one per `completed` and `in_progress`
/// entry: keyed under the vault's master key, or a plain checksum in plain mode
/// (`crate::state::integrity`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Integrity {
    /// The tag scheme (1); 0 when absent: a state without tags.
    #[serde(default)]
    pub scheme: u32,
    /// Tags of `completed` entries by path (32 hex digits each).
    #[serde(default)]
    pub completed: BTreeMap<String, String>,
    /// Tags of `in_progress` entries by path.
    #[serde(default)]
    pub in_progress: BTreeMap<String, String>,
}

impl Integrity {
    /// No scheme and no tags: nothing to write.
    pub fn is_empty(&self) -> bool {
        self.scheme == 0 && self.completed.is_empty() && self.in_progress.is_empty()
    }
}

/// Identifies what a state belongs to, so a state is never applied to another job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Job {
    /// The source, as given on the command line (`/data/photos`, `rclone:nas:photos`).
    pub source: String,
    /// The store (`/mnt/backup`, `telegram:@mychannel`).
    pub store: String,
    /// How content is written to the store.
    pub encryption: Encryption,
    /// For the vault: the id of the store's key file, so a state is never used with
    /// another vault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_id: Option<String>,
}

/// How content is written to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Encryption {
    /// Plain copies under their relative paths, split into `.001`, `.002`, ... when large.
    None,
    /// The encrypted vault (docs/format.md): opaque part names, deduplicated objects.
    Vault,
}

/// What a listing found about files and folders beyond their content: permission bits
/// and the source's folders (empty ones included) with their modification times. Not
/// covered by the integrity tags: it does not say which stored bytes are whose, and a
/// damaged entry costs a permission or a folder time, never content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Meta {
    /// Permission bits (`mode & 0o7777`) of files, by path; sources without them (rclone)
    /// record none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub modes: BTreeMap<String, u32>,
    /// The source's folders, by path relative to the source (not the source itself).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub folders: BTreeMap<String, FolderMeta>,
}

impl Meta {
    /// Nothing recorded.
    pub fn is_empty(&self) -> bool {
        self.modes.is_empty() && self.folders.is_empty()
    }
}

/// A folder of the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FolderMeta {
    /// Its modification time.
    pub mtime: Timestamp,
    /// Its permission bits (`mode & 0o7777`), where the source has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
}

/// A stored part: where it is and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StoredPart {
    /// Store-specific location (local store: path relative to the store root).
    pub loc: String,
    /// Bytes of this part as stored (for the vault: header, segments and tags).
    pub len: u64,
    /// Plain mode: SHA-256 of the part's bytes, lowercase hex. Empty (and left out) for
    /// the vault, whose segments carry GCM tags and whose parts carry keyed MACs.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sha256: String,
    /// Vault mode: the random salt (hex) this part was encrypted under. Every part, and
    /// every attempt at a part, gets its own, so no nonce is ever used twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
    /// Vault mode: the part's STREAM nonce prefix (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce_prefix: Option<String>,
    /// Plain mode, stores that keep one (a folder): the part's modification time in the
    /// store when it was recorded, so that `verify` notices a part rewritten since
    /// without reading it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_mtime: Option<Timestamp>,
    /// Vault mode, a part inside a pack: where its bytes start in the stored blob at
    /// `loc`, which holds other parts too (`len` bytes from here are this part). Absent:
    /// the part is the whole blob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
}

/// A stored content in the vault, shared by every path (and version) with that content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Object {
    /// Plaintext size in bytes.
    pub size: u64,
    /// Plaintext bytes per part.
    pub part_size: u64,
    /// When it was stored.
    pub stored_at: Timestamp,
    /// The parts, in order.
    pub parts: Vec<StoredPart>,
}

/// An earlier version of a file whose content changed (vault only; still restorable).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Version {
    /// Size of that version.
    pub size: u64,
    /// Its modification time.
    pub mtime: Timestamp,
    /// When it was stored.
    pub stored_at: Timestamp,
    /// Its content id in `objects`.
    pub object: String,
}

/// Vault details of a file stopped in the middle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ObjectDraft {
    /// Keyed MACs of the parts stored so far (hex), from which the content id is made.
    #[serde(default)]
    pub part_macs: Vec<String>,
}

/// A file stored completely.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Completed {
    /// Size in bytes when stored.
    pub size: u64,
    /// Modification time when stored; with `size` this decides whether a file changed.
    pub mtime: Timestamp,
    /// When the last part was stored.
    pub stored_at: Timestamp,
    /// Plain mode: the parts, in order; their contents concatenated are the file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<StoredPart>,
    /// Vault mode: the content id of the file's object in `objects`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// Vault mode: earlier versions, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<Version>,
}

/// A file whose last attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Failed {
    /// Runs in which this file failed (the failure cap `--max-failures` counts these).
    pub attempts: u32,
    /// Failed tries in all, retries within a run included.
    #[serde(default)]
    pub tries: u32,
    /// The last error message.
    pub last_error: String,
    /// Whether the last error looked transient (worth retrying soon) or permanent.
    pub kind: FailureKind,
    /// When the first failure in the current streak happened.
    pub first_failed: Timestamp,
    /// When the last failure happened.
    pub last_failed: Timestamp,
    /// True once `attempts` reached the cap: later runs leave the file alone until
    /// `tgferry retry` resets it.
    #[serde(default)]
    pub given_up: bool,
}

/// Whether an error is worth retrying within the same run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// I/O hiccups, a file that changed while read, store timeouts: retried with backoff.
    Transient,
    /// Permission denied and the like: retried only in the next run.
    Permanent,
}

/// A file of several parts that was stopped in the middle; the next run resumes at part
/// `parts.len()` if size and mtime still match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InProgress {
    /// Size in bytes when the first part was read.
    pub size: u64,
    /// Modification time when the first part was read.
    pub mtime: Timestamp,
    /// Part size in bytes the parts were cut at.
    pub part_size: u64,
    /// Total number of parts the file needs.
    pub parts_total: u64,
    /// When the first part was stored.
    pub started: Timestamp,
    /// The parts stored so far, in order.
    pub parts: Vec<StoredPart>,
    /// Vault mode: the part MACs so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault: Option<ObjectDraft>,
}

/// A source entry refused on purpose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Skipped {
    /// Why, in words, with what to do about it.
    pub reason: String,
    /// When it was first seen.
    pub since: Timestamp,
}

/// Running totals over all runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Stats {
    /// Files stored completely (a file stored again after a change counts again).
    pub total_uploaded: u64,
    /// Runs in which some file failed, summed over files.
    pub total_failed: u64,
    /// Content bytes written to the store.
    pub total_bytes: u64,
    /// Parts written to the store.
    #[serde(default)]
    pub total_parts: u64,
    /// Runs started.
    #[serde(default)]
    pub runs: u64,
}

/// Why a run stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// Everything in the source is stored (some files may have failed or been given up).
    Complete,
    /// Nothing had changed since the last run.
    NothingToDo,
    /// The time budget (or deadline) was spent; the next run continues.
    BudgetSpent,
    /// The store or the source (Telegram) asked to wait longer than the budget allows; see
    /// `resume_after`.
    RateLimited,
    /// SIGINT or SIGTERM; state was saved.
    Interrupted,
    /// A fatal error (store full, source gone) ended the run; see `detail`.
    Error,
    /// The process died without saving (found when the next run replayed its journal).
    Killed,
}

/// One run, as kept in the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RunRecord {
    /// When the run started.
    pub started: Timestamp,
    /// When it stopped (for killed runs: its last checkpoint).
    pub ended: Timestamp,
    /// Why it stopped.
    pub stop_reason: StopReason,
    /// Files stored completely in this run.
    pub files_completed: u64,
    /// Files that failed in this run.
    pub files_failed: u64,
    /// Parts stored in this run.
    pub parts_stored: u64,
    /// Bytes written to the store in this run: the stored parts' lengths (under a vault,
    /// more than the source's bytes: headers and tags).
    pub bytes: u64,
    /// For `rate_limited`: when the store accepts uploads again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_after: Option<Timestamp>,
    /// For `error`: what ended the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The tgferry version that ran.
    #[serde(default)]
    pub tool_version: String,
    /// Files in the source (after filters) when the run listed it.
    #[serde(default)]
    pub files_total: u64,
    /// Their bytes.
    #[serde(default)]
    pub bytes_total: u64,
}

impl std::fmt::Display for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let enc = match self.encryption {
            Encryption::None => "none",
            Encryption::Vault => "vault",
        };
        write!(
            f,
            "source {}, store {}, encryption {enc}",
            self.source, self.store
        )?;
        if let Some(id) = &self.vault_id {
            write!(f, ", vault {id}")?;
        }
        Ok(())
    }
}

impl State {
    /// Every store location the state refers to: parts of completed files, of vault
    /// objects (current and older versions) and of unfinished uploads.
    pub fn referenced_locs(&self) -> std::collections::HashSet<&str> {
        let completed = self.completed.values().flat_map(|c| &c.parts);
        let objects = self.objects.values().flat_map(|o| &o.parts);
        let drafts = self.in_progress.values().flat_map(|i| &i.parts);
        completed
            .chain(objects)
            .chain(drafts)
            .map(|p| p.loc.as_str())
            .collect()
    }

    /// A new, empty state for `job`.
    pub fn new(job: Job) -> Self {
        State {
            version: STATE_VERSION,
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            last_updated: crate::time::now(),
            generation: 0,
            job,
            completed: BTreeMap::new(),
            failed: BTreeMap::new(),
            in_progress: BTreeMap::new(),
            objects: BTreeMap::new(),
            skipped: BTreeMap::new(),
            stats: Stats::default(),
            runs: Vec::new(),
            integrity: Integrity::default(),
            meta: Meta::default(),
            telegram_chats: BTreeMap::new(),
        }
    }

    /// Appends a run record, keeping at most [`RUN_HISTORY_LIMIT`].
    pub fn push_run(&mut self, run: RunRecord) {
        self.runs.push(run);
        if self.runs.len() > RUN_HISTORY_LIMIT {
            let excess = self.runs.len() - RUN_HISTORY_LIMIT;
            self.runs.drain(..excess);
        }
    }

    /// The JSON Schema of the state file, as checked in at `state-schema.json`.
    pub fn json_schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(State)).expect("schema serializes")
    }
}

impl RunRecord {
    /// A record for a run that started at `started` and has done nothing yet.
    pub fn started(started: Timestamp) -> Self {
        RunRecord {
            started,
            ended: started,
            stop_reason: StopReason::Killed,
            files_completed: 0,
            files_failed: 0,
            parts_stored: 0,
            bytes: 0,
            resume_after: None,
            detail: None,
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            files_total: 0,
            bytes_total: 0,
        }
    }
}
