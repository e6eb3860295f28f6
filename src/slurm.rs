//! The Slurm engine: batch scripts for an array job and a merge job, `sbatch` to submit them,
//! `scontrol` to ask how a job went. Knows nothing of stages: it is given the command lines.
//!
//! Facts it is built on (Slurm 22.05): without accounting `sacct` answers nothing, while
//! `scontrol show job` does for `MinJobAge` seconds after the end; an `afterok` dependency on
//! an array is never satisfied once a task failed (even after a requeue), so merge jobs use
//! `afterany` and check completeness themselves.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

/// `[slurm]`: what every batch script asks for (flags override).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlurmSettings {
    /// `sbatch` to call (a path, or a name on PATH).
    pub sbatch: String,
    /// `#SBATCH --partition` (empty: the cluster's default).
    pub partition: String,
    /// `#SBATCH --time` of each rank, e.g. `4:00:00` (empty: the partition's default).
    pub time: String,
    /// `#SBATCH --cpus-per-task` (0: not set).
    pub cpus_per_task: u32,
    /// `#SBATCH --mem`, e.g. `8G` (empty: not set).
    pub mem: String,
    /// More `#SBATCH` lines as they are, e.g. `--account=abc` or `--gres=gpu:1`.
    pub extra: Vec<String>,
    /// `#SBATCH --time` of the merge job (empty: as `time`).
    pub merge_time: String,
    /// The `unitcoder` the jobs call (empty: the one that submits them).
    pub unitcoder: String,
}

impl Default for SlurmSettings {
    fn default() -> Self {
        SlurmSettings {
            sbatch: "sbatch".into(),
            partition: String::new(),
            time: String::new(),
            cpus_per_task: 0,
            mem: String::new(),
            extra: Vec::new(),
            merge_time: String::new(),
            unitcoder: String::new(),
        }
    }
}

/// One batch script to write.
pub struct Script<'a> {
    pub job_name: &'a str,
    /// `#SBATCH --output` (`%a` is the array index: one log per rank).
    pub log: &'a Path,
    /// Directory the commands run in (the one `unitcoder slurm` ran in: relative paths keep working).
    pub cwd: &'a Path,
    /// Shell command lines, already quoted; `set -e` stops at the first that fails.
    pub commands: Vec<String>,
    pub time: &'a str,
}

/// The text of a batch script.
pub fn render(s: &SlurmSettings, script: &Script) -> String {
    let mut out = String::from("#!/bin/bash\n");
    let mut directive = |line: String| out.push_str(&format!("#SBATCH {line}\n"));
    directive(format!("--job-name={}", script.job_name));
    directive(format!("--output={}", script.log.display()));
    directive("--open-mode=append".into());
    if !s.partition.is_empty() {
        directive(format!("--partition={}", s.partition));
    }
    if !script.time.is_empty() {
        directive(format!("--time={}", script.time));
    }
    if s.cpus_per_task > 0 {
        directive(format!("--cpus-per-task={}", s.cpus_per_task));
    }
    if !s.mem.is_empty() {
        directive(format!("--mem={}", s.mem));
    }
    for line in &s.extra {
        directive(line.trim().trim_start_matches("#SBATCH").trim().to_string());
    }
    out.push_str("set -euo pipefail\n");
    out.push_str("# sbatch passes the submitting shell's environment on: the rank comes from the array index only.\n");
    out.push_str("unset UNITCODER_RANK UNITCODER_WORLD_SIZE\n");
    out.push_str(&format!("cd {}\n", quote(&script.cwd.display().to_string())));
    out.push_str("echo \"== $(date -u +%FT%TZ) ${SLURM_JOB_NAME:-} job ${SLURM_ARRAY_JOB_ID:-${SLURM_JOB_ID:-}} task ${SLURM_ARRAY_TASK_ID:-} on $(hostname)\"\n");
    for c in &script.commands {
        out.push_str(c);
        out.push('\n');
    }
    out
}

/// A word for a POSIX shell, quoted when it needs to be.
pub fn quote(word: &str) -> String {
    let plain = !word.is_empty() && word.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@+%".contains(&b));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Submit `script`: an array over `array` (e.g. `0-3` or `1,3`) when given, after `after`
/// jobs have ended (`afterany`). Returns the job id.
pub fn submit(s: &SlurmSettings, script: &Path, array: Option<&str>, after: &[String]) -> Result<String> {
    let mut cmd = Command::new(&s.sbatch);
    cmd.arg("--parsable");
    if let Some(a) = array {
        cmd.arg(format!("--array={a}"));
    }
    if !after.is_empty() {
        cmd.arg(format!("--dependency=afterany:{}", after.join(":")));
    }
    cmd.arg(script);
    let out = cmd.output().with_context(|| format!("cannot run {} (is Slurm installed? [slurm] sbatch names the command)", s.sbatch))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "{} {} failed ({}): {}",
        s.sbatch,
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    // `--parsable` prints `jobid[;cluster]`.
    let id = stdout.trim().split(';').next().unwrap_or("").to_string();
    anyhow::ensure!(!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()), "sbatch printed no job id: {stdout:?}");
    Ok(id)
}

/// How a job (or an array task `ID_TASK`) is doing, from `scontrol show job`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobState {
    pub state: String,
    pub reason: String,
    pub exit_code: String,
}

impl JobState {
    /// Still to run or running (a resubmission would run it twice).
    pub fn active(&self) -> bool {
        matches!(self.state.as_str(), "PENDING" | "RUNNING" | "CONFIGURING" | "COMPLETING" | "REQUEUED" | "RESIZING" | "SUSPENDED")
    }
}

/// `scontrol show job -o ID`; `None` when Slurm does not know it (any more) or is not there.
pub fn job_state(id: &str) -> Option<JobState> {
    let out = Command::new("scontrol").args(["show", "job", "-o", id]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    parse_job_state(&String::from_utf8_lossy(&out.stdout), id)
}

/// The record of task `id` in `scontrol show job -o` output (one line per task).
pub fn parse_job_state(text: &str, id: &str) -> Option<JobState> {
    let (job, task) = match id.split_once('_') {
        Some((j, t)) => (j, Some(t)),
        None => (id, None),
    };
    for line in text.lines() {
        let field = |name: &str| line.split_whitespace().find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('='))).map(str::to_string);
        let matches = match task {
            Some(t) => field("ArrayJobId").as_deref() == Some(job) && field("ArrayTaskId").as_deref() == Some(t),
            None => field("JobId").as_deref() == Some(job),
        };
        if matches {
            return Some(JobState {
                state: field("JobState").unwrap_or_default(),
                reason: field("Reason").unwrap_or_default(),
                exit_code: field("ExitCode").unwrap_or_default(),
            });
        }
    }
    None
}

/// `0-3`-style ranges for a list of ranks (`0-1,3`).
pub fn array_spec(ranks: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < ranks.len() {
        let start = ranks[i];
        let mut end = start;
        while i + 1 < ranks.len() && ranks[i + 1] == end + 1 {
            i += 1;
            end = ranks[i];
        }
        parts.push(if start == end { start.to_string() } else { format!("{start}-{end}") });
        i += 1;
    }
    parts.join(",")
}

/// `DIR/slurm/`.
pub fn slurm_dir(work: &Path) -> PathBuf {
    work.join("slurm")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_pin_the_world_size_and_clear_the_environment() {
        let s = SlurmSettings {
            partition: "gpu".into(),
            cpus_per_task: 2,
            mem: "4G".into(),
            extra: vec!["#SBATCH --account=x".into()],
            ..Default::default()
        };
        let text = render(
            &s,
            &Script {
                job_name: "unitcoder-run",
                log: Path::new("/w/slurm/logs/run-rank-%a.log"),
                cwd: Path::new("/home/me/my project"),
                commands: vec!["exec /bin/unitcoder run --rank \"$SLURM_ARRAY_TASK_ID\" --world-size 4".into()],
                time: "1:00:00",
            },
        );
        for line in ["#SBATCH --partition=gpu", "#SBATCH --cpus-per-task=2", "#SBATCH --mem=4G", "#SBATCH --account=x", "#SBATCH --time=1:00:00"] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        assert!(text.contains("unset UNITCODER_RANK UNITCODER_WORLD_SIZE") && text.contains("cd '/home/me/my project'"), "{text}");
        assert!(text.contains("#SBATCH --output=/w/slurm/logs/run-rank-%a.log"));
    }

    #[test]
    fn quoting_and_array_specs() {
        assert_eq!(quote("a/b.toml"), "a/b.toml");
        assert_eq!(quote("it's here"), r"'it'\''s here'");
        assert_eq!(quote(""), "''");
        assert_eq!(array_spec(&[0, 1, 2, 3]), "0-3");
        assert_eq!(array_spec(&[1, 3]), "1,3");
        assert_eq!(array_spec(&[0, 1, 3, 5, 6]), "0-1,3,5-6");
    }

    #[test]
    fn scontrol_lines_are_read_per_array_task() {
        let text = "JobId=13 ArrayJobId=12 ArrayTaskId=1 JobName=x JobState=CANCELLED Reason=None ExitCode=0:9\n\
                    JobId=12 ArrayJobId=12 ArrayTaskId=0 JobName=x JobState=COMPLETED Reason=None ExitCode=0:0\n";
        let s = parse_job_state(text, "12_1").unwrap();
        assert_eq!((s.state.as_str(), s.exit_code.as_str(), s.active()), ("CANCELLED", "0:9", false));
        assert_eq!(parse_job_state(text, "12_0").unwrap().state, "COMPLETED");
        assert_eq!(parse_job_state(text, "12_7"), None);
        assert!(parse_job_state("JobId=20 JobState=PENDING Reason=Dependency", "20").unwrap().active());
    }
}
