//! Command-line interface: clap definitions and dispatch to the stages.
//!
//! Exit codes: 0 success; 1 a fatal error (unreadable input, unwritable output, bad
//! config); 2 unusable arguments (clap's usage errors); 3 an LLM budget stopped the run
//! (rerun to continue); 4 finished, but some records ended in a transient error (rerun with
//! `--retry-errors`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::Config;
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
    /// Show a work directory's funnel: per stage, pass rate by fix round, packages, tokens.
    Stats(stages::stats::StatsArgs),
    /// Show the Python, packages and isolation mechanisms the sandbox would use here.
    Doctor {
        /// Interpreter to inspect [default: as sandbox-run would pick].
        #[arg(long, value_name = "PATH")]
        python: Option<PathBuf>,
    },
}

/// Everything a stage needs from the command line and config, resolved.
pub struct Context {
    pub global: GlobalArgs,
    pub config: Config,
    /// Directory of the config file, for resolving relative paths in it.
    pub config_dir: Option<PathBuf>,
    pub jobs: usize,
}

impl Context {
    /// The output directory; with `--world-size N > 1`, this rank's subdirectory of it.
    pub fn output_dir(&self) -> anyhow::Result<PathBuf> {
        let dir = self.global.output.clone().ok_or_else(|| anyhow::anyhow!("--output DIR is required"))?;
        Ok(self.rank_dir(dir))
    }

    /// `dir`, or `dir/rank-RRRRR-of-NNNNN` when the inputs are split between processes.
    pub fn rank_dir(&self, dir: PathBuf) -> PathBuf {
        if self.global.world_size > 1 {
            dir.join(format!("rank-{:05}-of-{:05}", self.global.rank, self.global.world_size))
        } else {
            dir
        }
    }

    /// The input files this process handles, each with its index in the full input list
    /// (so output shard names stay unique across ranks).
    pub fn inputs(&self) -> anyhow::Result<Vec<(usize, crate::shards::InputFile)>> {
        anyhow::ensure!(!self.global.input.is_empty(), "--input is required");
        let (rank, world) = (self.global.rank, self.global.world_size);
        anyhow::ensure!(world >= 1 && rank < world, "--rank {rank} must be less than --world-size {world}");
        let all = crate::shards::expand_inputs(&self.global.input)?;
        Ok(all.into_iter().enumerate().filter(|(i, _)| i % world == rank).collect())
    }

    /// Resolved input-field settings (flags over config over defaults).
    pub fn input_config(&self) -> crate::config::InputConfig {
        let mut c = self.config.input.clone();
        let g = &self.global;
        if let Some(v) = &g.content_field {
            c.content_field = v.clone();
        }
        if let Some(v) = &g.id_field {
            c.id_field = v.clone();
        }
        if let Some(v) = &g.path_field {
            c.path_field = v.clone();
        }
        if let Some(v) = g.max_doc_bytes {
            c.max_doc_bytes = v;
        }
        c
    }

    /// Longest JSONL line a record stage reads (records carry code, tests and history).
    pub fn record_line_limit(&self) -> usize {
        self.input_config().max_doc_bytes.saturating_mul(4).max(64 << 20)
    }

    /// A stage's LLM settings: config `[llm]`, flags on top.
    pub fn llm_settings(&self, args: &crate::llm::LlmArgs) -> crate::llm::LlmSettings {
        let mut s = self.config.llm.clone();
        s.apply(args);
        s
    }

    pub fn output_config(&self) -> crate::config::OutputConfig {
        let mut c = self.config.output.clone();
        if let Some(n) = self.global.records_per_shard {
            c.records_per_shard = n;
        }
        if self.global.plain {
            c.compress = false;
        }
        c.records_per_shard = c.records_per_shard.max(1);
        c
    }
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    logging::init(cli.global.quiet, cli.global.log_format);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let (config, config_dir) = Config::load(cli.global.config.as_deref())?;
    let jobs = cli.global.jobs.or(config.jobs).unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)).max(1);
    let ctx = Context { global: cli.global, config, config_dir, jobs };
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
        Command::Doctor { python } => stages::sandbox_run::doctor(&ctx, python),
    }
}
