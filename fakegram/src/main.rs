//! `fakegram`: the loopback Telegram as a program. Prints, on the first line of standard
//! output, the shell assignments tgferry reads (`TGFERRY_TG_API_ID`, `TGFERRY_TG_API_HASH`,
//! `TGFERRY_TG_SESSION`, `TGFERRY_TG_CHAT`), then one line per chat seeded with
//! `--seed-chat`, then serves until it is killed; on SIGTERM or Ctrl-C it prints its counts
//! (requests, messages, flood waits) to standard error and, with `--stats-file`, to that
//! file.
//!
//! ```sh
//! fakegram --listen 127.0.0.1 --seed-chat photos_vault=./pictures > fakegram.env &
//! until [ -s fakegram.env ]; do sleep 0.2; done
//! eval "$(head -1 fakegram.env)"
//! ```

use std::io::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;

use clap::Parser;

/// A Telegram on 127.0.0.1 for trying tgferry's Telegram store without Telegram.
#[derive(Debug, Parser)]
#[command(name = "fakegram", version)]
struct Args {
    /// Address to listen on, optionally with the first data centre's port (the others
    /// follow it): 127.0.0.1 or 127.0.0.1:7001.
    #[arg(long, default_value = "127.0.0.1")]
    listen: String,
    /// Print a bot's session (the bot administers the channel) instead of the user's.
    #[arg(long)]
    bot: bool,
    /// With --bot: this many bots, all admins of the channel, their session lines
    /// comma-separated in TGFERRY_TG_SESSION (several bots sending into one channel).
    #[arg(long, default_value_t = 1, requires = "bot")]
    bots: u32,
    /// Per-connection bandwidth cap, each way (4.6MiB: one connection's speed in a
    /// published benchmark). Off by default.
    #[arg(long, value_parser = parse_rate)]
    conn_rate: Option<u64>,
    /// Keep the chats (and document bytes) in this directory across restarts.
    #[arg(long)]
    state: Option<PathBuf>,
    /// The user's two-step verification password (for trying `tgferry telegram login`).
    #[arg(long)]
    password: Option<String>,
    /// On exit (SIGTERM, Ctrl-C) write the request, message and flood-wait counts to this
    /// file (they always go to standard error).
    #[arg(long)]
    stats_file: Option<PathBuf>,
    /// Turn off the message-rate rules (20 a minute from a bot into a group or channel,
    /// about one a second per chat).
    #[arg(long)]
    no_rate_limits: bool,
    /// Make a public channel @NAME (owned by the user, every bot an admin) holding every
    /// file under DIR, recursively, as one media message each, in path order, one second
    /// apart: .jpg .jpeg .png .webp as photos, .mp4 .mov .mkv as videos, .mp3 .m4a .flac
    /// .ogg as music, .oga .opus as voice notes, anything else as a document. Repeatable.
    /// With --state, a chat already there is kept as it is (not seeded again; the bots of
    /// this run are made its admins).
    #[arg(long = "seed-chat", value_name = "NAME=DIR", value_parser = parse_seed)]
    seed_chat: Vec<(String, PathBuf)>,
}

fn parse_seed(text: &str) -> Result<(String, PathBuf), String> {
    let Some((name, dir)) = text.split_once('=') else {
        return Err(format!(
            "`{text}` is not NAME=DIR (a channel username, `=`, a folder)"
        ));
    };
    let name = name.trim_start_matches('@');
    if !fakegram::rules::username_valid(name) {
        return Err(format!(
            "`{name}` is not a username Telegram accepts (5 to 32 letters, digits and \
             underscores, beginning with a letter, not ending with an underscore)"
        ));
    }
    let dir = PathBuf::from(dir);
    if !dir.is_dir() {
        return Err(format!("`{}` is not a folder", dir.display()));
    }
    Ok((name.to_owned(), dir))
}

fn parse_rate(text: &str) -> Result<u64, String> {
    parse_size::Config::new()
        .with_binary()
        .parse_size(text.trim_end_matches("/s"))
        .map_err(|e| format!("`{text}` is not a rate such as 4.6MiB: {e}"))
}

fn parse_listen(text: &str) -> Result<(IpAddr, Option<u16>), String> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok((ip, None));
    }
    text.parse::<std::net::SocketAddr>()
        .map(|a| (a.ip(), Some(a.port())))
        .map_err(|_| format!("`{text}` is not an address such as 127.0.0.1 or 127.0.0.1:7001"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FAKEGRAM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("fakegram=info")),
        )
        .init();
    let args = Args::parse();
    let (listen, port) = match parse_listen(&args.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("fakegram: --listen: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let args_stats = args.stats_file.clone();
    let config = fakegram::Config {
        listen,
        port,
        conn_rate: args.conn_rate,
        state_dir: args.state,
        password: args.password,
        rate_limits: !args.no_rate_limits,
        ..fakegram::Config::default()
    };
    let server = match fakegram::Server::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fakegram: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let kind = if args.bot {
        fakegram::AccountKind::Bot
    } else {
        fakegram::AccountKind::User
    };
    let mut creds = server.credentials(kind);
    for _ in 1..args.bots {
        let more = server.add_bot(true);
        creds.session = format!("{},{}", creds.session, more.session);
    }
    let mut seeded = Vec::new();
    for (name, dir) in &args.seed_chat {
        if let Some(chat) = server.find_channel(name) {
            server.make_bots_admins(chat);
            seeded.push(format!(
                "kept @{name}: it exists already (from the state directory), not seeded again"
            ));
            continue;
        }
        match server.seed_chat(name, dir) {
            Ok(chat) => seeded.push(format!(
                "seeded @{name}: {} media messages from {}",
                server.messages(chat).len(),
                dir.display()
            )),
            Err(e) => {
                eprintln!("fakegram: --seed-chat {name}={}: {e}", dir.display());
                return std::process::ExitCode::from(1);
            }
        }
    }
    server.flush();
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", creds.shell_line());
        for line in &seeded {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
    }
    eprintln!(
        "fakegram: serving data centres {} ({} session, chat {}); phone {} for logins; stop with Ctrl-C",
        server
            .addrs()
            .iter()
            .map(|(dc, a)| format!("{dc}={a}"))
            .collect::<Vec<_>>()
            .join(" "),
        if args.bot { "bot" } else { "user" },
        creds.chat,
        server.phone(),
    );
    let stop = async {
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("a SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    };
    stop.await;
    // What the bench reads: requests, messages, flood waits.
    eprintln!("fakegram stats: {}", server.stats().summary());
    if let Some(path) = &args_stats
        && let Err(e) = std::fs::write(path, format!("{}\n", server.stats().summary()))
    {
        eprintln!("fakegram: cannot write {}: {e}", path.display());
    }
    server.flush();
    drop(server);
    std::process::ExitCode::SUCCESS
}
