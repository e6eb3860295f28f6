//! Writing output shards: `<dir>/<prefix>-00000.jsonl[.zst]`, N records each.
//!
//! Each shard is written to a hidden temp file and renamed into place only when complete
//! and synced, so a crash never leaves a half-written shard under a final name.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone)]
pub struct ShardWriterOptions {
    /// File name prefix (`shard` → `shard-00000.jsonl.zst`).
    pub prefix: String,
    pub records_per_shard: usize,
    /// zstd-compress shards (`.jsonl.zst`); plain `.jsonl` otherwise.
    pub compress: bool,
    pub zstd_level: i32,
}

impl Default for ShardWriterOptions {
    fn default() -> Self {
        Self { prefix: "shard".into(), records_per_shard: 10_000, compress: true, zstd_level: 3 }
    }
}

/// A finished shard, as listed in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    pub file: String,
    pub records: u64,
    pub bytes: u64,
}

enum Sink {
    Plain(BufWriter<File>),
    Zstd(zstd::stream::write::Encoder<'static, BufWriter<File>>),
}

struct OpenShard {
    tmp_path: PathBuf,
    final_path: PathBuf,
    sink: Sink,
    records: u64,
}

pub struct ShardWriter {
    dir: PathBuf,
    options: ShardWriterOptions,
    current: Option<OpenShard>,
    finished: Vec<ShardInfo>,
    line: Vec<u8>,
}

impl ShardWriter {
    pub fn new(dir: &Path, options: ShardWriterOptions) -> Result<Self> {
        fs::create_dir_all(dir).with_context(|| format!("cannot create output directory {}", dir.display()))?;
        Ok(Self { dir: dir.to_path_buf(), options, current: None, finished: Vec::new(), line: Vec::new() })
    }

    pub fn extension(compress: bool) -> &'static str {
        if compress {
            "jsonl.zst"
        } else {
            "jsonl"
        }
    }

    /// Name of shard number `index` under these options.
    pub fn shard_name(&self, index: usize) -> String {
        format!("{}-{index:05}.{}", self.options.prefix, Self::extension(self.options.compress))
    }

    /// Serialize one record as a JSON line.
    pub fn write<T: Serialize>(&mut self, record: &T) -> Result<()> {
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        serde_json::to_writer(&mut line, record).context("cannot serialize record")?;
        line.push(b'\n');
        let result = self.write_line(&line);
        self.line = line;
        result
    }

    /// Write one already-serialized JSON line (must end with `\n`).
    pub fn write_line(&mut self, line: &[u8]) -> Result<()> {
        if self.current.is_none() {
            self.open_next()?;
        }
        let shard = self.current.as_mut().context("no open shard")?;
        let res = match &mut shard.sink {
            Sink::Plain(w) => w.write_all(line),
            Sink::Zstd(w) => w.write_all(line),
        };
        res.with_context(|| format!("cannot write {}", shard.tmp_path.display()))?;
        shard.records += 1;
        if shard.records as usize >= self.options.records_per_shard {
            self.seal()?;
        }
        Ok(())
    }

    /// Records written so far (sealed and open shards).
    pub fn records(&self) -> u64 {
        self.finished.iter().map(|s| s.records).sum::<u64>() + self.current.as_ref().map_or(0, |s| s.records)
    }

    fn open_next(&mut self) -> Result<()> {
        let name = self.shard_name(self.finished.len());
        let final_path = self.dir.join(&name);
        let tmp_path = self.dir.join(format!(".{name}.tmp"));
        let file = File::create(&tmp_path).with_context(|| format!("cannot create {}", tmp_path.display()))?;
        let buffered = BufWriter::with_capacity(256 * 1024, file);
        let sink = if self.options.compress {
            Sink::Zstd(zstd::stream::write::Encoder::new(buffered, self.options.zstd_level).context("zstd encoder")?)
        } else {
            Sink::Plain(buffered)
        };
        self.current = Some(OpenShard { tmp_path, final_path, sink, records: 0 });
        Ok(())
    }

    /// Finish the open shard: flush, fsync, rename into place.
    fn seal(&mut self) -> Result<()> {
        let Some(shard) = self.current.take() else { return Ok(()) };
        let buffered = match shard.sink {
            Sink::Plain(w) => w,
            Sink::Zstd(w) => w.finish().with_context(|| format!("cannot finish {}", shard.tmp_path.display()))?,
        };
        let file = buffered.into_inner().map_err(|e| e.into_error()).with_context(|| format!("cannot flush {}", shard.tmp_path.display()))?;
        file.sync_all().with_context(|| format!("cannot sync {}", shard.tmp_path.display()))?;
        let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
        drop(file);
        fs::rename(&shard.tmp_path, &shard.final_path).with_context(|| format!("cannot rename into {}", shard.final_path.display()))?;
        sync_dir(&self.dir);
        let file_name = shard.final_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        self.finished.push(ShardInfo { file: file_name, records: shard.records, bytes });
        Ok(())
    }

    /// Seal the last shard and return the list of shards written.
    pub fn finish(mut self) -> Result<Vec<ShardInfo>> {
        self.seal()?;
        Ok(std::mem::take(&mut self.finished))
    }
}

impl Drop for ShardWriter {
    fn drop(&mut self) {
        // An unfinished shard (error path) is removed, never left looking complete.
        if let Some(shard) = self.current.take() {
            let _ = fs::remove_file(&shard.tmp_path);
        }
    }
}

/// fsync a directory so a rename in it is durable (best effort).
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Write `bytes` to `path` atomically (temp file in the same directory, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut f = File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        f.write_all(bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
        f.sync_all().with_context(|| format!("cannot sync {}", tmp.display()))?;
    }
    fs::rename(&tmp, path).with_context(|| format!("cannot rename into {}", path.display()))?;
    sync_dir(dir);
    Ok(())
}

/// Remove a previous run's shards and manifest from `dir` (only files we name ourselves).
pub fn clear_previous_output(dir: &Path, prefix: &str) -> Result<()> {
    let Ok(entries) = fs::read_dir(dir) else { return Ok(()) };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours = name == "manifest.json"
            || (name.starts_with(&format!("{prefix}-")) && (name.ends_with(".jsonl") || name.ends_with(".jsonl.zst")))
            || (name.starts_with(&format!(".{prefix}-")) && name.ends_with(".tmp"));
        if ours {
            fs::remove_file(entry.path()).with_context(|| format!("cannot remove old output {}", entry.path().display()))?;
        }
    }
    Ok(())
}
