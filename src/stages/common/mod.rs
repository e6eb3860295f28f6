//! The step kit shared by the stages (not a stage): one error type for what can go wrong
//! in a step, one way to ask a model, the record-field and sandbox flags, and one `run` for
//! stages that use a model and the sandbox. A stage file holds only its algorithm.

pub mod marker;
pub mod rewrite;

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use clap::Args;
use serde::{Deserialize, Serialize};

use crate::context::Context;
use crate::executor::{run_stage, Step};
use crate::llm::reply::ReplyError;
use crate::llm::{Agent, Generation, LlmError, LlmSettings};
use crate::record::ErrorInfo;
use crate::sandbox::{AdequacyArgs, AdequacySettings, Sandbox, SandboxArgs, SandboxSettings};

pub use rewrite::{Rejected, RewriteCheck};

/// A command that reads every rank (export, stats, status) refuses to be split by
/// `UNITCODER_WORLD_SIZE` from the environment (sbatch passes the caller's environment on,
/// so a merge job submitted from a rank's shell would see it).
pub fn refuse_split_from_env(command: &str) -> Result<()> {
    let world = std::env::var("UNITCODER_WORLD_SIZE").ok().and_then(|v| v.trim().parse::<usize>().ok()).unwrap_or(1);
    if world > 1 {
        return Err(crate::exit::UsageError::new(format!(
            "{command} reads every rank and is never split, but UNITCODER_WORLD_SIZE={world} is set in the environment \
             (sbatch passes the caller's environment on): unset UNITCODER_WORLD_SIZE and UNITCODER_RANK for this command"
        ))
        .into());
    }
    Ok(())
}

/// Why a step could not go on with a record.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// A prompt template failed to render.
    #[error("{0:#}")]
    Prompt(anyhow::Error),
    #[error(transparent)]
    Llm(#[from] LlmError),
    /// The reply holds no usable code.
    #[error(transparent)]
    Reply(#[from] ReplyError),
    /// A rewrite was rejected before running it.
    #[error("{}", .0.detail)]
    Rewrite(Rejected),
}

impl From<Rejected> for StepError {
    fn from(r: Rejected) -> Self {
        StepError::Rewrite(r)
    }
}

impl StepError {
    /// The machine-readable kind records carry.
    pub fn kind(&self) -> &'static str {
        match self {
            StepError::Prompt(_) => "prompt",
            StepError::Llm(e) => e.kind(),
            StepError::Reply(e) => e.kind(),
            StepError::Rewrite(r) => r.reason,
        }
    }

    /// Worth redoing in a later run (only LLM errors can be).
    pub fn transient(&self) -> bool {
        matches!(self, StepError::Llm(e) if e.transient())
    }

    /// The record's `error` for this failure in `stage`.
    pub fn to_error(&self, stage: &str) -> ErrorInfo {
        ErrorInfo::new(stage, self.kind(), self.to_string(), self.transient())
    }
}

/// Why a task stage (case2code, consensus) ends a record without a task: dropped, with
/// the reason its outcome records, or in error.
pub enum NoTask {
    Dropped(&'static str),
    Error(ErrorInfo),
}

/// Render `template` with `context` and ask `agent` for `n` samples.
pub async fn ask(agent: &Agent, template: &str, context: impl Serialize, n: u32) -> Result<Generation, StepError> {
    let messages = agent.prompts.render(template, context).map_err(StepError::Prompt)?;
    Ok(agent.client.generate(&messages, n).await?)
}

/// `ask` with this request's sampling seed (see `retry_seed`).
pub async fn ask_seeded(agent: &Agent, template: &str, context: impl Serialize, n: u32, seed: Option<u64>) -> Result<Generation, StepError> {
    let messages = agent.prompts.render(template, context).map_err(StepError::Prompt)?;
    Ok(agent.client.generate_seeded(&messages, n, seed).await?)
}

/// The sampling seed of try `attempt` (0 = the first): the configured seed first, then a
/// new one per retry, so a retry is a new request and not the cached answer again.
pub fn retry_seed(configured: Option<u64>, attempt: u32) -> Option<u64> {
    match attempt {
        0 => configured,
        n => Some(crate::llm::derive_seed(configured.unwrap_or(0), u64::from(n))),
    }
}

/// The items in first-seen order, each once (rejection reasons for a retry prompt).
pub fn distinct(items: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for i in items {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

/// Which record fields hold the program and its tests.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
#[command(next_help_heading = "Record fields")]
pub struct RecordFields {
    /// Field with the program (a full module).
    #[arg(long, default_value = "code")]
    pub code_field: String,
    /// Field with the unittest module (it refers to the program's names directly).
    #[arg(long, default_value = "tests")]
    pub tests_field: String,
    /// Field with the function name (reported with errors; optional in records).
    #[arg(long, default_value = "entry_point")]
    pub entry_point_field: String,
}

impl Default for RecordFields {
    fn default() -> Self {
        Self { code_field: "code".into(), tests_field: "tests".into(), entry_point_field: "entry_point".into() }
    }
}

/// The flags of every stage that runs code: the sandbox's and the record fields.
#[derive(Debug, Clone, Args, Default)]
pub struct SandboxFlags {
    #[command(flatten)]
    pub sandbox: SandboxArgs,
    #[command(flatten)]
    pub fields: RecordFields,
}

impl SandboxFlags {
    /// `[sandbox]` with the flags on top.
    pub fn settings(&self, ctx: &Context) -> SandboxSettings {
        self.sandbox.resolve(&ctx.config.sandbox, ctx.jobs)
    }
}

/// `[adequacy]` with a stage's adequacy flags on top.
pub fn adequacy_settings(ctx: &Context, args: &AdequacyArgs) -> AdequacySettings {
    args.resolve(&ctx.config.adequacy)
}

/// `[llm]` with a stage's LLM flags on top.
pub fn llm_settings(ctx: &Context, args: &crate::llm::LlmArgs) -> LlmSettings {
    let mut s = ctx.config.llm.clone();
    s.apply(args);
    s.resolve_env();
    s.dry_run = ctx.dry_run;
    if args.cache.is_none() && !s.cache.is_empty() {
        s.cache = ctx.config_path(&s.cache);
    }
    s
}

/// The `[extract]` rules the rewrite check applies (relative paths from the config file).
pub fn rewrite_check(ctx: &Context) -> Result<Arc<RewriteCheck>> {
    let mut extract: crate::python::extractor::ExtractSettings = ctx.config.section("extract")?;
    extract.packages_file = ctx.config_path(&extract.packages_file);
    Ok(Arc::new(RewriteCheck::new(&extract)?))
}

/// Run a stage that uses a model and the sandbox: start the sandbox, build the step in
/// the output directory (its response cache lives there), stream the records.
pub fn run_with_sandbox<S: Step + 'static>(
    ctx: &Context,
    llm_concurrency: usize,
    sandbox: SandboxSettings,
    build: impl FnOnce(Arc<Sandbox>, &Path) -> Result<S>,
) -> Result<ExitCode> {
    let out_dir = ctx.output_dir()?;
    let sandbox = Arc::new(Sandbox::start(sandbox)?);
    let window = sandbox.window_with_llm(llm_concurrency);
    run_stage(ctx, Arc::new(build(sandbox, &out_dir)?), window)
}

/// Run a stage that uses a model only.
pub fn run_with_model<S: Step + 'static>(ctx: &Context, window: usize, build: impl FnOnce(&Path) -> Result<S>) -> Result<ExitCode> {
    let out_dir = ctx.output_dir()?;
    run_stage(ctx, Arc::new(build(&out_dir)?), window)
}

/// Count a verified record's test adequacy (coverage and mutation-score buckets) into a
/// step's manifest, for `stats`.
pub fn tally_adequacy(out: &crate::executor::Record, counts: &mut crate::executor::Counts) {
    use crate::record::{counter, field, RecordExt, Verdict};
    if !out.verified() {
        return;
    }
    let adequacy = out.typed::<Verdict>(field::VERDICT).and_then(|v| v.adequacy);
    counts.bump(counter::coverage(adequacy.as_ref().and_then(|a| a.line_coverage)));
    counts.bump(counter::mutation(adequacy.as_ref().and_then(|a| a.mutation_score)));
}
