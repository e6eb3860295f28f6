//! `unitcoder run`: the whole method in one command.
//!
//!   1. `extract` the corpus into `WORK/extract/` (skipped when up to date);
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

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::cli::Context;
use crate::executor::{drive, log_report, DriveOptions, StageDir, Step};
use crate::llm::LlmArgs;
use crate::sandbox::Sandbox;
use crate::shards::{expand_inputs, Manifest};
use crate::stages::sandbox_run::{resolve_settings, SandboxRunArgs, SandboxStep};
use crate::stages::{case2code, export, extract, fix, gen_tests, refine};

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
pub struct RunArgs {
    /// Directory for every stage's output (`extract/`, `gen-tests/`, ...).
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Fix rounds at most [default: 3].
    #[arg(long)]
    pub max_rounds: Option<u32>,
    /// Fix candidates per round [default: 3].
    #[arg(long)]
    pub samples: Option<u32>,
    #[command(flatten)]
    pub llm: LlmArgs,
    #[command(flatten)]
    pub sandbox: SandboxRunArgs,
}

/// A context for one stage of the run: same flags and config, other input and output.
pub(crate) fn stage_ctx(ctx: &Context, inputs: Vec<String>, output: PathBuf, split: bool) -> Context {
    let mut global = ctx.global.clone();
    global.input = inputs;
    global.output = Some(output);
    if !split {
        global.rank = 0;
        global.world_size = 1;
    }
    Context { global, config: ctx.config.clone(), config_dir: ctx.config_dir.clone(), jobs: ctx.jobs }
}

pub fn run(ctx: &Context, args: &RunArgs) -> Result<ExitCode> {
    let rs = &ctx.config.run;
    let work = args
        .work_dir
        .clone()
        .or_else(|| ctx.global.output.clone())
        .or_else(|| (!rs.work_dir.is_empty()).then(|| PathBuf::from(&rs.work_dir)))
        .context("--work-dir DIR is required (or [run] work_dir in the config)")?;
    let corpus = if ctx.global.input.is_empty() { rs.inputs.clone() } else { ctx.global.input.clone() };
    anyhow::ensure!(!corpus.is_empty(), "--input is required (or [run] inputs in the config)");
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create work directory {}", work.display()))?;

    // Step 1: extract (this rank's share of the corpus).
    let ex_ctx = stage_ctx(ctx, corpus, work.join("extract"), true);
    let code = extract::run(&ex_ctx, &extract::ExtractArgs::default())?;
    anyhow::ensure!(code == ExitCode::SUCCESS, "extract failed");
    let extract_dir = ex_ctx.output_dir()?;
    let manifest = Manifest::read(&extract_dir)?.context("extract wrote no manifest")?;
    let shard_specs: Vec<String> = manifest.shards.iter().map(|s| extract_dir.join(&s.file).display().to_string()).collect();
    let rank_dir = |stage: &str| ctx.rank_dir(work.join(stage));

    // Step 2: the record chain, one LLM cache for the whole run.
    let mut chain_ctx = stage_ctx(ctx, shard_specs.clone(), rank_dir("gen-tests"), false);
    if chain_ctx.config.llm.cache.is_empty() && args.llm.cache.is_none() {
        chain_ctx.config.llm.cache = work.join("llm-cache.sqlite").display().to_string();
    }
    let sandbox = Arc::new(Sandbox::start(resolve_settings(&chain_ctx, &args.sandbox))?);
    let fix_args =
        fix::FixArgs { max_rounds: args.max_rounds, samples: args.samples, keep: None, llm: args.llm.clone(), sandbox: args.sandbox.clone() };
    let refine_args = refine::RefineArgs { no_doctests: false, llm: args.llm.clone(), sandbox: args.sandbox.clone() };
    let gen = Arc::new(gen_tests::GenTestsStep::new(&chain_ctx, &args.llm, Some(rs.test_samples), &rank_dir("gen-tests"))?);
    let window = crate::stages::sandbox_run::llm_sandbox_window(gen.agent.client.settings.concurrency, &sandbox);
    let mut stages: Vec<StageDir> = vec![
        StageDir { step: gen, dir: rank_dir("gen-tests") },
        StageDir { step: Arc::new(SandboxStep { sandbox: sandbox.clone(), fields: args.sandbox.fields.clone() }), dir: rank_dir("sandbox-run") },
        StageDir { step: Arc::new(fix::FixStep::new(&chain_ctx, &fix_args, sandbox.clone(), &rank_dir("fix"))?), dir: rank_dir("fix") },
    ];
    if rs.refine {
        stages.push(StageDir {
            step: Arc::new(refine::RefineStep::new(&chain_ctx, &refine_args, sandbox.clone(), &rank_dir("refine"))?),
            dir: rank_dir("refine"),
        });
    }
    if rs.case2code {
        let c2c_args = case2code::Case2CodeArgs { llm: args.llm.clone(), sandbox: args.sandbox.clone(), ..Default::default() };
        stages.push(StageDir {
            step: Arc::new(case2code::Case2CodeStep::new(&chain_ctx, &c2c_args, sandbox.clone(), &rank_dir("case2code"))?),
            dir: rank_dir("case2code"),
        });
    }
    let inputs: Vec<_> = expand_inputs(&shard_specs)?.into_iter().enumerate().collect();
    let run_fp = crate::shards::manifest::fingerprint(
        &inputs.iter().map(|(_, i)| i.path.clone()).collect::<Vec<_>>(),
        &json!({"compress": ctx.output_config().compress}),
    );
    let opts = DriveOptions {
        window,
        retry_errors: ctx.global.retry_errors,
        force: ctx.global.force,
        compress: ctx.output_config().compress,
        quiet: ctx.global.quiet,
        max_line_bytes: ctx.record_line_limit(),
        label: extract_dir.display().to_string(),
    };
    tracing::info!("run: {} extracted shard(s) through {}", inputs.len(), stages.iter().map(|s| s.step.name()).collect::<Vec<_>>().join(" → "));
    let report = drive(&inputs, &stages, &run_fp, &opts)?;
    let steps: Vec<Arc<dyn Step>> = stages.iter().map(|s| s.step.clone()).collect();
    log_report(&steps, &report);
    drop(stages);
    drop(steps);
    drop(sandbox);
    if report.budget_stopped {
        return Ok(report.exit_code());
    }

    // Step 3: export (one process only: dedup needs every record).
    let last = if rs.refine { "refine" } else { "fix" };
    if rs.export && ctx.global.world_size <= 1 {
        let ex = stage_ctx(ctx, vec![work.join(last).display().to_string()], work.join("export"), false);
        export::run(&ex, &export::ExportArgs::default())?;
        if rs.case2code {
            let ex = stage_ctx(ctx, vec![work.join("case2code").display().to_string()], work.join("export-case2code"), false);
            export::run(&ex, &export::ExportArgs::default())?;
        }
    } else if rs.export {
        tracing::info!(
            "run: rank {} done; when every rank is, run `unitcoder export -i {} -o {}`",
            ctx.global.rank,
            work.join(last).display(),
            work.join("export").display()
        );
    }

    // Step 4: the funnel.
    if !ctx.global.quiet {
        if let Ok(report) = crate::stages::stats::collect(&work) {
            eprintln!("{}", crate::stages::stats::render(&report));
        }
    }
    Ok(report.exit_code())
}
