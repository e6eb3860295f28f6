//! What every stage gets from the command line and the config file, resolved: no clap
//! types, no stage types. `cli.rs` builds it; `run` derives one per sub-stage.

use std::path::PathBuf;

use anyhow::Result;

use crate::config::{Config, InputConfig, OutputConfig};
use crate::shards::InputFile;

#[derive(Debug, Clone)]
pub struct Context {
    /// `--input` specs (files, directories, globs), as given.
    pub inputs: Vec<String>,
    /// `--output DIR`.
    pub output: Option<PathBuf>,
    /// Worker threads.
    pub jobs: usize,
    pub quiet: bool,
    /// Redo a stage even if its output is up to date.
    pub force: bool,
    /// Redo only the records that ended in a transient error.
    pub retry_errors: bool,
    /// This process's share of the inputs: every `world_size`-th file from `rank`.
    pub rank: usize,
    pub world_size: usize,
    /// `[input]` with flags on top.
    pub input: InputConfig,
    /// `[output]` with flags on top.
    pub output_format: OutputConfig,
    pub config: Config,
    /// Directory of the config file, for resolving relative paths in it.
    pub config_dir: Option<PathBuf>,
    /// Only the first N input records (documents for extract).
    pub limit: Option<u64>,
    /// Estimate the LLM requests instead of sending them.
    pub dry_run: bool,
}

impl Context {
    /// A context with defaults for everything (tests, library use).
    pub fn new(config: Config) -> Context {
        Context {
            inputs: Vec::new(),
            output: None,
            jobs: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            quiet: false,
            force: false,
            retry_errors: false,
            rank: 0,
            world_size: 1,
            input: config.input.clone(),
            output_format: config.output.clone(),
            config,
            config_dir: None,
            limit: None,
            dry_run: false,
        }
    }

    /// The same settings with other inputs and output; `split = false` makes it a single
    /// process (for stages that must see every rank's records).
    pub fn with_io(&self, inputs: Vec<String>, output: PathBuf, split: bool) -> Context {
        let mut ctx = self.clone();
        ctx.inputs = inputs;
        ctx.output = Some(output);
        if !split {
            ctx.rank = 0;
            ctx.world_size = 1;
        }
        ctx
    }

    /// The output directory; with `--world-size N > 1`, this rank's subdirectory of it.
    pub fn output_dir(&self) -> Result<PathBuf> {
        let dir = self.output.clone().ok_or_else(|| crate::exit::UsageError::new("--output DIR is required (-o)"))?;
        Ok(self.rank_dir(dir))
    }

    /// `dir`, or `dir/rank-RRRRR-of-NNNNN` when the inputs are split between processes.
    pub fn rank_dir(&self, dir: PathBuf) -> PathBuf {
        if self.world_size > 1 {
            dir.join(format!("rank-{:05}-of-{:05}", self.rank, self.world_size))
        } else {
            dir
        }
    }

    /// The input files this process handles, each with its index in the full input list
    /// (so output shard names stay unique across ranks).
    pub fn input_files(&self) -> Result<Vec<(usize, InputFile)>> {
        self.split(crate::shards::expand_inputs(&self.require_inputs()?)?)
    }

    /// `input_files` for a corpus (`extract`): directories contribute what `[input] format` says.
    pub fn corpus_files(&self) -> Result<Vec<(usize, InputFile)>> {
        self.split(crate::shards::expand_corpus(&self.require_inputs()?, self.input.format)?)
    }

    fn require_inputs(&self) -> Result<Vec<String>> {
        if self.inputs.is_empty() {
            return Err(crate::exit::UsageError::new("--input PATH is required (-i)").into());
        }
        Ok(self.inputs.clone())
    }

    fn split(&self, all: Vec<InputFile>) -> Result<Vec<(usize, InputFile)>> {
        let (rank, world) = (self.rank, self.world_size);
        if world == 0 || rank >= world {
            return Err(crate::exit::UsageError::new(format!("--rank {rank} must be less than --world-size {world}")).into());
        }
        Ok(all.into_iter().enumerate().filter(|(i, _)| i % world == rank).collect())
    }

    /// Longest JSONL line a record stage reads (records carry code, tests and history).
    pub fn record_line_limit(&self) -> usize {
        self.input.max_doc_bytes.saturating_mul(4).max(64 << 20)
    }

    /// A path from the config file: relative ones that do not exist from the current
    /// directory are taken relative to the config file.
    pub fn config_path(&self, path: &str) -> String {
        let p = std::path::Path::new(path);
        match &self.config_dir {
            Some(dir) if !path.is_empty() && p.is_relative() && !p.exists() => dir.join(p).display().to_string(),
            _ => path.to_string(),
        }
    }
}
