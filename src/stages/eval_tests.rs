//! `unitcoder eval-tests`: how good is a test generator? UnitCoder evaluates its own by
//! accuracy on canonical solutions and by line coverage (its Tables 6 and 8); we add the
//! mutation score, the stronger measure.
//!
//!   1. take a benchmark's known-correct solutions (the shipped HumanEval, MBPP and
//!      BigCodeBench copies, or any JSONL with `code` and `entry_point`);
//!   2. have the model write a test module for each, with the gen-tests prompt — or, with
//!      `--human-tests`, take the benchmark's own tests (the reference point);
//!   3. run each solution against its tests in the sandbox and assess every pass (line
//!      coverage, mutants, reruns), exactly as sandbox-run does;
//!   4. report accuracy (share of test modules that pass the correct solution), mean line
//!      coverage and mutation score of the passing ones, and the estimated false-pass rate
//!      (share of valid mutants that pass the tests), as a table and as JSON.
//!
//! Steps 2–3 are the gen-tests and sandbox-run steps writing `DIR/gen-tests/` and
//! `DIR/sandbox-run/`, so a rerun resumes, and `--offline` replays the response cache.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use clap::Args;
use serde::Serialize;
use serde_json::{json, Value};

use crate::context::Context;
use crate::executor::{drive, log_report, DriveOptions, StageDir};
use crate::llm::LlmArgs;
use crate::record::{field, Record, RecordExt, Status, Verdict};
use crate::sandbox::{AdequacyArgs, Sandbox};
use crate::shards::expand_inputs;
use crate::shards::reader::{read_record_items, RecordItem};
use crate::stages::common::{adequacy_settings, llm_settings, SandboxFlags};
use crate::stages::gen_tests::{held_out, GenTestsSettings, GenTestsStep};
use crate::stages::sandbox_run::SandboxStep;

/// The shipped evaluation copies (data/benchmarks/README.md: origin and licences).
const BENCHMARKS: &[(&str, &[u8])] = &[
    ("humaneval", include_bytes!("../../data/benchmarks/eval-humaneval.jsonl.zst")),
    ("mbpp", include_bytes!("../../data/benchmarks/eval-mbpp.jsonl.zst")),
    ("bigcodebench", include_bytes!("../../data/benchmarks/eval-bigcodebench.jsonl.zst")),
];

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Evaluation")]
pub struct EvalTestsArgs {
    /// humaneval, mbpp, bigcodebench, or a JSONL file with `code` (or `canonical_solution`),
    /// `entry_point` and, for --human-tests, `tests` (or `test`).
    #[arg(long, default_value = "humaneval")]
    pub benchmark: String,
    /// Measure the benchmark's own tests instead of generated ones.
    #[arg(long)]
    pub human_tests: bool,
    /// Only the first N tasks.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Work directory (tasks, gen-tests/, sandbox-run/, eval-tests.json).
    #[arg(long, value_name = "DIR")]
    pub work_dir: PathBuf,
    /// Test modules sampled per solution (the first usable one is measured).
    #[arg(long, default_value_t = 1)]
    pub samples: u32,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub llm: LlmArgs,
    #[command(flatten)]
    pub sandbox: SandboxFlags,
    #[command(flatten)]
    pub adequacy: AdequacyArgs,
}

/// The measurement.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub benchmark: String,
    pub tests: &'static str,
    pub tasks: u64,
    /// Tasks that got a test module (all of them with --human-tests).
    pub with_tests: u64,
    /// Test modules that pass the known-correct solution.
    pub passing: u64,
    /// passing / with_tests.
    pub accuracy: Option<f64>,
    /// Mean line coverage of the passing modules (where measured).
    pub line_coverage: Option<f64>,
    pub coverage_measured: u64,
    /// Mean mutation score of the passing modules (where mutants existed).
    pub mutation_score: Option<f64>,
    pub mutation_measured: u64,
    pub mutants: u64,
    pub mutants_killed: u64,
    /// Surviving mutants / valid mutants, pooled: the share of (likely) wrong programs the
    /// tests would pass.
    pub false_pass_rate: Option<f64>,
    pub statuses: std::collections::BTreeMap<String, u64>,
}

/// Step 1: the benchmark's tasks as records.
fn load_tasks(args: &EvalTestsArgs) -> Result<Vec<Record>> {
    let text = match BENCHMARKS.iter().find(|(n, _)| *n == args.benchmark) {
        Some((_, bytes)) => {
            let raw = zstd::decode_all(*bytes).context("built-in benchmark copy")?;
            String::from_utf8(raw).context("built-in benchmark copy is not UTF-8")?
        }
        None => std::fs::read_to_string(&args.benchmark)
            .with_context(|| format!("--benchmark {}: not a built-in name (humaneval, mbpp, bigcodebench) or a readable file", args.benchmark))?,
    };
    let mut tasks = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let Ok(Value::Object(row)) = serde_json::from_str::<Value>(line) else {
            tracing::warn!("{}:{}: not a JSON object; skipped", args.benchmark, i + 1);
            continue;
        };
        let text = |keys: &[&str]| keys.iter().find_map(|k| row.get(*k).and_then(Value::as_str)).map(str::to_string);
        let (Some(code), Some(entry)) = (text(&["code", "canonical_solution"]), text(&["entry_point"])) else {
            tracing::warn!("{}:{}: no code/canonical_solution or entry_point; skipped", args.benchmark, i + 1);
            continue;
        };
        let id = text(&["task_id", "id"]).unwrap_or_else(|| format!("task-{}", i + 1));
        let mut r = Record::new();
        r.put(field::ID, &id);
        r.put(field::CODE, &code);
        r.put(field::FUNCTION, &code);
        r.put(field::ENTRY_POINT, &entry);
        if args.human_tests {
            let Some(tests) = text(&["tests", "test"]) else {
                anyhow::bail!("{}:{}: --human-tests needs a `tests` field (a unittest module)", args.benchmark, i + 1);
            };
            r.put(field::TESTS, &tests);
        }
        tasks.push(r);
        if args.limit.is_some_and(|n| tasks.len() >= n) {
            break;
        }
    }
    anyhow::ensure!(!tasks.is_empty(), "--benchmark {}: no tasks", args.benchmark);
    Ok(tasks)
}

pub fn run(ctx: &Context, args: &EvalTestsArgs) -> Result<ExitCode> {
    let work = &args.work_dir;
    std::fs::create_dir_all(work).with_context(|| format!("cannot create {}", work.display()))?;
    let tasks = load_tasks(args)?;
    let task_dir = work.join("tasks");
    write_tasks(&task_dir, &tasks)?;

    // Steps 2–3.
    let mut llm = llm_settings(ctx, &args.llm);
    if llm.cache.is_empty() {
        llm.cache = work.join("llm-cache.sqlite").display().to_string();
    }
    let sandbox = Arc::new(Sandbox::start(args.sandbox.settings(ctx))?);
    let fields = args.sandbox.fields.clone();
    let adequacy = adequacy_settings(ctx, &args.adequacy);
    let mut stages = Vec::new();
    if !args.human_tests {
        let settings = GenTestsSettings::resolve(ctx, Some(args.samples), false, false)?;
        let step = GenTestsStep::new(llm.clone(), settings, held_out(ctx)?, Some(sandbox.clone()), &work.join("gen-tests"))?;
        stages.push(StageDir { step: Arc::new(step), dir: work.join("gen-tests") });
    }
    stages.push(StageDir { step: Arc::new(SandboxStep { sandbox: sandbox.clone(), fields, adequacy }), dir: work.join("sandbox-run") });
    let inputs: Vec<_> = expand_inputs(&[task_dir.display().to_string()])?.into_iter().enumerate().collect();
    let paths: Vec<PathBuf> = inputs.iter().map(|(_, i)| i.path.clone()).collect();
    let fp = crate::shards::manifest::fingerprint(&paths, &json!({"human_tests": args.human_tests}));
    let opts = DriveOptions {
        window: sandbox.window_with_llm(llm.concurrency),
        retry_errors: ctx.retry_errors,
        force: ctx.force,
        compress: true,
        quiet: ctx.quiet,
        max_line_bytes: ctx.record_line_limit(),
        limit: None,
        label: task_dir.display().to_string(),
    };
    let report = drive(&inputs, &stages, &fp, &opts)?;
    log_report(&stages.iter().map(|s| s.step.clone()).collect::<Vec<_>>(), &report);
    drop(stages);
    drop(sandbox);

    // Step 4.
    let mut summary = summarise(&work.join("sandbox-run"), tasks.len() as u64)?;
    summary.benchmark = args.benchmark.clone();
    summary.tests = if args.human_tests { "human" } else { "generated" };
    let json = serde_json::to_string_pretty(&summary)?;
    crate::shards::writer::write_atomic(&work.join("eval-tests.json"), json.as_bytes())?;
    if args.json {
        println!("{json}");
    } else {
        print!("{}", render(&summary));
    }
    Ok(report.exit_code())
}

/// The tasks as one JSONL file, rewritten only when they changed (so a rerun resumes).
fn write_tasks(dir: &Path, tasks: &[Record]) -> Result<()> {
    let mut text = String::new();
    for t in tasks {
        text.push_str(&serde_json::to_string(t)?);
        text.push('\n');
    }
    let path = dir.join("tasks.jsonl");
    if std::fs::read_to_string(&path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    crate::shards::writer::write_atomic(&path, text.as_bytes())
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// The measurement from the sandbox-run records.
pub fn summarise(dir: &Path, tasks: u64) -> Result<Summary> {
    let mut s = Summary { tasks, ..Default::default() };
    let (mut coverage, mut scores) = (Vec::new(), Vec::new());
    let files: Vec<_> = expand_inputs(&[dir.display().to_string()])?;
    read_record_items(&files, 256 << 20, |item| {
        let RecordItem::Record(r) = item else { return true };
        let Some(v) = r.typed::<Verdict>(field::VERDICT) else {
            *s.statuses.entry(r.error().map(|e| format!("no_tests_{}", e.kind)).unwrap_or("no_tests".into())).or_default() += 1;
            return true;
        };
        s.with_tests += 1;
        *s.statuses.entry(v.status.as_str().into()).or_default() += 1;
        if v.status != Status::Pass {
            return true;
        }
        s.passing += 1;
        if let Some(a) = v.adequacy {
            coverage.extend(a.line_coverage);
            if let Some(score) = a.mutation_score {
                scores.push(score);
                s.mutants += a.mutants as u64;
                s.mutants_killed += a.killed as u64;
            }
        }
        true
    })?;
    s.accuracy = (s.with_tests > 0).then(|| s.passing as f64 / s.with_tests as f64);
    s.coverage_measured = coverage.len() as u64;
    s.mutation_measured = scores.len() as u64;
    s.line_coverage = mean(&coverage);
    s.mutation_score = mean(&scores);
    s.false_pass_rate = (s.mutants > 0).then(|| (s.mutants - s.mutants_killed) as f64 / s.mutants as f64);
    Ok(s)
}

pub fn render(s: &Summary) -> String {
    let pct = |x: Option<f64>| x.map(|v| format!("{:.1}%", v * 100.0)).unwrap_or_else(|| "–".into());
    let mut out = format!("eval-tests: {} ({} tests)\n", s.benchmark, s.tests);
    out.push_str(&format!("  tasks                 {}\n", s.tasks));
    out.push_str(&format!("  with a test module    {}\n", s.with_tests));
    out.push_str(&format!("  accuracy              {} ({} pass the correct solution)\n", pct(s.accuracy), s.passing));
    out.push_str(&format!("  line coverage (mean)  {} (of {} passing)\n", pct(s.line_coverage), s.coverage_measured));
    out.push_str(&format!("  mutation score (mean) {} (of {} with mutants)\n", pct(s.mutation_score), s.mutation_measured));
    out.push_str(&format!(
        "  false-pass rate       {} ({} of {} mutants survive)\n",
        pct(s.false_pass_rate),
        s.mutants - s.mutants_killed,
        s.mutants
    ));
    out.push_str(&format!("  statuses              {}\n", s.statuses.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")));
    out
}
