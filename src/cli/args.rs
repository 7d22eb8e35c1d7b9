//! The command line as clap sees it: raw flags, as close to what was typed as possible, no
//! I/O. [`super::config`] turns them into validated settings once.
//!
//! A switch that an environment variable can set (`TGFERRY_QUIET`, `TGFERRY_FORCE`, ...)
//! takes the usual spellings there: 1/0, yes/no, true/false, on/off.

use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// Move large file collections into a store (a Telegram chat or a local folder) over many
/// time-budgeted runs, carrying progress in a portable JSON state file.
#[derive(Debug, Parser)]
#[command(
    name = "tgferry",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// More log output (-v: info, -vv: debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Telegram: connections file bytes are spread over (uploads and downloads; default 8,
    /// see docs/telegram.md "Connections and bots").
    #[arg(
        long,
        global = true,
        env = "TGFERRY_TG_CONNECTIONS",
        value_name = "N",
        value_parser = clap::value_parser!(u16).range(1..=32)
    )]
    pub tg_connections: Option<u16>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Store files from the source until everything is stored or the budget is spent.
    Run(Box<RunArgs>),
    /// Show a state file: progress, failures, the last runs.
    Status(StatusArgs),
    /// Reset failure counts so given-up files are tried again.
    Retry(RetryArgs),
    /// Print the JSON Schema of the state file.
    Schema,
    /// Create the vault (key file) in a store; `run` also does this on first use.
    Init(InitArgs),
    /// Restore files from a store into a folder.
    Restore(RestoreArgs),
    /// Check that every part the state (or the store's catalog) records is in the store,
    /// whole; with --full, that every byte is intact.
    Verify(VerifyArgs),
    /// Work with state files: fetch the previous run's state artifact from GitHub.
    State(StateArgs),
    /// Delete from a store what nothing needs: parts of uploads abandoned mid-file and
    /// parts no state or catalog refers to, older than --older-than.
    Prune(PruneArgs),
    /// Telegram account set-up: `tgferry telegram login` makes a session for CI.
    Telegram(TelegramArgs),
}

/// What to do with a state file that cannot be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnCorruptArg {
    /// Stop with an error; the file is left untouched.
    Fail,
    /// Move it aside to `<name>.corrupt.<timestamp>` and start a fresh state; entries that
    /// fail their integrity check are taken from the store's catalog or forgotten instead
    /// (a copy of the damaged state is kept).
    Fresh,
}

/// Work order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OrderArg {
    /// By path.
    Path,
    /// Smallest files first (most files per run).
    SmallFirst,
    /// Largest files first.
    LargeFirst,
}

/// How content is written to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EncryptionArg {
    /// The encrypted vault (docs/format.md); needs TGFERRY_PASSPHRASE.
    Vault,
    /// Plain copies under their relative paths, split into .001, .002... when large.
    None,
}

/// `tgferry run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// What to store: a local folder, an rclone remote as rclone:REMOTE:PATH (see
    /// docs/rclone.md), or the media of Telegram chats as telegram:CHAT[,CHAT…] (see
    /// docs/telegram.md, "Telegram as a source").
    #[arg(
        long,
        env = "TGFERRY_SOURCE",
        value_name = "DIR|rclone:REMOTE:PATH|telegram:CHAT"
    )]
    pub source: String,
    /// Where to store it: a local folder, telegram:CHAT (@username, a -100… id or me;
    /// credentials from TGFERRY_TG_*, see docs/telegram.md), or an rclone remote as
    /// rclone:REMOTE:PATH (see docs/rclone.md).
    #[arg(long, env = "TGFERRY_STORE", value_name = "STORE")]
    pub store: String,
    /// The state file (created on the first run).
    #[arg(
        long,
        env = "TGFERRY_STATE",
        value_name = "FILE",
        default_value = "tgferry-state.json"
    )]
    pub state: PathBuf,
    /// Time budget from process start, e.g. 5h30m; without it (and --deadline) the run goes
    /// until everything is stored.
    #[arg(long, env = "TGFERRY_BUDGET", value_name = "DURATION")]
    pub budget: Option<String>,
    /// Absolute deadline (RFC 3339, e.g. 2026-11-22T06:00:00Z); the earlier of this and
    /// --budget applies.
    #[arg(long, env = "TGFERRY_DEADLINE", value_name = "TIME")]
    pub deadline: Option<String>,
    /// Time kept at the end of the budget for saving state [default: 1m, at most a tenth of
    /// the budget].
    #[arg(long, env = "TGFERRY_RESERVE", value_name = "DURATION")]
    pub reserve: Option<String>,
    /// Files worked on at once.
    #[arg(long, env = "TGFERRY_JOBS", value_name = "N", default_value_t = 4)]
    pub jobs: usize,
    /// Only paths matching these globs (relative to the source, e.g. `**/*.jpg`).
    #[arg(
        long,
        env = "TGFERRY_INCLUDE",
        value_name = "GLOB",
        value_delimiter = ','
    )]
    pub include: Vec<String>,
    /// Leave out paths matching these globs.
    #[arg(
        long,
        env = "TGFERRY_EXCLUDE",
        value_name = "GLOB",
        value_delimiter = ','
    )]
    pub exclude: Vec<String>,
    /// A telegram: source: how a message's media is named, from {chat}, {yyyy}, {mm},
    /// {dd}, {id}, {name} and {kind}.
    #[arg(
        long,
        env = "TGFERRY_TG_LAYOUT",
        value_name = "TEMPLATE",
        default_value = crate::source::telegram::DEFAULT_LAYOUT
    )]
    pub tg_layout: String,
    /// A telegram: source: only messages sent on or after this date (2024-05-01), time
    /// (RFC 3339) or with at least this message id.
    #[arg(long, env = "TGFERRY_SINCE", value_name = "DATE|ID")]
    pub since: Option<String>,
    /// A telegram: source: only messages sent before this date, time, or message id.
    #[arg(long, env = "TGFERRY_UNTIL", value_name = "DATE|ID")]
    pub until: Option<String>,
    /// A telegram: source read with a user account: read inside a takeout session (an
    /// export, with higher flood limits; Telegram may first ask to confirm it in an app).
    #[arg(long, env = "TGFERRY_TG_TAKEOUT", value_parser = BoolishValueParser::new())]
    pub tg_takeout: bool,
    /// Runs a file may fail in before it is given up.
    #[arg(
        long,
        env = "TGFERRY_MAX_FAILURES",
        value_name = "N",
        default_value_t = 3
    )]
    pub max_failures: u32,
    /// Waits between retries of a failing file within a run ("none" for no retries).
    #[arg(
        long,
        env = "TGFERRY_BACKOFF",
        value_name = "LIST",
        default_value = "30s,60s,120s,300s,600s"
    )]
    pub backoff: String,
    /// Work order.
    #[arg(long, env = "TGFERRY_ORDER", value_enum, default_value = "path")]
    pub order: OrderArg,
    /// Size of the parts files are cut into (e.g. 512MiB, 2GiB).
    #[arg(
        long,
        env = "TGFERRY_PART_SIZE",
        value_name = "SIZE",
        default_value = "512MiB"
    )]
    pub part_size: String,
    /// Vault: files of at most this size share packs, one stored part (one Telegram
    /// message) per --pack-size of them; 0 gives every file parts of its own. Plain mode
    /// never packs.
    #[arg(
        long,
        env = "TGFERRY_PACK_THRESHOLD",
        value_name = "SIZE",
        default_value = "8MiB"
    )]
    pub pack_threshold: String,
    /// Vault: the size a pack is stored at (it is assembled in memory).
    #[arg(
        long,
        env = "TGFERRY_PACK_SIZE",
        value_name = "SIZE",
        default_value = "64MiB"
    )]
    pub pack_size: String,
    /// How content is written to the store.
    #[arg(long, env = "TGFERRY_ENCRYPTION", value_enum, default_value = "vault")]
    pub encryption: EncryptionArg,
    /// The Telegram account has Premium: parts up to 4000 MiB instead of 2000 MiB.
    #[arg(long, env = "TGFERRY_TG_PREMIUM", value_parser = BoolishValueParser::new())]
    pub telegram_premium: bool,
    /// Use a state that belongs to another source or store.
    #[arg(long, env = "TGFERRY_FORCE", value_parser = BoolishValueParser::new())]
    pub force: bool,
    /// What to do with a state file that cannot be parsed.
    #[arg(
        long,
        env = "TGFERRY_ON_CORRUPT_STATE",
        value_enum,
        default_value = "fail"
    )]
    pub on_corrupt_state: OnCorruptArg,
    /// Interval of progress lines when not on a terminal (CI).
    #[arg(
        long,
        env = "TGFERRY_PROGRESS_INTERVAL",
        value_name = "DURATION",
        default_value = "30s"
    )]
    pub progress_interval: String,
    /// No progress output (warnings and the summary still print).
    #[arg(short, long, env = "TGFERRY_QUIET", value_parser = BoolishValueParser::new())]
    pub quiet: bool,
    /// Without a state file, start a new state even when the store holds a catalog (by
    /// default the run starts from the catalog, so nothing stored is stored again).
    #[arg(long, env = "TGFERRY_FRESH_STATE", value_parser = BoolishValueParser::new())]
    pub fresh_state: bool,
    /// Where the state comes from: the local file, or the previous run's GitHub artifact
    /// (fetched when no local state file exists; see `tgferry state fetch`).
    #[arg(long, env = "TGFERRY_STATE_FROM", value_enum, default_value = "local")]
    pub state_from: StateFromArg,
    /// Also write the state sealed under the vault's key to `<state>.sealed` (for public
    /// repositories, whose artifacts anyone signed in can download); needs the vault.
    #[arg(long, env = "TGFERRY_ENCRYPT_STATE", value_parser = BoolishValueParser::new())]
    pub encrypt_state: bool,
    /// Where to find the artifact, for --state-from artifact.
    #[command(flatten)]
    pub artifact: ArtifactArgs,
}

/// Where `run` takes its state from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StateFromArg {
    /// The local state file (a new state if there is none).
    Local,
    /// The newest state artifact of this branch on GitHub, unless a local file exists.
    Artifact,
}

/// Where the state artifact lives on GitHub. The token comes from GITHUB_TOKEN only (never
/// a flag, which other processes could read).
#[derive(Debug, Args)]
pub struct ArtifactArgs {
    /// The artifact's name.
    #[arg(
        long,
        env = "TGFERRY_STATE_ARTIFACT",
        value_name = "NAME",
        default_value = "tgferry-state"
    )]
    pub artifact_name: String,
    /// The repository, OWNER/NAME.
    #[arg(long, env = "GITHUB_REPOSITORY", value_name = "OWNER/NAME")]
    pub repo: Option<String>,
    /// The branch whose artifacts count.
    #[arg(long, env = "GITHUB_REF_NAME", value_name = "BRANCH")]
    pub branch: Option<String>,
    /// The REST API root (GitHub Enterprise: https://HOST/api/v3).
    #[arg(
        long,
        env = "GITHUB_API_URL",
        value_name = "URL",
        default_value = "https://api.github.com"
    )]
    pub api_url: String,
    /// The largest state (or journal) accepted from an artifact.
    #[arg(long, value_name = "SIZE", default_value = "1GiB")]
    pub max_state_size: String,
}

/// `tgferry state`.
#[derive(Debug, Args)]
pub struct StateArgs {
    /// The state command.
    #[command(subcommand)]
    pub command: StateCommand,
}

/// `tgferry state ...`.
#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Download the previous run's state (and journal) from its GitHub Actions artifact:
    /// the newest unexpired one of this branch and repository, whatever the run's outcome.
    Fetch(FetchArgs),
    /// Write `<state>.sealed`: the state (journal included) sealed under the store's vault
    /// key, opened later with the passphrase alone (`tgferry status`, `state fetch`).
    Seal(SealArgs),
}

/// `tgferry state seal`.
#[derive(Debug, Args)]
pub struct SealArgs {
    /// The state to seal.
    #[arg(
        long,
        env = "TGFERRY_STATE",
        value_name = "FILE",
        default_value = "tgferry-state.json"
    )]
    pub state: PathBuf,
    /// The store whose vault key seals it (needs TGFERRY_PASSPHRASE).
    #[arg(long, env = "TGFERRY_STORE", value_name = "STORE")]
    pub store: String,
}

/// `tgferry state fetch`.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Where to write the state (its journal goes beside it).
    #[arg(
        long,
        env = "TGFERRY_STATE",
        value_name = "FILE",
        default_value = "tgferry-state.json"
    )]
    pub state: PathBuf,
    /// The store, whose encrypted catalog is used when the artifact has expired (needs
    /// TGFERRY_PASSPHRASE).
    #[arg(long, env = "TGFERRY_STORE", value_name = "STORE")]
    pub store: Option<String>,
    /// Fail (exit 11) when there is no usable state, instead of starting a new one.
    #[arg(long)]
    pub require: bool,
    /// Replace a state file that already exists here.
    #[arg(long)]
    pub overwrite: bool,
    /// Where to find the artifact.
    #[command(flatten)]
    pub artifact: ArtifactArgs,
}

/// `tgferry status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The state file.
    #[arg(env = "TGFERRY_STATE", default_value = "tgferry-state.json")]
    pub state: PathBuf,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

/// `tgferry retry`.
#[derive(Debug, Args)]
pub struct RetryArgs {
    /// The state file.
    pub state: PathBuf,
    /// Paths to reset (as shown by `tgferry status`).
    #[arg(required_unless_present = "all")]
    pub paths: Vec<String>,
    /// Reset every failed and given-up file.
    #[arg(long, conflicts_with = "paths")]
    pub all: bool,
}

/// `tgferry init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The store to create the vault in.
    #[arg(long, env = "TGFERRY_STORE", value_name = "STORE")]
    pub store: String,
}

/// `tgferry restore`.
#[derive(Debug, Args)]
#[command(disable_version_flag = true)] // --version N picks a version here
pub struct RestoreArgs {
    /// The store to restore from.
    #[arg(long, env = "TGFERRY_STORE", value_name = "STORE")]
    pub store: String,
    /// The folder to restore into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
    /// Take the catalog from this state file [default: the store's encrypted catalog, which
    /// needs only the passphrase].
    #[arg(long, env = "TGFERRY_STATE", value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Only paths matching these globs, relative to the source (`photos/**`, `**/*.jpg`); a
    /// folder selects everything under it [default: everything].
    #[arg(value_name = "PATTERN")]
    pub patterns: Vec<String>,
    /// Restore the content N versions back: 0 the current one, 1 the one before, ...
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub version: usize,
    /// Replace existing files that differ (identical ones, same size and modification
    /// time, are always left alone).
    #[arg(long)]
    pub overwrite: bool,
    /// Files restored at once.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub jobs: usize,
    /// No progress output (errors and the summary still print).
    #[arg(short, long, env = "TGFERRY_QUIET", value_parser = BoolishValueParser::new())]
    pub quiet: bool,
}

/// `tgferry verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The store to check.
    #[arg(long, env = "TGFERRY_STORE", value_name = "STORE")]
    pub store: String,
    /// Take the catalog from this state file [default: the store's encrypted catalog].
    #[arg(long, env = "TGFERRY_STATE", value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Read every byte: authenticate every vault segment and match each object to its
    /// content id, or check plain parts' SHA-256 (no plaintext is written anywhere).
    /// Without it only lengths are checked.
    #[arg(long)]
    pub full: bool,
    /// Forget damaged and missing files in the state file (so the next run stores them
    /// again) and write the store's catalog anew; needs --state.
    #[arg(long, requires = "state")]
    pub repair: bool,
    /// Objects (or files) checked at once.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub jobs: usize,
    /// No progress output (problems and the summary still print).
    #[arg(short, long, env = "TGFERRY_QUIET", value_parser = BoolishValueParser::new())]
    pub quiet: bool,
}

/// `tgferry prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// The store to prune.
    #[arg(long, env = "TGFERRY_STORE", value_name = "STORE")]
    pub store: String,
    /// The state file of the store's job (abandoned uploads are dropped from it).
    #[arg(long, env = "TGFERRY_STATE", value_name = "FILE")]
    pub state: PathBuf,
    /// Only delete leftovers older than this (a run elsewhere may be storing parts that
    /// no saved state knows yet).
    #[arg(long, value_name = "DURATION", default_value = "7d")]
    pub older_than: String,
    /// List what would be deleted; delete nothing and leave the state alone.
    #[arg(long)]
    pub dry_run: bool,
    /// Vault: also rewrite packs whose live share is below SHARE (0 to 1; 0.5 when
    /// given bare): their live objects are copied unchanged into new packs, the state and
    /// catalog saved, then the old packs deleted.
    #[arg(
        long,
        value_name = "SHARE",
        num_args = 0..=1,
        default_missing_value = "0.5",
        require_equals = true
    )]
    pub repack: Option<f64>,
    /// The size new packs are closed at (with --repack).
    #[arg(long, value_name = "SIZE", default_value = "64MiB")]
    pub pack_size: String,
}

/// `tgferry telegram`.
#[derive(Debug, Args)]
pub struct TelegramArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: TelegramCommand,
}

/// `tgferry telegram` subcommands.
#[derive(Debug, Subcommand)]
pub enum TelegramCommand {
    /// Sign in to a user account (phone, code, 2FA password), or a bot with --bot, and
    /// print a session line for TGFERRY_TG_SESSION; needs TGFERRY_TG_API_ID and
    /// TGFERRY_TG_API_HASH.
    Login(LoginArgs),
}

/// `tgferry telegram login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Write the session to this file (created with mode 0600) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Sign a bot in once (its token from TGFERRY_TG_BOT_TOKEN, else asked) and print a
    /// session line for TGFERRY_TG_SESSION that every run reuses: Telegram makes bots
    /// that sign in on every run wait, sometimes for an hour.
    #[arg(long)]
    pub bot: bool,
    /// The chat the store will live in (-100…): resolved now and kept in the session
    /// line, so that no run has to look for it among the account's chats.
    #[arg(long, value_name = "CHAT", value_parser = parse_login_chat)]
    pub chat: Option<crate::telegram::api::ChatRef>,
}

fn parse_login_chat(s: &str) -> Result<crate::telegram::api::ChatRef, String> {
    crate::telegram::api::ChatRef::parse(s)
}
