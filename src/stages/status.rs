//! `unitcoder status DIR`: how far every rank of a split run (or of one split stage) got.
//!
//! Per stage and rank: done / partial (n of m records) / stopped / missing, read from the
//! rank folders; per rank the process's marker (`DIR/.ranks/`) and, under Slurm, the job's
//! state: running, pending, or failed with the reason (the error, the signal, the job state).
//! Exits 0 when every rank is done, 7 while anything is incomplete; `--resubmit` submits
//! just the incomplete ranks again (with the same world size) and a new merge job.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use crate::context::Context;
use crate::shards::ranks::{rank_dirs, OutputState, RankMarker, StageRanks};
use crate::slurm::JobState;
use crate::stages::slurm::Submission;

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// A work directory of a split `run`, or the output directory of a split stage.
    pub dir: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Submit the incomplete ranks again (same world size, Slurm) and a new merge job.
    #[arg(long)]
    pub resubmit: bool,
}

/// One stage of one rank.
#[derive(Debug, Clone, Serialize)]
pub struct StageCell {
    pub stage: String,
    #[serde(flatten)]
    pub state: OutputState,
    /// Records the stage gets (its input's count), when known.
    pub of: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RankStatus {
    pub rank: usize,
    pub stages: Vec<StageCell>,
    /// done, running, pending, partial, missing, failed.
    pub state: String,
    pub reason: Option<String>,
    pub marker: Option<RankMarker>,
    pub slurm: Option<JobState>,
}

impl RankStatus {
    /// Running or waiting in the queue: resubmitting it would run it twice.
    pub fn active(&self) -> bool {
        matches!(self.state.as_str(), "running" | "pending")
    }

    pub fn stage_done(&self, stage: &str) -> bool {
        self.stages.iter().any(|c| c.stage == stage && c.state.is_done())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub dir: PathBuf,
    pub world_size: usize,
    /// Stages with rank folders of another world size than `world_size` (a stale split).
    pub mixed: Vec<String>,
    pub stages: Vec<String>,
    pub ranks: Vec<RankStatus>,
    pub complete: bool,
}

impl Status {
    pub fn incomplete_ranks(&self) -> Vec<usize> {
        self.ranks.iter().filter(|r| r.state != "done").map(|r| r.rank).collect()
    }
}

pub fn run(_ctx: &Context, args: &StatusArgs) -> Result<ExitCode> {
    crate::stages::common::refuse_split_from_env("status")?;
    let status = collect(&args.dir)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", table(&status));
    }
    if args.resubmit {
        crate::stages::slurm::resubmit(&args.dir, &status)?;
    }
    Ok(crate::exit::code(if status.complete { crate::exit::SUCCESS } else { crate::exit::INCOMPLETE }))
}

/// The stage directories of `dir` that hold rank folders, in funnel order (or `dir` itself).
fn stage_dirs(dir: &Path) -> Vec<(String, PathBuf)> {
    if !rank_dirs(dir).is_empty() {
        let name = rank_dirs(dir)
            .iter()
            .find_map(|(_, _, d)| crate::shards::Manifest::read(d).ok().flatten().map(|m| m.stage))
            .unwrap_or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
        return vec![(name, dir.to_path_buf())];
    }
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir() && !rank_dirs(&e.path()).is_empty())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    out.sort_by_key(|(name, _)| (crate::stages::funnel_position(name), name.clone()));
    out
}

pub fn collect(dir: &Path) -> Result<Status> {
    anyhow::ensure!(dir.is_dir(), "{}: no such directory", dir.display());
    let submission = Submission::read(dir);
    let found = stage_dirs(dir);
    let layouts: Vec<(String, StageRanks)> = found.iter().map(|(name, d)| (name.clone(), StageRanks::read(d))).collect();
    // The world size: the submission's, else the most common one.
    let mut votes: BTreeMap<usize, usize> = BTreeMap::new();
    for (_, l) in &layouts {
        for w in &l.world_sizes {
            *votes.entry(*w).or_default() += 1;
        }
    }
    let world = submission
        .as_ref()
        .map(|s| s.world_size)
        .or_else(|| votes.iter().max_by_key(|(w, n)| (**n, **w)).map(|(w, _)| *w))
        .ok_or_else(|| anyhow::anyhow!("{}: no rank folders (rank-RRRRR-of-NNNNN) found: not a split run", dir.display()))?;
    let mixed: Vec<String> = layouts.iter().filter(|(_, l)| l.world_sizes.iter().any(|w| *w != world)).map(|(n, _)| n.clone()).collect();
    // The stages every rank must finish: the submission's, plus any found.
    let mut stages: Vec<String> = submission.as_ref().map(|s| s.stages.clone()).unwrap_or_default();
    for (name, _) in &layouts {
        if !stages.contains(name) {
            stages.push(name.clone());
        }
    }
    stages.sort_by_key(|s| crate::stages::funnel_position(s));
    let jobs = submission.as_ref().map(|s| s.latest_jobs()).unwrap_or_default();
    let mut ranks = Vec::new();
    for rank in 0..world {
        let mut cells = Vec::new();
        let mut share_records = None;
        for stage in &stages {
            let state = layouts
                .iter()
                .find(|(n, _)| n == stage)
                .and_then(|(_, l)| l.ranks.get(&world))
                .and_then(|states| states.get(rank).cloned())
                .unwrap_or(OutputState::Missing);
            let of = match stage.as_str() {
                "extract" | "share" => None,
                _ => share_records,
            };
            if stage == "share" && state.is_done() {
                share_records = Some(state.records());
            }
            cells.push(StageCell { stage: stage.clone(), state, of });
        }
        let marker = RankMarker::read(dir, rank, world);
        let slurm =
            marker.as_ref().and_then(|m| m.slurm_job.clone()).or_else(|| jobs.get(&rank).cloned()).and_then(|id| crate::slurm::job_state(&id));
        let (state, reason) = judge(&cells, marker.as_ref(), slurm.as_ref());
        ranks.push(RankStatus { rank, stages: cells, state, reason, marker, slurm });
    }
    let complete = mixed.is_empty() && !ranks.is_empty() && ranks.iter().all(|r| r.state == "done");
    Ok(Status { dir: dir.to_path_buf(), world_size: world, mixed, stages, ranks, complete })
}

/// A rank's state and why, from its stages, its marker and its Slurm job.
fn judge(cells: &[StageCell], marker: Option<&RankMarker>, slurm: Option<&JobState>) -> (String, Option<String>) {
    // The marker is the latest process's: its failure stands even when the stage folders
    // written so far are complete (it failed before writing the next one).
    let failed_last = marker.is_some_and(|m| m.state == "failed");
    if !failed_last && !cells.is_empty() && cells.iter().all(|c| c.state.is_done()) {
        return ("done".into(), None);
    }
    let job = |m: &RankMarker| m.slurm_job.as_deref().map(|j| format!(", slurm job {j}")).unwrap_or_default();
    if let Some(s) = slurm.filter(|s| s.active()) {
        let state = if s.state == "PENDING" { "pending" } else { "running" };
        return (state.into(), Some(format!("slurm {} ({})", s.state, s.reason)));
    }
    if let Some(m) = marker {
        match m.state.as_str() {
            "failed" => {
                let status = m.exit_status.map(|s| format!(" (exit {s})")).unwrap_or_default();
                let reason = m.reason.clone().unwrap_or_else(|| "no reason recorded".into());
                return ("failed".into(), Some(format!("{reason}{status}, {} on {}{}", m.command, m.host, job(m))));
            }
            "running" => {
                if let Some(s) = slurm {
                    return (
                        "failed".into(),
                        Some(format!(
                            "slurm job {} ended {} (reason {}, exit code {}) while `{}` ran",
                            m.slurm_job.as_deref().unwrap_or("?"),
                            s.state,
                            s.reason,
                            s.exit_code,
                            m.command
                        )),
                    );
                }
                match m.process_gone() {
                    Some(true) => {
                        return (
                            "failed".into(),
                            Some(format!(
                                "the process ({} pid {}) is gone without finishing: killed (SIGKILL, out of memory) or the node restarted{}",
                                m.host,
                                m.pid,
                                job(m)
                            )),
                        )
                    }
                    Some(false) => return ("running".into(), Some(format!("`{}` on {} pid {} since {}", m.command, m.host, m.pid, m.started_at))),
                    None => {
                        return (
                            "running".into(),
                            Some(format!("`{}` on {} since {} (cannot check that host from here){}", m.command, m.host, m.started_at, job(m))),
                        )
                    }
                }
            }
            _ => {}
        }
    }
    let started = cells.iter().any(|c| !matches!(c.state, OutputState::Missing));
    if let Some(s) = slurm {
        return ("failed".into(), Some(format!("slurm job ended {} (reason {}, exit code {})", s.state, s.reason, s.exit_code)));
    }
    let stopped = cells.iter().find_map(|c| match &c.state {
        OutputState::Stopped { reason, .. } => Some(format!("{}: {reason}", c.stage)),
        _ => None,
    });
    if let Some(why) = stopped {
        return ("failed".into(), Some(why));
    }
    if started {
        ("partial".into(), None)
    } else {
        ("missing".into(), None)
    }
}

pub(crate) fn cell_text(c: &StageCell) -> String {
    match (&c.state, c.of) {
        (OutputState::Done { records }, _) => format!("done {records}"),
        (OutputState::Partial { records }, Some(of)) => format!("partial {records}/{of}"),
        (OutputState::Partial { records }, None) => format!("partial {records}"),
        (OutputState::Stopped { records, .. }, _) => format!("stopped {records}"),
        (OutputState::Missing, _) => "missing".into(),
    }
}

/// The table `status` prints.
pub fn table(s: &Status) -> String {
    let done = s.ranks.iter().filter(|r| r.state == "done").count();
    let mut out = format!("{}: world size {}, {done} of {} ranks done\n", s.dir.display(), s.world_size, s.ranks.len());
    let mut widths: Vec<usize> = s.stages.iter().map(|n| n.len()).collect();
    for r in &s.ranks {
        for (i, c) in r.stages.iter().enumerate() {
            widths[i] = widths[i].max(cell_text(c).len());
        }
    }
    out.push_str("rank  ");
    for (name, w) in s.stages.iter().zip(&widths) {
        out.push_str(&format!("{name:<w$}  "));
    }
    out.push_str("state\n");
    for r in &s.ranks {
        out.push_str(&format!("{:<4}  ", r.rank));
        for (c, w) in r.stages.iter().zip(&widths) {
            out.push_str(&format!("{:<w$}  ", cell_text(c)));
        }
        out.push_str(&r.state);
        if let Some(why) = &r.reason {
            out.push_str(&format!(": {why}"));
        }
        out.push('\n');
    }
    let sizes: BTreeSet<&String> = s.mixed.iter().collect();
    if !sizes.is_empty() {
        let names: Vec<&str> = sizes.iter().map(|s| s.as_str()).collect();
        out.push_str(&format!(
            "warning: {} also hold rank folders of another world size (an earlier split): remove them, or they are mixed into merges\n",
            names.join(", ")
        ));
    }
    if s.complete {
        out.push_str("complete\n");
    } else {
        let incomplete: Vec<String> = s.incomplete_ranks().iter().map(|r| r.to_string()).collect();
        if !incomplete.is_empty() {
            out.push_str(&format!("incomplete: ranks {}", incomplete.join(", ")));
            if Submission::read(&s.dir).is_some() {
                out.push_str(&format!(" (resubmit them: unitcoder status {} --resubmit)", s.dir.display()));
            }
            out.push('\n');
        }
    }
    out
}
