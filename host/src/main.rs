//! The `modelhost` command: see `modelhost --help`.

fn main() -> std::process::ExitCode {
    modelhost::cli::main()
}
