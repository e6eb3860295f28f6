//! Runs record steps (gen-tests, sandbox-run, fix, refine, ...) over input shards: one step
//! for a single stage command, a chain of them for `unitcoder run`. It owns everything that
//! is not the method itself, so that a step implements only its logic (the datatrove
//! split): streaming with a bounded window, output in input order, crash resume,
//! `--retry-errors`, counting and manifests. Steps only turn one record into one record.
//!
//! A record chain: the input record goes through step 1, its result through step 2, and so
//! on; every step's result is written to that step's directory. Different records are at
//! different steps at the same time (one in gen-tests, one in the sandbox, one in fix).
//! A record that already carries an `error` passes through later steps untouched.
//!
//! - `plan`: what to do for each input shard (skip, resume after n records, retry errors);
//! - `stream`: the reader thread and the ordered, windowed chain;
//! - `manifests`: "up to date?" and the manifests written at the end.

mod manifests;
mod plan;
mod stream;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub use crate::record::Record;
use crate::record::{ErrorInfo, RecordExt};
use crate::shards::manifest::now_rfc3339;
use crate::shards::reader::InputFile;
use crate::shards::resume::StageOutput;
use crate::shards::ShardInfo;

pub type BoxFuture = Pin<Box<dyn Future<Output = Record> + Send>>;

/// One record-to-record step of the method.
pub trait Step: Send + Sync {
    fn name(&self) -> &'static str;
    /// Turn one record into its result (never fails: errors go into the record).
    fn process(self: Arc<Self>, record: Record) -> BoxFuture;
    /// Settings that change results (fingerprint and manifest).
    fn settings(&self) -> Value;
    /// Does this output record end in a transient error that `--retry-errors` should redo?
    fn needs_retry(&self, out: &Record) -> bool {
        out.error().is_some_and(|e| e.stage == self.name() && e.transient)
    }
    /// Step-specific counters for one output record (beyond records / errors).
    fn tally(&self, _out: &Record, _counts: &mut Counts) {}
    /// The models and the sandbox the step uses (for the default `report` and `budget_stopped`).
    fn resources(&self) -> Resources<'_> {
        Resources::default()
    }
    /// Extra manifest facts: each model's usage under its name, the sandbox in effect.
    fn report(&self) -> Value {
        let r = self.resources();
        if r.agents.is_empty() && r.sandbox.is_none() {
            return Value::Null;
        }
        let mut out = serde_json::Map::new();
        for (name, agent) in &r.agents {
            out.insert(name.to_string(), agent.usage());
        }
        if let Some(sandbox) = r.sandbox {
            out.insert("sandbox".into(), sandbox.report(self.name()));
        }
        Value::Object(out)
    }
    /// A budget stopped this step early.
    fn budget_stopped(&self) -> bool {
        self.resources().agents.iter().any(|(_, a)| a.budget_stopped())
    }
    /// A model of this step cannot be used until a setting changes (refused key, unknown
    /// model, no endpoint answering): why.
    fn llm_fatal(&self) -> Option<String> {
        self.resources().agents.iter().find_map(|(_, a)| a.fatal_error().map(|e| format!("{}: {e}", e.kind())))
    }
}

/// Each stage directory's LLM usage journal (see `llm::stats`).
pub const USAGE_JOURNAL: &str = ".llm-usage.jsonl";

/// What a step holds of the engines: its models, each under the name its usage is reported
/// with (`llm`, or one name per model), and its sandbox.
#[derive(Default)]
pub struct Resources<'a> {
    pub agents: Vec<(&'static str, &'a crate::llm::Agent)>,
    pub sandbox: Option<&'a crate::sandbox::Sandbox>,
}

/// What a step's output holds, for its manifest and `unitcoder stats`.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counts {
    pub records: u64,
    /// Records without an `error`.
    pub ok: u64,
    /// Errors set by this step, by kind.
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Records that arrived with an error from an earlier step (passed through).
    pub upstream_errors: u64,
    /// Transient errors a `--retry-errors` run would redo.
    pub retryable: u64,
    /// Step-specific outcome counters (keys from `record::counter`).
    pub outcomes: BTreeMap<String, u64>,
}

impl Counts {
    pub fn bump(&mut self, key: impl Into<String>) {
        self.add_to(key, 1);
    }

    pub fn add_to(&mut self, key: impl Into<String>, n: u64) {
        *self.outcomes.entry(key.into()).or_default() += n;
    }

    fn add(&mut self, step: &dyn Step, out: &Record) {
        self.records += 1;
        match out.error() {
            None => self.ok += 1,
            Some(e) if e.stage == step.name() => *self.errors_by_kind.entry(e.kind).or_default() += 1,
            Some(_) => self.upstream_errors += 1,
        }
        if step.needs_retry(out) {
            self.retryable += 1;
        }
        step.tally(out, self);
    }
}

/// One step and where its output goes.
pub struct StageDir {
    pub step: Arc<dyn Step>,
    pub dir: PathBuf,
}

pub struct DriveOptions {
    /// Records in flight at most (bounded memory).
    pub window: usize,
    pub retry_errors: bool,
    pub force: bool,
    pub compress: bool,
    pub quiet: bool,
    pub max_line_bytes: usize,
    /// Inputs as shown in the first step's manifest.
    pub label: String,
    /// Only the first N input records (`--limit`).
    pub limit: Option<u64>,
}

pub struct DriveReport {
    pub counts: Vec<Counts>,
    pub budget_stopped: bool,
    /// Why a model stopped the run (`kind: message`).
    pub llm_fatal: Option<String>,
    pub up_to_date: bool,
}

impl Counts {
    /// Every record this step saw failed here, for one non-transient reason: that kind.
    pub fn all_failed_alike(&self) -> Option<&str> {
        let own = self.records - self.upstream_errors;
        let (kind, n) = self.errors_by_kind.iter().next()?;
        (own > 0 && self.ok == 0 && self.retryable == 0 && self.errors_by_kind.len() == 1 && *n == own).then_some(kind.as_str())
    }
}

impl DriveReport {
    pub fn exit_status(&self) -> u8 {
        if self.llm_fatal.is_some() {
            crate::exit::LLM_UNUSABLE
        } else if self.budget_stopped {
            crate::exit::BUDGET
        } else if self.counts.iter().any(|c| c.all_failed_alike().is_some()) {
            crate::exit::ALL_FAILED
        } else if self.counts.iter().any(|c| c.retryable > 0) {
            crate::exit::RETRYABLE
        } else {
            crate::exit::SUCCESS
        }
    }

    pub fn exit_code(&self) -> std::process::ExitCode {
        crate::exit::code(self.exit_status())
    }
}

fn stage_fingerprint(run_fp: &str, step: &dyn Step) -> String {
    let h = blake3::hash(format!("{run_fp}\0{}\0{}", step.name(), step.settings()).as_bytes());
    h.to_hex()[..32].to_string()
}

/// Run `stages` as a chain over `inputs` (global index, file).
pub fn drive(inputs: &[(usize, InputFile)], stages: &[StageDir], run_fp: &str, opts: &DriveOptions) -> Result<DriveReport> {
    let started = Instant::now();
    let started_at = now_rfc3339();
    let fps: Vec<String> = stages.iter().map(|s| stage_fingerprint(run_fp, s.step.as_ref())).collect();
    let previous = manifests::read_all(stages)?;
    if !opts.force && !opts.retry_errors {
        if let Some(counts) = manifests::up_to_date(stages, &fps, &previous) {
            let dirs: Vec<String> = stages.iter().map(|s| s.dir.display().to_string()).collect();
            tracing::info!("{}: up to date (same inputs and settings); --force to redo", dirs.join(", "));
            return Ok(DriveReport { counts, budget_stopped: false, llm_fatal: None, up_to_date: true });
        }
    }
    // A previous run that stopped early (budget) left transient error records behind:
    // continuing it means redoing those.
    let stopped_early = !opts.force && previous.iter().flatten().any(|m| !m.complete);
    if stopped_early {
        tracing::info!("the previous run stopped early; redoing its transient errors");
    }
    let run_id = format!("{started_at} pid {}", std::process::id());
    let mut outputs: Vec<StageOutput> = Vec::new();
    for (s, fp) in stages.iter().zip(&fps) {
        let (output, kept) = StageOutput::open(&s.dir, s.step.name(), fp, opts.compress, opts.force)?;
        // The journal adds up every run that built this output: a new output starts a new one.
        let journal = s.dir.join(USAGE_JOURNAL);
        if !kept {
            let _ = std::fs::remove_file(&journal);
        }
        for (name, agent) in s.step.resources().agents {
            agent.client.stats.attach_journal(&journal, name, &run_id)?;
        }
        outputs.push(output);
    }
    let steps: Vec<Arc<dyn Step>> = stages.iter().map(|s| s.step.clone()).collect();

    let takes = plan::takes(inputs, opts.limit)?;
    let mut planned = plan::plan_inputs(inputs, &takes, &outputs, &steps, opts.retry_errors || stopped_early)?;
    let skipped = inputs.len() - planned.shards.len();
    if skipped > 0 {
        tracing::info!("{skipped} of {} input shards already done", inputs.len());
    }
    let shards = std::mem::take(&mut planned.shards);
    let total = takes.iter().sum::<u64>();
    let place = stages.iter().map(|s| s.dir.display().to_string()).collect::<Vec<_>>().join(", ");
    // While it runs, the counts so far (as incomplete manifests) for `stats` and `report`.
    let mut snapshot = |counts: &[Counts], sealed: &[BTreeMap<usize, ShardInfo>]| {
        let run = manifests::Run { inputs, label: &opts.label, fingerprints: &fps, started_at: started_at.clone(), started, complete: false };
        if let Err(e) = manifests::write_snapshots(stages, &run, counts, sealed) {
            tracing::debug!("cannot write a progress snapshot: {e:#}");
        }
    };
    stream::run(shards, &outputs, &steps, opts, stream::Totals { total, place }, &mut planned.counts, &mut planned.sealed, &mut snapshot)?;

    let budget_stopped = steps.iter().any(|s| s.budget_stopped());
    let llm_fatal = steps.iter().find_map(|s| s.llm_fatal());
    let complete = !budget_stopped && llm_fatal.is_none();
    let run = manifests::Run { inputs, label: &opts.label, fingerprints: &fps, started_at, started, complete };
    manifests::write_all(stages, &run, &planned.counts, &planned.sealed)?;
    Ok(DriveReport { counts: planned.counts, budget_stopped, llm_fatal, up_to_date: false })
}

/// The first input of a chain that was not a record, as an error record.
fn bad_input_record(stage: &str, file: &str, line: u64, bad: &crate::shards::reader::BadInput) -> Record {
    tracing::warn!("{file}:{line}: not a record: {} ({})", bad.reason, bad.detail);
    ErrorInfo::bad_input(stage, file, line, format!("{}: {}", bad.reason, bad.detail)).into_record()
}

/// Run one step as a stage command: `--input` shards in, `--output DIR` out, with resume,
/// `--retry-errors`, `--rank/--world-size` and the documented exit codes.
pub fn run_stage(ctx: &crate::context::Context, step: Arc<dyn Step>, window: usize) -> Result<std::process::ExitCode> {
    let inputs = ctx.input_files()?;
    // A dry run writes its (error) records to a scratch directory: the real output is untouched.
    let scratch = if ctx.dry_run { Some(tempfile::tempdir()?) } else { None };
    let out_dir = match &scratch {
        Some(dir) => dir.path().to_path_buf(),
        None => ctx.output_dir()?,
    };
    let paths: Vec<PathBuf> = inputs.iter().map(|(_, i)| i.path.clone()).collect();
    let compress = ctx.output_format.compress;
    let run_fp = crate::shards::manifest::fingerprint(&paths, &json!({"compress": compress, "limit": ctx.limit}));
    tracing::info!("{}: {} input shard(s) → {}", step.name(), inputs.len(), out_dir.display());
    let opts = DriveOptions {
        window,
        retry_errors: ctx.retry_errors,
        force: ctx.force,
        compress,
        quiet: ctx.quiet,
        max_line_bytes: ctx.record_line_limit(),
        label: ctx.inputs.join(" "),
        limit: ctx.limit,
    };
    let report = drive(&inputs, &[StageDir { step: step.clone(), dir: out_dir }], &run_fp, &opts)?;
    if ctx.dry_run {
        print!("{}", dry_run_report(&[step], &[], ctx));
        return Ok(std::process::ExitCode::SUCCESS);
    }
    log_report(&[step], &report);
    Ok(report.exit_code())
}

/// A later step a dry run cannot reach (it depends on replies): at most this many requests
/// of `n` sequences each.
pub struct LaterStep {
    pub name: &'static str,
    pub requests_max: u64,
    pub n: u64,
}

/// What `--dry-run` prints: per step, the requests it would send, tokens and cost.
pub fn dry_run_report(steps: &[Arc<dyn Step>], later: &[LaterStep], ctx: &crate::context::Context) -> String {
    let llm = &ctx.config.llm;
    let price =
        |prompt: u64, completion: u64| (prompt as f64 * llm.price_prompt_per_million + completion as f64 * llm.price_completion_per_million) / 1e6;
    let cost = |prompt: u64, completion: u64| {
        if llm.price_prompt_per_million > 0.0 || llm.price_completion_per_million > 0.0 {
            format!(", cost ≤ ${:.2}", price(prompt, completion))
        } else {
            String::new()
        }
    };
    let mut out = String::from("dry run: nothing was sent (prompt tokens estimated at 4 characters per token; completions at most max_tokens)\n");
    let mut per_prompt = Vec::new();
    for step in steps {
        for (name, agent) in step.resources().agents {
            let d = agent.client.dry_tally();
            if d.requests == 0 && d.cached_sequences == 0 {
                continue;
            }
            if let Some(each) = d.prompt_tokens.checked_div(d.requests) {
                per_prompt.push(each);
            }
            out.push_str(&format!(
                "  {} ({name}): {} requests, {} sequences ({} more from the cache), ~{} prompt tokens, ≤ {} completion tokens{}\n",
                step.name(),
                d.requests,
                d.sequences,
                d.cached_sequences,
                d.prompt_tokens,
                d.completion_tokens_max,
                cost(d.prompt_tokens, d.completion_tokens_max)
            ));
        }
    }
    let max_tokens = u64::from(llm.max_tokens);
    // Later prompts hold the function, its tests (≤ max_tokens) and a trace: about a first
    // prompt plus max_tokens.
    let prompt_guess = per_prompt.iter().sum::<u64>() / (per_prompt.len() as u64).max(1) + max_tokens;
    for l in later {
        let (p, c) = (l.requests_max * prompt_guess, l.requests_max * l.n * max_tokens);
        out.push_str(&format!(
            "  {}: at most {} requests of n = {} (depends on the replies), ~{p} prompt tokens, ≤ {c} completion tokens{}\n",
            l.name,
            l.requests_max,
            l.n,
            cost(p, c)
        ));
    }
    out
}

/// One summary line per step, plus what to do about leftovers.
pub fn log_report(steps: &[Arc<dyn Step>], report: &DriveReport) {
    for (step, c) in steps.iter().zip(&report.counts) {
        let message = format!(
            "{}: {} records, {} ok, errors {:?}, from earlier steps {}, {:?}",
            step.name(),
            c.records,
            c.ok,
            c.errors_by_kind,
            c.upstream_errors,
            c.outcomes
        );
        if crate::logging::json_logs() {
            tracing::info!(
                stage = step.name(),
                records = c.records,
                ok = c.ok,
                errors = c.errors_by_kind.values().sum::<u64>(),
                upstream_errors = c.upstream_errors,
                retryable = c.retryable,
                errors_by_kind = %json!(c.errors_by_kind),
                outcomes = %json!(c.outcomes),
                "{message}"
            );
        } else {
            tracing::info!("{message}");
        }
    }
    for (step, c) in steps.iter().zip(&report.counts) {
        if let Some(kind) = c.all_failed_alike() {
            tracing::warn!(
                "{}: every record failed with `{kind}` (not transient): look at one record's error.message; exit status {}",
                step.name(),
                crate::exit::ALL_FAILED
            );
        }
    }
    if let Some(why) = &report.llm_fatal {
        tracing::error!(
            "stopped: the LLM cannot be used ({why}). Fix the setting and rerun: the records it stopped are redone (exit status {})",
            crate::exit::LLM_UNUSABLE
        );
    } else if report.budget_stopped {
        tracing::warn!("stopped by the LLM budget: rerun with a larger budget to continue (answers already paid for come from the cache)");
    } else if report.counts.iter().any(|c| c.retryable > 0) {
        let n: u64 = report.counts.iter().map(|c| c.retryable).sum();
        tracing::warn!(
            "{n} records ended in a transient error: rerun with --retry-errors to redo just those (exit status {})",
            crate::exit::RETRYABLE
        );
    }
}
