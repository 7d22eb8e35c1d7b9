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

use clap::FromArgMatches;
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
    let command = <Cli as clap::CommandFactory>::command();
    let parsed = command
        .clone()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m).map(|cli| (cli, m)));
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            let _ = e.print();
            if let Some(env) = env_behind_clap_error(&e, &command) {
                eprintln!("note: the value comes from the environment variable {env}");
            }
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    let from_env = values_from_env(&command, &matches);
    init_logging(cli.verbose);
    let no_passphrase_hint = no_passphrase_hint(&cli.command);
    store::set_tg_connections(cli.tg_connections);
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
        Err(mut e) => {
            if e.code == exit::USAGE {
                e.message = name_env_values(&e.message, &from_env);
            }
            if e.message == keyring::KeyringError::NoPassphrase.to_string()
                && let Some(hint) = no_passphrase_hint
            {
                e.message = format!("{}; {hint}", e.message);
            }
            eprintln!("error: {}", crate::report::shown(&e.message));
            ExitCode::from(e.code)
        }
    }
}

/// The flags (`--budget`) whose value came from an environment variable in this
/// invocation, with the variable.
fn values_from_env(command: &clap::Command, matches: &clap::ArgMatches) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let (mut cmd, mut m) = (command, matches);
    loop {
        for arg in cmd.get_arguments() {
            if m.value_source(arg.get_id().as_str()) == Some(clap::parser::ValueSource::EnvVariable)
                && let (Some(long), Some(env)) = (arg.get_long(), arg.get_env())
            {
                found.push((format!("--{long}"), env.to_string_lossy().into_owned()));
            }
        }
        let Some((name, sub)) = m.subcommand() else {
            break;
        };
        let Some(next) = cmd.find_subcommand(name) else {
            break;
        };
        (cmd, m) = (next, sub);
    }
    found
}

/// `message` with each flag whose value came from the environment named with its
/// variable: `--budget (set by TGFERRY_BUDGET) "5x" is not a duration`.
fn name_env_values(message: &str, from_env: &[(String, String)]) -> String {
    let mut out = message.to_owned();
    for (flag, env) in from_env {
        // The flag itself, not a longer one it begins (`--state` in `--state-from`).
        let at = out.match_indices(flag.as_str()).map(|(i, _)| i).find(|&i| {
            out[i + flag.len()..]
                .chars()
                .next()
                .is_none_or(|c| !(c.is_alphanumeric() || c == '-'))
        });
        if let Some(i) = at {
            out.insert_str(i + flag.len(), &format!(" (set by {env})"));
        }
    }
    out
}

/// The environment variable a rejected value came from, when clap rejected a value that
/// was not on the command line but in the variable behind its flag.
fn env_behind_clap_error(e: &clap::Error, command: &clap::Command) -> Option<String> {
    let clap::error::ContextValue::String(arg) = e.get(clap::error::ContextKind::InvalidArg)?
    else {
        return None;
    };
    let long = arg.split_whitespace().next()?.strip_prefix("--")?;
    let typed = std::env::args_os().any(|a| {
        let a = a.to_string_lossy();
        a == format!("--{long}") || a.starts_with(&format!("--{long}="))
    });
    if typed {
        return None;
    }
    fn find(cmd: &clap::Command, long: &str) -> Option<String> {
        let args = std::env::args_os().collect::<Vec<_>>();
        for sub in cmd.get_subcommands() {
            if args.iter().any(|a| a.to_str() == Some(sub.get_name()))
                && let Some(env) = find(sub, long)
            {
                return Some(env);
            }
        }
        cmd.get_arguments()
            .find(|a| a.get_long() == Some(long))
            .and_then(|a| a.get_env())
            .filter(|env| std::env::var_os(env).is_some())
            .map(|env| env.to_string_lossy().into_owned())
    }
    find(command, long)
}

/// What a missing passphrase means for `command`: why it needs one, and the way around.
fn no_passphrase_hint(command: &Command) -> Option<&'static str> {
    match command {
        Command::Run(_) => Some("`--encryption none` stores plain copies without one"),
        Command::Verify(_) | Command::Restore(_) => Some(
            "it opens the store's encrypted catalog and content (a plain store, made with \
             --encryption none, needs no passphrase but its state: --state FILE)",
        ),
        Command::Status(_) => Some(
            "the state is sealed (`--encrypt-state`) and opens only with the vault's passphrase",
        ),
        Command::Init(_) => Some("it is what the new vault's key is locked with"),
        Command::Prune(_) | Command::State(_) => {
            Some("it opens the store's encrypted catalog and the vault's key")
        }
        _ => None,
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
        // Colour only for a person at a terminal, never in logs or pipes.
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .try_init();
}

/// Cancels `token` on SIGINT or SIGTERM (GitHub sends SIGINT, then SIGTERM 7.5 s later);
/// a second signal ends the process at once (state writes are atomic, so that is safe).
/// The handlers are installed before this returns, not when the watching task first runs:
/// a busy runtime could otherwise leave a signal to its default action (death, with temp
/// files left) while work has already started.
fn watch_signals(token: CancellationToken) {
    #[cfg(unix)]
    let streams = {
        use tokio::signal::unix::{SignalKind, signal};
        signal(SignalKind::interrupt()).and_then(|int| Ok((int, signal(SignalKind::terminate())?)))
    };
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            let Ok((mut int, mut term)) = streams else {
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
    if std::env::var_os("GITHUB_ACTIONS").is_some()
        && settings.job.store.local_root().is_some()
        && let Some(w) = actions::ephemeral_store_warning(
            std::path::Path::new(&settings.job.identity.store),
            |k| std::env::var_os(k),
        )
    {
        eprintln!(
            "::warning title={}::{}",
            actions::escape_property("tgferry: the store disappears after the job"),
            actions::escape_data(&crate::report::shown(&w))
        );
    }
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
            let back = run.resume_after.map_or_else(
                || "later".to_owned(),
                |t| format!("after {}", crate::time::human_time(t)),
            );
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
    let reporter = tokio::spawn(progress::render(rx, mode, budget.stop_at()));
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
    if report.files_total == 0 && report.files_listed > 0 {
        let warning = format!(
            "--include/--exclude match none of the {} in the source: nothing was stored; the \
             patterns are relative to the source (e.g. `**/*.jpg`, `photos/**`)",
            crate::report::count(report.files_listed, "file")
        );
        match &gha {
            Some(_) => eprintln!(
                "::warning title=tgferry::{}",
                actions::escape_data(&warning)
            ),
            None => eprintln!("warning: {warning}"),
        }
    }
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
    println!(
        "reset {}; the next run tries {} again",
        crate::report::count(reset as u64, "file"),
        if reset == 1 { "it" } else { "them" }
    );
    Ok(exit::OK)
}

async fn init(a: args::InitArgs) -> Result<u8, Exit> {
    let store = store::open(&a.store, false, false)?;
    let key_file =
        crate::job::open::init_vault(&store, &crate::job::identity::mask_secrets(&a.store)).await?;
    println!(
        "created vault {} in {}; keep the passphrase safe: without it nothing can be restored",
        key_file.vault_id_hex(),
        crate::job::identity::mask_secrets(&a.store)
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
