//! Command-line interface: clap definitions, the resolved `Context`, and dispatch to the
//! stages. Each stage owns its own flags (`stages::<name>::<Name>Args`); the flags every
//! command shares are here. Exit codes are in `exit.rs`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::Config;
use crate::context::Context;
use crate::logging::{self, LogFormat};
use crate::stages;

#[derive(Debug, Parser)]
#[command(name = "unitcoder", version, about = "Turn raw code corpora into verified, documented code-training data")]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags shared by every stage.
#[derive(Debug, Clone, Args, Default)]
pub struct GlobalArgs {
    /// Input: a file, a directory of shards or `.py` files, or a glob. Repeatable.
    #[arg(long, short = 'i', global = true, value_name = "PATH")]
    pub input: Vec<String>,
    /// Output directory for shards and manifest.json.
    #[arg(long, short = 'o', global = true, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Worker threads (default: number of cores).
    #[arg(long, short = 'j', global = true, value_name = "N")]
    pub jobs: Option<usize>,
    /// TOML config file; flags override its values.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Only warnings and errors.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Records per output shard.
    #[arg(long, global = true, value_name = "N")]
    pub records_per_shard: Option<usize>,
    /// Write plain `.jsonl` shards instead of `.jsonl.zst`.
    #[arg(long, global = true)]
    pub plain: bool,
    /// Field/column holding the source text (JSONL/Parquet inputs).
    #[arg(long, global = true, value_name = "NAME")]
    pub content_field: Option<String>,
    /// Field/column holding the document id.
    #[arg(long, global = true, value_name = "NAME")]
    pub id_field: Option<String>,
    /// Field/column holding the document's path.
    #[arg(long, global = true, value_name = "NAME")]
    pub path_field: Option<String>,
    /// Documents larger than this many bytes are skipped (reason `too_large`).
    #[arg(long, global = true, value_name = "BYTES")]
    pub max_doc_bytes: Option<usize>,
    /// Redo the stage even if its output is up to date.
    #[arg(long, global = true)]
    pub force: bool,
    /// Redo only the records of an existing output that ended in a transient error
    /// (endpoint down, budget, offline cache miss, sandbox_error); keep the rest.
    #[arg(long, global = true)]
    pub retry_errors: bool,
    /// This process's share of the input shards: it takes every `--world-size`-th input
    /// file starting at `--rank` and writes under `<output>/rank-RRRRR-of-NNNNN/`.
    #[arg(long, global = true, value_name = "I", default_value_t = 0, env = "UNITCODER_RANK")]
    pub rank: usize,
    /// Number of independent processes splitting the inputs (e.g. a Slurm array size).
    #[arg(long, global = true, value_name = "N", default_value_t = 1, env = "UNITCODER_WORLD_SIZE")]
    pub world_size: usize,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Extract self-contained, package-using top-level functions from Python sources.
    Extract(stages::extract::ExtractArgs),
    /// Have an LLM write a unittest `TestCases` class for each function; add `tests`.
    GenTests(stages::gen_tests::GenTestsArgs),
    /// Run each record's program against its unittest module in the sandbox; add `verdict`.
    SandboxRun(stages::sandbox_run::SandboxRunArgs),
    /// Repair functions that fail their tests: LLM candidates, verified in the sandbox, over rounds.
    Fix(stages::fix::FixArgs),
    /// Document verified functions (docstring, comments, style); re-verified, rolled back on failure.
    Refine(stages::refine::RefineArgs),
    /// Turn verified records into training data (completion/chat/raw; JSONL/Parquet), decontaminated and deduplicated.
    Export(stages::export::ExportArgs),
    /// Case2Code: the model writes inputs, the sandbox computes outputs; examples → program tasks.
    Case2code(stages::case2code::Case2CodeArgs),
    /// UCoder/IPC: generate programming problems (or take them from records), rated and deduplicated.
    Problems(stages::problems::ProblemsArgs),
    /// UCoder/IPC: sample N solutions per problem, run them on T inputs, keep the largest consensus cluster.
    Consensus(stages::consensus::ConsensusArgs),
    /// Run every stage: extract → gen-tests → sandbox-run → fix → refine → export.
    Run(stages::run::RunArgs),
    /// Measure a test generator (or a benchmark's own tests): accuracy on canonical solutions, coverage, mutation score.
    EvalTests(stages::eval_tests::EvalTestsArgs),
    /// Show a work directory's funnel: per stage, pass rate by fix round, packages, tokens.
    Stats(stages::stats::StatsArgs),
    /// Show the Python, packages and isolation mechanisms the sandbox would use here.
    Doctor(stages::doctor::DoctorArgs),
}

impl GlobalArgs {
    /// The context every stage gets: flags over config over defaults.
    fn into_context(self, config: Config, config_dir: Option<std::path::PathBuf>) -> Context {
        let jobs = self.jobs.or(config.jobs).unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)).max(1);
        let mut input = config.input.clone();
        input.content_field = self.content_field.unwrap_or(input.content_field);
        input.id_field = self.id_field.unwrap_or(input.id_field);
        input.path_field = self.path_field.unwrap_or(input.path_field);
        input.max_doc_bytes = self.max_doc_bytes.unwrap_or(input.max_doc_bytes);
        let mut output_format = config.output.clone();
        output_format.records_per_shard = self.records_per_shard.unwrap_or(output_format.records_per_shard).max(1);
        output_format.compress &= !self.plain;
        Context {
            inputs: self.input,
            output: self.output,
            jobs,
            quiet: self.quiet,
            force: self.force,
            retry_errors: self.retry_errors,
            rank: self.rank,
            world_size: self.world_size,
            input,
            output_format,
            config,
            config_dir,
        }
    }
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return crate::exit::code(if e.use_stderr() { crate::exit::USAGE } else { crate::exit::SUCCESS });
        }
    };
    logging::init(cli.global.quiet, cli.global.log_format);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            crate::exit::code(crate::exit::FATAL)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let (config, config_dir) = Config::load(cli.global.config.as_deref())?;
    stages::validate_config(&config)?;
    let ctx = cli.global.into_context(config, config_dir);
    match cli.command {
        Command::Extract(args) => stages::extract::run(&ctx, &args),
        Command::SandboxRun(args) => stages::sandbox_run::run(&ctx, &args),
        Command::GenTests(args) => stages::gen_tests::run(&ctx, &args),
        Command::Fix(args) => stages::fix::run(&ctx, &args),
        Command::Refine(args) => stages::refine::run(&ctx, &args),
        Command::Export(args) => stages::export::run(&ctx, &args),
        Command::Case2code(args) => stages::case2code::run(&ctx, &args),
        Command::Problems(args) => stages::problems::run(&ctx, &args),
        Command::Consensus(args) => stages::consensus::run(&ctx, &args),
        Command::Run(args) => stages::run::run(&ctx, &args),
        Command::Stats(args) => stages::stats::run(&ctx, &args),
        Command::EvalTests(args) => stages::eval_tests::run(&ctx, &args),
        Command::Doctor(args) => stages::doctor::run(&ctx, &args),
    }
}
