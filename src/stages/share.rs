//! `share` (inside `run --world-size N`): exact dedup across ranks before the paid stages.
//!
//! Extract splits the corpus by file, so a function copied into files of two ranks is kept
//! by both, and every later stage would pay LLM calls for it twice. So between extract and
//! gen-tests each rank takes its share of *all* ranks' functions:
//!   1. wait until every rank's extract is done (the barrier; `unitcoder slurm` runs extract
//!      as its own array first, so there it never waits);
//!   2. read every rank's extract output, merged in corpus order (`source.position`);
//!   3. keep the functions whose `dedup_key` this rank owns (a hash share: duplicates have one
//!      owner), dropping every repeat after the first;
//!   4. write them to `WORK/share/rank-…/`, the chain's input.
//!
//! The union of the shares is then exactly what one process's extract keeps, in the same
//! order: one process keeps the first of each duplicate in corpus order, and so does the owner.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use serde_json::json;

use crate::record::{field, RecordExt};
use crate::shards::manifest::{fingerprint, now_rfc3339, prepare_output};
use crate::shards::merge::merge_by_position;
use crate::shards::ranks::{dir_name, output_state, OutputState};
use crate::shards::reader::RecordItem;
use crate::shards::{expand_inputs, Manifest, ShardWriter, ShardWriterOptions};

pub struct Share<'a> {
    /// `WORK/extract` (holding `rank-*` folders).
    pub extract: &'a Path,
    /// `WORK/share`.
    pub output: &'a Path,
    pub rank: usize,
    pub world: usize,
    /// How long to wait for the other ranks' extracts (`None`: as long as it takes).
    pub wait: Option<Duration>,
    pub writer: ShardWriterOptions,
    pub force: bool,
    pub max_line_bytes: usize,
}

/// Counters of the share step (its manifest's `counts`).
#[derive(Debug, Default, serde::Serialize)]
pub struct ShareCounts {
    /// Functions of every rank's extract.
    pub seen: u64,
    /// Functions another rank owns.
    pub other_ranks: u64,
    /// Repeats of a function this rank already took (from another rank's files).
    pub cross_rank_duplicates: u64,
    /// Functions taken: the chain's input.
    pub records: u64,
}

/// Step 1 to 4; returns this rank's share directory.
pub fn run(s: &Share) -> Result<PathBuf> {
    let started = Instant::now();
    let started_at = now_rfc3339();
    let out_dir = s.output.join(dir_name(s.rank, s.world));
    // Step 1: every rank's extract, done.
    let extract_dirs: Vec<PathBuf> = (0..s.world).map(|r| s.extract.join(dir_name(r, s.world))).collect();
    wait_for_extracts(&extract_dirs, s)?;
    let mut streams = Vec::new();
    for dir in &extract_dirs {
        let m = Manifest::read(dir)?.with_context(|| format!("{}: no manifest", dir.display()))?;
        let files: Vec<String> = m.shards.iter().map(|f| dir.join(&f.file).display().to_string()).collect();
        streams.push(if files.is_empty() { Vec::new() } else { expand_inputs(&files)? });
    }
    let paths: Vec<PathBuf> = streams.iter().flatten().map(|f| f.path.clone()).collect();
    let fp =
        fingerprint(&paths, &json!({"rank": s.rank, "world_size": s.world, "writer": s.writer.records_per_shard, "compress": s.writer.compress}));
    if prepare_output(&out_dir, "share", &fp, s.force)? {
        return Ok(out_dir);
    }

    // Steps 2 and 3: corpus order, this rank's keys, first occurrence only.
    let mut writer = ShardWriter::new(&out_dir, s.writer.clone())?;
    let mut counts = ShareCounts::default();
    let mut taken: HashSet<String> = HashSet::new();
    let mut failure = None;
    merge_by_position(streams, s.max_line_bytes, |item| {
        let RecordItem::Record(record) = item else { return true }; // extract writes only records
        counts.seen += 1;
        let key = record.text("dedup_key").or_else(|| record.text(field::ID)).unwrap_or_default().to_string();
        if crate::hash::owner(&key, s.world) != s.rank {
            counts.other_ranks += 1;
        } else if !taken.insert(key) {
            counts.cross_rank_duplicates += 1;
        } else if let Err(e) = writer.write(&record) {
            failure = Some(e);
            return false;
        } else {
            counts.records += 1;
        }
        true
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    // Step 4: the share, with a manifest the chain's fingerprint and `stats` read.
    let shards = writer.finish()?;
    let inputs = expand_inputs(&extract_dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>()).unwrap_or_default();
    let settings = json!({"rank": s.rank, "world_size": s.world});
    Manifest::finished("share", &inputs, fp, settings, serde_json::to_value(&counts)?, shards, started_at, started, json!({})).write(&out_dir)?;
    tracing::info!(
        "share: rank {} of {} takes {} of {} functions ({} belong to other ranks, {} cross-rank duplicates dropped)",
        s.rank,
        s.world,
        counts.records,
        counts.seen,
        counts.other_ranks,
        counts.cross_rank_duplicates
    );
    Ok(out_dir)
}

/// The barrier: every rank's extract done, or the reason it is not within `wait`.
fn wait_for_extracts(dirs: &[PathBuf], s: &Share) -> Result<()> {
    let started = Instant::now();
    let mut last_log = None::<Instant>;
    loop {
        let states: Vec<OutputState> = dirs.iter().map(|d| output_state(d)).collect();
        let pending: Vec<String> = states
            .iter()
            .enumerate()
            .filter(|(_, st)| !st.is_done())
            .map(|(r, st)| match st {
                OutputState::Missing => format!("{r} (not started)"),
                _ => format!("{r} ({} functions so far)", st.records()),
            })
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        let waited = started.elapsed();
        if s.wait.is_some_and(|w| waited >= w) {
            return Err(crate::exit::Incomplete::new(format!(
                "rank {}: the extracts of ranks {} are not done; the LLM stages take their share of every rank's functions \
                 (global dedup). Finish those ranks first (`unitcoder status {}` lists them)",
                s.rank,
                pending.join(", "),
                s.extract.parent().unwrap_or(s.extract).display()
            ))
            .into());
        }
        if last_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
            tracing::info!(
                "rank {}: extract done; waiting for the extracts of ranks {} (every rank's functions are deduplicated before the LLM stages)",
                s.rank,
                pending.join(", ")
            );
            last_log = Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
