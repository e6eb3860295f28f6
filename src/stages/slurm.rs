//! `unitcoder slurm -- COMMAND ...`: run a command split over a Slurm array, then merge.
//!
//!   1. check COMMAND (`run`, or a stage that takes `--rank`) and find its directory;
//!   2. write the batch scripts into `DIR/slurm/`: the rank comes from `SLURM_ARRAY_TASK_ID`
//!      (0-based), the world size is pinned in the script (a resubmitted `--array=1,3` keeps
//!      it), one log per rank in `DIR/slurm/logs/`;
//!      - `run`: an extract array (`--stop-after extract`), then the LLM array (each rank's
//!        share of every rank's functions, deduplicated across ranks), then the merge job
//!        (`status` check, then `run --only-export`: export and the funnel);
//!      - a stage: its array, then a merge job that checks completeness (`status`);
//!   3. submit them, each after the previous with `afterany` (an `afterok` on an array is
//!      never satisfied once a task failed, even after a requeue): the merge job checks
//!      completeness itself and fails with the incomplete ranks named;
//!   4. record the submission in `DIR/slurm/submission.json`, which `status --resubmit`
//!      reads to submit just the incomplete ranks again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::{Args, Parser};
use serde::{Deserialize, Serialize};

use crate::context::Context;
use crate::shards::manifest::now_rfc3339;
use crate::slurm::{quote, render, slurm_dir, Script, SlurmSettings};
use crate::stages::status::Status;

#[derive(Debug, Clone, Args)]
pub struct SlurmArgs {
    /// Ranks: the array has tasks 0..N-1, each taking every N-th input file.
    #[arg(long, value_name = "N")]
    pub world_size: usize,
    /// `#SBATCH --partition` [default: [slurm] partition, else the cluster's].
    #[arg(long, value_name = "NAME")]
    pub partition: Option<String>,
    /// `#SBATCH --time` per rank, e.g. 4:00:00 [default: [slurm] time, else the partition's].
    #[arg(long, value_name = "TIME")]
    pub time: Option<String>,
    /// `#SBATCH --cpus-per-task` [default: [slurm] cpus_per_task, else not set].
    #[arg(long, value_name = "N")]
    pub cpus_per_task: Option<u32>,
    /// `#SBATCH --mem`, e.g. 8G [default: [slurm] mem, else not set].
    #[arg(long, value_name = "SIZE")]
    pub mem: Option<String>,
    /// Another `#SBATCH` line, e.g. --account=abc; repeatable [default: [slurm] extra].
    #[arg(long, value_name = "LINE")]
    pub sbatch_line: Vec<String>,
    /// No merge job.
    #[arg(long)]
    pub no_merge: bool,
    /// Write the scripts and print the sbatch commands, but submit nothing.
    #[arg(long)]
    pub no_submit: bool,
    /// The command to split, after `--`: `run ...` or a stage (`extract -i ... -o ...`).
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// `DIR/slurm/submission.json`: what was submitted, for `status` and `--resubmit`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Submission {
    pub world_size: usize,
    /// `run` or the stage's name.
    pub kind: String,
    /// The command as given (after `--`).
    pub command: Vec<String>,
    /// Directory the jobs run in.
    pub cwd: PathBuf,
    pub settings: SlurmSettings,
    /// Stage folders every rank must finish.
    pub stages: Vec<String>,
    /// The array phases in order (`extract`, `chain`; or the stage), each with its script.
    pub phases: Vec<Phase>,
    pub merge_script: Option<PathBuf>,
    /// Every submission, oldest first.
    pub jobs: Vec<Job>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Phase {
    pub name: String,
    pub script: PathBuf,
    /// The stages this phase writes (a rank is redone in this phase if one is not done).
    pub stages: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub phase: String,
    pub job_id: String,
    /// The array's ranks (`0-3`, `1,3`), none for the merge job.
    pub array: Option<String>,
    pub after: Vec<String>,
    pub submitted_at: String,
}

impl Submission {
    pub fn path(dir: &Path) -> PathBuf {
        slurm_dir(dir).join("submission.json")
    }

    pub fn read(dir: &Path) -> Option<Submission> {
        std::fs::read(Self::path(dir)).ok().and_then(|b| serde_json::from_slice(&b).ok())
    }

    fn write(&self, dir: &Path) -> Result<()> {
        let mut bytes = serde_json::to_vec_pretty(self)?;
        bytes.push(b'\n');
        crate::shards::writer::write_atomic(&Self::path(dir), &bytes)
    }

    /// Per rank, the array task of its latest submission (`JOB_RANK`).
    pub fn latest_jobs(&self) -> BTreeMap<usize, String> {
        let mut out = BTreeMap::new();
        for job in &self.jobs {
            let Some(array) = &job.array else { continue };
            for rank in expand_array(array) {
                out.insert(rank, format!("{}_{rank}", job.job_id));
            }
        }
        out
    }
}

/// The ranks of an array spec (`0-2,5` → 0, 1, 2, 5).
fn expand_array(spec: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for part in spec.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.parse::<usize>().ok()),
        }
    }
    out
}

/// Stages that take `--rank` and can be an array on their own.
const SPLITTABLE: &[&str] = &["extract", "gen-tests", "sandbox-run", "fix", "refine", "case2code", "problems", "consensus"];

pub fn run(ctx: &Context, args: &SlurmArgs) -> Result<ExitCode> {
    // Step 1: the command, checked by the same parser that will run it.
    anyhow::ensure!(args.world_size >= 1, crate::exit::UsageError::new("--world-size must be at least 1"));
    let kind = args.command.first().cloned().unwrap_or_default();
    for flag in ["--rank", "--world-size", "--stop-after", "--only-export", "--wait-for-ranks"] {
        if args.command.iter().any(|a| a == flag || a.starts_with(&format!("{flag}="))) {
            return Err(crate::exit::UsageError::new(format!("the command after -- must not set {flag}: `unitcoder slurm` sets it per job")).into());
        }
    }
    let mut argv = vec!["unitcoder".to_string()];
    argv.extend(args.command.iter().cloned());
    let parsed = crate::cli::Cli::try_parse_from(crate::cli::normalize_args(argv.iter().map(Into::into).collect()))
        .map_err(|e| crate::exit::UsageError::new(format!("the command after -- does not parse: {}", e.to_string().trim())))?;
    anyhow::ensure!(
        kind == "run" || SPLITTABLE.contains(&kind.as_str()),
        crate::exit::UsageError::new(format!("unitcoder slurm splits `run` or one of {}; not `{kind}`", SPLITTABLE.join(", ")))
    );
    let dir = command_dir(ctx, &parsed)?;
    let settings = resolve(ctx, args)?;
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let bin = if settings.unitcoder.is_empty() {
        std::env::current_exe().context("cannot find this executable")?.display().to_string()
    } else {
        settings.unitcoder.clone()
    };

    // Step 2: the scripts.
    let sdir = slurm_dir(&dir);
    std::fs::create_dir_all(sdir.join("logs")).with_context(|| format!("cannot create {}", sdir.display()))?;
    let abs_dir = if dir.is_absolute() { dir.clone() } else { cwd.join(&dir) };
    let logs = abs_dir.join("slurm").join("logs");
    let base: Vec<String> = std::iter::once(quote(&bin)).chain(args.command.iter().map(|a| quote(a))).collect();
    let ranked = |extra: &str| format!("exec {} {extra}--rank \"$SLURM_ARRAY_TASK_ID\" --world-size {}", base.join(" "), args.world_size);
    let write_script = |name: &str, commands: Vec<String>, time: &str| -> Result<PathBuf> {
        let log = if name == "merge" { logs.join("merge.log") } else { logs.join(format!("{name}-rank-%a.log")) };
        let script = Script { job_name: &format!("unitcoder-{name}"), log: &log, cwd: &cwd, commands, time };
        let path = abs_dir.join("slurm").join(format!("{name}.sbatch"));
        std::fs::write(&path, render(&settings, &script)).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    };
    let merge_time = if settings.merge_time.is_empty() { settings.time.clone() } else { settings.merge_time.clone() };
    let status_check = format!("{} status {}", quote(&bin), quote(&abs_dir.display().to_string()));
    let (phases, stages, merge) = if kind == "run" {
        let chain = run_chain_stages(ctx, &parsed)?;
        let extract = Phase {
            name: "extract".into(),
            script: write_script("extract", vec![ranked("--stop-after extract ")], &settings.time)?,
            stages: vec!["extract".into()],
        };
        let mut chain_stages = vec!["share".to_string()];
        chain_stages.extend(chain.iter().cloned());
        let llm = Phase {
            name: "chain".into(),
            script: write_script("chain", vec![ranked("--wait-for-ranks 0 ")], &settings.time)?,
            stages: chain_stages.clone(),
        };
        let export = format!("{} --only-export", base.join(" "));
        let merge = write_script("merge", vec![status_check, export], &merge_time)?;
        let mut stages = vec!["extract".to_string()];
        stages.extend(chain_stages);
        (vec![extract, llm], stages, merge)
    } else {
        let phase = Phase { name: kind.clone(), script: write_script(&kind, vec![ranked("")], &settings.time)?, stages: vec![kind.clone()] };
        let merge = write_script("merge", vec![status_check], &merge_time)?;
        (vec![phase], vec![kind.clone()], merge)
    };
    let mut submission = Submission {
        world_size: args.world_size,
        kind,
        command: args.command.clone(),
        cwd,
        settings,
        stages,
        phases,
        merge_script: (!args.no_merge).then_some(merge),
        jobs: Vec::new(),
    };
    let all: Vec<usize> = (0..args.world_size).collect();
    let plan: Vec<(String, Vec<usize>)> = submission.phases.iter().map(|p| (p.name.clone(), all.clone())).collect();
    submit_plan(&mut submission, &dir, &plan, args.no_submit)?;
    Ok(ExitCode::SUCCESS)
}

/// `[slurm]` with flags on top.
fn resolve(ctx: &Context, args: &SlurmArgs) -> Result<SlurmSettings> {
    let mut s: SlurmSettings = ctx.config.section("slurm")?;
    if let Some(p) = &args.partition {
        s.partition = p.clone();
    }
    if let Some(t) = &args.time {
        s.time = t.clone();
    }
    if let Some(c) = args.cpus_per_task {
        s.cpus_per_task = c;
    }
    if let Some(m) = &args.mem {
        s.mem = m.clone();
    }
    s.extra.extend(args.sbatch_line.iter().cloned());
    Ok(s)
}

/// The directory the command writes: `run`'s work directory, a stage's `--output`.
fn command_dir(ctx: &Context, parsed: &crate::cli::Cli) -> Result<PathBuf> {
    use crate::cli::Command;
    let missing = || crate::exit::UsageError::new("the command after -- needs its output directory (--work-dir DIR or -o DIR)");
    let dir = match &parsed.command {
        Command::Run { io, args } => args.work_dir.clone().or_else(|| io.output.output.clone()).or_else(|| {
            let config = inner_config(ctx, parsed).ok()?;
            let rs: crate::stages::run::RunSettings = config.section("run").ok()?;
            (!rs.work_dir.is_empty()).then(|| PathBuf::from(rs.work_dir))
        }),
        Command::Extract { io, .. } => io.output.output.clone(),
        Command::GenTests { io, .. }
        | Command::SandboxRun { io, .. }
        | Command::Fix { io, .. }
        | Command::Refine { io, .. }
        | Command::Case2code { io, .. }
        | Command::Problems { io, .. }
        | Command::Consensus { io, .. } => io.output.output.clone(),
        _ => None,
    };
    dir.ok_or_else(|| missing().into())
}

/// The config the command will load (its own `--config`, else this one's).
fn inner_config(ctx: &Context, parsed: &crate::cli::Cli) -> Result<crate::config::Config> {
    match &parsed.global.config {
        Some(path) => Ok(crate::config::Config::load(Some(path))?.0),
        None => Ok(ctx.config.clone()),
    }
}

/// The chain stages `run` writes with this config (gen-tests … refine, case2code).
fn run_chain_stages(ctx: &Context, parsed: &crate::cli::Cli) -> Result<Vec<String>> {
    let config = inner_config(ctx, parsed)?;
    let rs: crate::stages::run::RunSettings = config.section("run")?;
    let mut out: Vec<String> = ["gen-tests", "sandbox-run", "fix"].iter().map(|s| s.to_string()).collect();
    if rs.refine {
        out.push("refine".into());
    }
    if rs.case2code {
        out.push("case2code".into());
    }
    Ok(out)
}

/// Submit `plan` (per phase, the ranks to run), each phase after the previous, then the
/// merge job; record the jobs. With `dry`, print the sbatch commands instead.
fn submit_plan(submission: &mut Submission, dir: &Path, plan: &[(String, Vec<usize>)], dry: bool) -> Result<()> {
    let mut after: Vec<String> = Vec::new();
    for (phase_name, ranks) in plan.iter().filter(|(_, r)| !r.is_empty()) {
        let phase = submission.phases.iter().find(|p| &p.name == phase_name).context("no such phase")?.clone();
        let array = crate::slurm::array_spec(ranks);
        if dry {
            println!("sbatch --parsable --array={array}{} {}", dependency(&after), phase.script.display());
            after = vec![format!("<{phase_name}>")];
            continue;
        }
        let id = crate::slurm::submit(&submission.settings, &phase.script, Some(&array), &after)?;
        println!("submitted {phase_name} array job {id} (ranks {array} of {})", submission.world_size);
        submission.jobs.push(Job {
            phase: phase_name.clone(),
            job_id: id.clone(),
            array: Some(array),
            after: after.clone(),
            submitted_at: now_rfc3339(),
        });
        after = vec![id];
    }
    if let Some(merge) = submission.merge_script.clone() {
        if dry {
            println!("sbatch --parsable{} {}", dependency(&after), merge.display());
        } else {
            let id = crate::slurm::submit(&submission.settings, &merge, None, &after)?;
            println!("submitted merge job {id} (after job {}; it checks every rank is done)", after.join(", "));
            submission.jobs.push(Job { phase: "merge".into(), job_id: id, array: None, after: after.clone(), submitted_at: now_rfc3339() });
        }
    }
    submission.write(dir)?;
    if dry {
        println!("scripts written to {}; nothing submitted (--no-submit)", slurm_dir(dir).display());
    } else {
        println!(
            "logs: {}/logs/; watch: unitcoder status {}; after a failure: unitcoder status {} --resubmit",
            slurm_dir(dir).display(),
            dir.display(),
            dir.display()
        );
    }
    Ok(())
}

fn dependency(after: &[String]) -> String {
    if after.is_empty() {
        String::new()
    } else {
        format!(" --dependency=afterany:{}", after.join(":"))
    }
}

/// `status --resubmit`: the incomplete ranks of each phase again (not those still running
/// or queued), then a new merge job.
pub fn resubmit(dir: &Path, status: &Status) -> Result<()> {
    let mut submission = Submission::read(dir).with_context(|| {
        format!("{}: no Slurm submission to repeat ({} is written by `unitcoder slurm`)", dir.display(), Submission::path(dir).display())
    })?;
    anyhow::ensure!(
        submission.world_size == status.world_size,
        "{}: the submission has world size {} but the folders {}",
        dir.display(),
        submission.world_size,
        status.world_size
    );
    let active: Vec<usize> = status.ranks.iter().filter(|r| r.active()).map(|r| r.rank).collect();
    if !active.is_empty() {
        println!("not resubmitted, still running or queued: ranks {}", active.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", "));
    }
    let mut plan = Vec::new();
    let mut earlier: Vec<usize> = Vec::new();
    for phase in &submission.phases {
        let ranks: Vec<usize> = status
            .ranks
            .iter()
            .filter(|r| !r.active())
            .filter(|r| earlier.contains(&r.rank) || phase.stages.iter().any(|s| !r.stage_done(s)))
            .map(|r| r.rank)
            .collect();
        earlier.extend(ranks.iter().copied());
        plan.push((phase.name.clone(), ranks));
    }
    if plan.iter().all(|(_, r)| r.is_empty()) {
        if status.complete {
            println!("every rank is done: nothing to resubmit");
        } else {
            println!("nothing to resubmit now (the incomplete ranks are still running or queued)");
        }
        return Ok(());
    }
    submit_plan(&mut submission, dir, &plan, false)
}
