//! The `unitcoder` binary: everything lives in the library; see `cli.rs`.

// Parsing builds and drops millions of small AST nodes; mimalloc makes that markedly
// cheaper than the system allocator (measured in bench/RESULTS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    unitcoder::cli::main()
}
