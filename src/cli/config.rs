//! Validated settings built once from the raw flags; the library never sees clap.

use std::time::{Duration, SystemTime};

use super::args::{OrderArg, RunArgs, StateFromArg};
use crate::job::identity::job_name;
use crate::job::{JobSpec, StateOrigin};
use crate::runner::{Filter, Order, RetryPolicy, RunConfig};
use crate::source::any::SourceSpec;
use crate::state::{Encryption, Job, LoadOptions, OnCorrupt};
use crate::store::any::StoreSpec;

/// Everything `tgferry run` needs, checked.
#[derive(Debug)]
pub struct RunSettings {
    /// The job: source, store, state, how to open it.
    pub job: JobSpec,
    /// Runner behaviour.
    pub run: RunConfig,
    /// Budget from process start (the earlier of --budget and --deadline).
    pub budget: Option<Duration>,
    /// Reserve for saving state.
    pub reserve: Duration,
    /// Progress line interval.
    pub progress_interval: Duration,
}

/// A flag with a bad value: the message names the flag and the fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Checks that parts of `part_size` fit in a Telegram file once stored (a vault part is a
/// little longer than its content).
fn telegram_part_size(
    text: &str,
    part_size: u64,
    vault: bool,
    premium: bool,
) -> Result<(), UsageError> {
    let max = crate::telegram::api::max_file_size(premium);
    let stored = if vault {
        let seg = crate::vault::SEGMENT_SIZE as u64;
        part_size
            + crate::vault::PART_HEADER_LEN as u64
            + crate::vault::TAG_LEN as u64 * part_size.div_ceil(seg)
    } else {
        part_size
    };
    if stored <= max {
        return Ok(());
    }
    let largest = if vault { (max >> 20) - 1 } else { max >> 20 };
    let premium_hint = if premium {
        ""
    } else {
        " (4000 MiB with --telegram-premium on a Premium account)"
    };
    Err(UsageError(format!(
        "--part-size {text:?} is too large for Telegram: a stored part would be {stored} bytes, \
         over the {} MiB a Telegram file may hold{premium_hint}; use --part-size {largest}MiB or less",
        max >> 20
    )))
}

/// Budgets and deadlines further away than this are refused (a typo, and past it the
/// clock arithmetic overflows).
const MAX_BUDGET_YEARS: u64 = 100;
const MAX_BUDGET: Duration = Duration::from_secs(MAX_BUDGET_YEARS * 365 * 24 * 3600);

/// Parses `--deadline`: an RFC 3339 time.
fn deadline(text: &str) -> Result<jiff::Timestamp, UsageError> {
    text.trim().parse().map_err(|e: jiff::Error| {
        let e = e.to_string();
        if e.contains("overflow") || e.contains("not in the required range") {
            UsageError(format!(
                "--deadline {text:?} is out of range (more than {MAX_BUDGET_YEARS} years away, \
                 or before 1970); write e.g. 2026-11-22T06:00:00Z, or leave --deadline out"
            ))
        } else {
            UsageError(format!(
                "--deadline {text:?} is not an RFC 3339 time ({e}); write e.g. \
                 2026-11-22T06:00:00Z"
            ))
        }
    })
}

/// Whether `text` uses the unit `M` (months to the duration parser), which people write
/// for minutes.
fn uses_capital_m(text: &str) -> bool {
    let b = text.as_bytes();
    b.iter().enumerate().any(|(i, &c)| {
        c == b'M'
            && b[..i]
                .iter()
                .rev()
                .find(|c| !c.is_ascii_whitespace())
                .is_some_and(u8::is_ascii_digit)
            && b.get(i + 1).is_none_or(|n| !n.is_ascii_alphabetic())
    })
}

/// Parses a size flag (`8MiB`, `64MiB`, `1GiB`, or bytes).
pub(crate) fn size(flag: &str, text: &str) -> Result<u64, UsageError> {
    parse_size::Config::new()
        .with_binary()
        .parse_size(text.trim())
        .map_err(|e| {
            UsageError(format!(
                "{flag} {text:?} is not a size ({e}); write e.g. 8MiB or 64MiB"
            ))
        })
}

/// Parses a duration flag.
pub(crate) fn duration(flag: &str, text: &str) -> Result<Duration, UsageError> {
    if uses_capital_m(text) {
        return Err(UsageError(format!(
            "{flag} {text:?} is ambiguous: M could be minutes or months; write min for \
             minutes (e.g. 5min) or months for months"
        )));
    }
    humantime::parse_duration(text.trim()).map_err(|e| {
        UsageError(format!(
            "{flag} {text:?} is not a duration ({e}); write e.g. 5h30m, 90s"
        ))
    })
}

impl RunSettings {
    /// Checks the flags; `now` is the wall clock at process start.
    pub fn from_args(a: &RunArgs, now: SystemTime) -> Result<Self, UsageError> {
        let mut budget = match &a.budget {
            Some(b) => {
                let budget = duration("--budget", b)?;
                if budget > MAX_BUDGET {
                    return Err(UsageError(format!(
                        "--budget {b:?} is more than {} years; leave --budget out for a run \
                         without a time limit",
                        MAX_BUDGET_YEARS
                    )));
                }
                Some(budget)
            }
            None => None,
        };
        if let Some(d) = &a.deadline {
            let ts = deadline(d)?;
            let Ok(left) = SystemTime::from(ts).duration_since(now) else {
                return Err(UsageError(format!(
                    "--deadline {d:?} is already past (it is {} now): nothing could be stored \
                     before it; give a later time, or leave --deadline out",
                    crate::time::human_time(crate::time::from_system(now))
                )));
            };
            if left > MAX_BUDGET {
                return Err(UsageError(format!(
                    "--deadline {d:?} is more than {MAX_BUDGET_YEARS} years away; leave \
                     --deadline out for a run without a deadline"
                )));
            }
            budget = Some(budget.map_or(left, |b| b.min(left)));
        }
        let reserve = match &a.reserve {
            Some(r) => duration("--reserve", r)?,
            None => budget.map_or(Duration::from_secs(60), |b| {
                Duration::from_secs(60).min(b / 10)
            }),
        };
        let part_size = parse_size::Config::new()
            .with_binary()
            .parse_size(a.part_size.trim())
            .map_err(|e| {
                UsageError(format!(
                    "--part-size {:?} is not a size ({e}); write e.g. 512MiB or 2GiB",
                    a.part_size
                ))
            })?;
        if part_size == 0 {
            return Err(UsageError("--part-size must be more than 0".into()));
        }
        let seg = crate::vault::SEGMENT_SIZE as u64;
        if a.encryption == super::args::EncryptionArg::Vault && part_size % seg != 0 {
            return Err(UsageError(format!(
                "--part-size {:?} must be a multiple of 1 MiB for the vault (e.g. 512MiB)",
                a.part_size
            )));
        }
        let pack_threshold = size("--pack-threshold", &a.pack_threshold)?;
        let pack_size = size("--pack-size", &a.pack_size)?;
        if pack_size < 64 << 10 {
            return Err(UsageError(format!(
                "--pack-size {:?} must be at least 64KiB (64MiB is the default)",
                a.pack_size
            )));
        }
        let packing = (pack_threshold > 0).then(|| crate::runner::Packing {
            // A packed file is one part: larger ones are never packed.
            threshold: pack_threshold.min(part_size),
            size: pack_size,
        });
        if let Some(chat) = a.store.trim().strip_prefix("telegram:") {
            if packing.is_some() && a.encryption == super::args::EncryptionArg::Vault {
                telegram_part_size(&a.pack_size, pack_size, true, a.telegram_premium)
                    .map_err(|e| UsageError(e.0.replace("--part-size", "--pack-size")))?;
            }
            crate::telegram::api::ChatRef::parse(chat)
                .map_err(|e| UsageError(format!("--store telegram:{chat}: {e}")))?;
            telegram_part_size(
                &a.part_size,
                part_size,
                a.encryption == super::args::EncryptionArg::Vault,
                a.telegram_premium,
            )?;
        }
        if a.jobs == 0 || a.jobs > 64 {
            return Err(UsageError(format!(
                "--jobs {} must be between 1 and 64",
                a.jobs
            )));
        }
        if a.max_failures == 0 {
            return Err(UsageError("--max-failures must be at least 1".into()));
        }
        let retry =
            RetryPolicy::parse(&a.backoff).map_err(|e| UsageError(format!("--backoff: {e}")))?;
        let filter = Filter::new(&a.include, &a.exclude).map_err(UsageError)?;
        let order = match a.order {
            OrderArg::Path => Order::Path,
            OrderArg::SmallFirst => Order::SmallFirst,
            OrderArg::LargeFirst => Order::LargeFirst,
        };
        let source = SourceSpec::parse(&a.source).map_err(UsageError)?;
        let chat_options = chat_options(a, &source)?;
        let store = StoreSpec::parse(&a.store).map_err(|e| UsageError(e.to_string()))?;
        let encryption = match a.encryption {
            super::args::EncryptionArg::None => Encryption::None,
            super::args::EncryptionArg::Vault => Encryption::Vault,
        };
        if a.encrypt_state && encryption != Encryption::Vault {
            return Err(UsageError(
                "--encrypt-state seals the state under the vault's key: it needs --encryption \
                 vault"
                    .into(),
            ));
        }
        let origin = match a.state_from {
            StateFromArg::Local => StateOrigin::Local,
            StateFromArg::Artifact => StateOrigin::Artifact(fetch_config(&a.artifact, &a.state)?),
        };
        Ok(RunSettings {
            job: JobSpec {
                source,
                store,
                store_name: crate::job::identity::mask_secrets(&a.store),
                state: a.state.clone(),
                identity: Job {
                    source: job_name(&a.source),
                    store: job_name(&a.store),
                    encryption,
                    vault_id: None,
                },
                load: LoadOptions {
                    force: a.force,
                    on_corrupt: match a.on_corrupt_state {
                        super::args::OnCorruptArg::Fail => OnCorrupt::Fail,
                        super::args::OnCorruptArg::Fresh => OnCorrupt::Fresh,
                    },
                },
                origin,
                fresh_state: a.fresh_state,
                encrypt_state: a.encrypt_state,
                premium: a.telegram_premium,
                tg_connections: super::store::tg_connections(),
                chat_options,
                passphrase: None,
            },
            run: RunConfig {
                jobs: a.jobs,
                filter,
                max_failures: a.max_failures,
                retry,
                order,
                part_size,
                vault: None,
                packing,
            },
            budget,
            reserve,
            progress_interval: duration("--progress-interval", &a.progress_interval)?,
        })
    }
}

/// The options of a `telegram:` source; `--since` and `--until` are refused for others.
fn chat_options(
    a: &super::args::RunArgs,
    source: &SourceSpec,
) -> Result<crate::source::telegram::ChatOptions, UsageError> {
    use crate::source::telegram::{Bound, ChatOptions, PathLayout};
    let telegram = matches!(source, SourceSpec::Telegram(_));
    let takeout = a.tg_takeout.then_some(String::new());
    for (flag, given) in [
        ("--since", &a.since),
        ("--until", &a.until),
        ("--tg-takeout", &takeout),
    ] {
        if given.is_some() && !telegram {
            return Err(UsageError(format!(
                "{flag} applies to a telegram: source (chats read as files); --source {} is \
                 not one (--include/--exclude choose the files of any source)",
                a.source
            )));
        }
    }
    let bound = |flag, text: &Option<String>| {
        text.as_deref()
            .map(|t| Bound::parse(flag, t))
            .transpose()
            .map_err(UsageError)
    };
    let options = ChatOptions {
        layout: PathLayout::parse(&a.tg_layout).map_err(UsageError)?,
        since: bound("--since", &a.since)?,
        until: bound("--until", &a.until)?,
        takeout: a.tg_takeout,
    };
    if let SourceSpec::Telegram(chats) = source {
        options.check(chats.len()).map_err(UsageError)?;
    }
    Ok(options)
}

/// The environment variable holding the GitHub token (never a flag).
pub const TOKEN_ENV: &str = "GITHUB_TOKEN";
/// Hidden: the first retry delay for GitHub API calls (tests make it short).
pub const RETRY_DELAY_ENV: &str = "TGFERRY_GITHUB_RETRY_DELAY";

/// Where and how to fetch the state artifact, checked.
pub fn fetch_config(
    a: &super::args::ArtifactArgs,
    state: &std::path::Path,
) -> Result<crate::github::artifacts::FetchConfig, UsageError> {
    use crate::github::artifacts::{FetchConfig, RetryPolicy};
    let repository = a.repo.clone().filter(|r| !r.is_empty()).ok_or_else(|| {
        UsageError("no repository: set --repo OWNER/NAME (GITHUB_REPOSITORY inside Actions)".into())
    })?;
    let branch = a.branch.clone().filter(|b| !b.is_empty()).ok_or_else(|| {
        UsageError("no branch: set --branch (GITHUB_REF_NAME inside Actions)".into())
    })?;
    let max_size = parse_size::Config::new()
        .with_binary()
        .parse_size(a.max_state_size.trim())
        .map_err(|e| {
            UsageError(format!(
                "--max-state-size {:?} is not a size ({e}); write e.g. 1GiB",
                a.max_state_size
            ))
        })?;
    let mut retry = RetryPolicy::default();
    if let Ok(d) = std::env::var(RETRY_DELAY_ENV) {
        retry.min_delay = duration(RETRY_DELAY_ENV, &d)?;
    }
    let token = std::env::var(TOKEN_ENV)
        .ok()
        .filter(|t| !t.is_empty())
        .map(secrecy::SecretString::from);
    Ok(FetchConfig {
        api_url: a.api_url.clone(),
        repository,
        branch,
        token,
        name: a.artifact_name.clone(),
        state_path: state.to_owned(),
        max_size,
        retry,
    })
}
