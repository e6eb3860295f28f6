//! The sandbox's command-line flags, shared by every stage that runs code; they override
//! the `[sandbox]` config section.

use std::path::PathBuf;

use clap::Args;

use super::{AdequacySettings, IsolationChoice, SandboxSettings};

#[derive(Debug, Clone, Args, Default)]
#[command(next_help_heading = "Sandbox")]
pub struct SandboxArgs {
    /// Parallel sandbox workers [default: number of cores].
    #[arg(long)]
    pub workers: Option<usize>,
    /// Wall-clock limit per check, seconds [default: 10].
    #[arg(long)]
    pub timeout: Option<f64>,
    /// Python interpreter for checks [default: $UNITCODER_PYTHON, .venv-sandbox/bin/python, python3].
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,
    /// Isolation mechanism [default: auto = strongest available].
    #[arg(long, value_enum)]
    pub isolation: Option<IsolationChoice>,
    /// Memory a check may allocate, MiB [default: 1024].
    #[arg(long)]
    pub memory_mb: Option<u64>,
    /// Modules to pre-import in each worker, comma-separated [default: numpy,pandas,matplotlib,scipy,sklearn].
    #[arg(long, value_delimiter = ',')]
    pub preimport: Option<Vec<String>>,
}

impl SandboxArgs {
    /// `base` (the `[sandbox]` section) with these flags on top; 0 workers = `jobs`.
    pub fn resolve(&self, base: &SandboxSettings, jobs: usize) -> SandboxSettings {
        let mut s = base.clone();
        if let Some(v) = self.workers {
            s.workers = v;
        }
        if s.workers == 0 {
            s.workers = jobs;
        }
        if let Some(v) = self.timeout {
            s.timeout = v;
        }
        if let Some(v) = &self.python {
            s.python = v.display().to_string();
        }
        if let Some(v) = self.isolation {
            s.isolation = v;
        }
        if let Some(v) = self.memory_mb {
            s.memory_mb = v;
        }
        if let Some(v) = &self.preimport {
            s.preimport = v.iter().filter(|m| !m.is_empty()).cloned().collect();
        }
        s
    }
}

/// The test-adequacy flags (override `[adequacy]`).
#[derive(Debug, Clone, Args, Default)]
#[command(next_help_heading = "Test adequacy")]
pub struct AdequacyArgs {
    /// Do not assess passes (no reruns, coverage or mutants) [default: assess].
    #[arg(long)]
    pub no_adequacy: bool,
    /// Mutants per function; 0 = no mutation analysis [default: 20].
    #[arg(long, value_name = "N")]
    pub mutants: Option<usize>,
    /// Reruns of a pass for the flake check [default: 2].
    #[arg(long, value_name = "N")]
    pub reruns: Option<usize>,
    /// Do not measure line coverage.
    #[arg(long)]
    pub no_coverage: bool,
}

impl AdequacyArgs {
    /// `base` (the `[adequacy]` section) with these flags on top.
    pub fn resolve(&self, base: &AdequacySettings) -> AdequacySettings {
        let mut s = base.clone();
        if self.no_adequacy {
            s.enabled = false;
        }
        if let Some(n) = self.mutants {
            s.mutants = n;
        }
        if let Some(n) = self.reruns {
            s.reruns = n;
        }
        if self.no_coverage {
            s.coverage = false;
        }
        s
    }
}
