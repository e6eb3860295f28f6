//! `unitcoder run`: the whole method in one command (the one stage that composes the
//! others).
//!
//!   1. `extract` the corpus into `WORK/extract/` (skipped when up to date); with
//!      `--world-size N`, each rank then takes its `share` of every rank's functions,
//!      deduplicated across ranks (`WORK/share/`, see `share.rs`);
//!   2. stream every extracted record through gen-tests → sandbox-run → fix → refine, each
//!      record moving on as soon as its previous step is done (bounded window), every
//!      step's results landing as shards in `WORK/<step>/` with its own manifest;
//!   3. `export` the refined records to `WORK/export/` (only with one process: with
//!      `--world-size N` run `unitcoder export -i WORK/refine -o WORK/export` once all
//!      ranks are done, so dedup sees everything);
//!   4. print the funnel (`unitcoder stats WORK`).
//!
//! With `[run] case2code = true`, the chain goes on into `case2code` (WORK/case2code/),
//! exported separately to WORK/export-case2code/.
//!
//! Killed at any point, the same command continues where it stopped.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::context::Context;
use crate::executor::{drive, log_report, DriveOptions, StageDir};
use crate::llm::{LlmArgs, LlmSettings};
use crate::sandbox::AdequacyArgs;
use crate::sandbox::Sandbox;
use crate::shards::{expand_inputs, Manifest};
use crate::stages::case2code::{Case2CodeSettings, Case2CodeStep};
use crate::stages::common::{adequacy_settings, llm_settings, rewrite_check, SandboxFlags};
use crate::stages::fix::{FixSettings, FixStep};
use crate::stages::gen_tests::{held_out, GenTestsSettings, GenTestsStep};
use crate::stages::refine::{RefineSettings, RefineStep};
use crate::stages::sandbox_run::SandboxStep;
use crate::stages::{export, extract, stats};

/// `[run]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunSettings {
    /// Work directory (flag `--work-dir` wins).
    pub work_dir: String,
    /// Corpus inputs when no `--input` is given.
    pub inputs: Vec<String>,
    /// Test modules sampled per function in gen-tests.
    pub test_samples: u32,
    pub refine: bool,
    /// Also make Case2Code tasks from the verified functions (`WORK/case2code/`, exported
    /// to `WORK/export-case2code/`).
    pub case2code: bool,
    pub export: bool,
}

impl Default for RunSettings {
    fn default() -> Self {
        Self { work_dir: String::new(), inputs: Vec::new(), test_samples: 1, refine: true, case2code: false, export: true }
    }
}

#[derive(Debug, Clone, Args, Default)]
#[command(next_help_heading = "Run")]
pub struct RunArgs {
    /// Directory for every stage's output (`extract/`, `gen-tests/`, ...); `-o` works too.
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Test modules sampled per function in gen-tests [default: 1].
    #[arg(long, value_name = "N")]
    pub test_samples: Option<u32>,
    /// Fix rounds at most [default: 3].
    #[arg(long, value_name = "N")]
    pub max_rounds: Option<u32>,
    /// Fix candidates per round [default: 3].
    #[arg(long, value_name = "N")]
    pub fix_samples: Option<u32>,
    /// Do not import programs in the sandbox before asking for their tests (on by default:
    /// a program that cannot import costs no model call).
    #[arg(long)]
    pub no_import_check: bool,
    /// Do not run generated test modules once in gen-tests to see that they call the function.
    #[arg(long)]
    pub no_call_check: bool,
    /// Refine: do not add doctest examples to docstrings.
    #[arg(long)]
    pub no_doctests: bool,
    /// Stop after this stage (extract, share, gen-tests, sandbox-run, fix, refine, case2code):
    /// e.g. a first Slurm array that only extracts [default: run everything].
    #[arg(long, value_name = "STAGE", value_parser = ["extract", "share", "gen-tests", "sandbox-run", "fix", "refine", "case2code"])]
    pub stop_after: Option<String>,
    /// Only export (every rank, checked complete) and print the funnel: the merge of a split
    /// run, e.g. after its Slurm arrays.
    #[arg(long)]
    pub only_export: bool,
    /// With ranks: how long the LLM stages wait for the other ranks' extracts (their share
    /// needs every rank's functions); then exit 7 [default: no limit].
    #[arg(long, value_name = "SECONDS")]
    pub wait_for_ranks: Option<u64>,
    #[command(flatten)]
    pub extract: extract::ExtractArgs,
    #[command(flatten)]
    pub export: export::ExportArgs,
    #[command(flatten)]
    pub llm: LlmArgs,
    #[command(flatten)]
    pub sandbox: SandboxFlags,
    #[command(flatten)]
    pub adequacy: AdequacyArgs,
}

pub fn run(ctx: &Context, args: &RunArgs) -> Result<ExitCode> {
    let rs: RunSettings = ctx.config.section("run")?;
    let work = args
        .work_dir
        .clone()
        .or_else(|| ctx.output.clone())
        .or_else(|| (!rs.work_dir.is_empty()).then(|| PathBuf::from(&rs.work_dir)))
        .ok_or_else(|| crate::exit::UsageError::new("--work-dir DIR is required (or [run] work_dir in the config)"))?;
    // `[run] inputs` in a config file are found relative to it too (run from anywhere).
    let corpus = if ctx.inputs.is_empty() { rs.inputs.iter().map(|i| ctx.config_path(i)).collect() } else { ctx.inputs.clone() };
    if corpus.is_empty() {
        return Err(crate::exit::UsageError::new("--input PATH is required (or [run] inputs in the config)").into());
    }
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create work directory {}", work.display()))?;
    let command = match &args.stop_after {
        Some(stage) => format!("run --stop-after {stage}"),
        None => "run".to_string(),
    };
    if args.only_export {
        // The merge of a split run: steps 3 and 4 over every rank's output.
        anyhow::ensure!(ctx.world_size <= 1, crate::exit::UsageError::new("--only-export merges every rank: drop --rank/--world-size"));
        let code = export_all(ctx, args, &rs, &work)?;
        funnel_and_report(&work, !ctx.quiet, true);
        return Ok(code);
    }
    crate::stages::common::marker::with_rank_marker(ctx, Some(&work), &command, || run_in(ctx, args, &rs, &work, corpus))
}

/// Steps 1 to 4 in the work directory.
fn run_in(ctx: &Context, args: &RunArgs, rs: &RunSettings, work: &Path, corpus: Vec<String>) -> Result<ExitCode> {
    let work = work.to_path_buf();

    // Step 1: extract (this rank's files of the corpus).
    // `--limit N` is N functions through the chain: extract stops once it has kept N.
    let mut ex_ctx = ctx.with_io(corpus, work.join("extract"), true);
    ex_ctx.limit = None;
    let code = extract::run_until(&ex_ctx, &args.extract, ctx.limit)?;
    anyhow::ensure!(code == ExitCode::SUCCESS, "extract failed");
    let extract_dir = ex_ctx.output_dir()?;
    let stop_after = args.stop_after.as_deref();
    if stop_after == Some("extract") {
        tracing::info!("run: stopped after extract (--stop-after)");
        return Ok(ExitCode::SUCCESS);
    }
    // With ranks: this rank's share of every rank's functions, deduplicated across ranks.
    let chain_input = if ctx.world_size > 1 && !ctx.dry_run {
        let share = crate::stages::share::Share {
            extract: &work.join("extract"),
            output: &work.join("share"),
            rank: ctx.rank,
            world: ctx.world_size,
            wait: args.wait_for_ranks.map(std::time::Duration::from_secs),
            writer: crate::shards::ShardWriterOptions {
                records_per_shard: ctx.output_format.records_per_shard,
                compress: ctx.output_format.compress,
                ..Default::default()
            },
            force: ctx.force,
            max_line_bytes: ctx.record_line_limit(),
        };
        crate::stages::share::run(&share)?
    } else {
        extract_dir.clone()
    };
    if stop_after == Some("share") {
        tracing::info!("run: stopped after share (--stop-after)");
        return Ok(ExitCode::SUCCESS);
    }
    let manifest = Manifest::read(&chain_input)?.context("extract wrote no manifest")?;
    let shard_specs: Vec<String> = manifest.shards.iter().map(|s| chain_input.join(&s.file).display().to_string()).collect();

    // Step 2: the record chain, one LLM cache for the whole run.
    let mut llm = llm_settings(ctx, &args.llm);
    if llm.cache.is_empty() {
        llm.cache = work.join("llm-cache.sqlite").display().to_string();
    }
    let sandbox = Arc::new(Sandbox::start(args.sandbox.settings(ctx))?);
    let mut stages = chain(ctx, args, rs, &work, llm.clone(), &sandbox)?;
    if let Some(last) = stop_after {
        if let Some(i) = stages.iter().position(|s| s.step.name() == last) {
            stages.truncate(i + 1);
        }
    }
    // A dry run writes the chain's (error) records to a scratch directory.
    let scratch = if ctx.dry_run { Some(tempfile::tempdir()?) } else { None };
    if let Some(dir) = &scratch {
        for s in &mut stages {
            s.dir = dir.path().join(s.step.name());
        }
    }
    let inputs: Vec<_> = expand_inputs(&shard_specs)?.into_iter().enumerate().collect();
    let paths: Vec<PathBuf> = inputs.iter().map(|(_, i)| i.path.clone()).collect();
    let run_fp = crate::shards::manifest::fingerprint(&paths, &json!({"compress": ctx.output_format.compress, "limit": ctx.limit}));
    let opts = DriveOptions {
        window: sandbox.window_with_llm(llm.concurrency),
        retry_errors: ctx.retry_errors,
        force: ctx.force,
        compress: ctx.output_format.compress,
        quiet: ctx.quiet,
        max_line_bytes: ctx.record_line_limit(),
        label: chain_input.display().to_string(),
        limit: ctx.limit,
    };
    let names: Vec<&str> = stages.iter().map(|s| s.step.name()).collect();
    tracing::info!("run: {} extracted shard(s) through {}", inputs.len(), names.join(" → "));
    let report = drive(&inputs, &stages, &run_fp, &opts)?;
    if ctx.dry_run {
        let steps: Vec<_> = stages.iter().map(|s| s.step.clone()).collect();
        let functions = report.counts.first().map_or(0, |c| c.records);
        let stopped = report.counts.first().is_some_and(|c| c.errors_by_kind.contains_key("dry_run"));
        let fix = FixSettings::resolve(ctx, args.max_rounds, args.fix_samples, None)?;
        let mut later = Vec::new();
        if stopped {
            later.push(crate::executor::LaterStep { name: "fix", requests_max: functions * u64::from(fix.max_rounds), n: u64::from(fix.samples) });
            if rs.refine {
                later.push(crate::executor::LaterStep { name: "refine", requests_max: functions, n: 1 });
            }
        }
        print!("{}", crate::executor::dry_run_report(&steps, &later, ctx));
        println!("  ({functions} functions extracted into {}; a real run reuses them)", extract_dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    log_report(&stages.iter().map(|s| s.step.clone()).collect::<Vec<_>>(), &report);
    drop(stages);
    drop(sandbox);
    if report.budget_stopped || report.llm_fatal.is_some() || stop_after.is_some() {
        funnel_and_report(&work, false, stop_after.is_none() && ctx.world_size <= 1);
        return Ok(report.exit_code());
    }

    // Step 3: export (one process only: dedup needs every record).
    if rs.export && ctx.world_size <= 1 {
        let code = export_all(ctx, args, rs, &work)?;
        if code != ExitCode::SUCCESS {
            funnel_and_report(&work, false, true);
            return Ok(code);
        }
    } else if rs.export {
        tracing::info!(
            "run: rank {} done; when every rank is (`unitcoder status {}`), merge them with the same command and --only-export",
            ctx.rank,
            work.display()
        );
    }

    // Step 4: the funnel, and the report to look at.
    funnel_and_report(&work, !ctx.quiet, ctx.world_size <= 1);
    Ok(report.exit_code())
}

/// The work directory's numbers, read once: the funnel on stderr and/or `WORK/report.html`
/// (its path on stdout). Neither can fail the run: a report that cannot be made is a warning.
fn funnel_and_report(work: &Path, funnel: bool, report: bool) {
    if !funnel && !report {
        return;
    }
    let numbers = match stats::collect(work) {
        Ok(numbers) => numbers,
        Err(e) => {
            if report {
                tracing::warn!("report: {e:#}");
            }
            return;
        }
    };
    if funnel {
        eprintln!("{}", stats::render(&numbers));
    }
    if report {
        match crate::stages::report::write_collected(work, &numbers, None, 15) {
            Ok(path) => println!("report: {}", path.display()),
            Err(e) => tracing::warn!("report: {e:#}"),
        }
    }
}

/// Step 3: export the last stage (every rank of it, checked complete) to `WORK/export/`, and
/// Case2Code tasks to `WORK/export-case2code/`.
fn export_all(ctx: &Context, args: &RunArgs, rs: &RunSettings, work: &Path) -> Result<ExitCode> {
    let last = if rs.refine { "refine" } else { "fix" };
    let ex = ctx.with_io(vec![work.join(last).display().to_string()], work.join("export"), false);
    let code = export::run(&ex, &args.export)?;
    if code != ExitCode::SUCCESS || !rs.case2code {
        return Ok(code);
    }
    let ex = ctx.with_io(vec![work.join("case2code").display().to_string()], work.join("export-case2code"), false);
    export::run(&ex, &args.export)
}

/// The record chain of step 2, each step built from its resolved settings.
fn chain(ctx: &Context, args: &RunArgs, rs: &RunSettings, work: &Path, llm: LlmSettings, sandbox: &Arc<Sandbox>) -> Result<Vec<StageDir>> {
    let dir = |stage: &str| ctx.rank_dir(work.join(stage));
    let fields = args.sandbox.fields.clone();
    let check = rewrite_check(ctx)?;
    let fix = FixSettings::resolve(ctx, args.max_rounds, args.fix_samples, None)?;
    let adequacy = adequacy_settings(ctx, &args.adequacy);
    let samples = args.test_samples.or((rs.test_samples != 1).then_some(rs.test_samples));
    let tests = GenTestsSettings::resolve(ctx, samples, args.no_import_check, args.no_call_check)?;
    let mut stages: Vec<StageDir> = vec![
        StageDir {
            step: Arc::new(GenTestsStep::new(llm.clone(), tests, held_out(ctx)?, Some(sandbox.clone()), &dir("gen-tests"))?),
            dir: dir("gen-tests"),
        },
        StageDir {
            step: Arc::new(SandboxStep { sandbox: sandbox.clone(), fields: fields.clone(), adequacy: adequacy.clone() }),
            dir: dir("sandbox-run"),
        },
        StageDir {
            step: Arc::new(FixStep::new(fix, llm.clone(), sandbox.clone(), fields.clone(), check.clone(), adequacy.clone(), &dir("fix"))?),
            dir: dir("fix"),
        },
    ];
    if rs.refine {
        let settings = RefineSettings::resolve(ctx, args.no_doctests)?;
        let step = RefineStep::new(settings, llm.clone(), sandbox.clone(), fields, check, adequacy, &dir("refine"))?;
        stages.push(StageDir { step: Arc::new(step), dir: dir("refine") });
    }
    if rs.case2code {
        let step = Case2CodeStep::new(Case2CodeSettings::from_config(ctx)?, llm, sandbox.clone(), &dir("case2code"))?;
        stages.push(StageDir { step: Arc::new(step), dir: dir("case2code") });
    }
    Ok(stages)
}
