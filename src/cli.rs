//! Command-line interface: clap definitions, the resolved `Context`, and dispatch to the
//! stages. Each stage owns its own flags (`stages::<name>::<Name>Args`); the input, output
//! and scale-out flags are grouped here and given only to the commands they apply to
//! (`stats --help` lists no `--retry-errors`). Exit codes are in `exit.rs`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::config::Config;
use crate::context::Context;
use crate::logging::{self, LogFormat};
use crate::shards::CorpusFormat;
use crate::stages;

#[derive(Debug, Parser)]
#[command(name = "unitcoder", version, about = "Turn raw code corpora into verified, documented code-training data")]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes.
#[derive(Debug, Clone, Args, Default)]
#[command(next_help_heading = "Global")]
pub struct GlobalArgs {
    /// TOML config file; flags override its values (every key: configs/default.toml).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Only warnings and errors.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    /// Log format on stderr (json: one object per line, counts as fields).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Where the records come from.
#[derive(Debug, Clone, Args, Default)]
#[command(next_help_heading = "Input")]
pub struct InputArgs {
    /// Input: a file, a directory or a glob; repeatable. Stages read the shards of the
    /// previous stage's output directory.
    #[arg(long, short = 'i', value_name = "PATH")]
    pub input: Vec<String>,
    /// Only the first N input records (documents for extract): try a sample first.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
}

/// How a corpus is read (extract, run).
#[derive(Debug, Clone, Args, Default)]
#[command(next_help_heading = "Input")]
pub struct CorpusArgs {
    /// What input directories contribute: auto = `.py` files (a directory without any: its
    /// .jsonl/.parquet shards), py, jsonl or parquet [default: auto].
    #[arg(long, value_enum, value_name = "KIND")]
    pub input_format: Option<CorpusFormat>,
    /// Field/column holding the source text (JSONL/Parquet) [default: content].
    #[arg(long, value_name = "NAME")]
    pub content_field: Option<String>,
    /// Field/column holding the document id [default: id; The Stack: hexsha].
    #[arg(long, value_name = "NAME")]
    pub id_field: Option<String>,
    /// Field/column holding the document's path [default: path; The Stack: max_stars_repo_path].
    #[arg(long, value_name = "NAME")]
    pub path_field: Option<String>,
    /// Other fields/columns to carry into each record's `source.meta`, comma-separated
    /// (The Stack: max_stars_repo_licenses,max_stars_repo_name,max_stars_count) [default: none].
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub keep_fields: Option<Vec<String>>,
    /// Documents larger than this many bytes are skipped (`too_large`) [default: 2097152].
    #[arg(long, value_name = "BYTES")]
    pub max_doc_bytes: Option<usize>,
}

/// Where the records go.
#[derive(Debug, Clone, Args, Default)]
#[command(next_help_heading = "Output")]
pub struct OutputArgs {
    /// Output directory for shards and manifest.json.
    #[arg(long, short = 'o', value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Records per output shard [default: 10000].
    #[arg(long, value_name = "N")]
    pub records_per_shard: Option<usize>,
    /// Write plain `.jsonl` shards instead of `.jsonl.zst` (export writes plain JSONL anyway).
    #[arg(long)]
    pub plain: bool,
    /// Redo the stage even if its output is up to date.
    #[arg(long)]
    pub force: bool,
    /// Worker threads [default: number of cores].
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,
}

/// Redoing part of an existing output.
#[derive(Debug, Clone, Args, Default)]
#[command(next_help_heading = "Output")]
pub struct RetryArgs {
    /// Redo only the records of an existing output that ended in a transient error
    /// (endpoint down, budget, offline cache miss, sandbox_error); keep the rest.
    #[arg(long)]
    pub retry_errors: bool,
}

/// Splitting the inputs between processes.
#[derive(Debug, Clone, Args, Default)]
#[command(next_help_heading = "Scale-out")]
pub struct RankArgs {
    /// This process's share of the input shards: every `--world-size`-th input file from
    /// `--rank`, written under `<output>/rank-RRRRR-of-NNNNN/` [default: 0].
    #[arg(long, value_name = "I", env = "UNITCODER_RANK")]
    pub rank: Option<usize>,
    /// Number of independent processes splitting the inputs (e.g. a Slurm array size) [default: 1].
    #[arg(long, value_name = "N", env = "UNITCODER_WORLD_SIZE")]
    pub world_size: Option<usize>,
}

/// Estimating instead of asking.
#[derive(Debug, Clone, Args, Default)]
#[command(next_help_heading = "LLM")]
pub struct DryRunArgs {
    /// Send nothing: render every prompt and print the requests, tokens and cost it would take.
    #[arg(long)]
    pub dry_run: bool,
}

/// The flags of a stage that reads records and writes records.
#[derive(Debug, Clone, Args, Default)]
pub struct StageIo {
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub retry: RetryArgs,
    #[command(flatten)]
    pub ranks: RankArgs,
}

/// The flags of `extract`: a corpus in, records out.
#[derive(Debug, Clone, Args, Default)]
pub struct CorpusIo {
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub corpus: CorpusArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub ranks: RankArgs,
}

/// The flags of a merge (`export`): every rank's records in, one output.
#[derive(Debug, Clone, Args, Default)]
pub struct MergeIo {
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// The flags of `run`: a corpus in, a work directory out.
#[derive(Debug, Clone, Args, Default)]
pub struct RunIo {
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub corpus: CorpusArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub retry: RetryArgs,
    #[command(flatten)]
    pub ranks: RankArgs,
    #[command(flatten)]
    pub dry_run: DryRunArgs,
}

// One value per process: the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Extract self-contained, package-using top-level functions from Python sources.
    Extract {
        #[command(flatten)]
        io: CorpusIo,
        #[command(flatten)]
        args: stages::extract::ExtractArgs,
    },
    /// Have an LLM write a unittest `TestCases` class for each function; add `tests`.
    GenTests {
        #[command(flatten)]
        io: StageIo,
        #[command(flatten)]
        dry_run: DryRunArgs,
        #[command(flatten)]
        args: stages::gen_tests::GenTestsArgs,
    },
    /// Run each record's program against its unittest module in the sandbox; add `verdict`.
    SandboxRun {
        #[command(flatten)]
        io: StageIo,
        #[command(flatten)]
        args: stages::sandbox_run::SandboxRunArgs,
    },
    /// Repair functions that fail their tests: LLM candidates, verified in the sandbox, over rounds.
    Fix {
        #[command(flatten)]
        io: StageIo,
        #[command(flatten)]
        dry_run: DryRunArgs,
        #[command(flatten)]
        args: stages::fix::FixArgs,
    },
    /// Document verified functions (docstring, comments, style); re-verified, rolled back on failure.
    Refine {
        #[command(flatten)]
        io: StageIo,
        #[command(flatten)]
        dry_run: DryRunArgs,
        #[command(flatten)]
        args: stages::refine::RefineArgs,
    },
    /// Turn verified records into training data (completion/chat/raw; JSONL/Parquet), decontaminated and deduplicated.
    Export {
        #[command(flatten)]
        io: MergeIo,
        #[command(flatten)]
        args: stages::export::ExportArgs,
    },
    /// Case2Code: the model writes inputs, the sandbox computes outputs; examples → program tasks.
    Case2code {
        #[command(flatten)]
        io: StageIo,
        #[command(flatten)]
        dry_run: DryRunArgs,
        #[command(flatten)]
        args: stages::case2code::Case2CodeArgs,
    },
    /// UCoder/IPC: generate programming problems (or take them from records), rated and deduplicated.
    Problems {
        #[command(flatten)]
        io: StageIo,
        #[command(flatten)]
        args: stages::problems::ProblemsArgs,
    },
    /// UCoder/IPC: sample N solutions per problem, run them on T inputs, keep the largest consensus cluster.
    Consensus {
        #[command(flatten)]
        io: StageIo,
        #[command(flatten)]
        dry_run: DryRunArgs,
        #[command(flatten)]
        args: stages::consensus::ConsensusArgs,
    },
    /// Run every stage: extract → gen-tests → sandbox-run → fix → refine → export.
    Run {
        #[command(flatten)]
        io: RunIo,
        #[command(flatten)]
        args: stages::run::RunArgs,
    },
    /// Measure a test generator (or a benchmark's own tests): accuracy on canonical solutions, coverage, mutation score.
    EvalTests {
        #[command(flatten)]
        retry: RetryArgs,
        /// Redo even if the output is up to date.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        args: stages::eval_tests::EvalTestsArgs,
    },
    /// Show a work directory's funnel: per stage, pass rate by fix round, packages, tokens.
    Stats(stages::stats::StatsArgs),
    /// Write a work directory's report: one offline HTML page with the funnel, fix rounds, packages, test strength, errors, cost, decontamination, ranks.
    Report(stages::report::ReportArgs),
    /// Show how far every rank of a split run got (done / partial / missing / failed, why); exit 7 while incomplete.
    Status(stages::status::StatusArgs),
    /// Split `run` (or a stage) over a Slurm array and merge: writes and submits the jobs.
    Slurm(stages::slurm::SlurmArgs),
    /// Print one record of a shard readably (code, tests, verdict, error).
    Show(stages::show::ShowArgs),
    /// Show the Python, packages, isolation mechanisms and LLM endpoints this machine would use.
    Doctor(stages::doctor::DoctorArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (unitcoder.1 and one per subcommand) into DIR.
    Man {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

/// What a command's flags contribute to its `Context` (absent groups keep the defaults).
#[derive(Default)]
struct Parts<'a> {
    input: Option<&'a InputArgs>,
    corpus: Option<&'a CorpusArgs>,
    output: Option<&'a OutputArgs>,
    retry: Option<&'a RetryArgs>,
    ranks: Option<&'a RankArgs>,
    dry_run: Option<&'a DryRunArgs>,
    force: bool,
}

impl StageIo {
    fn parts<'a>(&'a self, dry_run: Option<&'a DryRunArgs>) -> Parts<'a> {
        Parts {
            input: Some(&self.input),
            output: Some(&self.output),
            retry: Some(&self.retry),
            ranks: Some(&self.ranks),
            dry_run,
            ..Parts::default()
        }
    }
}

/// The context a command gets: flags over config over defaults.
fn context(global: &GlobalArgs, parts: Parts, config: Config, config_dir: Option<PathBuf>) -> Context {
    let mut ctx = Context::new(config);
    ctx.config_dir = config_dir;
    // The sandbox environment is found from the config file's directory too, and a
    // relative `[sandbox] python` is relative to the config file (not to the cwd).
    ctx.config.sandbox.config_dir = ctx.config_dir.clone();
    if !ctx.config.sandbox.python.is_empty() {
        ctx.config.sandbox.python = ctx.config_path(&ctx.config.sandbox.python);
    }
    ctx.quiet = global.quiet;
    ctx.jobs = ctx.config.jobs.unwrap_or(ctx.jobs);
    if let Some(i) = parts.input {
        ctx.inputs = i.input.clone();
        ctx.limit = i.limit;
    }
    if let Some(c) = parts.corpus {
        let input = &mut ctx.input;
        input.format = c.input_format.unwrap_or(input.format);
        input.content_field = c.content_field.clone().unwrap_or(input.content_field.clone());
        input.id_field = c.id_field.clone().unwrap_or(input.id_field.clone());
        input.path_field = c.path_field.clone().unwrap_or(input.path_field.clone());
        input.max_doc_bytes = c.max_doc_bytes.unwrap_or(input.max_doc_bytes);
        if let Some(keep) = &c.keep_fields {
            input.keep_fields = keep.iter().filter(|k| !k.is_empty()).cloned().collect();
        }
    }
    if let Some(o) = parts.output {
        ctx.output = o.output.clone();
        ctx.jobs = o.jobs.unwrap_or(ctx.jobs);
        ctx.output_format.records_per_shard = o.records_per_shard.unwrap_or(ctx.output_format.records_per_shard);
        ctx.output_format.compress &= !o.plain;
        ctx.force = o.force;
    }
    ctx.output_format.records_per_shard = ctx.output_format.records_per_shard.max(1);
    ctx.jobs = ctx.jobs.max(1);
    ctx.force |= parts.force;
    ctx.retry_errors = parts.retry.is_some_and(|r| r.retry_errors);
    if let Some(r) = parts.ranks {
        ctx.rank = r.rank.unwrap_or(0);
        ctx.world_size = r.world_size.unwrap_or(1);
    }
    ctx.dry_run = parts.dry_run.is_some_and(|d| d.dry_run);
    ctx
}

/// The flags of the shared groups (`--input`, `--force`, …), which may also come before the
/// subcommand (`unitcoder -i IN -o OUT gen-tests`, as scripts written for earlier versions
/// do): each spelling, and whether it takes a value. Read from the clap definitions.
fn shared_flags() -> Vec<(String, bool)> {
    let mut cmd = clap::Command::new("shared");
    cmd = GlobalArgs::augment_args(cmd);
    cmd = InputArgs::augment_args(cmd);
    cmd = CorpusArgs::augment_args(cmd);
    cmd = OutputArgs::augment_args(cmd);
    cmd = RetryArgs::augment_args(cmd);
    cmd = RankArgs::augment_args(cmd);
    cmd = DryRunArgs::augment_args(cmd);
    cmd.build();
    let mut out = Vec::new();
    for arg in cmd.get_arguments() {
        let takes_value = arg.get_num_args().is_some_and(|n| n.takes_values()) && !matches!(arg.get_action(), clap::ArgAction::SetTrue);
        out.extend(arg.get_long().map(|l| (format!("--{l}"), takes_value)));
        out.extend(arg.get_short().map(|c| (format!("-{c}"), takes_value)));
    }
    out
}

pub fn normalize_args(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let subcommands: Vec<String> = Cli::command().get_subcommands().map(|c| c.get_name().to_string()).collect();
    let flags = shared_flags();
    let mut moved = Vec::new();
    let mut i = 1;
    while i < args.len() {
        let a = args[i].to_string_lossy();
        let name = a.split('=').next().unwrap_or("");
        if subcommands.iter().any(|s| s == a.as_ref()) {
            let mut out = vec![args[0].clone(), args[i].clone()];
            out.extend(moved);
            out.extend(args[i + 1..].iter().cloned());
            return out;
        }
        let flag = flags.iter().find(|(f, _)| f == name);
        if flag.is_some_and(|(_, value)| *value) && !a.contains('=') && i + 1 < args.len() {
            moved.extend([args[i].clone(), args[i + 1].clone()]);
            i += 2;
        } else if flag.is_some() {
            moved.push(args[i].clone());
            i += 1;
        } else {
            break;
        }
    }
    args
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse_from(normalize_args(std::env::args_os().collect())) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return crate::exit::code(if e.use_stderr() { crate::exit::USAGE } else { crate::exit::SUCCESS });
        }
    };
    logging::init(cli.global.quiet, cli.global.log_format);
    crate::interrupt::install();
    match run(cli) {
        Ok(code) => code,
        // Logged once (the log goes to stderr); argument problems exit as clap's do.
        // A failure caused by Ctrl-C or SIGTERM (a child killed by the same signal) exits as
        // the interruption, like the signal thread does.
        Err(e) if crate::interrupt::received().is_some() => {
            tracing::debug!("after the interruption: {e:#}");
            crate::exit::code(crate::interrupt::received().map_or(crate::exit::FATAL, |(_, status)| status))
        }
        Err(e) if e.is::<crate::exit::UsageError>() => {
            tracing::error!("{e:#}");
            crate::exit::code(crate::exit::USAGE)
        }
        Err(e) if e.is::<crate::exit::Incomplete>() => {
            tracing::error!("{e:#}");
            crate::exit::code(crate::exit::INCOMPLETE)
        }
        Err(e) => {
            tracing::error!("{e:#}");
            crate::exit::code(crate::exit::FATAL)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let global = cli.global;
    match &cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "unitcoder", &mut std::io::stdout());
            return Ok(ExitCode::SUCCESS);
        }
        Command::Man { dir } => {
            write_man_pages(dir)?;
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let (config, config_dir) = Config::load(global.config.as_deref())?;
    stages::validate_config(&config)?;
    let ctx = |parts: Parts| context(&global, parts, config.clone(), config_dir.clone());
    // A rank of a split command leaves a marker (`OUT/.ranks/`) saying how it went.
    let ranked = |c: Context, name: &str, body: &dyn Fn(&Context) -> anyhow::Result<ExitCode>| {
        let dir = c.output.clone();
        stages::common::marker::with_rank_marker(&c, dir.as_deref(), name, || body(&c))
    };
    match &cli.command {
        Command::Extract { io, args } => {
            let parts =
                Parts { input: Some(&io.input), corpus: Some(&io.corpus), output: Some(&io.output), ranks: Some(&io.ranks), ..Parts::default() };
            ranked(ctx(parts), "extract", &|c| stages::extract::run(c, args))
        }
        Command::GenTests { io, dry_run, args } => ranked(ctx(io.parts(Some(dry_run))), "gen-tests", &|c| stages::gen_tests::run(c, args)),
        Command::SandboxRun { io, args } => ranked(ctx(io.parts(None)), "sandbox-run", &|c| stages::sandbox_run::run(c, args)),
        Command::Fix { io, dry_run, args } => ranked(ctx(io.parts(Some(dry_run))), "fix", &|c| stages::fix::run(c, args)),
        Command::Refine { io, dry_run, args } => ranked(ctx(io.parts(Some(dry_run))), "refine", &|c| stages::refine::run(c, args)),
        Command::Export { io, args } => {
            stages::export::run(&ctx(Parts { input: Some(&io.input), output: Some(&io.output), ..Parts::default() }), args)
        }
        Command::Case2code { io, dry_run, args } => ranked(ctx(io.parts(Some(dry_run))), "case2code", &|c| stages::case2code::run(c, args)),
        Command::Problems { io, args } => ranked(ctx(io.parts(None)), "problems", &|c| stages::problems::run(c, args)),
        Command::Consensus { io, dry_run, args } => ranked(ctx(io.parts(Some(dry_run))), "consensus", &|c| stages::consensus::run(c, args)),
        Command::Run { io, args } => {
            let parts = Parts {
                input: Some(&io.input),
                corpus: Some(&io.corpus),
                output: Some(&io.output),
                retry: Some(&io.retry),
                ranks: Some(&io.ranks),
                dry_run: Some(&io.dry_run),
                force: false,
            };
            stages::run::run(&ctx(parts), args)
        }
        Command::EvalTests { retry, force, args } => {
            stages::eval_tests::run(&ctx(Parts { retry: Some(retry), force: *force, ..Parts::default() }), args)
        }
        Command::Stats(args) => stages::stats::run(&ctx(Parts::default()), args),
        Command::Status(args) => stages::status::run(&ctx(Parts::default()), args),
        Command::Report(args) => stages::report::run(&ctx(Parts::default()), args),
        Command::Slurm(args) => stages::slurm::run(&ctx(Parts::default()), args),
        Command::Show(args) => stages::show::run(args),
        Command::Doctor(args) => stages::doctor::run(&ctx(Parts::default()), args),
        Command::Completions { .. } | Command::Man { .. } => Ok(ExitCode::SUCCESS),
    }
}

/// `unitcoder.1` and `unitcoder-<sub>.1` for every subcommand.
fn write_man_pages(dir: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context as _;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let cmd = Cli::command();
    let write = |name: String, cmd: clap::Command| -> anyhow::Result<()> {
        let path = dir.join(format!("{name}.1"));
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut out)?;
        std::fs::write(&path, out).with_context(|| format!("cannot write {}", path.display()))
    };
    for sub in cmd.get_subcommands() {
        let name = format!("unitcoder-{}", sub.get_name());
        let renamed = sub.clone().name(name.clone());
        write(name, renamed)?;
    }
    write("unitcoder".into(), cmd)?;
    tracing::info!("man pages written to {}", dir.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_before_the_subcommand_move_after_it() {
        let args = |v: &[&str]| v.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        let out = normalize_args(args(&["unitcoder", "-i", "in", "--force", "-o=out", "gen-tests", "--samples", "2"]));
        assert!(shared_flags().contains(&("--log-format".to_string(), true)) && shared_flags().contains(&("-q".to_string(), false)));
        assert_eq!(out, args(&["unitcoder", "gen-tests", "-i", "in", "--force", "-o=out", "--samples", "2"]));
        let same = args(&["unitcoder", "stats", "work"]);
        assert_eq!(normalize_args(same.clone()), same);
        Cli::try_parse_from(normalize_args(args(&["unitcoder", "-i", "in", "-o", "out", "sandbox-run"]))).unwrap();
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Every option that takes a value says its default (or why it has none).
    #[test]
    fn every_option_states_its_default() {
        // Options whose absence is the point: where to read and write, what to name.
        let no_default = ["input", "output", "config", "work-dir", "limit", "model", "base-url", "prompts", "dir", "python", "rejects", "id"];
        let mut missing = Vec::new();
        fn walk(cmd: &clap::Command, path: &str, no_default: &[&str], missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let Some(long) = arg.get_long() else { continue };
                let takes_value = arg.get_num_args().is_some_and(|n| n.takes_values())
                    && !matches!(arg.get_action(), clap::ArgAction::SetTrue | clap::ArgAction::Help | clap::ArgAction::Version);
                if !takes_value || arg.is_positional() || arg.is_required_set() || no_default.contains(&long) || !arg.get_default_values().is_empty()
                {
                    continue;
                }
                let help = arg.get_long_help().or(arg.get_help()).map(|h| h.to_string()).unwrap_or_default();
                if !help.contains("[default") {
                    missing.push(format!("{path} --{long}"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), no_default, missing);
            }
        }
        let mut cmd = Cli::command();
        cmd.build();
        walk(&cmd, "unitcoder", &no_default, &mut missing);
        assert!(missing.is_empty(), "options without a stated default: {missing:#?}");
    }
}
