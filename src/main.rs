//! The `tgferry` binary: a thin shell around [`tgferry::cli::main`].

fn main() -> std::process::ExitCode {
    tgferry::cli::main()
}
