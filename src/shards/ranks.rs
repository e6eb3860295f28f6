//! The rank layout: with `--world-size N`, rank I of a stage writes `DIR/rank-0000I-of-0000N/`.
//! This module reads that layout back: which ranks a stage directory holds, how far each got
//! (done / partial n records / missing / stopped), whether world sizes are mixed, and the
//! per-rank process markers (`WORK/.ranks/rank-…json`: running on which host and job, or how
//! it ended). `status`, the export guard, `stats` and the Slurm resubmission all read it here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

use super::manifest::now_rfc3339;
use super::writer::write_atomic;
use super::Manifest;

/// `rank-RRRRR-of-NNNNN`.
pub fn dir_name(rank: usize, world: usize) -> String {
    format!("rank-{rank:05}-of-{world:05}")
}

/// The (rank, world size) a directory name stands for.
pub fn parse_dir_name(name: &str) -> Option<(usize, usize)> {
    let rest = name.strip_prefix("rank-")?;
    let (rank, world) = rest.split_once("-of-")?;
    let (rank, world) = (rank.parse::<usize>().ok()?, world.parse::<usize>().ok()?);
    (world > 0 && rank < world).then_some((rank, world))
}

/// The rank subdirectories of `dir`, sorted by (world size, rank).
pub fn rank_dirs(dir: &Path) -> Vec<(usize, usize, PathBuf)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some((rank, world)) = parse_dir_name(&name) {
            if entry.path().is_dir() {
                out.push((rank, world, entry.path()));
            }
        }
    }
    out.sort_by_key(|(rank, world, _)| (*world, *rank));
    out
}

/// How far one output directory (a stage, or one rank of it) got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum OutputState {
    /// A complete manifest: the stage finished.
    Done { records: u64 },
    /// Shards but no complete manifest: interrupted, killed or still running.
    Partial { records: u64 },
    /// The manifest says the stage stopped early (a budget, an unusable LLM).
    Stopped { records: u64, reason: String },
    /// Nothing written yet.
    Missing,
}

impl OutputState {
    pub fn records(&self) -> u64 {
        match self {
            OutputState::Done { records } | OutputState::Partial { records } | OutputState::Stopped { records, .. } => *records,
            OutputState::Missing => 0,
        }
    }

    pub fn is_done(&self) -> bool {
        matches!(self, OutputState::Done { .. })
    }
}

/// The state of one output directory, from its manifest or, without one, its shards.
pub fn output_state(dir: &Path) -> OutputState {
    if let Ok(Some(m)) = Manifest::read(dir) {
        let records = manifest_records(&m);
        let partials = partial_files(dir);
        if m.complete && partials.is_empty() && m.shards_present(dir) {
            return OutputState::Done { records };
        }
        if !m.complete {
            let reason = m.counts.get("errors_by_kind").map(|e| format!("stopped early; errors {e}")).unwrap_or_else(|| "stopped early".into());
            return OutputState::Stopped { records, reason };
        }
    }
    let shards = shard_files(dir);
    let partials = partial_files(dir);
    if shards.is_empty() && partials.is_empty() {
        return OutputState::Missing;
    }
    let records = shards.iter().chain(&partials).map(|p| count_lines(p)).sum();
    OutputState::Partial { records }
}

/// Records a manifest says its stage wrote (`counts.records`, extract's `kept`, else the shards').
pub fn manifest_records(m: &Manifest) -> u64 {
    let count = |k: &str| m.counts.get(k).and_then(serde_json::Value::as_u64);
    count("records").or_else(|| count("kept")).unwrap_or_else(|| m.shards.iter().map(|s| s.records).sum())
}

/// Finished shard files of an output directory (`shard-*.jsonl[.zst|.gz]`).
pub fn shard_files(dir: &Path) -> Vec<PathBuf> {
    listed(dir, |name| name.starts_with("shard-") && (name.ends_with(".jsonl") || name.ends_with(".jsonl.zst") || name.ends_with(".jsonl.gz")))
}

/// Partial shards of an interrupted record stage (`.shard-*.partial.jsonl`) and the shard
/// an extract was writing (`.shard-*.tmp`).
pub fn partial_files(dir: &Path) -> Vec<PathBuf> {
    listed(dir, |name| name.starts_with(".shard-") && (name.ends_with(".partial.jsonl") || name.ends_with(".tmp")))
}

fn listed(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> =
        std::fs::read_dir(dir).into_iter().flatten().flatten().filter(|e| keep(&e.file_name().to_string_lossy())).map(|e| e.path()).collect();
    out.sort();
    out
}

/// Non-blank lines of a (possibly compressed) JSONL file; a torn last line counts.
fn count_lines(path: &Path) -> u64 {
    use std::io::BufRead;
    let Ok(reader) = super::resume::open_lines(path) else { return 0 };
    let mut n = 0;
    for line in reader.split(b'\n') {
        match line {
            Ok(l) if !l.iter().all(u8::is_ascii_whitespace) => n += 1,
            Ok(_) => {}
            Err(_) => break, // a compressed shard cut short: count what decodes
        }
    }
    n
}

/// One stage directory's ranks.
#[derive(Debug, Clone, Serialize)]
pub struct StageRanks {
    pub dir: PathBuf,
    /// World sizes found (more than one: folders of different runs are mixed).
    pub world_sizes: Vec<usize>,
    /// Per world size, per rank 0..N: the state (missing ranks included).
    pub ranks: BTreeMap<usize, Vec<OutputState>>,
}

impl StageRanks {
    pub fn read(dir: &Path) -> StageRanks {
        let found = rank_dirs(dir);
        let world_sizes: BTreeSet<usize> = found.iter().map(|(_, w, _)| *w).collect();
        let mut ranks = BTreeMap::new();
        for &world in &world_sizes {
            let states = (0..world)
                .map(|r| match found.iter().find(|(rank, w, _)| *rank == r && *w == world) {
                    Some((_, _, path)) => output_state(path),
                    None => OutputState::Missing,
                })
                .collect();
            ranks.insert(world, states);
        }
        StageRanks { dir: dir.to_path_buf(), world_sizes: world_sizes.into_iter().collect(), ranks }
    }

    pub fn is_rank_layout(&self) -> bool {
        !self.world_sizes.is_empty()
    }

    /// Why this layout cannot be merged as it is: mixed world sizes, missing ranks, ranks
    /// not finished. `None` when every rank of the one world size is done.
    pub fn incomplete(&self) -> Option<String> {
        if self.world_sizes.len() > 1 {
            let sizes: Vec<String> = self.world_sizes.iter().map(|w| w.to_string()).collect();
            return Some(format!(
                "{} mixes rank folders of different world sizes ({}): they are different splits of the inputs, not parts of one run; remove the stale ones",
                self.dir.display(),
                sizes.join(" and ")
            ));
        }
        let (world, states) = self.ranks.iter().next()?;
        let mut problems = Vec::new();
        for (rank, state) in states.iter().enumerate() {
            match state {
                OutputState::Done { .. } => {}
                OutputState::Missing => problems.push(format!("rank {rank} missing")),
                OutputState::Partial { records } => problems.push(format!("rank {rank} partial ({records} records, not finished)")),
                OutputState::Stopped { reason, .. } => problems.push(format!("rank {rank} {reason}")),
            }
        }
        (!problems.is_empty()).then(|| format!("{} (world size {world}): {}", self.dir.display(), problems.join("; ")))
    }
}

/// What a rank's process was last seen doing (`WORK/.ranks/rank-…json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RankMarker {
    pub rank: usize,
    pub world_size: usize,
    /// running, done, failed.
    pub state: String,
    pub command: String,
    pub host: String,
    pub pid: u32,
    /// `SLURM_ARRAY_JOB_ID_SLURM_ARRAY_TASK_ID` (or `SLURM_JOB_ID`) when under Slurm.
    pub slurm_job: Option<String>,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub exit_status: Option<u8>,
    /// Why it failed (the error, the signal).
    pub reason: Option<String>,
}

/// `WORK/.ranks/`: one marker per rank.
pub fn markers_dir(work: &Path) -> PathBuf {
    work.join(".ranks")
}

pub fn marker_path(work: &Path, rank: usize, world: usize) -> PathBuf {
    markers_dir(work).join(format!("{}.json", dir_name(rank, world)))
}

impl RankMarker {
    /// A marker for this process, starting now.
    pub fn start(rank: usize, world: usize, command: &str) -> RankMarker {
        let slurm_job = match (std::env::var("SLURM_ARRAY_JOB_ID"), std::env::var("SLURM_ARRAY_TASK_ID"), std::env::var("SLURM_JOB_ID")) {
            (Ok(job), Ok(task), _) => Some(format!("{job}_{task}")),
            (_, _, Ok(job)) => Some(job),
            _ => None,
        };
        RankMarker {
            rank,
            world_size: world,
            state: "running".into(),
            command: command.into(),
            host: hostname(),
            pid: std::process::id(),
            slurm_job,
            started_at: now_rfc3339(),
            ..Default::default()
        }
    }

    pub fn read(work: &Path, rank: usize, world: usize) -> Option<RankMarker> {
        std::fs::read(marker_path(work, rank, world)).ok().and_then(|b| serde_json::from_slice(&b).ok())
    }

    pub fn write(&self, work: &Path) -> Result<()> {
        let dir = markers_dir(work);
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut bytes = serde_json::to_vec_pretty(self)?;
        bytes.push(b'\n');
        write_atomic(&marker_path(work, self.rank, self.world_size), &bytes)
    }

    /// The same marker, ended.
    pub fn ended(&self, exit_status: u8, reason: Option<String>) -> RankMarker {
        RankMarker {
            state: if exit_status == 0 { "done".into() } else { "failed".into() },
            finished_at: Some(now_rfc3339()),
            exit_status: Some(exit_status),
            reason,
            ..self.clone()
        }
    }

    /// A "running" marker whose process is gone: on this host, its pid no longer exists
    /// (killed with SIGKILL, the node rebooted, out of memory). `None`: cannot tell from here.
    pub fn process_gone(&self) -> Option<bool> {
        if self.state != "running" || self.host != hostname() || self.pid == 0 {
            return None;
        }
        Some(!Path::new(&format!("/proc/{}", self.pid)).exists())
    }
}

/// This machine's short host name.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).into_owned();
    name.split('.').next().unwrap_or("").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_names_round_trip_and_reject_nonsense() {
        assert_eq!(parse_dir_name(&dir_name(3, 4)), Some((3, 4)));
        assert_eq!(parse_dir_name("rank-00004-of-00004"), None);
        assert_eq!(parse_dir_name("rank-00000-of-00000"), None);
        assert_eq!(parse_dir_name("rank-x-of-2"), None);
        assert_eq!(parse_dir_name("shard-00000.jsonl"), None);
    }

    #[test]
    fn a_layout_names_missing_partial_and_mixed_ranks() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let done = d.join(dir_name(0, 3));
        std::fs::create_dir_all(&done).unwrap();
        std::fs::write(done.join("shard-00000.jsonl"), "{\"id\":\"a\"}\n{\"id\":\"b\"}\n").unwrap();
        let m = Manifest::finished(
            "gen-tests",
            &[],
            "fp".into(),
            serde_json::json!({}),
            serde_json::json!({"records": 2}),
            vec![super::super::ShardInfo { file: "shard-00000.jsonl".into(), records: 2, bytes: 22 }],
            now_rfc3339(),
            std::time::Instant::now(),
            serde_json::json!({}),
        );
        m.write(&done).unwrap();
        let partial = d.join(dir_name(1, 3));
        std::fs::create_dir_all(&partial).unwrap();
        std::fs::write(partial.join(".shard-00001.partial.jsonl"), "{\"id\":\"c\"}\n").unwrap();
        let ranks = StageRanks::read(d);
        assert_eq!(ranks.world_sizes, vec![3]);
        assert_eq!(ranks.ranks[&3], vec![OutputState::Done { records: 2 }, OutputState::Partial { records: 1 }, OutputState::Missing]);
        let why = ranks.incomplete().unwrap();
        assert!(why.contains("rank 1 partial (1 records") && why.contains("rank 2 missing"), "{why}");

        std::fs::create_dir_all(d.join(dir_name(0, 2))).unwrap();
        let mixed = StageRanks::read(d).incomplete().unwrap();
        assert!(mixed.contains("different world sizes (2 and 3)"), "{mixed}");
    }

    #[test]
    fn a_marker_of_a_dead_process_on_this_host_is_seen_as_gone() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = RankMarker::start(1, 2, "run");
        m.pid = u32::MAX - 1; // no such process
        m.write(dir.path()).unwrap();
        let back = RankMarker::read(dir.path(), 1, 2).unwrap();
        assert_eq!(back.process_gone(), Some(true));
        assert_eq!(back.ended(0, None).state, "done");
        let alive = RankMarker::start(0, 2, "run");
        let mut other = alive.clone();
        other.pid = 1; // init is alive
        assert_eq!(other.process_gone(), Some(false));
    }
}
