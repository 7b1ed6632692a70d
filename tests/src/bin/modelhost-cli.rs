//! The `modelhost` command line, built inside the test package so its tests can run it as a
//! process (`CARGO_BIN_EXE_modelhost-cli`), with the allocator the real binary uses.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    modelhost::cli::main()
}
