//! The `unitcoder` binary: everything lives in the library; see `cli.rs`.

fn main() -> std::process::ExitCode {
    unitcoder::cli::main()
}
