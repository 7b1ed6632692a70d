//! The `modelhost` command: see `modelhost --help`.

/// mimalloc instead of the system allocator: candle allocates a fresh buffer for every
/// intermediate tensor, and glibc's malloc hands most of them back to the kernel only to fault
/// them in again on the next batch; mimalloc keeps them (about 30% of a MiniLM batch on 2 cores).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    modelhost::cli::main()
}
