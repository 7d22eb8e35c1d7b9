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
use std::time::SystemTime;

use clap::Parser;
use tokio_util::sync::CancellationToken;

use crate::github::actions::{self, Actions};
use crate::job::{Notice, OpenJob, Opening};
use crate::keyring;
use crate::report::{progress, status::Status, summary};
use crate::runner::{Budget, Events};
use crate::state::{StateError, StopReason};
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
            eprintln!("error: {}", crate::report::shown(&e.message));
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
    let started = tokio::time::Instant::from_std(started);
    let budget = match settings.budget {
        Some(b) => Budget::until(started, started + b, settings.reserve),
        None => Budget::unlimited(started),
    };
    let print = &mut |n: Notice| eprintln!("{}", crate::report::shown(&n.to_string()));
    let opening = OpenJob::open(
        &settings.job,
        settings.run.part_size,
        budget.stop_at(),
        print,
    )
    .await?;
    let job = match opening {
        Opening::Ready(job) => job,
        Opening::RateLimited { run, wait } => {
            let back = run
                .resume_after
                .map_or_else(|| "later".to_owned(), |t| format!("after {t}"));
            println!(
                "stopped: the store asks to wait {} before anything can be done; nothing was \
                 stored in this run; the next run {back} continues",
                crate::time::human_duration(wait)
            );
            return Ok(exit::OK);
        }
    };
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
    let result = job
        .run(settings.run, budget, settings.reserve, events, interrupt)
        .await;
    let _ = reporter.await;
    if grouped {
        actions::end_group();
    }
    let finished = result?;
    let report = &finished.report;
    print!("{}", summary::render(report));
    for n in &finished.notices {
        eprintln!("{}", crate::report::shown(&n.to_string()));
    }
    if let Some(gha) = &gha {
        gha.finish(report, &Status::of(finished.state.state()));
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
    let paths = (!a.all).then_some(a.paths.as_slice());
    let reset = crate::job::open::reset_failures(&a.state, paths)?;
    println!("reset {reset} files; the next run tries them again");
    Ok(exit::OK)
}

async fn init(a: args::InitArgs) -> Result<u8, Exit> {
    let store = store::open(&a.store, false, false)?;
    let key_file = crate::job::open::init_vault(&store, &a.store).await?;
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
}
