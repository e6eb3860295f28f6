//! Exit statuses of every `unitcoder` command, in one place (documented in the README).

/// Success: the output is complete.
pub const SUCCESS: u8 = 0;
/// A fatal error: unreadable input, unwritable output, a bad config, unreadable input files.
pub const FATAL: u8 = 1;
/// Unusable arguments (clap's usage errors).
pub const USAGE: u8 = 2;
/// An LLM budget stopped the run: rerun (with a larger budget) to continue.
pub const BUDGET: u8 = 3;
/// Finished, but some records ended in a transient error (endpoint down, offline cache miss,
/// `sandbox_error`): rerun with `--retry-errors` to redo just those.
pub const RETRYABLE: u8 = 4;
/// The LLM cannot be used until a setting changes (no endpoint answers, the key is refused,
/// the model is not served, no endpoint configured). The output is resumable: fix the
/// setting and rerun; the records it stopped are redone.
pub const LLM_UNUSABLE: u8 = 5;
/// Every record of a stage failed for the same non-transient reason (e.g. every prompt
/// overflows the context): the output is complete, and almost certainly not what was meant.
pub const ALL_FAILED: u8 = 6;

/// A rank layout is not complete: `status` while ranks are missing, partial or failed;
/// `export` (without `--allow-partial`) and the LLM stages of `run` when ranks are missing.
pub const INCOMPLETE: u8 = 7;
/// `export --max-contamination`: the share of records overlapping a benchmark reached the
/// gate (the card names the rates; no manifest is written).
pub const CONTAMINATED: u8 = 8;

pub fn code(status: u8) -> std::process::ExitCode {
    std::process::ExitCode::from(status)
}

/// A missing or unusable argument found after parsing (a required `-i`, `-o` or
/// `--work-dir`): exits `USAGE` like clap's own errors.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(String);

impl UsageError {
    pub fn new(message: impl Into<String>) -> Self {
        UsageError(message.into())
    }
}

/// Ranks are missing, partial or failed (exits `INCOMPLETE`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Incomplete(String);

impl Incomplete {
    pub fn new(message: impl Into<String>) -> Self {
        Incomplete(message.into())
    }
}

/// The status an `ExitCode` stands for (it has no getter).
pub fn status_of(code: std::process::ExitCode) -> u8 {
    (0..=u8::MAX).find(|s| std::process::ExitCode::from(*s) == code).unwrap_or(FATAL)
}
