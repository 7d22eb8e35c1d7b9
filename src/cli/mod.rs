//! The command line: parses flags ([`args`]), validates them once ([`config`]), runs the
//! subcommand and maps every outcome to a documented exit code ([`exit`]).

pub mod args;
pub mod config;
pub mod exit;
mod github;
mod prune;
mod restore;
mod store;
mod telegram;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use clap::Parser;
use tokio_util::sync::CancellationToken;

use crate::github::actions::{self, Actions};
use crate::keyring;
use crate::report::{progress, status::Status, summary};
use crate::runner::{Budget, Events, RunConfig, RunError, RunReport, Runner, VaultKeys};
use crate::source::Source;
use crate::source::local::LocalSource;
use crate::source::rclone::RcloneSource;
use crate::state::{Encryption, StateError, StateFile, StopReason};
use crate::store::Store;
use args::{Cli, Command};
use exit::Exit;

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    // The budget is measured from process start.
    let started = std::time::Instant::now();
    let wall = SystemTime::now();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    init_logging(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::INTERNAL);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Run(a) => {
                let result = run(*a, started, wall).await;
                if let (Err(e), Some(gha)) = (&result, Actions::from_env()) {
                    gha.failed(&e.message);
                }
                result
            }
            Command::Status(a) => status(a),
            Command::Retry(a) => retry(a),
            Command::Init(a) => init(a).await,
            Command::Restore(a) => restore::restore(a).await,
            Command::Verify(a) => restore::verify(a).await,
            Command::Prune(a) => prune::prune(a, wall).await,
            Command::Telegram(a) => match a.command {
                args::TelegramCommand::Login(l) => telegram::login(l).await,
            },
            Command::State(a) => match a.command {
                args::StateCommand::Fetch(f) => github::fetch(f).await,
                args::StateCommand::Seal(f) => github::seal(f).await,
            },
            Command::Schema => {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&crate::state::State::json_schema())
                        .expect("schema serializes")
                );
                Ok(exit::OK)
            }
        }
    });
    // Blocking reads of the source may still be parked; do not wait for them.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .try_init();
}

/// Cancels `token` on SIGINT or SIGTERM (GitHub sends SIGINT, then SIGTERM 7.5 s later);
/// a second signal ends the process at once (state writes are atomic, so that is safe).
fn watch_signals(token: CancellationToken) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            let name = tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            };
            eprintln!("{name} received: stopping and saving state (a second signal exits at once)");
            token.cancel();
            tokio::select! {
                _ = int.recv() => {},
                _ = term.recv() => {},
            }
            eprintln!("second signal: exiting now");
            std::process::exit(exit::INTERRUPTED as i32);
        }
        #[cfg(not(unix))]
        {
            if tokio::signal::ctrl_c().await.is_ok() {
                token.cancel();
            }
        }
    });
}

async fn run(a: args::RunArgs, started: std::time::Instant, wall: SystemTime) -> Result<u8, Exit> {
    let settings = config::RunSettings::from_args(&a, wall).map_err(Exit::usage)?;
    // `rclone:REMOTE:PATH` is an rclone remote; anything else a local folder.
    let rclone = match RcloneSource::from_source(&a.source) {
        Some(Ok(r)) => Some(r.with_read_window(settings.run.part_size)),
        Some(Err(message)) => return Err(Exit::usage(config::UsageError(message))),
        None => None,
    };
    if a.encrypt_state && settings.job.encryption != Encryption::Vault {
        return Err(Exit::usage(config::UsageError(
            "--encrypt-state seals the state under the vault's key: it needs --encryption vault"
                .into(),
        )));
    }
    let mut sealer = None;
    if a.state_from == args::StateFromArg::Artifact {
        if a.state.exists() {
            eprintln!(
                "{} exists: using it instead of the state artifact",
                a.state.display()
            );
        } else {
            let store = (settings.job.encryption == Encryption::Vault).then_some(a.store.as_str());
            github::fetch_into(&a.artifact, &a.state, store, false).await?;
        }
    }
    let started = tokio::time::Instant::from_std(started);
    let budget = match settings.budget {
        Some(b) => Budget::until(started, started + b, settings.reserve),
        None => Budget::unlimited(started),
    };
    let mut settings = settings;
    // Store credentials are checked (no I/O yet) before the state is touched.
    let plain = settings.job.encryption == Encryption::None;
    let store = Arc::new(store::open(&a.store, plain, settings.telegram_premium)?);
    store.set_wait_deadline(budget.stop_at());
    let reserve = settings.reserve;
    // The state's lock first: a second process stops here before touching the store.
    let (mut state, opened) =
        StateFile::open(&a.state, &settings.job, &settings.load).map_err(Exit::state)?;
    if settings.job.encryption == Encryption::Vault {
        let pass = keyring::passphrase_from_env().map_err(Exit::keyring)?;
        // A state that already belongs to a vault never creates a new one: its objects
        // would be unreadable under the new key.
        let create = state.state().job.vault_id.is_none();
        let unlocked = match store.prepare().await {
            Ok(()) => keyring::unlock(&*store, &a.store, &pass, create).await,
            Err(e) => Err(keyring::KeyringError::Store(e)),
        };
        let (key_file, master, created) = match unlocked {
            Ok(v) => v,
            Err(keyring::KeyringError::Store(crate::store::StoreError::RateLimited { wait })) => {
                return rate_limited_at_start(&mut state, wait);
            }
            Err(e) => return Err(Exit::keyring(e)),
        };
        state
            .bind_vault(&key_file.vault_id_hex())
            .map_err(Exit::state)?;
        // Damage in the state must not spread into the store (docs/state.md, "integrity").
        let repair = settings.load.on_corrupt == crate::state::OnCorrupt::Fresh;
        keyring::check_state(&*store, Some(&master), &mut state, repair)
            .await
            .map_err(Exit::keyring)?;
        if created {
            eprintln!(
                "created a new vault {} in {}: keep the passphrase safe, without it nothing can be restored",
                key_file.vault_id_hex(),
                a.store
            );
        }
        if a.encrypt_state {
            sealer = Some(key_file.clone());
        }
        settings.run.vault = Some(Arc::new(VaultKeys::new(master)));
    }
    let vault = settings.run.vault.clone();
    // A store whose catalog and run record lag behind the state (the last run could not
    // write them) gets them written by this run even if it stores nothing.
    let runs_before = state.state().stats.runs;
    let store_behind = match crate::prune::last_run(&*store).await {
        Ok(Some(last)) => last.runs < runs_before,
        Ok(None) => runs_before > 0,
        Err(_) => true,
    };
    let sealer = sealer.zip(vault.clone());
    if opened.fresh {
        eprintln!("no state at {}: starting a new one", a.state.display());
    }
    if let Some(aside) = &opened.moved_aside {
        if aside.to_string_lossy().contains(".journal.corrupt.") {
            eprintln!(
                "the damaged journal was moved aside to {}; continuing from the state and the \
                 journal lines before the damage",
                aside.display()
            );
        } else {
            eprintln!(
                "the unreadable state was moved aside to {}; starting a new one",
                aside.display()
            );
        }
    }
    if let Some(run) = &opened.replay.interrupted_run {
        eprintln!(
            "the previous run (started {}) ended without saving; recovered {} checkpoints from its journal",
            run.started, opened.replay.applied
        );
    }
    let interrupt = CancellationToken::new();
    watch_signals(interrupt.clone());
    let is_ci = std::env::var_os("CI").is_some() || std::env::var_os("GITHUB_ACTIONS").is_some();
    let mode = progress::resolve(
        std::io::stderr().is_terminal(),
        is_ci,
        a.quiet,
        settings.progress_interval,
    );
    let gha = Actions::from_env();
    let grouped = gha.is_some() && mode != progress::ProgressMode::Quiet;
    if grouped {
        actions::group("tgferry progress");
    }
    let (events, rx) = Events::channel();
    let reporter = tokio::spawn(progress::render(rx, mode));
    let job = (store.clone(), settings.run, budget, events, interrupt);
    let result = match rclone {
        Some(source) => run_job(source, job, state).await,
        None => run_job(LocalSource::new(&a.source), job, state).await,
    };
    let _ = reporter.await;
    if grouped {
        actions::end_group();
    }
    match result {
        Ok((state, report)) => {
            print!("{}", summary::render(&report));
            if let Some(gha) = &gha {
                gha.finish(&report, &Status::of(state.state()));
            }
            // A run that stored nothing leaves the catalog as it was.
            let changed = report.run.files_completed > 0 || report.run.parts_stored > 0;
            let changed = changed || opened.fresh || opened.replay.applied > 0 || store_behind;
            // The reserve is the time kept for saving: waits past it are not sat out.
            store.set_wait_deadline(Some(tokio::time::Instant::now() + reserve));
            if changed {
                match write_records(&*store, vault.as_deref(), state.state()).await {
                    Ok(()) => {}
                    Err(crate::store::StoreError::RateLimited { wait }) => eprintln!(
                        "warning: the state was saved, but the store asks to wait {} before the \
                         catalog can be written; the next run writes it",
                        crate::time::human_duration(wait)
                    ),
                    Err(e) => {
                        return Err(Exit {
                            code: exit::for_store_error(&e),
                            message: format!(
                                "the state was saved, but the store's catalog could not be \
                                 written: {e}"
                            ),
                        });
                    }
                }
            }
            if let Some((key_file, keys)) = &sealer {
                let out = keyring::sealed_path(&a.state);
                github::write_sealed_state(&out, key_file, &keys.master, state.state())?;
            }
            Ok(match report.stop_reason {
                StopReason::Error => report
                    .fatal
                    .as_ref()
                    .map_or(exit::INTERNAL, exit::for_run_error),
                StopReason::Interrupted => exit::INTERRUPTED,
                _ if !report.failed.is_empty() => exit::FILES_FAILED,
                _ => exit::OK,
            })
        }
        Err((_state, e)) => Err(Exit::run(e)),
    }
}

/// Writes what a run leaves in the store besides its parts: the encrypted catalog (vault),
/// then the run record; the record comes last so that a store whose catalog write failed
/// still counts as behind ([`crate::prune::last_run`]).
async fn write_records<S: Store>(
    store: &S,
    vault: Option<&crate::runner::VaultKeys>,
    state: &crate::state::State,
) -> Result<(), crate::store::StoreError> {
    if let Some(keys) = vault {
        // The catalog makes the store restorable with the passphrase alone.
        keyring::save_catalog(store, &keys.master, state)
            .await
            .map_err(|e| match e {
                keyring::KeyringError::Store(e) => e,
                other => crate::store::StoreError::Transient {
                    message: other.to_string(),
                },
            })?;
    }
    crate::prune::record_run(store, state).await
}

/// Ends a run the store would not let start (Telegram asks to wait before signing in):
/// recorded as `rate_limited` with the time to come back, exit 0 like any rate limit.
fn rate_limited_at_start(state: &mut StateFile, wait: std::time::Duration) -> Result<u8, Exit> {
    let run = crate::runner::record_rate_limited_start(state, wait).map_err(Exit::state)?;
    let back = run
        .resume_after
        .map_or_else(|| "later".to_owned(), |t| format!("after {t}"));
    println!(
        "stopped: the store asks to wait {} before anything can be done; nothing was stored \
         in this run; the next run {back} continues",
        crate::time::human_duration(wait)
    );
    Ok(exit::OK)
}

/// What a run needs besides its source and state.
type JobParts = (
    Arc<store::CliStore>,
    RunConfig,
    Budget,
    Events,
    CancellationToken,
);

/// One run over any source.
async fn run_job<S: Source>(
    source: S,
    (store, config, budget, events, interrupt): JobParts,
    state: StateFile,
) -> Result<(StateFile, RunReport), (StateFile, RunError)> {
    Runner::new(Arc::new(source), store, config, budget, events, interrupt)
        .run(state)
        .await
}

fn status(a: args::StatusArgs) -> Result<u8, Exit> {
    let Some(state) = github::read_for_status(&a.state)? else {
        return Err(Exit {
            code: exit::STATE_UNREADABLE,
            message: format!(
                "no state file at {}; run `tgferry run` first, or download the state artifact \
                 (gh run download RUN_ID -n tgferry-state)",
                a.state.display()
            ),
        });
    };
    let status = Status::of(&state);
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&status).expect("status serializes")
        );
    } else {
        print!("{}", status.render(&a.state.display().to_string()));
    }
    Ok(exit::OK)
}

fn retry(a: args::RetryArgs) -> Result<u8, Exit> {
    let Some((mut file, _)) = StateFile::open_existing(&a.state).map_err(Exit::state)? else {
        return Err(Exit {
            code: exit::STATE_UNREADABLE,
            message: format!("no state file at {}", a.state.display()),
        });
    };
    let failed = &file.state().failed;
    let targets: Vec<String> = if a.all {
        failed.keys().cloned().collect()
    } else {
        let unknown: Vec<_> = a
            .paths
            .iter()
            .filter(|p| !failed.contains_key(*p))
            .collect();
        if !unknown.is_empty() {
            return Err(Exit::usage(config::UsageError(format!(
                "not failed in {}: {}; `tgferry status` lists the failed paths (nothing was changed)",
                a.state.display(),
                unknown
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))));
        }
        a.paths.clone()
    };
    for path in &targets {
        file.state_mut().failed.remove(path);
    }
    file.commit().map_err(Exit::state)?;
    println!(
        "reset {} files; the next run tries them again",
        targets.len()
    );
    Ok(exit::OK)
}

async fn init(a: args::InitArgs) -> Result<u8, Exit> {
    let pass = keyring::passphrase_from_env().map_err(Exit::keyring)?;
    let store = store::open(&a.store, false, false)?;
    store.prepare().await.map_err(|e| Exit::run(e.into()))?;
    let key_file = keyring::init(&store, &a.store, &pass)
        .await
        .map_err(Exit::keyring)?;
    println!(
        "created vault {} in {}; keep the passphrase safe: without it nothing can be restored",
        key_file.vault_id_hex(),
        a.store
    );
    Ok(exit::OK)
}

impl Exit {
    fn keyring(e: keyring::KeyringError) -> Self {
        Exit {
            code: exit::for_keyring_error(&e),
            message: e.to_string(),
        }
    }

    fn usage(e: config::UsageError) -> Self {
        Exit {
            code: exit::USAGE,
            message: e.0,
        }
    }

    fn state(e: StateError) -> Self {
        Exit {
            code: exit::for_state_error(&e),
            message: e.to_string(),
        }
    }

    fn run(e: RunError) -> Self {
        Exit {
            code: exit::for_run_error(&e),
            message: e.to_string(),
        }
    }
}
