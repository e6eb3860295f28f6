//! `manifest.json`: what a stage read, with which settings, what it wrote and how long it
//! took. Written last and atomically, so its presence means the stage finished (a Makefile
//! can use it as the stage's target).

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::writer::{write_atomic, ShardInfo};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub stage: String,
    pub unitcoder_version: String,
    /// The inputs as resolved files, in reading order.
    pub inputs: Vec<String>,
    /// Fingerprint of inputs (paths, sizes, mtimes) and settings; equal fingerprints mean
    /// a rerun would produce the same output.
    pub fingerprint: String,
    pub settings: Value,
    pub counts: Value,
    pub shards: Vec<ShardInfo>,
    pub started_at: String,
    pub finished_at: String,
    pub elapsed_seconds: f64,
    #[serde(default)]
    pub timings: Value,
    /// False when the stage stopped early (e.g. an LLM budget): a rerun must redo it.
    #[serde(default = "yes")]
    pub complete: bool,
    /// The runs that built this output (a resumed stage has several), each with its LLM
    /// usage; `timings` holds their totals.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Value>,
}

fn yes() -> bool {
    true
}

impl Manifest {
    /// A finished stage's manifest.
    #[allow(clippy::too_many_arguments)]
    pub fn finished(
        stage: &str,
        inputs: &[super::InputFile],
        fingerprint: String,
        settings: Value,
        counts: Value,
        shards: Vec<ShardInfo>,
        started_at: String,
        started: std::time::Instant,
        timings: Value,
    ) -> Manifest {
        Manifest {
            stage: stage.to_string(),
            unitcoder_version: env!("CARGO_PKG_VERSION").into(),
            inputs: inputs.iter().map(|i| i.display()).collect(),
            fingerprint,
            settings,
            counts,
            shards,
            started_at,
            finished_at: now_rfc3339(),
            elapsed_seconds: started.elapsed().as_secs_f64(),
            timings,
            complete: true,
            history: Vec::new(),
        }
    }

    pub fn path(dir: &Path) -> std::path::PathBuf {
        dir.join("manifest.json")
    }

    pub fn read(dir: &Path) -> Result<Option<Manifest>> {
        let path = Self::path(dir);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| format!("{}: not a valid manifest", path.display()))?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    pub fn write(&self, dir: &Path) -> Result<()> {
        let mut bytes = serde_json::to_vec_pretty(self).context("cannot serialize manifest")?;
        bytes.push(b'\n');
        write_atomic(&Self::path(dir), &bytes)
    }

    /// Where a running stage keeps its latest counts (`stats` and `report` read it while the
    /// run goes on; the final manifest replaces it). Not `.progress.json`: that is the resume
    /// state (`shards::resume`), which must outlive the run.
    pub fn snapshot_path(dir: &Path) -> std::path::PathBuf {
        dir.join(".snapshot.json")
    }

    /// Write this as the stage's progress snapshot, signed with this process (host, pid).
    pub fn write_snapshot(&self, dir: &Path) -> Result<()> {
        let snapshot = Snapshot { host: super::ranks::hostname(), pid: std::process::id(), manifest: self.clone() };
        let bytes = serde_json::to_vec(&snapshot).context("cannot serialize progress")?;
        write_atomic(&Self::snapshot_path(dir), &bytes)
    }

    /// The progress snapshot of a stage being written, unless a manifest written after it
    /// says the run ended.
    pub fn read_snapshot(dir: &Path) -> Option<Snapshot> {
        let progress = Self::snapshot_path(dir);
        let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let snapshot_time = modified(&progress)?;
        if modified(&Self::path(dir)).is_some_and(|manifest_time| manifest_time >= snapshot_time) {
            return None;
        }
        std::fs::read(&progress).ok().and_then(|b| serde_json::from_slice(&b).ok())
    }

    /// True when every shard the manifest lists exists with the recorded size.
    pub fn shards_present(&self, dir: &Path) -> bool {
        self.shards.iter().all(|s| std::fs::metadata(dir.join(&s.file)).map(|m| m.len() == s.bytes).unwrap_or(false))
    }
}

/// A running stage's counts so far (`.snapshot.json`, rewritten every few seconds) and the
/// process writing them: a run killed with SIGKILL leaves its last snapshot behind, and
/// its readers must not call that "running".
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    pub host: String,
    pub pid: u32,
    #[serde(flatten)]
    pub manifest: Manifest,
}

impl Snapshot {
    /// False when the writer is known to be gone: on this host, its pid no longer exists.
    /// A snapshot written on another host (a Slurm node) is taken as live.
    pub fn writer_alive(&self) -> bool {
        self.host != super::ranks::hostname() || Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}

/// Fingerprint of input files (path, size, mtime) plus a settings value.
pub fn fingerprint(inputs: &[std::path::PathBuf], settings: &Value) -> String {
    let mut h = blake3::Hasher::new();
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    for p in inputs {
        h.update(p.to_string_lossy().as_bytes());
        if let Ok(m) = std::fs::metadata(p) {
            h.update(&m.len().to_le_bytes());
            if let Ok(t) = m.modified().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).map_err(std::io::Error::other)) {
                h.update(&t.as_nanos().to_le_bytes());
            }
        }
        h.update(b"\0");
    }
    h.update(settings.to_string().as_bytes());
    h.finalize().to_hex()[..32].to_string()
}

/// Current time as RFC 3339 (UTC, seconds).
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// Start a stage's output: `Ok(true)` when `dir` already holds this stage's complete
/// output for the same fingerprint (nothing to do); otherwise clears our previous files
/// from `dir` and returns `Ok(false)`.
pub fn prepare_output(dir: &Path, stage: &str, fingerprint: &str, force: bool) -> Result<bool> {
    if !force {
        if let Some(m) = Manifest::read(dir)? {
            if m.stage == stage && m.complete && m.fingerprint == fingerprint && m.shards_present(dir) {
                tracing::info!("{}: up to date (same inputs and settings); --force to redo", dir.display());
                return Ok(true);
            }
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create output directory {}", dir.display()))?;
    super::writer::clear_previous_output(dir, "shard")?;
    Ok(false)
}
