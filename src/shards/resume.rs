//! Crash-safe output for record stages: output shard `k` holds the results for input file
//! `k`, one output line per input record, in input order. That 1:1 positional mapping is
//! what makes resuming exact.
//!
//! While shard `k` is being written its lines go to `.shard-0000k.partial.jsonl`, appended
//! and flushed record by record (a process kill loses at most the line being written). When
//! input `k` is finished the partial file is compressed into `shard-0000k.jsonl[.zst]`
//! atomically and removed. On a rerun with the same fingerprint:
//!   - a final shard is done and skipped;
//!   - a partial shard is cut back to its last complete, parseable line and continues
//!     after that many input records (a torn last line from a crash is simply dropped and
//!     recomputed).
//!
//! `.progress.json` names the fingerprint the files belong to; a different fingerprint (or
//! `--force`) starts over.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::{Map, Value};

use super::writer::{sync_dir, write_atomic, ShardInfo};

const PREFIX: &str = "shard";

/// One stage's output directory in resumable mode.
#[derive(Debug, Clone)]
pub struct StageOutput {
    pub dir: PathBuf,
    pub compress: bool,
}

/// What is already on disk for one input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardState {
    /// Final shard present with this many records.
    Done(u64),
    /// A partial shard with this many complete records.
    Partial(u64),
    Missing,
}

impl StageOutput {
    /// Open `dir` for `fingerprint`. Files from another fingerprint, or everything with
    /// `force`, are removed. Returns the output and whether anything was kept.
    pub fn open(dir: &Path, stage: &str, fingerprint: &str, compress: bool, force: bool) -> Result<(StageOutput, bool)> {
        fs::create_dir_all(dir).with_context(|| format!("cannot create output directory {}", dir.display()))?;
        let progress = dir.join(".progress.json");
        let previous: Option<Value> = fs::read(&progress).ok().and_then(|b| serde_json::from_slice(&b).ok());
        let same = previous.as_ref().is_some_and(|p| {
            p.get("fingerprint").and_then(Value::as_str) == Some(fingerprint) && p.get("stage").and_then(Value::as_str) == Some(stage)
        });
        let keep = same && !force;
        if !keep {
            super::writer::clear_previous_output(dir, PREFIX)?;
            for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(".shard-") && name.ends_with(".partial.jsonl") {
                    fs::remove_file(entry.path()).with_context(|| format!("cannot remove {}", entry.path().display()))?;
                }
            }
            let state = serde_json::json!({"stage": stage, "fingerprint": fingerprint});
            write_atomic(&progress, state.to_string().as_bytes())?;
        } else {
            // Being resumed: the old manifest no longer describes the directory.
            let _ = fs::remove_file(dir.join("manifest.json"));
        }
        Ok((StageOutput { dir: dir.to_path_buf(), compress }, keep))
    }

    pub fn final_path(&self, k: usize) -> PathBuf {
        let ext = if self.compress { "jsonl.zst" } else { "jsonl" };
        self.dir.join(format!("{PREFIX}-{k:05}.{ext}"))
    }

    pub fn partial_path(&self, k: usize) -> PathBuf {
        self.dir.join(format!(".{PREFIX}-{k:05}.partial.jsonl"))
    }

    /// What is on disk for input `k`; a torn partial is repaired (cut back) on the way.
    pub fn state(&self, k: usize) -> Result<ShardState> {
        let final_path = self.final_path(k);
        if final_path.is_file() {
            return Ok(ShardState::Done(read_jsonl_file(&final_path, |_| true)?));
        }
        let partial = self.partial_path(k);
        if partial.is_file() {
            return Ok(ShardState::Partial(repair_partial(&partial)?));
        }
        Ok(ShardState::Missing)
    }

    /// Turn a final shard back into a partial one (another stage of the same run is behind
    /// it and the two must be cut back to the same record).
    pub fn reopen(&self, k: usize) -> Result<()> {
        let final_path = self.final_path(k);
        let partial = self.partial_path(k);
        let mut out = BufWriter::new(File::create(&partial).with_context(|| format!("cannot create {}", partial.display()))?);
        for_each_line(&final_path, |line| {
            out.write_all(line)?;
            out.write_all(b"\n")?;
            Ok(true)
        })?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        fs::remove_file(&final_path).with_context(|| format!("cannot remove {}", final_path.display()))?;
        Ok(())
    }

    /// Cut the partial shard `k` back to its first `keep` records.
    pub fn truncate_partial(&self, k: usize, keep: u64) -> Result<()> {
        let path = self.partial_path(k);
        let mut offset = 0u64;
        let mut seen = 0u64;
        for_each_line(&path, |line| {
            if seen == keep {
                return Ok(false);
            }
            seen += 1;
            offset += line.len() as u64 + 1;
            Ok(true)
        })?;
        let f = OpenOptions::new().write(true).open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        f.set_len(offset)?;
        f.sync_all()?;
        Ok(())
    }

    /// Open the partial shard `k` for appending (created if missing).
    pub fn append(&self, k: usize) -> Result<PartialShard> {
        let path = self.partial_path(k);
        let file = OpenOptions::new().create(true).append(true).open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        Ok(PartialShard { k, path, out: BufWriter::with_capacity(64 * 1024, file), line: Vec::new(), last_sync: std::time::Instant::now() })
    }

    /// Compress partial shard `k` into its final name (atomically) and remove the partial.
    pub fn seal(&self, k: usize) -> Result<ShardInfo> {
        let partial = self.partial_path(k);
        let final_path = self.final_path(k);
        let name = final_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let records;
        {
            let file = File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
            let mut buffered = BufWriter::with_capacity(256 * 1024, file);
            let file = if self.compress {
                let mut enc = zstd::stream::write::Encoder::new(buffered, 3)?;
                records = copy_lines(&partial, &mut enc)?;
                enc.finish()?.into_inner().map_err(|e| e.into_error())?
            } else {
                records = copy_lines(&partial, &mut buffered)?;
                buffered.into_inner().map_err(|e| e.into_error())?
            };
            file.sync_all().with_context(|| format!("cannot sync {}", tmp.display()))?;
        }
        fs::rename(&tmp, &final_path).with_context(|| format!("cannot rename into {}", final_path.display()))?;
        sync_dir(&self.dir);
        fs::remove_file(&partial).with_context(|| format!("cannot remove {}", partial.display()))?;
        let bytes = fs::metadata(&final_path).map(|m| m.len()).unwrap_or(0);
        Ok(ShardInfo { file: name, records, bytes })
    }

    /// Complete records in partial shard `k` (repaired first).
    pub fn partial_records(&self, k: usize) -> Result<u64> {
        repair_partial(&self.partial_path(k))
    }

    /// Records of the partial shard `k`.
    pub fn read_partial(&self, k: usize, mut each: impl FnMut(Map<String, Value>) -> bool) -> Result<u64> {
        read_jsonl_file(&self.partial_path(k), |v| match v {
            Value::Object(m) => each(m),
            _ => true,
        })
    }

    /// The final shard's listing entry (for shards finished by an earlier run).
    pub fn info(&self, k: usize, records: u64) -> ShardInfo {
        let path = self.final_path(k);
        ShardInfo {
            file: path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            records,
            bytes: fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
        }
    }

    /// Records of shard `k` (final or partial), up to `limit`, for counting and retries.
    pub fn read(&self, k: usize, mut each: impl FnMut(Map<String, Value>) -> bool) -> Result<u64> {
        let final_path = self.final_path(k);
        let path = if final_path.is_file() { final_path } else { self.partial_path(k) };
        if !path.is_file() {
            return Ok(0);
        }
        read_jsonl_file(&path, |v| match v {
            Value::Object(m) => each(m),
            _ => true,
        })
    }
}

/// An open partial shard: each record is written and flushed as one line.
pub struct PartialShard {
    pub k: usize,
    path: PathBuf,
    out: BufWriter<File>,
    line: Vec<u8>,
    last_sync: std::time::Instant,
}

impl PartialShard {
    pub fn write(&mut self, record: &Map<String, Value>) -> Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, record).context("cannot serialize record")?;
        self.line.push(b'\n');
        self.out.write_all(&self.line).and_then(|_| self.out.flush()).with_context(|| format!("cannot write {}", self.path.display()))?;
        // Flushed to the OS per record (survives a process kill); fsync about once a second
        // (bounds what a machine crash can take).
        if self.last_sync.elapsed().as_secs_f64() >= 1.0 {
            self.out.get_ref().sync_data().with_context(|| format!("cannot sync {}", self.path.display()))?;
            self.last_sync = std::time::Instant::now();
        }
        Ok(())
    }

    pub fn close(mut self) -> Result<()> {
        self.out.flush()?;
        self.out.get_ref().sync_all().with_context(|| format!("cannot sync {}", self.path.display()))?;
        Ok(())
    }
}

/// Cut a partial file back to its complete, parseable lines; returns how many there are.
fn repair_partial(path: &Path) -> Result<u64> {
    let mut good_bytes = 0u64;
    let mut records = 0u64;
    {
        let mut reader = BufReader::new(File::open(path).with_context(|| format!("cannot open {}", path.display()))?);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line)?;
            if n == 0 || line.last() != Some(&b'\n') {
                break;
            }
            if serde_json::from_slice::<Value>(&line[..line.len() - 1]).is_err() {
                break;
            }
            good_bytes += n as u64;
            records += 1;
        }
    }
    let mut f = OpenOptions::new().write(true).open(path).with_context(|| format!("cannot open {}", path.display()))?;
    if f.seek(SeekFrom::End(0))? != good_bytes {
        tracing::info!("{}: dropped a torn last line (kept {records} records)", path.display());
        f.set_len(good_bytes)?;
        f.sync_all()?;
    }
    Ok(records)
}

/// A shard we wrote, as lines (zstd or plain by its name).
pub fn open_lines(path: &Path) -> Result<Box<dyn BufRead + Send>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let name = path.to_string_lossy();
    Ok(if name.ends_with(".zst") { Box::new(BufReader::new(zstd::stream::read::Decoder::new(file)?)) } else { Box::new(BufReader::new(file)) })
}

/// Call `each` with every line (without its newline) until it returns false.
fn for_each_line(path: &Path, mut each: impl FnMut(&[u8]) -> Result<bool>) -> Result<()> {
    let mut reader = open_lines(path)?;
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).with_context(|| format!("cannot read {}", path.display()))? == 0 {
            return Ok(());
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if !each(&line)? {
            return Ok(());
        }
    }
}

/// Parse every line of a shard we wrote; returns how many lines were read.
fn read_jsonl_file(path: &Path, mut each: impl FnMut(Value) -> bool) -> Result<u64> {
    let mut n = 0u64;
    for_each_line(path, |line| {
        n += 1;
        let v: Value = serde_json::from_slice(line).with_context(|| format!("{}: line {n} is not JSON", path.display()))?;
        Ok(each(v))
    })?;
    Ok(n)
}

fn copy_lines(path: &Path, out: &mut impl Write) -> Result<u64> {
    let mut n = 0u64;
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let got = file.read(&mut buf)?;
        if got == 0 {
            break;
        }
        n += buf[..got].iter().filter(|&&b| b == b'\n').count() as u64;
        out.write_all(&buf[..got])?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: u64) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("i".into(), Value::from(i));
        m
    }

    #[test]
    fn torn_last_line_is_dropped_and_resume_appends() {
        let dir = tempfile::tempdir().unwrap();
        let (out, kept) = StageOutput::open(dir.path(), "s", "fp1", true, false).unwrap();
        assert!(!kept);
        let mut p = out.append(0).unwrap();
        for i in 0..3 {
            p.write(&rec(i)).unwrap();
        }
        p.close().unwrap();
        // A crash in the middle of a line.
        let mut f = OpenOptions::new().append(true).open(out.partial_path(0)).unwrap();
        f.write_all(b"{\"i\": 3, \"tru").unwrap();
        drop(f);
        let (out, kept) = StageOutput::open(dir.path(), "s", "fp1", true, false).unwrap();
        assert!(kept);
        assert_eq!(out.state(0).unwrap(), ShardState::Partial(3));
        let mut p = out.append(0).unwrap();
        p.write(&rec(3)).unwrap();
        p.close().unwrap();
        let info = out.seal(0).unwrap();
        assert_eq!(info.records, 4);
        assert_eq!(out.state(0).unwrap(), ShardState::Done(4));
        let mut seen = Vec::new();
        out.read(0, |m| {
            seen.push(m["i"].as_u64().unwrap());
            true
        })
        .unwrap();
        assert_eq!(seen, vec![0, 1, 2, 3]);
        // Reopen and truncate: back to a partial of 2.
        out.reopen(0).unwrap();
        out.truncate_partial(0, 2).unwrap();
        assert_eq!(out.state(0).unwrap(), ShardState::Partial(2));
        // Another fingerprint starts over.
        let (out, kept) = StageOutput::open(dir.path(), "s", "fp2", true, false).unwrap();
        assert!(!kept);
        assert_eq!(out.state(0).unwrap(), ShardState::Missing);
    }
}
