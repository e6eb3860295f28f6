//! Runs record steps (gen-tests, sandbox-run, fix, refine, ...) over input shards: one step
//! for a single stage command, a chain of them for `unitcoder run`. It owns everything that
//! is not the method itself: streaming with a bounded window, output in input order, crash
//! resume, `--retry-errors`, counting and manifests. Steps only turn one record into one
//! record.
//!
//! A record chain: the input record goes through step 1, its result through step 2, and so
//! on; every step's result is written to that step's directory. Different records are at
//! different steps at the same time (one in gen-tests, one in the sandbox, one in fix).
//! A record that already carries an `error` passes through later steps untouched.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::llm::pipeline::run_ordered;
use crate::shards::manifest::now_rfc3339;
use crate::shards::reader::{read_records, InputFile};
use crate::shards::resume::{PartialShard, ShardState, StageOutput};
use crate::shards::{Manifest, ShardInfo};

pub type Record = Map<String, Value>;
pub type BoxFuture = Pin<Box<dyn Future<Output = Record> + Send>>;

/// Exit status when a budget stopped the run (rerun with a larger budget to continue).
pub const EXIT_BUDGET: u8 = 3;
/// Exit status when the run finished but some records ended in a transient error
/// (endpoint down, offline cache miss, sandbox_error): `--retry-errors` redoes just those.
pub const EXIT_RETRYABLE: u8 = 4;

/// One record-to-record step of the method.
pub trait Step: Send + Sync {
    fn name(&self) -> &'static str;
    /// Turn one record into its result (never fails: errors go into the record).
    fn process(self: Arc<Self>, record: Record) -> BoxFuture;
    /// Settings that change results (fingerprint and manifest).
    fn settings(&self) -> Value;
    /// Does this output record end in a transient error that `--retry-errors` should redo?
    fn needs_retry(&self, out: &Record) -> bool {
        error_of(out)
            .is_some_and(|e| e.get("stage").and_then(Value::as_str) == Some(self.name()) && e.get("transient").and_then(Value::as_bool) == Some(true))
    }
    /// Step-specific counters for one output record (beyond records / errors).
    fn tally(&self, _out: &Record, _counts: &mut Counts) {}
    /// Extra manifest facts (LLM usage, isolation in effect, ...).
    fn report(&self) -> Value {
        Value::Null
    }
    /// A budget stopped this step early.
    fn budget_stopped(&self) -> bool {
        false
    }
}

pub fn error_of(record: &Record) -> Option<&Map<String, Value>> {
    record.get("error").and_then(Value::as_object)
}

/// An `error` field: `{stage, kind, message, transient}`.
pub fn error_value(stage: &str, kind: &str, message: impl Into<String>, transient: bool) -> Value {
    let mut e = json!({"stage": stage, "kind": kind, "message": message.into()});
    if transient {
        e["transient"] = Value::Bool(true);
    }
    e
}

/// What a step's output holds, for its manifest and `unitcoder stats`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
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
    /// Step-specific outcome counters.
    pub outcomes: BTreeMap<String, u64>,
}

impl Counts {
    pub fn bump(&mut self, key: impl Into<String>) {
        *self.outcomes.entry(key.into()).or_default() += 1;
    }

    fn add(&mut self, step: &dyn Step, out: &Record) {
        self.records += 1;
        match error_of(out) {
            None => self.ok += 1,
            Some(e) if e.get("stage").and_then(Value::as_str) == Some(step.name()) => {
                let kind = e.get("kind").and_then(Value::as_str).unwrap_or("unknown").to_string();
                *self.errors_by_kind.entry(kind).or_default() += 1;
            }
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
}

pub struct DriveReport {
    pub counts: Vec<Counts>,
    pub budget_stopped: bool,
    pub up_to_date: bool,
}

impl DriveReport {
    pub fn exit_code(&self) -> std::process::ExitCode {
        if self.budget_stopped {
            std::process::ExitCode::from(EXIT_BUDGET)
        } else if self.counts.iter().any(|c| c.retryable > 0) {
            std::process::ExitCode::from(EXIT_RETRYABLE)
        } else {
            std::process::ExitCode::SUCCESS
        }
    }
}

/// What to do for one input file.
struct ShardPlan {
    k: usize,
    input: InputFile,
    /// Input records already done in every step (skipped).
    start: u64,
    /// Retry mode: read each step's previous output alongside the input.
    retry: bool,
}

enum Job {
    Record { k: usize, input: Record, prev: Vec<Option<Record>> },
    End(usize),
}

enum Done {
    Record(usize, Vec<Record>),
    End(usize),
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
    let n_steps = stages.len();

    let previous: Vec<Option<Manifest>> = stages.iter().map(|s| Manifest::read(&s.dir)).collect::<Result<_>>()?;

    // Up to date already? (every step's manifest complete, same fingerprint, shards there)
    if !opts.force && !opts.retry_errors {
        let current = stages.iter().zip(&fps).zip(&previous).map(|((s, fp), m)| match m {
            Some(m) if m.complete && &m.fingerprint == fp && m.shards_present(&s.dir) => {
                Some(serde_json::from_value::<Counts>(m.counts.clone()).unwrap_or_default())
            }
            _ => None,
        });
        if let Some(counts) = current.collect::<Option<Vec<Counts>>>() {
            tracing::info!(
                "{}: up to date (same inputs and settings); --force to redo",
                stages.iter().map(|s| s.dir.display().to_string()).collect::<Vec<_>>().join(", ")
            );
            return Ok(DriveReport { counts, budget_stopped: false, up_to_date: true });
        }
    }

    // A previous run that stopped early (budget) left transient error records behind:
    // continuing it means redoing those.
    let stopped_early = !opts.force && previous.iter().flatten().any(|m| !m.complete);
    if stopped_early {
        tracing::info!("the previous run stopped early; redoing its transient errors");
    }
    let retry_errors = opts.retry_errors || stopped_early;
    let outputs: Vec<StageOutput> = stages
        .iter()
        .zip(&fps)
        .map(|(s, fp)| StageOutput::open(&s.dir, s.step.name(), fp, opts.compress, opts.force).map(|(o, _)| o))
        .collect::<Result<_>>()?;

    // Plan each input file: skip, resume after N records, or (retry) redo some records.
    let mut counts: Vec<Counts> = vec![Counts::default(); n_steps];
    let mut shards: Vec<BTreeMap<usize, ShardInfo>> = vec![BTreeMap::new(); n_steps];
    let mut plans = Vec::new();
    for (k, input) in inputs {
        let k = *k;
        let states: Vec<ShardState> = outputs.iter().map(|o| o.state(k)).collect::<Result<_>>()?;
        let all_done = states.iter().all(|s| matches!(s, ShardState::Done(_)));
        if all_done {
            let partial_left = outputs.iter().any(|o| o.partial_path(k).is_file());
            let wants_retry = retry_errors && {
                let mut any = partial_left;
                for (s, o) in outputs.iter().enumerate() {
                    if any {
                        break;
                    }
                    o.read(k, |r| {
                        any |= stages[s].step.needs_retry(&r);
                        !any
                    })?;
                }
                any
            };
            if !wants_retry {
                for (s, o) in outputs.iter().enumerate() {
                    let _ = std::fs::remove_file(o.partial_path(k)); // stale copy from a seal cut short
                    let n = o.read(k, tallier(&mut counts[s], stages[s].step.as_ref()))?;
                    shards[s].insert(k, o.info(k, n));
                }
                continue;
            }
            // Retry: progress lives in partial files next to the previous finals.
            let done: Vec<u64> =
                outputs.iter().map(|o| if o.partial_path(k).is_file() { o.partial_records(k) } else { Ok(0) }).collect::<Result<_>>()?;
            let start = done.iter().copied().min().unwrap_or(0);
            cut_back(&outputs, stages, &mut counts, k, start)?;
            plans.push(ShardPlan { k, input: input.clone(), start, retry: true });
            continue;
        }
        // Plain resume: cut every step back to the record all of them have.
        for (s, o) in outputs.iter().enumerate() {
            if matches!(states[s], ShardState::Done(_)) {
                o.reopen(k)?;
            }
        }
        let start = states
            .iter()
            .map(|s| match s {
                ShardState::Done(n) | ShardState::Partial(n) => *n,
                ShardState::Missing => 0,
            })
            .min()
            .unwrap_or(0);
        cut_back(&outputs, stages, &mut counts, k, start)?;
        if start > 0 {
            tracing::info!("{}: resuming after {start} records", input.display());
        }
        plans.push(ShardPlan { k, input: input.clone(), start, retry: false });
    }

    let skipped = inputs.len() - plans.len();
    if skipped > 0 {
        tracing::info!("{skipped} of {} input shards already done", inputs.len());
    }

    // Stream the planned shards through the chain.
    let (tx, rx) = tokio::sync::mpsc::channel::<Job>(opts.window.max(1));
    let first_stage = stages.first().map(|s| s.step.name()).unwrap_or("?");
    let reader_outputs = outputs.clone();
    let max_line = opts.max_line_bytes;
    let producer = std::thread::Builder::new().name("reader".into()).spawn(move || -> Result<()> {
        for plan in plans {
            let mut prev_readers: Vec<Option<PrevReader>> = Vec::new();
            if plan.retry {
                for o in &reader_outputs {
                    prev_readers.push(Some(PrevReader::open(o.final_path(plan.k), plan.start)?));
                }
            }
            let mut index = 0u64;
            let mut failed: Option<anyhow::Error> = None;
            let mut open = true;
            read_records(std::slice::from_ref(&plan.input), max_line, |file, line, item| {
                index += 1;
                if index <= plan.start {
                    return true;
                }
                let input = match item {
                    Ok(r) => r,
                    Err(bad) => {
                        let mut r = Map::new();
                        let mut e = error_value(first_stage, "bad_input", format!("{}: {}", bad.reason, bad.detail), false);
                        e["file"] = json!(file);
                        e["line"] = json!(line);
                        r.insert("error".into(), e);
                        tracing::warn!("{file}:{line}: not a record: {} ({})", bad.reason, bad.detail);
                        r
                    }
                };
                let prev = match prev_readers.iter_mut().map(|p| p.as_mut().map(PrevReader::next).transpose()).collect::<Result<Vec<_>>>() {
                    Ok(p) if plan.retry => p.into_iter().map(Option::flatten).collect(),
                    Ok(_) => Vec::new(),
                    Err(e) => {
                        failed = Some(e);
                        return false;
                    }
                };
                open = tx.blocking_send(Job::Record { k: plan.k, input, prev }).is_ok();
                open
            })?;
            if let Some(e) = failed {
                return Err(e);
            }
            if !open || tx.blocking_send(Job::End(plan.k)).is_err() {
                return Ok(());
            }
        }
        Ok(())
    })?;

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().context("tokio runtime")?;
    let steps: Vec<Arc<dyn Step>> = stages.iter().map(|s| s.step.clone()).collect();
    let mut writers: Vec<Option<PartialShard>> = (0..n_steps).map(|_| None).collect();
    let label = stages.iter().map(|s| s.step.name()).collect::<Vec<_>>().join("→");
    let mut progress = crate::logging::Progress::new(&label, opts.quiet);
    let mut written = 0u64;
    let result = runtime.block_on(run_ordered(
        rx,
        opts.window,
        |job| {
            let steps = steps.clone();
            async move {
                match job {
                    Job::End(k) => Done::End(k),
                    Job::Record { k, input, prev } => Done::Record(k, run_chain(&steps, input, prev).await),
                }
            }
        },
        |done| {
            match done {
                Done::Record(k, outs) => {
                    for (s, out) in outs.iter().enumerate() {
                        if writers[s].is_none() {
                            writers[s] = Some(outputs[s].append(k)?);
                        }
                        if let Some(w) = writers[s].as_mut() {
                            w.write(out)?;
                        }
                        counts[s].add(steps[s].as_ref(), out);
                    }
                    written += 1;
                    progress.update(written, || format!("{} ok", counts.last().map(|c| c.ok).unwrap_or(0)));
                }
                Done::End(k) => {
                    for (s, o) in outputs.iter().enumerate() {
                        match writers[s].take() {
                            Some(w) => w.close()?,
                            None => drop(o.append(k)?.close()), // an input with no (new) records
                        }
                        shards[s].insert(k, o.seal(k)?);
                    }
                }
            }
            Ok(())
        },
    ));
    progress.finish();
    for w in writers.into_iter().flatten() {
        w.close()?;
    }
    let produced = producer.join().map_err(|_| anyhow::anyhow!("reader thread panicked"))?;
    result?;
    produced?;

    let budget_stopped = steps.iter().any(|s| s.budget_stopped());
    let mut inputs_desc: Vec<String> = vec![opts.label.clone()];
    for (s, stage) in stages.iter().enumerate() {
        let manifest = Manifest {
            stage: stage.step.name().to_string(),
            unitcoder_version: env!("CARGO_PKG_VERSION").into(),
            inputs: if s == 0 { inputs.iter().map(|(_, i)| i.display()).collect() } else { inputs_desc.clone() },
            fingerprint: fps[s].clone(),
            settings: stage.step.settings(),
            counts: serde_json::to_value(&counts[s])?,
            shards: shards[s].values().cloned().collect(),
            started_at: started_at.clone(),
            finished_at: now_rfc3339(),
            elapsed_seconds: started.elapsed().as_secs_f64(),
            timings: stage.step.report(),
            complete: !budget_stopped,
        };
        manifest.write(&stage.dir)?;
        inputs_desc = vec![stage.dir.display().to_string()];
    }
    Ok(DriveReport { counts, budget_stopped, up_to_date: false })
}

/// Counts every record it is given (for outputs an earlier run already wrote).
fn tallier<'a>(counts: &'a mut Counts, step: &'a dyn Step) -> impl FnMut(Record) -> bool + 'a {
    move |r| {
        counts.add(step, &r);
        true
    }
}

/// Cut every step's partial shard `k` back to its first `start` records and count those.
fn cut_back(outputs: &[StageOutput], stages: &[StageDir], counts: &mut [Counts], k: usize, start: u64) -> Result<()> {
    for (s, o) in outputs.iter().enumerate() {
        if o.partial_path(k).is_file() {
            o.truncate_partial(k, start)?;
            o.read_partial(k, tallier(&mut counts[s], stages[s].step.as_ref()))?;
        }
    }
    Ok(())
}

/// One record through the chain. With previous outputs (retry mode), steps whose previous
/// result is fine keep it; from the first step that needs redoing, everything is redone.
async fn run_chain(steps: &[Arc<dyn Step>], input: Record, prev: Vec<Option<Record>>) -> Vec<Record> {
    let mut outs = Vec::with_capacity(steps.len());
    let mut current = input;
    let mut redoing = prev.is_empty();
    for (s, step) in steps.iter().enumerate() {
        if !redoing {
            if let Some(Some(p)) = prev.get(s) {
                if !step.needs_retry(p) {
                    current = p.clone();
                    outs.push(p.clone());
                    continue;
                }
            }
            redoing = true;
        }
        let out = if error_of(&current).is_some() { current.clone() } else { step.clone().process(current.clone()).await };
        current = out.clone();
        outs.push(out);
    }
    outs
}

/// Reads a previous final shard record by record (retry mode).
struct PrevReader {
    lines: Box<dyn std::io::BufRead + Send>,
}

impl PrevReader {
    fn open(path: PathBuf, skip: u64) -> Result<PrevReader> {
        let mut r = PrevReader { lines: crate::shards::resume::open_lines(&path)? };
        for _ in 0..skip {
            r.next()?;
        }
        Ok(r)
    }

    fn next(&mut self) -> Result<Option<Record>> {
        let mut line = String::new();
        if self.lines.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        Ok(serde_json::from_str::<Value>(&line).ok().and_then(|v| match v {
            Value::Object(m) => Some(m),
            _ => None,
        }))
    }
}

/// Run one step as a stage command: `--input` shards in, `--output DIR` out, with resume,
/// `--retry-errors`, `--rank/--world-size` and the documented exit codes.
pub fn run_stage(ctx: &crate::cli::Context, step: Arc<dyn Step>, window: usize) -> Result<std::process::ExitCode> {
    let inputs = ctx.inputs()?;
    let out_dir = ctx.output_dir()?;
    let output_cfg = ctx.output_config();
    let paths: Vec<PathBuf> = inputs.iter().map(|(_, i)| i.path.clone()).collect();
    let run_fp = crate::shards::manifest::fingerprint(&paths, &json!({"compress": output_cfg.compress}));
    let name = step.name();
    tracing::info!("{name}: {} input shard(s) → {}", inputs.len(), out_dir.display());
    let opts = DriveOptions {
        window,
        retry_errors: ctx.global.retry_errors,
        force: ctx.global.force,
        compress: output_cfg.compress,
        quiet: ctx.global.quiet,
        max_line_bytes: ctx.record_line_limit(),
        label: ctx.global.input.join(" "),
    };
    let report = drive(&inputs, &[StageDir { step: step.clone(), dir: out_dir }], &run_fp, &opts)?;
    log_report(&[step], &report);
    Ok(report.exit_code())
}

/// One summary line per step, plus what to do about leftovers.
pub fn log_report(steps: &[Arc<dyn Step>], report: &DriveReport) {
    for (step, c) in steps.iter().zip(&report.counts) {
        tracing::info!(
            "{}: {} records, {} ok, errors {:?}, from earlier steps {}, {:?}",
            step.name(),
            c.records,
            c.ok,
            c.errors_by_kind,
            c.upstream_errors,
            c.outcomes
        );
    }
    if report.budget_stopped {
        tracing::warn!("stopped by the LLM budget: rerun with a larger budget to continue (answers already paid for come from the cache)");
    } else if report.counts.iter().any(|c| c.retryable > 0) {
        let n: u64 = report.counts.iter().map(|c| c.retryable).sum();
        tracing::warn!("{n} records ended in a transient error: rerun with --retry-errors to redo just those (exit status {EXIT_RETRYABLE})");
    }
}
